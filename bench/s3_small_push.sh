#!/usr/bin/env bash
# One push of the small brand-guidelines bundle (about 6 KB) to the S3
# emulator. The test proxy counts the requests it sends, as well as those
# of one pull and one ls. Its wall time is the median of 10 x ROUNDS pushes
# straight to the emulator, each after a delete of the pushed id outside
# the timing.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/bench/s3_common.sh"

BUNDLE="$BENCH_DIR/bench-s3-small.skillmeat-pack"
ID=bench-s3-small-v1
RUNS=$((10 * ROUNDS))
"$SM" bundle create "$SKILL" --name bench-s3-small --version 1 --description "small benchmark bundle" \
  --author bench -o "$BUNDLE" >/dev/null
echo "bundle: $BUNDLE ($(stat -c %s "$BUNDLE") bytes)"

# requests, through the counting proxy
start_proxy
s3_vault counted "small/" "$PROXY_ENDPOINT"
"$SM" vault push "$BUNDLE" --vault counted --no-progress >/dev/null
"$SM" vault delete "$ID" --vault counted >/dev/null
from=$(wc -l <"$PROXY_LOG")
"$SM" vault push "$BUNDLE" --vault counted --no-progress >/dev/null
push_requests=$(proxy_summary "$from")
from=$(wc -l <"$PROXY_LOG")
"$SM" vault pull "$ID" --vault counted --output "$TMP/pulled" --no-progress >/dev/null
pull_requests=$(proxy_summary "$from")
from=$(wc -l <"$PROXY_LOG")
"$SM" vault ls --vault counted >/dev/null
ls_requests=$(proxy_summary "$from")
"$SM" vault delete "$ID" --vault counted >/dev/null

# wall time, without the proxy
s3_vault direct "small/"
# GNU time prints wall time in 10 ms steps, so the clock is read around each push
times="$TMP/times"
: >"$times"
for run in $(seq 1 "$RUNS"); do
  "$SM" vault delete "$ID" --vault direct >/dev/null 2>&1 || true
  start=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$TMP/rss" "$SM" vault push "$BUNDLE" --vault direct --no-progress >/dev/null
  end=$(date +%s%N)
  echo "$(((end - start) / 1000)) $(cat "$TMP/rss")" >>"$times"
done
result "s3_small_push: one push sends $push_requests"
result "s3_small_push: one pull sends $pull_requests; one ls of a 1-bundle vault sends $ls_requests"
result "s3_small_push: push wall time median $(column "$times" 1 | awk '{ printf "%.1f", $1 / 1000 }') ms of $RUNS runs," \
  "peak RSS $(awk '{ print $2 }' "$times" | median | awk '{ printf "%.1f", $1 / 1024 }') MiB (median)"
