#!/usr/bin/env bash
# End-to-end tests of vault credentials: `vault auth`, the sealed file in
# both key modes, and the fallback without a Secret Service. The keychain
# runs on a private gnome-keyring. Further sections cover per-vault
# isolation, concurrent writers, and a sweep that looks for secret values
# in every output, file and argv where they must never appear.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOOKUP="$BUILD/tests/cred_lookup"
WITH_KEYRING="$SRC/tests/keyring/with-keyring.sh"
unset DBUS_SESSION_BUS_ADDRESS SKILLMEAT_CREDENTIALS_PASSPHRASE SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE
for v in $(env | grep -o '^SKILLMEAT_VAULT_[A-Z0-9_]*'); do unset "$v"; done

json_check() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}

# lookup VAULT [STORE]: runs cred_lookup, output in $OUT / $ERR.
lookup() { run "$LOOKUP" "$@"; }

# no_secret NAME FILE...: passes when none of the files contains a secret of $SECRETS.
no_secret() {
  local name=$1 s f
  shift
  for s in "${SECRETS[@]}"; do
    for f in "$@"; do
      if [ -e "$f" ] && grep -qaF -- "$s" "$f"; then
        not_ok "$name" "'$f' contains a secret value"
        return
      fi
    done
  done
  ok "$name"
}

# millis: the current time in milliseconds.
millis() { echo $(( $(date +%s%N) / 1000000 )); }

mode_of() { stat -c %a "$1"; }

SECRETS=()
"$SM" vault add team git https://git.example.invalid/team.git >/dev/null
"$SM" vault add other git https://git.example.invalid/other.git --branch dev >/dev/null
"$SM" vault add bucket s3 skills-bucket --region eu-west-1 --prefix team/ \
  --endpoint-url http://127.0.0.1:4569 >/dev/null
"$SM" vault add loc local "$TMP/localvault" >/dev/null
TOML="$SKILLMEAT_HOME/sharing.toml"

# --- vault add for git and s3 ---

check "git vault gets branch main by default" grep -qx 'branch = "main"' "$TOML"
check "git vault keeps --branch" grep -qx 'branch = "dev"' "$TOML"
check "s3 vault keeps its region" grep -qx 'region = "eu-west-1"' "$TOML"
check "s3 vault keeps its endpoint" grep -qx 'endpoint_url = "http://127.0.0.1:4569"' "$TOML"
check "s3 vault keeps its prefix" grep -qx 'prefix = "team/"' "$TOML"
cp "$TOML" "$TMP/toml.before"
URL_TOKEN="UrlToken-9d41c7"
SECRETS+=("$URL_TOKEN")
sm vault add leaky git "https://alice:$URL_TOKEN@git.example.invalid/r.git"
expect_err "add with a password in the URL exits 2" 2 "skillmeat vault auth leaky"
no_secret "add with a password in the URL does not echo it" "$OUT" "$ERR"
sm vault add leaky s3 bkt --endpoint-url "http://key:$URL_TOKEN@127.0.0.1:4569"
expect_err "add with a password in the endpoint exits 2" 2 "contains a password"
no_secret "rejected endpoint is not echoed" "$OUT" "$ERR"
check "rejected adds leave sharing.toml alone" cmp -s "$TMP/toml.before" "$TOML"
sm vault add userurl git https://alice@git.example.invalid/r.git
expect "a URL with a user name only is accepted" 0
"$SM" vault remove userurl >/dev/null
sm vault add g2 git https://git.example.invalid/r.git --region eu
expect_err "git with --region exits 2" 2 "do not apply to a git vault"
sm vault add s2 s3 bkt --branch main
expect_err "s3 with --branch exits 2" 2 "does not apply to an s3 vault"
sm vault add s2 s3 bkt/path
expect_err "s3 bucket with a slash exits 2" 2 "--prefix"
printf '\n[vault.oddtype]\ntype = "ftp"\npath = "/x"\n' >>"$TOML"
sm vault ls --vault oddtype
expect_err "opening a vault of an unknown type names the known types" 9 \
  "known types: local, s3, http, git"

# --- argument checks of vault auth ---

ARG_SECRET="ArgSecret-51be02"
SECRETS+=("$ARG_SECRET")
sm vault auth team --username alice --password "$ARG_SECRET"
expect_err "--password VALUE exits 2" 2 "--password-stdin"
no_secret "--password VALUE is not echoed" "$OUT" "$ERR"
sm vault auth team --username alice "--password=$ARG_SECRET"
expect_err "--password=VALUE exits 2" 2 "--password-stdin"
no_secret "--password=VALUE is not echoed" "$OUT" "$ERR"
sm vault auth team
expect_err "auth without an action exits 2" 2 "nothing to do"
sm vault auth team --username a --store cloud
expect_err "auth --store cloud exits 2" 2 "use keychain or file"
sm vault auth team --status --remove
expect_err "auth --status --remove exits 2" 2 "exclude each other"
sm vault auth nosuch --status
expect_err "auth of an unknown vault exits 3" 3 "'nosuch' not found"
sm vault auth loc --username alice --password-stdin </dev/null
expect_out "auth of a local vault needs nothing" "needs no credentials"
run setsid -w "$SM" vault auth team --username alice --password </dev/null
expect_err "--password without a terminal exits 9" 9 "--password-stdin"
run sh -c "printf '' | '$SM' vault auth team --password-stdin"
expect_err "empty password on stdin exits 9" 9 "empty password"
check "rejected auth writes no credentials file" test ! -e "$SKILLMEAT_HOME/credentials"

# --- sealed file with a key file, no D-Bus at all ---

FILE_PW="FilePw-c0ffee42"
SECRETS+=("$FILE_PW")
start=$(millis)
run sh -c "printf '%s\n' '$FILE_PW' | '$SM' vault auth team --username alice --password-stdin --verbose"
elapsed=$(( $(millis) - start ))
echo "time: store without D-Bus fell back to the sealed file in ${elapsed} ms"
expect "store without D-Bus exits 0" 0
expect_out "store without D-Bus uses the sealed file" "in the sealed file"
check "fallback says why, once" test "$(grep -c 'keychain not used: no D-Bus session' "$ERR")" -eq 1
check "credentials file has mode 600" test "$(mode_of "$SKILLMEAT_HOME/credentials")" = 600
check "key file has mode 600" test "$(mode_of "$SKILLMEAT_HOME/credentials.key")" = 600
check "key file has 32 bytes" test "$(stat -c %s "$SKILLMEAT_HOME/credentials.key")" -eq 32
check "sealed file does not contain the password" sh -c "! grep -qaF '$FILE_PW' '$SKILLMEAT_HOME/credentials'"
lookup team
expect "second process looks up the sealed file" 0
expect_out "lookup returns the password" "password file $FILE_PW"
expect_out "lookup returns the user name" "username file alice"
lookup other
check "another vault sees nothing of team" test ! -s "$OUT"

umask 022
mkdir -p "$TMP/keys"
printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----\n' >"$TMP/keys/id_test"
chmod 600 "$TMP/keys/id_test"
printf 'ssh-ed25519 AAAA test\n' >"$TMP/keys/id_test.pub"
chmod 600 "$TMP/keys/id_test.pub"
sm vault auth other --ssh-key "$TMP/keys/missing"
expect_err "missing SSH key exits 3" 3 "missing"
sm vault auth other --ssh-key "$TMP/keys/id_test.pub"
expect_err "a public key is refused" 9 "does not look like an SSH private key"
chmod 644 "$TMP/keys/id_test"
sm vault auth other --ssh-key "$TMP/keys/id_test"
expect_err "a key readable by others is refused" 5 "chmod 600"
chmod 600 "$TMP/keys/id_test"
sm vault auth other --ssh-key "$TMP/keys" 
expect_err "a directory as SSH key is refused" 9 "not a regular file"
sm vault auth other --ssh-key "$TMP/keys/id_test"
expect "a private key is stored" 0
lookup other
expect_out "lookup returns the key path" "ssh_key file $TMP/keys/id_test"
lookup team
check "storing other kept team's password" grep -qF "password file $FILE_PW" "$OUT"

sm vault auth team --status
expect "status exits 0" 0
expect_out "status names the store of the password" "password      file (used)"
no_secret "status prints no value" "$OUT" "$ERR"
sm vault auth team --status --json
check "status --json lists the file fields" json_check "$OUT" \
  'd["file"]["fields"] == ["username", "password"] and d["fields"]["password"]["used"] == "file"'
check "status --json says why there is no keychain" json_check "$OUT" \
  'd["keychain"]["available"] is False and "D-Bus" in d["keychain"]["reason"]'
no_secret "status --json prints no value" "$OUT" "$ERR"

ENV_PW="EnvPw-77aa31"
SECRETS+=("$ENV_PW")
SKILLMEAT_VAULT_TEAM_PASSWORD="$ENV_PW" lookup team
expect_out "an environment variable wins over the file" "password env $ENV_PW"
expect_out "other fields still come from the file" "username file alice"
"$SM" vault add my-team.x git https://git.example.invalid/x.git >/dev/null
SKILLMEAT_VAULT_MY_TEAM_X_USERNAME=envuser SKILLMEAT_VAULT_MY_TEAM_X_SESSION_TOKEN=tok lookup my-team.x
expect_out "env name maps - and . to _" "username env envuser"
expect_out "env session token is read" "session_token env tok"
SKILLMEAT_VAULT_MY_TEAM_X_USERNAME=envuser sm vault auth my-team.x --status --json
check "status --json reports env fields" json_check "$OUT" 'd["env"] == ["username"]'

# --- a bus with no Secret Service provider ---

cat >"$TMP/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=$TMP</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
BUS_PW="BusPw-4e5d6c"
SECRETS+=("$BUS_PW")
start=$(millis)
run dbus-run-session --config-file="$TMP/bus.conf" -- sh -c \
  "printf '%s\n' '$BUS_PW' | '$SM' vault auth bucket --username AKIDEXAMPLE --password-stdin -v"
elapsed=$(( $(millis) - start ))
echo "time: store on a bus without provider fell back to the sealed file in ${elapsed} ms (with bus start-up)"
expect "store on a bus without provider exits 0" 0
expect_out "bus without provider falls back to the sealed file" "in the sealed file"
check "bus without provider says why" grep -q "keychain not used: no Secret Service" "$ERR"
lookup bucket
expect_out "bucket secret is in the sealed file" "password file $BUS_PW"

# --- concurrent writers of the sealed file ---

pids=()
for i in 1 2 3 4 5 6 7 8; do
  "$SM" vault add "c$i" git "https://git.example.invalid/c$i.git" >/dev/null
done
for i in 1 2 3 4 5 6 7 8; do
  sh -c "printf 'conc-pw-$i\n' | '$SM' vault auth c$i --username u$i --password-stdin --store file" \
    >"$TMP/c$i.out" 2>&1 &
  pids+=($!)
done
failures=0
for pid in "${pids[@]}"; do wait "$pid" || failures=$((failures + 1)); done
check "8 concurrent stores all exit 0" test "$failures" -eq 0
kept=0
for i in 1 2 3 4 5 6 7 8; do
  "$LOOKUP" "c$i" >"$TMP/c$i.look" 2>&1 && grep -qx "password file conc-pw-$i" "$TMP/c$i.look" && kept=$((kept + 1))
done
check "8 concurrent stores all kept their password" test "$kept" -eq 8
lookup team
check "concurrent stores kept earlier vaults" grep -qF "password file $FILE_PW" "$OUT"

# --- damaged files ---

CRED="$SKILLMEAT_HOME/credentials"
cp "$CRED" "$TMP/cred.good"
python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[60] ^= 1; open(p, "wb").write(bytes(b))' "$CRED"
lookup team
check "flipped byte fails lookup" grep -q "changed or damaged" "$ERR"
sm vault auth team --status
expect_err "flipped byte fails status with exit 7" 7 "changed or damaged"
no_secret "flipped byte leaks nothing" "$OUT" "$ERR"
head -c 40 "$TMP/cred.good" >"$CRED"
sm vault auth team --status
expect_err "truncated file exits 7" 7 "truncated"
: >"$CRED"
sm vault auth team --status
expect_err "empty file exits 7" 7 "truncated"
cp "$TMP/cred.good" "$CRED"
mv "$SKILLMEAT_HOME/credentials.key" "$TMP/key.saved"
sm vault auth team --status
expect_err "missing key file exits 3" 3 "credentials.key' of credentials file"
no_secret "missing key file leaks nothing" "$OUT" "$ERR"
run sh -c "printf 'x\n' | '$SM' vault auth team --password-stdin --store file"
expect_err "store with a missing key file exits 3" 3 "is missing"
check "a failed store does not replace the file" cmp -s "$TMP/cred.good" "$CRED"
mv "$TMP/key.saved" "$SKILLMEAT_HOME/credentials.key"
chmod 644 "$CRED"
sm vault auth team --status
expect_err "a readable credentials file is refused" 5 "chmod 600"
chmod 600 "$CRED"
mv "$CRED" "$TMP/cred.real" && ln -s "$TMP/cred.real" "$CRED"
sm vault auth team --status
expect_err "a symlinked credentials file is refused" 9 "symbolic link"
rm "$CRED" && mv "$TMP/cred.real" "$CRED"
sm vault auth team --status
expect "restored file works again" 0
SKILLMEAT_CREDENTIALS_PASSPHRASE=oops sm vault auth team --status
expect_err "a passphrase on a key-file file exits 6" 6 "sealed with the key file"

# --- sealed file with a passphrase ---

export SKILLMEAT_HOME="$TMP/pphome"
"$SM" vault add team git https://git.example.invalid/team.git >/dev/null
PASSPHRASE="Passphrase-a8e1f0"
PP_PW="PpPw-13579b"
SECRETS+=("$PASSPHRASE" "$PP_PW")
run env SKILLMEAT_CREDENTIALS_PASSPHRASE="$PASSPHRASE" sh -c \
  "printf '%s\n' '$PP_PW' | '$SM' vault auth team --username bob --password-stdin"
expect "passphrase store exits 0" 0
check "passphrase mode writes no key file" test ! -e "$SKILLMEAT_HOME/credentials.key"
check "passphrase file has mode 600" test "$(mode_of "$SKILLMEAT_HOME/credentials")" = 600
SKILLMEAT_CREDENTIALS_PASSPHRASE="$PASSPHRASE" lookup team
expect_out "passphrase lookup returns the password" "password file $PP_PW"
printf '%s\n' "$PASSPHRASE" >"$TMP/pp.txt"
chmod 600 "$TMP/pp.txt"
SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE="$TMP/pp.txt" lookup team
expect_out "passphrase file variable works" "password file $PP_PW"
sm vault auth team --status --passphrase-file "$TMP/pp.txt"
expect_out "--passphrase-file works" "password      file (used)"
chmod 644 "$TMP/pp.txt"
sm vault auth team --status --passphrase-file "$TMP/pp.txt"
expect_err "a passphrase file readable by others exits 5" 5 "is readable by others"
chmod 600 "$TMP/pp.txt"
run env SKILLMEAT_CREDENTIALS_PASSPHRASE= "$SM" vault auth team --status
expect_err "an empty passphrase variable exits 9" 9 "is set but empty"
SKILLMEAT_CREDENTIALS_PASSPHRASE="wrong-$PASSPHRASE" sm vault auth team --status
expect_err "wrong passphrase exits 6" 6 "passphrase is wrong"
no_secret "wrong passphrase leaks nothing" "$OUT" "$ERR"
sm vault auth team --status
expect_err "no passphrase exits 6" 6 "SKILLMEAT_CREDENTIALS_PASSPHRASE"
cp "$SKILLMEAT_HOME/credentials" "$TMP/pp.good"
python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[20] ^= 0x40; open(p, "wb").write(bytes(b))' \
  "$SKILLMEAT_HOME/credentials"
SKILLMEAT_CREDENTIALS_PASSPHRASE="$PASSPHRASE" sm vault auth team --status
expect_err "changed salt fails with the right passphrase" 6 "cannot decrypt"
cp "$TMP/pp.good" "$SKILLMEAT_HOME/credentials"
head -c 50 "$TMP/pp.good" >"$SKILLMEAT_HOME/credentials"
SKILLMEAT_CREDENTIALS_PASSPHRASE="$PASSPHRASE" sm vault auth team --status
expect_err "truncated passphrase file exits 7" 7 "truncated"
cp "$TMP/pp.good" "$SKILLMEAT_HOME/credentials"

# --- prompt on a terminal ---

TTY_PW="TtyPw-2468ac"
SECRETS+=("$TTY_PW")
{ sleep 1; printf '%s\n' "$TTY_PW"; } |
  SKILLMEAT_CREDENTIALS_PASSPHRASE="$PASSPHRASE" script -qec "'$SM' vault auth team --username bob --password" /dev/null \
  >"$TMP/tty.out" 2>&1
CODE=$?
expect "prompt on a terminal exits 0" 0
check "prompt asks for the password" grep -q "Password for vault 'team':" "$TMP/tty.out"
no_secret "prompt does not echo the password" "$TMP/tty.out"
SKILLMEAT_CREDENTIALS_PASSPHRASE="$PASSPHRASE" lookup team
expect_out "prompted password is stored" "password file $TTY_PW"

# --- removal ---

export SKILLMEAT_HOME="$TMP/home"
sm vault auth team --remove
expect_out "auth --remove reports the fields" "removed 2 stored credential fields of vault 'team'"
lookup team
check "removed vault has no credentials" test ! -s "$OUT"
lookup other
expect_out "removing team kept other" "ssh_key file"
sm vault remove other
expect_out "vault remove deletes the credentials" "deleted 1 stored credential field of vault 'other'"
lookup other
check "vault remove left no credentials" test ! -s "$OUT"
lookup c3
expect_out "vault remove kept other vaults" "password file conc-pw-3"

# Removing the last stored field deletes the sealed file, so that later
# commands do not ask for the passphrase of an empty file.
export SKILLMEAT_HOME="$TMP/solo"
"$SM" vault add solo git https://git.example.com/team/vault.git >/dev/null
printf 'only-pw\n' | SKILLMEAT_CREDENTIALS_PASSPHRASE="$PASSPHRASE" \
  "$SM" vault auth solo --store file --password-stdin >/dev/null 2>&1
check "solo sealed file written" test -s "$SKILLMEAT_HOME/credentials"
SKILLMEAT_CREDENTIALS_PASSPHRASE="$PASSPHRASE" sm vault auth solo --remove --store file
expect_out "removing the last field reports it" "removed 1 stored credential field of vault 'solo'"
check "removing the last field deletes the sealed file" test ! -e "$SKILLMEAT_HOME/credentials"
lookup solo
expect "lookup after the last removal needs no passphrase" 0
check "lookup after the last removal finds nothing" test ! -s "$OUT"
export SKILLMEAT_HOME="$TMP/home"

# --- keychain on a private gnome-keyring ---

KC_PW="KeychainPw-0f1e2d"
KC_OTHER="KeychainOther-3c4b5a"
SECRETS+=("$KC_PW" "$KC_OTHER")
export SKILLMEAT_HOME="$TMP/kchome"
"$SM" vault add team git https://git.example.invalid/team.git >/dev/null
"$SM" vault add other git https://git.example.invalid/other.git >/dev/null
KC="$TMP/kc"
mkdir -p "$KC"
cat >"$TMP/keychain-steps.sh" <<EOF
step() { local name=\$1; shift; "\$@" >"$KC/\$name.out" 2>"$KC/\$name.err"; echo \$? >"$KC/\$name.code"; }
start=\$(date +%s%N)
step store sh -c "printf '%s\n' '$KC_PW' | '$SM' vault auth team --username kcuser --password-stdin"
echo \$(( (\$(date +%s%N) - start) / 1000000 )) >"$KC/store.ms"
step no_file test ! -e "$SKILLMEAT_HOME/credentials"
step lookup "$LOOKUP" team
step store_other sh -c "printf '%s\n' '$KC_OTHER' | '$SM' vault auth other --username ouser --password-stdin"
step lookup_other "$LOOKUP" other
step lookup_team_again "$LOOKUP" team
step status "$SM" vault auth team --status --json
step search secret-tool search --all application skillmeat vault team field password
step force_file sh -c "printf 'forced\n' | '$SM' vault auth team --password-stdin --store file"
step lookup_file "$LOOKUP" team file
step remove "$SM" vault auth team --remove
step lookup_removed "$LOOKUP" team
step vault_remove "$SM" vault remove other
step lookup_other_removed "$LOOKUP" other keychain
EOF
run "$WITH_KEYRING" bash "$TMP/keychain-steps.sh"
if [ "$CODE" -ne 0 ] || [ ! -e "$KC/store.code" ]; then
  not_ok "gnome-keyring starts on a private bus" "with-keyring.sh exited $CODE"
else
  ok "gnome-keyring starts on a private bus"
  echo "time: store in the keychain took $(cat "$KC/store.ms") ms"
  check "keychain store exits 0" test "$(cat "$KC/store.code")" -eq 0
  check "keychain store uses the keychain" grep -q "in the keychain" "$KC/store.out"
  check "second process reads the keychain password" grep -qx "password keychain $KC_PW" "$KC/lookup.out"
  check "second process reads the keychain user" grep -qx "username keychain kcuser" "$KC/lookup.out"
  check "keychain store wrote no sealed file" test "$(cat "$KC/no_file.code")" -eq 0
  check "other vault reads its own secret" grep -qx "password keychain $KC_OTHER" "$KC/lookup_other.out"
  check "team does not see other's secret" sh -c "! grep -qF '$KC_OTHER' '$KC/lookup_team_again.out'"
  check "team still has its own secret" grep -qx "password keychain $KC_PW" "$KC/lookup_team_again.out"
  check "keychain status lists the fields" json_check "$KC/status.out" \
    'd["keychain"]["available"] is True and d["keychain"]["fields"] == ["username", "password"]'
  no_secret "keychain status prints no value" "$KC/status.out" "$KC/status.err"
  check "keychain item has a readable label" grep -q "label = skillmeat vault 'team' password" "$KC/search.out"
  check "--store file writes the sealed file" grep -qx "password file forced" "$KC/lookup_file.out"
  check "keychain remove exits 0" test "$(cat "$KC/remove.code")" -eq 0
  check "keychain remove deletes both stores" grep -q "removed 3 stored credential fields" "$KC/remove.out"
  check "removed vault has nothing left" test ! -s "$KC/lookup_removed.out"
  check "vault remove deletes keychain items" test ! -s "$KC/lookup_other_removed.out"
  no_secret "keychain runs print no secret" "$KC"/*.err "$KC/store.out" "$KC/store_other.out" \
    "$KC/remove.out" "$KC/vault_remove.out"
fi

# a locked default collection would need a prompt: fall back instead
cat >"$TMP/locked-steps.sh" <<EOF
dbus-send --session --print-reply --dest=org.freedesktop.secrets /org/freedesktop/secrets \\
  org.freedesktop.Secret.Service.Lock array:objpath:/org/freedesktop/secrets/collection/login >/dev/null || exit 1
start=\$(date +%s%N)
printf 'locked-pw\n' | "$SM" vault auth team --username u --password-stdin -v >"$KC/locked.out" 2>"$KC/locked.err"
echo \$? >"$KC/locked.code"
echo \$(( (\$(date +%s%N) - start) / 1000000 )) >"$KC/locked.ms"
EOF
run timeout 60 "$WITH_KEYRING" bash "$TMP/locked-steps.sh"
if [ "$CODE" -ne 0 ] || [ ! -e "$KC/locked.code" ]; then
  not_ok "keyring with a locked collection starts" "with-keyring.sh exited $CODE"
else
  echo "time: store with a locked keychain fell back in $(cat "$KC/locked.ms") ms"
  check "locked keychain store exits 0" test "$(cat "$KC/locked.code")" -eq 0
  check "locked keychain falls back to the sealed file" grep -q "in the sealed file" "$KC/locked.out"
  check "locked keychain fallback says why" grep -q "default keychain collection is locked" "$KC/locked.err"
fi

# --- secrets never leak: every command, then every file and argv ---

export SKILLMEAT_HOME="$TMP/leakhome"
SWEEP="$TMP/sweep"
mkdir -p "$SWEEP"
LEAK_PW="LeakPw-5f6e7d8c"
LEAK_PP="LeakPassphrase-1a2b3c"
SECRETS+=("$LEAK_PW" "$LEAK_PP")
n=0
sweep() { n=$((n + 1)); "$@" >"$SWEEP/$n.out" 2>"$SWEEP/$n.err" </dev/null; }
sweep_in() { n=$((n + 1)); local input=$1; shift; printf '%s\n' "$input" | "$@" >"$SWEEP/$n.out" 2>"$SWEEP/$n.err"; }
sweep "$SM" vault add lk git "https://u:$LEAK_PW@127.0.0.1:1/r.git" -v
sweep "$SM" vault add lk git https://127.0.0.1:1/r.git -v
sweep "$SM" vault add lk3 s3 bkt --endpoint-url "http://k:$LEAK_PW@127.0.0.1:1" -v
sweep "$SM" vault auth lk --username u --password "$LEAK_PW" -v
sweep "$SM" vault auth lk --username u "--password=$LEAK_PW" -v
sweep_in "$LEAK_PW" "$SM" vault auth lk --username u --password-stdin -v
sweep_in "$LEAK_PW" "$SM" vault auth lk --username u --password-stdin --json -v
sweep "$SM" vault auth lk --status -v
sweep "$SM" vault auth lk --status --json -v
sweep "$SM" vault list --verbose
sweep "$SM" vault list --json
sweep "$SM" vault ls --vault lk -v
sweep "$SM" vault ls --vault lk --json
sweep "$LOOKUP" lk env
sweep "$SM" vault auth lk --remove -v
sweep_in "$LEAK_PW" env SKILLMEAT_CREDENTIALS_PASSPHRASE="$LEAK_PP" "$SM" vault auth lk \
  --password-stdin --store file -v
sweep env SKILLMEAT_CREDENTIALS_PASSPHRASE="wrong" "$SM" vault auth lk --status -v
sweep env SKILLMEAT_CREDENTIALS_PASSPHRASE="$LEAK_PP" "$SM" vault auth lk --status --json -v
sweep env SKILLMEAT_CREDENTIALS_PASSPHRASE="$LEAK_PP" "$SM" vault remove lk -v

# a store that waits on standard input, so its argv can be read meanwhile
mkfifo "$TMP/pw.fifo"
"$SM" vault add lk git https://git.example.invalid/r.git >/dev/null
"$SM" vault auth lk --username u --password-stdin -v <"$TMP/pw.fifo" >"$SWEEP/fifo.out" 2>"$SWEEP/fifo.err" &
pid=$!
exec 9>"$TMP/pw.fifo"
sleep 0.3
cat /proc/$pid/cmdline >"$TMP/own.cmdline" 2>/dev/null
cat /proc/[0-9]*/cmdline >"$TMP/all.cmdline" 2>/dev/null
printf '%s\n' "$LEAK_PW" >&9
exec 9>&-
wait $pid
CODE=$?
expect "store through a FIFO exits 0" 0
check "our own argv was captured" grep -qa "password-stdin" "$TMP/own.cmdline"
no_secret "no secret in our argv" "$TMP/own.cmdline"
no_secret "no secret in any process's argv" "$TMP/all.cmdline"
no_secret "no secret on stdout or stderr of any command" "$SWEEP"/*
no_secret "no secret in sharing.toml" "$SKILLMEAT_HOME/sharing.toml"
mapfile -t home_files < <(find "$SKILLMEAT_HOME" -type f ! -name credentials)
no_secret "no secret in any other file of SKILLMEAT_HOME" "${home_files[@]}"
check "the sealed file holds no plaintext" sh -c "! grep -qaF '$LEAK_PW' '$SKILLMEAT_HOME/credentials'"
check "the leak sweep ran every command" test "$n" -eq 19

# --- mistakes that must not echo or lose a secret ---

"$SM" vault add mist git https://git.example.invalid/m.git >/dev/null
sm vault auth mist --username a --pass=ZQXmistyped1
expect_err "a mistyped --password=VALUE exits 2" 2 "invalid option '--pass'"
check "a mistyped --password=VALUE is not echoed" sh -c "! grep -qF ZQXmistyped1 '$ERR'"
sm vault auth --password ZQXnoname2
expect_err "--password VALUE without a vault exits 3" 3 "the name is not shown"
check "--password VALUE without a vault is not echoed" sh -c "! grep -qF ZQXnoname2 '$ERR'"
run sh -c "printf 'ab\\0cd\\n' | '$SM' vault auth mist --username u --password-stdin"
expect_err "a NUL byte in the password exits 9" 9 "contains a NUL byte"
lookup mist
check "a rejected NUL password stores nothing" sh -c "! grep -q 'password' '$OUT'"
: > "$TMP/empty.pp" && chmod 600 "$TMP/empty.pp"
run sh -c "printf 'x\\n' | '$SM' vault auth mist --username u --password-stdin --passphrase-file '$TMP/empty.pp'"
expect_err "an empty passphrase file exits 9" 9 "is empty"

cp "$SKILLMEAT_HOME/sharing.toml" "$TMP/toml.before"
sm vault add mist.x git https://git.example.invalid/n.git
sm vault add mist-y git https://git.example.invalid/n.git
sm vault add mist.y git https://git.example.invalid/n.git
expect_err "a name sharing another vault's variables exits 2" 2 "would share the credential variables"
sm vault add pc git "https://alice%3AZQXpct3@git.example.invalid/x.git"
expect_err "a percent-encoded password in a URL exits 2" 2 "contains a password or token"
check "a percent-encoded password is not echoed" sh -c "! grep -qF ZQXpct3 '$ERR'"
sm vault add qt git "https://git.example.invalid/x.git?private_token=ZQXqry4"
expect_err "a token in a URL query exits 2" 2 "contains a password or token"
check "rejected URLs are not written" sh -c "! grep -qF ZQX '$SKILLMEAT_HOME/sharing.toml'"

# vault remove keeps the vault when its credentials cannot be deleted
export SKILLMEAT_HOME="$TMP/rmhome"
"$SM" vault add sealed git https://git.example.invalid/s.git >/dev/null
printf 'ZQXsealed5\n' | SKILLMEAT_CREDENTIALS_PASSPHRASE=pp1 "$SM" vault auth sealed --username u \
  --password-stdin --store file >/dev/null 2>&1
check "passphrase-sealed store for the remove test" test -s "$SKILLMEAT_HOME/credentials"
cp "$SKILLMEAT_HOME/sharing.toml" "$TMP/toml.sealed"
sm vault remove sealed
expect "remove without the passphrase fails" 6
check "remove without the passphrase keeps the vault" cmp -s "$TMP/toml.sealed" "$SKILLMEAT_HOME/sharing.toml"
run env SKILLMEAT_CREDENTIALS_PASSPHRASE=pp1 "$SM" vault remove sealed
expect "remove with the passphrase exits 0" 0
run env SKILLMEAT_CREDENTIALS_PASSPHRASE=pp1 "$LOOKUP" sealed
check "removed vault's credentials are gone" sh -c "! grep -qF ZQXsealed5 '$OUT'"

finish
