# The SFTP connector as an outsider builds and uses it. The script installs
# skillmeat into a prefix and builds plugins/sftp against the installed
# headers and pkg-config file only. It loads the plug-in through
# SKILLMEAT_PLUGIN_PATH and runs every vault command against sshd on
# 127.0.0.1 (the checks are in sftp-checks.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SRC/tests/servers/servers.sh"

PREFIX=$TMP/prefix
run cmake --install "$BUILD" --prefix "$PREFIX"
expect "cmake --install" 0
pc=$(find "$PREFIX" -name skillmeat.pc -path '*pkgconfig*' | head -1)
if [ -z "$pc" ]; then
  not_ok "install provides skillmeat.pc" "no skillmeat.pc under $PREFIX: the install rules must put one in lib/pkgconfig"
  finish
fi
ok "install provides skillmeat.pc"
run env PKG_CONFIG_PATH="$(dirname "$pc")" cmake -S "$SRC/plugins/sftp" -B "$TMP/sftp-build" \
  -DCMAKE_PREFIX_PATH="$PREFIX" -DSKILLMEAT_SFTP_TESTS=OFF
expect "plug-in configures against the installed skillmeat" 0
run cmake --build "$TMP/sftp-build" -j2
expect "plug-in builds" 0
if [ ! -f "$TMP/sftp-build/skillmeat-sftp.so" ]; then
  finish
fi
mkdir -m 0755 "$TMP/plugins"
install -m 0644 "$TMP/sftp-build/skillmeat-sftp.so" "$TMP/plugins/"
export SKILLMEAT_PLUGIN_PATH=$TMP/plugins

sm plugin list
expect "plugin list" 0
expect_out "plugin list shows the sftp type" "sftp"
[ "$CODE" -eq 0 ] || finish

start_sshd || { not_ok "sshd starts"; finish; }

# vadd NAME URL [--read-only] [KEY=VALUE]...: vault add, then the extra
# settings appended to the vault's table, which add writes last.
vadd() {
  local name=$1 url=$2 flags=()
  shift 2
  for kv in "$@"; do [ "$kv" = --read-only ] && flags+=(--read-only); done
  "$SM" vault add "$name" sftp "$url" "${flags[@]}" >/dev/null ||
    echo "     vault add $name failed" >&2
  for kv in "$@"; do
    [ "$kv" = --read-only ] && continue
    printf '%s = "%s"\n' "${kv%%=*}" "${kv#*=}" >>"$SKILLMEAT_HOME/sharing.toml"
  done
}
vauth_key() { "$SM" vault auth "$1" --ssh-key "$2" >/dev/null; }
vauth_password() { printf '%s\n' "$2" | "$SM" vault auth "$1" --password-stdin >/dev/null; }
vrun() {
  local name=$1 cmd=$2
  shift 2
  case $cmd in
    push) sm vault push "$1" --vault "$name" --no-progress "${@:2}" ;;
    pull) sm vault pull "$1" --vault "$name" --output "$2" --no-progress ;;
    ls) sm vault ls --vault "$name" ;;
    info) sm vault info "$1" --vault "$name" --json ;;
    delete) sm vault delete "$1" --vault "$name" ;;
  esac
}
vids() { "$SM" vault ls --vault "$1" --json 2>/dev/null | jq -r '.[].bundle_id'; }

source "$SRC/tests/e2e/sftp-checks.sh"
finish
