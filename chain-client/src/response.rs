//! Response normalisation and RFC 8785 canonical JSON for `response_hash` (PROTOCOL.md §4).
//!
//! The normalised response is
//! `{"choices":[{"finish_reason":…,"index":…,"message":{"content":…}}|{"finish_reason":…,"index":…,"text":…}],
//! "usage":{"completion_tokens":…,"prompt_tokens":…}}`, serialised as RFC 8785 canonical JSON. Chat choices keep
//! `message.content` (streamed: the concatenated `delta.content`), completion choices keep `text` (streamed: the
//! concatenated `text`), both keep `index` and the last non-null `finish_reason`; everything else (`id`,
//! `created`, `model`, `system_fingerprint`, `role`, `logprobs`, timings) is dropped. Choices are sorted by
//! `index`. `usage` is always present and holds the metered token counts (the receipt's `tokens_in` and
//! `tokens_out`); when the body itself reports usage, it must agree. Streamed and non-streamed responses with
//! the same text and usage therefore hash the same.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use serde_json::{Map, Value};

use crate::hash::response_hash_of_canonical;
use crate::types::B256;

/// Longest SSE line the stream normaliser buffers.
pub const MAX_SSE_LINE: usize = 1024 * 1024;

/// Why a response could not be normalised.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NormalizeError {
    /// A choice has neither `message`/`delta` nor `text`, or mixes them.
    #[error("choice {index}: neither chat nor completion shape")]
    ChoiceShape {
        /// The choice index.
        index: u64,
    },
    /// A field has the wrong JSON type.
    #[error("{field}: wrong JSON type")]
    FieldType {
        /// Field path.
        field: &'static str,
    },
    /// The body or an SSE event is not valid JSON.
    #[error("invalid JSON in {what}")]
    Json {
        /// Body or SSE event.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An SSE line exceeds [`MAX_SSE_LINE`].
    #[error("SSE line longer than {MAX_SSE_LINE} bytes")]
    LineTooLong,
    /// The response reported usage that differs from the metered usage.
    #[error("reported usage differs from the metered usage")]
    UsageMismatch,
    /// Data arrived after `data: [DONE]`.
    #[error("data after [DONE]")]
    AfterDone,
}

/// Token usage that enters the normalised response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Usage {
    /// Prompt tokens (the receipt's `tokens_in`).
    pub prompt_tokens: u64,
    /// Completion tokens (the receipt's `tokens_out`).
    pub completion_tokens: u64,
}

/// Whether a choice came from `chat/completions` or `completions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChoiceKind {
    /// `message.content` / `delta.content`.
    Chat,
    /// `text`.
    Completion,
}

/// One normalised choice. Its `Debug` output omits the generated text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NormalizedChoice {
    /// `index`.
    pub index: u64,
    /// Chat or completion.
    pub kind: ChoiceKind,
    /// The generated text (`message.content` or `text`, concatenated over stream deltas).
    pub content: String,
    /// The last non-null `finish_reason`.
    pub finish_reason: Option<String>,
}

/// A normalised response: choices sorted by index, plus the usage the body reported (if any). Its `Debug`
/// output omits the generated text, so it can't leak into logs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NormalizedResponse {
    /// Choices, sorted by index.
    pub choices: Vec<NormalizedChoice>,
    /// The usage the response itself reported, if it did.
    pub reported_usage: Option<Usage>,
}

impl core::fmt::Debug for NormalizedChoice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NormalizedChoice")
            .field("index", &self.index)
            .field("kind", &self.kind)
            .field("content_len", &self.content.len())
            .field("finish_reason", &self.finish_reason)
            .finish()
    }
}

impl NormalizedResponse {
    /// Normalises a non-streamed `chat/completions` or `completions` JSON body.
    pub fn from_body(body: &[u8]) -> Result<Self, NormalizeError> {
        let v: Value = serde_json::from_slice(body).map_err(|source| NormalizeError::Json {
            what: "response body",
            source,
        })?;
        let mut acc = Accumulator::default();
        acc.absorb(&v)?;
        Ok(acc.finish())
    }

    /// The concatenated text of all choices, in index order (for display).
    pub fn text(&self) -> String {
        self.choices.iter().map(|c| c.content.as_str()).collect()
    }

    /// Checks `metered` against the reported usage (if any) and returns it.
    fn usage_for(&self, metered: Usage) -> Result<Usage, NormalizeError> {
        match self.reported_usage {
            Some(u) if u != metered => Err(NormalizeError::UsageMismatch),
            _ => Ok(metered),
        }
    }

    /// The RFC 8785 canonical JSON of the normalised response with `metered` usage.
    pub fn canonical_json(&self, metered: Usage) -> Result<Vec<u8>, NormalizeError> {
        let usage = self.usage_for(metered)?;
        let choices = self
            .choices
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("index".into(), Value::from(c.index));
                m.insert(
                    "finish_reason".into(),
                    c.finish_reason.clone().map_or(Value::Null, Value::String),
                );
                match c.kind {
                    ChoiceKind::Chat => {
                        let mut msg = Map::new();
                        msg.insert("content".into(), Value::String(c.content.clone()));
                        m.insert("message".into(), Value::Object(msg));
                    }
                    ChoiceKind::Completion => {
                        m.insert("text".into(), Value::String(c.content.clone()));
                    }
                }
                Value::Object(m)
            })
            .collect();
        let mut u = Map::new();
        u.insert("prompt_tokens".into(), Value::from(usage.prompt_tokens));
        u.insert(
            "completion_tokens".into(),
            Value::from(usage.completion_tokens),
        );
        let mut root = Map::new();
        root.insert("choices".into(), Value::Array(choices));
        root.insert("usage".into(), Value::Object(u));
        Ok(canonicalize(&Value::Object(root)))
    }

    /// `response_hash = H256("dait/v1/response" || canonical_json)` with `metered` usage.
    pub fn response_hash(&self, metered: Usage) -> Result<B256, NormalizeError> {
        Ok(response_hash_of_canonical(&self.canonical_json(metered)?))
    }
}

#[derive(Default)]
struct ChoiceAcc {
    kind: Option<ChoiceKind>,
    content: String,
    finish_reason: Option<String>,
}

#[derive(Default)]
struct Accumulator {
    choices: BTreeMap<u64, ChoiceAcc>,
    usage: Option<Usage>,
}

fn str_or_null<'a>(
    v: Option<&'a Value>,
    field: &'static str,
) -> Result<Option<&'a str>, NormalizeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(NormalizeError::FieldType { field }),
    }
}

impl Accumulator {
    /// Folds one response object (a whole body or one stream chunk) into the accumulator.
    fn absorb(&mut self, v: &Value) -> Result<(), NormalizeError> {
        let obj = v
            .as_object()
            .ok_or(NormalizeError::FieldType { field: "response" })?;
        match obj.get("usage") {
            None | Some(Value::Null) => {}
            Some(Value::Object(u)) => {
                let get = |k: &'static str| {
                    u.get(k)
                        .and_then(Value::as_u64)
                        .ok_or(NormalizeError::FieldType { field: "usage" })
                };
                self.usage = Some(Usage {
                    prompt_tokens: get("prompt_tokens")?,
                    completion_tokens: get("completion_tokens")?,
                });
            }
            Some(_) => return Err(NormalizeError::FieldType { field: "usage" }),
        }
        let choices = match obj.get("choices") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(NormalizeError::FieldType { field: "choices" }),
        };
        for (pos, c) in choices.iter().enumerate() {
            let c = c
                .as_object()
                .ok_or(NormalizeError::FieldType { field: "choices[]" })?;
            let index = match c.get("index") {
                None => pos as u64,
                Some(i) => i.as_u64().ok_or(NormalizeError::FieldType {
                    field: "choices[].index",
                })?,
            };
            let message = c.get("message").or_else(|| c.get("delta"));
            let (kind, piece) = match (message, c.get("text")) {
                (Some(m), None) => {
                    let m = m.as_object().ok_or(NormalizeError::FieldType {
                        field: "choices[].message",
                    })?;
                    (
                        ChoiceKind::Chat,
                        str_or_null(m.get("content"), "choices[].message.content")?,
                    )
                }
                (None, Some(t)) => (
                    ChoiceKind::Completion,
                    str_or_null(Some(t), "choices[].text")?,
                ),
                _ => return Err(NormalizeError::ChoiceShape { index }),
            };
            let acc = self.choices.entry(index).or_default();
            match acc.kind {
                None => acc.kind = Some(kind),
                Some(k) if k != kind => return Err(NormalizeError::ChoiceShape { index }),
                Some(_) => {}
            }
            if let Some(p) = piece {
                acc.content.push_str(p);
            }
            if let Some(f) = str_or_null(c.get("finish_reason"), "choices[].finish_reason")? {
                acc.finish_reason = Some(f.into());
            }
        }
        Ok(())
    }

    fn finish(self) -> NormalizedResponse {
        NormalizedResponse {
            choices: self
                .choices
                .into_iter()
                .map(|(index, a)| NormalizedChoice {
                    index,
                    kind: a.kind.unwrap_or(ChoiceKind::Chat),
                    content: a.content,
                    finish_reason: a.finish_reason,
                })
                .collect(),
            reported_usage: self.usage,
        }
    }
}

/// Normalises a streamed response from its server-sent-event bytes, fed in chunks split anywhere.
#[derive(Default)]
pub struct StreamNormalizer {
    line: Vec<u8>,
    data: Option<String>,
    acc: Accumulator,
    done: bool,
}

impl core::fmt::Debug for StreamNormalizer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print generated text.
        f.debug_struct("StreamNormalizer")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl StreamNormalizer {
    /// An empty normaliser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `data: [DONE]` was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds the next bytes of the SSE stream.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), NormalizeError> {
        for &b in bytes {
            if b == b'\n' {
                let mut line = core::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&line)?;
            } else {
                if self.line.len() >= MAX_SSE_LINE {
                    return Err(NormalizeError::LineTooLong);
                }
                self.line.push(b);
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8]) -> Result<(), NormalizeError> {
        if line.is_empty() {
            return self.dispatch();
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(0) => return Ok(()), // comment
            Some(i) => {
                let (f, rest) = line.split_at(i);
                let rest = rest.get(1..).unwrap_or_default();
                (f, rest.strip_prefix(b" ").unwrap_or(rest))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            let text = core::str::from_utf8(value)
                .map_err(|_| NormalizeError::FieldType { field: "sse data" })?;
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(text);
                }
                None => self.data = Some(text.into()),
            }
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Result<(), NormalizeError> {
        let Some(data) = self.data.take() else {
            return Ok(());
        };
        if self.done {
            return Err(NormalizeError::AfterDone);
        }
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value = serde_json::from_str(&data).map_err(|source| NormalizeError::Json {
            what: "sse event",
            source,
        })?;
        self.acc.absorb(&v)
    }

    /// Ends the stream: a final event without its blank line is dispatched, an unterminated line is dropped.
    pub fn finish(mut self) -> Result<NormalizedResponse, NormalizeError> {
        self.dispatch()?;
        Ok(self.acc.finish())
    }
}

/// RFC 8785 (JCS) canonical serialisation of a JSON value: object members sorted by UTF-16 code units, no
/// whitespace, strings with minimal escapes, numbers in ECMAScript `Number.prototype.toString` form.
pub fn canonicalize(v: &Value) -> Vec<u8> {
    let mut out = String::new();
    write_value(&mut out, v);
    out.into_bytes()
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, e);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                if let Some(val) = m.get(k) {
                    write_value(out, val);
                }
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(u) = n.as_u64().filter(|u| *u <= MAX_SAFE_INTEGER) {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER) {
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        write_f64(out, f);
    }
}

/// ECMAScript `Number::toString(x)` for a finite double (RFC 8785 §3.2.2.3).
pub(crate) fn write_f64(out: &mut String, x: f64) {
    if x == 0.0 || !x.is_finite() {
        // -0 serialises as 0; JSON has no NaN or infinities.
        out.push('0');
        return;
    }
    if x < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` prints the shortest digit string that round-trips, e.g. "1.2345e-7".
    let mut sci = String::new();
    let _ = write!(sci, "{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let e: i32 = exp.parse().unwrap_or(0);
    let k = digits.len() as i32;
    let n = e + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        for _ in 0..(n - k) {
            out.push('0');
        }
    } else if 0 < n && n <= 21 {
        let (a, b) = digits.split_at(n as usize);
        out.push_str(a);
        out.push('.');
        out.push_str(b);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        for _ in 0..(-n) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(out, "e{}{}", if n > 0 { "+" } else { "-" }, (n - 1).abs());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use alloc::format;

    const BODY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"smollm2",
        "system_fingerprint":"b1","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there!"},
        "logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8},
        "timings":{"predicted_ms":12.5}}"#;

    fn sse() -> String {
        let chunk = |delta: &str, finish: &str| {
            format!(
                "data: {{\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1700000001,\
                 \"model\":\"smollm2\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
            )
        };
        let mut s = String::new();
        s.push_str(&chunk(r#"{"role":"assistant"}"#, "null"));
        s.push_str(&chunk(r#"{"content":"Hello"}"#, "null"));
        s.push_str(": keep-alive comment\n\n");
        s.push_str(&chunk(r#"{"content":" there!"}"#, "null"));
        s.push_str(&chunk("{}", r#""stop""#));
        s.push_str("data: [DONE]\n\n");
        s
    }

    const USAGE: Usage = Usage {
        prompt_tokens: 5,
        completion_tokens: 3,
    };

    #[test]
    fn body_normalises_to_the_documented_json() {
        let n = NormalizedResponse::from_body(BODY.as_bytes()).unwrap();
        assert_eq!(n.reported_usage, Some(USAGE));
        assert_eq!(
            String::from_utf8(n.canonical_json(USAGE).unwrap()).unwrap(),
            r#"{"choices":[{"finish_reason":"stop","index":0,"message":{"content":"Hello there!"}}],"usage":{"completion_tokens":3,"prompt_tokens":5}}"#
        );
    }

    #[test]
    fn stream_and_body_hash_the_same_at_every_split() {
        let body = NormalizedResponse::from_body(BODY.as_bytes())
            .unwrap()
            .response_hash(USAGE)
            .unwrap();
        let text = sse();
        for split in 0..=text.len() {
            let mut s = StreamNormalizer::new();
            s.push(&text.as_bytes()[..split]).unwrap();
            s.push(&text.as_bytes()[split..]).unwrap();
            assert!(s.is_done());
            let n = s.finish().unwrap();
            assert_eq!(n.reported_usage, None);
            assert_eq!(n.response_hash(USAGE).unwrap(), body, "split at {split}");
        }
        // CRLF line endings give the same result.
        let mut s = StreamNormalizer::new();
        s.push(text.replace('\n', "\r\n").as_bytes()).unwrap();
        assert_eq!(s.finish().unwrap().response_hash(USAGE).unwrap(), body);
    }

    #[test]
    fn different_text_or_usage_changes_the_hash() {
        let n = NormalizedResponse::from_body(BODY.as_bytes()).unwrap();
        let other =
            NormalizedResponse::from_body(BODY.replace("there!", "there.").as_bytes()).unwrap();
        let u = Usage {
            prompt_tokens: 5,
            completion_tokens: 3,
        };
        assert_ne!(n.response_hash(u).unwrap(), other.response_hash(u).unwrap());
        let mut s = StreamNormalizer::new();
        s.push(sse().as_bytes()).unwrap();
        let streamed = s.finish().unwrap();
        assert_ne!(
            streamed.response_hash(u).unwrap(),
            streamed
                .response_hash(Usage {
                    prompt_tokens: 5,
                    completion_tokens: 4
                })
                .unwrap()
        );
    }

    #[test]
    fn completions_shape() {
        let body = r#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"abc","finish_reason":"length"}]}"#;
        let n = NormalizedResponse::from_body(body.as_bytes()).unwrap();
        let u = Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
        };
        assert_eq!(
            String::from_utf8(n.canonical_json(u).unwrap()).unwrap(),
            r#"{"choices":[{"finish_reason":"length","index":0,"text":"abc"}],"usage":{"completion_tokens":2,"prompt_tokens":1}}"#
        );
        let stream = "data: {\"choices\":[{\"index\":0,\"text\":\"a\",\"finish_reason\":null}]}\n\n\
                      data: {\"choices\":[{\"index\":0,\"text\":\"bc\",\"finish_reason\":\"length\"}]}\n\n\
                      data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";
        let mut s = StreamNormalizer::new();
        s.push(stream.as_bytes()).unwrap();
        let sn = s.finish().unwrap();
        assert_eq!(sn.reported_usage, Some(u));
        assert_eq!(sn.response_hash(u).unwrap(), n.response_hash(u).unwrap());
    }

    #[test]
    fn choices_are_sorted_by_index() {
        let body = r#"{"choices":[{"index":1,"text":"b","finish_reason":"stop"},{"index":0,"text":"a","finish_reason":"stop"}]}"#;
        let n = NormalizedResponse::from_body(body.as_bytes()).unwrap();
        assert_eq!(n.text(), "ab");
    }

    #[test]
    fn debug_omits_text() {
        let n = NormalizedResponse::from_body(BODY.as_bytes()).unwrap();
        let shown = format!("{n:?}");
        assert!(!shown.contains("Hello"), "{shown}");
        assert!(shown.contains("content_len: 12"), "{shown}");
    }

    #[test]
    fn usage_mismatch() {
        let n = NormalizedResponse::from_body(BODY.as_bytes()).unwrap();
        assert!(matches!(
            n.response_hash(Usage {
                prompt_tokens: 5,
                completion_tokens: 4
            }),
            Err(NormalizeError::UsageMismatch)
        ));
    }

    #[test]
    fn malformed_inputs() {
        assert!(matches!(
            NormalizedResponse::from_body(b"{"),
            Err(NormalizeError::Json { .. })
        ));
        assert!(matches!(
            NormalizedResponse::from_body(b"[]"),
            Err(NormalizeError::FieldType { field: "response" })
        ));
        assert!(matches!(
            NormalizedResponse::from_body(br#"{"choices":[{"index":0}]}"#),
            Err(NormalizeError::ChoiceShape { index: 0 })
        ));
        assert!(matches!(
            NormalizedResponse::from_body(br#"{"choices":[{"index":0,"text":1}]}"#),
            Err(NormalizeError::FieldType {
                field: "choices[].text"
            })
        ));
        let mut s = StreamNormalizer::new();
        assert!(matches!(
            s.push(b"data: [DONE]\n\ndata: {}\n\n"),
            Err(NormalizeError::AfterDone)
        ));
        let mut s = StreamNormalizer::new();
        assert!(matches!(
            s.push(b"data: {nope}\n\n"),
            Err(NormalizeError::Json { .. })
        ));
        let mut s = StreamNormalizer::new();
        let long = alloc::vec![b'x'; MAX_SSE_LINE + 1];
        assert!(matches!(s.push(&long), Err(NormalizeError::LineTooLong)));
    }

    #[test]
    fn last_event_without_blank_line_is_dispatched() {
        let mut s = StreamNormalizer::new();
        s.push(b"data: {\"choices\":[{\"index\":0,\"text\":\"x\",\"finish_reason\":\"stop\"}]}\n")
            .unwrap();
        assert_eq!(s.finish().unwrap().text(), "x");
    }

    /// The example of RFC 8785 §3.2.4 (numbers, escapes, member order).
    #[test]
    fn jcs_rfc8785_example() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let v: Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            String::from_utf8(canonicalize(&v)).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn jcs_numbers() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (123.456, "123.456"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (9007199254740992.0, "9007199254740992"),
        ];
        for (x, want) in cases {
            let mut s = String::new();
            write_f64(&mut s, *x);
            assert_eq!(&s, want, "{x:e}");
        }
        // Integers beyond 2^53 are formatted as the double they round to.
        let v: Value =
            serde_json::from_str("[9007199254740993, 18446744073709551615, -9007199254740993, 42]")
                .unwrap();
        assert_eq!(
            String::from_utf8(canonicalize(&v)).unwrap(),
            "[9007199254740992,18446744073709552000,-9007199254740992,42]"
        );
    }

    #[test]
    fn jcs_sorts_keys_by_utf16() {
        // U+1F600 is D83D DE00 in UTF-16, which sorts before U+E000 (UTF-8 order would be the reverse).
        let v: Value = serde_json::from_str(r#"{"\ue000":1,"😀":2,"a":3,"A":4}"#).unwrap();
        assert_eq!(
            String::from_utf8(canonicalize(&v)).unwrap(),
            "{\"A\":4,\"a\":3,\"😀\":2,\"\u{e000}\":1}"
        );
    }
}
