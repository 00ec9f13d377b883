#!/usr/bin/env bash
# End-to-end tests of the URL checks of a git vault. Transports that run
# commands or read local files, option-like hosts, users and paths, plain
# http without allow_http, and passwords in the URL are rejected with exit
# code 9 before git runs. They leave no marker file and no cache behind.
# The URLs reach the connector both through `vault add` and through a
# sharing.toml written by hand.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$SRC/tests/tools/git_e2e.sh"

PWNED="$TMP/pwned"
LOCAL_REPO="$TMP/local.git"
git init -q --bare -b main "$LOCAL_REPO"

# ran_git FILE: passes when the strace log FILE shows an exec of any git.
ran_git() { grep -q 'execve("[^"]*/git"' "$1"; }

make_bundle alpha 1.0 "$TMP/alpha.skillmeat-pack"

BAD_URLS=(
  "ext::sh -c touch% $PWNED"
  "ext::sh -c touch $PWNED"
  "ssh://-oProxyCommand=touch%20$PWNED/repo.git"
  "ssh://-oProxyCommand=touch $PWNED/repo.git"
  "-oProxyCommand=touch $PWNED:repo.git"
  "ssh://-user@127.0.0.1/repo.git"
  "--upload-pack=touch $PWNED"
  "ssh://127.0.0.1/-repo.git"
  "127.0.0.1:-repo.git"
  "file://$LOCAL_REPO"
  "FILE://$LOCAL_REPO"
  "$LOCAL_REPO"
  "./local.git"
  "fd::3"
  "fd::3,4"
  "git://127.0.0.1/repo.git"
  "ftp://127.0.0.1/repo.git"
  "custom::https://localhost/repo.git"
  "http://127.0.0.1:9/repo.git"
  "https://vault:secret@localhost/repo.git"
  "https://vault:@localhost/repo.git"
  "https://localhost/repo.git with space"
  "https://localhost/re	po.git"
  "ssh://%2doProxyCommand=touch@127.0.0.1/repo.git"
  "ssh://127.0.0.1/repo%0a.git"
  "https://localhost/repo.git%0d%0aHost:x"
)

# hand_vault NAME URL: writes a git vault with URL into sharing.toml by hand.
hand_vault() {
  printf '[vault.%s]\ntype = "git"\nurl = %s\nbranch = "main"\n\n' "$1" "$(toml_str "$2")" >>"$TOML"
}

mkdir -p "$SKILLMEAT_HOME" "$TMP/dl"
: >"$TOML"
i=0
for url in "${BAD_URLS[@]}"; do
  i=$((i + 1))
  name="bad$i"
  shown=$(printf '%s' "$url" | tr '\t' ' ')

  cp "$TOML" "$TMP/toml.before"
  sm vault add "$name" git "$url"
  if [ "$CODE" -eq 9 ] || [ "$CODE" -eq 2 ]; then ok "add rejects '$shown'"; else
    not_ok "add rejects '$shown'" "exit code $CODE, expected 9 (or 2 for a usage error)"; fi
  check "add of '$shown' gives one error line" test "$(grep -c 'error:' "$ERR")" -eq 1
  check "add of '$shown' leaves sharing.toml" cmp -s "$TMP/toml.before" "$TOML"
  [ "$CODE" -eq 0 ] && cp "$TMP/toml.before" "$TOML"

  hand_vault "$name" "$url"
  for cmd in "ls" "info alpha-v1.0" "pull alpha-v1.0 --output $TMP/dl" "push $TMP/alpha.skillmeat-pack" \
    "delete alpha-v1.0"; do
    # shellcheck disable=SC2086
    sm vault $cmd --vault "$name"
    expect_err "${cmd%% *} on '$shown' exits 9" 9 "URL"
    cat "$ERR" >>"$TMP/errors"
  done
  check "'$shown' ran no command" test ! -e "$PWNED"
  # the connector runs git by absolute path, so trace every exec of ls
  strace -f -qq -e trace=execve -o "$TMP/trace" "$SM" vault ls --vault "$name" >/dev/null 2>&1
  if ran_git "$TMP/trace"; then
    not_ok "'$shown' ran no git" "$(grep execve "$TMP/trace" | head -3)"
  else
    ok "'$shown' ran no git"
  fi
  no_cache "'$shown' made no cache"
done
check "no pull wrote a file" test -z "$(ls -A "$TMP/dl")"
check "the local repository has no branch" test -z "$(refs "$LOCAL_REPO")"
check "no error shows the password" test "$(grep -c ':secret@' "$TMP/errors")" -eq 0

# branch names that are options, refspecs, revisions or need quoting are
# rejected before git runs; the URL itself is fine
BAD_BRANCHES=("--delete" "-f" "main:refs/heads/x" "+main" "HEAD" "a..b" "a b" "a~1" "a^" "a:b"
  "a*" "a?" "a[1]" "a\\b" "a@{1}" "@" ".hidden" "a/.b" "a.lock" "a/" "")
i=0
for branch in "${BAD_BRANCHES[@]}"; do
  i=$((i + 1))
  printf '[vault.br%s]\ntype = "git"\nurl = "ssh://127.0.0.1:9/repo.git"\nbranch = %s\n\n' \
    "$i" "$(toml_str "$branch")" >>"$TOML"
  sm vault push "$TMP/alpha.skillmeat-pack" --vault "br$i"
  expect_err "push with branch '$branch' exits 9" 9 "is not a valid branch name"
  no_cache "branch '$branch' made no cache"
done

# http is allowed only with allow_http = true; then git does run and the
# connection fails, because nothing listens on the port
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
hand_vault plain "http://127.0.0.1:$PORT/repo.git"
sm vault ls --vault plain
expect_err "http without allow_http exits 9" 9 "allow_http"
vault_set plain allow_http true
sm vault ls --vault plain
expect_err "http with allow_http reaches the network" 8 "127.0.0.1"
# the same trace as above does see git when the URL is accepted
strace -f -qq -e trace=execve -o "$TMP/trace" "$SM" vault ls --vault plain >/dev/null 2>&1
check "the exec trace sees git for an accepted URL" ran_git "$TMP/trace"

finish
