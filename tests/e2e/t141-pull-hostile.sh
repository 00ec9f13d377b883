#!/usr/bin/env bash
# Pulls that verify while they download, against hostile archives and a
# hostile web server on 127.0.0.1. A pull must reach the verdict of
# `bundle verify` and leave nothing behind when it fails. It must also
# finish quickly on a stream of many damaged local headers.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=$SRC/tests/tools
ID=two-v1.0
EXAMPLES=$SRC/examples/skills
"$SM" bundle create "$EXAMPLES/brand-guidelines" "$EXAMPLES/frontend-design" --name two \
  --version 1.0 --description "two skills" --author e2e -o "$TMP/two.skillmeat-pack" >/dev/null
check "fixture bundle was created" test -s "$TMP/two.skillmeat-pack"
sm vault add loc local "$TMP/vault"
expect "add the local vault" 0
sm vault push "$TMP/two.skillmeat-pack" --vault loc --no-progress
expect "push the fixture" 0
cp "$TMP/vault/metadata/$ID.json" "$TMP/metadata.json"

# install FILE: stores FILE as the bundle's data, with metadata naming its size and SHA-256.
install() {
  cp "$1" "$TMP/vault/bundles/$ID.skillmeat-pack"
  python3 - "$1" "$TMP/metadata.json" "$TMP/vault/metadata/$ID.json" <<'PY'
import hashlib, json, sys
data = open(sys.argv[1], 'rb').read()
meta = json.load(open(sys.argv[2]))
meta['metadata']['sha256'] = hashlib.sha256(data).hexdigest()
meta['size_bytes'] = len(data)
json.dump(meta, open(sys.argv[3], 'w'), indent=2)
PY
}

# empty NAME DIR: passes when DIR contains no file.
empty() {
  if [ -z "$(ls -A "$2" 2>/dev/null)" ]; then ok "$1"; else not_ok "$1" "left: $(ls -A "$2")"; fi
}

# --- archives whose local headers and central directory disagree ---

mkdir "$TMP/variants"
python3 "$TOOLS/hostile_zip.py" variants "$TMP/two.skillmeat-pack" "$TMP/variants" >/dev/null
check "hostile archives were written" test -s "$TMP/variants/plain.skillmeat-pack"
good=0
bad=0
# not_in_err TEXT: passes when stderr of the last command lacks TEXT.
not_in_err() { ! grep -qF -- "$1" "$ERR"; }

for f in "$TMP/variants"/*.skillmeat-pack; do
  name=$(basename "$f" .skillmeat-pack)
  run "$SM" bundle verify "$f"
  verdict=$CODE
  install "$f"
  sm vault pull "$ID" --vault loc -o "$TMP/out-$name" --no-progress
  if [ "$verdict" -eq 0 ]; then
    good=$((good + 1))
    expect "$name: pull succeeds as verify does" 0
    check "$name: pulled file is the served one" cmp -s "$f" "$TMP/out-$name/$ID.skillmeat-pack"
  else
    bad=$((bad + 1))
    expect_err "$name: pull fails as verify does" 7 "bundle '$ID'"
    check "$name: message names no staging file" not_in_err "/proc/self/fd"
    empty "$name: failed pull leaves nothing" "$TMP/out-$name"
  fi
done
check "some hostile archives verify" test "$good" -ge 5
check "most hostile archives fail" test "$bad" -ge 10

# --- many damaged local headers, each in a folder of its own (10 MB) ---

python3 "$TOOLS/hostile_zip.py" damaged 200000 "$TMP/damaged.pack"
install "$TMP/damaged.pack"
start=$SECONDS
sm vault pull "$ID" --vault loc -o "$TMP/out-damaged" --no-progress
expect_err "damaged headers: pull fails" 7 "is damaged"
check "damaged headers: pull takes under 30 s" test $((SECONDS - start)) -lt 30
empty "damaged headers: failed pull leaves nothing" "$TMP/out-damaged"

# --- a web server that changes the bundle between and during requests ---

HS=$TMP/hostile-http
mkdir "$HS"
ln -s "$TMP/vault" "$HS/vault"
cp "$TMP/two.skillmeat-pack" "$HS/A.pack"
# B: A with one byte of artifact data changed in its second half
python3 - "$HS/A.pack" "$HS/B.pack" <<'PY'
import sys, zipfile
data = bytearray(open(sys.argv[1], 'rb').read())
for info in zipfile.ZipFile(sys.argv[1]).infolist():
    start = info.header_offset + 30 + int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], 'little') \
        + int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], 'little')
    if info.filename.startswith('artifacts/') and start > len(data) // 2 and info.compress_size > 20:
        data[start + 10] ^= 1
        break
else:
    sys.exit('no artifact entry in the second half')
open(sys.argv[2], 'wb').write(data)
PY
check "B differs from A" bash -c "! cmp -s '$HS/A.pack' '$HS/B.pack'"
run "$SM" bundle verify "$HS/B.pack"
expect "B fails bundle verify" 7
echo none >"$HS/mode"
python3 "$TOOLS/hostile_http.py" "$HS/port" "$HS" 2>"$HS/log" &
HTTP_PID=$!
trap 'kill "$HTTP_PID" 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do [ -s "$HS/port" ] && break; sleep 0.1; done
sm vault add web http "http://127.0.0.1:$(cat "$HS/port")" --allow-http
expect "add the hostile http vault" 0

# hpull CASE META: pulls with ROOT/mode set to CASE and the metadata of META (A or B).
hpull() {
  echo "$1 $2" >"$HS/mode"
  install "$HS/$2.pack"
  rm -rf "$SKILLMEAT_HOME/cache" "$TMP/out-http"
  sm vault pull "$ID" --vault web -o "$TMP/out-http" --no-progress
}

for mode in cut-range cut-norange redirect swap-mid; do
  hpull "$mode" A
  expect_err "$mode, A's SHA-256: pull fails" 7 "is corrupt: SHA-256"
  empty "$mode, A's SHA-256: nothing left" "$TMP/out-http"
  hpull "$mode" B
  expect_err "$mode, B's SHA-256: pull fails verification" 7 "failed verification"
  empty "$mode, B's SHA-256: nothing left" "$TMP/out-http"
done
hpull cut-wrongrange A
expect_err "resume at the wrong offset exits 8" 8 "a resumed download starts at the wrong offset"
empty "resume at the wrong offset leaves nothing" "$TMP/out-http"

# a server that ignores Range and sends the same bundle again: the file is read again and kept
cp "$HS/A.pack" "$HS/B.pack"
hpull cut-norange A
expect "cut, then the whole bundle again: pull succeeds" 0
check "cut, then the whole bundle again: file is A" cmp -s "$HS/A.pack" "$TMP/out-http/$ID.skillmeat-pack"
check "the server saw a retry" test "$(grep -c '^GET /bundles/' "$HS/log")" -ge 2

finish
