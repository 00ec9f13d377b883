#!/usr/bin/env bash
# Pull of a 256 MiB bundle from an http vault against `curl -o` of the same
# file from the same nginx (HTTPS, self-signed CA, tests/servers/servers.sh)
# in the same run.
#
# skillmeat pull fetches the metadata, streams the bundle into a file while
# hashing it, checks size and SHA-256, recomputes every artifact hash of
# the bundle and fsyncs the file. `curl -o` only writes the bytes. A second
# baseline adds what a careful user would do by hand: curl, then
# `openssl dgst -sha256`, then `sync FILE`.
#
# Runs are interleaved (ours, curl, curl+hash+sync) ROUNDS times after one
# warm-up round, with a warm page cache on the server side. Prints the
# medians of wall time and their ratios.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-256}
BUNDLE="$BENCH_DIR/http-${SIZE_MIB}m.skillmeat-pack"

# the bundle is cached: random data makes bundle create slow at this size
if [ ! -f "$BUNDLE" ]; then
  echo "building $BUNDLE (once)"
  rm -rf "$BENCH_DIR/http-skill"
  mkdir -p "$BENCH_DIR/http-skill"
  cp -r "$SKILL/." "$BENCH_DIR/http-skill/"
  head -c "${SIZE_MIB}M" /dev/urandom >"$BENCH_DIR/http-skill/data.bin"
  "$SM" bundle create "$BENCH_DIR/http-skill" --name bench-http --version 1 \
    --description "benchmark bundle of $SIZE_MIB MiB" --author bench -o "$BUNDLE.tmp" >/dev/null
  mv "$BUNDLE.tmp" "$BUNDLE"
  rm -rf "$BENCH_DIR/http-skill"
fi

# servers.sh keeps its files under $TMP and removes them on exit
TMP=$(mktemp -d "$BENCH_DIR/http-server.XXXXXX")
SRC=$ROOT
set +u
source "$ROOT/tests/servers/servers.sh"
set -u
# servers.sh's cleanup needs errexit off, or it can stop before TMP is removed
trap 'set +e; _stop_servers' EXIT
unset GIT_SSL_CAINFO AWS_CA_BUNDLE CURL_CA_BUNDLE SSL_CERT_FILE \
  http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
start_https

rm -f "$SKILLMEAT_HOME/sharing.toml"
"$SM" vault add publish local "$HTTPS_PUBLIC" >/dev/null
"$SM" vault push "$BUNDLE" --vault publish --no-progress >/dev/null
URL="https://localhost:$HTTPS_PORT/public"
"$SM" vault add web http "$URL" --ca-bundle "$HTTPS_CA" --set-default >/dev/null
FILE_URL="$URL/bundles/bench-http-v1.skillmeat-pack"
OUT="$BENCH_DIR/http-pulled"
TIMING="$BENCH_DIR/http-time.txt"

# timed CMD...: runs CMD under /usr/bin/time and prints the wall seconds.
timed() {
  /usr/bin/time -f '%e' -o "$TIMING" "$@" >/dev/null
  cat "$TIMING"
}

one_round() {
  local ours plain careful
  rm -rf "$OUT" && mkdir -p "$OUT" && sync
  ours=$(timed "$SM" vault pull bench-http-v1 --output "$OUT" --no-progress)
  if ! cmp -s "$BUNDLE" "$OUT/bench-http-v1.skillmeat-pack"; then
    echo "error: pulled file differs from $BUNDLE" >&2
    exit 1
  fi
  rm -rf "$OUT" && mkdir -p "$OUT" && sync
  plain=$(timed curl -sS --fail --cacert "$HTTPS_CA" -o "$OUT/curl.pack" "$FILE_URL")
  rm -rf "$OUT" && mkdir -p "$OUT" && sync
  careful=$(timed sh -c 'curl -sS --fail --cacert "$1" -o "$2" "$3" && openssl dgst -sha256 "$2" && sync "$2"' \
    sh "$HTTPS_CA" "$OUT/curl.pack" "$FILE_URL")
  echo "$ours $plain $careful"
}

echo "bundle: $BUNDLE ($(($(stat -c %s "$BUNDLE") / 1048576)) MiB) from nginx over HTTPS on 127.0.0.1"
one_round >/dev/null
echo "round  pull_s  curl_s  curl_hash_sync_s"
runs=()
for i in $(seq 1 "$ROUNDS"); do
  r=$(one_round)
  runs+=("$r")
  echo "$i      $r"
done
col() { printf '%s\n' "${runs[@]}" | awk -v c="$1" '{ print $c }' | median; }
ours=$(col 1)
plain=$(col 2)
careful=$(col 3)
ratio=$(awk -v a="$ours" -v b="$plain" 'BEGIN { printf "%.2f", a / b }')
ratio_careful=$(awk -v a="$ours" -v b="$careful" 'BEGIN { printf "%.2f", a / b }')
echo "median over $ROUNDS rounds: pull ${ours}s, curl -o ${plain}s (${ratio}x), curl+sha256+sync ${careful}s (${ratio_careful}x)"
result "http pull ${SIZE_MIB} MiB: ${ours}s; curl -o ${plain}s (${ratio}x, goal <= 1.1x); curl+openssl dgst+sync ${careful}s (${ratio_careful}x)"
rm -rf "$OUT"
# the servers' cleanup kills process groups that may be gone already
set +e
