#!/usr/bin/env bash
# usage: tests/keyring/with-keyring.sh CMD [ARG]...
#
# Runs CMD on a private D-Bus session bus where gnome-keyring provides the
# Secret Service with an unlocked login collection. HOME and
# XDG_RUNTIME_DIR point into a scratch directory that is removed afterwards,
# so the keyring files of the user running the tests are never touched.
# Exits with CMD's status, or 1 with a message when the keyring cannot start.
set -uo pipefail

for tool in dbus-run-session dbus-send gnome-keyring-daemon; do
  if ! command -v "$tool" >/dev/null; then
    echo "with-keyring: '$tool' not found; run scripts/install-deps.sh" >&2
    exit 1
  fi
done
[ $# -gt 0 ] || { echo "usage: with-keyring.sh CMD [ARG]..." >&2; exit 2; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/skillmeat-keyring.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -m 700 "$scratch/home" "$scratch/run"
export HOME="$scratch/home" XDG_RUNTIME_DIR="$scratch/run"
unset DBUS_SESSION_BUS_ADDRESS

# The inner script runs on the new bus. The keyring password only unlocks
# this throwaway login collection.
dbus-run-session -- bash -c '
  printf %s throwaway-keyring-password |
    gnome-keyring-daemon --foreground --unlock --components=secrets >"$XDG_RUNTIME_DIR/gkd.log" 2>&1 &
  daemon=$!
  ready=0
  for _ in $(seq 1 250); do
    if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
         org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null |
         grep -q "boolean true"; then
      ready=1
      break
    fi
    sleep 0.02
  done
  if [ $ready -ne 1 ]; then
    echo "with-keyring: gnome-keyring-daemon did not provide org.freedesktop.secrets within 5 s:" >&2
    sed "s/^/with-keyring:   /" "$XDG_RUNTIME_DIR/gkd.log" >&2
    kill $daemon 2>/dev/null
    exit 1
  fi
  "$@"
  status=$?
  kill $daemon 2>/dev/null
  wait $daemon 2>/dev/null
  exit $status
' with-keyring "$@" 2> >(grep -v "Failed to set fd limit" >&2)
