#!/usr/bin/env bash
# Tests the package lock's checker and fetcher (scripts/deb-lock.py), not the mirror: a fake Packages index and
# fake .debs in a temporary directory stand in for it. Checks that
#   - a lock whose versions and sha256s the index has passes, and its .debs are fetched and verified;
#   - a lock entry changed to a version the index lacks fails, naming the package, the locked and the available
#     version and both ways on (re-lock, DAIT_DEB_ARCHIVE);
#   - the same version with another sha256 fails;
#   - a release archive holding the locked .deb satisfies the check without the index, and a .deb there whose
#     sha256 differs from the lock is refused;
#   - a build whose installed packages differ from the lock fails `verify`.
# Run by scripts/test.sh. Exit codes: 0 every check passed, 1 one failed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
lock_py=(python3 scripts/deb-lock.py)
failures=0
fail() { log "FAIL: $*"; failures=$((failures + 1)); }

# A fake mirror: pool files with known content and the index that describes them.
mkdir -p "$tmp/mirror/pool/main/h" "$tmp/mirror/pool/main/w" "$tmp/cache" "$tmp/archive"
printf 'hello deb\n' >"$tmp/mirror/pool/main/h/hello_2.10-5_amd64.deb"
printf 'world deb\n' >"$tmp/mirror/pool/main/w/world_1.0-1_all.deb"
sum() { sha256sum "$1" | cut -d' ' -f1; }
hello_sha="$(sum "$tmp/mirror/pool/main/h/hello_2.10-5_amd64.deb")"
world_sha="$(sum "$tmp/mirror/pool/main/w/world_1.0-1_all.deb")"
cat >"$tmp/Packages" <<INDEX
Package: hello
Architecture: amd64
Version: 2.10-5
Filename: pool/main/h/hello_2.10-5_amd64.deb
SHA256: $hello_sha

Package: world
Architecture: all
Version: 1.0-1
Filename: pool/main/w/world_1.0-1_all.deb
SHA256: $world_sha
INDEX
cat >"$tmp/good.lock" <<LOCK
# a comment
hello amd64 2.10-5 $hello_sha debian pool/main/h/hello_2.10-5_amd64.deb image,tools
world all 1.0-1 $world_sha debian pool/main/w/world_1.0-1_all.deb tools
LOCK

# 1. The lock the index agrees with passes, and fetch puts both .debs into the content-addressed cache.
"${lock_py[@]}" check "$tmp/good.lock" --index "debian=$tmp/Packages" || fail "a lock the index agrees with failed"
"${lock_py[@]}" fetch "$tmp/good.lock" --cache "$tmp/cache" --mirror "debian=file://$tmp/mirror" 2>/dev/null ||
    fail "fetching the good lock failed"
[[ -f "$tmp/cache/$hello_sha.deb" && -f "$tmp/cache/$world_sha.deb" ]] || fail "fetch did not fill the cache"

# 2. A version the mirror lacks: the message names the package, both versions and the two ways on.
sed 's/^hello amd64 2.10-5 /hello amd64 2.10-4 /' "$tmp/good.lock" >"$tmp/old.lock"
if "${lock_py[@]}" check "$tmp/old.lock" --index "debian=$tmp/Packages" 2>"$tmp/err"; then
    fail "a locked version the index lacks passed the check"
fi
for want in "hello (amd64): locked version 2.10-4, the mirror has 2.10-5" "just image-lock" "DAIT_DEB_ARCHIVE="; do
    grep -qF "$want" "$tmp/err" || fail "the message lacks '$want': $(cat "$tmp/err")"
done
grep -q world "$tmp/err" && fail "the message names world, which the mirror has"

# 3. The locked version with another sha256 fails too.
sed "s/^hello amd64 2.10-5 $hello_sha /hello amd64 2.10-5 ${world_sha} /" "$tmp/good.lock" >"$tmp/sum.lock"
if "${lock_py[@]}" check "$tmp/sum.lock" --index "debian=$tmp/Packages" 2>"$tmp/err"; then
    fail "a locked sha256 the index does not have passed the check"
fi
grep -qF "hello (amd64): locked 2.10-5 with sha256 $world_sha" "$tmp/err" || fail "wrong message: $(cat "$tmp/err")"

# 4. The release archive has the old version: the check passes without any index, fetch takes it from there;
#    an archived file whose content is not the locked one is refused.
printf 'hello 2.10-4 deb\n' >"$tmp/archive/hello_2.10-4_amd64.deb"
old_sha="$(sum "$tmp/archive/hello_2.10-4_amd64.deb")"
cat >"$tmp/archived.lock" <<LOCK
hello amd64 2.10-4 $old_sha debian pool/main/h/hello_2.10-4_amd64.deb image
LOCK
"${lock_py[@]}" check "$tmp/archived.lock" --archive "$tmp/archive" || fail "the archive did not satisfy the check"
"${lock_py[@]}" fetch "$tmp/archived.lock" --cache "$tmp/cache" --archive "$tmp/archive" 2>/dev/null ||
    fail "fetch from the archive failed"
[[ -f "$tmp/cache/$old_sha.deb" ]] || fail "fetch from the archive did not fill the cache"
printf 'tampered\n' >"$tmp/archive/hello_2.10-4_amd64.deb"
rm -f "$tmp/cache/$old_sha.deb"
if "${lock_py[@]}" fetch "$tmp/archived.lock" --cache "$tmp/cache" --archive "$tmp/archive" 2>"$tmp/err"; then
    fail "a tampered archived .deb was accepted"
fi
grep -qF "the lock says $old_sha" "$tmp/err" || fail "wrong message: $(cat "$tmp/err")"
[[ -e "$tmp/cache/$old_sha.deb" ]] && fail "the tampered .deb reached the cache"

# 5. verify: the installed set (a dpkg status file) must be exactly the tree's locked set.
cat >"$tmp/status" <<STATUS
Package: hello
Status: install ok installed
Architecture: amd64
Version: 2.10-5

Package: world
Status: install ok installed
Architecture: all
Version: 1.0-1
STATUS
"${lock_py[@]}" verify "$tmp/good.lock" --status "tools=$tmp/status" || fail "verify refused the locked set"
if "${lock_py[@]}" verify "$tmp/good.lock" --status "image=$tmp/status" 2>"$tmp/err"; then
    fail "verify accepted a tree with a package the lock does not give it"
fi
grep -qF "image: installed world all 1.0-1, not locked" "$tmp/err" || fail "wrong message: $(cat "$tmp/err")"

if ((failures)); then
    log "$failures check(s) failed"
    exit 1
fi
log "all lock checks passed"
