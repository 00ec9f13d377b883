#!/usr/bin/env bash
# Runs every benchmark and prints their RESULT lines as one summary. The
# full output goes to $SKILLMEAT_BENCH_DIR/results-<UTC time>.txt.
set -euo pipefail
cd "$(dirname "$0")"
source ./common.sh

log="$BENCH_DIR/results-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "binary: $SM ($("$SM" --version))"
  echo "cpus: $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "memory: $(free -m | awk '/^Mem:/ { print $2 }') MiB"
  echo "bench dir: $BENCH_DIR on $(df -T "$BENCH_DIR" | awk 'NR == 2 { print $2 " (" $1 ")" }')"
  echo "kernel: $(uname -r)"
} | tee "$log"

for script in small_push.sh ls_10k.sh push_pull_1g.sh; do
  echo "== $script" | tee -a "$log"
  bash "$ROOT/bench/$script" 2>&1 | tee -a "$log" || echo "RESULT $script failed" | tee -a "$log"
done

echo
echo "== summary (full output in $log)"
grep '^RESULT ' "$log" | sed 's/^RESULT //'
