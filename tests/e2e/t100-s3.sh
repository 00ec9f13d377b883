#!/usr/bin/env bash
# End-to-end tests of an S3 vault against the S3 emulator. They run every
# vault command and check the values it stores and returns. Debian's
# aws-cli checks the object layout in both directions. A prefix with
# special characters is used, and each bad input (wrong secret, read-only
# vault, plain http to another host, damaged objects) is checked to write
# and lose nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SRC/tests/servers/servers.sh"
source "$SRC/tests/e2e/s3lib.sh"

B="$TMP/bundles"
mkdir -p "$B"
make_bundle alpha-tools 1.0 "$B/alpha.skillmeat-pack" docs style
make_bundle Beta-Tools 2.0 "$B/beta.skillmeat-pack" docs
make_bundle gamma 0.1 "$B/gamma.skillmeat-pack"
make_bundle delta 1.0 "$B/delta.skillmeat-pack"
"$SM" bundle create "$SRC/examples/skills/brand-guidelines" --name alpha-tools --version 1.0 \
  --description "a different build of alpha" --author e2e -o "$B/alpha-other.skillmeat-pack" >/dev/null
check "fixture bundles were created" test -s "$B/alpha-other.skillmeat-pack"

# objects NAME PREFIX EXPECTED: the keys under PREFIX are exactly EXPECTED
# (space-separated, sorted).
objects() {
  local got
  got=$(s3_keys "$2" | tr '\n' ' ' | sed 's/ $//')
  if [ "$got" = "$3" ]; then ok "$1"; else not_ok "$1" "keys: '$got'" "expected: '$3'"; fi
}

# unchanged NAME STATE: the bucket still has the s3_state STATE.
unchanged() {
  if [ "$(s3_state)" = "$2" ]; then ok "$1"; else
    not_ok "$1" "bucket keys now: $(s3_keys | tr '\n' ' ')"; fi
}

# --- vault add ---

sm vault add team s3 vault --endpoint-url "$S3_ENDPOINT" --prefix "skills/" --set-default
expect "add s3 vault exits 0" 0
expect_out "add names the vault" "added s3 vault 'team'"
check "add writes the bucket" grep -qx 'bucket = "vault"' "$SKILLMEAT_HOME/sharing.toml"
check "add writes the prefix" grep -qx 'prefix = "skills/"' "$SKILLMEAT_HOME/sharing.toml"
check "add writes the endpoint" grep -qx "endpoint_url = \"$S3_ENDPOINT\"" "$SKILLMEAT_HOME/sharing.toml"
check "add writes no secret" bash -c "! grep -q S3RVER '$SKILLMEAT_HOME/sharing.toml'"
sm vault add west s3 vault --endpoint-url "$S3_ENDPOINT" --prefix "west/" --region eu-west-1
expect "add with --region exits 0" 0
check "add writes the region" grep -qx 'region = "eu-west-1"' "$SKILLMEAT_HOME/sharing.toml"
objects "add writes nothing to the bucket" "" ""

# --- an empty vault ---

sm vault ls
expect "ls empty vault exits 0" 0
expect_out "ls empty vault says so" "no bundles in vault 'team'"
objects "ls of an empty vault writes nothing" "" ""
sm vault ls --vault west
expect "ls with another region exits 0" 0

# --- push ---

sm vault push "$B/alpha.skillmeat-pack" --no-progress
expect "push exits 0" 0
expect_out "push names id and vault" "pushed alpha-tools-v1.0 to vault 'team'"
objects "push writes data, metadata and index" "skills/" \
  "skills/bundles/alpha-tools-v1.0.skillmeat-pack skills/index.json skills/metadata/alpha-tools-v1.0.json"
check "push stores the bundle bytes" cmp -s "$B/alpha.skillmeat-pack" \
  "$(s3_object skills/bundles/alpha-tools-v1.0.skillmeat-pack)"

sm vault push "$B/beta.skillmeat-pack" --json --no-progress
expect "push --json exits 0" 0
cp "$OUT" "$TMP/beta.json"
check "push --json bundle_id" json_check "$TMP/beta.json" 'd["bundle_id"] == "beta-tools-v2.0"'
check "push --json name" json_check "$TMP/beta.json" 'd["name"] == "Beta-Tools"'
check "push --json version" json_check "$TMP/beta.json" 'd["version"] == "2.0"'
check "push --json size_bytes" json_check "$TMP/beta.json" \
  "d['size_bytes'] == $(stat -c %s "$B/beta.skillmeat-pack")"
check "push --json metadata.sha256" json_check "$TMP/beta.json" \
  "d['metadata']['sha256'] == '$(sha256sum "$B/beta.skillmeat-pack" | cut -d' ' -f1)'"
check "push --json tags" json_check "$TMP/beta.json" 'd["tags"] == ["docs"]'
check "push --json unchanged is false" json_check "$TMP/beta.json" 'd["unchanged"] is False'
check "push --json equals the metadata object" python3 -c \
  'import json, sys; d = json.load(open(sys.argv[1])); d.pop("unchanged"); sys.exit(d != json.load(open(sys.argv[2])))' \
  "$TMP/beta.json" "$(s3_object skills/metadata/beta-tools-v2.0.json)"

sm vault push "$B/gamma.skillmeat-pack" --quiet
expect "push --quiet exits 0" 0
check "push --quiet prints nothing" test ! -s "$OUT"

# --- ls and info ---

sm vault ls
expect "ls exits 0" 0
check "ls lists three rows sorted" test "$(tail -n +2 "$OUT" | cut -d' ' -f1 | tr '\n' ' ')" = \
  "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1 "
expect_out "ls shows tags" "docs,style"
check "ls --json lists every id" test "$(ls_ids)" = "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1"
check "ls --filter substring ignores case" test "$(ls_ids --filter TOOLS)" = "alpha-tools-v1.0 beta-tools-v2.0"
check "ls --filter glob" test "$(ls_ids --filter 'alpha*')" = "alpha-tools-v1.0"
check "ls --filter question mark" test "$(ls_ids --filter '?amma')" = "gamma-v0.1"
check "ls --tag" test "$(ls_ids --tag docs)" = "alpha-tools-v1.0 beta-tools-v2.0"
check "ls several --tag means all" test "$(ls_ids --tag docs --tag style)" = "alpha-tools-v1.0"
check "ls --tag and --filter" test "$(ls_ids --tag docs --filter beta)" = "beta-tools-v2.0"
check "ls --tag is exact" test "$(ls_ids --tag doc)" = ""
check "ls of the other prefix is empty" test "$(ls_ids --vault west)" = ""

sm vault info alpha-tools-v1.0
expect "info exits 0" 0
expect_out "info shows the id" "id:           alpha-tools-v1.0"
expect_out "info shows the size" "($(stat -c %s "$B/alpha.skillmeat-pack") bytes)"
expect_out "info shows sha256" "$(sha256sum "$B/alpha.skillmeat-pack" | cut -d' ' -f1)"
sm vault info alpha-tools-v1.0 --json
expect "info --json exits 0" 0
check "info --json equals the metadata object" python3 -c \
  'import json, sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' \
  "$OUT" "$(s3_object skills/metadata/alpha-tools-v1.0.json)"
check "info --json tags" json_check "$OUT" 'd["tags"] == ["docs", "style"]'
sm vault info nosuch-v1
expect_err "info unknown exits 3" 3 "'nosuch-v1' not found"
sm vault info "../metadata"
expect_err "info invalid id exits 9" 9 "invalid bundle id"

# --- pull ---

sm vault pull alpha-tools-v1.0 --output "$TMP/dl" --no-progress
expect "pull exits 0" 0
expect_out "pull says verified" "(verified)"
check "pull writes the pushed bytes" cmp -s "$B/alpha.skillmeat-pack" "$TMP/dl/alpha-tools-v1.0.skillmeat-pack"
check "pull leaves only the bundle" test "$(ls -A "$TMP/dl")" = "alpha-tools-v1.0.skillmeat-pack"
sm vault pull gamma-v0.1 --output "$TMP/dl" --json --no-progress
expect "pull --json exits 0" 0
check "pull --json reports path" json_check "$OUT" \
  "d == {'bundle_id': 'gamma-v0.1', 'vault': 'team', 'path': '$TMP/dl/gamma-v0.1.skillmeat-pack', 'verified': True}"
check "pull --json writes the bytes" cmp -s "$B/gamma.skillmeat-pack" "$TMP/dl/gamma-v0.1.skillmeat-pack"

mkdir -p "$TMP/busy"
printf 'my own file\n' >"$TMP/busy/alpha-tools-v1.0.skillmeat-pack"
sm vault pull alpha-tools-v1.0 --output "$TMP/busy" --no-progress
expect_err "pull over different file exits 4" 4 "--force"
check "pull over different file keeps it" grep -qx 'my own file' "$TMP/busy/alpha-tools-v1.0.skillmeat-pack"
check "pull over different file leaves no temp" test "$(ls -A "$TMP/busy")" = "alpha-tools-v1.0.skillmeat-pack"
sm vault pull alpha-tools-v1.0 --output "$TMP/busy" --force --no-progress
expect "pull --force exits 0" 0
check "pull --force replaces the file" cmp -s "$B/alpha.skillmeat-pack" "$TMP/busy/alpha-tools-v1.0.skillmeat-pack"

mkdir -p "$TMP/empty"
for id in "../x" "A B" "a/b" ""; do
  sm vault pull "$id" --output "$TMP/empty"
  expect_err "pull invalid id '$id' exits 9" 9 "invalid bundle id"
done
sm vault pull nosuch-v1 --output "$TMP/empty"
expect_err "pull unknown id exits 3" 3 "'nosuch-v1' not found"
check "failed pulls leave the directory empty" test -z "$(ls -A "$TMP/empty")"

# --- immutable versions ---

state=$(s3_state)
sm vault push "$B/alpha-other.skillmeat-pack" --no-progress
expect_err "push same id other bytes exits 4" 4 "alpha-tools-v1.0"
unchanged "push same id keeps the bucket" "$state"
sm vault push "$B/alpha.skillmeat-pack" --no-progress
expect "identical re-push exits 0" 0
expect_out "identical re-push says unchanged" "unchanged: alpha-tools-v1.0 is already in vault"
unchanged "identical re-push changes no object" "$state"

sm vault push "$B/alpha-other.skillmeat-pack" --force --no-progress
expect "push --force exits 0" 0
check "push --force replaces the data" cmp -s "$B/alpha-other.skillmeat-pack" \
  "$(s3_object skills/bundles/alpha-tools-v1.0.skillmeat-pack)"
sm vault info alpha-tools-v1.0 --json
check "push --force replaces the metadata" json_check "$OUT" \
  "d['description'] == 'a different build of alpha' and d['metadata']['sha256'] == '$(sha256sum "$B/alpha-other.skillmeat-pack" | cut -d' ' -f1)'"
sm vault pull alpha-tools-v1.0 --output "$TMP/forced" --no-progress
check "pull after --force returns the new bytes" cmp -s "$B/alpha-other.skillmeat-pack" \
  "$TMP/forced/alpha-tools-v1.0.skillmeat-pack"

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
state=$(s3_state)
sm vault push "$B/tampered.skillmeat-pack" --no-progress
expect_err "push tampered bundle exits 7" 7 "hash mismatch"
unchanged "push tampered bundle writes nothing" "$state"
sm vault push "$B/text.skillmeat-pack" --no-progress
expect_err "push non-zip exits 9" 9 "not a zip"
unchanged "push non-zip writes nothing" "$state"
sm vault push "$B/alpha.skillmeat-pack" --version "bad version" --no-progress
expect_err "push invalid --version exits 9" 9 "invalid bundle id"
unchanged "push invalid --version writes nothing" "$state"

# --- credentials ---

WRONG='wrong-secret-Zq8xV3'
state=$(s3_state)
AWS_SECRET_ACCESS_KEY=$WRONG sm vault push "$B/delta.skillmeat-pack" --no-progress
expect "push with wrong secret exits 6" 6
one_line_error "push with wrong secret: one line, no secret" "$WRONG"
unchanged "push with wrong secret writes nothing" "$state"
AWS_SECRET_ACCESS_KEY=$WRONG sm vault ls
expect "ls with wrong secret exits 6" 6
one_line_error "ls with wrong secret: one line, no secret" "$WRONG"
AWS_SECRET_ACCESS_KEY=$WRONG sm vault pull beta-tools-v2.0 --output "$TMP/empty" --no-progress
expect "pull with wrong secret exits 6" 6
one_line_error "pull with wrong secret: one line, no secret" "$WRONG"
check "pull with wrong secret writes no file" test -z "$(ls -A "$TMP/empty")"
AWS_SECRET_ACCESS_KEY=$WRONG sm vault delete beta-tools-v2.0
expect "delete with wrong secret exits 6" 6
one_line_error "delete with wrong secret: one line, no secret" "$WRONG"
AWS_ACCESS_KEY_ID=NOSUCHKEY sm vault ls
expect "ls with unknown key id exits 6" 6
one_line_error "ls with unknown key id: one line, no secret" "$AWS_SECRET_ACCESS_KEY"
unchanged "failed authentication changes no object" "$state"
check "failed authentication loses nothing" test "$(ls_ids)" = "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1"

# the vault's own credentials win over the AWS variables
SKILLMEAT_VAULT_TEAM_USERNAME=S3RVER SKILLMEAT_VAULT_TEAM_PASSWORD=S3RVER \
  AWS_SECRET_ACCESS_KEY=$WRONG sm vault ls
expect "vault variables win over AWS variables" 0
printf 'a passphrase for the test store\n' >"$TMP/passphrase"
chmod 600 "$TMP/passphrase"
printf 'S3RVER\n' | "$SM" vault auth team --username S3RVER --password-stdin --store file \
  --passphrase-file "$TMP/passphrase" >"$OUT" 2>"$ERR"
CODE=$?
expect "vault auth stores S3 credentials" 0
SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE=$TMP/passphrase AWS_SECRET_ACCESS_KEY=$WRONG sm vault ls
expect "stored credentials win over AWS variables" 0
printf '%s\n' "$WRONG" | "$SM" vault auth team --username S3RVER --password-stdin --store file \
  --passphrase-file "$TMP/passphrase" >/dev/null 2>&1
SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE=$TMP/passphrase sm vault ls
expect "stored wrong secret exits 6" 6
one_line_error "stored wrong secret: one line, no secret" "$WRONG"
SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE=$TMP/passphrase sm vault auth team --remove --store file
expect "vault auth --remove exits 0" 0
SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE=$TMP/passphrase sm vault ls
expect "removed credentials fall back to AWS variables" 0
# an empty sealed file still requires its passphrase, so the rest runs without it
rm -f "$SKILLMEAT_HOME/credentials"

# --- read-only vault ---

sm vault add ro s3 vault --endpoint-url "$S3_ENDPOINT" --prefix "skills/" --read-only
expect "add read-only exits 0" 0
state=$(s3_state)
sm vault push "$B/delta.skillmeat-pack" --vault ro --no-progress
expect_err "push read-only exits 5" 5 "read-only"
sm vault delete gamma-v0.1 --vault ro
expect_err "delete read-only exits 5" 5 "read-only"
unchanged "read-only vault unchanged" "$state"
check "read-only ls works" test "$(ls_ids --vault ro --filter gamma)" = "gamma-v0.1"
sm vault pull gamma-v0.1 --vault ro --output "$TMP/ro" --no-progress
expect "read-only pull exits 0" 0
check "read-only pull writes the bytes" cmp -s "$B/gamma.skillmeat-pack" "$TMP/ro/gamma-v0.1.skillmeat-pack"

# --- endpoints that must not be used ---

# A proxy variable points at a listener of ours: if skillmeat tried to
# reach example.invalid, through the proxy or directly, the listener would
# log it (and the name does not resolve).
start_proxy || exit 1
sink_log=$PROXY_LOG
sm vault add plain s3 vault --endpoint-url "http://example.invalid:9000" --prefix "p/"
if [ "$CODE" -ne 0 ]; then
  expect_err "add plain http to another host is rejected" "$CODE" "http"
  check "rejected add writes no vault" bash -c "! grep -q 'vault.plain' '$SKILLMEAT_HOME/sharing.toml'"
else
  for command in "ls" "push $B/delta.skillmeat-pack --no-progress" "pull gamma-v0.1 --output $TMP/empty"; do
    # shellcheck disable=SC2086
    http_proxy=$PROXY_ENDPOINT HTTPS_PROXY=$PROXY_ENDPOINT ALL_PROXY=$PROXY_ENDPOINT \
      sm vault $command --vault plain
    expect_err "plain http to another host: ${command%% *} exits 9" 9 "allow_http"
  done
fi
check "plain http to another host opens no connection" test ! -s "$sink_log"
check "plain http to another host leaves no file" test -z "$(ls -A "$TMP/empty")"

state=$(s3_state)
closed=$(free_port)
sm vault add closed s3 vault --endpoint-url "http://127.0.0.1:$closed" --prefix "skills/"
started=$SECONDS
sm vault ls --vault closed
expect "ls with nothing listening exits 8" 8
check "ls with nothing listening gives up within 120 s" test $((SECONDS - started)) -le 120
sm vault add nobucket s3 no-such-bucket --endpoint-url "$S3_ENDPOINT"
sm vault push "$B/delta.skillmeat-pack" --vault nobucket --no-progress
expect_err "push to a missing bucket exits 3" 3 "no-such-bucket"
unchanged "failed endpoints write nothing" "$state"

# --- damaged objects ---

cp "$(s3_object skills/bundles/gamma-v0.1.skillmeat-pack)" "$TMP/gamma.saved"
python3 - "$TMP/gamma.saved" "$TMP/gamma.bad" <<'EOF'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[200] ^= 0x55
open(sys.argv[2], "wb").write(data)
EOF
awsc s3 cp --only-show-errors "$TMP/gamma.bad" "s3://vault/skills/bundles/gamma-v0.1.skillmeat-pack"
mkdir -p "$TMP/corrupt"
sm vault pull gamma-v0.1 --output "$TMP/corrupt" --no-progress
expect_err "pull corrupt data exits 7" 7 "gamma-v0.1"
check "pull corrupt data writes nothing" test -z "$(ls -A "$TMP/corrupt")"
awsc s3 rm --only-show-errors "s3://vault/skills/bundles/gamma-v0.1.skillmeat-pack"
sm vault pull gamma-v0.1 --output "$TMP/corrupt" --no-progress
expect_err "pull missing data exits 7" 7 "gamma-v0.1"
check "pull missing data writes nothing" test -z "$(ls -A "$TMP/corrupt")"
awsc s3 cp --only-show-errors "$TMP/gamma.saved" "s3://vault/skills/bundles/gamma-v0.1.skillmeat-pack"
sm vault pull gamma-v0.1 --output "$TMP/corrupt" --no-progress
expect "pull repaired data exits 0" 0
check "pull repaired data writes the bytes" cmp -s "$B/gamma.skillmeat-pack" "$TMP/corrupt/gamma-v0.1.skillmeat-pack"

# metadata objects are the truth; index.json only a cache
awsc s3 cp --only-show-errors "s3://vault/skills/index.json" "$TMP/index.saved"
printf 'garbage{{{' >"$TMP/garbage.json"
awsc s3 cp --only-show-errors "$TMP/garbage.json" "s3://vault/skills/index.json"
check "ls with a corrupt index lists all" test "$(ls_ids)" = "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1"
awsc s3 rm --only-show-errors "s3://vault/skills/index.json"
check "ls without an index lists all" test "$(ls_ids)" = "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1"
awsc s3 cp --only-show-errors "$TMP/index.saved" "s3://vault/skills/index.json"
awsc s3 rm --only-show-errors "s3://vault/skills/metadata/beta-tools-v2.0.json"
check "ls drops an id whose metadata is gone" test "$(ls_ids)" = "alpha-tools-v1.0 gamma-v0.1"
sm vault pull beta-tools-v2.0 --output "$TMP/empty" --no-progress
expect_err "pull without metadata exits 3" 3 "not found"
awsc s3 cp --only-show-errors "$TMP/beta.json" "s3://vault/skills/metadata/beta-tools-v2.0.json"

# --- delete ---

sm vault delete gamma-v0.1
expect "delete exits 0" 0
expect_out "delete names the id" "deleted gamma-v0.1 from vault 'team'"
objects "delete removes data and metadata" "skills/" \
  "skills/bundles/alpha-tools-v1.0.skillmeat-pack skills/bundles/beta-tools-v2.0.skillmeat-pack skills/index.json skills/metadata/alpha-tools-v1.0.json skills/metadata/beta-tools-v2.0.json"
check "delete removes the index entry" python3 -c \
  'import json, sys; sys.exit("gamma-v0.1" in json.load(open(sys.argv[1])))' "$(s3_object skills/index.json)"
check "ls no longer lists it" test "$(ls_ids)" = "alpha-tools-v1.0 beta-tools-v2.0"
sm vault pull gamma-v0.1 --output "$TMP/empty" --no-progress
expect_err "pull deleted exits 3" 3 "'gamma-v0.1' not found"
state=$(s3_state)
sm vault delete gamma-v0.1
expect_err "delete again exits 3" 3 "'gamma-v0.1' not found"
sm vault delete "../index"
expect_err "delete invalid id exits 9" 9 "invalid bundle id"
unchanged "failed deletes keep the bucket" "$state"
sm vault delete beta-tools-v2.0 --json
check "delete --json reports" json_check "$OUT" \
  "d == {'bundle_id': 'beta-tools-v2.0', 'vault': 'team', 'deleted': True}"
sm vault push "$B/gamma.skillmeat-pack" --no-progress
expect "push after delete exits 0" 0

# --- cross-check with aws-cli: what skillmeat pushes, aws downloads ---

awsc s3 cp --only-show-errors "s3://vault/skills/bundles/gamma-v0.1.skillmeat-pack" "$TMP/aws-gamma"
check "aws downloads the pushed bytes" cmp -s "$B/gamma.skillmeat-pack" "$TMP/aws-gamma"
awsc s3 cp --only-show-errors "s3://vault/skills/metadata/gamma-v0.1.json" "$TMP/aws-gamma.json"
sm vault info gamma-v0.1 --json
check "aws downloads the metadata that info shows" python3 -c \
  'import json, sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' \
  "$OUT" "$TMP/aws-gamma.json"
awsc s3api list-objects-v2 --bucket vault --prefix skills/ --query 'Contents[].Key' --output text >"$TMP/aws-keys"
check "aws lists the layout" test "$(tr '\t' '\n' <"$TMP/aws-keys" | LC_ALL=C sort | tr '\n' ' ')" = \
  "skills/bundles/alpha-tools-v1.0.skillmeat-pack skills/bundles/gamma-v0.1.skillmeat-pack skills/index.json skills/metadata/alpha-tools-v1.0.json skills/metadata/gamma-v0.1.json "

# --- cross-check with aws-cli: a vault that aws uploads, skillmeat reads ---

# A local vault produces the layout's files; aws uploads them unchanged.
"$SM" vault add staging local "$TMP/staging" >/dev/null
for f in alpha beta delta; do
  "$SM" vault push "$B/$f.skillmeat-pack" --vault staging --no-progress >/dev/null
done
awsc s3 cp --only-show-errors --recursive --exclude .skillmeat-vault.lock "$TMP/staging" "s3://vault/from-aws/"
sm vault add byaws s3 vault --endpoint-url "$S3_ENDPOINT" --prefix "from-aws/"
check "ls lists the vault aws uploaded" test "$(ls_ids --vault byaws)" = \
  "alpha-tools-v1.0 beta-tools-v2.0 delta-v1.0"
sm vault info delta-v1.0 --vault byaws --json
check "info reads the metadata aws uploaded" python3 -c \
  'import json, sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' \
  "$OUT" "$TMP/staging/metadata/delta-v1.0.json"
sm vault pull delta-v1.0 --vault byaws --output "$TMP/byaws" --no-progress
expect "pull from the aws upload exits 0" 0
check "pull from the aws upload is byte-identical" cmp -s "$B/delta.skillmeat-pack" "$TMP/byaws/delta-v1.0.skillmeat-pack"
awsc s3 rm --only-show-errors "s3://vault/from-aws/index.json"
check "ls of the aws upload without index" test "$(ls_ids --vault byaws)" = \
  "alpha-tools-v1.0 beta-tools-v2.0 delta-v1.0"

# --- special characters in the prefix ---

P='team a+b=ü/€ x/'
sm vault add special s3 vault --endpoint-url "$S3_ENDPOINT" --prefix "$P"
expect "add with special prefix exits 0" 0
sm vault push "$B/delta.skillmeat-pack" --vault special --no-progress
expect "push under special prefix exits 0" 0
objects "special prefix keys are exact" "team " \
  "${P}bundles/delta-v1.0.skillmeat-pack ${P}index.json ${P}metadata/delta-v1.0.json"
check "special prefix ls" test "$(ls_ids --vault special)" = "delta-v1.0"
sm vault info delta-v1.0 --vault special --json
check "special prefix info" json_check "$OUT" 'd["bundle_id"] == "delta-v1.0"'
sm vault pull delta-v1.0 --vault special --output "$TMP/special" --no-progress
expect "pull under special prefix exits 0" 0
check "pull under special prefix is byte-identical" cmp -s "$B/delta.skillmeat-pack" "$TMP/special/delta-v1.0.skillmeat-pack"
awsc s3 cp --only-show-errors "s3://vault/${P}bundles/delta-v1.0.skillmeat-pack" "$TMP/aws-special"
check "aws reads the special prefix object" cmp -s "$B/delta.skillmeat-pack" "$TMP/aws-special"
sm vault delete delta-v1.0 --vault special
expect "delete under special prefix exits 0" 0
check "delete under special prefix removes both objects" test -z "$(s3_keys "${P}bundles/")$(s3_keys "${P}metadata/")"
check "special prefix did not touch other prefixes" test "$(ls_ids)" = "alpha-tools-v1.0 gamma-v0.1"

# libcurl drops '..' components from a URL, so such a prefix would leave the bucket
state=$(s3_state)
for bad in '../other' 'team/../../other' 'team/./x'; do
  "$SM" vault remove dots >/dev/null 2>&1
  sm vault add dots s3 vault --endpoint-url "$S3_ENDPOINT" --prefix "$bad"
  expect_err "add with prefix '$bad' exits 9" 9 "invalid prefix '$bad'"
  # a hand-edited file reaches the connector's own check
  printf '\n[vault.dots]\ntype = "s3"\nbucket = "vault"\nendpoint_url = "%s"\nprefix = "%s"\n' \
    "$S3_ENDPOINT" "$bad" >>"$SKILLMEAT_HOME/sharing.toml"
  sm vault push "$B/delta.skillmeat-pack" --vault dots --no-progress
  expect_err "push with prefix '$bad' exits 9" 9 "invalid prefix '$bad'"
  sm vault ls --vault dots
  expect_err "ls with prefix '$bad' exits 9" 9 "no '.' or '..' component"
done
unchanged "prefixes with dot components write nothing" "$state"

finish
