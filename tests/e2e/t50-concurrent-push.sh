# Concurrent pushes into one local vault: 8 processes start together and
# each pushes 25 distinct bundles. Writers serialise on the vault lock, so
# no index entry, metadata file or data file may be lost, and every bundle
# must pull back byte-identical.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORKERS=8
PER_WORKER=25
TOTAL=$((WORKERS * PER_WORKER))
SKILL="$SRC/examples/skills/brand-guidelines"
VAULT="$TMP/vault"
started=$SECONDS

sm vault add team local "$VAULT" --set-default
expect "vault add" 0

# bundles b-1 .. b-200, each with its own name and so its own hashes
mkdir -p "$TMP/bundles"
seq 1 "$TOTAL" | xargs -P "$(nproc)" -I{} "$SM" bundle create --quiet "$SKILL" --name b-{} \
  --version 1.0.0 --description "concurrency bundle {}" --author e2e \
  -o "$TMP/bundles/b-{}.skillmeat-pack" >"$OUT" 2>"$ERR"
CODE=$?
expect "create $TOTAL bundles" 0
created=$(find "$TMP/bundles" -name 'b-*.skillmeat-pack' | wc -l)
check "bundle files exist" [ "$created" -eq "$TOTAL" ]
seq 1 "$TOTAL" | sed 's/^/b-/; s/$/-v1.0.0/' | LC_ALL=C sort >"$TMP/expected-ids"
echo "created $created bundles in $((SECONDS - started)) s"

# push_worker W: waits for the start file, then pushes its 25 bundles one
# after another. Returns the number of failed pushes.
push_worker() {
  local w=$1 failures=0 i
  while [ ! -e "$TMP/start" ]; do sleep 0.005; done
  for ((i = w * PER_WORKER + 1; i <= (w + 1) * PER_WORKER; i++)); do
    if ! "$SM" vault push "$TMP/bundles/b-$i.skillmeat-pack" --no-progress \
      >>"$TMP/worker-$w.log" 2>&1; then
      failures=$((failures + 1))
      echo "push of b-$i failed" >>"$TMP/worker-$w.log"
    fi
  done
  return "$failures"
}

pids=()
for ((w = 0; w < WORKERS; w++)); do
  push_worker "$w" &
  pids+=($!)
done
sleep 0.2
push_started=$SECONDS
touch "$TMP/start"
worker_failures=0
for ((w = 0; w < WORKERS; w++)); do
  wait "${pids[$w]}"
  code=$?
  if [ "$code" -ne 0 ]; then
    worker_failures=$((worker_failures + 1))
    grep -v '^pushed ' "$TMP/worker-$w.log" | head -5 | sed "s/^/     worker $w: /"
  fi
done
echo "pushed with $WORKERS workers in $((SECONDS - push_started)) s"
check "all $WORKERS workers exit 0" [ "$worker_failures" -eq 0 ]
pushed=$(cat "$TMP"/worker-*.log | grep -c '^pushed ')
check "$TOTAL pushes report success" [ "$pushed" -eq "$TOTAL" ]
# the lock keeps index.json current, so no push may find it stale
cat "$TMP"/worker-*.log | grep 'warning:' >"$TMP/warnings"
if [ -s "$TMP/warnings" ]; then
  not_ok "pushes print no warnings" "$(wc -l <"$TMP/warnings") warnings, the first:" \
    "$(head -1 "$TMP/warnings")"
else
  ok "pushes print no warnings"
fi

# index.json as the pushes left it, before any reader could rebuild it
run jq -r 'keys[]' "$VAULT/index.json"
expect "index.json parses" 0
check "index.json has $TOTAL entries" [ "$(wc -l <"$OUT")" -eq "$TOTAL" ]
LC_ALL=C sort "$OUT" >"$TMP/index-ids"
check "index.json ids match pushed ids" cmp -s "$TMP/index-ids" "$TMP/expected-ids"

missing_metadata=0
missing_data=0
wrong_sha=0
while read -r id; do
  meta="$VAULT/metadata/$id.json"
  data="$VAULT/bundles/$id.skillmeat-pack"
  if [ ! -f "$meta" ]; then
    missing_metadata=$((missing_metadata + 1))
    continue
  fi
  if [ ! -f "$data" ]; then
    missing_data=$((missing_data + 1))
    continue
  fi
  recorded=$(jq -r '.metadata.sha256' "$meta")
  actual=$(sha256sum "$data" | cut -d' ' -f1)
  [ "$recorded" = "$actual" ] || wrong_sha=$((wrong_sha + 1))
done <"$TMP/expected-ids"
check "every metadata file exists" [ "$missing_metadata" -eq 0 ]
check "every data file exists" [ "$missing_data" -eq 0 ]
check "data matches recorded sha256" [ "$wrong_sha" -eq 0 ]
metadata_files=$(find "$VAULT/metadata" -name '*.json' ! -name '.*' | wc -l)
check "metadata/ has $TOTAL files" [ "$metadata_files" -eq "$TOTAL" ]
temp_files=$(find "$VAULT" -name '.*.tmp-*' | wc -l)
check "no temporary files remain" [ "$temp_files" -eq 0 ]

sm vault ls --json
expect "vault ls --json" 0
jq -r '.[].bundle_id' "$OUT" | LC_ALL=C sort >"$TMP/listed-ids"
check "vault ls lists $TOTAL ids" [ "$(wc -l <"$TMP/listed-ids")" -eq "$TOTAL" ]
check "listed ids match pushed ids" cmp -s "$TMP/listed-ids" "$TMP/expected-ids"

# pull everything back, several readers at a time
mkdir -p "$TMP/pulled"
xargs -P "$(nproc)" -I{} "$SM" vault pull --quiet {} --output "$TMP/pulled" --no-progress \
  <"$TMP/expected-ids" >"$OUT" 2>"$ERR"
CODE=$?
expect "pull all $TOTAL bundles" 0
pulled=$(find "$TMP/pulled" -name '*.skillmeat-pack' ! -name '.*' | wc -l)
check "$TOTAL pulled files" [ "$pulled" -eq "$TOTAL" ]
mismatched=0
for ((i = 1; i <= TOTAL; i++)); do
  cmp -s "$TMP/bundles/b-$i.skillmeat-pack" "$TMP/pulled/b-$i-v1.0.0.skillmeat-pack" ||
    mismatched=$((mismatched + 1))
done
check "pulled files equal pushed files" [ "$mismatched" -eq 0 ]

echo "total $((SECONDS - started)) s"
finish
