#!/usr/bin/env bash
# A bucket in a region other than the vault's setting. A proxy on 127.0.0.1
# (tests/tools/s3regionproxy.py) responds to requests signed for the wrong
# region as AWS does: 301 PermanentRedirect with x-amz-bucket-region, or 400
# AuthorizationHeaderMalformed with the region in the body. skillmeat must
# sign again for that region once per command and succeed. It must reject
# an invalid region name, and a store that keeps redirecting, with one
# error line and nothing written.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SRC/tests/servers/servers.sh"
source "$SRC/tests/e2e/s3lib.sh"

B="$TMP/bundles"
mkdir -p "$B"
make_bundle north 1.0 "$B/north.skillmeat-pack"
make_bundle south 1.0 "$B/south.skillmeat-pack"
make_bundle east 1.0 "$B/east.skillmeat-pack"

RLOG="$TMP/region.log"
RCONTROL="$TMP/region.control"
: >"$RLOG"
printf '{"answer": "redirect"}\n' >"$RCONTROL"
_spawn "$TMP/region.out" python3 "$SRC/tests/tools/s3regionproxy.py" --upstream "127.0.0.1:$S3_PORT" \
  --region eu-west-1 --control "$RCONTROL" --log "$RLOG" --port-file "$TMP/region.port"
for _ in $(seq 1 250); do [ -s "$TMP/region.port" ] && break; sleep 0.02; done
RPORT=$(cat "$TMP/region.port")
check "the region proxy started" test -n "$RPORT"

# count_status STATUS FROM: prints the number of requests after log line FROM that got STATUS.
count_status() { tail -n +"$(($2 + 1))" "$RLOG" | grep -c "\"status\": $1}" || true; }
lines() { wc -l <"$RLOG"; }
set_mode() { printf '{"answer": "%s"}\n' "$1" >"$RCONTROL"; }

sm vault add far s3 vault --endpoint-url "http://127.0.0.1:$RPORT" --prefix region/ --set-default
expect "add a vault with the default region exits 0" 0

# --- 301 PermanentRedirect with x-amz-bucket-region ---

from=$(lines)
sm vault push "$B/north.skillmeat-pack" --no-progress
expect "push through a region redirect exits 0" 0
check "the warning names both regions and the setting" \
  grep -q "is in region 'eu-west-1', not 'us-east-1'; using 'eu-west-1' (set region = \"eu-west-1\"" "$ERR"
check "one redirect per command ($(count_status 301 "$from"))" test "$(count_status 301 "$from")" = 1
check "the bundle is stored" test -n "$(s3_keys region/bundles/north-v1.0.skillmeat-pack)"
check "the metadata is stored" test -n "$(s3_keys region/metadata/north-v1.0.json)"

from=$(lines)
sm vault ls --json
expect "ls through a region redirect exits 0" 0
check "ls lists the bundle" grep -q '"north-v1.0"' "$OUT"
check "ls also follows once ($(count_status 301 "$from"))" test "$(count_status 301 "$from")" = 1

sm vault pull north-v1.0 --output "$TMP/pulled" --no-progress
expect "pull through a region redirect exits 0" 0
check "pull is byte-identical" cmp -s "$B/north.skillmeat-pack" "$TMP/pulled/north-v1.0.skillmeat-pack"

# --- 400 AuthorizationHeaderMalformed naming the region ---

set_mode malformed
from=$(lines)
sm vault push "$B/south.skillmeat-pack" --no-progress
expect "push after AuthorizationHeaderMalformed exits 0" 0
check "one malformed-authorization answer ($(count_status 400 "$from"))" test "$(count_status 400 "$from")" = 1
check "south is stored" test -n "$(s3_keys region/bundles/south-v1.0.skillmeat-pack)"

# --- the right region from the start sends no wasted request ---

sm vault add near s3 vault --endpoint-url "http://127.0.0.1:$RPORT" --prefix region/ --region eu-west-1
set_mode redirect
from=$(lines)
sm vault ls --vault near --json
expect "ls with the right region exits 0" 0
check "no redirect with the right region ($(count_status 301 "$from"))" test "$(count_status 301 "$from")" = 0
check "no warning with the right region" test ! -s "$ERR"

# --- an invalid region name is refused ---

before=$(s3_state)
set_mode bogus
sm vault push "$B/east.skillmeat-pack" --no-progress
expect_err "an invalid region name exits 9" 9 "invalid region 'no such/region' named by the server"
one_line_error "the invalid-region error is one line" S3RVER
check "the invalid region wrote nothing" test "$(s3_state)" = "$before"

# --- a store that keeps redirecting ---

set_mode pingpong
sm vault push "$B/east.skillmeat-pack" --no-progress
expect_err "a second redirect exits 9" 9 "bucket 'vault' is not in region 'eu-west-1' (HTTP 301, PermanentRedirect"
check "the first redirect was reported as a warning" grep -q "^skillmeat: warning: .*using 'eu-west-1'" "$ERR"
check "one error line follows it" test "$(grep -c '^skillmeat: error: ' "$ERR")" = 1
check "the repeated redirect wrote nothing" test "$(s3_state)" = "$before"
check "east is not listed" test -z "$(s3_keys region/metadata/east-v1.0.json)"

finish
