#!/usr/bin/env python3
"""Measures the development inference engine (scripts/engine.sh) over its OpenAI-compatible HTTP API.

Usage: scripts/engine-bench.py URL [--runs N] [--max-tokens N] [--pid PID] [--json FILE]

With --pid (the server's process id), speeds are also given per CPU-second the server used, which does not
depend on how busy the machine's other cores are.

Reports, for docs/ENGINE.md and docs/results/engine.md:
  * decode speed (completion tokens per second, non-streamed) and first-token latency (streamed);
  * determinism at temperature 0: identical requests give identical text, streamed text equals non-streamed
    text, and which response-body fields differ between identical requests;
  * what `usage` the engine reports, streamed and not, and whether it honours `stream_options.include_usage`;
  * metering: streamed content chunks versus the engine's completion token count, and the engine's
    /extras/tokenize count of the prompt and the completion versus its `usage`.
Only the standard library; every request has a timeout. Exits 1 when a determinism check fails.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import time
import urllib.parse

TIMEOUT_S = 120

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences what a hash function is.",
    "List three prime numbers.",
    "Translate 'good morning' into German, French and Spanish.",
    "Why is the sky blue?",
    "Give me a short recipe for pancakes.",
    "What does CPU stand for?",
    "Describe a cat in one sentence, using an emoji.",
    "Count from one to ten in words.",
    "Name a famous café in Paris and say why it is known (use accents).",
    "Write the word <html> and explain it.",
    "请用中文介绍一下北京。",
    "Reply only with five emoji: party, cat, rocket, pizza, heart.",
    "Écris une phrase en français avec des accents: été, à, où, ç.",
]


class Engine:
    def __init__(self, url):
        parsed = urllib.parse.urlparse(url)
        self.host = parsed.hostname
        self.port = parsed.port

    def _conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)

    def post(self, path, body):
        conn = self._conn()
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{path}: HTTP {resp.status}: {data[:200]!r}")
            return json.loads(data)
        finally:
            conn.close()

    def stream(self, path, body):
        """Returns (events, first_content_s, total_s): the decoded SSE data events, [DONE] excluded."""
        conn = self._conn()
        start = time.perf_counter()
        first = None
        events = []
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"{path}: HTTP {resp.status}: {resp.read()[:200]!r}")
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line.startswith("data: "):
                    continue
                data = line[len("data: "):]
                if data == "[DONE]":
                    break
                event = json.loads(data)
                events.append(event)
                if first is None and content_of_chunk(event):
                    first = time.perf_counter() - start
            return events, first, time.perf_counter() - start
        finally:
            conn.close()


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc; None without a pid."""
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def content_of_chunk(event):
    choice = (event.get("choices") or [{}])[0]
    if "delta" in choice:
        return choice["delta"].get("content") or ""
    return choice.get("text") or ""


def chat_body(prompt, max_tokens, stream=False, **extra):
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": stream,
    }
    body.update(extra)
    return body


def differing_fields(a, b, prefix=""):
    """Dotted paths of the leaves that differ between two JSON values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += differing_fields(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += differing_fields(x, y, f"{prefix}{i}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--json", help="write the full report here")
    ap.add_argument("--pid", type=int, help="the server's process id, for CPU-time figures")
    args = ap.parse_args()
    engine = Engine(args.url)
    report = {"url_model": None}
    failures = []

    models = engine._conn()
    models.request("GET", "/v1/models")
    report["url_model"] = json.loads(models.getresponse().read())["data"][0]["id"]
    models.close()

    # Warm-up (loads weights into the page cache, fills the engine's buffers).
    engine.post("/v1/chat/completions", chat_body("Hello", 8))

    # 1. Decode speed, non-streamed, and determinism across identical requests.
    prompt = "Write a short story about a robot who learns to paint."
    bodies, speeds, cpu_speeds = [], [], []
    for _ in range(args.runs):
        c0 = cpu_seconds(args.pid)
        t0 = time.perf_counter()
        body = engine.post("/v1/chat/completions", chat_body(prompt, args.max_tokens))
        dt = time.perf_counter() - t0
        bodies.append(body)
        speeds.append(body["usage"]["completion_tokens"] / dt)
        if c0 is not None:
            cpu_speeds.append(body["usage"]["completion_tokens"] / max(cpu_seconds(args.pid) - c0, 1e-3))
    texts = {b["choices"][0]["message"]["content"] for b in bodies}
    report["non_streamed"] = {
        "runs": args.runs,
        "completion_tokens": bodies[0]["usage"]["completion_tokens"],
        "prompt_tokens": bodies[0]["usage"]["prompt_tokens"],
        "tokens_per_s_median": round(statistics.median(speeds), 1),
        "tokens_per_s_all": [round(s, 1) for s in speeds],
        "tokens_per_cpu_s_median": round(statistics.median(cpu_speeds), 1) if cpu_speeds else None,
        "identical_text": len(texts) == 1,
        "fields_differing_between_identical_requests": sorted(
            set(f for b in bodies[1:] for f in differing_fields(bodies[0], b))
        ),
        "example_body": bodies[0],
    }
    if len(texts) != 1:
        failures.append("non-streamed text differs between identical requests")

    # 2. First-token latency and streamed text, and what a stream carries.
    firsts, stream_speeds, stream_texts = [], [], set()
    events = []
    for _ in range(args.runs):
        events, first, total = engine.stream(
            "/v1/chat/completions", chat_body(prompt, args.max_tokens, stream=True)
        )
        firsts.append(first)
        text = "".join(content_of_chunk(e) for e in events)
        stream_texts.add(text)
        n_content = sum(1 for e in events if content_of_chunk(e))
        stream_speeds.append(n_content / total)
    streamed_text = stream_texts.pop() if len(stream_texts) == 1 else None
    report["streamed"] = {
        "first_token_ms_median": round(1000 * statistics.median(firsts), 1),
        "first_token_ms_all": [round(1000 * f, 1) for f in firsts],
        "content_chunks_per_s_median": round(statistics.median(stream_speeds), 1),
        "identical_text_across_runs": streamed_text is not None,
        "equals_non_streamed_text": streamed_text == bodies[0]["choices"][0]["message"]["content"],
        "events": len(events),
        "any_event_has_usage": any("usage" in e for e in events),
        "first_events": events[:3],
        "last_event": events[-1] if events else None,
    }
    if streamed_text is None:
        failures.append("streamed text differs between identical requests")
    elif streamed_text != bodies[0]["choices"][0]["message"]["content"]:
        failures.append("streamed text differs from non-streamed text")

    # 3. stream_options.include_usage: does the engine send a usage chunk when asked?
    events, _, _ = engine.stream(
        "/v1/chat/completions",
        chat_body("Say hi.", 16, stream=True, stream_options={"include_usage": True}),
    )
    report["include_usage_honoured"] = any(e.get("usage") for e in events)

    # 4. Metering: per prompt, the engine's usage (non-streamed) versus the number of streamed content chunks
    #    and versus /extras/tokenize of the completion text.
    rows = []
    for p in PROMPTS:
        ns = engine.post("/v1/chat/completions", chat_body(p, 64))
        text = ns["choices"][0]["message"]["content"]
        events, _, _ = engine.stream("/v1/chat/completions", chat_body(p, 64, stream=True))
        chunks = [content_of_chunk(e) for e in events if content_of_chunk(e)]
        tok = engine.post("/extras/tokenize", {"input": text})["tokens"]
        count = engine.post("/extras/tokenize/count", {"input": text})["count"]
        assert count == len(tok)
        rows.append(
            {
                "prompt": p,
                "completion_tokens": ns["usage"]["completion_tokens"],
                "prompt_tokens": ns["usage"]["prompt_tokens"],
                "content_chunks": len(chunks),
                "tokenize_completion": len(tok),
                "streamed_equals_non_streamed": "".join(chunks) == text,
                "finish_reason": ns["choices"][0]["finish_reason"],
            }
        )
    report["metering"] = rows
    report["metering_summary"] = {
        "requests": len(rows),
        "chunks_equal_completion_tokens": sum(r["content_chunks"] == r["completion_tokens"] for r in rows),
        "tokenize_equals_completion_tokens": sum(
            r["tokenize_completion"] == r["completion_tokens"] for r in rows
        ),
        "streamed_equals_non_streamed": sum(r["streamed_equals_non_streamed"] for r in rows),
    }
    if not all(r["streamed_equals_non_streamed"] for r in rows):
        failures.append("a streamed text differs from its non-streamed text")

    # 5. History independence: the same temperature-0 request after different previous requests.
    probe = "Write the word <html> and explain it."
    after = {}
    engine.post("/v1/completions", {"model": "m", "prompt": "Unrelated text", "max_tokens": 1, "temperature": 0})
    after["an unrelated request"] = engine.post("/v1/chat/completions", chat_body(probe, 40))
    after["itself"] = engine.post("/v1/chat/completions", chat_body(probe, 40))
    engine.post("/v1/chat/completions", chat_body("What is the capital of France?", 8))
    after["another chat request"] = engine.post("/v1/chat/completions", chat_body(probe, 40))
    probe_texts = {k: v["choices"][0]["message"]["content"] for k, v in after.items()}
    report["history_independent"] = len(set(probe_texts.values())) == 1
    if not report["history_independent"]:
        failures.append("temperature-0 text depends on the previous request")

    # 6. Seeded sampling: temperature 0.9 with a seed repeats, without one it need not.
    seeded = [
        engine.post("/v1/chat/completions", chat_body("Name a colour.", 12, temperature=0.9, seed=7))
        for _ in range(2)
    ]
    unseeded = [
        engine.post("/v1/chat/completions", chat_body("Name a colour.", 12, temperature=0.9)) for _ in range(3)
    ]
    report["seeded_sampling_repeats"] = len({b["choices"][0]["message"]["content"] for b in seeded}) == 1
    report["unseeded_sampling_distinct_texts"] = len({b["choices"][0]["message"]["content"] for b in unseeded})

    # 7. First-token latency for a prompt that shares only the chat template's prefix with the state the
    #    server holds (the previous request was an unrelated completion).
    cold, cold_cpu = [], []
    for i in range(args.runs):
        engine.post("/v1/completions", {"model": "m", "prompt": f"Unrelated {i}", "max_tokens": 1, "temperature": 0})
        _, first, _ = engine.stream(
            "/v1/chat/completions", chat_body(f"Tell me a fact about the number {7 * i + 3}.", 8, stream=True)
        )
        cold.append(first)
        # The same kind of request, non-streamed with one output token: the CPU cost of evaluating the prompt.
        engine.post("/v1/completions", {"model": "m", "prompt": f"Unrelated {i}", "max_tokens": 1, "temperature": 0})
        c0 = cpu_seconds(args.pid)
        one = engine.post(
            "/v1/chat/completions", chat_body(f"Tell me a fact about the number {7 * i + 3}.", 1)
        )
        if c0 is not None:
            cold_cpu.append((cpu_seconds(args.pid) - c0, one["usage"]["prompt_tokens"]))
    report["first_token_ms_new_prompt_median"] = round(1000 * statistics.median(cold), 1)
    report["first_token_ms_new_prompt_all"] = [round(1000 * f, 1) for f in cold]
    if cold_cpu:
        report["new_prompt_cpu_ms_median"] = round(1000 * statistics.median(c for c, _ in cold_cpu), 1)
        report["new_prompt_tokens"] = cold_cpu[0][1]

    # 8. The tokenizer endpoint: does it add BOS? (An empty input shows what it adds by itself.)
    report["tokenize_empty"] = engine.post("/extras/tokenize", {"input": ""})["tokens"]
    report["tokenize_hello"] = engine.post("/extras/tokenize", {"input": "Hello"})["tokens"]

    summary = {k: v for k, v in report.items() if k not in ("metering",)}
    for k in ("non_streamed", "streamed"):
        summary[k] = {kk: vv for kk, vv in report[k].items() if kk not in ("example_body", "first_events", "last_event")}
    print(json.dumps(summary, indent=2))
    print("metering per prompt (completion_tokens / content_chunks / tokenize(completion)):")
    for r in rows:
        print(
            f"  {r['completion_tokens']:4d} {r['content_chunks']:4d} {r['tokenize_completion']:4d}"
            f"  {r['finish_reason']:6s} {r['prompt']}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
    if failures:
        for f in failures:
            print(f"FAIL: {f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
