#!/usr/bin/env bash
# Runs the toml-test conformance suite (TOML 1.0.0 cases) against the
# project's TOML reader through tests/toml_decode.
#
# Environment: SKILLMEAT_BUILD_DIR (the CMake build directory),
# SKILLMEAT_SOURCE_DIR (the source tree), and optionally SKILLMEAT_SHARED_DIR,
# the directory that contains toml-test/ (default: ../shared beside the source).
set -euo pipefail

: "${SKILLMEAT_BUILD_DIR:?set SKILLMEAT_BUILD_DIR to the CMake build directory}"
: "${SKILLMEAT_SOURCE_DIR:?set SKILLMEAT_SOURCE_DIR to the source tree}"

shared_dir=${SKILLMEAT_SHARED_DIR:-$SKILLMEAT_SOURCE_DIR/../shared}
runner=$shared_dir/toml-test/run
decoder=$SKILLMEAT_BUILD_DIR/tests/toml_decode
expected_cases=709

if [ ! -f "$runner" ]; then
	echo "t10-toml-test: toml-test suite not found at '$runner'; set SKILLMEAT_SHARED_DIR to the directory that contains toml-test/" >&2
	exit 1
fi
if [ ! -x "$decoder" ]; then
	echo "t10-toml-test: decoder '$decoder' not found; build the tests first" >&2
	exit 1
fi

status=0
output=$(python3 "$runner" --list files-toml-1.0.0 -- "$decoder") || status=$?
printf '%s\n' "$output"

last_line=$(printf '%s\n' "$output" | tail -n 1)
if [ "$last_line" != "toml-test: $expected_cases passed, 0 failed" ]; then
	echo "t10-toml-test: expected 'toml-test: $expected_cases passed, 0 failed' (runner exit status $status)" >&2
	exit 1
fi
