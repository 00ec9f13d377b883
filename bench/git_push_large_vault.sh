#!/usr/bin/env bash
# Cost of a git vault as it grows: pushing a 1 MiB bundle into a vault
# that already contains SIZE_MB MiB of other bundles, against pushing it into
# an empty vault, and against the original tool's way (a `git clone
# --depth 1` of the branch, add, commit, push) on the same large
# repository. Then `ls` and `pull` of one bundle on the large vault.
#
# The repositories are served over HTTPS by the test servers of
# tests/servers/servers.sh (nginx, git-http-backend, basic auth, a
# self-signed CA) on 127.0.0.1. "fetched" is the sum of the response body
# bytes that nginx logged for the command's requests, so it counts what
# the client downloaded, not what it uploaded.
#
# Each command runs with a new SKILLMEAT_HOME, so with an empty cache, as
# the first command on a new machine would; "warm" rows run a second
# command after the first has filled the cache. Every round uses fresh
# copies of the repositories. Prints the medians of ROUNDS rounds.
#
#   SIZE_MB  MiB of other bundles in the large vault (default 500), stored
#            as bundles of 10 MiB of random data
#   ROUNDS   rounds (default 3)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SIZE_MB=${SIZE_MB:-500}
ROUNDS=${ROUNDS:-3}
PART_MB=10
COUNT=$(((SIZE_MB + PART_MB - 1) / PART_MB))
TEMPLATE="$BENCH_DIR/git-large-${SIZE_MB}m.git"
ONE="$BENCH_DIR/git-one-1m.skillmeat-pack"
TWO="$BENCH_DIR/git-two-1m.skillmeat-pack"

# servers.sh and the e2e helpers expect SRC and TMP. The EXIT trap removes TMP.
SRC=$ROOT
TMP=$(mktemp -d "$BENCH_DIR/git-run.XXXXXX")
source "$ROOT/tests/servers/servers.sh"
# servers.sh's cleanup expects errexit to be off
trap 'set +e; _stop_servers' EXIT
set +u
source "$ROOT/tests/tools/git_e2e.sh"
set -u

# make_part NAME MIB OUT: a bundle of the example skill plus MIB MiB of random data.
make_part() {
  local d="$TMP/part-skill"
  rm -rf "$d"
  mkdir -p "$d"
  cp -r "$SKILL/." "$d/"
  head -c "$(($2 * 1048576))" /dev/urandom >"$d/data.bin"
  "$SM" bundle create "$d" --name "$1" --version 1.0 --description "benchmark bundle $1" \
    --author bench -o "$3" >/dev/null
  rm -rf "$d"
}

[ -f "$ONE" ] || make_part bench-one 1 "$ONE"
[ -f "$TWO" ] || make_part bench-two 1 "$TWO"

# The large repository is built once and kept: bundles go into a local
# vault, whose layout is the git vault's, and plain git commits that tree.
if [ ! -d "$TEMPLATE" ]; then
  echo "building $TEMPLATE: $COUNT bundles of $PART_MB MiB (once)"
  staging="$TMP/staging"
  SKILLMEAT_HOME="$TMP/staging-home" "$SM" vault add staging local "$staging" >/dev/null
  for ((i = 1; i <= COUNT; i++)); do
    make_part "large-$i" "$PART_MB" "$TMP/part.skillmeat-pack"
    SKILLMEAT_HOME="$TMP/staging-home" "$SM" vault push "$TMP/part.skillmeat-pack" --vault staging --quiet
  done
  rm -f "$TMP/part.skillmeat-pack" "$staging/.skillmeat-vault.lock"
  git init -q --bare -b main "$TEMPLATE.tmp"
  git -C "$staging" init -q -b main
  git -C "$staging" add -A
  git -C "$staging" -c user.name=bench -c user.email=bench@bench.invalid commit -q -m "Add $COUNT bundles"
  git -C "$staging" push -q "$TEMPLATE.tmp" main
  mv "$TEMPLATE.tmp" "$TEMPLATE"
  rm -rf "$staging" "$TMP/staging-home"
fi

start_https
REPOS="$TMP/https/repos"
ACCESS_LOG="$TMP/https/access.log"
BASE_URL="https://localhost:$HTTPS_PORT/git"
PASSWORD_FILE="$TMP/password"
(umask 077 && printf '%s\n' "$HTTPS_PASSWORD" >"$PASSWORD_FILE")
# the baseline's git reads the same credentials from a store file
(umask 077 && printf 'https://vault:%s@localhost:%s\n' \
  "$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$HTTPS_PASSWORD")" \
  "$HTTPS_PORT" >"$TMP/git-credentials")

# serve_copy NAME [TEMPLATE]: a servable bare repository NAME.git, empty or a
# copy of TEMPLATE. Objects are hard links: git never changes an object
# file, and refs and config are replaced by rename.
serve_copy() {
  local repo="$REPOS/$1.git"
  rm -rf "$repo"
  if [ -n "${2:-}" ]; then
    cp -al "$2" "$repo"
  else
    git init -q --bare -b main "$repo"
  fi
  git -C "$repo" config http.receivepack true
  git -C "$repo" config uploadpack.allowFilter true
  git -C "$repo" config uploadpack.allowAnySHA1InWant true
}

# new_home NAME: a new SKILLMEAT_HOME with the default vault on repository NAME.
new_home() {
  export SKILLMEAT_HOME="$TMP/home-$1-$RANDOM"
  export HOME="$SKILLMEAT_HOME/user"
  TOML="$SKILLMEAT_HOME/sharing.toml"
  mkdir -p "$HOME"
  "$SM" vault add bench git "$BASE_URL/$1.git" --set-default >/dev/null
  vault_set bench ca_bundle "$(toml_str "$HTTPS_CA")"
  "$SM" vault auth bench --username vault --password-stdin <"$PASSWORD_FILE" >/dev/null
}

# measure CMD...: runs CMD and writes "MILLISECONDS FETCHED_BYTES" to
# $TMP/measured; fails if CMD fails. It runs in the main shell, so that a
# failure ends the script through its EXIT trap, which stops the servers.
measure() {
  local lines start end
  lines=$(wc -l <"$ACCESS_LOG")
  start=$(date +%s%N)
  if ! "$@" >"$TMP/cmd.out" 2>"$TMP/cmd.err"; then
    echo "error: '$*' failed:" >&2
    cat "$TMP/cmd.err" >&2
    return 1
  fi
  end=$(date +%s%N)
  echo "$(((end - start) / 1000000)) $(tail -n +"$((lines + 1))" "$ACCESS_LOG" |
    awk '{ s += $10 } END { print s + 0 }')" >"$TMP/measured"
}

# original_push NAME: the original tool's push of $ONE into repository NAME:
# a shallow clone of the branch, the three files written, commit, push.
original_push() {
  local work="$TMP/original-work"
  rm -rf "$work"
  git -c http.sslCAInfo="$HTTPS_CA" -c credential.helper="store --file=$TMP/git-credentials" \
    clone -q --depth 1 -b main "$BASE_URL/$1.git" "$work"
  cp "$ONE" "$work/bundles/bench-one-v1.0.skillmeat-pack"
  python3 - "$ONE" "$work" <<'EOF'
import datetime, hashlib, json, os, sys
bundle, work = sys.argv[1:]
now = datetime.datetime.now().isoformat()
record = {
    "bundle_id": "bench-one-v1.0", "name": "bench-one", "version": "1.0",
    "description": "benchmark bundle bench-one", "author": "bench",
    "created_at": now, "uploaded_at": now, "size_bytes": os.path.getsize(bundle),
    "bundle_hash": "sha256:" + hashlib.sha256(open(bundle, "rb").read()).hexdigest(),
    "tags": [], "vault_path": "bundles/bench-one-v1.0.skillmeat-pack", "metadata": {},
}
json.dump(record, open(os.path.join(work, "metadata", "bench-one-v1.0.json"), "w"), indent=2)
index_path = os.path.join(work, "index.json")
index = json.load(open(index_path))
index["bench-one-v1.0"] = record
json.dump(index, open(index_path, "w"), indent=2)
EOF
  git -C "$work" add -A
  git -C "$work" -c user.name=bench -c user.email=bench@bench.invalid commit -q -m "Add bench-one-v1.0"
  git -C "$work" -c http.sslCAInfo="$HTTPS_CA" -c credential.helper="store --file=$TMP/git-credentials" \
    push -q origin HEAD:main
  rm -rf "$work"
}

# cache_size: bytes under the cache directory of the current SKILLMEAT_HOME.
cache_size() { du -sb "$SKILLMEAT_HOME/cache" 2>/dev/null | cut -f1; }

RUNS="$TMP/runs"
: >"$RUNS"
large_mib=$(($(du -sbL "$TEMPLATE/objects" | cut -f1) / 1048576))
echo "large vault: $COUNT bundles, $large_mib MiB of git objects; pushed bundle $(stat -c %s "$ONE") bytes"
echo "server: nginx + git-http-backend over HTTPS on 127.0.0.1; ROUNDS=$ROUNDS"
printf '%-5s %-34s %9s %14s %12s\n' round case ms fetched_bytes cache_bytes
for ((r = 1; r <= ROUNDS; r++)); do
  serve_copy empty
  serve_copy large "$TEMPLATE"
  serve_copy baseline "$TEMPLATE"

  # row CASE CMD...: measures CMD and records one row
  row() {
    local label=$1 m cache
    shift
    measure "$@"
    m=$(cat "$TMP/measured")
    cache="$(cache_size)"
    # the baseline keeps no cache of ours
    case $label in original:*) cache=- ;; esac
    printf '%-5s %-34s %9s %14s %12s\n' "$r" "$label" ${m} "$cache"
    echo "$label|${m% *}|${m#* }" >>"$RUNS"
  }

  new_home empty
  row "push 1 MiB, empty vault" "$SM" vault push "$ONE" --no-progress
  row "push 1 MiB, empty vault, warm" "$SM" vault push "$TWO" --no-progress

  new_home large
  row "push 1 MiB, large vault" "$SM" vault push "$ONE" --no-progress
  row "push 1 MiB, large vault, warm" "$SM" vault push "$TWO" --no-progress
  row "ls, large vault, warm" "$SM" vault ls
  row "pull 10 MiB, large vault, warm" "$SM" vault pull large-1-v1.0 --output "$TMP/pulled-$r" --no-progress

  new_home large
  row "ls, large vault" "$SM" vault ls
  new_home large
  row "pull 10 MiB, large vault" "$SM" vault pull large-2-v1.0 --output "$TMP/pulled-$r" --no-progress

  row "original: clone+commit+push, large" original_push baseline
  rm -rf "$TMP/pulled-$r" "$TMP"/home-*
done

echo
echo "medians of $ROUNDS rounds:"
printf '%-34s %9s %14s\n' case ms fetched_bytes
cut -d'|' -f1 "$RUNS" | awk '!seen[$0]++' >"$TMP/labels"
: >"$TMP/medians"
while read -r label; do
  ms=$(awk -F'|' -v l="$label" '$1 == l { print $2 }' "$RUNS" | median)
  bytes=$(awk -F'|' -v l="$label" '$1 == l { print $3 }' "$RUNS" | median)
  printf '%-34s %9s %14s\n' "$label" "$ms" "$bytes"
  echo "$label|$ms|$bytes" >>"$TMP/medians"
done <"$TMP/labels"

# med FIELD LABEL: the median FIELD (2 ms, 3 bytes) of the row LABEL.
med() { awk -F'|' -v l="$2" '$1 == l { print $'"$1"' }' "$TMP/medians"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
result "git push 1 MiB into $SIZE_MB MiB vault: $(med 2 "push 1 MiB, large vault") ms," \
  "$(med 3 "push 1 MiB, large vault") bytes fetched;" \
  "into empty vault: $(med 2 "push 1 MiB, empty vault") ms, $(med 3 "push 1 MiB, empty vault") bytes;" \
  "ratio $(ratio "$(med 2 "push 1 MiB, large vault")" "$(med 2 "push 1 MiB, empty vault")")"
result "git push original way (clone --depth 1, commit, push) into $SIZE_MB MiB vault:" \
  "$(med 2 "original: clone+commit+push, large") ms, $(med 3 "original: clone+commit+push, large") bytes fetched"
result "git ls on $SIZE_MB MiB vault: $(med 2 "ls, large vault") ms cold, $(med 2 "ls, large vault, warm") ms warm;" \
  "pull 10 MiB: $(med 2 "pull 10 MiB, large vault") ms cold, $(med 3 "pull 10 MiB, large vault") bytes fetched"
