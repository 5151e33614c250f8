#!/usr/bin/env python3
"""The image's Debian package lock (image/packages.lock): written from a build, checked against a mirror, and
turned back into the exact .deb files. Called by scripts/image-lock.sh, scripts/image.sh and scripts/release.sh.

The lock is one line per package, sorted, fields separated by single spaces:

    NAME ARCH VERSION SHA256 ARCHIVE POOL-PATH TREES

ARCHIVE is `debian` or `debian-security` (which mirror root POOL-PATH is under), TREES the comma-separated trees
that install the package: `image`, `initrd` (mkosi's default initrd), `tools` (mkosi's tools tree) and `host`
(fetched by the scripts themselves: mkosi, the TDX firmware's ovmf). Lines starting with `#` are comments.

Subcommands (exit 0 on success, 1 on a failed check, 2 on a usage error or missing input):
  resolve --status TREE=FILE... [--extra TREE=NAME=VERSION...] --index ARCHIVE=FILE... --out LOCK
      every package installed in each dpkg status FILE (and each extra one), looked up by name, architecture and
      version in the Packages indices, written as LOCK
  check LOCK [--index ARCHIVE=FILE...] [--cache DIR] [--archive DIR]
      every locked package that is neither in the content-addressed cache DIR, nor in the release archive DIR,
      nor in the indices with its locked version and sha256: one message each naming the package, the locked and
      the available versions and the two ways on
  fetch LOCK --cache DIR [--mirror ARCHIVE=URL...] [--archive DIR] [--tree TREE]
      puts every locked .deb (of TREE, default all) into DIR/<sha256>.deb, from the archive DIR or the mirror,
      each checked against its locked sha256
  repo LOCK --cache DIR --out DIR
      a flat apt repository of exactly the locked .debs: DIR/pool/<file>.deb hard-linked from the cache and
      DIR/Packages (dpkg-scanpackages)
  verify LOCK --status TREE=FILE...
      fails unless each tree installed exactly the packages the lock gives it
  path LOCK NAME [--cache DIR]
      prints the cached .deb of a locked package (after fetch)
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

WAYS_ON = (
    "  Either re-lock (`just image-lock`: a new release, whose reference must be regenerated), or build the\n"
    "  release as it was from its archived .debs: DAIT_DEB_ARCHIVE=<release>/debs scripts/image.sh"
)


class LockError(Exception):
    """A missing input or a failed check; the message is printed as it is."""


def stanzas(path):
    """The stanzas of a Debian control file (dpkg status, Packages index) as dicts of their simple fields."""
    with open(path, encoding="utf-8", errors="replace") as f:
        stanza = {}
        for line in f:
            line = line.rstrip("\n")
            if not line:
                if stanza:
                    yield stanza
                stanza = {}
            elif line[0] not in " \t" and ":" in line:
                key, _, value = line.partition(":")
                stanza[key] = value.strip()
        if stanza:
            yield stanza


def read_lock(path):
    """The lock's entries: dicts with name, arch, version, sha256, archive, path, trees (a list)."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) != 7:
                raise LockError(f"{path}:{number}: expected 7 fields, got {len(fields)}")
            name, arch, version, sha256, archive, pool, trees = fields
            entries.append(dict(name=name, arch=arch, version=version, sha256=sha256, archive=archive,
                                path=pool, trees=trees.split(",")))
    return entries


def pairs(values, what):
    """KEY=VALUE arguments as (key, value) tuples."""
    out = []
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise LockError(f"{what} wants KEY=VALUE, got {value!r}")
        out.append((key, rest))
    return out


def load_indices(specs):
    """{(name, arch): [(version, sha256, archive, filename)]} from ARCHIVE=Packages-file arguments."""
    index = {}
    for archive, path in pairs(specs, "--index"):
        for s in stanzas(path):
            if "Package" in s and "Filename" in s and "SHA256" in s:
                index.setdefault((s["Package"], s.get("Architecture", "")), []).append(
                    (s["Version"], s["SHA256"], archive, s["Filename"]))
    return index


def cmd_resolve(args):
    wanted = {}
    for tree, status in pairs(args.status, "--status"):
        for s in stanzas(status):
            if s.get("Status", "").endswith(" installed"):
                wanted.setdefault((s["Package"], s["Architecture"], s["Version"]), set()).add(tree)
    for tree, spec in pairs(args.extra, "--extra"):
        name, sep, version = spec.partition("=")
        if not sep:
            raise LockError(f"--extra wants TREE=NAME=VERSION, got {tree}={spec}")
        # A package a tree also installs keeps one line, with both trees.
        same = [key for key in wanted if key[0] == name and key[2] == version]
        wanted.setdefault(same[0] if same else (name, "", version), set()).add(tree)
    index = load_indices(args.index)
    lines, missing = [], []
    for (name, arch, version), trees in sorted(wanted.items()):
        candidates = [c for a in ([arch] if arch else ["amd64", "all"]) for c in index.get((name, a), [])
                      if c[0] == version]
        if not candidates:
            missing.append(f"{name} {arch or '(any)'} {version}")
            continue
        _, sha256, archive, filename = candidates[0]
        arch = arch or filename.rsplit("_", 1)[1].split(".")[0]
        lines.append(f"{name} {arch} {version} {sha256} {archive} {filename} {','.join(sorted(trees))}\n")
    if missing:
        raise LockError("installed but not in the mirror's indices (the mirror moved on since the build: rebuild "
                        "with --clean, then lock):\n  " + "\n  ".join(missing))
    header = (
        "# The Debian packages of the dait image, its initrd and mkosi's tools tree, and those the scripts fetch\n"
        "# (host): written by `just image-lock` (scripts/image-lock.sh) from a build; scripts/image.sh installs\n"
        "# exactly these. Fields: name arch version sha256 archive pool-path trees.\n"
    )
    with open(args.out + ".tmp", "w", encoding="utf-8") as f:
        f.write(header)
        f.writelines(lines)
    os.replace(args.out + ".tmp", args.out)
    print(f"{args.out}: {len(lines)} packages", file=sys.stderr)
    return 0


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached(cache, entry):
    """The content-addressed cache file of a lock entry, or None when absent or wrong."""
    if not cache:
        return None
    path = os.path.join(cache, entry["sha256"] + ".deb")
    return path if os.path.isfile(path) and sha256_of(path) == entry["sha256"] else None


def archived(archive, entry):
    """The release archive's copy of a lock entry (named as in the pool), or None."""
    if not archive:
        return None
    path = os.path.join(archive, os.path.basename(entry["path"]))
    return path if os.path.isfile(path) else None


def cmd_check(args):
    index = load_indices(args.index)
    problems = []
    for e in read_lock(args.lock):
        if cached(args.cache, e) or archived(args.archive, e):
            continue
        available = index.get((e["name"], e["arch"]), [])
        if any(v == e["version"] and s == e["sha256"] for v, s, _, _ in available):
            continue
        same = [v for v, s, _, _ in available if v == e["version"]]
        if same:
            problems.append(f"{e['name']} ({e['arch']}): locked {e['version']} with sha256 {e['sha256']}, the "
                            f"mirror's {e['version']} has another sha256")
        else:
            have = ", ".join(sorted({v for v, _, _, _ in available})) or "none"
            problems.append(f"{e['name']} ({e['arch']}): locked version {e['version']}, the mirror has {have}")
    if problems:
        print("error: the mirror no longer has these locked packages:\n  " + "\n  ".join(problems) + "\n"
              + WAYS_ON, file=sys.stderr)
        return 1
    return 0


def cmd_fetch(args):
    mirrors = dict(pairs(args.mirror, "--mirror"))
    os.makedirs(args.cache, exist_ok=True)
    fetched = 0
    for e in read_lock(args.lock):
        if args.tree and args.tree not in e["trees"]:
            continue
        if cached(args.cache, e):
            continue
        target = os.path.join(args.cache, e["sha256"] + ".deb")
        source = archived(args.archive, e)
        fd, tmp = tempfile.mkstemp(dir=args.cache, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                if source:
                    with open(source, "rb") as f:
                        shutil.copyfileobj(f, out)
                elif e["archive"] in mirrors:
                    url = mirrors[e["archive"]].rstrip("/") + "/" + e["path"]
                    try:
                        with urllib.request.urlopen(url, timeout=120) as r:
                            shutil.copyfileobj(r, out)
                    except OSError as err:
                        raise LockError(f"{e['name']} {e['version']}: cannot download {url}: {err}\n"
                                        + WAYS_ON) from err
                else:
                    raise LockError(f"{e['name']} {e['version']}: not in {args.archive or 'an archive'} and no "
                                    f"mirror for {e['archive']}")
            got = sha256_of(tmp)
            if got != e["sha256"]:
                raise LockError(f"{e['name']} {e['version']}: {source or e['path']} has sha256 {got}, the lock "
                                f"says {e['sha256']}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
            fetched += 1
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    print(f"fetched {fetched} .deb files into {args.cache}", file=sys.stderr)
    return 0


def cmd_repo(args):
    pool = os.path.join(args.out, "pool")
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(pool)
    for e in read_lock(args.lock):
        if "host" in e["trees"] and len(e["trees"]) == 1:
            continue
        src = cached(args.cache, e)
        if not src:
            raise LockError(f"{e['name']} {e['version']} is not in {args.cache}: fetch first")
        dst = os.path.join(pool, os.path.basename(e["path"]))
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    with open(os.path.join(args.out, "Packages"), "wb") as f:
        subprocess.run(["dpkg-scanpackages", "--multiversion", "pool", "/dev/null"], cwd=args.out, stdout=f,
                       stderr=subprocess.DEVNULL, check=True)
    # An unsigned Release (the repository is `Trusted: yes`: every .deb in it was checked against the lock).
    packages = os.path.join(args.out, "Packages")
    with open(os.path.join(args.out, "Release"), "w", encoding="utf-8") as f:
        f.write("Origin: dait-lock\nLabel: dait-lock\nDate: Thu, 01 Jan 1970 00:00:00 UTC\nSHA256:\n"
                f" {sha256_of(packages)} {os.path.getsize(packages)} Packages\n")
    return 0


def cmd_verify(args):
    entries = read_lock(args.lock)
    bad = []
    for tree, status in pairs(args.status, "--status"):
        locked = {(e["name"], e["arch"], e["version"]) for e in entries if tree in e["trees"]}
        installed = {(s["Package"], s["Architecture"], s["Version"]) for s in stanzas(status)
                     if s.get("Status", "").endswith(" installed")}
        bad += [f"{tree}: installed {n} {a} {v}, not locked" for n, a, v in sorted(installed - locked)]
        bad += [f"{tree}: locked {n} {a} {v}, not installed" for n, a, v in sorted(locked - installed)]
    if bad:
        print("error: the build's packages differ from the lock:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    return 0


def cmd_path(args):
    for e in read_lock(args.lock):
        if e["name"] == args.name:
            path = cached(args.cache, e)
            if not path:
                raise LockError(f"{args.name} is not in {args.cache}: fetch first")
            print(path)
            return 0
    raise LockError(f"{args.name} is not in {args.lock}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("resolve")
    p.add_argument("--status", action="append", required=True)
    p.add_argument("--extra", action="append")
    p.add_argument("--index", action="append", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("check")
    p.add_argument("lock")
    p.add_argument("--index", action="append")
    p.add_argument("--cache")
    p.add_argument("--archive")
    p = sub.add_parser("fetch")
    p.add_argument("lock")
    p.add_argument("--cache", required=True)
    p.add_argument("--mirror", action="append")
    p.add_argument("--archive")
    p.add_argument("--tree")
    p = sub.add_parser("repo")
    p.add_argument("lock")
    p.add_argument("--cache", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("verify")
    p.add_argument("lock")
    p.add_argument("--status", action="append", required=True)
    p = sub.add_parser("path")
    p.add_argument("lock")
    p.add_argument("name")
    p.add_argument("--cache", required=True)
    args = parser.parse_args()
    try:
        return globals()["cmd_" + args.cmd](args)
    except LockError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
