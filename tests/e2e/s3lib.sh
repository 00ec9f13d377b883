# Shared setup of the S3 end-to-end scripts (t10x-s3*.sh). Source it after
# lib.sh and servers.sh. It starts the S3 emulator, points the AWS
# variables at it and offers helpers to inspect the bucket, to run Debian's
# aws-cli against it and to put the fault proxy in between.
#
#   S3_ENDPOINT, S3_PORT   the emulator (bucket "vault", key and secret "S3RVER")
#   S3_BUCKET_DIR          the emulator's files of bucket "vault"
#   AWS                    /usr/bin/aws; a pyenv or pip aws earlier in PATH is ignored

AWS=/usr/bin/aws
PROXY_TOOL="$SRC/tests/tools/s3faultproxy.py"

# No user or machine setting may reach skillmeat or aws: credentials come
# from the two variables below, and no metadata address is ever asked.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_CA_BUNDLE AWS_CONFIG_FILE \
  AWS_SHARED_CREDENTIALS_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI \
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_AUTHORIZATION_TOKEN \
  AWS_EC2_METADATA_SERVICE_ENDPOINT AWS_ENDPOINT_URL \
  http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
export AWS_ACCESS_KEY_ID=S3RVER
export AWS_SECRET_ACCESS_KEY=S3RVER
export AWS_EC2_METADATA_DISABLED=true
export AWS_DEFAULT_REGION=us-east-1
export AWS_PAGER=

if [ ! -x "$AWS" ]; then
  echo "s3lib: $AWS is missing; install Debian's awscli package" >&2
  exit 1
fi
start_s3 || exit 1
S3_BUCKET_DIR="$TMP/s3data/vault"

# awsc ARGS...: runs /usr/bin/aws against the emulator.
awsc() { "$AWS" --endpoint-url "$S3_ENDPOINT" "$@"; }

# s3_keys [PREFIX]: prints the keys of bucket "vault" that start with
# PREFIX, sorted, one a line. It reads the emulator's files, so it sends no
# request.
s3_keys() {
  (cd "$S3_BUCKET_DIR" && find . -type f -name '*._S3rver_object' -printf '%P\n') |
    sed 's/\._S3rver_object$//' | awk -v p="${1:-}" 'index($0, p) == 1' | LC_ALL=C sort
}

# s3_state: one hash over every object key and content of the bucket, to
# show that a failed command wrote nothing.
s3_state() {
  (cd "$S3_BUCKET_DIR" && find . -type f -name '*._S3rver_object' -print0 | LC_ALL=C sort -z |
    xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1
}

# s3_object KEY: path of the emulator's file that contains object KEY.
s3_object() { printf '%s/%s._S3rver_object' "$S3_BUCKET_DIR" "$1"; }

# json_check FILE EXPR: passes when the Python expression EXPR is true for d = the JSON in FILE.
json_check() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
    "$1" "$2" 2>/dev/null
}

# ls_ids ARGS...: the ids that `vault ls --json ARGS` lists, space-separated.
ls_ids() {
  "$SM" vault ls --json "$@" 2>/dev/null |
    python3 -c 'import json, sys; print(" ".join(r["bundle_id"] for r in json.load(sys.stdin)))' 2>/dev/null
}

# one_line_error NAME SECRET: stderr is exactly one line and does not
# contain SECRET.
one_line_error() {
  if [ "$(wc -l <"$ERR")" -ne 1 ]; then
    not_ok "$1" "stderr has $(wc -l <"$ERR") lines, expected 1"
  elif grep -qF -- "$2" "$ERR"; then
    not_ok "$1" "stderr contains the secret"
  else
    ok "$1"
  fi
}

# big_bundle NAME MIB OUT: creates bundle OUT from the example skill plus
# MIB MiB of random (incompressible) data.
big_bundle() {
  local dir="$TMP/skills/$1"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$SRC/examples/skills/brand-guidelines/." "$dir/"
  head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$dir/random.bin"
  "$SM" bundle create "$dir" --name "$1" --version 1.0 --description "large test bundle $1" \
    --author e2e -o "$3" >/dev/null
}

# start_proxy ARGS...: starts tests/tools/s3faultproxy.py between the client
# and the emulator with extra ARGS. Sets PROXY_ENDPOINT, PROXY_LOG (its
# JSON-lines request log) and PROXY_CONTROL (a control file it re-reads).
start_proxy() {
  local n=${#_server_groups[@]}
  PROXY_LOG="$TMP/proxy-$n.log"
  PROXY_CONTROL="$TMP/proxy-$n.control"
  : >"$PROXY_LOG"
  _spawn "$TMP/proxy-$n.out" python3 "$PROXY_TOOL" --upstream "127.0.0.1:$S3_PORT" \
    --port-file "$TMP/proxy-$n.port" --log "$PROXY_LOG" --control "$PROXY_CONTROL" "$@"
  local i
  for i in $(seq 1 250); do
    [ -s "$TMP/proxy-$n.port" ] && break
    sleep 0.02
  done
  if [ ! -s "$TMP/proxy-$n.port" ]; then
    echo "s3lib: the fault proxy did not start:" >&2
    cat "$TMP/proxy-$n.out" >&2
    return 1
  fi
  PROXY_PORT=$(cat "$TMP/proxy-$n.port")
  PROXY_ENDPOINT="http://127.0.0.1:$PROXY_PORT"
}

# proxy_control JSON: replaces the fault settings of the last started proxy.
proxy_control() {
  printf '%s\n' "$1" >"$PROXY_CONTROL.tmp"
  mv "$PROXY_CONTROL.tmp" "$PROXY_CONTROL"
  # the proxy compares modification times in nanoseconds, so make sure it changes
  sleep 0.01
}

# proxy_stats FROM_LINE EXPR: evaluates the Python expression EXPR over the
# proxy's request records after line FROM_LINE; `r` is the list of records.
proxy_stats() {
  python3 - "$PROXY_LOG" "$1" "$2" <<'EOF'
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()[int(sys.argv[2]):]
r = [json.loads(line) for line in lines]
r = [x for x in r if "n" in x]
print(eval(sys.argv[3]))
EOF
}

# proxy_lines: the current line count of the proxy log, for proxy_stats.
proxy_lines() { wc -l <"$PROXY_LOG"; }

# same_ids NAME GOT EXPECTED: passes when the space-separated id lists GOT
# and EXPECTED are equal, else names the missing, extra and repeated ids.
same_ids() {
  if [ "$2" = "$3" ]; then
    ok "$1"
    return
  fi
  local missing extra twice
  twice=$(tr ' ' '\n' <<<"$2" | LC_ALL=C sort | uniq -d | head -10 | tr '\n' ' ')
  missing=$(comm -13 <(tr ' ' '\n' <<<"$2" | LC_ALL=C sort) <(tr ' ' '\n' <<<"$3" | LC_ALL=C sort) | head -10 | tr '\n' ' ')
  extra=$(comm -23 <(tr ' ' '\n' <<<"$2" | LC_ALL=C sort) <(tr ' ' '\n' <<<"$3" | LC_ALL=C sort) | head -10 | tr '\n' ' ')
  not_ok "$1" "missing: ${missing:-none}" "extra: ${extra:-none}" "listed twice: ${twice:-none}" \
    "got $(wc -w <<<"$2") ids, expected $(wc -w <<<"$3")"
}
