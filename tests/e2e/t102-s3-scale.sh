#!/usr/bin/env bash
# An S3 vault with more metadata objects than one listing page returns
# (1,000), read with the request budget of `vault ls`, and 8 processes
# pushing 10 bundles each into one vault at the same time.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SRC/tests/servers/servers.sh"
source "$SRC/tests/e2e/s3lib.sh"

start_proxy || exit 1

# --- listing across pages ---

# One real bundle is pushed into a local vault; 1,199 more metadata
# records are copies of its record under new names p0001 .. p1199. aws uploads the data
# object, all 1,200 metadata objects and an index.json that lacks 150 of
# them and carries one id whose metadata object does not exist.
COUNT=1200
MISSING=150
"$SM" vault add staging local "$TMP/staging" >/dev/null
make_bundle paging 1 "$TMP/paging.skillmeat-pack"
"$SM" vault push "$TMP/paging.skillmeat-pack" --vault staging --no-progress >/dev/null
python3 - "$TMP/staging" "$COUNT" "$MISSING" <<'EOF'
import json, os, sys
vault, count, missing = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
template = json.load(open(os.path.join(vault, "metadata", "paging-v1.json")))
index = {}
for n in range(count):
    if n == 0:
        bundle_id = "paging-v1"
    else:
        bundle_id = "p%04d-v1" % n
        record = dict(template, bundle_id=bundle_id, name="p%04d" % n)
        with open(os.path.join(vault, "metadata", bundle_id + ".json"), "w") as f:
            json.dump(record, f, indent=2)
    if n < count - missing:
        index[bundle_id] = template if n == 0 else record
index["ghost-v1"] = dict(template, bundle_id="ghost-v1", name="ghost", version="1")
with open(os.path.join(vault, "index.json"), "w") as f:
    json.dump(index, f, indent=2, sort_keys=True)
with open(os.path.join(vault, "expected-ids"), "w") as f:
    f.write(" ".join(sorted(["paging-v1"] + ["p%04d-v1" % n for n in range(1, count)])) + "\n")
EOF
mv "$TMP/staging/expected-ids" "$TMP/expected-ids"
started=$SECONDS
awsc s3 cp --only-show-errors --recursive --exclude .skillmeat-vault.lock "$TMP/staging" "s3://vault/paged/"
echo "uploaded $COUNT metadata objects in $((SECONDS - started)) s"
check "bucket holds $COUNT metadata objects" test "$(s3_keys paged/metadata/ | wc -l)" -eq "$COUNT"

"$SM" vault add paged s3 vault --endpoint-url "$PROXY_ENDPOINT" --prefix "paged/" >/dev/null
from=$(proxy_lines)
sm vault ls --vault paged --json
expect "ls across pages exits 0" 0
same_ids "ls lists every metadata object" \
  "$(python3 -c 'import json, sys; print(" ".join(sorted(r["bundle_id"] for r in json.load(open(sys.argv[1])))))' "$OUT" 2>/dev/null)" \
  "$(cat "$TMP/expected-ids")"
check "ls drops the index entry without metadata" bash -c "! grep -q ghost-v1 '$OUT'"
listings=$(proxy_stats "$from" 'sum(1 for x in r if x["method"] == "GET" and "list-type=2" in x["target"])')
check "ls sends two listings for $COUNT objects ($listings)" test "$listings" -eq 2
index_reads=$(proxy_stats "$from" 'sum(1 for x in r if x["method"] == "GET" and x["target"].split("?")[0].endswith("/index.json"))')
check "ls reads index.json once ($index_reads)" test "$index_reads" -eq 1
proxy_stats "$from" '[x["target"] for x in r if x["method"] == "GET" and "/metadata/" in x["target"]]' | tr ',' '\n' | grep -v '/p[0-9]' | head -5
fetched=$(proxy_stats "$from" 'sum(1 for x in r if x["method"] == "GET" and "/metadata/" in x["target"])')
check "ls fetches only the $MISSING metadata objects the index lacks ($fetched)" test "$fetched" -eq "$MISSING"
bundles_read=$(proxy_stats "$from" 'sum(1 for x in r if "/bundles/" in x["target"])')
check "ls reads no bundle ($bundles_read)" test "$bundles_read" -eq 0
total=$(proxy_stats "$from" 'len(r)')
echo "vault ls of $COUNT bundles: $total requests"
check "filter across pages" test "$(ls_ids --vault paged --filter 'p119?' | wc -w)" -eq 10
sm vault pull paging-v1 --vault paged --output "$TMP/dl" --no-progress
expect "pull from the paged vault exits 0" 0
check "pull from the paged vault is byte-identical" cmp -s "$TMP/paging.skillmeat-pack" "$TMP/dl/paging-v1.skillmeat-pack"

# --- 8 processes push 10 bundles each ---

WORKERS=8
PER_WORKER=10
TOTAL=$((WORKERS * PER_WORKER))
"$SM" vault add crowd s3 vault --endpoint-url "$S3_ENDPOINT" --prefix "crowd/" >/dev/null
mkdir -p "$TMP/crowd"
seq 1 "$TOTAL" | xargs -P 2 -I{} "$SM" bundle create --quiet "$SRC/examples/skills/brand-guidelines" \
  --name c-{} --version 1.0 --description "concurrency bundle {}" --author e2e \
  -o "$TMP/crowd/c-{}.skillmeat-pack" >"$OUT" 2>"$ERR"
CODE=$?
expect "create $TOTAL bundles" 0
seq 1 "$TOTAL" | sed 's/^/c-/; s/$/-v1.0/' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//' >"$TMP/crowd-ids"

push_worker() {
  local w=$1 failures=0 i
  while [ ! -e "$TMP/go" ]; do sleep 0.005; done
  for ((i = w * PER_WORKER + 1; i <= (w + 1) * PER_WORKER; i++)); do
    if ! "$SM" vault push "$TMP/crowd/c-$i.skillmeat-pack" --vault crowd --no-progress \
      >>"$TMP/worker-$w.log" 2>&1; then
      failures=$((failures + 1))
      echo "push of c-$i failed" >>"$TMP/worker-$w.log"
    fi
  done
  return "$failures"
}

pids=()
for ((w = 0; w < WORKERS; w++)); do
  push_worker "$w" &
  pids+=($!)
done
sleep 0.2
started=$SECONDS
touch "$TMP/go"
failed_workers=0
for ((w = 0; w < WORKERS; w++)); do
  if ! wait "${pids[$w]}"; then
    failed_workers=$((failed_workers + 1))
    grep -v '^pushed ' "$TMP/worker-$w.log" | head -5 | sed "s/^/     worker $w: /"
  fi
done
echo "$TOTAL concurrent pushes took $((SECONDS - started)) s"
check "every concurrent push succeeds" test "$failed_workers" -eq 0
same_ids "ls shows all $TOTAL bundles" "$(ls_ids --vault crowd)" "$(cat "$TMP/crowd-ids")"
check "bucket holds $TOTAL data objects" test "$(s3_keys crowd/bundles/ | wc -l)" -eq "$TOTAL"
check "bucket holds $TOTAL metadata objects" test "$(s3_keys crowd/metadata/ | wc -l)" -eq "$TOTAL"
for i in 1 27 40 63 80; do
  sm vault pull "c-$i-v1.0" --vault crowd --output "$TMP/crowd-dl" --no-progress
  expect "pull c-$i after the race exits 0" 0
  check "pull c-$i after the race is byte-identical" cmp -s "$TMP/crowd/c-$i.skillmeat-pack" \
    "$TMP/crowd-dl/c-$i-v1.0.skillmeat-pack"
done

finish
