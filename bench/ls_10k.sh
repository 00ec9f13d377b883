#!/usr/bin/env bash
# vault ls on a local vault with 10,000 bundles. One real bundle is
# pushed. The other 9,999 are copies of its metadata file under new ids
# with the data file hard-linked, and index.json is written last, so that
# ls finds a fresh index. Then the rebuild path is timed with index.json
# removed.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

COUNT=${COUNT:-10000}
VAULT="$BENCH_DIR/vault-ls"

new_vault vault-ls
"$SM" bundle create "$SKILL" --name bench-ls --version 1 --description "benchmark bundle for ls" \
  --author bench --tag bench -o "$BENCH_DIR/bench-ls.skillmeat-pack" >/dev/null
"$SM" vault push "$BENCH_DIR/bench-ls.skillmeat-pack" --no-progress >/dev/null

python3 - "$VAULT" "$COUNT" <<'EOF'
import json
import os
import sys

vault, count = sys.argv[1], int(sys.argv[2])
source_id = "bench-ls-v1"
with open(os.path.join(vault, "metadata", source_id + ".json")) as f:
    template = json.load(f)
source_data = os.path.join(vault, "bundles", source_id + ".skillmeat-pack")

index = {source_id: template}
for n in range(1, count):
    version = "1.%d" % n
    bundle_id = "bench-ls-v" + version
    data = os.path.join(vault, "bundles", bundle_id + ".skillmeat-pack")
    record = dict(template, bundle_id=bundle_id, version=version, vault_path=data)
    os.link(source_data, data)
    with open(os.path.join(vault, "metadata", bundle_id + ".json"), "w") as f:
        json.dump(record, f, indent=2)
    index[bundle_id] = record

# written after every metadata file, so it is not older than metadata/
tmp = os.path.join(vault, ".index.json.tmp-bench")
with open(tmp, "w") as f:
    json.dump(index, f, indent=2, sort_keys=True)
os.rename(tmp, os.path.join(vault, "index.json"))
EOF

listed=$("$SM" vault ls --json 2>"$BENCH_DIR/ls.err" | jq length)
if [ "$listed" -ne "$COUNT" ]; then
  echo "error: vault ls lists $listed bundles, expected $COUNT" >&2
  exit 1
fi
if [ -s "$BENCH_DIR/ls.err" ]; then
  echo "error: vault ls did not use the generated index.json:" >&2
  cat "$BENCH_DIR/ls.err" >&2
  exit 1
fi
echo "vault: $VAULT with $listed bundles, index.json $(du -k "$VAULT/index.json" | cut -f1) KiB"

hyperfine -N --warmup 2 --runs 10 --export-json "$BENCH_DIR/ls.json" "$SM vault ls"
hyperfine -N --warmup 2 --runs 10 --export-json "$BENCH_DIR/ls-json.json" "$SM vault ls --json"
hyperfine -N --warmup 1 --runs 5 --prepare "rm -f $VAULT/index.json" \
  --export-json "$BENCH_DIR/ls-rebuild.json" "$SM vault ls"

/usr/bin/time -f '%M' -o "$BENCH_DIR/ls-rss.txt" "$SM" vault ls --json >/dev/null
ls_kib=$(tail -1 "$BENCH_DIR/ls-rss.txt")

result "ls_10k: vault ls median $(hyperfine_median "$BENCH_DIR/ls.json") ms," \
  "vault ls --json median $(hyperfine_median "$BENCH_DIR/ls-json.json") ms ($COUNT bundles, fresh index.json)"
result "ls_10k: vault ls without index.json (rebuild from $COUNT metadata files and write it back)" \
  "median $(hyperfine_median "$BENCH_DIR/ls-rebuild.json") ms"
result "ls_10k: peak RSS of vault ls --json $(awk -v k="$ls_kib" 'BEGIN { printf "%.1f", k / 1024 }') MiB"
