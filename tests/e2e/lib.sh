# Shared helpers of the end-to-end scripts. Source it first; it creates a
# scratch directory, points SKILLMEAT_HOME and HOME into it, and counts
# checks. Each script ends with `finish`.
#
# ctest sets SKILLMEAT (the binary), SKILLMEAT_SOURCE_DIR and
# SKILLMEAT_BUILD_DIR; run by hand, the defaults assume ./build.
set -uo pipefail

SRC=${SKILLMEAT_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${SKILLMEAT_BUILD_DIR:-$SRC/build}
SM=${SKILLMEAT:-$BUILD/skillmeat}
SHARED=${SKILLMEAT_SHARED_DIR:-$SRC/../shared}
# Programs that scripts build themselves must match a sanitizer build.
if grep -q '^SKILLMEAT_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  export SKILLMEAT_SANITIZE=1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/skillmeat-e2e.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
export SKILLMEAT_HOME="$TMP/home"
export HOME="$TMP/user"
mkdir -p "$HOME"
unset NO_COLOR SOURCE_DATE_EPOCH
cd "$TMP"

passed=0
failed=0
OUT="$TMP/.out"
ERR="$TMP/.err"
CODE=0

ok() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
not_ok() {
  failed=$((failed + 1))
  printf 'FAIL %s\n' "$1"
  shift
  [ $# -gt 0 ] && printf '     %s\n' "$@"
  [ -s "$OUT" ] && sed 's/^/     stdout: /' "$OUT" | head -20
  [ -s "$ERR" ] && sed 's/^/     stderr: /' "$ERR" | head -20
  return 0
}

# run CMD...: runs the command, keeps stdout in $OUT, stderr in $ERR, exit code in $CODE.
run() {
  "$@" >"$OUT" 2>"$ERR"
  CODE=$?
}

# sm ARGS...: runs the skillmeat binary (see run).
sm() { run "$SM" "$@"; }

# expect NAME CODE: checks the exit code of the last run.
expect() {
  if [ "$CODE" -eq "$2" ]; then ok "$1"; else not_ok "$1" "exit code $CODE, expected $2"; fi
}

# expect_err NAME CODE TEXT: exit code and a fixed string in stderr, on one line.
expect_err() {
  if [ "$CODE" -ne "$2" ]; then
    not_ok "$1" "exit code $CODE, expected $2"
  elif ! grep -qF -- "$3" "$ERR"; then
    not_ok "$1" "stderr lacks: $3"
  elif [ "$(grep -c 'error:' "$ERR")" -ne 1 ]; then
    not_ok "$1" "expected exactly one error line"
  else
    ok "$1"
  fi
}

# expect_out NAME TEXT: a fixed string in stdout of the last run.
expect_out() {
  if grep -qF -- "$2" "$OUT"; then ok "$1"; else not_ok "$1" "stdout lacks: $2"; fi
}

# check NAME CMD...: passes when CMD succeeds.
check() {
  local name=$1
  shift
  if "$@"; then ok "$name"; else not_ok "$name" "command failed: $*"; fi
}

# tree_digest DIR: one hash of every file's path and contents under DIR.
tree_digest() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1
}

# make_bundle NAME VERSION OUT [TAG...]: creates a bundle from one example skill.
make_bundle() {
  local name=$1 version=$2 out=$3
  shift 3
  local tags=()
  for t in "$@"; do tags+=(--tag "$t"); done
  "$SM" bundle create "$SRC/examples/skills/brand-guidelines" --name "$name" \
    --version "$version" --description "test bundle $name" --author "e2e" \
    "${tags[@]}" -o "$out" >/dev/null
}

finish() {
  echo "$(basename "$0"): $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}
