# Shared helpers of the git vault end-to-end scripts (tests/e2e/t11*-git-*).
# Source it after lib.sh and, where servers are needed, servers.sh.
#
# It clears the variables through which the machine or the user could
# change what git does: the CA bundle presets, git's redirection
# variables, an ssh command, and skillmeat's own credential variables. So
# each vault's own settings are what the scripts test.

unset GIT_SSL_CAINFO GIT_SSL_CAPATH GIT_SSL_NO_VERIFY AWS_CA_BUNDLE CURL_CA_BUNDLE SSL_CERT_FILE
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
unset GIT_SSH GIT_SSH_COMMAND GIT_ASKPASS SSH_ASKPASS SSH_AUTH_SOCK GIT_CONFIG_PARAMETERS
unset GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL EMAIL
unset DBUS_SESSION_BUS_ADDRESS SKILLMEAT_CREDENTIALS_PASSPHRASE SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE
for _v in $(env | grep -o '^SKILLMEAT_VAULT_[A-Z0-9_]*'); do unset "$_v"; done
unset _v

TOML="$SKILLMEAT_HOME/sharing.toml"
CACHE="$SKILLMEAT_HOME/cache"
WATCH="$SRC/tests/tools/git_secret_watch.py"

json_check() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null
}

# millis: the current time in milliseconds.
millis() { echo $(($(date +%s%N) / 1000000)); }

# vault_set NAME KEY VALUE: puts `KEY = VALUE` (VALUE is raw TOML) into the
# [vault.NAME] table of sharing.toml, replacing an existing KEY there.
vault_set() {
  python3 - "$TOML" "$1" "$2" "$3" <<'EOF'
import re, sys
path, name, key, value = sys.argv[1:]
lines = open(path).read().split("\n")
header = "[vault.%s]" % name
start = lines.index(header)
end = start + 1
while end < len(lines) and not lines[end].startswith("["):
    end += 1
body = [l for l in lines[start + 1:end] if not re.match(r"\s*%s\s*=" % re.escape(key), l)]
while body and body[-1] == "":
    body.pop()
lines[start + 1:end] = body + ["%s = %s" % (key, value), ""]
open(path, "w").write("\n".join(lines))
EOF
}

# toml_str TEXT: TEXT as a TOML basic string.
toml_str() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }

# refs REPO: every ref of the bare repository REPO with its object id.
refs() { git -C "$1" for-each-ref --format='%(refname) %(objectname)'; }

# tip REPO [BRANCH]: the commit id of BRANCH (default main) in REPO, or nothing.
tip() { git -C "$1" rev-parse -q --verify "refs/heads/${2:-main}" 2>/dev/null; }

# tree_of REPO [BRANCH]: the paths of every file on BRANCH, sorted, one a line.
tree_of() { git -C "$1" ls-tree -r --name-only "${2:-main}" 2>/dev/null | LC_ALL=C sort; }

# ids_in_tree REPO: the bundle ids that have a data file on main, space-separated.
ids_in_tree() {
  tree_of "$1" | sed -n 's|^bundles/\(.*\)\.skillmeat-pack$|\1|p' | tr '\n' ' ' | sed 's/ $//'
}

# index_ids_in REPO: the ids in index.json on main, sorted, space-separated.
index_ids_in() {
  git -C "$1" show main:index.json 2>/dev/null |
    python3 -c 'import json, sys; print(" ".join(sorted(json.load(sys.stdin))))' 2>/dev/null
}

# ls_ids ARGS...: the ids that `vault ls --json ARGS` lists, space-separated.
ls_ids() {
  "$SM" vault ls --json "$@" 2>/dev/null |
    python3 -c 'import json, sys; print(" ".join(r["bundle_id"] for r in json.load(sys.stdin)))' 2>/dev/null
}

# same_refs NAME REPO BEFORE: passes when REPO's refs are still BEFORE.
same_refs() {
  local now
  now=$(refs "$2")
  if [ "$now" = "$3" ]; then ok "$1"; else
    not_ok "$1" "refs were: ${3:-none}" "refs are: ${now:-none}"; fi
}

# linear_history NAME REPO: passes when main has no merge commit, so every
# earlier tip is an ancestor of the current one.
linear_history() {
  local merges
  merges=$(git -C "$2" rev-list --min-parents=2 --count main 2>/dev/null)
  if [ "${merges:-x}" = 0 ]; then ok "$1"; else not_ok "$1" "merge commits on main: ${merges:-?}"; fi
}

# ancestor NAME REPO OLD: passes when commit OLD is an ancestor of main,
# which is what a push without force keeps true.
ancestor() {
  if git -C "$2" merge-base --is-ancestor "$3" main 2>/dev/null; then ok "$1"; else
    not_ok "$1" "$3 is not an ancestor of main $(tip "$2")"; fi
}

# cache_dirs: the git directories under $CACHE, one a line.
cache_dirs() {
  [ -d "$CACHE" ] || return 0
  find "$CACHE" -type d -name objects -prune -printf '%h\n' | LC_ALL=C sort
}

# no_cache NAME: passes when no git directory was created under $CACHE.
no_cache() {
  local dirs
  dirs=$(cache_dirs)
  if [ -z "$dirs" ]; then ok "$1"; else not_ok "$1" "cache directories: $(echo "$dirs" | tr '\n' ' ')"; fi
}

# make_big_bundle NAME VERSION MIB OUT: a bundle of the brand-guidelines skill
# plus MIB MiB of random data, so that its blob cannot be compressed.
make_big_bundle() {
  local name=$1 version=$2 mib=$3 out=$4 d
  d=$(mktemp -d "$TMP/skill.XXXXXX")
  cp -r "$SRC/examples/skills/brand-guidelines" "$d/$name"
  head -c "$((mib * 1048576))" /dev/urandom >"$d/$name/payload.bin"
  "$SM" bundle create "$d/$name" --name "$name" --version "$version" \
    --description "large bundle $name" --author e2e -o "$out" >/dev/null
  rm -rf "$d"
}

# check_every_command VAULT RO_VAULT REPO: runs push, ls, info, pull and
# delete against the writable git vault VAULT and the read-only vault
# RO_VAULT, both on the empty bare repository REPO, and checks the results
# in REPO itself. VAULT must set commit_author "E2E Bot" and commit_email
# "bot@e2e.invalid".
check_every_command() {
  local v=$1 ro=$2 repo=$3 B="$TMP/bundles-$1" before old
  mkdir -p "$B"
  make_bundle alpha-tools 1.0 "$B/alpha.skillmeat-pack" docs style
  make_bundle Beta-Tools 2.0 "$B/beta.skillmeat-pack" docs
  make_bundle gamma 0.1 "$B/gamma.skillmeat-pack"
  "$SM" bundle create "$SRC/examples/skills/brand-guidelines" --name alpha-tools --version 1.0 \
    --description "a different build of alpha" --author e2e -o "$B/alpha-other.skillmeat-pack" >/dev/null
  check "$v: fixture bundles exist" test -s "$B/alpha-other.skillmeat-pack"

  # --- an empty repository ---

  sm vault ls --vault "$v"
  expect "$v: ls of an empty repository exits 0" 0
  expect_out "$v: ls of an empty repository says so" "no bundles in vault '$v'"
  check "$v: ls creates no branch" test -z "$(refs "$repo")"

  sm vault info nosuch-v1 --vault "$v"
  expect_err "$v: info in an empty repository exits 3" 3 "'nosuch-v1' not found"

  # --- push ---

  sm vault push "$B/alpha.skillmeat-pack" --vault "$v"
  expect "$v: first push exits 0" 0
  expect_out "$v: push names id and vault" "pushed alpha-tools-v1.0 to vault '$v'"
  check "$v: first push creates main" test -n "$(tip "$repo")"
  check "$v: pushed blob equals the bundle" \
    cmp -s "$B/alpha.skillmeat-pack" <(git -C "$repo" cat-file blob main:bundles/alpha-tools-v1.0.skillmeat-pack)
  check "$v: push writes the metadata file" json_check <(git -C "$repo" show main:metadata/alpha-tools-v1.0.json) \
    "d['bundle_id'] == 'alpha-tools-v1.0' and d['size_bytes'] == $(stat -c %s "$B/alpha.skillmeat-pack")"
  check "$v: push writes index.json" test "$(index_ids_in "$repo")" = "alpha-tools-v1.0"
  check "$v: commit author from commit_author" \
    test "$(git -C "$repo" log -1 --format='%an <%ae>' main)" = "E2E Bot <bot@e2e.invalid>"
  check "$v: committer from commit_author" \
    test "$(git -C "$repo" log -1 --format='%cn <%ce>' main)" = "E2E Bot <bot@e2e.invalid>"
  check "$v: commit message names the id" grep -q "alpha-tools-v1.0" <(git -C "$repo" log -1 --format=%B main)
  old=$(tip "$repo")

  sm vault push "$B/beta.skillmeat-pack" --vault "$v" --json
  expect "$v: push --json exits 0" 0
  check "$v: push --json reports the id" json_check "$OUT" \
    "d['bundle_id'] == 'beta-tools-v2.0' and d['unchanged'] is False and d['tags'] == ['docs']"
  check "$v: push --json sha256" json_check "$OUT" \
    "d['metadata']['sha256'] == '$(sha256sum "$B/beta.skillmeat-pack" | cut -d' ' -f1)'"
  ancestor "$v: second push keeps the first commit" "$repo" "$old"

  sm vault push "$B/gamma.skillmeat-pack" --vault "$v" --quiet
  expect "$v: push --quiet exits 0" 0
  check "$v: push --quiet prints nothing" test ! -s "$OUT"
  check "$v: repository holds the original layout" test "$(tree_of "$repo" | tr '\n' ' ')" = \
    "bundles/alpha-tools-v1.0.skillmeat-pack bundles/beta-tools-v2.0.skillmeat-pack bundles/gamma-v0.1.skillmeat-pack index.json metadata/alpha-tools-v1.0.json metadata/beta-tools-v2.0.json metadata/gamma-v0.1.json "
  check "$v: index.json lists three" test "$(index_ids_in "$repo")" = "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1"
  check "$v: one commit per push" test "$(git -C "$repo" rev-list --count main)" = 3

  # --- ls and info ---

  sm vault ls --vault "$v"
  expect "$v: ls exits 0" 0
  check "$v: ls lists three rows sorted" test "$(tail -n +2 "$OUT" | cut -d' ' -f1 | tr '\n' ' ')" = \
    "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1 "
  expect_out "$v: ls shows tags" "docs,style"
  check "$v: ls --filter" test "$(ls_ids --vault "$v" --filter TOOLS)" = "alpha-tools-v1.0 beta-tools-v2.0"
  check "$v: ls --filter glob" test "$(ls_ids --vault "$v" --filter '?amma')" = "gamma-v0.1"
  check "$v: ls --tag" test "$(ls_ids --vault "$v" --tag docs)" = "alpha-tools-v1.0 beta-tools-v2.0"
  check "$v: ls two --tag" test "$(ls_ids --vault "$v" --tag docs --tag style)" = "alpha-tools-v1.0"
  check "$v: ls --tag and --filter" test "$(ls_ids --vault "$v" --tag docs --filter beta)" = "beta-tools-v2.0"
  sm vault ls --vault "$v" --filter nothing-like-this
  expect_out "$v: ls without match says so" "match the filter"

  sm vault info alpha-tools-v1.0 --vault "$v"
  expect "$v: info exits 0" 0
  expect_out "$v: info shows the id" "alpha-tools-v1.0"
  expect_out "$v: info shows the size" "($(stat -c %s "$B/alpha.skillmeat-pack") bytes)"
  sm vault info beta-tools-v2.0 --vault "$v" --json
  check "$v: info --json equals the metadata blob" python3 -c \
    'import json, sys; sys.exit(json.load(open(sys.argv[1])) != json.loads(sys.argv[2]))' \
    "$OUT" "$(git -C "$repo" show main:metadata/beta-tools-v2.0.json 2>/dev/null)" 2>/dev/null
  sm vault info "../index" --vault "$v"
  expect_err "$v: info invalid id exits 9" 9 "invalid bundle id"

  # --- pull ---

  sm vault pull alpha-tools-v1.0 --vault "$v" --output "$TMP/dl-$v"
  expect "$v: pull exits 0" 0
  expect_out "$v: pull says verified" "(verified)"
  check "$v: pull gives the pushed bytes" cmp -s "$B/alpha.skillmeat-pack" "$TMP/dl-$v/alpha-tools-v1.0.skillmeat-pack"
  sm vault pull gamma-v0.1 --vault "$v" --output "$TMP/dl-$v" --json
  check "$v: pull --json reports the path" json_check "$OUT" \
    "d == {'bundle_id': 'gamma-v0.1', 'vault': '$v', 'path': '$TMP/dl-$v/gamma-v0.1.skillmeat-pack', 'verified': True}"
  check "$v: pull gamma gives its bytes" cmp -s "$B/gamma.skillmeat-pack" "$TMP/dl-$v/gamma-v0.1.skillmeat-pack"
  mkdir -p "$TMP/empty-$v"
  sm vault pull nosuch-v1 --vault "$v" --output "$TMP/empty-$v"
  expect_err "$v: pull unknown id exits 3" 3 "'nosuch-v1' not found"
  sm vault pull "../x" --vault "$v" --output "$TMP/empty-$v"
  expect_err "$v: pull invalid id exits 9" 9 "invalid bundle id"
  check "$v: failed pulls write nothing" test -z "$(ls -A "$TMP/empty-$v")"

  # --- immutable versions ---

  before=$(refs "$repo")
  sm vault push "$B/alpha-other.skillmeat-pack" --vault "$v"
  expect_err "$v: push of an existing id exits 4" 4 "alpha-tools-v1.0"
  same_refs "$v: rejected push leaves the repository" "$repo" "$before"
  sm vault push "$B/alpha.skillmeat-pack" --vault "$v"
  expect "$v: identical re-push exits 0" 0
  expect_out "$v: identical re-push says unchanged" "unchanged"
  same_refs "$v: identical re-push makes no commit" "$repo" "$before"

  old=$(tip "$repo")
  sm vault push "$B/alpha-other.skillmeat-pack" --vault "$v" --force
  expect "$v: push --force exits 0" 0
  check "$v: push --force replaces the blob" \
    cmp -s "$B/alpha-other.skillmeat-pack" <(git -C "$repo" cat-file blob main:bundles/alpha-tools-v1.0.skillmeat-pack)
  ancestor "$v: push --force is not a forced git push" "$repo" "$old"
  sm vault info alpha-tools-v1.0 --vault "$v" --json
  check "$v: push --force replaces the metadata" json_check "$OUT" "d['description'] == 'a different build of alpha'"
  sm vault pull alpha-tools-v1.0 --vault "$v" --output "$TMP/forced-$v"
  check "$v: pull after --force gives the new bytes" \
    cmp -s "$B/alpha-other.skillmeat-pack" "$TMP/forced-$v/alpha-tools-v1.0.skillmeat-pack"

  # --- read-only vault on the same repository ---

  before=$(refs "$repo")
  sm vault push "$B/alpha.skillmeat-pack" --vault "$ro" --version 7.0
  expect_err "$v: push to a read-only vault exits 5" 5 "read-only"
  sm vault delete gamma-v0.1 --vault "$ro"
  expect_err "$v: delete in a read-only vault exits 5" 5 "read-only"
  same_refs "$v: read-only vault leaves the repository" "$repo" "$before"
  check "$v: read-only ls works" test "$(ls_ids --vault "$ro" --filter gamma)" = "gamma-v0.1"
  sm vault pull beta-tools-v2.0 --vault "$ro" --output "$TMP/ro-$v"
  expect "$v: read-only pull exits 0" 0
  check "$v: read-only pull gives the bytes" cmp -s "$B/beta.skillmeat-pack" "$TMP/ro-$v/beta-tools-v2.0.skillmeat-pack"

  # --- delete ---

  old=$(tip "$repo")
  sm vault delete gamma-v0.1 --vault "$v"
  expect "$v: delete exits 0" 0
  expect_out "$v: delete names the id" "deleted gamma-v0.1 from vault '$v'"
  check "$v: delete removes both files" test "$(ids_in_tree "$repo")" = "alpha-tools-v1.0 beta-tools-v2.0"
  check "$v: delete removes the metadata" test -z "$(tree_of "$repo" | grep gamma)"
  check "$v: delete updates index.json" test "$(index_ids_in "$repo")" = "alpha-tools-v1.0 beta-tools-v2.0"
  check "$v: delete commit names the id" grep -q "gamma-v0.1" <(git -C "$repo" log -1 --format=%B main)
  ancestor "$v: delete keeps history" "$repo" "$old"
  check "$v: ls no longer lists it" test "$(ls_ids --vault "$v")" = "alpha-tools-v1.0 beta-tools-v2.0"
  before=$(refs "$repo")
  sm vault delete gamma-v0.1 --vault "$v"
  expect_err "$v: delete again exits 3" 3 "'gamma-v0.1' not found"
  sm vault delete "../index" --vault "$v"
  expect_err "$v: delete invalid id exits 9" 9 "invalid bundle id"
  same_refs "$v: failed deletes leave the repository" "$repo" "$before"
  sm vault pull gamma-v0.1 --vault "$v" --output "$TMP/empty-$v"
  expect_err "$v: pull deleted id exits 3" 3 "'gamma-v0.1' not found"

  sm vault push "$B/gamma.skillmeat-pack" --vault "$v"
  expect "$v: push after delete exits 0" 0
  linear_history "$v: history has no merge commits" "$repo"
  check "$v: six commits in all" test "$(git -C "$repo" rev-list --count main)" = 6
}
