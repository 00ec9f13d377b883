#!/usr/bin/env bash
# End-to-end tests of a git vault over HTTPS against nginx and
# git-http-backend with basic auth and a self-signed CA. They cover every
# vault command, the vault's own ca_bundle, a wrong password and the
# user's git credential helper. While the commands run, a watcher looks for
# the password in every process's command line and environment. Afterwards
# the password must be in no file or output they left.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$SRC/tests/servers/servers.sh"
. "$SRC/tests/tools/git_e2e.sh"

start_https || { not_ok "nginx starts"; finish; }
URL="https://localhost:$HTTPS_PORT/git/vault.git"
ACCESS_LOG="$TMP/https/access.log"
ALL_OUTPUT="$TMP/all-output.log"

# Every run also appends its output to $ALL_OUTPUT, searched for the password at the end.
run() {
  "$@" >"$OUT" 2>"$ERR"
  CODE=$?
  cat "$OUT" "$ERR" >>"$ALL_OUTPUT"
}

# add_https_vault NAME [ADD OPTIONS...]: a git vault on $URL with the test
# CA as its ca_bundle and the test user's password stored.
add_https_vault() {
  local name=$1
  shift
  "$SM" vault add "$name" git "$URL" "$@" >>"$ALL_OUTPUT" 2>&1
  vault_set "$name" ca_bundle "$(toml_str "$HTTPS_CA")"
  printf '%s\n' "$HTTPS_PASSWORD" |
    "$SM" vault auth "$name" --username vault --password-stdin >>"$ALL_OUTPUT" 2>&1
}

# count_401 FROM: the number of 401 responses in the access log after line FROM.
count_401() { tail -n +"$(($1 + 1))" "$ACCESS_LOG" | awk '$9 == 401' | wc -l; }

add_https_vault team
vault_set team commit_author '"E2E Bot"'
vault_set team commit_email '"bot@e2e.invalid"'
add_https_vault team-ro --read-only

# --- every command, watched ---

rm -f "$TMP/watch.stop"
printf '%s\n' "$HTTPS_PASSWORD" | WATCH_USERS=vault python3 "$WATCH" "$TMP/watch.stop" "$TMP/watch.report" &
watcher=$!
sleep 0.3

check_every_command team team-ro "$HTTPS_GIT"

touch "$TMP/watch.stop"
wait "$watcher"
check "watcher wrote its report" test -s "$TMP/watch.report"
report=$(head -1 "$TMP/watch.report")
echo "     watcher: $report"
git_seen=$(sed -n 's/.* git=\([0-9]*\).*/\1/p' <<<"$report")
check "watcher saw git processes" test "${git_seen:-0}" -ge 10
check "watcher read environments" test "$(sed -n 's/.* environ=\([0-9]*\).*/\1/p' <<<"$report")" -ge 10
if grep -q ' hits=0$' <<<"$report"; then ok "no process showed the password"; else
  not_ok "no process showed the password" "$(tail -n +2 "$TMP/watch.report" | head -5)"; fi

# --- per-vault CA bundle ---

"$SM" vault add noca git "$URL" >/dev/null
printf '%s\n' "$HTTPS_PASSWORD" | "$SM" vault auth noca --username vault --password-stdin >/dev/null
sm vault ls --vault noca
expect_err "a server the system CAs do not know exits 8" 8 "certificate"

"$SM" vault add badca git "$URL" >/dev/null
vault_set badca ca_bundle "$(toml_str "$TMP/no-such-ca.pem")"
sm vault ls --vault badca
expect_err "a missing ca_bundle file exits 9" 9 "no-such-ca.pem"

# --- wrong password ---

add_https_vault badpw
printf 'not the password\n' | "$SM" vault auth badpw --username vault --password-stdin >/dev/null
lines=$(wc -l <"$ACCESS_LOG")
started=$(millis)
sm vault ls --vault badpw
elapsed=$(($(millis) - started))
expect_err "a wrong password exits 6" 6 "badpw"
echo "     wrong password: ls failed in $elapsed ms, $(count_401 "$lines") responses 401"
check "a wrong password fails within 5 s" test "$elapsed" -lt 5000
check "a wrong password is tried a bounded number of times" test "$(count_401 "$lines")" -le 3
check "the error does not echo the wrong password" test "$(grep -c 'not the password' "$ERR")" -eq 0

before=$(refs "$HTTPS_GIT")
lines=$(wc -l <"$ACCESS_LOG")
started=$(millis)
sm vault push "$TMP/bundles-team/beta.skillmeat-pack" --vault badpw --version 8.0
elapsed=$(($(millis) - started))
expect_err "push with a wrong password exits 6" 6 "badpw"
check "push with a wrong password fails within 5 s" test "$elapsed" -lt 5000
check "push with a wrong password is tried a bounded number of times" test "$(count_401 "$lines")" -le 3
same_refs "push with a wrong password leaves the repository" "$HTTPS_GIT" "$before"

# --- without stored credentials ---

"$SM" vault add anon git "$URL" >/dev/null
vault_set anon ca_bundle "$(toml_str "$HTTPS_CA")"
started=$(millis)
sm vault ls --vault anon </dev/null
expect_err "no credentials anywhere exits 6" 6 "anon"
check "no credentials anywhere fails within 5 s" test $(($(millis) - started)) -lt 5000

# the user's own git credential helper supplies the password when nothing is stored
umask 077
printf 'https://vault:%s@localhost:%s\n' "$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$HTTPS_PASSWORD")" \
  "$HTTPS_PORT" >"$TMP/git-credentials"
umask 022
git config --global credential.helper "store --file=$TMP/git-credentials"
sm vault ls --vault anon
expect "the user's git credential helper is used" 0
check "the helper's credentials list the bundles" test "$(ls_ids --vault anon)" = "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1"
git config --global --unset credential.helper
rm -f "$TMP/git-credentials"

# --- a password with shell and URL characters ---

ODD_PASSWORD='p'"'"'"$ \%@:x`$(id)`;#&'
htpasswd -bB "$TMP/https/htpasswd" odd "$ODD_PASSWORD" 2>/dev/null
"$SM" vault add odd git "$URL" >>"$ALL_OUTPUT" 2>&1
vault_set odd ca_bundle "$(toml_str "$HTTPS_CA")"
printf '%s\n' "$ODD_PASSWORD" | "$SM" vault auth odd --username odd --password-stdin >>"$ALL_OUTPUT" 2>&1
run "$SM" vault ls --vault odd
expect "a password with quotes, '\$', '\\', '%', '@' and ':' lists the vault" 0
check "it lists the bundles" test "$(ls_ids --vault odd)" = "$(ls_ids --vault team)"
printf '%s\n' "${ODD_PASSWORD}y" | "$SM" vault auth odd --username odd --password-stdin >>"$ALL_OUTPUT" 2>&1
run "$SM" vault ls --vault odd
expect "the same password with one more character is refused" 6
check "the message does not show the password" test -z "$(grep -aF "$ODD_PASSWORD" "$ERR")"

# --- the askpass answers live in memory only ---

# A server that accepts connections and never answers keeps git waiting
# while the answers exist; SIGKILL then gives skillmeat no chance to clean up.
HANG_PORT=$(free_port)
python3 -c '
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
s.settimeout(0.2)
held = []
while not os.path.exists(sys.argv[2]):
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
' "$HANG_PORT" "$TMP/hang.stop" &
hang=$!
wait_port "$HANG_PORT"
mkdir -p "$TMP/run" && chmod 700 "$TMP/run"
"$SM" vault add hang git "https://127.0.0.1:$HANG_PORT/vault.git" >>"$ALL_OUTPUT" 2>&1
printf '%s\n' "$HTTPS_PASSWORD" |
  "$SM" vault auth hang --username vault --password-stdin >>"$ALL_OUTPUT" 2>&1
XDG_RUNTIME_DIR="$TMP/run" "$SM" vault ls --vault hang >>"$ALL_OUTPUT" 2>&1 &
victim=$!
git_child=
for _ in $(seq 100); do
  git_child=$(pgrep -P "$victim" -x git | head -1)
  [ -n "$git_child" ] && break
  sleep 0.1
done
check "git runs for the hanging server" test -n "$git_child"
askpass_env=$(tr '\0' '\n' <"/proc/$git_child/environ" 2>/dev/null | sed -n 's/^SKILLMEAT_ASKPASS_FILE=//p')
check "git's askpass variable names an inherited descriptor, not a path" \
  grep -qE '^/proc/self/fd/[0-9]+$' <<<"$askpass_env"
check "another process cannot read the answers through that name" \
  test -z "$(cat "$askpass_env" 2>/dev/null | grep -aF "$HTTPS_PASSWORD")"
kill -9 "$victim"
wait "$victim" 2>/dev/null
kill "$git_child" 2>/dev/null
found=$(grep -rlaF "$HTTPS_PASSWORD" "$TMP/run" "$SKILLMEAT_HOME" 2>/dev/null
  find /dev/shm -maxdepth 2 -user "$(id -u)" -name 'skillmeat-askpass*' 2>/dev/null)
check "after SIGKILL no askpass file is left in XDG_RUNTIME_DIR, /dev/shm or the cache" test -z "$found"
[ -n "$found" ] && echo "     found: $found"
touch "$TMP/hang.stop"
wait "$hang" 2>/dev/null
# its cache names another URL than the checks below expect
rm -rf "$SKILLMEAT_HOME"/cache/git/hang-*

# --- the password is nowhere on disk or in output ---

# $TMP/patterns: the password in the forms the watcher looks for, one a line.
python3 - "$HTTPS_PASSWORD" >"$TMP/patterns" <<'EOF'
import base64, sys, urllib.parse
secret = sys.argv[1]
for form in (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
             base64.b64encode(("vault:" + secret).encode()).decode()):
    print(form)
EOF
found=$(grep -rlaF -f "$TMP/patterns" "$SKILLMEAT_HOME" "$ALL_OUTPUT" "$TMP/https/access.log" \
  "$TMP/https/error.log" "$TMP/nginx.log" "$TMP/fcgiwrap.log" 2>/dev/null)
check "the password is in no file of SKILLMEAT_HOME, output or log" test -z "$found"
[ -n "$found" ] && echo "     found in: $found"
check "the cache exists" test -n "$(cache_dirs)"
for d in $(cache_dirs); do
  check "cache config of $(basename "$(dirname "$d")") holds no user or header" \
    test -z "$(grep -iE 'vault@|extraheader|password|askpass' "$d/config")"
  check "cache remote URL is the vault URL" \
    grep -qxF "$URL" <(git --git-dir="$d" config --get-regexp 'remote\..*\.url' | cut -d' ' -f2)
done
check "sharing.toml holds no password" test -z "$(grep -aF -f "$TMP/patterns" "$TOML")"

finish
