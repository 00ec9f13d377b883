# Shared setup of the S3 benchmark scripts. Source it after common.sh. It
# starts the S3 emulator of the end-to-end tests (tests/servers/servers.sh)
# on 127.0.0.1 with its files under $BENCH_DIR, points skillmeat, aws-cli
# and rclone at it, and stops it when the script exits.
#
# SKILLMEAT_TEST_SERVERS  directory with the emulator's node_modules
#                         (default: .test-servers in the source tree)
# ROUNDS                  rounds per measurement (default 3); medians are reported

ROUNDS=${ROUNDS:-3}
AWS=/usr/bin/aws

for tool in "$AWS" /usr/bin/time python3 node; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: '$tool' is missing" >&2
    exit 1
  fi
done

# servers.sh keeps its files under $TMP and removes $TMP on exit.
SRC=$ROOT
TMP=$(mktemp -d "$BENCH_DIR/s3-$(basename "$0" .sh).XXXXXX")
source "$ROOT/tests/servers/servers.sh"

# _stop_servers runs without `set -e`: under it, the kill of an already
# stopped process group would end the function before $TMP is removed.
_stop_bench_servers() {
  set +e
  _stop_servers 2>/dev/null
}
trap _stop_bench_servers EXIT
start_s3

unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_CA_BUNDLE AWS_CONFIG_FILE \
  AWS_SHARED_CREDENTIALS_FILE AWS_ENDPOINT_URL \
  http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export AWS_ACCESS_KEY_ID=S3RVER
export AWS_SECRET_ACCESS_KEY=S3RVER
export AWS_EC2_METADATA_DISABLED=true
export AWS_DEFAULT_REGION=us-east-1
export AWS_PAGER=

# rclone remote "s3t:" from environment variables only
export RCLONE_CONFIG=/dev/null
export RCLONE_CONFIG_S3T_TYPE=s3
export RCLONE_CONFIG_S3T_PROVIDER=Other
export RCLONE_CONFIG_S3T_ENDPOINT=$S3_ENDPOINT
export RCLONE_CONFIG_S3T_ACCESS_KEY_ID=S3RVER
export RCLONE_CONFIG_S3T_SECRET_ACCESS_KEY=S3RVER
export RCLONE_CONFIG_S3T_REGION=us-east-1
export RCLONE_CONFIG_S3T_FORCE_PATH_STYLE=true

# awsc ARGS...: runs /usr/bin/aws against the emulator.
awsc() { "$AWS" --endpoint-url "$S3_ENDPOINT" "$@"; }

# s3_vault NAME PREFIX [ENDPOINT]: (re)configures S3 vault NAME on bucket
# "vault" at the default settings.
s3_vault() {
  "$SM" vault remove "$1" >/dev/null 2>&1 || true
  "$SM" vault add "$1" s3 vault --endpoint-url "${3:-$S3_ENDPOINT}" --prefix "$2" >/dev/null
}

# timed FILE CMD...: runs CMD after a sync, appends "seconds peak-RSS-KiB"
# to FILE and fails when CMD fails.
timed() {
  local file=$1
  shift
  sync
  /usr/bin/time -f '%e %M' -a -o "$file" "$@" >/dev/null
}

# column FILE N: median of column N of FILE.
column() { awk -v n="$2" '{ print $n }' "$1" | median; }

# start_proxy: starts the counting proxy of the tests in front of the
# emulator; sets PROXY_ENDPOINT and PROXY_LOG.
start_proxy() {
  PROXY_LOG="$TMP/proxy.log"
  : >"$PROXY_LOG"
  _spawn "$TMP/proxy.out" python3 "$ROOT/tests/tools/s3faultproxy.py" \
    --upstream "127.0.0.1:$S3_PORT" --port-file "$TMP/proxy.port" --log "$PROXY_LOG"
  local i
  for i in $(seq 1 250); do
    [ -s "$TMP/proxy.port" ] && break
    sleep 0.02
  done
  PROXY_ENDPOINT="http://127.0.0.1:$(cat "$TMP/proxy.port")"
}

# proxy_summary FROM_LINE: "N requests (M1 METHOD1, ...)" logged after line FROM_LINE.
proxy_summary() {
  python3 - "$PROXY_LOG" "$1" <<'EOF'
import collections, json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()[int(sys.argv[2]):]
records = [json.loads(line) for line in lines]
records = [r for r in records if "n" in r]
methods = collections.Counter(r["method"] for r in records)
print("%d requests (%s)" % (len(records), ", ".join("%d %s" % (n, m) for m, n in sorted(methods.items()))))
EOF
}
