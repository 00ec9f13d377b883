#!/usr/bin/env bash
# Installs the test servers that come from the npm registry: the S3
# emulator that checks SigV4 signatures (@20minutes/s3rver). The Debian
# packages (sshd, nginx, fcgiwrap, git, awscli, rclone) come from
# scripts/install-deps.sh. Usage: tests/servers/install.sh [DIR]
# DIR defaults to $SKILLMEAT_TEST_SERVERS or .test-servers in the checkout.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-${SKILLMEAT_TEST_SERVERS:-$src/.test-servers}}
mkdir -p "$dir"
cd "$dir"
if [ -f node_modules/@20minutes/s3rver/package.json ]; then
  exit 0
fi
[ -f package.json ] || printf '{"name":"skillmeat-test-servers","private":true}\n' > package.json
echo "test-servers: installing @20minutes/s3rver 4.0.4 into $dir" >&2
npm install --no-audit --no-fund --loglevel=error @20minutes/s3rver@4.0.4 >/dev/null
