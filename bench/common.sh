# Shared setup of the benchmark scripts. Source it first.
#
# SKILLMEAT        the binary to measure (default: build/skillmeat)
# SKILLMEAT_BENCH_DIR  work directory for bundles, vaults and results
#                  (default: /var/tmp/skillmeat-bench). Put it on the file
#                  system you want to measure; it is kept between runs so
#                  that the 1 GiB bundle is built only once.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SM=${SKILLMEAT:-$ROOT/build/skillmeat}
BENCH_DIR=${SKILLMEAT_BENCH_DIR:-/var/tmp/skillmeat-bench}
SKILL="$ROOT/examples/skills/brand-guidelines"

if [ ! -x "$SM" ]; then
  echo "error: skillmeat binary '$SM' not found; build it or set SKILLMEAT" >&2
  exit 1
fi
if [ ! -d "$SKILL" ]; then
  echo "error: example skill '$SKILL' not found" >&2
  exit 1
fi
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)

# Each script gets its own configuration home, so no user vault is touched.
export SKILLMEAT_HOME="$BENCH_DIR/home-$(basename "$0" .sh)"
export HOME="$SKILLMEAT_HOME/user"
mkdir -p "$HOME"
cd "$BENCH_DIR"

# new_vault NAME: (re)creates an empty local vault $BENCH_DIR/NAME as the default.
new_vault() {
  rm -rf "${BENCH_DIR:?}/$1" "$SKILLMEAT_HOME/sharing.toml"
  "$SM" vault add "$1" local "$BENCH_DIR/$1" --set-default >/dev/null
}

# median: prints the median of the numbers on stdin, one a line.
median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# hyperfine_median FILE: prints the median in milliseconds from a hyperfine --export-json file.
hyperfine_median() {
  jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$1"
}

# result TEXT: prints one line of the summary that run-all.sh collects.
result() { echo "RESULT $*"; }
