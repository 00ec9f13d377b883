#!/usr/bin/env bash
# End-to-end tests of a git vault over SSH against a private sshd on
# 127.0.0.1. They cover every vault command and the key chosen with `vault
# auth --ssh-key`, also from a path with spaces. Host keys are checked
# against the vault's known_hosts file, the user's one, and with trust on
# first use.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$SRC/tests/servers/servers.sh"
. "$SRC/tests/tools/git_e2e.sh"

start_sshd || { not_ok "sshd starts"; finish; }
URL="ssh://$SSH_USER@127.0.0.1:$SSHD_PORT$GIT_SSH_REPO"
HOST_KEY=$(cut -d' ' -f2 "$TMP/sshd/host_ed25519.pub")
check "the scratch HOME has no ssh directory" test ! -e "$HOME/.ssh"

# add_ssh_vault NAME [ADD OPTIONS...]: a git vault on $URL that pins the
# test known_hosts file and uses the test client key.
add_ssh_vault() {
  local name=$1
  shift
  "$SM" vault add "$name" git "$URL" "$@" >/dev/null
  vault_set "$name" known_hosts "$(toml_str "$SSH_KNOWN_HOSTS")"
  "$SM" vault auth "$name" --ssh-key "$SSH_KEY" >/dev/null
}

add_ssh_vault team
vault_set team commit_author '"E2E Bot"'
vault_set team commit_email '"bot@e2e.invalid"'
add_ssh_vault team-ro --read-only

# --- every command ---

check_every_command team team-ro "$GIT_SSH_REPO"

check "one cache directory per used vault" test "$(cache_dirs | wc -l)" -ge 1
for d in $(cache_dirs); do
  check "cache $(basename "$(dirname "$d")") is a partial clone without blobs" \
    grep -q 'blob:none' <(git --git-dir="$d" config --get-regexp 'remote\..*\.partialclonefilter')
done

# --- the key from `vault auth --ssh-key` ---

mkdir -p "$TMP/key dir"
cp "$SSH_KEY" "$TMP/key dir/client key"
chmod 600 "$TMP/key dir/client key"
"$SM" vault add spaced git "$URL" >/dev/null
vault_set spaced known_hosts "$(toml_str "$SSH_KNOWN_HOSTS")"
"$SM" vault auth spaced --ssh-key "$TMP/key dir/client key" >/dev/null
check "a key path with spaces lists" test "$(ls_ids --vault spaced)" = "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1"

ssh-keygen -q -t ed25519 -N '' -C stranger -f "$TMP/stranger_key"
"$SM" vault add wrongkey git "$URL" >/dev/null
vault_set wrongkey known_hosts "$(toml_str "$SSH_KNOWN_HOSTS")"
"$SM" vault auth wrongkey --ssh-key "$TMP/stranger_key" >/dev/null
before=$(refs "$GIT_SSH_REPO")
sm vault ls --vault wrongkey
expect_err "a key sshd does not accept exits 6" 6 "wrongkey"
sm vault push "$TMP/bundles-team/alpha.skillmeat-pack" --vault wrongkey --version 8.0
expect_err "push with a rejected key exits 6" 6 "wrongkey"
same_refs "push with a rejected key leaves the repository" "$GIT_SSH_REPO" "$before"

# With no stored key, git uses the user's ssh setup, where there is none.
"$SM" vault add nokey git "$URL" >/dev/null
vault_set nokey known_hosts "$(toml_str "$SSH_KNOWN_HOSTS")"
started=$(millis)
sm vault ls --vault nokey
expect_err "no key at all exits 6" 6 "nokey"
check "no key at all fails without waiting for a prompt" test $(($(millis) - started)) -lt 10000

# --- host keys ---

: >"$TMP/empty_known_hosts"
"$SM" vault add stranger git "$URL" >/dev/null
vault_set stranger known_hosts "$(toml_str "$TMP/empty_known_hosts")"
"$SM" vault auth stranger --ssh-key "$SSH_KEY" >/dev/null
before=$(refs "$GIT_SSH_REPO")
sm vault ls --vault stranger
expect_err "unknown host key exits 6" 6 "known_hosts"
expect_err "unknown host key error says how to trust it" 6 "accept_new_host_keys"
check "unknown host key error names the host" grep -q "127.0.0.1" "$ERR"
sm vault push "$TMP/bundles-team/alpha.skillmeat-pack" --vault stranger --version 8.0
expect_err "push to an unknown host exits 6" 6 "known_hosts"
same_refs "push to an unknown host leaves the repository" "$GIT_SSH_REPO" "$before"
check "unknown host key is not recorded" test ! -s "$TMP/empty_known_hosts"
check "the scratch HOME still has no known_hosts" test ! -e "$HOME/.ssh/known_hosts"

# trust on first use: the key is recorded in the vault's known_hosts file
mkdir -p "$TMP/tofu"
"$SM" vault add tofu git "$URL" >/dev/null
vault_set tofu known_hosts "$(toml_str "$TMP/tofu/known_hosts")"
vault_set tofu accept_new_host_keys true
"$SM" vault auth tofu --ssh-key "$SSH_KEY" >/dev/null
sm vault ls --vault tofu --json
expect "accept_new_host_keys accepts an unknown host" 0
check "accept_new_host_keys lists the bundles" json_check "$OUT" 'len(d) == 3'
check "accept_new_host_keys records the host key" grep -qF "$HOST_KEY" "$TMP/tofu/known_hosts"
sm vault ls --vault tofu
expect "a recorded host key is accepted later" 0

# a changed host key is refused even with accept_new_host_keys
ssh-keygen -q -t ed25519 -N '' -f "$TMP/impostor_host"
echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$TMP/impostor_host.pub")" >"$TMP/changed_known_hosts"
cp "$TMP/changed_known_hosts" "$TMP/changed_known_hosts.before"
"$SM" vault add changed git "$URL" >/dev/null
vault_set changed known_hosts "$(toml_str "$TMP/changed_known_hosts")"
vault_set changed accept_new_host_keys true
"$SM" vault auth changed --ssh-key "$SSH_KEY" >/dev/null
before=$(refs "$GIT_SSH_REPO")
sm vault push "$TMP/bundles-team/alpha.skillmeat-pack" --vault changed --version 8.0
check "a changed host key is refused" test "$CODE" -ne 0
check "a changed host key gives one error line" test "$(grep -c 'error:' "$ERR")" -eq 1
same_refs "a changed host key leaves the repository" "$GIT_SSH_REPO" "$before"
check "a changed host key is not replaced" cmp -s "$TMP/changed_known_hosts" "$TMP/changed_known_hosts.before"

# without a known_hosts setting, the user's ~/.ssh/known_hosts is used
"$SM" vault add userhosts git "$URL" >/dev/null
"$SM" vault auth userhosts --ssh-key "$SSH_KEY" >/dev/null
sm vault ls --vault userhosts
expect_err "no known_hosts anywhere exits 6" 6 "known_hosts"
mkdir -p "$HOME/.ssh"
cp "$SSH_KNOWN_HOSTS" "$HOME/.ssh/known_hosts"
sm vault ls --vault userhosts
expect "the user's known_hosts is used" 0
rm -rf "$HOME/.ssh"

# --- scp-like URL ---

"$SM" vault add scp git "$SSH_USER@127.0.0.1:$GIT_SSH_REPO" >/dev/null
check "scp-like URL is accepted by vault add" grep -q "vault.scp" "$TOML"

finish
