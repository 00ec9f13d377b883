# The SFTP connector plug-in driven through the public API by
# plugins/sftp/tests/driver.c, which loads it with dlopen() as the
# library's loader does. The plug-in is built here against the build
# tree's libskillmeat.so and include/ through a pkg-config file written
# for the purpose, so this test runs without an installed skillmeat.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SRC/tests/servers/servers.sh"

if [ ! -e "$BUILD/libskillmeat.so" ]; then
  echo "error: no libskillmeat.so in '$BUILD'; build the project first" >&2
  exit 1
fi
mkdir -p "$TMP/pc"
cat >"$TMP/pc/skillmeat.pc" <<PC
Name: skillmeat
Description: skillmeat from the build tree
Version: 0.1.0
Libs: -L$BUILD -lskillmeat -Wl,-rpath,$BUILD
Cflags: -I$SRC/include
PC
# a sanitizer build of the library needs the ASan runtime first in the driver too
sanitize=${SKILLMEAT_SANITIZE:-}
if [ -z "$sanitize" ] && grep -q '^SKILLMEAT_SANITIZE:BOOL=ON$' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  sanitize=1
fi
PKG_CONFIG_PATH=$TMP/pc cmake -S "$SRC/plugins/sftp" -B "$TMP/sftp-build" \
  ${sanitize:+-DSKILLMEAT_SANITIZE=ON} >"$TMP/cmake.log" 2>&1 &&
  cmake --build "$TMP/sftp-build" -j2 >>"$TMP/cmake.log" 2>&1
CODE=$?
expect "plug-in builds" 0
[ "$CODE" -eq 0 ] || { tail -20 "$TMP/cmake.log"; finish; }
DRIVER=$TMP/sftp-build/sftp-driver
PLUGIN=$TMP/sftp-build/skillmeat-sftp.so

start_sshd || { not_ok "sshd starts"; finish; }

mkdir -p "$TMP/vaults"
# vadd NAME URL [--read-only] [KEY=VALUE]...: keeps the driver arguments of a vault.
vadd() {
  local name=$1 url=$2
  shift 2
  : >"$TMP/vaults/$name"
  printf '%s\n' -s "location=$url" >>"$TMP/vaults/$name"
  for kv in "$@"; do
    if [ "$kv" = --read-only ]; then printf '%s\n' -r; else printf '%s\n' -s "$kv"; fi
  done >>"$TMP/vaults/$name"
}
# the driver has no credential store of its own: it reads the library's variables
vauth_key() { export "SKILLMEAT_VAULT_${1^^}_SSH_KEY=$2"; }
vauth_password() { export "SKILLMEAT_VAULT_${1^^}_PASSWORD=$2"; }
vrun() {
  local name=$1 cmd=$2 args=()
  shift 2
  mapfile -t args <"$TMP/vaults/$name"
  local extra=()
  for a in "$@"; do [ "$a" = --force ] && extra+=(-f) || extra+=("$a"); done
  run "$DRIVER" "$PLUGIN" "${args[@]}" "$name" sftp "$cmd" "${extra[@]}"
}
vids() {
  local args=()
  mapfile -t args <"$TMP/vaults/$1"
  "$DRIVER" "$PLUGIN" "${args[@]}" "$1" sftp ls 2>/dev/null | cut -d' ' -f1
}

source "$SRC/tests/e2e/sftp-checks.sh"

# locations that the connector rejects before it connects; `vault add` may
# reject some of them already, so they are checked here only
for bad in "sftp://127.0.0.1" "sftp://$SSH_USER@/srv" "http://127.0.0.1/srv" \
  "sftp://$SSH_USER@127.0.0.1:0/srv" "sftp://$SSH_USER@127.0.0.1:22x/srv" \
  "sftp://$SSH_USER@[::1/srv"; do
  vadd bad "$bad"
  vrun bad ls
  expect_err "location $bad rejected" 9 "invalid location"
done
vadd pw "sftp://$SSH_USER:secret@127.0.0.1:$SSHD_PORT$VAULT"
vrun pw ls
expect_err "password in the location rejected" 9 "must not contain a password"
check "password not echoed" bash -c '! grep -q secret "$1"' _ "$ERR"
vadd nolocation ""
vrun nolocation ls
expect_err "missing location" 9 "has no 'location'"
vadd slow "$URL" known_hosts="$SSH_KNOWN_HOSTS" timeout=0
vrun slow ls
expect_err "invalid timeout" 9 "invalid timeout"
# "/~/" starts a path relative to the login directory on the server
login_dir=$(getent passwd "$SSH_USER" | cut -d: -f6)
vadd home "sftp://$SSH_USER@127.0.0.1:$SSHD_PORT/~/$(realpath -m --relative-to="$login_dir" "$VAULT")" \
  known_hosts="$SSH_KNOWN_HOSTS"
vauth_key home "$SSH_KEY"
check "location relative to the login directory" [ "$(vids home)" = "$(vids main)" -a -n "$(vids main)" ]

# Servers that offer only algorithms the connector never uses (CBC ciphers,
# SHA-1 and MD5 MACs) are rejected. One that offers only the connector's
# later choices still connects.
start_restricted_sshd() {
  local d=$TMP/sshd-$1
  mkdir -p "$d"
  RESTRICTED_PORT=$(free_port)
  sed -e "s/^Port .*/Port $RESTRICTED_PORT/" -e "s|^PidFile .*|PidFile $d/sshd.pid|" \
    "$TMP/sshd/sshd_config" >"$d/sshd_config"
  printf '%s\n' "$2" >>"$d/sshd_config"
  sed "s/^\[127.0.0.1\]:$SSHD_PORT /[127.0.0.1]:$RESTRICTED_PORT /" "$SSH_KNOWN_HOSTS" >"$d/known_hosts"
  _spawn "$d/sshd.log" /usr/sbin/sshd -D -e -f "$d/sshd_config"
  wait_port "$RESTRICTED_PORT"
}
for weak in "Ciphers aes128-cbc,aes256-cbc" "MACs hmac-sha1,hmac-md5"; do
  start_restricted_sshd "${weak%% *}" "$weak" || { not_ok "sshd with $weak starts"; continue; }
  vadd weak "sftp://$SSH_USER@127.0.0.1:$RESTRICTED_PORT$VAULT" \
    known_hosts="$TMP/sshd-${weak%% *}/known_hosts"
  vauth_key weak "$SSH_KEY"
  vrun weak ls
  expect_err "server with only $weak rejected" 8 "cannot start an SSH session"
done
start_restricted_sshd later "Ciphers aes256-ctr
MACs hmac-sha2-512" || not_ok "sshd with aes256-ctr starts"
vadd later "sftp://$SSH_USER@127.0.0.1:$RESTRICTED_PORT$VAULT" known_hosts="$TMP/sshd-later/known_hosts"
vauth_key later "$SSH_KEY"
check "aes256-ctr with hmac-sha2-512 connects" [ "$(vids later)" = "$(vids main)" -a -n "$(vids main)" ]

finish
