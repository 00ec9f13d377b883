#!/usr/bin/env bash
# Hostile and unusual inputs found by trying to break the tool: terminal
# escapes in bundle metadata, oversized records, a vault that lost its
# metadata directory, forced pushes racing pulls or killed half-way, and
# command-line mistakes. Each case checks the error, the exit code and
# that nothing was lost or written.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

V="$TMP/vault"
"$SM" vault add main local "$V" --set-default >/dev/null

json_check() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}

# rewrite_manifest IN OUT PYTHON: copies bundle IN to OUT after running the
# Python statement on the manifest `m`, and recomputes the bundle hash the
# way the original tool does, so the result verifies.
rewrite_manifest() {
  python3 - "$1" "$2" "$3" "$SRC/tests/interop" <<'PY'
import json, sys, zipfile
sys.path.insert(0, sys.argv[4])
from check_bundle import bundle_hash
src, dst, code = sys.argv[1:4]
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
    m = json.loads(zin.read("manifest.json"))
    exec(code)
    m["bundle_hash"] = bundle_hash(m)
    for info in zin.infolist():
        if info.filename != "manifest.json":
            zout.writestr(info, zin.read(info.filename))
    zout.writestr("manifest.json", json.dumps(m, indent=2, sort_keys=True, ensure_ascii=False))
PY
}

make_bundle plain 1.0 plain.skillmeat-pack tools

# --- terminal escapes in untrusted metadata are shown escaped ---

rewrite_manifest plain.skillmeat-pack ansi.skillmeat-pack \
  'm["description"] = "\x1b[2J\x1b[31mPWNED"; m["author"] = "x\rOVERWRITE"; m["tags"] = ["a\nforged"]; m["name"] = "ansi"'
sm bundle verify ansi.skillmeat-pack
expect "escape bundle verifies" 0
sm bundle inspect ansi.skillmeat-pack
expect "inspect escape bundle exits 0" 0
if grep -q $'\x1b' "$OUT" || grep -q $'\r' "$OUT"; then not_ok "inspect prints no raw control bytes"
else ok "inspect prints no raw control bytes"; fi
expect_out "inspect shows the escape as text" '\x1b[2J'
sm vault push ansi.skillmeat-pack
expect "push escape bundle exits 0" 0
sm vault ls
if grep -q $'\x1b' "$OUT" || [ "$(grep -c forged "$OUT")" -ne 1 ] || grep -q '^forged' "$OUT"; then
  not_ok "ls cannot forge lines or escapes"
else ok "ls cannot forge lines or escapes"; fi
sm vault info ansi-v1.0
if grep -q $'\x1b' "$OUT"; then not_ok "info prints no raw escapes"; else ok "info prints no raw escapes"; fi
sm vault info ansi-v1.0 --json
check "info --json keeps the exact value" json_check "$OUT" 'd["description"] == "\x1b[2J\x1b[31mPWNED"'

# --- a record too large for readers is rejected at push ---

digest=$(tree_digest "$V")
rewrite_manifest plain.skillmeat-pack huge.skillmeat-pack \
  'import random; random.seed(7); m["name"] = "huge"; m["description"] = "".join(random.choice("abcdefghij klmnopqrstuvwxyz") for _ in range(1100000))'
sm vault push huge.skillmeat-pack
expect_err "push of an oversized record exits 9" 9 "more than the limit"
check "oversized push leaves the vault unchanged" test "$(tree_digest "$V")" = "$digest"

# --- index.json is never replaced by an empty one ---

make_bundle keep 1.0 keep.skillmeat-pack
"$SM" vault push keep.skillmeat-pack >/dev/null
cp "$V/index.json" index.before
mv "$V/metadata" "$TMP/metadata.away"
sm vault ls
expect_err "ls without metadata/ exits 7" 7 "no metadata directory"
check "ls without metadata/ keeps index.json" cmp -s index.before "$V/index.json"
mv "$TMP/metadata.away" "$V/metadata"
sm vault ls --json
check "ls lists again once metadata/ is back" json_check "$OUT" '"keep-v1.0" in [r["bundle_id"] for r in d]'

# --- a forced push killed between data and metadata ---

make_bundle race 1.0 race-a.skillmeat-pack
"$SM" bundle create "$SRC/examples/skills/internal-comms" --name race --version 1.0 \
  --description "another build" --author e2e -o race-b.skillmeat-pack >/dev/null
"$SM" vault push race-a.skillmeat-pack >/dev/null
# stage what a push of B leaves when killed after renaming the data: B's
# record as the pending file, B's bytes as the data, A's metadata in place
"$SM" vault add side local "$TMP/side" >/dev/null
"$SM" vault push race-b.skillmeat-pack --vault side >/dev/null
cp "$TMP/side/metadata/race-v1.0.json" "$V/metadata/.race-v1.0.json.pending"
cp race-b.skillmeat-pack "$V/bundles/race-v1.0.skillmeat-pack"
sm vault ls --json
check "interrupted force push keeps the id listed" json_check "$OUT" '"race-v1.0" in [r["bundle_id"] for r in d]'
sm vault pull race-v1.0 --output pulled-race
expect "pull after an interrupted force push exits 0" 0
check "pull gets the bytes the data file holds" cmp -s race-b.skillmeat-pack pulled-race/race-v1.0.skillmeat-pack
"$SM" vault push plain.skillmeat-pack >/dev/null 2>"$TMP/settle.err"
check "next push completes the interrupted one" grep -q "completed the interrupted push of 'race-v1.0'" "$TMP/settle.err"
check "pending file is gone" test ! -e "$V/metadata/.race-v1.0.json.pending"
sm vault info race-v1.0 --json
check "metadata now names the new data" json_check "$OUT" \
  "d['metadata']['sha256'] == '$(sha256sum race-b.skillmeat-pack | cut -d' ' -f1)'"

# a pending record that does not match the data is discarded
cp "$TMP/side/metadata/race-v1.0.json" "$V/metadata/.race-v1.0.json.pending"
cp race-a.skillmeat-pack "$V/bundles/race-v1.0.skillmeat-pack"
"$SM" vault push keep.skillmeat-pack >/dev/null 2>&1
check "stale pending file is removed" test ! -e "$V/metadata/.race-v1.0.json.pending"
sm vault pull race-v1.0 --output pulled-stale
expect_err "data matching no record is an integrity error" 7 "is corrupt"
check "failed pull leaves no file" test ! -e pulled-stale/race-v1.0.skillmeat-pack
"$SM" vault push race-b.skillmeat-pack --force >/dev/null

# --- pulls racing forced pushes of the same id always succeed ---

(
  for i in $(seq 1 15); do
    "$SM" vault push race-a.skillmeat-pack --force >/dev/null 2>&1
    "$SM" vault push race-b.skillmeat-pack --force >/dev/null 2>&1
  done
) &
pusher=$!
failures=0
for i in $(seq 1 20); do
  if ! "$SM" vault pull race-v1.0 --output "pulls/$i" >/dev/null 2>"$TMP/pull.err"; then
    failures=$((failures + 1))
    cat "$TMP/pull.err"
  fi
done
wait $pusher
if [ "$failures" -eq 0 ]; then ok "20 pulls during 30 forced pushes all succeed"
else not_ok "20 pulls during 30 forced pushes all succeed" "$failures failed"; fi

# --- command-line mistakes ---

sm vault pull nope-v1 --output newdir
expect_err "pull of a missing id exits 3" 3 "'nope-v1' not found"
check "pull of a missing id creates no directory" test ! -e newdir

sm vault ls --filter
expect_err "option without its value exits 2" 2 "option '--filter' needs a value"
sm bundle inspect -zq.pack
expect_err "unknown short option is named" 2 "unknown option '-z'"
sm vault list --frobnicate
expect_err "unknown long option is named" 2 "unknown option '--frobnicate'"

mkdir -p skill-copy && cp -r "$SRC/examples/skills/brand-guidelines/." skill-copy/
before=$(sha256sum skill-copy/SKILL.md)
sm bundle create skill-copy --name x --version 1 --description d --author a -o skill-copy/SKILL.md
expect_err "create into its own skill folder exits 2" 2 "inside the skill folder"
check "create into its own folder keeps SKILL.md" test "$(sha256sum skill-copy/SKILL.md)" = "$before"
mkdir -p outdir
sm bundle create skill-copy --name x --version 1 --description d --author a -o outdir
expect_err "create to a directory exits 2" 2 "is a directory"
sm bundle create skill-copy --name x --version ../../x --description d --author a -o x.pack
expect_err "create with an unusable version exits 2" 2 "invalid --version '../../x'"
check "create with an unusable version writes nothing" test ! -e x.pack

cp "$SKILLMEAT_HOME/sharing.toml" toml.before
sm vault add nl local "$(printf '%s/a\nb' "$TMP")"
expect_err "vault path with a newline exits 2" 2 "without control characters"
check "newline path creates no directory" test ! -e "$TMP/a"$'\n'"b"
echo data > plainfile
sm vault add f local plainfile
expect_err "a regular file as vault exits 9" 9 "is not a directory"
check "rejected adds keep sharing.toml" cmp -s toml.before "$SKILLMEAT_HOME/sharing.toml"

sm vault auth main --json
check "auth --json on a local vault" json_check "$OUT" 'd["credentials_needed"] is False and d["vault"] == "main"'
sm vault list --json
check "list --json reports read_only as a boolean only" json_check "$OUT" \
  'all(isinstance(v["read_only"], bool) and "read_only" not in v["settings"] for v in d)'

mkfifo pipe.pack
run timeout 10 "$SM" bundle inspect pipe.pack
expect_err "inspect of a FIFO exits 9 without blocking" 9 "not a regular file"
cp "$SKILLMEAT_HOME/sharing.toml" home.toml && rm "$SKILLMEAT_HOME/sharing.toml" && mkfifo "$SKILLMEAT_HOME/sharing.toml"
run timeout 10 "$SM" vault list
expect_err "a FIFO as sharing.toml exits 9 without blocking" 9 "not a regular file"
rm "$SKILLMEAT_HOME/sharing.toml" && cp home.toml "$SKILLMEAT_HOME/sharing.toml"

finish
