#!/usr/bin/env bash
# End-to-end tests of the git vault's repository layout, over SSH. A
# repository laid out by hand with plain git the way the original Python
# tool lays it out (bundles/<id>.skillmeat-pack, metadata/<id>.json,
# index.json on the branch) lists, pulls and takes pushes; a repository we
# wrote has exactly that layout and nothing else. Last, the cost of a
# command must not grow with the vault: after `ls` the cache contains
# no bundle blob, and `pull` fetches only the one bundle it needs.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$SRC/tests/servers/servers.sh"
. "$SRC/tests/tools/git_e2e.sh"

FIXTURE="$SRC/tests/fixtures/original/demo-bundle.skillmeat-pack"
start_sshd || { not_ok "sshd starts"; finish; }
SSH_BASE="ssh://$SSH_USER@127.0.0.1:$SSHD_PORT"

# new_repo NAME: a bare repository $TMP/git/NAME.git on branch main that
# serves partial clones, like the one start_sshd makes.
new_repo() {
  local repo="$TMP/git/$1.git"
  git init -q --bare -b main "$repo"
  git -C "$repo" config uploadpack.allowFilter true
  git -C "$repo" config uploadpack.allowAnySHA1InWant true
  echo "$repo"
}

# add_vault NAME REPO [ADD OPTIONS...]: a git vault over SSH on bare repository REPO.
add_vault() {
  local name=$1 repo=$2
  shift 2
  "$SM" vault add "$name" git "$SSH_BASE$repo" "$@" >/dev/null
  vault_set "$name" known_hosts "$(toml_str "$SSH_KNOWN_HOSTS")"
  "$SM" vault auth "$name" --ssh-key "$SSH_KEY" >/dev/null
}

# commit_tree REPO DIR MESSAGE: commits the files of DIR with plain git as
# the only commit on main of REPO, the way the original tool's clone-commit-push did.
commit_tree() {
  local work="$TMP/work-$(basename "$1")"
  git clone -q "$1" "$work" 2>/dev/null
  cp -r "$2"/. "$work"/
  git -C "$work" add -A
  git -C "$work" -c user.name="Original Tool" -c user.email=original@e2e.invalid commit -q -m "$3"
  git -C "$work" push -q origin HEAD:main
  rm -rf "$work"
}

# --- a repository laid out by the original's rules ---

ORIG=$(new_repo original)
mkdir -p "$TMP/layout/bundles" "$TMP/layout/metadata"
cp "$FIXTURE" "$TMP/layout/bundles/demo-bundle-v1.0.skillmeat-pack"
python3 - "$SRC/tests/fixtures/original/manifest.json" "$FIXTURE" "$TMP/layout" <<'EOF'
import json, os, sys
manifest = json.load(open(sys.argv[1]))
size = os.path.getsize(sys.argv[2])
record = {
    "bundle_id": "demo-bundle-v1.0",
    "name": manifest["name"],
    "version": manifest["version"],
    "description": manifest["description"],
    "author": manifest["author"],
    "created_at": manifest["created_at"],
    "uploaded_at": "2026-12-04T19:21:40.550724",
    "size_bytes": size,
    "bundle_hash": manifest["bundle_hash"],
    "tags": manifest["tags"],
    "vault_path": "bundles/demo-bundle-v1.0.skillmeat-pack",
    "metadata": {},
}
with open(os.path.join(sys.argv[3], "metadata", "demo-bundle-v1.0.json"), "w") as f:
    json.dump(record, f, indent=2)
with open(os.path.join(sys.argv[3], "index.json"), "w") as f:
    json.dump({"demo-bundle-v1.0": record}, f, indent=2, sort_keys=True)
EOF
commit_tree "$ORIG" "$TMP/layout" "Add bundle demo-bundle-v1.0"
ORIG_TREE=$(tree_of "$ORIG" | tr '\n' ' ')
check "hand-made repository has the original layout" test "$ORIG_TREE" = \
  "bundles/demo-bundle-v1.0.skillmeat-pack index.json metadata/demo-bundle-v1.0.json "
ls_tree_before=$(git -C "$ORIG" ls-tree -r main)

add_vault orig-ro "$ORIG" --read-only
add_vault orig "$ORIG"
before=$(refs "$ORIG")

sm vault ls --vault orig-ro --json
expect "ls of the original's repository exits 0" 0
cp "$OUT" "$TMP/ls.json"
check "it lists one bundle" json_check "$TMP/ls.json" 'len(d) == 1'
check "the record is read unchanged" python3 -c \
  'import json, sys; sys.exit(json.load(open(sys.argv[1]))[0] != json.load(open(sys.argv[2])))' \
  "$TMP/ls.json" "$TMP/layout/metadata/demo-bundle-v1.0.json" 2>/dev/null
sm vault ls --vault orig-ro --tag fixture
expect_out "ls --tag finds it" "demo-bundle-v1.0"

sm vault info demo-bundle-v1.0 --vault orig-ro
expect "info of the original's bundle exits 0" 0
expect_out "info shows the author" "fixture@example.com"

sm vault pull demo-bundle-v1.0 --vault orig-ro --output "$TMP/pulled"
expect "pull from the original's repository exits 0" 0
expect_out "pull verifies" "(verified)"
check "pull gives the fixture's bytes" cmp -s "$FIXTURE" "$TMP/pulled/demo-bundle-v1.0.skillmeat-pack"
sm bundle verify "$TMP/pulled/demo-bundle-v1.0.skillmeat-pack"
expect "the pulled bundle verifies" 0
same_refs "reading leaves the repository" "$ORIG" "$before"

# pushing keeps every entry of the original
make_bundle interop-kit 3.1.4 "$TMP/kit.skillmeat-pack" interop e2e
old=$(tip "$ORIG")
sm vault push "$TMP/kit.skillmeat-pack" --vault orig
expect "push into the original's repository exits 0" 0
ancestor "push keeps the original commit" "$ORIG" "$old"
check "the original's files keep their blobs" test -z "$(comm -23 \
  <(grep -v 'index.json' <<<"$ls_tree_before" | LC_ALL=C sort) \
  <(git -C "$ORIG" ls-tree -r main | LC_ALL=C sort))"
check "index.json keeps the original entry" python3 -c '
import json, sys
sys.exit(json.loads(sys.argv[1])["demo-bundle-v1.0"] != json.load(open(sys.argv[2]))["demo-bundle-v1.0"])
' "$(git -C "$ORIG" show main:index.json)" "$TMP/layout/index.json" 2>/dev/null
check "index.json gains our entry" test "$(index_ids_in "$ORIG")" = "demo-bundle-v1.0 interop-kit-v3.1.4"
sm vault push "$FIXTURE" --vault orig
expect "re-push of the original's own bundle exits 0" 0
expect_out "re-push of the original's bundle says unchanged" "unchanged"
check "both list" test "$(ls_ids --vault orig)" = "demo-bundle-v1.0 interop-kit-v3.1.4"

# --- a repository we wrote ---

OURS=$(new_repo ours)
add_vault ours "$OURS"
make_bundle beta 2.0 "$TMP/beta.skillmeat-pack" docs
sm vault push "$TMP/kit.skillmeat-pack" --vault ours
expect "push kit into a new repository exits 0" 0
sm vault push "$TMP/beta.skillmeat-pack" --vault ours
expect "push beta into a new repository exits 0" 0
sm vault push "$FIXTURE" --vault ours
expect "push the original's bundle into a new repository exits 0" 0
git -C "$OURS" ls-tree -r main >"$TMP/ours-tree"
check "our repository holds exactly the original layout" test \
  "$(awk '{ print $1, $2, $4 }' "$TMP/ours-tree" | tr '\n' ' ')" = \
  "100644 blob bundles/beta-v2.0.skillmeat-pack 100644 blob bundles/demo-bundle-v1.0.skillmeat-pack 100644 blob bundles/interop-kit-v3.1.4.skillmeat-pack 100644 blob index.json 100644 blob metadata/beta-v2.0.json 100644 blob metadata/demo-bundle-v1.0.json 100644 blob metadata/interop-kit-v3.1.4.json "
check "our copy of the original's bundle has its blob" test \
  "$(git -C "$OURS" rev-parse main:bundles/demo-bundle-v1.0.skillmeat-pack)" = "$(git hash-object "$FIXTURE")"
check "only the branch main exists" test "$(git -C "$OURS" for-each-ref --format='%(refname)')" = "refs/heads/main"

# every metadata blob has the original's twelve keys, and index.json maps
# each id to its metadata record
python3 - "$OURS" >"$TMP/record-problems.txt" 2>&1 <<'EOF'
import datetime, json, subprocess, sys
repo = sys.argv[1]
show = lambda path: subprocess.run(["git", "-C", repo, "show", "main:" + path],
                                   capture_output=True, check=True).stdout
index = json.loads(show("index.json"))
fields = {
    "bundle_id": str, "name": str, "version": str, "description": str,
    "author": str, "created_at": str, "uploaded_at": str, "size_bytes": int,
    "bundle_hash": str, "tags": list, "vault_path": str, "metadata": dict,
}
for bundle_id in ("beta-v2.0", "demo-bundle-v1.0", "interop-kit-v3.1.4"):
    record = json.loads(show("metadata/%s.json" % bundle_id))
    if set(record) != set(fields):
        print(bundle_id, "keys", sorted(record))
    for key, kind in fields.items():
        if not isinstance(record.get(key), kind):
            print(bundle_id, "type of", key, type(record.get(key)).__name__)
    for key in ("created_at", "uploaded_at"):
        try:
            datetime.datetime.fromisoformat(record[key])
        except (KeyError, TypeError, ValueError) as e:
            print(bundle_id, key, "does not parse:", e)
    if record.get("size_bytes") != len(show("bundles/%s.skillmeat-pack" % bundle_id)):
        print(bundle_id, "size_bytes", record.get("size_bytes"))
    if index.get(bundle_id) != record:
        print(bundle_id, "index entry differs from the metadata file")
if sorted(index) != ["beta-v2.0", "demo-bundle-v1.0", "interop-kit-v3.1.4"]:
    print("index ids", sorted(index))
EOF
check "our records read like the original's" test ! -s "$TMP/record-problems.txt"
[ -s "$TMP/record-problems.txt" ] && sed 's/^/     /' "$TMP/record-problems.txt"

# the original's way of reading: a plain clone gets every bundle
git clone -q --depth 1 -b main "$OURS" "$TMP/plain-clone" 2>/dev/null
check "a plain clone of our repository has the kit bytes" \
  cmp -s "$TMP/kit.skillmeat-pack" "$TMP/plain-clone/bundles/interop-kit-v3.1.4.skillmeat-pack"

# --- a hostile repository ---

# evil_repo NAME: a copy of the original's repository whose tree the caller
# then edits in $TMP/evil-work with git plumbing; evil_commit publishes it.
evil_repo() {
  EVIL=$(new_repo "$1")
  git clone -q "$ORIG" "$TMP/evil-work" 2>/dev/null
}
evil_commit() {
  git -C "$TMP/evil-work" -c user.name=Evil -c user.email=evil@e2e.invalid commit -q -m evil
  git -C "$TMP/evil-work" push -q "$EVIL" HEAD:main
  rm -rf "$TMP/evil-work"
}
ID=demo-bundle-v1.0
PACK="bundles/$ID.skillmeat-pack"

# a bundle blob much larger than its record: pull stops at the record's size
evil_repo evil-big
head -c $((16 * 1024 * 1024)) /dev/urandom >"$TMP/evil-work/$PACK"
git -C "$TMP/evil-work" add -A
evil_commit
add_vault evil-big "$EVIL" --read-only
mkdir -p "$TMP/evil-out"
sm vault pull "$ID" --vault evil-big --output "$TMP/evil-out"
expect_err "an oversized bundle blob fails the integrity check" 7 "more than the"
check "the oversized pull leaves no file" test -z "$(ls -A "$TMP/evil-out")"
# the blob is in the cache now, so only the output file can hit the limit
run bash -c 'ulimit -f 8192; exec "$@"' _ "$SM" vault pull "$ID" --vault evil-big --output "$TMP/evil-out"
expect "an oversized bundle blob is not written past its size" 7
check "the limited pull leaves no file" test -z "$(ls -A "$TMP/evil-out")"

# a symbolic link in place of the bundle, and one in place of the metadata
evil_repo evil-link
blob=$(printf '/etc/passwd' | git -C "$TMP/evil-work" hash-object -w --stdin)
git -C "$TMP/evil-work" update-index --cacheinfo "120000,$blob,$PACK"
evil_commit
add_vault evil-link "$EVIL" --read-only
sm vault pull "$ID" --vault evil-link --output "$TMP/evil-out"
expect "a symbolic link as the bundle fails the integrity check" 7
check "the link's pull leaves no file" test -z "$(ls -A "$TMP/evil-out")"

evil_repo evil-mlink
blob=$(printf '../../../../etc/passwd' | git -C "$TMP/evil-work" hash-object -w --stdin)
git -C "$TMP/evil-work" update-index --cacheinfo "120000,$blob,metadata/$ID.json"
evil_commit
add_vault evil-mlink "$EVIL" --read-only
sm vault info "$ID" --vault evil-mlink
check "a symbolic link as the metadata is not read as a record" test "$CODE" -ne 0
check "no passwd line reaches the output" test -z "$(grep -a 'root:' "$OUT" "$ERR")"

# a submodule entry and a tree where metadata files go
evil_repo evil-sub
git -C "$TMP/evil-work" update-index --add --cacheinfo \
  "160000,$(git -C "$ORIG" rev-parse main),metadata/gitlink-v1.0.json"
git -C "$TMP/evil-work" update-index --add --cacheinfo \
  "100644,$(git -C "$TMP/evil-work" rev-parse HEAD:index.json),metadata/sub-v1.0.json/x"
evil_commit
add_vault evil-sub "$EVIL" --read-only
sm vault ls --vault evil-sub
expect "ls skips a submodule and a tree among the metadata" 0
check "ls lists only the real bundles" test "$(ls_ids --vault evil-sub)" = "$(ls_ids --vault orig-ro)"
sm vault info gitlink-v1.0 --vault evil-sub
expect "info of a submodule entry says not found" 3

# metadata that names another bundle, and an index.json that is not JSON
evil_repo evil-name
sed 's/"demo-bundle-v1.0"/"other-v9.9"/' "$TMP/evil-work/metadata/$ID.json" >"$TMP/evil.json"
mv "$TMP/evil.json" "$TMP/evil-work/metadata/$ID.json"
head -c 100000 /dev/urandom >"$TMP/evil-work/index.json"
git -C "$TMP/evil-work" add -A
evil_commit
add_vault evil-name "$EVIL" --read-only
sm vault info "$ID" --vault evil-name
expect_err "metadata naming another bundle fails" 7 "names bundle"
sm vault pull "$ID" --vault evil-name --output "$TMP/evil-out"
expect "pull of metadata naming another bundle fails" 7
check "that pull leaves no file" test -z "$(ls -A "$TMP/evil-out")"

# index.json as a submodule entry
evil_repo evil-index
git -C "$TMP/evil-work" rm -q --cached index.json
git -C "$TMP/evil-work" update-index --add --cacheinfo "160000,$(git -C "$ORIG" rev-parse main),index.json"
evil_commit
add_vault evil-index "$EVIL" --read-only
sm vault ls --vault evil-index
expect "ls with a submodule as index.json exits 0" 0
check "it lists the metadata files instead" test "$(ls_ids --vault evil-index)" = "$(ls_ids --vault orig-ro)"

# an index.json of 600 MiB of zeros (a few MiB packed) and a metadata file
# over the 1 MiB limit: their sizes are read first, so neither is unpacked
evil_repo evil-huge
head -c $((600 * 1024 * 1024)) /dev/zero >"$TMP/evil-work/index.json"
{ printf '{"bundle_id": "huge-v1.0", "pad": "'; head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' a; printf '"}'; } \
  >"$TMP/evil-work/metadata/huge-v1.0.json"
git -C "$TMP/evil-work" add -A
evil_commit
add_vault evil-huge "$EVIL" --read-only
sm vault ls --vault evil-huge
expect "ls with a 600 MiB index.json exits 0" 0
check "ls warns that index.json is too large" grep -q "index.json of vault 'evil-huge' is too large" "$ERR"
check "ls skips the oversized metadata file" grep -q "skipping bundle 'huge-v1.0'.*more than 1048576 bytes" "$ERR"
check "ls lists the other bundles" test "$(ls_ids --vault evil-huge)" = "$(ls_ids --vault orig-ro)"
sm vault info huge-v1.0 --vault evil-huge
expect_err "info of an oversized metadata file exits 7" 7 "bytes allowed"

# --- cost independent of vault size ---

COUNT=12
MIB=2
BIG=$(new_repo big)
"$SM" vault add staging local "$TMP/staging" >/dev/null
for ((i = 1; i <= COUNT; i++)); do
  make_big_bundle "big-$i" 1.0 "$MIB" "$TMP/big-$i.skillmeat-pack"
  "$SM" vault push "$TMP/big-$i.skillmeat-pack" --vault staging --quiet
done
rm -f "$TMP/staging/.skillmeat-vault.lock"
commit_tree "$BIG" "$TMP/staging" "Add $COUNT bundles"
check "the large repository holds $COUNT bundles" test "$(tree_of "$BIG" | grep -c '^bundles/')" -eq "$COUNT"
repo_bytes=$(du -sb "$BIG/objects" | cut -f1)

# a SKILLMEAT_HOME of its own, so that the only cache is this vault's
export SKILLMEAT_HOME="$TMP/home-big"
TOML="$SKILLMEAT_HOME/sharing.toml"
CACHE="$SKILLMEAT_HOME/cache"
mkdir -p "$SKILLMEAT_HOME"
add_vault big "$BIG"

sm vault ls --vault big --json
expect "ls of the large vault exits 0" 0
check "ls lists $COUNT bundles" json_check "$OUT" "len(d) == $COUNT"
check "one cache directory" test "$(cache_dirs | wc -l)" -eq 1
CACHE_GIT=$(cache_dirs | head -1)

# cache_bytes: the size of the cache's object store in bytes.
cache_bytes() { if [ -n "$CACHE_GIT" ]; then du -sb "$CACHE_GIT/objects" | cut -f1; else echo 0; fi; }
# missing_blobs: how many bundle blobs of the repository's main the cache
# lacks, as a partial clone that was promised them. rev-list with
# --missing=print lists them without fetching.
missing_blobs() {
  git --git-dir="$CACHE_GIT" rev-list --objects --all --missing=print 2>/dev/null | sed -n 's/^?//p' |
    grep -cxF -f <(git -C "$BIG" ls-tree -r main bundles/ | awk '{ print $3 }')
}

after_ls=$(cache_bytes)
echo "     repository objects $repo_bytes bytes; cache after ls $after_ls bytes"
check "after ls the cache holds no bundle data" test "$after_ls" -lt $((MIB * 1048576 / 2))
check "after ls all $COUNT bundle blobs are missing" test "$(missing_blobs)" -eq "$COUNT"

sm vault info big-5-v1.0 --vault big
expect "info in the large vault exits 0" 0
check "info fetches no bundle" test "$(missing_blobs)" -eq "$COUNT"

sm vault pull big-7-v1.0 --vault big --output "$TMP/big-pulled"
expect "pull from the large vault exits 0" 0
check "pull gives the bytes" cmp -s "$TMP/big-7.skillmeat-pack" "$TMP/big-pulled/big-7-v1.0.skillmeat-pack"
after_pull=$(cache_bytes)
echo "     cache after one pull $after_pull bytes"
check "pull fetched the bundle" test $((after_pull - after_ls)) -ge $((MIB * 1048576))
check "pull fetched no more than that bundle" test $((after_pull - after_ls)) -lt $((MIB * 1048576 * 3 / 2))
check "pull fetched only that blob" test "$(missing_blobs)" -eq $((COUNT - 1))
check "the pulled blob is the one now present" test -z "$(git --git-dir="$CACHE_GIT" rev-list --objects --all \
  --missing=print 2>/dev/null | grep "^?$(git -C "$BIG" rev-parse main:bundles/big-7-v1.0.skillmeat-pack)")"

make_bundle small 1.0 "$TMP/small.skillmeat-pack"
sm vault push "$TMP/small.skillmeat-pack" --vault big
expect "push into the large vault exits 0" 0
check "push fetched no other bundle" test "$(missing_blobs)" -eq $((COUNT - 1))
check "the large vault now lists $((COUNT + 1))" test "$(ls_ids --vault big | wc -w)" -eq $((COUNT + 1))

# a damaged cache is rebuilt
rm -rf "$CACHE_GIT/objects/pack"
sm vault ls --vault big --json
expect "ls with a damaged cache exits 0" 0
check "ls with a damaged cache lists all" json_check "$OUT" "len(d) == $((COUNT + 1))"
sm vault pull big-3-v1.0 --vault big --output "$TMP/big-pulled"
expect "pull with a rebuilt cache exits 0" 0
check "pull with a rebuilt cache gives the bytes" \
  cmp -s "$TMP/big-3.skillmeat-pack" "$TMP/big-pulled/big-3-v1.0.skillmeat-pack"

finish
