#!/usr/bin/env bash
# Push and pull of a 256 MiB bundle through the SFTP plug-in against scp
# of the same file to and from the same sshd on 127.0.0.1 in the same run.
#
# The plug-in is built from plugins/sftp against the build tree and driven
# by plugins/sftp/tests/driver.c, which loads it with dlopen() and calls
# sm_vault_push() and sm_vault_pull(), the functions behind `vault push`
# and `vault pull`. So the times include what the command does beyond the
# transfer: push verifies the bundle in a second thread while it uploads,
# and pull verifies the bundle's own hashes after the download.
#
# Rounds alternate ours and scp; the medians of ROUNDS (default 3) are
# printed with their ratio (goal: at most 1.2).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-256}
BUNDLE="$BENCH_DIR/sftp-big-${SIZE_MIB}m.skillmeat-pack"
BUILD=$(dirname "$SM")
SRC=$ROOT
RUNS="$BENCH_DIR/sftp_runs.txt"

for tool in scp sshd cmake /usr/bin/time; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: '$tool' is required" >&2
    exit 1
  fi
done

# servers.sh keeps its files under TMP and removes it on exit
TMP=$(mktemp -d "$BENCH_DIR/sftp.XXXXXX")
source "$ROOT/tests/servers/servers.sh"
# servers.sh's cleanup needs errexit off. With it on, the kill of a server
# that had exited already ended the cleanup before TMP (1.1 GB) was removed.
trap 'set +e; _stop_servers' EXIT

if [ ! -f "$BUNDLE" ]; then
  echo "building $BUNDLE (once)"
  rm -rf "$BENCH_DIR/sftp-big-skill"
  mkdir -p "$BENCH_DIR/sftp-big-skill"
  cp -r "$SKILL/." "$BENCH_DIR/sftp-big-skill/"
  head -c "${SIZE_MIB}M" /dev/urandom >"$BENCH_DIR/sftp-big-skill/data.bin"
  "$SM" bundle create "$BENCH_DIR/sftp-big-skill" --name sftp-bench --version 1 \
    --description "benchmark bundle of $SIZE_MIB MiB" --author bench -o "$BUNDLE.tmp" >/dev/null
  mv "$BUNDLE.tmp" "$BUNDLE"
  rm -rf "$BENCH_DIR/sftp-big-skill"
fi
bundle_mib=$(($(stat -c %s "$BUNDLE") / 1048576))

# the plug-in, built against the build tree through a pkg-config file
mkdir -p "$TMP/pc"
cat >"$TMP/pc/skillmeat.pc" <<PC
Name: skillmeat
Description: skillmeat from the build tree
Version: 0.1.0
Libs: -L$BUILD -lskillmeat -Wl,-rpath,$BUILD
Cflags: -I$ROOT/include
PC
PKG_CONFIG_PATH=$TMP/pc cmake -S "$ROOT/plugins/sftp" -B "$TMP/sftp-build" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$TMP/sftp-build" -j2 >/dev/null
DRIVER=$TMP/sftp-build/sftp-driver
PLUGIN=$TMP/sftp-build/skillmeat-sftp.so

start_sshd
VAULT=$TMP/vault
mkdir -p "$VAULT" "$TMP/scp-remote"
export SKILLMEAT_VAULT_BENCH_SSH_KEY=$SSH_KEY
V=(-s "location=sftp://$SSH_USER@127.0.0.1:$SSHD_PORT$VAULT" -s "known_hosts=$SSH_KNOWN_HOSTS")
SCP=(scp -q -P "$SSHD_PORT" -i "$SSH_KEY" -o BatchMode=yes -o "UserKnownHostsFile=$SSH_KNOWN_HOSTS")
TIMING=$TMP/time.txt

timed() {
  /usr/bin/time -f '%e' -o "$TIMING" "$@" >/dev/null
  cat "$TIMING"
}

one_round() {
  local push pull up down
  "$DRIVER" "$PLUGIN" "${V[@]}" bench sftp delete sftp-bench-v1 >/dev/null 2>&1 || true
  rm -rf "$TMP/out" "$TMP/scp-remote/copy" "$TMP/scp-back"
  push=$(timed "$DRIVER" "$PLUGIN" "${V[@]}" bench sftp push "$BUNDLE")
  pull=$(timed "$DRIVER" "$PLUGIN" "${V[@]}" bench sftp pull sftp-bench-v1 "$TMP/out")
  if ! cmp -s "$BUNDLE" "$TMP/out/sftp-bench-v1.skillmeat-pack"; then
    echo "error: pulled file differs from $BUNDLE" >&2
    exit 1
  fi
  up=$(timed "${SCP[@]}" "$BUNDLE" "$SSH_USER@127.0.0.1:$TMP/scp-remote/copy")
  down=$(timed "${SCP[@]}" "$SSH_USER@127.0.0.1:$TMP/scp-remote/copy" "$TMP/scp-back")
  echo "$push $pull $up $down"
}

echo "bundle: $BUNDLE ($bundle_mib MiB); sshd on 127.0.0.1, server and client on this machine"
echo "$(ssh -V 2>&1); plug-in built with libssh2 $(pkg-config --modversion libssh2)"
one_round >/dev/null
: >"$RUNS"
echo "round  push_s  pull_s  scp_up_s  scp_down_s"
for ((round = 1; round <= ROUNDS; round++)); do
  line=$(one_round)
  echo "$line" >>"$RUNS"
  read -r push pull up down <<<"$line"
  printf '%5d  %6s  %6s  %8s  %10s\n' "$round" "$push" "$pull" "$up" "$down"
done

column_median() { awk -v c="$1" '{ print $c }' "$RUNS" | median; }
push_med=$(column_median 1)
pull_med=$(column_median 2)
up_med=$(column_median 3)
down_med=$(column_median 4)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

result "sftp_push_pull: bundle $bundle_mib MiB, $ROUNDS rounds, medians:" \
  "push ${push_med} s vs scp up ${up_med} s -> $(ratio "$push_med" "$up_med")x;" \
  "pull ${pull_med} s vs scp down ${down_med} s -> $(ratio "$pull_med" "$down_med")x"
