# SIGKILL at any moment of a push or a pull leaves the local vault and the
# output directory consistent: every listed bundle pulls and verifies, no
# file under a final name is partial, and a later push or pull succeeds.
# Temporary files (.<name>.tmp-XXXXXX) may remain after a kill; they must
# be hidden and never listed. The script prints where each kill landed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SKILL="$SRC/examples/skills/brand-guidelines"
VAULT="$TMP/vault"
DATA_MIB=${SKILLMEAT_KILL_TEST_MIB:-128}
# kills spread over the whole operation, then more around its end, where
# the short commit step is
PUSH_KILLS=16
PUSH_KILLS_NEAR_END=8
PULL_KILLS=14
PULL_KILLS_NEAR_END=6
started=$SECONDS

sm vault add team local "$VAULT" --set-default
expect "vault add" 0

# Two large bundles with the same name and different contents, so that a
# --force push of one over the other really replaces the stored data.
mkdir -p "$TMP/big-skill"
cp -r "$SKILL/." "$TMP/big-skill/"
head -c "${DATA_MIB}M" /dev/urandom >"$TMP/big-skill/data.bin"
for variant in a b; do
  sm bundle create "$TMP/big-skill" --name big --version 1 --author e2e \
    --description "kill test bundle $variant" -o "$TMP/big-$variant.skillmeat-pack"
  expect "create large bundle $variant" 0
done
SHA_A=$(sha256sum "$TMP/big-a.skillmeat-pack" | cut -d' ' -f1)
SHA_B=$(sha256sum "$TMP/big-b.skillmeat-pack" | cut -d' ' -f1)
check "large bundles differ" [ "$SHA_A" != "$SHA_B" ]
echo "created two bundles of $(du -m "$TMP/big-a.skillmeat-pack" | cut -f1) MiB in $((SECONDS - started)) s"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# delays N FROM TO TOTAL_MS: N delays in seconds spread evenly from FROM
# to TO times TOTAL_MS.
delays() {
  awk -v n="$1" -v from="$2" -v to="$3" -v total="$4" \
    'BEGIN { for (i = 0; i < n; i++) printf "%.3f\n", (from + (to - from) * i / (n - 1)) * total / 1000 }'
}

# kill_after DELAY CMD...: runs CMD, sends it SIGKILL after DELAY seconds
# and returns its exit status (137 when the kill landed). Call it with
# stderr redirected, which also silences the shell's "Killed" notice.
kill_after() {
  local delay=$1 pid
  shift
  "$@" >/dev/null &
  pid=$!
  sleep "$delay"
  kill -KILL "$pid" 2>/dev/null
  wait "$pid"
}

# timed_ms CMD...: runs CMD and prints its wall time in milliseconds, or
# "failed".
timed_ms() {
  local t0
  t0=$(now_ms)
  "$@" >/dev/null 2>&1 || {
    echo failed
    return
  }
  echo $(($(now_ms) - t0))
}

# fastest A B C: prints the smallest value. Kills are spread over the
# fastest run, so that most land before the operation ends.
fastest() { printf '%s\n' "$@" | sort -n | head -1; }

# content_of FILE: "a" or "b" when FILE is one of the two bundles, else "partial".
declare -A hash_cache=()
content_of() {
  local key sum
  key="$1:$(stat -c '%i:%s:%.9Y:%.9Z' "$1")"
  if [ -z "${hash_cache[$key]:-}" ]; then
    sum=$(sha256sum "$1" | cut -d' ' -f1)
    case $sum in
      "$SHA_A") hash_cache[$key]=a ;;
      "$SHA_B") hash_cache[$key]=b ;;
      *) hash_cache[$key]=partial ;;
    esac
  fi
  echo "${hash_cache[$key]}"
}

count_temps() { find "$1" -maxdepth 1 -name '.*.tmp-*' 2>/dev/null | wc -l; }

# describe_hidden: prints how many hidden files of each kind the vault has.
describe_hidden() {
  hidden_files "$VAULT/bundles" "$VAULT/metadata" "$VAULT" | sed 's|.*/||; s/.*\.tmp-.*/temporary/; s/^\..*\.//' |
    sort | uniq -c | awk '{ printf "%s%d %s", (NR > 1 ? ", " : ""), $1, $2 } END { if (!NR) printf "none" }'
}

# hidden_files DIR...: prints the sorted paths of hidden files in DIRs,
# without the lock file.
hidden_files() {
  find "$@" -maxdepth 1 -type f -name '.*' ! -name .skillmeat-vault.lock 2>/dev/null | LC_ALL=C sort
}

declare -A pulled_state=()
violations="$TMP/violations"
: >"$violations"
violation() { echo "$*" >>"$violations"; }

# check_vault LABEL: checks every invariant of the vault after a kill,
# records each broken one with violation() and writes the listed ids to
# $TMP/listed.
check_vault() {
  local label=$1 id file count state
  : >"$TMP/listed"

  if [ -e "$VAULT/index.json" ] && ! jq -e 'type == "object"' "$VAULT/index.json" >/dev/null 2>&1; then
    violation "$label: index.json does not parse as a JSON object"
  fi
  if ! "$SM" vault ls --json >"$TMP/ls.json" 2>"$TMP/ls.err"; then
    violation "$label: vault ls failed: $(head -1 "$TMP/ls.err")"
    return
  fi
  if ! jq -r '.[].bundle_id' "$TMP/ls.json" >"$TMP/listed" 2>/dev/null; then
    violation "$label: vault ls --json output does not parse"
    return
  fi

  while read -r id; do
    # a bundle whose files did not change since it last pulled is skipped
    state=$(stat -c '%i:%s:%.9Y:%.9Z' "$VAULT/metadata/$id.json" \
      "$VAULT/bundles/$id.skillmeat-pack" 2>/dev/null | tr '\n' ' ')
    [ "${pulled_state[$id]:-}" = "$state" ] && continue
    rm -rf "$TMP/check"
    if ! "$SM" vault pull "$id" --output "$TMP/check" --no-progress >/dev/null 2>"$TMP/pull.err"; then
      violation "$label: listed bundle $id fails to pull: $(head -1 "$TMP/pull.err")"
    elif [ "$(content_of "$TMP/check/$id.skillmeat-pack")" = partial ]; then
      violation "$label: listed bundle $id pulled with unknown contents"
    else
      pulled_state[$id]=$state
    fi
  done <"$TMP/listed"

  # a file under a final name is whole, listed or not
  for file in "$VAULT"/bundles/*.skillmeat-pack; do
    [ -e "$file" ] || continue
    if [ "$(content_of "$file")" = partial ]; then
      violation "$label: $file is partial"
    fi
  done
  for file in "$VAULT"/metadata/*.json; do
    [ -e "$file" ] || continue
    if ! jq -e 'type == "object"' "$file" >/dev/null 2>&1; then
      violation "$label: $file does not parse"
    fi
  done

  # hidden files are never listed, and nothing else is left over
  if grep -q '^\.' "$TMP/listed"; then
    violation "$label: a hidden file is listed"
  fi
  count=$(find "$VAULT/metadata" -maxdepth 1 -name '*.json' ! -name '.*' 2>/dev/null | wc -l)
  if [ "$count" -ne "$(wc -l <"$TMP/listed")" ]; then
    violation "$label: $(wc -l <"$TMP/listed") ids listed but $count metadata files"
  fi
  find "$VAULT/bundles" "$VAULT/metadata" -mindepth 1 ! -name '*.skillmeat-pack' ! -name '*.json' \
    ! -name '.*' >"$TMP/unexpected" 2>/dev/null
  if [ -s "$TMP/unexpected" ]; then
    violation "$label: unexpected files in the vault: $(head -3 "$TMP/unexpected" | tr '\n' ' ')"
  fi
}

# expect_no_violations NAME: passes when no invariant broke since the last call.
expect_no_violations() {
  local lines
  if [ -s "$violations" ]; then
    mapfile -t lines < <(head -20 "$violations" | sed 's/^/  /')
    # the output of the last run is unrelated here
    : >"$OUT"
    : >"$ERR"
    not_ok "$1" "$(wc -l <"$violations") broken invariants:" "${lines[@]}"
  else
    ok "$1"
  fi
  : >"$violations"
}

# stored_content ID: "a", "b", or "none" when ID is not listed.
stored_content() {
  local sha
  sha=$("$SM" vault info "$1" --json 2>/dev/null | jq -r '.metadata.sha256' 2>/dev/null)
  case $sha in
    "$SHA_A") echo a ;;
    "$SHA_B") echo b ;;
    *) echo none ;;
  esac
}

# restore_big_v1 LABEL: an earlier kill of a --force push can leave big-v1
# unlisted. Stores it again, so the next --force push replaces a listed id.
restored=0
restore_big_v1() {
  [ "$(stored_content big-v1)" = none ] || return 0
  restored=$((restored + 1))
  if ! "$SM" vault push "$TMP/big-a.skillmeat-pack" --force --no-progress >/dev/null 2>&1; then
    violation "$1: push to restore big-v1 failed"
  fi
}

# --- pushes killed at spread delays ---------------------------------------

phase_started=$SECONDS

# Three real pushes (a, b over a, a over b) time one push.
# Each starts after a sync, so earlier writes do not slow its fsync.
times=()
for variant in a b a; do
  sync
  times+=("$(timed_ms "$SM" vault push "$TMP/big-$variant.skillmeat-pack" --force --no-progress)")
done
check "timed pushes" [ "${times[*]}" = "${times[*]//failed/}" ]
push_ms=$(fastest "${times[@]}")
echo "one push takes $push_ms ms (${times[*]})"

before=0 mid_copy=0 in_commit=0 committed=0 finished=0
i=0
for delay in $(delays "$PUSH_KILLS" 0 1.1 "$push_ms") $(delays "$PUSH_KILLS_NEAR_END" 0.85 1.15 "$push_ms"); do
  i=$((i + 1))
  if [ $((i % 2)) -eq 1 ]; then
    id="big-v$i.0"
    args=(--version "$i.0")
    source_variant=a
  else
    id=big-v1
    restore_big_v1 "push kill $i"
    # push the other contents, so the kill can interrupt a real replacement
    [ "$(stored_content big-v1)" = a ] && source_variant=b || source_variant=a
    args=(--force)
  fi
  old=$(stored_content "$id")
  hidden_files "$VAULT/bundles" >"$TMP/data-hidden"
  hidden_files "$VAULT/metadata" "$VAULT" >"$TMP/commit-hidden"
  data_inode=$(stat -c %i "$VAULT/bundles/$id.skillmeat-pack" 2>/dev/null || echo none)

  sync
  kill_after "$delay" "$SM" vault push "$TMP/big-$source_variant.skillmeat-pack" "${args[@]}" \
    --no-progress 2>/dev/null
  status=$?

  # new hidden files tell how far the push got: a staged data file, or a
  # record on its way to metadata/ or index.json
  new_data_temps=$(hidden_files "$VAULT/bundles" | LC_ALL=C comm -13 "$TMP/data-hidden" - | wc -l)
  new_commit_temps=$(hidden_files "$VAULT/metadata" "$VAULT" | LC_ALL=C comm -13 "$TMP/commit-hidden" - | wc -l)
  data_replaced=0
  [ "$(stat -c %i "$VAULT/bundles/$id.skillmeat-pack" 2>/dev/null || echo none)" != "$data_inode" ] &&
    data_replaced=1
  new=$(stored_content "$id")
  if [ "$status" -eq 0 ]; then
    finished=$((finished + 1))
    where="finished"
  elif [ "$status" -ne 137 ]; then
    violation "push $i: exit status $status, expected 0 or 137 (SIGKILL)"
    where="failed"
  elif [ "$new" = "$source_variant" ] && [ "$new" != "$old" ]; then
    committed=$((committed + 1))
    where="after commit"
  elif [ "$new_commit_temps" -gt 0 ] || [ "$data_replaced" -eq 1 ] || [ "$new" != "$old" ]; then
    in_commit=$((in_commit + 1))
    where="in commit"
  elif [ "$new_data_temps" -gt 0 ]; then
    mid_copy=$((mid_copy + 1))
    where="mid-copy"
  else
    # an O_TMPFILE staging file vanishes with the process, so a kill during
    # the copy looks the same as one before it
    before=$((before + 1))
    where="before commit, nothing left behind"
  fi
  echo "push kill $i after ${delay} s ($id, ${args[*]}): $where, stored $old -> $new"
  check_vault "push kill $i"

  # keep the vault small: drop the fresh id once checked
  if [ $((i % 2)) -eq 1 ] && [ "$new" != none ]; then
    "$SM" vault delete "$id" >/dev/null 2>&1 || violation "push kill $i: delete of $id failed"
  fi
done
echo "push kills: $before before commit leaving nothing, $mid_copy mid-copy leaving a" \
  "temporary file, $in_commit in commit, $committed after commit, $finished finished first"
expect_no_violations "killed pushes leave a consistent vault"
check "some push kills land before the commit" [ $((before + mid_copy)) -ge 1 ]

# The commit step takes a few milliseconds, so spread delays rarely hit
# it. These kills wait for a commit event instead: the data file being
# renamed into place (rounds 1 and 2), or the first hidden file appearing
# in metadata/, the new record on its way (rounds 3 and 4). Rounds 2 and
# 4 replace a stored bundle with --force. Each round uses a vault of its
# own, so leftovers of one round cannot trigger the next.
commit_kills=0
kept_listed=0
for round in 1 2 3 4; do
  VAULT="$TMP/commit-vault-$round"
  "$SM" vault add "commit$round" local "$VAULT" --set-default >/dev/null
  id=big-v1
  data="$VAULT/bundles/$id.skillmeat-pack"
  if [ $((round % 2)) -eq 0 ]; then
    "$SM" vault push "$TMP/big-a.skillmeat-pack" --no-progress >/dev/null 2>&1 ||
      violation "commit kill $round: push of the stored version failed"
    ln "$data" "$TMP/old-data-$round"
    args=(--force)
    source_variant=b
  else
    args=()
    source_variant=a
  fi
  old=$(stored_content "$id")

  sync
  "$SM" vault push "$TMP/big-$source_variant.skillmeat-pack" "${args[@]}" --no-progress \
    >/dev/null 2>&1 &
  pid=$!
  # busy loops of shell builtins react within microseconds
  case $round in
    1) while kill -0 "$pid" 2>/dev/null && [ ! -e "$data" ]; do :; done ;;
    2) while kill -0 "$pid" 2>/dev/null && [ "$data" -ef "$TMP/old-data-$round" ]; do :; done ;;
    *) while kill -0 "$pid" 2>/dev/null && ! compgen -G "$VAULT/metadata/.[!.]*" >/dev/null; do :; done ;;
  esac
  kill -KILL "$pid" 2>/dev/null
  { wait "$pid"; } 2>/dev/null
  status=$?

  [ "$status" -eq 137 ] && commit_kills=$((commit_kills + 1))
  new=$(stored_content "$id")
  hidden=$(find "$VAULT" -name '.*' ! -name .skillmeat-vault.lock -printf '%P ')
  echo "commit kill $round (${args[*]:-new id}): status $status, stored $old -> $new," \
    "data file $([ -e "$data" ] && content_of "$data" || echo absent), hidden files: ${hidden:-none}"
  check_vault "commit kill $round"
  if [ "$old" != none ] && [ "$new" != none ]; then
    kept_listed=$((kept_listed + 1))
  fi

  # the same push again completes the job
  if ! "$SM" vault push "$TMP/big-$source_variant.skillmeat-pack" "${args[@]}" --no-progress \
    >/dev/null 2>"$TMP/push.err"; then
    violation "commit kill $round: later push failed: $(head -1 "$TMP/push.err")"
  elif [ "$(stored_content "$id")" != "$source_variant" ]; then
    violation "commit kill $round: later push did not store its contents"
  fi
  check_vault "push after commit kill $round"
done
"$SM" vault set-default team >/dev/null
VAULT="$TMP/vault"
expect_no_violations "kills in the commit step leave a consistent vault"
check "kills land inside the commit step" [ "$commit_kills" -ge 1 ]
# the local connector keeps the old record until the new one replaces it
check "killed --force push keeps the id listed" [ "$kept_listed" -eq 2 ]

# data renamed into place whose metadata never got written: a new push of
# that id must succeed and list it
orphans=0
recovered=0
for file in "$VAULT"/bundles/*.skillmeat-pack; do
  [ -e "$file" ] || continue
  id=$(basename "$file" .skillmeat-pack)
  [ -e "$VAULT/metadata/$id.json" ] && continue
  orphans=$((orphans + 1))
  version=${id#big-v}
  if "$SM" vault push "$TMP/big-a.skillmeat-pack" --version "$version" --force --no-progress \
    >/dev/null 2>&1 && [ "$(stored_content "$id")" = a ]; then
    recovered=$((recovered + 1))
  fi
done
echo "unlisted data files after the push kills: $orphans;" \
  "big-v1 unlisted by a killed --force push and pushed again: $restored times"
check "push over unlisted data succeeds" [ "$recovered" -eq "$orphans" ]

# a real replacement after the kills, then a back as the pull phase expects
[ "$(stored_content big-v1)" = a ] && variant=b || variant=a
sm vault push "$TMP/big-$variant.skillmeat-pack" --force --no-progress
expect "push after the kills" 0
check "push after the kills stores it" [ "$(stored_content big-v1)" = "$variant" ]
sm vault push "$TMP/big-a.skillmeat-pack" --force --no-progress
expect "push a after the kills" 0
check "push a after the kills stores it" [ "$(stored_content big-v1)" = a ]
echo "hidden files left in the vault by killed pushes: $(describe_hidden)"

# --- pulls killed at spread delays ----------------------------------------

echo "push phase took $((SECONDS - phase_started)) s"
phase_started=$SECONDS

OUTDIR="$TMP/pulled"
target="$OUTDIR/big-v1.skillmeat-pack"

# prepare_pull MODE: empties the output directory; with "force" it puts a
# different complete file (b) under the output name.
prepare_pull() {
  rm -rf "$OUTDIR"
  mkdir -p "$OUTDIR"
  [ "$1" = force ] && cp "$TMP/big-b.skillmeat-pack" "$target"
  sync
}

# a pull over an existing file also hashes that file, so time both modes
for mode in new force; do
  times=()
  [ "$mode" = force ] && args=(--force) || args=()
  for round in 1 2 3; do
    prepare_pull "$mode"
    times+=("$(timed_ms "$SM" vault pull big-v1 --output "$OUTDIR" "${args[@]}" --no-progress)")
  done
  check "timed pulls ($mode)" [ "${times[*]}" = "${times[*]//failed/}" ]
  declare "pull_ms_$mode=$(fastest "${times[@]}")"
  echo "one pull ($mode) takes $(fastest "${times[@]}") ms (${times[*]})"
done

pull_before=0 pull_mid=0 pull_after=0 pull_finished=0 pull_temps=0
i=0
# fractions of the pull time: the same spread as for pushes
for fraction in $(delays "$PULL_KILLS" 0 1.1 1000) $(delays "$PULL_KILLS_NEAR_END" 0.85 1.15 1000); do
  i=$((i + 1))
  if [ $((i % 2)) -eq 0 ]; then
    # replace a different complete file: the old or the new one must remain
    mode=force
    args=(--force)
    allowed="a b"
  else
    mode=new
    args=()
    allowed="a"
  fi
  total_ms=pull_ms_$mode
  delay=$(awk -v f="$fraction" -v t="${!total_ms}" 'BEGIN { printf "%.3f", f * t / 1000 }')
  prepare_pull "$mode"
  kill_after "$delay" "$SM" vault pull big-v1 --output "$OUTDIR" "${args[@]}" --no-progress 2>/dev/null
  status=$?

  temps=$(count_temps "$OUTDIR")
  pull_temps=$((pull_temps + temps))
  others=$(find "$OUTDIR" -mindepth 1 ! -name '.big-v1.skillmeat-pack.tmp-*' \
    ! -name big-v1.skillmeat-pack | wc -l)
  [ "$others" -eq 0 ] || violation "pull kill $i: $others unexpected files in the output directory"
  if [ -e "$target" ]; then
    content=$(content_of "$target")
  else
    content=absent
  fi
  case " $allowed absent " in
    *" $content "*) ;;
    *) violation "pull kill $i: $target is $content" ;;
  esac
  [ "$content" = absent ] && [ "${#args[@]}" -gt 0 ] &&
    violation "pull kill $i: --force pull removed the existing file"

  if [ "$status" -eq 0 ]; then
    pull_finished=$((pull_finished + 1))
    where="finished"
  elif [ "$status" -ne 137 ]; then
    violation "pull kill $i: exit status $status, expected 0 or 137 (SIGKILL)"
    where="failed"
  elif [ "$content" = a ]; then
    pull_after=$((pull_after + 1))
    where="after commit"
  elif [ "$temps" -gt 0 ]; then
    pull_mid=$((pull_mid + 1))
    where="mid-copy or verify"
  else
    # an O_TMPFILE staging file vanishes with the process, so a kill during
    # the copy looks the same as one before it
    pull_before=$((pull_before + 1))
    where="before commit, nothing left behind"
  fi
  echo "pull kill $i after ${delay} s (${args[*]:-no --force}): $where, output $content"

  # a later pull of the same bundle succeeds and leaves the whole file
  if ! "$SM" vault pull big-v1 --output "$OUTDIR" "${args[@]}" --no-progress >/dev/null 2>"$TMP/pull.err"; then
    violation "pull kill $i: later pull failed: $(head -1 "$TMP/pull.err")"
  elif [ "$(content_of "$target")" != a ]; then
    violation "pull kill $i: later pull left $(content_of "$target") contents"
  fi
done
echo "pull kills: $pull_before before commit leaving nothing, $pull_mid mid-copy leaving a" \
  "temporary file, $pull_after after commit, $pull_finished finished first;" \
  "temporary files left in the output directory: $pull_temps"
expect_no_violations "killed pulls leave no partial output"
check "some pull kills land before the commit" [ $((pull_before + pull_mid)) -ge 1 ]

# --- one of two concurrent pushers killed ---------------------------------

echo "pull phase took $((SECONDS - phase_started)) s"
phase_started=$SECONDS

survivor_failures=0
survivor_missing=0
for round in 1 2 3 4 5 6; do
  delay=$(awk -v r="$round" -v total="$push_ms" 'BEGIN { printf "%.3f", ((r - 1) % 3 + 1) * total * 0.5 / 1000 }')
  if [ "$round" -le 3 ]; then
    # two fresh ids: the survivor's bundle must be listed afterwards
    killed_args=(--version "10$round.0")
    survivor_args=(--version "20$round.0")
    survivor_id="big-v20$round.0"
    killed_variant=a
  else
    # both replace the same id: it ends up absent, a or b, and whole
    killed_args=(--force)
    survivor_args=(--force)
    survivor_id=
    [ $((round % 2)) -eq 0 ] && killed_variant=a || killed_variant=b
  fi
  [ "$killed_variant" = a ] && survivor_variant=b || survivor_variant=a

  sync
  "$SM" vault push "$TMP/big-$survivor_variant.skillmeat-pack" "${survivor_args[@]}" --no-progress \
    >/dev/null 2>"$TMP/survivor.err" &
  survivor_pid=$!
  kill_after "$delay" "$SM" vault push "$TMP/big-$killed_variant.skillmeat-pack" "${killed_args[@]}" \
    --no-progress 2>/dev/null
  killed_status=$?
  wait "$survivor_pid"
  survivor_status=$?

  if [ "$survivor_status" -ne 0 ]; then
    survivor_failures=$((survivor_failures + 1))
    violation "pair $round: surviving push exited $survivor_status: $(head -1 "$TMP/survivor.err")"
  fi
  if [ -n "$survivor_id" ] && [ "$(stored_content "$survivor_id")" != "$survivor_variant" ]; then
    survivor_missing=$((survivor_missing + 1))
    violation "pair $round: $survivor_id is not stored with the surviving push's contents"
  fi
  echo "pair $round: killed after ${delay} s (status $killed_status), survivor status $survivor_status," \
    "big-v1 stored $(stored_content big-v1)"
  check_vault "pair $round"
done
echo "two-pusher phase took $((SECONDS - phase_started)) s"
expect_no_violations "a kill beside a second pusher leaves a consistent vault"
check "surviving pushes exit 0" [ "$survivor_failures" -eq 0 ]
check "surviving pushes are listed" [ "$survivor_missing" -eq 0 ]

echo "hidden files left in the vault at the end: $(describe_hidden)"
echo "total $((SECONDS - started)) s"
finish
