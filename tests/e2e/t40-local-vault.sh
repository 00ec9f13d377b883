#!/usr/bin/env bash
# End-to-end tests of a local vault through `skillmeat vault push | pull |
# ls | info | delete`: the stored layout, immutable versions, read-only
# vaults, damaged data and index.json as a cache of metadata/.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

V="$TMP/vault"
B="$TMP/bundles"
mkdir -p "$B"

json_check() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}

listing() {
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort)
}

# unchanged NAME DIGEST: passes when the vault's tree_digest is still DIGEST.
unchanged() {
  if [ "$(tree_digest "$V")" = "$2" ]; then ok "$1"; else
    not_ok "$1" "vault files now: $(listing "$V" | tr '\n' ' ')"; fi
}

# index_ids: the ids in the vault's index.json, space-separated and sorted.
index_ids() {
  python3 -c 'import json, sys; print(" ".join(sorted(json.load(open(sys.argv[1])))))' "$V/index.json"
}

# ls_ids ARGS...: the ids that `vault ls --json ARGS` lists, space-separated.
ls_ids() {
  "$SM" vault ls --json "$@" 2>/dev/null |
    python3 -c 'import json, sys; print(" ".join(r["bundle_id"] for r in json.load(sys.stdin)))'
}

make_bundle alpha-tools 1.0 "$B/alpha.skillmeat-pack" docs style
make_bundle Beta-Tools 2.0 "$B/beta.skillmeat-pack" docs
make_bundle gamma 0.1 "$B/gamma.skillmeat-pack"
make_bundle delta 1.0 "$B/delta.skillmeat-pack"
"$SM" bundle create "$SRC/examples/skills/brand-guidelines" --name alpha-tools --version 1.0 \
  --description "a different build of alpha" --author e2e -o "$B/alpha-other.skillmeat-pack" >/dev/null
check "fixture bundles were created" test -s "$B/alpha-other.skillmeat-pack"

# --- no vault configured ---

sm vault ls
expect_err "ls without vaults exits 3" 3 "vault add"
sm vault push "$B/alpha.skillmeat-pack"
expect_err "push without vaults exits 3" 3 "vault add"
sm vault pull alpha-tools-v1.0
expect_err "pull without vaults exits 3" 3 "vault add"
check "pull without vaults writes nothing" test ! -e "$TMP/alpha-tools-v1.0.skillmeat-pack"

mkdir -p "$SKILLMEAT_HOME"
printf '[sharing]\ndefault_vault = "gone"\n' >"$SKILLMEAT_HOME/sharing.toml"
sm vault ls
expect_err "ls with a missing default vault exits 3" 3 "default vault 'gone' not found"
rm "$SKILLMEAT_HOME/sharing.toml"

"$SM" vault add main local "$V" >/dev/null
"$SM" vault add spare local "$TMP/spare" >/dev/null
sm vault ls
expect_err "ls with two vaults and no default exits 3" 3 "none is the default"
"$SM" vault set-default main >/dev/null

sm vault ls --vault nosuch
expect_err "ls --vault unknown exits 3" 3 "nosuch"
sm vault push "$B/alpha.skillmeat-pack" --vault nosuch
expect_err "push --vault unknown exits 3" 3 "nosuch"

# --- push ---

sm vault ls
expect "ls empty vault exits 0" 0
expect_out "ls empty vault says so" "no bundles in vault 'main'"

sm vault push "$B/alpha.skillmeat-pack"
expect "push exits 0" 0
expect_out "push names id and vault" "pushed alpha-tools-v1.0 to vault 'main'"
check "push stores the bundle bytes" cmp -s "$B/alpha.skillmeat-pack" "$V/bundles/alpha-tools-v1.0.skillmeat-pack"
check "push writes metadata" test -s "$V/metadata/alpha-tools-v1.0.json"
check "push writes the index" test "$(index_ids)" = "alpha-tools-v1.0"

sm vault push "$B/beta.skillmeat-pack" --json
expect "push --json exits 0" 0
cp "$OUT" "$TMP/beta.json"
check "push --json bundle_id is lowercase" json_check "$TMP/beta.json" 'd["bundle_id"] == "beta-tools-v2.0"'
check "push --json keeps the name" json_check "$TMP/beta.json" 'd["name"] == "Beta-Tools"'
check "push --json version" json_check "$TMP/beta.json" 'd["version"] == "2.0"'
check "push --json size_bytes" json_check "$TMP/beta.json" \
  "d['size_bytes'] == $(stat -c %s "$B/beta.skillmeat-pack")"
check "push --json metadata.sha256" json_check "$TMP/beta.json" \
  "d['metadata']['sha256'] == '$(sha256sum "$B/beta.skillmeat-pack" | cut -d' ' -f1)'"
check "push --json tags" json_check "$TMP/beta.json" 'd["tags"] == ["docs"]'
check "push --json vault_path" json_check "$TMP/beta.json" \
  "d['vault_path'] == '$V/bundles/beta-tools-v2.0.skillmeat-pack'"
check "push --json uploaded_at" json_check "$TMP/beta.json" 'd["uploaded_at"][:2] == "20"'
check "push --json bundle_hash" json_check "$TMP/beta.json" 'd["bundle_hash"].startswith("sha256:")'
check "push --json says the push changed the vault" json_check "$TMP/beta.json" 'd["unchanged"] is False'
check "push --json equals the metadata file" python3 -c \
  'import json, sys; d = json.load(open(sys.argv[1])); d.pop("unchanged"); sys.exit(d != json.load(open(sys.argv[2])))' \
  "$TMP/beta.json" "$V/metadata/beta-tools-v2.0.json"

sm vault push "$B/gamma.skillmeat-pack" --quiet
expect "push --quiet exits 0" 0
check "push --quiet prints nothing" test ! -s "$OUT"

# --- ls and info ---

sm vault ls
expect "ls exits 0" 0
expect_out "ls prints a header" "ID"
check "ls lists three rows sorted" test "$(tail -n +2 "$OUT" | cut -d' ' -f1 | tr '\n' ' ')" = \
  "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1 "
expect_out "ls shows tags" "docs,style"

sm vault ls --json
expect "ls --json exits 0" 0
check "ls --json lists every record" json_check "$OUT" \
  '[r["bundle_id"] for r in d] == ["alpha-tools-v1.0", "beta-tools-v2.0", "gamma-v0.1"]'

check "ls --filter substring ignores case" test "$(ls_ids --filter TOOLS)" = "alpha-tools-v1.0 beta-tools-v2.0"
check "ls --filter glob" test "$(ls_ids --filter 'alpha*')" = "alpha-tools-v1.0"
check "ls --filter glob ignores case" test "$(ls_ids --filter 'beta-*')" = "beta-tools-v2.0"
check "ls --filter question mark" test "$(ls_ids --filter '?amma')" = "gamma-v0.1"
check "ls --filter substring inside name" test "$(ls_ids --filter 'amma')" = "gamma-v0.1"
check "ls --filter glob is whole name" test "$(ls_ids --filter 'amm*')" = ""
check "ls --tag" test "$(ls_ids --tag docs)" = "alpha-tools-v1.0 beta-tools-v2.0"
check "ls several --tag means all" test "$(ls_ids --tag docs --tag style)" = "alpha-tools-v1.0"
check "ls --tag and --filter" test "$(ls_ids --tag docs --filter beta)" = "beta-tools-v2.0"
check "ls --tag is exact" test "$(ls_ids --tag doc)" = ""
sm vault ls --filter nothing-like-this
expect "ls without match exits 0" 0
expect_out "ls without match says so" "match the filter"

sm vault info alpha-tools-v1.0
expect "info exits 0" 0
expect_out "info shows the id" "id:           alpha-tools-v1.0"
expect_out "info shows the size" "($(stat -c %s "$B/alpha.skillmeat-pack") bytes)"
expect_out "info shows sha256" "sha256"
sm vault info alpha-tools-v1.0 --json
expect "info --json exits 0" 0
check "info --json equals the metadata file" python3 -c \
  'import json, sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' \
  "$OUT" "$V/metadata/alpha-tools-v1.0.json"
sm vault info nosuch-v1
expect_err "info unknown exits 3" 3 "'nosuch-v1' not found"
sm vault info "../metadata"
expect_err "info invalid id exits 9" 9 "invalid bundle id"

# --- pull ---

sm vault pull alpha-tools-v1.0 --output "$TMP/dl"
expect "pull --output exits 0" 0
expect_out "pull says verified" "(verified)"
check "pull writes the pushed bytes" cmp -s "$B/alpha.skillmeat-pack" "$TMP/dl/alpha-tools-v1.0.skillmeat-pack"
check "pull leaves only the bundle" test "$(listing "$TMP/dl")" = "./alpha-tools-v1.0.skillmeat-pack"

mkdir -p "$TMP/cwd"
(cd "$TMP/cwd" && "$SM" vault pull beta-tools-v2.0 >"$OUT" 2>"$ERR")
CODE=$?
expect "pull into cwd exits 0" 0
check "pull defaults to cwd" cmp -s "$B/beta.skillmeat-pack" "$TMP/cwd/beta-tools-v2.0.skillmeat-pack"

sm vault pull gamma-v0.1 --output "$TMP/dl" --json
expect "pull --json exits 0" 0
check "pull --json reports path" json_check "$OUT" \
  "d == {'bundle_id': 'gamma-v0.1', 'vault': 'main', 'path': '$TMP/dl/gamma-v0.1.skillmeat-pack', 'verified': True}"

inode=$(stat -c %i "$TMP/dl/alpha-tools-v1.0.skillmeat-pack")
sm vault pull alpha-tools-v1.0 --output "$TMP/dl"
expect "pull over identical file exits 0" 0
check "pull over identical file keeps it" test "$(stat -c %i "$TMP/dl/alpha-tools-v1.0.skillmeat-pack")" = "$inode"

mkdir -p "$TMP/busy"
printf 'my own file\n' >"$TMP/busy/alpha-tools-v1.0.skillmeat-pack"
before=$(tree_digest "$TMP/busy")
sm vault pull alpha-tools-v1.0 --output "$TMP/busy"
expect_err "pull over different file exits 4" 4 "--force"
check "pull over different file keeps it" test "$(tree_digest "$TMP/busy")" = "$before"
check "pull over different file leaves no temp" test "$(listing "$TMP/busy")" = "./alpha-tools-v1.0.skillmeat-pack"
sm vault pull alpha-tools-v1.0 --output "$TMP/busy" --force
expect "pull --force exits 0" 0
check "pull --force replaces the file" cmp -s "$B/alpha.skillmeat-pack" "$TMP/busy/alpha-tools-v1.0.skillmeat-pack"

mkdir -p "$TMP/busy/beta-tools-v2.0.skillmeat-pack"
sm vault pull beta-tools-v2.0 --output "$TMP/busy" --force
expect_err "pull over a directory exits 4" 4 "not a regular file"

mkdir -p "$TMP/empty"
for id in "../x" "A B" ".hidden" "a/b" "a..b" ""; do
  sm vault pull "$id" --output "$TMP/empty"
  expect_err "pull invalid id '$id' exits 9" 9 "invalid bundle id"
done
sm vault pull nosuch-v1 --output "$TMP/empty"
expect_err "pull unknown id exits 3" 3 "'nosuch-v1' not found"
check "failed pulls leave the directory empty" test -z "$(ls -A "$TMP/empty")"

# --- immutable versions ---

digest=$(tree_digest "$V")
sm vault push "$B/alpha-other.skillmeat-pack"
expect_err "push same id other bytes exits 4" 4 "alpha-tools-v1.0"
unchanged "push same id keeps the vault" "$digest"

sm vault push "$B/alpha.skillmeat-pack"
expect "identical re-push exits 0" 0
check "identical re-push says so" grep -q "unchanged: alpha-tools-v1.0 is already in vault" "$OUT"
sm vault push "$B/alpha.skillmeat-pack" --json
check "identical re-push reports unchanged in json" json_check "$OUT" "d['unchanged'] is True"
unchanged "identical re-push changes nothing" "$digest"

sm vault push "$B/alpha-other.skillmeat-pack" --force
expect "push --force exits 0" 0
check "push --force replaces the data" cmp -s "$B/alpha-other.skillmeat-pack" "$V/bundles/alpha-tools-v1.0.skillmeat-pack"
sm vault info alpha-tools-v1.0 --json
check "push --force replaces the metadata" json_check "$OUT" \
  "d['description'] == 'a different build of alpha' and d['metadata']['sha256'] == '$(sha256sum "$B/alpha-other.skillmeat-pack" | cut -d' ' -f1)'"
sm vault pull alpha-tools-v1.0 --output "$TMP/forced"
check "pull after --force returns the new bytes" cmp -s "$B/alpha-other.skillmeat-pack" "$TMP/forced/alpha-tools-v1.0.skillmeat-pack"

sm vault push "$B/alpha.skillmeat-pack" --version 9.9 --json
expect "push --version exits 0" 0
check "push --version sets the id" json_check "$OUT" 'd["bundle_id"] == "alpha-tools-v9.9" and d["version"] == "9.9"'
check "push --version stores the file" test -f "$V/bundles/alpha-tools-v9.9.skillmeat-pack"

digest=$(tree_digest "$V")
sm vault push "$B/alpha.skillmeat-pack" --version "bad version"
expect_err "push --version with space exits 9" 9 "invalid bundle id"
unchanged "push bad --version keeps the vault" "$digest"
sm vault push "$B/alpha.skillmeat-pack" --version ""
expect_err "push empty --version exits 9" 9 "invalid version"
sm vault push "$B/alpha.skillmeat-pack" --version "../../x"
expect_err "push --version with dots exits 9" 9 "invalid bundle id"
unchanged "push invalid versions keep the vault" "$digest"

# --- bad bundles are never stored ---

python3 -W ignore - "$B/delta.skillmeat-pack" "$B/tampered.skillmeat-pack" <<'EOF'
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zin, zipfile.ZipFile(sys.argv[2], "w") as zout:
    manifest = json.loads(zin.read("manifest.json"))
    victim = manifest["artifacts"][0]["path"] + manifest["artifacts"][0]["files"][0]
    for info in zin.infolist():
        data = zin.read(info)
        if info.filename == victim:
            data += b"\nchanged after the bundle was made\n"
        zout.writestr(info, data)
EOF
printf 'not a bundle\n' >"$B/text.skillmeat-pack"

digest=$(tree_digest "$V")
sm vault push "$B/tampered.skillmeat-pack"
expect_err "push tampered bundle exits 7" 7 "first problem: artifact 'brand-guidelines' hash mismatch"
unchanged "push tampered bundle keeps the vault" "$digest"
sm vault push "$B/text.skillmeat-pack"
expect_err "push non-zip exits 9" 9 "not a zip"
unchanged "push non-zip keeps the vault" "$digest"
sm vault push "$B/missing.skillmeat-pack"
expect_err "push missing file exits 3" 3 "missing.skillmeat-pack"
unchanged "push missing file keeps the vault" "$digest"
sm vault ls --json
check "bad pushes are not listed" json_check "$OUT" 'not any(r["name"] == "delta" for r in d)'

# --- read-only vault ---

"$SM" vault add ro local "$V" --read-only >/dev/null
digest=$(tree_digest "$V")
sm vault push "$B/delta.skillmeat-pack" --vault ro
expect_err "push read-only exits 5" 5 "read-only"
sm vault delete gamma-v0.1 --vault ro
expect_err "delete read-only exits 5" 5 "read-only"
unchanged "read-only vault unchanged" "$digest"
check "read-only ls works" test "$(ls_ids --vault ro --filter gamma)" = "gamma-v0.1"
sm vault pull gamma-v0.1 --vault ro --output "$TMP/ro"
expect "read-only pull exits 0" 0

# --- damaged vault data ---

cp "$V/bundles/gamma-v0.1.skillmeat-pack" "$TMP/gamma.saved"
python3 - "$V/bundles/gamma-v0.1.skillmeat-pack" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(200)
    byte = f.read(1)
    f.seek(200)
    f.write(bytes([byte[0] ^ 0x55]))
EOF
mkdir -p "$TMP/corrupt"
sm vault pull gamma-v0.1 --output "$TMP/corrupt"
expect_err "pull corrupt data exits 7" 7 "corrupt"
check "pull corrupt data writes nothing" test -z "$(ls -A "$TMP/corrupt")"
mv "$TMP/gamma.saved" "$V/bundles/gamma-v0.1.skillmeat-pack"

mv "$V/bundles/gamma-v0.1.skillmeat-pack" "$TMP/gamma.saved"
sm vault pull gamma-v0.1 --output "$TMP/corrupt"
expect_err "pull missing data exits 7" 7 "gamma-v0.1"
check "pull missing data writes nothing" test -z "$(ls -A "$TMP/corrupt")"
mv "$TMP/gamma.saved" "$V/bundles/gamma-v0.1.skillmeat-pack"

sm vault pull gamma-v0.1 --output "$TMP/corrupt"
expect "pull repaired data exits 0" 0
rm "$TMP/corrupt/gamma-v0.1.skillmeat-pack"

cp "$V/metadata/gamma-v0.1.json" "$TMP/gamma-metadata.saved"
python3 - "$V/metadata/gamma-v0.1.json" <<'EOF2'
import json, sys
record = json.load(open(sys.argv[1]))
record["bundle_hash"] = "sha256:" + "0" * 64
json.dump(record, open(sys.argv[1], "w"), indent=2)
EOF2
sm vault pull gamma-v0.1 --output "$TMP/corrupt"
expect_err "pull with wrong recorded bundle_hash exits 7" 7 "does not match its metadata"
check "pull with wrong bundle_hash writes nothing" test -z "$(ls -A "$TMP/corrupt")"
mv "$TMP/gamma-metadata.saved" "$V/metadata/gamma-v0.1.json"

# --- a vault whose directory is gone or is a file ---

"$SM" vault add gone local "$TMP/gone" >/dev/null
rmdir "$TMP/gone"
sm vault ls --vault gone
expect_err "ls vault with missing directory exits 3" 3 "does not exist"
sm vault push "$B/gamma.skillmeat-pack" --vault gone
expect_err "push vault with missing directory exits 3" 3 "does not exist"
check "push does not create a missing vault directory" test ! -e "$TMP/gone"
"$SM" vault add plain local "$TMP/plain" >/dev/null
rmdir "$TMP/plain"
printf 'a file\n' >"$TMP/plain"
sm vault ls --vault plain
expect_err "ls vault that is a file exits 9" 9 "is not a directory"

# --- index.json is a cache of metadata/ ---

ALL="alpha-tools-v1.0 alpha-tools-v9.9 beta-tools-v2.0 gamma-v0.1"
check "index lists every bundle" test "$(index_ids)" = "$ALL"

# rebuilt NAME: `vault ls` lists every bundle, warns that it rebuilt the
# index, and the index on disk contains every id again.
rebuilt() {
  sm vault ls --json
  if [ "$CODE" -eq 0 ] && json_check "$OUT" "' '.join(r['bundle_id'] for r in d) == '$ALL'"; then
    ok "ls lists all with $1 index"; else not_ok "ls lists all with $1 index"; fi
  if grep -q "warning: index.json of vault 'main' was .*rebuilt" "$ERR"; then
    ok "ls warns about $1 index"; else not_ok "ls warns about $1 index"; fi
  check "ls rewrites $1 index" test "$(index_ids 2>/dev/null)" = "$ALL"
}

rm "$V/index.json"
rebuilt "missing"
printf 'garbage{{{' >"$V/index.json"
rebuilt "corrupt"
printf '{}' >"$V/index.json"
rebuilt "empty"
python3 - "$V/index.json" <<'EOF'
import json, sys
index = json.load(open(sys.argv[1]))
del index["beta-tools-v2.0"]
json.dump(index, open(sys.argv[1], "w"), indent=2)
EOF
rebuilt "stale"
sm vault ls --json
check "fresh index gives no warning" test ! -s "$ERR"

rm "$V/metadata/alpha-tools-v9.9.json"
ALL="alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1"
check "removed metadata unlists the bundle" test "$(ls_ids)" = "$ALL"
check "removed metadata leaves the index" test "$(index_ids)" = "$ALL"
sm vault pull alpha-tools-v9.9 --output "$TMP/empty"
expect_err "pull without metadata exits 3" 3 "not found"

printf '{"bundle_id": 5}' >"$V/metadata/broken-v1.json"
sm vault ls --json
expect "ls with a broken metadata file exits 0" 0
check "ls skips a broken metadata file" json_check "$OUT" \
  "' '.join(r['bundle_id'] for r in d) == '$ALL'"
check "ls warns about the broken metadata file" grep -q "broken-v1" "$ERR"
rm "$V/metadata/broken-v1.json"

# --- delete ---

sm vault delete gamma-v0.1
expect "delete exits 0" 0
expect_out "delete names the id" "deleted gamma-v0.1 from vault 'main'"
check "delete removes the data" test ! -e "$V/bundles/gamma-v0.1.skillmeat-pack"
check "delete removes the metadata" test ! -e "$V/metadata/gamma-v0.1.json"
check "delete removes the index entry" test "$(index_ids)" = "alpha-tools-v1.0 beta-tools-v2.0"
check "ls no longer lists it" test "$(ls_ids)" = "alpha-tools-v1.0 beta-tools-v2.0"
sm vault pull gamma-v0.1 --output "$TMP/empty"
expect_err "pull deleted exits 3" 3 "'gamma-v0.1' not found"
sm vault info gamma-v0.1
expect_err "info deleted exits 3" 3 "'gamma-v0.1' not found"
digest=$(tree_digest "$V")
sm vault delete gamma-v0.1
expect_err "delete again exits 3" 3 "'gamma-v0.1' not found"
sm vault delete "../index"
expect_err "delete invalid id exits 9" 9 "invalid bundle id"
unchanged "failed deletes keep the vault" "$digest"
sm vault delete beta-tools-v2.0 --json
check "delete --json reports" json_check "$OUT" \
  "d == {'bundle_id': 'beta-tools-v2.0', 'vault': 'main', 'deleted': True}"

sm vault push "$B/gamma.skillmeat-pack"
expect "push after delete exits 0" 0

# --- usage ---

for command in push pull ls info delete; do
  sm vault "$command" --help
  expect "vault $command --help exits 0" 0
  expect_out "vault $command --help prints usage" "usage: skillmeat vault $command"
done
sm vault --help
expect "vault --help exits 0" 0
expect_out "vault --help lists push" "push"
sm --version
expect "--version exits 0" 0
check "--version prints the version" grep -qE '^skillmeat [0-9]+\.[0-9]+\.[0-9]+$' "$OUT"
sm --help
expect "--help exits 0" 0
expect_out "--help lists groups" "vault push"
sm
expect "no arguments exits 2" 2
sm vaults ls
expect_err "unknown group exits 2" 2 "unknown command group 'vaults'"
sm vault fetch x
expect_err "unknown vault command exits 2" 2 "unknown command 'vault fetch'"
sm vault ls --force
expect_err "ls --force exits 2" 2 "does not apply"
sm vault pull
expect_err "pull without id exits 2" 2 "expected 1 argument, got 0"
sm vault push "$B/alpha.skillmeat-pack" --vault
expect_err "push --vault without value exits 2" 2 "option '--vault' needs a value"

finish
