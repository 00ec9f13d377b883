#!/usr/bin/env bash
# Concurrent pushes into one git repository over SSH. First 4 processes
# push 10 bundles each, each with its own SKILLMEAT_HOME and so its own
# cache, as on 4 machines, so they race at the git level. Then 4 processes
# that share one SKILLMEAT_HOME, and so one locked cache, push 10 more each. Every
# bundle must be listed and pull back byte-identical, and the branch must
# only ever move forward: the reflog of the bare repository shows each
# update as a fast-forward, and there is one commit per push. Last, 4
# processes push different bytes under one id at once: one wins, the
# others exit 4.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$SRC/tests/servers/servers.sh"
. "$SRC/tests/tools/git_e2e.sh"

WORKERS=4
PER_WORKER=10
SKILL="$SRC/examples/skills/brand-guidelines"

start_sshd || { not_ok "sshd starts"; finish; }
URL="ssh://$SSH_USER@127.0.0.1:$SSHD_PORT$GIT_SSH_REPO"
REPO=$GIT_SSH_REPO
git -C "$REPO" config core.logAllRefUpdates always

# setup_home DIR: a SKILLMEAT_HOME in DIR with the default vault "team" on $URL.
setup_home() {
  mkdir -p "$1"
  SKILLMEAT_HOME=$1 "$SM" vault add team git "$URL" --set-default >/dev/null
  SKILLMEAT_HOME=$1 TOML="$1/sharing.toml" vault_set team known_hosts "$(toml_str "$SSH_KNOWN_HOSTS")"
  SKILLMEAT_HOME=$1 "$SM" vault auth team --ssh-key "$SSH_KEY" >/dev/null
}

# push_worker HOME FIRST LAST LOG: waits for the start file, then pushes
# bundles c-FIRST .. c-LAST one after another with SKILLMEAT_HOME=HOME.
# Returns the number of failed pushes.
push_worker() {
  local home=$1 first=$2 last=$3 log=$4 failures=0 i
  while [ ! -e "$TMP/start" ]; do sleep 0.005; done
  for ((i = first; i <= last; i++)); do
    if ! SKILLMEAT_HOME=$home "$SM" vault push "$TMP/bundles/c-$i.skillmeat-pack" --no-progress \
      >>"$log" 2>&1; then
      failures=$((failures + 1))
      echo "push of c-$i failed" >>"$log"
    fi
  done
  return "$failures"
}

# run_round ROUND HOME_PATTERN FIRST: starts $WORKERS push_workers together.
# Worker w pushes $PER_WORKER bundles from FIRST + w * PER_WORKER. Its
# SKILLMEAT_HOME is HOME_PATTERN with a final "W" replaced by w. Only the
# final one changes, because the scratch path may contain a W as well.
run_round() {
  local round=$1 pattern=$2 first=$3 w code pids=() failures=0 started home
  rm -f "$TMP/start"
  for ((w = 0; w < WORKERS; w++)); do
    home=$pattern
    [ "${pattern: -1}" = W ] && home=${pattern%W}$w
    push_worker "$home" $((first + w * PER_WORKER)) $((first + (w + 1) * PER_WORKER - 1)) \
      "$TMP/$round-worker-$w.log" &
    pids+=($!)
  done
  sleep 0.2
  started=$(millis)
  touch "$TMP/start"
  for ((w = 0; w < WORKERS; w++)); do
    wait "${pids[$w]}"
    code=$?
    if [ "$code" -ne 0 ]; then
      failures=$((failures + 1))
      grep -E 'error:|failed$' "$TMP/$round-worker-$w.log" | head -6 | sed "s/^/     worker $w: /"
      echo "     worker $w: $(grep -c 'trying again' "$TMP/$round-worker-$w.log") retries in all"
    fi
  done
  echo "     $round: $((WORKERS * PER_WORKER)) pushes by $WORKERS workers in $(($(millis) - started)) ms"
  check "$round: all workers exit 0" test "$failures" -eq 0
  check "$round: every push reports success" \
    test "$(cat "$TMP/$round"-worker-*.log | grep -c '^pushed ')" -eq $((WORKERS * PER_WORKER))
}

# id_lines LIST: the ids of a space-separated list, sorted, one a line.
id_lines() { tr -s ' ' '\n' <<<"$1" | sed '/^$/d' | LC_ALL=C sort; }

# same_ids NAME EXPECTED ACTUAL: passes when the two space-separated id
# lists contain the same ids; otherwise names the missing and the extra ones.
same_ids() {
  local missing extra
  missing=$(comm -23 <(id_lines "$2") <(id_lines "$3") | tr '\n' ' ')
  extra=$(comm -13 <(id_lines "$2") <(id_lines "$3") | tr '\n' ' ')
  if [ -z "$missing$extra" ]; then ok "$1"; else not_ok "$1" "missing: ${missing:-none}" "extra: ${extra:-none}"; fi
}

# --- bundles c-1 .. c-80, each with its own name and hashes ---

TOTAL=$((2 * WORKERS * PER_WORKER))
mkdir -p "$TMP/bundles"
seq 1 "$TOTAL" | xargs -P 2 -I{} "$SM" bundle create --quiet "$SKILL" --name c-{} \
  --version 1.0 --description "concurrency bundle {}" --author e2e \
  -o "$TMP/bundles/c-{}.skillmeat-pack" >/dev/null 2>&1
check "$TOTAL bundles created" test "$(find "$TMP/bundles" -name 'c-*.skillmeat-pack' | wc -l)" -eq "$TOTAL"

for ((w = 0; w < WORKERS; w++)); do setup_home "$TMP/home-$w"; done
setup_home "$TMP/home-shared"
setup_home "$SKILLMEAT_HOME"

# --- round 1: one cache per worker ---

run_round separate "$TMP/home-W" 1
ROUND1=$((WORKERS * PER_WORKER))
EXPECTED1=$(seq 1 "$ROUND1" | sed 's/^/c-/; s/$/-v1.0/' | tr '\n' ' ')
same_ids "separate: all $ROUND1 listed" "$EXPECTED1" "$(ls_ids)"
same_ids "separate: index.json lists all $ROUND1" "$EXPECTED1" "$(index_ids_in "$REPO")"
# The checks below count the pushes that reported success, so that one
# lost push fails only the checks above and not every count after them.
PUSHED=$(cat "$TMP"/separate-worker-*.log | grep -c '^pushed ')
check "separate: two files per pushed bundle" test "$(tree_of "$REPO" | wc -l)" -eq $((2 * PUSHED + 1))
check "separate: one commit per push" test "$(git -C "$REPO" rev-list --count main)" -eq "$PUSHED"

# --- round 2: one shared cache ---

run_round shared "$TMP/home-shared" $((ROUND1 + 1))
EXPECTED=$(seq 1 "$TOTAL" | sed 's/^/c-/; s/$/-v1.0/' | tr '\n' ' ')
same_ids "shared: all $TOTAL listed" "$EXPECTED" "$(ls_ids)"
same_ids "shared: index.json lists all $TOTAL" "$EXPECTED" "$(index_ids_in "$REPO")"
PUSHED=$(cat "$TMP"/*-worker-*.log | grep -c '^pushed ')
check "shared: one commit per push" test "$(git -C "$REPO" rev-list --count main)" -eq "$PUSHED"

# --- every bundle pulls back ---

mkdir -p "$TMP/pulled"
bad=0
for i in $(cat "$TMP"/*-worker-*.log | sed -n 's/^pushed c-\([0-9]*\)-v1.0 .*/\1/p'); do
  if ! "$SM" vault pull "c-$i-v1.0" --output "$TMP/pulled" >"$OUT" 2>"$ERR" ||
    ! cmp -s "$TMP/bundles/c-$i.skillmeat-pack" "$TMP/pulled/c-$i-v1.0.skillmeat-pack"; then
    bad=$((bad + 1))
    [ "$bad" -le 3 ] && sed "s/^/     c-$i: /" "$ERR"
  fi
done
check "all $PUSHED pushed bundles pull back byte-identical" test "$bad" -eq 0

# --- the branch only moved forward ---

linear_history "history has no merge commits" "$REPO"
LOG="$REPO/logs/refs/heads/main"
check "the reflog has one update per push" test "$(wc -l <"$LOG")" -eq "$PUSHED"
not_ff=0
while read -r old new _; do
  case $old in 0000000000000000000000000000000000000000) continue ;; esac
  git -C "$REPO" merge-base --is-ancestor "$old" "$new" || not_ff=$((not_ff + 1))
done <"$LOG"
check "every update was a fast-forward" test "$not_ff" -eq 0

# --- one id, different bytes, four writers at once ---

for ((w = 0; w < WORKERS; w++)); do
  "$SM" bundle create --quiet "$SKILL" --name contested --version 1.0 \
    --description "contested build $w" --author e2e -o "$TMP/bundles/contested-$w.skillmeat-pack" >/dev/null
done
rm -f "$TMP/start"
pids=()
for ((w = 0; w < WORKERS; w++)); do
  (
    while [ ! -e "$TMP/start" ]; do sleep 0.005; done
    SKILLMEAT_HOME="$TMP/home-$w" "$SM" vault push "$TMP/bundles/contested-$w.skillmeat-pack" \
      >"$TMP/contested-$w.out" 2>"$TMP/contested-$w.err"
    echo $? >"$TMP/contested-$w.code"
  ) &
  pids+=($!)
done
sleep 0.2
touch "$TMP/start"
wait "${pids[@]}"
winners=0
losers=0
winner=-1
for ((w = 0; w < WORKERS; w++)); do
  case $(cat "$TMP/contested-$w.code") in
  0) winners=$((winners + 1)) winner=$w ;;
  4) losers=$((losers + 1))
     check "contested: loser $w gives one error line naming the id" \
       test "$(grep -c 'error:.*contested-v1.0' "$TMP/contested-$w.err")" -eq 1 ;;
  *) sed "s/^/     worker $w: /" "$TMP/contested-$w.err" ;;
  esac
done
check "contested: exactly one push wins" test "$winners" -eq 1
check "contested: the others exit 4" test "$losers" -eq $((WORKERS - 1))
if [ "$winner" -ge 0 ]; then
  check "contested: the repository holds the winner's bytes" \
    cmp -s "$TMP/bundles/contested-$winner.skillmeat-pack" \
    <(git -C "$REPO" cat-file blob main:bundles/contested-v1.0.skillmeat-pack)
fi
check "contested: one more commit" test "$(git -C "$REPO" rev-list --count main)" -eq $((PUSHED + 1))
linear_history "contested: history has no merge commits" "$REPO"

finish
