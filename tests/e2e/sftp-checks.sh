# Checks of the SFTP connector plug-in against sshd on 127.0.0.1, shared by
# t130-sftp.sh (through the skillmeat command and its plug-in loader) and
# t131-sftp-driver.sh (through plugins/sftp/tests/driver.c). The sourcing
# script has started sshd and defines:
#
#   vadd NAME URL [--read-only] [KEY=VALUE]...   configure a vault of type sftp
#   vauth_key NAME FILE                          store the SSH key path
#   vauth_password NAME PASSWORD                 store a password
#   vrun NAME push FILE [--force] | pull ID DIR | ls | info ID | delete ID
#   vids NAME                                    print the listed ids, one a line
#
# vrun sets CODE, OUT and ERR like `run`.

VAULT=$TMP/remote-vault
URL="sftp://$SSH_USER@127.0.0.1:$SSHD_PORT$VAULT"
mkdir -p "$VAULT"

# server_digest: one hash of the vault directory on the server.
server_digest() { tree_digest "$VAULT"; }

make_bundle alpha 1.0 "$TMP/alpha.skillmeat-pack" red
make_bundle alpha 2.0 "$TMP/alpha2.skillmeat-pack" red
# the same id as alpha 1.0 with other bytes
make_bundle alpha 1.0 "$TMP/alpha-other.skillmeat-pack" blue

# --- every command ---
vadd main "$URL" known_hosts="$SSH_KNOWN_HOSTS" lock_timeout=10
vauth_key main "$SSH_KEY"
vrun main ls
expect "ls of an empty vault" 0
check "empty vault lists nothing" [ "$(vids main | wc -l)" -eq 0 ]

vrun main push "$TMP/alpha.skillmeat-pack"
expect "push" 0
check "data file on the server" cmp -s "$TMP/alpha.skillmeat-pack" "$VAULT/bundles/alpha-v1.0.skillmeat-pack"
check "metadata file on the server" [ -s "$VAULT/metadata/alpha-v1.0.json" ]
check "index names the bundle" grep -q '"alpha-v1.0"' "$VAULT/index.json"
check "lock released after push" [ ! -e "$VAULT/.skillmeat-lock" ]
check "no temporary files left" [ -z "$(find "$VAULT" -name '*.tmp-*')" ]

before=$(server_digest)
vrun main push "$TMP/alpha.skillmeat-pack"
expect "push of the identical bundle" 0
check "identical push changes nothing" [ "$(server_digest)" = "$before" ]
vrun main push "$TMP/alpha-other.skillmeat-pack"
expect_err "push of an existing id" 4 "already exists"
check "refused push changes nothing" [ "$(server_digest)" = "$before" ]

vrun main push "$TMP/alpha2.skillmeat-pack"
expect "push of a second version" 0
check "ls lists both versions" [ "$(vids main | tr '\n' ' ')" = "alpha-v1.0 alpha-v2.0 " ]
vrun main info alpha-v1.0
expect "info" 0
sha=$(sha256sum "$TMP/alpha.skillmeat-pack" | cut -d' ' -f1)
expect_out "info shows the SHA-256" "$sha"

vrun main pull alpha-v1.0 "$TMP/pulled"
expect "pull" 0
check "pulled file is byte-identical" cmp -s "$TMP/alpha.skillmeat-pack" "$TMP/pulled/alpha-v1.0.skillmeat-pack"
vrun main pull nothing-v1 "$TMP/pulled-missing"
expect_err "pull of a missing id" 3 "not found"
check "missing pull writes nothing" [ ! -e "$TMP/pulled-missing" ]

vrun main push "$TMP/alpha-other.skillmeat-pack" --force
expect "push --force replaces" 0
check "forced data on the server" cmp -s "$TMP/alpha-other.skillmeat-pack" "$VAULT/bundles/alpha-v1.0.skillmeat-pack"
vrun main pull alpha-v1.0 "$TMP/pulled-forced"
expect "pull after --force" 0
check "pull returns the forced bytes" cmp -s "$TMP/alpha-other.skillmeat-pack" "$TMP/pulled-forced/alpha-v1.0.skillmeat-pack"

vrun main delete alpha-v2.0
expect "delete" 0
check "delete removes data and metadata" [ ! -e "$VAULT/bundles/alpha-v2.0.skillmeat-pack" -a ! -e "$VAULT/metadata/alpha-v2.0.json" ]
check "ls after delete" [ "$(vids main | tr '\n' ' ')" = "alpha-v1.0 " ]
vrun main delete alpha-v2.0
expect_err "delete of a missing id" 3 "not found"

# --- the index is a cache of metadata/ ---
rm "$VAULT/index.json"
check "ls without index.json" [ "$(vids main | tr '\n' ' ')" = "alpha-v1.0 " ]
check "index.json rebuilt" grep -q '"alpha-v1.0"' "$VAULT/index.json"
echo '{"broken' >"$VAULT/index.json"
check "ls with a corrupt index.json" [ "$(vids main | tr '\n' ' ')" = "alpha-v1.0 " ]

# --- read-only ---
vadd ro "$URL" --read-only known_hosts="$SSH_KNOWN_HOSTS"
vauth_key ro "$SSH_KEY"
before=$(server_digest)
vrun ro push "$TMP/alpha2.skillmeat-pack"
expect_err "push to a read-only vault" 5 "read-only"
vrun ro delete alpha-v1.0
expect_err "delete in a read-only vault" 5 "read-only"
check "read-only vault unchanged" [ "$(server_digest)" = "$before" ]
vrun ro pull alpha-v1.0 "$TMP/pulled-ro"
expect "pull from a read-only vault" 0

# --- host keys ---
fingerprint=$(ssh-keygen -lf "$TMP/sshd/host_ed25519.pub" | cut -d' ' -f2)
vadd unknown "$URL" known_hosts="$TMP/kh-empty"
vauth_key unknown "$SSH_KEY"
before=$(server_digest)
vrun unknown push "$TMP/alpha2.skillmeat-pack"
expect_err "unknown host key refused" 6 "is unknown"
check "message has the SHA-256 fingerprint" grep -qF "$fingerprint" "$ERR"
check "message says how to trust it" grep -qF "accept_new_host_keys = true" "$ERR"
check "refused host: nothing on the server" [ "$(server_digest)" = "$before" ]
check "refused host: known_hosts not written" [ ! -e "$TMP/kh-empty" ]

vadd trusting "$URL" known_hosts="$TMP/kh-new" accept_new_host_keys=true
vauth_key trusting "$SSH_KEY"
printf '# kept comment\n' >"$TMP/kh-new"
vrun trusting ls
expect "accept_new_host_keys connects" 0
check "new key recorded" grep -qF "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$TMP/sshd/host_ed25519.pub")" "$TMP/kh-new"
check "old known_hosts lines kept" grep -qx '# kept comment' "$TMP/kh-new"
vadd recorded "$URL" known_hosts="$TMP/kh-new"
vauth_key recorded "$SSH_KEY"
vrun recorded ls
expect "recorded key is trusted later" 0

ssh-keygen -q -t ed25519 -N '' -f "$TMP/other_host_key"
echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$TMP/other_host_key.pub")" >"$TMP/kh-changed"
vadd changed "$URL" known_hosts="$TMP/kh-changed" accept_new_host_keys=true
vauth_key changed "$SSH_KEY"
vrun changed ls
expect_err "changed host key refused" 6 "has CHANGED"
check "changed key not overwritten" [ "$(wc -l <"$TMP/kh-changed")" -eq 1 ]

# a server with two host keys is trusted by whichever one known_hosts has
ssh-keygen -q -t ecdsa -N '' -f "$TMP/sshd/host_ecdsa"
PORT2=$(free_port)
sed "s/^Port .*/Port $PORT2/; s|^PidFile .*|PidFile $TMP/sshd/sshd2.pid|" \
  "$TMP/sshd/sshd_config" >"$TMP/sshd/sshd2_config"
echo "HostKey $TMP/sshd/host_ecdsa" >>"$TMP/sshd/sshd2_config"
_spawn "$TMP/sshd2.log" /usr/sbin/sshd -D -e -f "$TMP/sshd/sshd2_config"
wait_port "$PORT2"
for type in ed25519 ecdsa; do
  echo "[127.0.0.1]:$PORT2 $(cut -d' ' -f1,2 "$TMP/sshd/host_$type.pub")" >"$TMP/kh-$type"
  vadd "two$type" "sftp://$SSH_USER@127.0.0.1:$PORT2$VAULT" known_hosts="$TMP/kh-$type"
  vauth_key "two$type" "$SSH_KEY"
  vrun "two$type" ls
  expect "server with two keys, known by its $type key" 0
done

# --- authentication ---
ssh-keygen -q -t ed25519 -N '' -f "$TMP/wrong_key"
vadd wrongkey "$URL" known_hosts="$SSH_KNOWN_HOSTS"
vauth_key wrongkey "$TMP/wrong_key"
vrun wrongkey ls
expect_err "wrong key refused" 6 "rejected the credentials"
vadd wrongpw "$URL" known_hosts="$SSH_KNOWN_HOSTS"
vauth_password wrongpw 'not the password'
vrun wrongpw ls
expect_err "password refused" 6 "wrongpw"
check "password not in the message" bash -c '! grep -q "not the password" "$1"' _ "$ERR"
vadd nocreds "$URL" known_hosts="$SSH_KNOWN_HOSTS"
vrun nocreds ls
expect_err "no credentials" 6 "has no credentials"

# --- bad locations ---
vadd badurl "sftp://$SSH_USER@127.0.0.1:99999$VAULT" known_hosts="$SSH_KNOWN_HOSTS"
vauth_key badurl "$SSH_KEY"
vrun badurl ls
expect_err "invalid port" 9 "invalid location"
vadd nodir "sftp://$SSH_USER@127.0.0.1:$SSHD_PORT$TMP/no-such-dir" known_hosts="$SSH_KNOWN_HOSTS"
vauth_key nodir "$SSH_KEY"
vrun nodir ls
expect_err "missing remote directory" 3 "does not exist"
closed_port=$(free_port)
vadd closed "sftp://$SSH_USER@127.0.0.1:$closed_port$VAULT" known_hosts="$SSH_KNOWN_HOSTS"
vauth_key closed "$SSH_KEY"
vrun closed ls
expect_err "connection refused" 8 "cannot connect"

# a server that accepts the connection and never speaks SSH
silent_port=$(free_port)
_spawn "$TMP/silent.log" python3 -c 'import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
held = []
while True:
    held.append(s.accept()[0])' "$silent_port"
wait_port "$silent_port"
vadd silent "sftp://$SSH_USER@127.0.0.1:$silent_port$VAULT" known_hosts="$SSH_KNOWN_HOSTS" timeout=2
vauth_key silent "$SSH_KEY"
started=$SECONDS
vrun silent ls
expect_err "silent server times out" 8 "timed out after 2000 ms"
check "timeout within 10 s" [ $((SECONDS - started)) -lt 10 ]

# --- tampered data on the server ---
cp "$VAULT/bundles/alpha-v1.0.skillmeat-pack" "$TMP/saved-data"
size=$(stat -c %s "$TMP/saved-data")
printf 'X' | dd of="$VAULT/bundles/alpha-v1.0.skillmeat-pack" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
vrun main pull alpha-v1.0 "$TMP/pulled-tampered"
expect_err "tampered data refused" 7 "is corrupt: SHA-256"
check "tampered pull writes nothing" [ -z "$(ls -A "$TMP/pulled-tampered" 2>/dev/null)" ]
head -c $((size - 10)) "$TMP/saved-data" >"$VAULT/bundles/alpha-v1.0.skillmeat-pack"
vrun main pull alpha-v1.0 "$TMP/pulled-truncated"
expect_err "truncated data refused" 7 "corrupt"
check "truncated pull writes nothing" [ -z "$(ls -A "$TMP/pulled-truncated" 2>/dev/null)" ]
{ cat "$TMP/saved-data"; head -c 5M /dev/zero; } >"$VAULT/bundles/alpha-v1.0.skillmeat-pack"
vrun main pull alpha-v1.0 "$TMP/pulled-long"
expect_err "overlong data refused" 7 "has at least"
check "overlong pull writes nothing" [ -z "$(ls -A "$TMP/pulled-long" 2>/dev/null)" ]
cp "$TMP/saved-data" "$VAULT/bundles/alpha-v1.0.skillmeat-pack"

# --- symbolic links on the server ---
# Someone who can write to the vault directory plants links to files and
# directories outside it. SFTP cannot open without following links, so the
# connector checks each file with lstat first: nothing outside reaches the
# output, and pushes do not write through a linked directory.
SYM=$TMP/sym-vault
mkdir -p "$SYM/metadata" "$SYM/bundles" "$TMP/outside"
printf 'outside-secret-line\n' >"$TMP/outside/secret"
ln -s "$TMP/outside/secret" "$SYM/metadata/evil-v1.0.json"
# a complete bundle elsewhere on the server, reached through links
cp "$VAULT/metadata/alpha-v1.0.json" "$SYM/metadata/alpha-v1.0.json"
ln -s "$VAULT/bundles/alpha-v1.0.skillmeat-pack" "$SYM/bundles/alpha-v1.0.skillmeat-pack"
vadd sym "sftp://$SSH_USER@127.0.0.1:$SSHD_PORT$SYM" known_hosts="$SSH_KNOWN_HOSTS"
vauth_key sym "$SSH_KEY"
vrun sym ls
expect "ls with a linked metadata file" 0
check "ls shows nothing of the link's target" test -z "$(grep -a 'outside' "$OUT" "$ERR")"
check "ls warns about the link" grep -q "evil-v1.0.json' on '127.0.0.1' is a symbolic link" "$ERR"
vrun sym info evil-v1.0
expect_err "info of a linked metadata file" 7 "is a symbolic link or special file"
check "info shows nothing of the link's target" test -z "$(grep -a 'outside' "$OUT" "$ERR")"
vrun sym pull alpha-v1.0 "$TMP/sym-pulled"
expect_err "pull of a linked bundle file" 7 "is a symbolic link or special file"
check "that pull writes nothing" test -z "$(ls -A "$TMP/sym-pulled" 2>/dev/null)"
rm -rf "$SYM/bundles"
ln -s "$TMP/outside" "$SYM/bundles"
vrun sym push "$TMP/alpha2.skillmeat-pack"
expect_err "push into a linked bundles directory" 9 "is not a directory"
check "push writes nothing through the link" test "$(ls -A "$TMP/outside")" = secret

# --- stale and live locks ---
mkdir "$VAULT/.skillmeat-lock"
echo "host=elsewhere boot=none pid=1 time=0 token=old" >"$VAULT/.skillmeat-lock/owner"
touch -d '-2 hours' "$VAULT/.skillmeat-lock/owner" "$VAULT/.skillmeat-lock"
vrun main push "$TMP/alpha2.skillmeat-pack"
expect "push recovers a stale lock" 0
check "stale lock reported" grep -qF "removed the stale lock" "$ERR"
check "no lock left" [ -z "$(find "$VAULT" -maxdepth 1 -name '.skillmeat-lock*')" ]

# four writers find the same stale lock: one removes it, all push
for i in 1 2 3 4; do make_bundle "s$i" 1.0 "$TMP/s$i.skillmeat-pack"; done
mkdir "$VAULT/.skillmeat-lock"
echo "host=elsewhere boot=none pid=1 time=0 token=old2" >"$VAULT/.skillmeat-lock/owner"
touch -d '-2 hours' "$VAULT/.skillmeat-lock/owner" "$VAULT/.skillmeat-lock"
pids=()
for i in 1 2 3 4; do
  (OUT=$TMP/s$i.out ERR=$TMP/s$i.err; vrun main push "$TMP/s$i.skillmeat-pack"; exit "$CODE") &
  pids+=($!)
done
racers_failed=0
for p in "${pids[@]}"; do wait "$p" || racers_failed=$((racers_failed + 1)); done
check "writers racing for a stale lock all push" [ "$racers_failed" -eq 0 ]
check "exactly one writer removes the stale lock" [ "$(cat "$TMP"/s[1-4].err | grep -c 'removed the stale lock')" -eq 1 ]
check "all racing writers listed" [ "$(vids main | grep -c '^s[1-4]-v1.0$')" -eq 4 ]

vadd impatient "$URL" known_hosts="$SSH_KNOWN_HOSTS" lock_wait=2 lock_timeout=600
vauth_key impatient "$SSH_KEY"
mkdir "$VAULT/.skillmeat-lock"
echo "host=elsewhere boot=none pid=1 time=0 token=live" >"$VAULT/.skillmeat-lock/owner"
before=$(server_digest)
vrun impatient delete alpha-v2.0
expect_err "live lock makes a writer wait and give up" 10 "is locked by host=elsewhere"
check "live lock kept" grep -q token=live "$VAULT/.skillmeat-lock/owner"
check "waiting writer changed nothing" [ "$(server_digest)" = "$before" ]
vrun impatient ls
expect "readers ignore the lock" 0
rm -r "$VAULT/.skillmeat-lock"

# --- 4 processes x 10 concurrent pushes ---
mkdir -p "$TMP/many"
for i in $(seq 1 40); do
  make_bundle "c$i" 1.0 "$TMP/many/c$i.skillmeat-pack"
done
worker() {
  local w=$1 i failures=0
  while [ ! -e "$TMP/go" ]; do sleep 0.01; done
  for i in $(seq $((w * 10 + 1)) $((w * 10 + 10))); do
    vrun main push "$TMP/many/c$i.skillmeat-pack"
    if [ "$CODE" -ne 0 ]; then
      failures=$((failures + 1))
      cat "$ERR" >>"$TMP/worker-$w.err"
    fi
  done
  return "$failures"
}
pids=()
for w in 0 1 2 3; do
  (OUT=$TMP/w$w.out ERR=$TMP/w$w.errtmp worker "$w") &
  pids+=($!)
done
touch "$TMP/go"
failed_pushes=0
for p in "${pids[@]}"; do
  wait "$p" || failed_pushes=$((failed_pushes + $?))
done
check "40 concurrent pushes succeed" [ "$failed_pushes" -eq 0 ]
[ "$failed_pushes" -eq 0 ] || cat "$TMP"/worker-*.err 2>/dev/null | head -5
vids main | grep '^c' | sort >"$TMP/listed"
check "all 40 listed" [ "$(wc -l <"$TMP/listed")" -eq 40 ]
check "index.json has all 40" [ "$(grep -c '"c[0-9]*-v1.0": {' "$VAULT/index.json")" -eq 40 ]
pull_failures=0
for i in $(seq 1 40); do
  vrun main pull "c$i-v1.0" "$TMP/many-pulled"
  if [ "$CODE" -ne 0 ] || ! cmp -s "$TMP/many/c$i.skillmeat-pack" "$TMP/many-pulled/c$i-v1.0.skillmeat-pack"; then
    pull_failures=$((pull_failures + 1))
  fi
done
check "all 40 pull byte-identical" [ "$pull_failures" -eq 0 ]

# --- SIGKILL during big pushes ---
mkdir -p "$TMP/big-skill"
cp -r "$SRC/examples/skills/brand-guidelines/." "$TMP/big-skill/"
for n in 1 2 3; do
  head -c 24M /dev/urandom >"$TMP/big-skill/data.bin"
  "$SM" bundle create "$TMP/big-skill" --name "big$n" --version 1 --description big \
    --author e2e -o "$TMP/big$n.skillmeat-pack" >/dev/null
done
killed=0
rounds=0
# a loaded machine shifts the timing, so keep going until three kills landed
while [ "$killed" -lt 3 ] && [ "$rounds" -lt 12 ]; do
  rounds=$((rounds + 1))
  n=$(( (rounds - 1) % 3 + 1 ))
  # the push runs in a subshell whose child gets the SIGKILL at a random moment
  (vrun main push "$TMP/big$n.skillmeat-pack"; exit "$CODE") &
  victim=$!
  sleep "0.$(printf '%02d' $((RANDOM % 20 + 5)))"
  pkill -KILL -P "$victim" 2>/dev/null
  wait "$victim" 2>/dev/null
  [ $? -eq 0 ] || killed=$((killed + 1))
done
echo "     $killed of $rounds pushes were killed before they finished"
check "most pushes killed mid-way" [ "$killed" -ge 3 ]
# small pushes are short, so kills land in every phase, the locked commit too
for i in $(seq 1 12); do make_bundle "k$i" 1.0 "$TMP/k$i.skillmeat-pack"; done
for i in $(seq 1 12); do
  (vrun main push "$TMP/k$i.skillmeat-pack"; exit "$CODE") &
  victim=$!
  sleep "0.$(printf '%02d' $((RANDOM % 35 + 5)))"
  pkill -KILL -P "$victim" 2>/dev/null
  wait "$victim" 2>/dev/null
done
kill_failures=0
listed=$(vids main)
for id in $listed; do
  vrun main pull "$id" "$TMP/after-kill"
  [ "$CODE" -eq 0 ] || { kill_failures=$((kill_failures + 1)); echo "     pull of $id: $(cat "$ERR")"; }
done
check "after SIGKILLs every listed bundle pulls" [ "$kill_failures" -eq 0 ]
vrun main push "$TMP/big1.skillmeat-pack" --force
expect "push after SIGKILLs" 0
vrun main pull big1-v1 "$TMP/after-kill-final"
check "big bundle pulls byte-identical" cmp -s "$TMP/big1.skillmeat-pack" "$TMP/after-kill-final/big1-v1.skillmeat-pack"
# a local write that fails mid-way (4 MiB file size limit, SIGXFSZ ignored so
# write() returns EFBIG) stops the pull with that error and leaves no file
(ulimit -f 4096; trap '' XFSZ; vrun main pull big1-v1 "$TMP/pulled-limited"; exit "$CODE")
CODE=$?
expect_err "pull over the file size limit" 1 "cannot write the pulled bundle"
check "that pull leaves no file" [ -z "$(ls -A "$TMP/pulled-limited" 2>/dev/null)" ]
check "no lock left after SIGKILLs" [ ! -e "$VAULT/.skillmeat-lock" ]
# every killed small push can be completed
k_failures=0
for i in $(seq 1 12); do
  vrun main push "$TMP/k$i.skillmeat-pack"
  [ "$CODE" -eq 0 ] || k_failures=$((k_failures + 1))
done
check "killed pushes complete on retry" [ "$k_failures" -eq 0 ]
check "all 12 retried pushes listed" [ "$(vids main | grep -c '^k[0-9]*-v1.0$')" -eq 12 ]
