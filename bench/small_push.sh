#!/usr/bin/env bash
# Wall time of one vault push of a small bundle (the brand-guidelines
# example) into a local vault. Before each run the pushed id is deleted,
# so every run stores the bundle anew. Then one push runs under strace to
# show whether copy_file_range() copies the data on this file system.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BUNDLE="$BENCH_DIR/bench-small.skillmeat-pack"

new_vault vault-small
"$SM" bundle create "$SKILL" --name bench-small --version 1 --description "small benchmark bundle" \
  --author bench -o "$BUNDLE" >/dev/null
echo "bundle: $BUNDLE ($(stat -c %s "$BUNDLE") bytes)"

# One push first makes the id exist before every run, so the delete in
# --prepare succeeds. -N runs the commands without a shell, because its
# start-up would be a large part of a 5 ms command.
"$SM" vault push "$BUNDLE" --no-progress >/dev/null
hyperfine -N --warmup 3 --runs 30 --export-json "$BENCH_DIR/small.json" \
  --prepare "$SM vault delete bench-small-v1" \
  "$SM vault push $BUNDLE --no-progress"
"$SM" vault delete bench-small-v1 >/dev/null
/usr/bin/time -f '%e %M' -o "$BENCH_DIR/small-time.txt" "$SM" vault push "$BUNDLE" --no-progress >/dev/null
read -r _ small_kib <"$BENCH_DIR/small-time.txt"
result "small_push: vault push median $(hyperfine_median "$BENCH_DIR/small.json") ms," \
  "peak RSS $(awk -v k="$small_kib" 'BEGIN { printf "%.1f", k / 1024 }') MiB"

if command -v strace >/dev/null; then
  "$SM" vault delete bench-small-v1 >/dev/null
  strace -f -e trace=copy_file_range,read,write -o "$BENCH_DIR/small-strace.txt" \
    "$SM" vault push "$BUNDLE" --no-progress >/dev/null
  calls=$(grep -c 'copy_file_range(' "$BENCH_DIR/small-strace.txt" || true)
  copied=$(grep 'copy_file_range(' "$BENCH_DIR/small-strace.txt" |
    sed -n 's/.*= \([0-9][0-9]*\)$/\1/p' | awk '{ s += $1 } END { print s + 0 }')
  failed=$(grep 'copy_file_range(' "$BENCH_DIR/small-strace.txt" | grep -c '= -1' || true)
  echo "copy_file_range on $(df -T "$BENCH_DIR" | awk 'NR == 2 { print $2 }'):"
  grep 'copy_file_range(' "$BENCH_DIR/small-strace.txt" | head -5
  result "small_push: copy_file_range calls $calls, bytes copied by it $copied, failed calls $failed"
fi
