#!/usr/bin/env bash
# Runs every test: installs what is needed, builds twice (plain, and with
# AddressSanitizer + UndefinedBehaviorSanitizer) and runs ctest on both.
# The TOML conformance test needs the toml-test suite, looked up in
# $SKILLMEAT_SHARED_DIR or ../shared beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
tests/servers/install.sh
jobs=$(nproc)
status=0

for variant in plain asan; do
  dir=build-test-$variant
  flags=(-DCMAKE_BUILD_TYPE=Debug)
  [ $variant = asan ] && flags+=(-DSKILLMEAT_SANITIZE=ON)
  echo "== $variant build"
  cmake -S . -B "$dir" "${flags[@]}" >/dev/null
  cmake --build "$dir" -j "$jobs" >/dev/null
  echo "== $variant tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" || status=1
done
exit $status
