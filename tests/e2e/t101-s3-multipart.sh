#!/usr/bin/env bash
# Multipart pushes to an S3 vault through the counting proxy. Several parts
# are in flight at once and the stored object is byte-identical. A push
# killed with SIGKILL resumes without sending its completed parts again,
# and a file changed in between does not reuse the parts of the old one.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SRC/tests/servers/servers.sh"
source "$SRC/tests/e2e/s3lib.sh"

PART=$((5 * 1024 * 1024))
start_proxy || exit 1

# add_vault NAME PREFIX: an S3 vault behind the proxy with 5 MiB parts and
# 4 uploads in flight.
add_vault() {
  "$SM" vault add "$1" s3 vault --endpoint-url "$PROXY_ENDPOINT" --prefix "$2" >/dev/null
  printf 'part_size = %d\nconcurrency = 4\n' "$PART" >>"$SKILLMEAT_HOME/sharing.toml"
}

add_vault mp "mp/"
check "part_size lands in the vault's table" python3 -c \
  'import sys, tomllib; v = tomllib.load(open(sys.argv[1], "rb"))["vault"]["mp"]; sys.exit(v["part_size"] != int(sys.argv[2]))' \
  "$SKILLMEAT_HOME/sharing.toml" "$PART"

# --- one multipart push ---

big_bundle big 24 "$TMP/big.skillmeat-pack"
size=$(stat -c %s "$TMP/big.skillmeat-pack")
check "bundle is larger than four parts" test "$size" -gt $((4 * PART))
from=$(proxy_lines)
sm vault push "$TMP/big.skillmeat-pack" --vault mp --no-progress
expect "multipart push exits 0" 0
check "stored object is byte-identical" cmp -s "$TMP/big.skillmeat-pack" \
  "$(s3_object mp/bundles/big-v1.0.skillmeat-pack)"

parts=$(proxy_stats "$from" 'len({x["target"].split("partNumber=")[1].split("&")[0] for x in r if x["method"] == "PUT" and "partNumber=" in x["target"] and x["status"] == 200})')
check "push sends five or more parts ($parts)" test "$parts" -ge 5
initiated=$(proxy_stats "$from" 'sum(1 for x in r if x["method"] == "POST" and x["target"].partition("?")[2] in ("uploads", "uploads="))')
check "push starts one multipart upload ($initiated)" test "$initiated" -eq 1
completed=$(proxy_stats "$from" 'sum(1 for x in r if x["method"] == "POST" and "uploadId=" in x["target"] and x["status"] == 200)')
check "push completes one multipart upload ($completed)" test "$completed" -eq 1
sent=$(proxy_stats "$from" 'sum(x["up"] for x in r if "partNumber=" in x["target"])')
check "parts carry the bundle once ($sent of $size bytes)" test "$sent" -eq "$size"
largest=$(proxy_stats "$from" 'max([x["up"] for x in r if "partNumber=" in x["target"]] or [0])')
check "no part exceeds part_size ($largest)" test "$largest" -le "$PART"
inflight=$(proxy_stats "$from" '
max([sum(1 for y in r if "partNumber=" in y["target"] and y["start"] <= x["start"] < y["start"] + y["t"])
     for x in r if "partNumber=" in x["target"]] or [0])')
check "several parts are in flight at once ($inflight)" test "$inflight" -ge 2

sm vault pull big-v1.0 --vault mp --output "$TMP/dl" --no-progress
expect "pull of multipart bundle exits 0" 0
check "pull of multipart bundle is byte-identical" cmp -s "$TMP/big.skillmeat-pack" "$TMP/dl/big-v1.0.skillmeat-pack"
awsc s3 cp --only-show-errors "s3://vault/mp/bundles/big-v1.0.skillmeat-pack" "$TMP/aws-big"
check "aws downloads the multipart object byte-identical" cmp -s "$TMP/big.skillmeat-pack" "$TMP/aws-big"
sm vault info big-v1.0 --vault mp --json
check "info records the multipart bundle's size" json_check "$OUT" "d['size_bytes'] == $size"

# --- SIGKILL during a multipart push, then push again ---

# push_until_parts FILE VAULT N: starts a push of FILE with the proxy
# slowed down, kills it with SIGKILL once N parts are stored, and leaves
# the proxy log line count before the push in $killed_from.
push_until_parts() {
  proxy_control '{"rate": 2097152}'
  killed_from=$(proxy_lines)
  "$SM" vault push "$1" --vault "$2" --no-progress >"$TMP/killed.out" 2>&1 &
  local pid=$! i done_parts=0
  for i in $(seq 1 600); do
    done_parts=$(proxy_stats "$killed_from" 'sum(1 for x in r if "partNumber=" in x["target"] and x["status"] == 200)')
    [ "$done_parts" -ge "$3" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  killed_code=$?
  proxy_control '{"rate": 0}'
}

big_bundle huge 40 "$TMP/huge.skillmeat-pack"
size=$(stat -c %s "$TMP/huge.skillmeat-pack")
push_until_parts "$TMP/huge.skillmeat-pack" mp 2
check "push was killed by SIGKILL ($killed_code)" test "$killed_code" -eq 137
before=$(proxy_stats "$killed_from" 'sorted({int(x["target"].split("partNumber=")[1].split("&")[0]) for x in r if "partNumber=" in x["target"] and x["status"] == 200})')
echo "parts stored before SIGKILL: $before"
check "parts were stored before SIGKILL" test "$before" != "[]"
check "killed push left the id unlisted" test "$(ls_ids --vault mp)" = "big-v1.0"
check "killed push stored no data object" test -z "$(s3_keys mp/bundles/huge)"
# A part that the store finished while the kill landed may be missing from
# the resume state, so only the parts the state recorded must not be resent.
recorded=$(python3 -c '
import json, sys, glob
nums = set()
for path in glob.glob(sys.argv[1] + "/uploads/*.json"):
    nums |= {int(k) for k in json.load(open(path)).get("parts", {})}
print(sorted(nums))' "$SKILLMEAT_HOME")
echo "parts recorded in the resume state: $recorded"
check "the resume state recorded parts" test "$recorded" != "[]"

from=$(proxy_lines)
sm vault push "$TMP/huge.skillmeat-pack" --vault mp --no-progress
expect "push after SIGKILL exits 0" 0
resent=$(proxy_stats "$from" 'sum(x["up"] for x in r if "partNumber=" in x["target"])')
echo "bytes of parts sent after SIGKILL: $resent of $size"
check "second push sends fewer bytes than the bundle ($resent < $size)" \
  test "$resent" -gt 0 -a "$resent" -lt "$size"
again=$(proxy_stats "$from" "sorted({int(x['target'].split('partNumber=')[1].split('&')[0]) for x in r if 'partNumber=' in x['target']} & set($recorded))")
check "recorded parts are not sent again ($again)" test "$again" = "[]"
check "resumed object is byte-identical" cmp -s "$TMP/huge.skillmeat-pack" \
  "$(s3_object mp/bundles/huge-v1.0.skillmeat-pack)"
sm vault pull huge-v1.0 --vault mp --output "$TMP/dl" --no-progress
expect "pull of resumed bundle exits 0" 0
expect_out "pull of resumed bundle verifies" "(verified)"
check "pull of resumed bundle is byte-identical" cmp -s "$TMP/huge.skillmeat-pack" "$TMP/dl/huge-v1.0.skillmeat-pack"

# --- a file changed after SIGKILL does not reuse the old parts ---

big_bundle changed 30 "$TMP/changed.skillmeat-pack"
push_until_parts "$TMP/changed.skillmeat-pack" mp 2
check "second kill by SIGKILL ($killed_code)" test "$killed_code" -eq 137
# same path, same id, other random data
big_bundle changed 30 "$TMP/changed.skillmeat-pack"
from=$(proxy_lines)
sm vault push "$TMP/changed.skillmeat-pack" --vault mp --no-progress
expect "push of the changed file exits 0" 0
resent=$(proxy_stats "$from" 'sum(x["up"] for x in r if "partNumber=" in x["target"])')
# s3rver 4.0.4 answers AbortMultipartUpload with 405 and lists no uploads,
# so the test checks that the request was sent, not that the store obeyed.
aborts=$(proxy_stats "$from" 'sum(1 for x in r if x["method"] == "DELETE" and "uploadId=" in x["target"])')
check "upload of the old file is aborted ($aborts DELETE requests)" test "$aborts" -ge 1
check "changed file is sent whole ($resent bytes)" test "$resent" -eq "$(stat -c %s "$TMP/changed.skillmeat-pack")"
check "changed file is stored byte-identical" cmp -s "$TMP/changed.skillmeat-pack" \
  "$(s3_object mp/bundles/changed-v1.0.skillmeat-pack)"
sm vault pull changed-v1.0 --vault mp --output "$TMP/dl" --no-progress
expect "pull of the changed file exits 0" 0
check "pull of the changed file is byte-identical" cmp -s "$TMP/changed.skillmeat-pack" \
  "$TMP/dl/changed-v1.0.skillmeat-pack"

check "no upload state is left after the pushes" test -z "$(find "$SKILLMEAT_HOME/uploads" -type f 2>/dev/null)"
check "ls lists the three multipart bundles" test "$(ls_ids --vault mp)" = "big-v1.0 changed-v1.0 huge-v1.0"

finish
