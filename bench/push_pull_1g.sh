#!/usr/bin/env bash
# Push and pull of a 1 GiB bundle through a local vault on the same disk,
# against a plain-tool baseline that moves the same bytes twice and hashes
# them once: cp FILE dest1 && cp dest1 dest2 && sha256sum dest2.
#
# Two more baselines fsync both copies, as push and pull do: one hashes
# with sha256sum, one with openssl dgst. coreutils sha256sum (9.1) does not
# use the CPU's SHA instructions, while OpenSSL, which skillmeat links,
# does. So the last baseline does the same work with the same hash code.
#
# Runs are interleaved (ours, then each baseline) ROUNDS times after one
# warm-up round, so all of them see a warm page cache. Prints the medians
# of wall time and the peak RSS of each command.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS=${ROUNDS:-5}
SIZE_MIB=${SIZE_MIB:-1024}
BUNDLE="$BENCH_DIR/big-${SIZE_MIB}m.skillmeat-pack"
RUNS="$BENCH_DIR/push_pull_runs.txt"

# the bundle is cached: random data makes bundle create slow at this size
if [ ! -f "$BUNDLE" ]; then
  echo "building $BUNDLE (once)"
  rm -rf "$BENCH_DIR/big-skill"
  mkdir -p "$BENCH_DIR/big-skill"
  cp -r "$SKILL/." "$BENCH_DIR/big-skill/"
  head -c "${SIZE_MIB}M" /dev/urandom >"$BENCH_DIR/big-skill/data.bin"
  "$SM" bundle create "$BENCH_DIR/big-skill" --name bench-big --version 1 \
    --description "benchmark bundle of $SIZE_MIB MiB" --author bench -o "$BUNDLE.tmp"
  mv "$BUNDLE.tmp" "$BUNDLE"
  rm -rf "$BENCH_DIR/big-skill"
fi
bundle_mib=$(($(stat -c %s "$BUNDLE") / 1048576))

new_vault vault-big
OUT="$BENCH_DIR/pulled"
PEER="$BENCH_DIR/peer"
TIMING="$BENCH_DIR/time.txt"

# timed CMD...: runs CMD under /usr/bin/time; prints "SECONDS KIB".
timed() {
  /usr/bin/time -f '%e %M' -o "$TIMING" "$@" >/dev/null
  cat "$TIMING"
}

# baseline HASH_COMMAND FSYNC: copies $BUNDLE twice into $PEER (fsyncing
# each copy when FSYNC is 1) and hashes the second copy.
baseline() {
  rm -f "$PEER/dest1" "$PEER/dest2"
  sync
  timed sh -c 'cp "$1" "$2/dest1" && { [ "$4" = 0 ] || sync "$2/dest1"; } &&
    cp "$2/dest1" "$2/dest2" && { [ "$4" = 0 ] || sync "$2/dest2"; } && $3 "$2/dest2"' \
    sh "$BUNDLE" "$PEER" "$1" "$2"
}

# one_round: one measured round; prints "push_s push_kib pull_s pull_kib"
# and then "seconds kib" of each baseline.
one_round() {
  local push pull
  rm -rf "$OUT" "$PEER"
  mkdir -p "$OUT" "$PEER"
  "$SM" vault delete bench-big-v1 >/dev/null 2>&1 || true
  sync

  push=$(timed "$SM" vault push "$BUNDLE" --no-progress)
  sync
  pull=$(timed "$SM" vault pull bench-big-v1 --output "$OUT" --no-progress)
  if ! cmp -s "$BUNDLE" "$OUT/bench-big-v1.skillmeat-pack"; then
    echo "error: pulled file differs from $BUNDLE" >&2
    exit 1
  fi
  echo "$push $pull $(baseline sha256sum 0) $(baseline sha256sum 1) $(baseline 'openssl dgst -sha256' 1)"
}

echo "bundle: $BUNDLE ($bundle_mib MiB); vault and output on the same file system"
echo "page cache: warm (one unmeasured round first); sync runs before each timed command, outside the timing"
one_round >/dev/null
: >"$RUNS"
echo "baselines: cp+cp+sha256sum; the same with fsync; cp+cp+openssl dgst -sha256 with fsync"
echo "round  push_s  pull_s  ours_s  base_s  base_fsync_s  base_openssl_s  push_MiB  pull_MiB"
for ((round = 1; round <= ROUNDS; round++)); do
  line=$(one_round)
  read -r push_s push_kib pull_s pull_kib peer_s peer_kib sync_s _ ossl_s _ <<<"$line"
  ours_s=$(awk -v a="$push_s" -v b="$pull_s" 'BEGIN { printf "%.2f", a + b }')
  echo "$push_s $pull_s $ours_s $peer_s $sync_s $push_kib $pull_kib $peer_kib $ossl_s" >>"$RUNS"
  printf '%5d  %6s  %6s  %6s  %6s  %12s  %14s  %8.1f  %8.1f\n' "$round" "$push_s" "$pull_s" \
    "$ours_s" "$peer_s" "$sync_s" "$ossl_s" "$(awk -v k="$push_kib" 'BEGIN { print k / 1024 }')" \
    "$(awk -v k="$pull_kib" 'BEGIN { print k / 1024 }')"
done

column_median() { awk -v c="$1" '{ print $c }' "$RUNS" | median; }
column_max() { awk -v c="$1" '{ print $c }' "$RUNS" | sort -g | tail -1; }
push_med=$(column_median 1)
pull_med=$(column_median 2)
ours_med=$(column_median 3)
peer_med=$(column_median 4)
sync_med=$(column_median 5)
ossl_med=$(column_median 9)
rss_mib=$(awk -v a="$(column_max 6)" -v b="$(column_max 7)" 'BEGIN { printf "%.1f", (a > b ? a : b) / 1024 }')
peer_rss_mib=$(awk -v a="$(column_max 8)" 'BEGIN { printf "%.1f", a / 1024 }')
ratio=$(awk -v a="$ours_med" -v b="$peer_med" 'BEGIN { printf "%.2f", a / b }')
ratio_sync=$(awk -v a="$ours_med" -v b="$sync_med" 'BEGIN { printf "%.2f", a / b }')
ratio_ossl=$(awk -v a="$ours_med" -v b="$ossl_med" 'BEGIN { printf "%.2f", a / b }')

result "push_pull_1g: bundle $bundle_mib MiB, $ROUNDS rounds, medians:" \
  "push ${push_med} s, pull ${pull_med} s, push+pull ${ours_med} s"
result "push_pull_1g: baseline cp+cp+sha256sum ${peer_med} s -> ratio ${ratio}x;" \
  "with fsync ${sync_med} s -> ${ratio_sync}x; with fsync and openssl dgst ${ossl_med} s -> ${ratio_ossl}x"
result "push_pull_1g: peak RSS push/pull max ${rss_mib} MiB (baseline ${peer_rss_mib} MiB)"

"$SM" vault delete bench-big-v1 >/dev/null 2>&1 || true
rm -rf "$OUT" "$PEER"
