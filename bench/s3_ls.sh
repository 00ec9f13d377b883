#!/usr/bin/env bash
# vault ls on an S3 vault of COUNT bundles (default 5,000) in the emulator.
# One real bundle is pushed into a local vault; COUNT - 1 more metadata
# records are copies of its record under new names, and aws-cli uploads
# the metadata objects, the data object and a complete index.json. Then
# `vault ls` is timed ROUNDS times with the index and ROUNDS times with
# index.json removed, which makes it fetch every metadata object. One more
# run of each goes through the counting proxy to count its requests.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/bench/s3_common.sh"

COUNT=${COUNT:-5000}
STAGING="$TMP/staging"
"$SM" vault remove staging >/dev/null 2>&1 || true
"$SM" vault add staging local "$STAGING" >/dev/null
"$SM" bundle create "$SKILL" --name bench-s3-ls --version 1 --description "benchmark bundle for ls" \
  --author bench --tag bench -o "$TMP/bench-s3-ls.skillmeat-pack" >/dev/null
"$SM" vault push "$TMP/bench-s3-ls.skillmeat-pack" --vault staging --no-progress >/dev/null
python3 - "$STAGING" "$COUNT" <<'EOF'
import json, os, sys
vault, count = sys.argv[1], int(sys.argv[2])
template = json.load(open(os.path.join(vault, "metadata", "bench-s3-ls-v1.json")))
index = {"bench-s3-ls-v1": template}
for n in range(1, count):
    bundle_id = "bench-s3-ls-v1.%d" % n
    record = dict(template, bundle_id=bundle_id, version="1.%d" % n)
    with open(os.path.join(vault, "metadata", bundle_id + ".json"), "w") as f:
        json.dump(record, f, indent=2)
    index[bundle_id] = record
with open(os.path.join(vault, "index.json"), "w") as f:
    json.dump(index, f, indent=2, sort_keys=True)
EOF
started=$SECONDS
awsc s3 cp --only-show-errors --recursive --exclude .skillmeat-vault.lock "$STAGING" "s3://vault/ls/"
echo "uploaded $COUNT metadata objects with aws in $((SECONDS - started)) s"

s3_vault lsbench "ls/"
listed=$("$SM" vault ls --vault lsbench --json | jq length)
if [ "$listed" -ne "$COUNT" ]; then
  echo "error: vault ls lists $listed bundles, expected $COUNT" >&2
  exit 1
fi

start_proxy
s3_vault counted "ls/" "$PROXY_ENDPOINT"
from=$(wc -l <"$PROXY_LOG")
"$SM" vault ls --vault counted >/dev/null
with_index=$(proxy_summary "$from")

: >"$TMP/ls-index"
for round in $(seq 1 "$ROUNDS"); do
  timed "$TMP/ls-index" "$SM" vault ls --vault lsbench
done

# without index.json; ls must not depend on the index it may write back
: >"$TMP/ls-noindex"
for round in $(seq 1 "$ROUNDS"); do
  awsc s3 rm --only-show-errors "s3://vault/ls/index.json"
  timed "$TMP/ls-noindex" "$SM" vault ls --vault lsbench
done
awsc s3 rm --only-show-errors "s3://vault/ls/index.json"
from=$(wc -l <"$PROXY_LOG")
"$SM" vault ls --vault counted >/dev/null
without_index=$(proxy_summary "$from")

result "s3_ls: vault ls of $COUNT bundles with index.json median $(column "$TMP/ls-index" 1) s," \
  "peak RSS $(column "$TMP/ls-index" 2 | awk '{ printf "%.1f", $1 / 1024 }') MiB; $with_index"
result "s3_ls: vault ls of $COUNT bundles without index.json median $(column "$TMP/ls-noindex" 1) s," \
  "peak RSS $(column "$TMP/ls-noindex" 2 | awk '{ printf "%.1f", $1 / 1024 }') MiB; $without_index"
