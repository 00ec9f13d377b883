#!/usr/bin/env bash
# End-to-end tests of sharing.toml through `skillmeat vault add | list |
# remove | set-default`: what the edits write, what they keep of a
# hand-written file, the project file layered over the user file, and the
# rejection of invalid input without touching the file.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

USER_FILE="$SKILLMEAT_HOME/sharing.toml"
V="$TMP/vaults"
mkdir -p "$V"

# toml_check FILE EXPR: evaluates the Python expression EXPR with `d` bound to
# the parsed TOML file and succeeds when it is true.
toml_check() {
  python3 -c 'import sys, tomllib; d = tomllib.load(open(sys.argv[1], "rb")); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}

json_check() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}

# same_file NAME A B: passes when files A and B hold the same bytes.
same_file() {
  if cmp -s "$2" "$3"; then ok "$1"; else
    not_ok "$1" "$(diff "$2" "$3" | head -20)"; fi
}

# --- an empty configuration ---

sm vault list
expect "list without config exits 0" 0
expect_out "list without config hints at add" "skillmeat vault add NAME local DIR"
sm vault list --json
expect "list --json without config exits 0" 0
check "list --json without config is empty" json_check "$OUT" 'd == []'
check "list creates no user file" test ! -e "$USER_FILE"

# --- add ---

sm vault add team local "$V/team"
expect "add local exits 0" 0
expect_out "add names the file" "$USER_FILE"
check "add creates the vault directory" test -d "$V/team"
check "add writes the user file" test -f "$USER_FILE"
check "add writes type local" toml_check "$USER_FILE" 'd["vault"]["team"]["type"] == "local"'
check "add writes the absolute path" toml_check "$USER_FILE" "d['vault']['team']['path'] == '$V/team'"
check "add without --read-only writes no read_only" toml_check "$USER_FILE" '"read_only" not in d["vault"]["team"]'

mkdir -p "$TMP/sub"
(cd "$TMP/sub" && "$SM" vault add rel local ./rel-vault >"$OUT" 2>"$ERR")
CODE=$?
expect "add relative path exits 0" 0
check "add stores a relative path as absolute" toml_check "$USER_FILE" \
  "d['vault']['rel']['path'] == '$(realpath "$TMP/sub/rel-vault")'"

sm vault add main local "$V/main" --set-default
expect "add --set-default exits 0" 0
expect_out "add --set-default says default" "(default)"
check "add --set-default writes default_vault" toml_check "$USER_FILE" 'd["sharing"]["default_vault"] == "main"'

sm vault add archive local "$V/archive" --read-only --json
expect "add --read-only exits 0" 0
check "add --json reports the vault" json_check "$OUT" \
  "d == {'name': 'archive', 'type': 'local', 'file': '$USER_FILE', 'default': False}"
check "add --read-only writes a boolean" toml_check "$USER_FILE" 'd["vault"]["archive"]["read_only"] is True'

name64=$(printf 'v%.0s' {1..64})
sm vault add "$name64" local "$V/long"
expect "add 64-character name exits 0" 0
sm vault add "a.b-c_d" local "$V/punct"
expect "add name with . - _ exits 0" 0

# --- list ---

sm vault list
expect "list exits 0" 0
expect_out "list marks the default" "* main"
expect_out "list marks read-only" "[read-only]"
expect_out "list shows the source file" "(from $USER_FILE)"
expect_out "list shows the path" "$V/team"

sm vault list --verbose
expect "list --verbose exits 0" 0
expect_out "list --verbose shows settings" "path = $V/archive"

sm vault list --json
expect "list --json exits 0" 0
cp "$OUT" "$TMP/list.json"
check "list --json sorted by name" json_check "$TMP/list.json" \
  "[v['name'] for v in d] == ['a.b-c_d', 'archive', 'main', 'rel', 'team', '$name64']"
check "list --json source is the user file" json_check "$TMP/list.json" \
  "all(v['source'] == '$USER_FILE' for v in d)"
check "list --json marks one default" json_check "$TMP/list.json" \
  '[v["name"] for v in d if v["default"]] == ["main"]'
check "list --json read_only" json_check "$TMP/list.json" \
  '[v["name"] for v in d if v["read_only"]] == ["archive"]'
check "list --json settings path" json_check "$TMP/list.json" \
  "[v['settings']['path'] for v in d if v['name'] == 'team'] == ['$V/team']"

# --- set-default and remove ---

sm vault set-default team
expect "set-default exits 0" 0
check "set-default writes default_vault" toml_check "$USER_FILE" 'd["sharing"]["default_vault"] == "team"'

cp "$USER_FILE" "$TMP/before.toml"
sm vault set-default nosuch
expect_err "set-default unknown exits 3" 3 "'nosuch' not found"
same_file "set-default unknown keeps the file" "$TMP/before.toml" "$USER_FILE"

sm vault remove rel
expect "remove exits 0" 0
check "remove drops the table" toml_check "$USER_FILE" '"rel" not in d["vault"]'
check "remove keeps the vault directory" test -d "$TMP/sub/rel-vault"

cp "$USER_FILE" "$TMP/before.toml"
sm vault remove nosuch
expect_err "remove unknown exits 3" 3 "'nosuch' not found"
same_file "remove unknown keeps the file" "$TMP/before.toml" "$USER_FILE"

sm vault remove team
expect "remove default vault exits 0" 0
check "remove default vault drops default_vault" toml_check "$USER_FILE" \
  '"default_vault" not in d.get("sharing", {})'
check "remove default keeps the others" toml_check "$USER_FILE" \
  "sorted(d['vault']) == ['a.b-c_d', 'archive', 'main', '$name64']"

# --- invalid input leaves the file and the disk as they were ---

cp "$USER_FILE" "$TMP/before.toml"
HOME_BEFORE=$(ls -A "$SKILLMEAT_HOME")
VAULTS_BEFORE=$(ls -A "$V")

# add_fails NAME CODE TEXT ARGS...: `vault add ARGS` fails with CODE and TEXT,
# and neither sharing.toml nor the vaults directory changes.
add_fails() {
  local name=$1 code=$2 text=$3
  shift 3
  sm vault add "$@"
  expect_err "add $name exits $code" "$code" "$text"
  if cmp -s "$TMP/before.toml" "$USER_FILE" && [ "$(ls -A "$SKILLMEAT_HOME")" = "$HOME_BEFORE" ]; then
    ok "add $name keeps the file"
  else
    not_ok "add $name keeps the file" "$(diff "$TMP/before.toml" "$USER_FILE" | head -10)"
  fi
  if [ "$(ls -A "$V")" = "$VAULTS_BEFORE" ]; then ok "add $name creates no directory"; else
    not_ok "add $name creates no directory" "now: $(ls -A "$V" | tr '\n' ' ')"; fi
}

add_fails "empty name" 2 "invalid vault name" "" local "$V/new"
add_fails "name with space" 2 "invalid vault name 'a b'" "a b" local "$V/new"
add_fails "name with slash" 2 "invalid vault name 'a/b'" "a/b" local "$V/new"
add_fails "name with leading dash" 2 "invalid vault name" -- "-lead" local "$V/new"
add_fails "name with leading dot" 2 "invalid vault name '.hidden'" ".hidden" local "$V/new"
add_fails "65-character name" 2 "invalid vault name" "x$name64" local "$V/new"
add_fails "non-ASCII name" 2 "invalid vault name" "naïve" local "$V/new"
add_fails "name with quote" 2 "invalid vault name" 'a"b' local "$V/new"
add_fails "name with bracket" 2 "invalid vault name" "a]b" local "$V/new"
add_fails "name with newline" 2 "invalid vault name 'a\x0ab'" $'a\nb' local "$V/new"
check "error with newline stays one line" test "$(wc -l <"$ERR")" -eq 1
add_fails "unknown type" 2 "known types: local" other ftp "$V/new"
add_fails "local with --region" 2 "do not apply to a local vault" other local "$V/new" --region eu
add_fails "empty location" 2 "must be a non-empty path" other local ""
add_fails "existing name" 4 "archive" archive local "$V/new"
add_fails "s3 prefix with .." 9 "invalid prefix 'a/../b'" other s3 bkt --prefix a/../b
add_fails "s3 plain http to a remote host" 9 "set allow_http = true" other s3 bkt \
  --endpoint-url http://10.1.2.3:9000
add_fails "--allow-http on a local vault" 2 "applies only to git, s3 and http vaults" \
  other local "$V/new" --allow-http
add_fails "two arguments" 2 "expected 3 arguments, got 2" other local
add_fails "unknown option" 2 "--colour" other local "$V/new" --colour

sm vault remove a b
expect_err "remove two names exits 2" 2 "expected 1 argument, got 2"
same_file "remove two names keeps the file" "$TMP/before.toml" "$USER_FILE"

# --- a project file layered over the user file ---

PROJ="$TMP/proj"
PROJ_FILE="$PROJ/.skillmeat/sharing.toml"
mkdir -p "$PROJ/.skillmeat" "$PROJ/src/deep" "$V/main-project" "$V/projvault"
cat >"$PROJ_FILE" <<EOF
[sharing]
default_vault = "projvault"

[vault.main]
type = "local"
path = "$V/main-project"

[vault.projvault]
type = "local"
path = "$V/projvault"
EOF
cp "$USER_FILE" "$TMP/user-before.toml"

cd "$PROJ/src/deep"
sm vault list --json
expect "list in project exits 0" 0
cp "$OUT" "$TMP/proj.json"
check "project vault replaces user vault" json_check "$TMP/proj.json" \
  "[(v['source'], v['settings']['path']) for v in d if v['name'] == 'main'] == [('$PROJ_FILE', '$V/main-project')]"
check "project adds its own vault" json_check "$TMP/proj.json" \
  "[v['source'] for v in d if v['name'] == 'projvault'] == ['$PROJ_FILE']"
check "user vaults stay visible" json_check "$TMP/proj.json" \
  "[v['source'] for v in d if v['name'] == 'archive'] == ['$USER_FILE']"
check "project default_vault wins" json_check "$TMP/proj.json" \
  '[v["name"] for v in d if v["default"]] == ["projvault"]'
check "list in project counts each name once" json_check "$TMP/proj.json" \
  '[v["name"] for v in d].count("main") == 1'

sm vault list
expect_out "list shows the project file" "projvault"
check "list text names the project file" grep -q "main .*(from $PROJ_FILE)" "$OUT"
check "list text names the user file" grep -q "archive .*(from $USER_FILE)" "$OUT"

sm vault ls
expect "ls in project uses the project default" 0
expect_out "ls in project names the vault" "vault 'projvault'"

sm vault set-default main
expect "set-default in project exits 0" 0
expect_out "set-default in project names the file" "$PROJ_FILE"
check "set-default in project edits the project file" toml_check "$PROJ_FILE" \
  'd["sharing"]["default_vault"] == "main"'
same_file "set-default in project keeps the user file" "$TMP/user-before.toml" "$USER_FILE"

sm vault remove main
expect "remove project vault exits 0" 0
check "remove edits the project file" toml_check "$PROJ_FILE" '"main" not in d["vault"]'
same_file "remove in project keeps the user file" "$TMP/user-before.toml" "$USER_FILE"
sm vault list --json
check "user vault shows again after project removal" json_check "$OUT" \
  "[v['source'] for v in d if v['name'] == 'main'] == ['$USER_FILE']"
cd "$TMP"

sm vault list --json
check "outside the project only user vaults" json_check "$OUT" \
  "all(v['source'] == '$USER_FILE' for v in d)"

# --- hand-written files keep every byte the edit does not need ---

export SKILLMEAT_HOME="$TMP/hand"
HAND="$SKILLMEAT_HOME/sharing.toml"
mkdir -p "$SKILLMEAT_HOME"
cat >"$TMP/hand.toml" <<'EOF'
# Vaults of the e2e team.
# Edited by hand: keep this header.

[sharing]
default_vault = "team"  # the shared one

[other]
# a table skillmeat does not know
colour = "blue"
numbers = [1, 2, 3]

[vault.team]
type = "local"
path = "/srv/team"
read_only = false

[vault.zeta]
path = "/srv/zeta"   # path before type, on purpose
type = "local"
EOF
cp "$TMP/hand.toml" "$HAND"

sm vault add extra local "$V/extra"
expect "add to hand-written file exits 0" 0
size=$(stat -c %s "$TMP/hand.toml")
check "add keeps every original byte" cmp -s -n "$size" "$TMP/hand.toml" "$HAND"
check "add appends the new table" toml_check "$HAND" \
  "d['vault']['extra'] == {'type': 'local', 'path': '$V/extra'}"
check "add keeps the unknown table" toml_check "$HAND" \
  'd["other"] == {"colour": "blue", "numbers": [1, 2, 3]}'

sm vault remove extra
expect "remove added table exits 0" 0
same_file "add then remove restores the file" "$TMP/hand.toml" "$HAND"

sm vault set-default zeta
expect "set-default hand-written exits 0" 0
sed 's/^default_vault = "team"/default_vault = "zeta"/' "$TMP/hand.toml" >"$TMP/expected.toml"
same_file "set-default changes only the value" "$TMP/expected.toml" "$HAND"

cp "$TMP/hand.toml" "$HAND"
sm vault remove zeta
expect "remove last table exits 0" 0
python3 - "$TMP/hand.toml" >"$TMP/expected.toml" <<'EOF'
import sys
text = open(sys.argv[1]).read()
print(text[:text.index("\n[vault.zeta]")], end="")
EOF
same_file "remove last table keeps the rest" "$TMP/expected.toml" "$HAND"

cp "$TMP/hand.toml" "$HAND"
sm vault remove team
expect "remove middle table exits 0" 0
python3 - "$TMP/hand.toml" >"$TMP/expected.toml" <<'EOF'
import sys
text = open(sys.argv[1]).read()
start = text.index("[vault.team]")
end = text.index("[vault.zeta]")
# the table and the blank line after it go, and default_vault with it
text = text[:start] + text[end:]
text = text.replace('default_vault = "team"  # the shared one\n', "")
print(text, end="")
EOF
check "remove middle table drops default_vault" toml_check "$HAND" '"default_vault" not in d["sharing"]'
same_file "remove middle table keeps the rest" "$TMP/expected.toml" "$HAND"

cp "$TMP/hand.toml" "$HAND"
chmod 0640 "$HAND"
sm vault add extra local "$V/extra"
check "add keeps mode 0640" test "$(stat -c %a "$HAND")" = 640
sm vault set-default extra
check "set-default keeps mode 0640" test "$(stat -c %a "$HAND")" = 640
sm vault remove extra
check "remove keeps mode 0640" test "$(stat -c %a "$HAND")" = 640
check "edits leave no temporary file" test -z "$(ls -A "$SKILLMEAT_HOME" | grep -v -e '^sharing.toml$' -e '^sharing.toml.lock$')"

# --- a file with a syntax error stops every vault command ---

export SKILLMEAT_HOME="$TMP/broken"
BROKEN="$SKILLMEAT_HOME/sharing.toml"
mkdir -p "$SKILLMEAT_HOME"
printf '[vault.team]\ntype = "local"\npath = "/srv/team\n' >"$BROKEN"
cp "$BROKEN" "$TMP/broken.toml"
make_bundle broken 1.0 "$TMP/broken.skillmeat-pack"

# broken NAME ARGS...: the vault command fails with 9 and names file:line:col.
broken() {
  local name=$1
  shift
  sm vault "$@"
  expect_err "$name with syntax error exits 9" 9 "$BROKEN:3:18: newline in a single-line string"
}
broken "list" list
broken "list --json" list --json
broken "add" add other local "$V/not-created"
check "add with syntax error creates no directory" test ! -e "$V/not-created"
broken "remove" remove team
broken "set-default" set-default team
broken "ls" ls
broken "push" push "$TMP/broken.skillmeat-pack"
broken "pull" pull broken-v1.0
broken "info" info broken-v1.0
broken "delete" delete broken-v1.0
broken "auth" auth team
same_file "syntax error file is never rewritten" "$TMP/broken.toml" "$BROKEN"

printf '[vault.team]\ntype = 5\npath = "%s"\n' "$V/team" >"$BROKEN"
sm vault list
expect_err "type not a string exits 9" 9 "$BROKEN:2:1: 'type' of vault 'team' must be a non-empty string"

printf '[vault.team]\ntype = "local"\npath = "%s"\n[vault.team]\ntype = "local"\n' "$V/team" >"$BROKEN"
sm vault list
expect_err "duplicate table exits 9" 9 "$BROKEN:4:"
check "duplicate table names the table" grep -q "table 'vault.team' is already defined" "$ERR"

export SKILLMEAT_HOME="$TMP/home"
mkdir -p "$TMP/badproj/.skillmeat"
printf 'default_vault = = "x"\n' >"$TMP/badproj/.skillmeat/sharing.toml"
(cd "$TMP/badproj" && "$SM" vault list >"$OUT" 2>"$ERR")
CODE=$?
expect_err "project syntax error exits 9" 9 "$TMP/badproj/.skillmeat/sharing.toml:1:17: expected a value"

# --- concurrent adds ---

export SKILLMEAT_HOME="$TMP/concurrent"
pids=()
for i in 1 2 3 4 5 6 7 8; do
  "$SM" vault add "c$i" local "$V/c$i" >"$TMP/c$i.out" 2>&1 &
  pids+=($!)
done
failures=0
for pid in "${pids[@]}"; do
  wait "$pid" || failures=$((failures + 1))
done
check "8 concurrent adds all exit 0" test "$failures" -eq 0
check "8 concurrent adds all land" toml_check "$SKILLMEAT_HOME/sharing.toml" \
  'sorted(d["vault"]) == ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"]'
sm vault list --json
check "list shows 8 concurrent vaults" json_check "$OUT" 'len(d) == 8'

# --- help ---

for command in add list remove set-default auth; do
  sm vault "$command" --help
  expect "vault $command --help exits 0" 0
  expect_out "vault $command --help prints usage" "usage: skillmeat vault $command"
done
sm vault auth archive
expect_err "auth unknown vault exits 3" 3 "'archive' not found"
export SKILLMEAT_HOME="$TMP/home"
sm vault auth archive
expect "auth local vault exits 0" 0
expect_out "auth local vault needs nothing" "needs no credentials"

finish
