#!/usr/bin/env bash
# End-to-end tests of compatibility with the original Python tool: bundles
# we create pass the format checker in tests/interop, a vault it wrote is
# read as it is, and pushing into such a vault keeps its entries and writes
# records of the same shape as its own.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ORIGINAL="$SHARED/fixtures/original"
CHECKER="$SRC/tests/interop/check_bundle.py"
RO="$TMP/original-ro"
RW="$TMP/original-rw"

json_check() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}

check "original vault fixture exists" test -f "$ORIGINAL/local-vault-example/index.json"
check "bundle checker exists" test -f "$CHECKER"

# two copies of the original vault; cp -a keeps the timestamps it was made with
cp -a "$ORIGINAL/local-vault-example" "$RO"
cp -a "$ORIGINAL/local-vault-example" "$RW"
chmod -R u+w "$RW"
"$SM" vault add original-ro local "$RO" --read-only >/dev/null
"$SM" vault add original-rw local "$RW" >/dev/null
"$SM" vault add ours local "$TMP/ours" --set-default >/dev/null
RO_DIGEST=$(tree_digest "$RO")

# --- our bundles pass the original format checks ---

make_bundle interop-kit 3.1.4 "$TMP/kit.skillmeat-pack" interop e2e
check "bundle created" test -s "$TMP/kit.skillmeat-pack"
run python3 "$CHECKER" "$TMP/kit.skillmeat-pack"
expect "checker accepts a created bundle" 0
"$SM" bundle create "$SRC/examples/skills/brand-guidelines" "$SRC/examples/skills/internal-comms" \
  --name two-skills --version 1.0 --description "two skills" --author e2e --license MIT \
  -o "$TMP/two.skillmeat-pack" >/dev/null
run python3 "$CHECKER" "$TMP/two.skillmeat-pack"
expect "checker accepts a two-skill bundle" 0
run python3 "$CHECKER" "$ORIGINAL/demo-bundle.skillmeat-pack"
expect "checker accepts the original fixture" 0

python3 -W ignore - "$TMP/kit.skillmeat-pack" "$TMP/tampered.skillmeat-pack" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zin, zipfile.ZipFile(sys.argv[2], "w") as zout:
    for info in zin.infolist():
        data = zin.read(info)
        if info.filename.endswith("/SKILL.md"):
            data += b"\nchanged\n"
        zout.writestr(info, data)
EOF
run python3 "$CHECKER" "$TMP/tampered.skillmeat-pack"
check "checker rejects a tampered bundle" test "$CODE" -ne 0

# --- a vault written by the original tool ---

sm vault ls --vault original-ro
expect "ls original vault exits 0" 0
expect_out "ls original vault lists its bundle" "demo-bundle-v1.0"

sm vault ls --vault original-ro --json
expect "ls --json original vault exits 0" 0
cp "$OUT" "$TMP/ls.json"
check "original vault has one bundle" json_check "$TMP/ls.json" 'len(d) == 1'
check "original bundle id" json_check "$TMP/ls.json" 'd[0]["bundle_id"] == "demo-bundle-v1.0"'
check "original bundle version" json_check "$TMP/ls.json" 'd[0]["version"] == "1.0"'
check "original bundle size" json_check "$TMP/ls.json" 'd[0]["size_bytes"] == 1184'
check "original bundle tags" json_check "$TMP/ls.json" 'd[0]["tags"] == ["demo", "fixture"]'
check "original record read unchanged" python3 -c \
  'import json, sys; sys.exit(json.load(open(sys.argv[1]))[0] != json.load(open(sys.argv[2])))' \
  "$TMP/ls.json" "$RO/metadata/demo-bundle-v1.0.json"

sm vault info demo-bundle-v1.0 --vault original-ro
expect "info original bundle exits 0" 0
expect_out "info original bundle author" "fixture@example.com"

sm vault pull demo-bundle-v1.0 --vault original-ro --output "$TMP/pulled"
expect "pull from original vault exits 0" 0
expect_out "pull from original vault verifies" "(verified)"
check "pull from original vault gives its bytes" \
  cmp -s "$RO/bundles/demo-bundle-v1.0.skillmeat-pack" "$TMP/pulled/demo-bundle-v1.0.skillmeat-pack"
sm bundle verify "$TMP/pulled/demo-bundle-v1.0.skillmeat-pack"
expect "pulled original bundle verifies" 0
check "read-only original vault unchanged" test "$(tree_digest "$RO")" = "$RO_DIGEST"

# --- pushing into the original vault ---

cp "$RW/index.json" "$TMP/index-before.json"
sm vault push "$TMP/kit.skillmeat-pack" --vault original-rw
expect "push into original vault exits 0" 0
check "original entry stays in index.json" python3 -c \
  'import json, sys; sys.exit(json.load(open(sys.argv[1]))["demo-bundle-v1.0"] != json.load(open(sys.argv[2]))["demo-bundle-v1.0"])' \
  "$TMP/index-before.json" "$RW/index.json"
check "index.json gains our entry" json_check "$RW/index.json" \
  'sorted(d) == ["demo-bundle-v1.0", "interop-kit-v3.1.4"]'
check "original metadata file untouched" \
  cmp -s "$ORIGINAL/local-vault-example/metadata/demo-bundle-v1.0.json" "$RW/metadata/demo-bundle-v1.0.json"
check "original bundle file untouched" \
  cmp -s "$ORIGINAL/local-vault-example/bundles/demo-bundle-v1.0.skillmeat-pack" "$RW/bundles/demo-bundle-v1.0.skillmeat-pack"

# the record must have the shape of the original's metadata files: the same
# twelve keys, their JSON types, and timestamps datetime.fromisoformat() parses
python3 - "$RW/metadata/interop-kit-v3.1.4.json" "$RW/index.json" "$TMP/kit.skillmeat-pack" \
  >"$TMP/record-problems.txt" 2>&1 <<'EOF'
import datetime, hashlib, json, os, sys
record = json.load(open(sys.argv[1]))
index = json.load(open(sys.argv[2]))
bundle = sys.argv[3]
fields = {
    "bundle_id": str, "name": str, "version": str, "description": str,
    "author": str, "created_at": str, "uploaded_at": str, "size_bytes": int,
    "bundle_hash": str, "tags": list, "vault_path": str, "metadata": dict,
}
if set(record) != set(fields):
    print("keys", sorted(record))
for key, kind in fields.items():
    if not isinstance(record.get(key), kind):
        print("type of", key, type(record.get(key)).__name__)
for key in ("created_at", "uploaded_at"):
    try:
        datetime.datetime.fromisoformat(record[key])
    except (KeyError, TypeError, ValueError) as e:
        print(key, "does not parse:", e)
expected = {
    "bundle_id": "interop-kit-v3.1.4", "name": "interop-kit", "version": "3.1.4",
    "description": "test bundle interop-kit", "author": "e2e",
    "size_bytes": os.path.getsize(bundle), "tags": ["interop", "e2e"],
}
for key, value in expected.items():
    if record.get(key) != value:
        print(key, record.get(key), "expected", value)
if not record.get("bundle_hash", "").startswith("sha256:"):
    print("bundle_hash", record.get("bundle_hash"))
if not record.get("vault_path", "").endswith("/bundles/interop-kit-v3.1.4.skillmeat-pack"):
    print("vault_path", record.get("vault_path"))
digest = hashlib.sha256(open(bundle, "rb").read()).hexdigest()
if record.get("metadata", {}).get("sha256") != digest:
    print("metadata.sha256", record.get("metadata"))
if index.get("interop-kit-v3.1.4") != record:
    print("index entry differs from the metadata file")
EOF
check "pushed record reads like the original's" test ! -s "$TMP/record-problems.txt"
[ -s "$TMP/record-problems.txt" ] && sed 's/^/     /' "$TMP/record-problems.txt"

check "pushed bundle matches the manifest hash" python3 -c '
import json, sys, zipfile
record = json.load(open(sys.argv[1]))
manifest = json.loads(zipfile.ZipFile(sys.argv[2]).read("manifest.json"))
sys.exit(record["bundle_hash"] != manifest["bundle_hash"] or record["created_at"] != manifest["created_at"])
' "$RW/metadata/interop-kit-v3.1.4.json" "$TMP/kit.skillmeat-pack"

sm vault ls --vault original-rw --json
check "original vault lists both bundles" json_check "$OUT" \
  '[r["bundle_id"] for r in d] == ["demo-bundle-v1.0", "interop-kit-v3.1.4"]'
sm vault pull demo-bundle-v1.0 --vault original-rw --output "$TMP/pulled-rw"
expect "pull original bundle after push exits 0" 0

digest=$(tree_digest "$RW")
sm vault push "$ORIGINAL/demo-bundle.skillmeat-pack" --vault original-rw
expect "re-push of the original's own bundle exits 0" 0
check "re-push of the original's bundle says unchanged" grep -q "same contents" "$OUT"
check "re-push of the original's bundle changes nothing" test "$(tree_digest "$RW")" = "$digest"

# --- the original's bundle in a vault of ours ---

sm vault push "$ORIGINAL/demo-bundle.skillmeat-pack" --json
expect "push original bundle into our vault exits 0" 0
check "original bundle gets the original id" json_check "$OUT" \
  'd["bundle_id"] == "demo-bundle-v1.0" and d["version"] == "1.0" and d["size_bytes"] == 1184'
sm vault pull demo-bundle-v1.0 --output "$TMP/ours-pulled"
expect "pull original bundle from our vault exits 0" 0
check "original bundle round-trips" \
  cmp -s "$ORIGINAL/demo-bundle.skillmeat-pack" "$TMP/ours-pulled/demo-bundle-v1.0.skillmeat-pack"
run python3 "$CHECKER" "$TMP/ours-pulled/demo-bundle-v1.0.skillmeat-pack"
expect "checker accepts the round-tripped bundle" 0

finish
