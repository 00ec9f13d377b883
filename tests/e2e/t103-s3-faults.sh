#!/usr/bin/env bash
# S3 pushes and pulls through tests/tools/s3faultproxy.py while it resets
# connections, stalls, responds with 503 (with and without Retry-After) and cuts
# responses: every command still succeeds, nothing corrupt is listed, a cut
# download resumes with a Range request and Retry-After is honoured. A
# store that sends more bytes than a record says, or listing pages in a
# cycle, makes the command fail without writing anything.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SRC/tests/servers/servers.sh"
source "$SRC/tests/e2e/s3lib.sh"

PART=$((5 * 1024 * 1024))
start_proxy --stall-seconds 6 --retry-after 1 || exit 1
"$SM" vault add flaky s3 vault --endpoint-url "$PROXY_ENDPOINT" --prefix "flaky/" --set-default >/dev/null
printf 'part_size = %d\nconcurrency = 4\n' "$PART" >>"$SKILLMEAT_HOME/sharing.toml"
"$SM" vault add direct s3 vault --endpoint-url "$S3_ENDPOINT" --prefix "flaky/" >/dev/null

mkdir -p "$TMP/b"
for i in $(seq 1 8); do
  make_bundle "f-$i" 1.0 "$TMP/b/f-$i.skillmeat-pack"
done
big_bundle fbig 22 "$TMP/b/fbig.skillmeat-pack"
ALL="f-1-v1.0 f-2-v1.0 f-3-v1.0 f-4-v1.0 f-5-v1.0 f-6-v1.0 f-7-v1.0 f-8-v1.0 fbig-v1.0"

# faults_seen FROM KIND: how many requests after log line FROM got fault KIND.
faults_seen() { proxy_stats "$1" "sum(1 for x in r if x['fault'] == '$2')"; }

# --- small pushes under resets, 503s and cut responses ---

proxy_control '{"faults": "reset,503,503-retry,cut", "share": 0.3, "methods": "", "match": ""}'
from=$(proxy_lines)
failures=0
for i in $(seq 1 8); do
  sm vault push "$TMP/b/f-$i.skillmeat-pack" --no-progress -v
  if [ "$CODE" -ne 0 ]; then
    failures=$((failures + 1))
    not_ok "push f-$i under faults exits 0" "exit code $CODE"
  fi
  cat "$ERR" >>"$TMP/verbose.log"
done
check "all small pushes under faults exit 0" test "$failures" -eq 0
for kind in reset 503 503-retry cut; do
  seen=$(faults_seen "$from" "$kind")
  check "pushes met fault '$kind' ($seen times)" test "$seen" -ge 1
done
check "verbose mode reports retries" grep -qi 'retr' "$TMP/verbose.log"

# --- a multipart push under the same faults ---

from=$(proxy_lines)
sm vault push "$TMP/b/fbig.skillmeat-pack" --no-progress
expect "multipart push under faults exits 0" 0
seen=$(proxy_stats "$from" 'sum(1 for x in r if x["fault"] and "partNumber=" in x["target"])')
check "part uploads met faults ($seen)" test "$seen" -ge 1
check "multipart object under faults is byte-identical" cmp -s "$TMP/b/fbig.skillmeat-pack" \
  "$(s3_object flaky/bundles/fbig-v1.0.skillmeat-pack)"

# --- ls and pulls under faults ---

from=$(proxy_lines)
check "ls under faults lists every bundle" test "$(ls_ids)" = "$ALL"
check "ls under faults met faults" test "$(proxy_stats "$from" 'sum(1 for x in r if x["fault"])')" -ge 1
for i in $(seq 1 8); do
  sm vault pull "f-$i-v1.0" --output "$TMP/dl" --no-progress
  expect "pull f-$i under faults exits 0" 0
  check "pull f-$i under faults is byte-identical" cmp -s "$TMP/b/f-$i.skillmeat-pack" "$TMP/dl/f-$i-v1.0.skillmeat-pack"
done

# --- nothing corrupt is listed ---

# Checked without the proxy: every listed record's sha256 is that of the
# pushed file, and every data object equals it.
sm vault ls --vault direct --json
expect "ls without proxy exits 0" 0
check "ls without proxy lists every bundle exactly once" json_check "$OUT" \
  "sorted(x['bundle_id'] for x in d) == '$ALL'.split()"
for id in $ALL; do
  file="$TMP/b/${id%-v1.0}.skillmeat-pack"
  check "record of $id matches the pushed file" json_check "$OUT" \
    "[x['metadata']['sha256'] for x in d if x['bundle_id'] == '$id'] == ['$(sha256sum "$file" | cut -d' ' -f1)']"
  check "data object of $id equals the pushed file" cmp -s "$file" "$(s3_object "flaky/bundles/$id.skillmeat-pack")"
done
check "no stray objects under the prefix" test "$(s3_keys flaky/ | grep -cv -e '^flaky/bundles/' -e '^flaky/metadata/' -e '^flaky/index.json$')" -eq 0

# --- a cut download resumes with a Range request ---

# fbig (22 MiB) is at least two part sizes, so it is pulled as byte ranges
# of part_size with several in flight. Each cut range resumes by itself.

proxy_control '{"faults": "cut", "share": 0.5, "methods": "GET", "match": "/bundles/"}'
from=$(proxy_lines)
size=$(stat -c %s "$TMP/b/fbig.skillmeat-pack")
sm vault pull fbig-v1.0 --output "$TMP/dl" --no-progress
expect "pull with cut responses exits 0" 0
check "pull with cut responses is byte-identical" cmp -s "$TMP/b/fbig.skillmeat-pack" "$TMP/dl/fbig-v1.0.skillmeat-pack"
cuts=$(faults_seen "$from" cut)
check "bundle responses were cut ($cuts)" test "$cuts" -ge 1
ranges=$(proxy_stats "$from" 'sum(1 for x in r if "/bundles/" in x["target"] and "range" in x and x["fault"] is None)')
check "download resumes with Range requests ($ranges)" test "$ranges" -ge 1
down=$(proxy_stats "$from" 'sum(x["down"] for x in r if "/bundles/" in x["target"])')
check "resumed download fetches each byte about once ($down of $size)" \
  test "$down" -le $((size + size / 4))
starts=$(proxy_stats "$from" "len(set(x['range'].split('=')[1].split('-')[0] for x in r
  if '/bundles/' in x['target'] and 'range' in x and int(x['range'].split('=')[1].split('-')[0]) % $PART == 0))")
check "pull requests every part-size range ($starts of 5)" test "$starts" -eq 5
resumed=$(proxy_stats "$from" "sum(1 for x in r if '/bundles/' in x['target'] and 'range' in x
  and int(x['range'].split('=')[1].split('-')[0]) % $PART != 0)")
check "a cut range resumes where it stopped ($resumed)" test "$resumed" -ge 1
conns=$(proxy_stats "$from" 'len(set(x["conn"] for x in r if "/bundles/" in x["target"]))')
check "ranges use several connections ($conns)" test "$conns" -ge 2

# a store that ignores Range: the pull falls back to one GET of the whole object
proxy_control '{"faults": "no-range", "share": 1, "methods": "GET", "match": "/bundles/"}'
from=$(proxy_lines)
sm vault pull fbig-v1.0 --output "$TMP/dl-whole" --no-progress
expect "pull from a store without ranges exits 0" 0
check "pull from a store without ranges is byte-identical" cmp -s "$TMP/b/fbig.skillmeat-pack" \
  "$TMP/dl-whole/fbig-v1.0.skillmeat-pack"
whole=$(proxy_stats "$from" 'sum(1 for x in r if "/bundles/" in x["target"] and "range" not in x and x["status"] == 200)')
check "pull from a store without ranges fetched the object whole ($whole)" test "$whole" -ge 1

# an object whose ETag changes between two ranges is fetched whole
proxy_control '{"faults": "etag", "share": 0.5, "pattern": "even", "methods": "GET", "match": "/bundles/"}'
from=$(proxy_lines)
sm vault pull fbig-v1.0 --output "$TMP/dl-etag" --no-progress
expect "pull of an object whose ETag changes exits 0" 0
check "pull of an object whose ETag changes is byte-identical" cmp -s "$TMP/b/fbig.skillmeat-pack" \
  "$TMP/dl-etag/fbig-v1.0.skillmeat-pack"
whole=$(proxy_stats "$from" 'sum(1 for x in r if "/bundles/" in x["target"] and "range" not in x and x["status"] == 200)')
check "the changed ETag made the pull fetch the object whole ($whole)" test "$whole" -ge 1

# after a 416 response to a range, the pull sends one whole GET and checks its size
proxy_control '{"faults": "416", "share": 1, "methods": "GET", "match": "/bundles/"}'
from=$(proxy_lines)
sm vault pull fbig-v1.0 --output "$TMP/dl-416" --no-progress
expect "pull after a 416 exits 0" 0
check "pull after a 416 is byte-identical" cmp -s "$TMP/b/fbig.skillmeat-pack" \
  "$TMP/dl-416/fbig-v1.0.skillmeat-pack"
n416=$(proxy_stats "$from" 'sum(1 for x in r if x["status"] == 416)')
whole=$(proxy_stats "$from" 'sum(1 for x in r if "/bundles/" in x["target"] and "range" not in x and x["status"] == 200)')
check "the store answered 416 ($n416) and the object came whole ($whole)" \
  test "$n416" -ge 1 -a "$whole" -eq 1

# --- Retry-After is honoured ---

proxy_control '{"faults": "503-retry", "share": 0.5, "methods": "", "match": ""}'
from=$(proxy_lines)
sm vault pull f-3-v1.0 --output "$TMP/retry-after" --no-progress
expect "pull under 503 with Retry-After exits 0" 0
check "pull under 503 with Retry-After is byte-identical" cmp -s "$TMP/b/f-3.skillmeat-pack" \
  "$TMP/retry-after/f-3-v1.0.skillmeat-pack"
gap=$(proxy_stats "$from" '
min([min([y["start"] for y in r if y["n"] > x["n"] and y["target"] == x["target"]] or [99]) - x["start"]
     for x in r if x["fault"] == "503-retry"] or [99])')
check "retry waits for Retry-After: 1 (shortest gap ${gap} s)" python3 -c "import sys; sys.exit(not 0.9 <= $gap < 30)"

# --- stalled requests time out and are retried ---

proxy_control '{"faults": "stall", "share": 0.5, "methods": "GET", "match": "", "stall_seconds": 6}'
from=$(proxy_lines)
started=$SECONDS
sm vault pull f-2-v1.0 --output "$TMP/stall" --no-progress
expect "pull with stalled requests exits 0" 0
check "pull with stalled requests is byte-identical" cmp -s "$TMP/b/f-2.skillmeat-pack" "$TMP/stall/f-2-v1.0.skillmeat-pack"
check "requests stalled ($(faults_seen "$from" stall))" test "$(faults_seen "$from" stall)" -ge 1
echo "pull with stalls took $((SECONDS - started)) s"

# --- a stall longer than the client's timeout ---

# The proxy delays the first metadata GET by 75 s. skillmeat must give up
# on it by itself (its low-speed timeout is 30 s) and retry, well before
# the proxy would reset the connection.
proxy_control '{"faults": "stall", "share": 0.5, "methods": "GET", "match": "/metadata/", "stall_seconds": 75}'
from=$(proxy_lines)
started=$SECONDS
sm vault pull f-4-v1.0 --output "$TMP/stall-long" --no-progress
elapsed=$((SECONDS - started))
expect "pull with a long stall exits 0" 0
check "pull with a long stall is byte-identical" cmp -s "$TMP/b/f-4.skillmeat-pack" "$TMP/stall-long/f-4-v1.0.skillmeat-pack"
check "the first metadata GET stalled" test "$(faults_seen "$from" stall)" -ge 1
check "the client timed out before the proxy reset (${elapsed} s < 60 s)" test "$elapsed" -lt 60

# --- a hostile store: a body larger than its record, a listing in a cycle ---

proxy_control '{"faults": "grow", "share": 1, "methods": "GET", "match": "/bundles/"}'
from=$(proxy_lines)
sm vault pull f-5-v1.0 --output "$TMP/grown" --no-progress
expect_err "pull of a body larger than its record exits 7" 7 "larger than its metadata says"
check "pull of a grown body wrote nothing" test -z "$(ls -A "$TMP/grown" 2>/dev/null)"
check "the store sent a grown body" test "$(faults_seen "$from" grow)" -ge 1

from=$(proxy_lines)
sm vault pull fbig-v1.0 --output "$TMP/grown-ranges" --no-progress
expect_err "ranged pull of grown ranges exits 7" 7 "larger than its metadata says"
check "ranged pull of grown ranges wrote nothing" test -z "$(ls -A "$TMP/grown-ranges" 2>/dev/null)"
check "the store sent grown ranges" test "$(faults_seen "$from" grow)" -ge 1

proxy_control '{"faults": "list-loop", "share": 1, "methods": "GET", "match": "list-type=2"}'
from=$(proxy_lines)
sm vault ls --json
expect_err "ls of a listing that repeats its token exits 9" 9 "repeats a continuation token"
pages=$(faults_seen "$from" list-loop)
check "ls stops after the repeated token ($pages pages)" test "$pages" -eq 2

# without an index every listed id is fetched, so a repeated key would be fetched twice
awsc s3 rm --only-show-errors "s3://vault/flaky/index.json"
proxy_control '{"faults": "list-dup", "share": 1, "methods": "GET", "match": "list-type=2"}'
from=$(proxy_lines)
check "ls of a listing with every key twice lists each bundle once" test "$(ls_ids)" = "$ALL"
check "the store listed every key twice" test "$(faults_seen "$from" list-dup)" -ge 1
proxy_control '{"faults": "", "share": 0, "methods": "", "match": ""}'

# --- pushes fail cleanly when every request fails ---

proxy_control '{"faults": "503", "share": 1, "methods": "", "match": ""}'
state=$(s3_state)
started=$SECONDS
sm vault push "$TMP/b/f-1.skillmeat-pack" --force --no-progress
expect "push against a store that always answers 503 exits 8" 8
one_line_error "push against 503 only: one error line" "$AWS_SECRET_ACCESS_KEY"
check "retries stop within 120 s ($((SECONDS - started)) s)" test $((SECONDS - started)) -le 120
check "failed push changes no object" test "$(s3_state)" = "$state"
proxy_control '{"faults": "", "share": 0, "methods": "", "match": ""}'
check "ls after the failed push still lists all" test "$(ls_ids)" = "$ALL"

finish
