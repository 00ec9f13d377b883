#!/usr/bin/env bash
# End-to-end tests of `skillmeat bundle create | inspect | verify`: the
# deterministic archive, the reports, hash mismatches, and the rejection of
# unsafe archives without extracting anything.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SKILLS="$SRC/examples/skills"
FIXTURE="$SHARED/fixtures/original/demo-bundle.skillmeat-pack"

# A Python helper that writes a changed copy of a bundle. MODE picks the
# change: each branch of the loop below is one mode.
cat >"$TMP/zipedit.py" <<'EOF'
"""Write a changed copy of a bundle: zipedit.py MODE SRC DST [ARG...]."""
import json
import os
import sys
import zipfile

mode, src, dst = sys.argv[1:4]
args = sys.argv[4:]

with zipfile.ZipFile(src) as zin:
    entries = [(info, zin.read(info)) for info in zin.infolist()]

manifest = json.loads(dict((i.filename, d) for i, d in entries)["manifest.json"])
first = manifest["artifacts"][0]
first_file = first["path"] + first["files"][0]


def dump(value):
    return json.dumps(value, indent=2, sort_keys=True).encode()


def new_info(name, attr=0o100644):
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = attr << 16
    info.create_system = 3
    return info


out = []
extra = []
for info, data in entries:
    if mode == "tamper" and info.filename == first_file:
        data = data + b"\nan extra line\n"
    elif mode == "drop-file" and info.filename == first_file:
        continue
    elif mode == "symlink" and info.filename == first_file:
        info = new_info(first_file, 0o120777)
        data = b"/etc/passwd"
    elif mode == "set-field" and info.filename == "manifest.json":
        changed = dict(manifest)
        changed[args[0]] = json.loads(args[1])
        data = dump(changed)
    elif mode == "del-field" and info.filename == "manifest.json":
        changed = dict(manifest)
        del changed[args[0]]
        data = dump(changed)
    elif mode == "raw-manifest" and info.filename == "manifest.json":
        data = args[0].encode()
    elif mode == "big-manifest" and info.filename == "manifest.json":
        changed = dict(manifest)
        # random hex compresses about 2:1, so only the manifest cap applies
        changed["padding"] = os.urandom(int(4.5 * 1024 * 1024) // 2).hex()
        data = dump(changed)
    elif mode == "bomb" and info.filename == "manifest.json":
        changed = json.loads(data)
        changed["artifacts"][0]["files"].append("bomb.bin")
        data = dump(changed)
    out.append((info, data))

if mode == "add-entry":
    extra.append((new_info(args[0]), b"x\n"))
elif mode == "dup":
    extra.append((new_info(first_file), b"a second copy\n"))

with zipfile.ZipFile(dst, "w") as zout:
    for info, data in out + extra:
        zout.writestr(info, data)
    if mode == "bomb":
        # about 300 MiB of zeros, streamed so it never sits in memory
        info = new_info(first["path"] + "bomb.bin")
        chunk = bytes(1 << 20)
        with zout.open(info, "w") as f:
            for _ in range(300):
                f.write(chunk)
EOF

# zipedit MODE SRC DST [ARG...]: writes a changed copy of bundle SRC to DST.
zipedit() {
  python3 -W ignore "$TMP/zipedit.py" "$@"
}

# listing DIR: every path under DIR (hidden ones too), one a line, sorted.
listing() {
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort)
}

# json_check FILE EXPR: evaluates the Python expression EXPR with `d` bound to
# the JSON document in FILE and succeeds when it is true.
json_check() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}

create() {
  run "$SM" bundle create "$@"
}

# copies of the example skills, so their timestamps can change
mkdir -p "$TMP/skills"
cp -r "$SKILLS/brand-guidelines" "$SKILLS/internal-comms" "$TMP/skills/"
BRAND="$TMP/skills/brand-guidelines"
COMMS="$TMP/skills/internal-comms"
META=(--name team-kit --version 2.1.0 --description "Skills of the team" --author "e2e@example.com")

# --- create ---

create "$BRAND" "$COMMS" "${META[@]}" --tag docs --tag style --license MIT -o "$TMP/kit.skillmeat-pack"
expect "create two skills exits 0" 0
expect_out "create reports artifact count" "(2 artifacts)"
check "create writes the output file" test -s "$TMP/kit.skillmeat-pack"

create "$BRAND" "$COMMS" "${META[@]}" --tag docs --tag style --license MIT -o "$TMP/kit2.skillmeat-pack"
expect "create again exits 0" 0
check "create is byte-identical twice" cmp -s "$TMP/kit.skillmeat-pack" "$TMP/kit2.skillmeat-pack"

export SOURCE_DATE_EPOCH=1700000000
create "$BRAND" "${META[@]}" -o "$TMP/epoch1.skillmeat-pack"
expect "create with SOURCE_DATE_EPOCH exits 0" 0
find "$BRAND" -exec touch {} +
create "$BRAND" "${META[@]}" -o "$TMP/epoch2.skillmeat-pack"
expect "create after touch exits 0" 0
check "create ignores touch under SOURCE_DATE_EPOCH" cmp -s "$TMP/epoch1.skillmeat-pack" "$TMP/epoch2.skillmeat-pack"
sm bundle inspect "$TMP/epoch1.skillmeat-pack" --json
cp "$OUT" "$TMP/epoch.json"
check "created_at comes from SOURCE_DATE_EPOCH" json_check "$TMP/epoch.json" 'd["created_at"].startswith("2023-11-14T22:13:20")'
unset SOURCE_DATE_EPOCH

find "$BRAND" -exec touch -d @1600000000 {} +
create "$BRAND" "${META[@]}" -o "$TMP/mtime.skillmeat-pack"
expect "create with old mtimes exits 0" 0
sm bundle inspect "$TMP/mtime.skillmeat-pack" --json
cp "$OUT" "$TMP/mtime.json"
check "created_at is the newest input mtime" json_check "$TMP/mtime.json" 'd["created_at"].startswith("2020-09-13T12:26:40")'

printf 'existing bytes\n' >"$TMP/replace.skillmeat-pack"
create "$BRAND" "${META[@]}" -o "$TMP/replace.skillmeat-pack"
expect "create over an existing file exits 0" 0
check "create replaces the existing file" cmp -s "$TMP/replace.skillmeat-pack" "$TMP/mtime.skillmeat-pack"

create "$BRAND" "${META[@]}" --json -o "$TMP/json.skillmeat-pack"
expect "create --json exits 0" 0
cp "$OUT" "$TMP/create.json"
check "create --json names the output" json_check "$TMP/create.json" 'd["output"].endswith("json.skillmeat-pack") and d["artifacts"] == 1'

# --- inspect ---

sm bundle inspect "$TMP/kit.skillmeat-pack"
expect "inspect exits 0" 0
expect_out "inspect shows the name" "name:         team-kit"
expect_out "inspect shows the version" "version:      2.1.0"
expect_out "inspect shows the tags" "tags:         docs style"
expect_out "inspect shows the artifact count" "artifacts:    2"
expect_out "inspect lists a skill" "skill/brand-guidelines"

sm bundle inspect "$TMP/kit.skillmeat-pack" --json
expect "inspect --json exits 0" 0
cp "$OUT" "$TMP/kit.json"
check "inspect --json parses" json_check "$TMP/kit.json" 'isinstance(d, dict)'
check "inspect --json name" json_check "$TMP/kit.json" 'd["name"] == "team-kit"'
check "inspect --json version" json_check "$TMP/kit.json" 'd["version"] == "2.1.0"'
check "inspect --json description" json_check "$TMP/kit.json" 'd["description"] == "Skills of the team"'
check "inspect --json author" json_check "$TMP/kit.json" 'd["author"] == "e2e@example.com"'
check "inspect --json license" json_check "$TMP/kit.json" 'd["license"] == "MIT"'
check "inspect --json tags" json_check "$TMP/kit.json" 'd["tags"] == ["docs", "style"]'
check "inspect --json artifact count" json_check "$TMP/kit.json" 'len(d["artifacts"]) == 2'
check "inspect --json artifact names" json_check "$TMP/kit.json" \
  'sorted(a["name"] for a in d["artifacts"]) == ["brand-guidelines", "internal-comms"]'
check "inspect --json archive size" json_check "$TMP/kit.json" \
  "d['archive_size'] == $(stat -c %s "$TMP/kit.skillmeat-pack")"
check "inspect --json hashes are sha256" json_check "$TMP/kit.json" \
  'all(a["hash"].startswith("sha256:") and len(a["hash"]) == 71 for a in d["artifacts"])'

# every file of every artifact, with the size it has on disk
python3 - "$TMP/kit.json" "$TMP/skills" >"$TMP/sizes.txt" 2>&1 <<'EOF'
import json, os, sys
doc = json.load(open(sys.argv[1]))
for artifact in doc["artifacts"]:
    root = os.path.join(sys.argv[2], artifact["name"])
    on_disk = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            on_disk[os.path.relpath(path, root)] = os.path.getsize(path)
    listed = {f["path"]: f["size"] for f in artifact["files"]}
    if listed != on_disk:
        print(artifact["name"], "listed", listed, "on disk", on_disk)
    if artifact["size"] != sum(on_disk.values()):
        print(artifact["name"], "size", artifact["size"], "expected", sum(on_disk.values()))
EOF
check "inspect --json file sizes match disk" test ! -s "$TMP/sizes.txt"
[ -s "$TMP/sizes.txt" ] && cat "$TMP/sizes.txt"

cp "$FIXTURE" "$TMP/demo.skillmeat-pack"
sm bundle inspect "$TMP/demo.skillmeat-pack" --json
expect "inspect original fixture exits 0" 0
cp "$OUT" "$TMP/demo.json"
check "inspect fixture name" json_check "$TMP/demo.json" 'd["name"] == "demo-bundle"'
check "inspect fixture default version" json_check "$TMP/demo.json" 'd["version"] == "1.0"'
check "inspect fixture file sizes" json_check "$TMP/demo.json" \
  '[(f["path"], f["size"]) for f in d["artifacts"][0]["files"]] == [("SKILL.md", 160), ("notes.txt", 16), ("scripts/hello.sh", 21)]'

# --- verify ---

sm bundle verify "$TMP/kit.skillmeat-pack"
expect "verify created bundle exits 0" 0
expect_out "verify reports ok" "ok: $TMP/kit.skillmeat-pack verified (2 artifacts"

sm bundle verify "$TMP/demo.skillmeat-pack"
expect "verify original fixture exits 0" 0

sm bundle verify "$TMP/kit.skillmeat-pack" --json
expect "verify --json exits 0" 0
cp "$OUT" "$TMP/verify.json"
check "verify --json ok is true" json_check "$TMP/verify.json" 'd["ok"] is True and d["problems"] == []'

zipedit tamper "$TMP/kit.skillmeat-pack" "$TMP/tampered.skillmeat-pack"
sm bundle verify "$TMP/tampered.skillmeat-pack"
expect_err "verify tampered entry exits 7" 7 "brand-guidelines"
check "verify lists the mismatched artifact" grep -q "mismatch: .*brand-guidelines" "$ERR"
sm bundle verify "$TMP/tampered.skillmeat-pack" --json
expect "verify --json tampered exits 7" 7
cp "$OUT" "$TMP/tampered.json"
check "verify --json tampered names artifact" json_check "$TMP/tampered.json" \
  'd["ok"] is False and len(d["problems"]) == 1 and "brand-guidelines" in d["problems"][0]'

zipedit tamper "$TMP/demo.skillmeat-pack" "$TMP/demo-tampered.skillmeat-pack"
sm bundle verify "$TMP/demo-tampered.skillmeat-pack"
expect_err "verify tampered fixture exits 7" 7 "demo-skill"

zipedit set-field "$TMP/kit.skillmeat-pack" "$TMP/described.skillmeat-pack" description '"changed after signing"'
sm bundle verify "$TMP/described.skillmeat-pack"
expect_err "verify changed manifest field exits 7" 7 "bundle hash"

zipedit set-field "$TMP/kit.skillmeat-pack" "$TMP/retagged.skillmeat-pack" tags '["docs"]'
sm bundle verify "$TMP/retagged.skillmeat-pack"
expect_err "verify changed manifest tags exits 7" 7 "bundle hash"

# --- untrusted archives: rejected by inspect and verify, nothing extracted ---

# reject NAME FILE TEXT: inspect and verify of FILE exit 9 with TEXT in the
# message, and neither writes a file in the working directory or TMPDIR.
reject() {
  local name=$1 file=$2 text=$3 work="$TMP/work-$RANDOM" before
  mkdir -p "$work/tmp"
  cp "$file" "$work/bundle.skillmeat-pack"
  before=$(listing "$work")
  (cd "$work" && TMPDIR="$work/tmp" "$SM" bundle inspect bundle.skillmeat-pack >"$OUT" 2>"$ERR")
  CODE=$?
  expect_err "inspect $name exits 9" 9 "$text"
  if [ "$(listing "$work")" = "$before" ]; then ok "inspect $name extracts nothing"; else
    not_ok "inspect $name extracts nothing" "new paths: $(listing "$work" | tr '\n' ' ')"; fi
  (cd "$work" && TMPDIR="$work/tmp" "$SM" bundle verify bundle.skillmeat-pack >"$OUT" 2>"$ERR")
  CODE=$?
  expect_err "verify $name exits 9" 9 "$text"
  if [ "$(listing "$work")" = "$before" ]; then ok "verify $name extracts nothing"; else
    not_ok "verify $name extracts nothing" "new paths: $(listing "$work" | tr '\n' ' ')"; fi
  rm -rf "$work"
}

KIT="$TMP/kit.skillmeat-pack"
zipedit add-entry "$KIT" "$TMP/bad.pack" "/etc/cron.d/evil"
reject "absolute path entry" "$TMP/bad.pack" "'/etc/cron.d/evil' is an absolute path"
zipedit add-entry "$KIT" "$TMP/bad.pack" "artifacts/skill/brand-guidelines/../../../escape.txt"
reject "dot-dot entry" "$TMP/bad.pack" "has a '..' component"
zipedit add-entry "$KIT" "$TMP/bad.pack" 'artifacts\skill\win.txt'
reject "backslash entry" "$TMP/bad.pack" "contains a backslash"
zipedit add-entry "$KIT" "$TMP/bad.pack" $'artifacts/skill/brand-guidelines/bell\x07.txt'
reject "control character entry" "$TMP/bad.pack" "contains a control character"
zipedit symlink "$KIT" "$TMP/bad.pack"
reject "symlink entry" "$TMP/bad.pack" "is a symbolic link"
zipedit dup "$KIT" "$TMP/bad.pack"
reject "duplicate entry" "$TMP/bad.pack" "appears twice"
zipedit raw-manifest "$KIT" "$TMP/bad.pack" "this is { not json"
reject "manifest not JSON" "$TMP/bad.pack" "manifest.json is not valid JSON"
zipedit raw-manifest "$KIT" "$TMP/bad.pack" "[1, 2, 3]"
reject "manifest not an object" "$TMP/bad.pack" "manifest.json is not a JSON object"
zipedit del-field "$KIT" "$TMP/bad.pack" name
reject "manifest without name" "$TMP/bad.pack" "manifest.json lacks name"
zipedit set-field "$KIT" "$TMP/bad.pack" artifacts '{"skill": 1}'
reject "artifacts not a list" "$TMP/bad.pack" "artifacts is not an array"
zipedit big-manifest "$KIT" "$TMP/bad.pack"
reject "manifest over 4 MiB" "$TMP/bad.pack" "more than the limit of 4194304"
zipedit drop-file "$KIT" "$TMP/bad.pack"
reject "listed file absent" "$TMP/bad.pack" "is missing from the archive"
zipedit bomb "$KIT" "$TMP/bad.pack"
reject "zip bomb" "$TMP/bad.pack" "a ratio above the limit of 200"
printf 'just some text, not an archive\n' >"$TMP/bad.pack"
reject "text file" "$TMP/bad.pack" "not a zip"
: >"$TMP/bad.pack"
reject "empty file" "$TMP/bad.pack" "not a zip archive"
head -c 300 "$KIT" >"$TMP/bad.pack"
reject "truncated archive" "$TMP/bad.pack" "not a zip archive"

sm bundle inspect "$TMP/no-such.skillmeat-pack"
expect_err "inspect missing file exits 3" 3 "no-such.skillmeat-pack"

# --- create errors: no output and no temporary file, existing output kept ---

mkdir -p "$TMP/out" "$TMP/bad-skills/no-skill-md" "$TMP/bad-skills/linked"
printf 'notes only\n' >"$TMP/bad-skills/no-skill-md/notes.md"
cp -r "$BRAND/." "$TMP/bad-skills/linked/"
ln -s /etc/passwd "$TMP/bad-skills/linked/passwd"
printf 'keep me\n' >"$TMP/out/kept.skillmeat-pack"
OUT_BEFORE=$(tree_digest "$TMP/out")

# create_fails NAME CODE TEXT ARGS...: create with ARGS fails with CODE and
# TEXT; neither a new output nor a temporary file appears in $TMP/out, and
# the existing kept.skillmeat-pack is untouched.
create_fails() {
  local name=$1 code=$2 text=$3
  shift 3
  create "$@" -o "$TMP/out/new.skillmeat-pack"
  expect_err "create $name exits $code" "$code" "$text"
  create "$@" -o "$TMP/out/kept.skillmeat-pack"
  if [ "$(tree_digest "$TMP/out")" = "$OUT_BEFORE" ]; then ok "create $name writes nothing"; else
    not_ok "create $name writes nothing" "files: $(listing "$TMP/out" | tr '\n' ' ')"; fi
}

create_fails "folder without SKILL.md" 9 "SKILL.md" "$TMP/bad-skills/no-skill-md" "${META[@]}"
create_fails "symlink in folder" 9 "passwd" "$TMP/bad-skills/linked" "${META[@]}"
create_fails "missing folder" 3 "no-such-skill" "$TMP/bad-skills/no-such-skill" "${META[@]}"
create_fails "invalid name" 9 "bad name!" "$BRAND" --name "bad name!" --version 1 --description d --author a
create_fails "name with slash" 9 "a/b" "$BRAND" --name "a/b" --version 1 --description d --author a
create_fails "missing --version" 2 "--version" "$BRAND" --name ok --description d --author a
create_fails "missing --author" 2 "--author" "$BRAND" --name ok --version 1 --description d
create_fails "no folder" 2 "skill folder" "${META[@]}"
create_fails "unknown option" 2 "--colour" "$BRAND" "${META[@]}" --colour

create "$BRAND" "${META[@]}"
expect_err "create without -o exits 2" 2 "-o"

# --- usage ---

for command in create inspect verify; do
  sm bundle "$command" --help
  expect "bundle $command --help exits 0" 0
  expect_out "bundle $command --help prints usage" "usage: skillmeat bundle $command"
done
sm bundle --help
expect "bundle --help exits 0" 0
sm bundle
expect "bundle without command exits 2" 2
sm bundle unpack x
expect_err "bundle unknown command exits 2" 2 "unknown command 'bundle unpack'"
sm bundle inspect a b
expect_err "inspect two files exits 2" 2 "exactly one bundle file"

finish
