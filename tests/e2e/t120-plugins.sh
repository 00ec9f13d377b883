#!/usr/bin/env bash
# Plug-ins and the installed library. The script installs the build tree
# with 'cmake --install', builds a program and plug-ins against it with
# pkg-config, and serves a vault through a plug-in. Then it checks each way
# a plug-in can fail, while the built-in local vault keeps working.
source "$(dirname "$0")/lib.sh"

PREFIX="$TMP/prefix"
CC=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
CC=${CC:-cc}
# a sanitizer build installs an instrumented library; its users need the runtime too
EXTRA=()
if grep -q '^SKILLMEAT_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  EXTRA=(-fsanitize=address,undefined)
fi

# ---- the installed library ---------------------------------------------

run cmake --install "$BUILD" --prefix "$PREFIX"
expect "cmake --install into a fresh prefix" 0
PC_FILE=$(find "$PREFIX" -name skillmeat.pc | head -1)
check "skillmeat.pc is installed" test -f "$PC_FILE"
PC_DIR=$(dirname "$PC_FILE")
LIBDIR=$(dirname "$PC_DIR")
check "headers are installed" test -f "$PREFIX/include/skillmeat/plugin.h" -a \
  -f "$PREFIX/include/skillmeat/vault.h"
check "libskillmeat.so is installed" test -L "$LIBDIR/libskillmeat.so"
run readelf -d "$LIBDIR/libskillmeat.so"
expect_out "the shared library has a SONAME" "Library soname: [libskillmeat.so.0]"

pc() { PKG_CONFIG_PATH="$PC_DIR" pkg-config "$@"; }
# json_true EXPR: the Python expression EXPR holds for `d`, the last run's JSON output
json_true() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); T = sys.argv[3]
sys.exit(0 if eval(sys.argv[2]) else 1)' "$OUT" "$1" "$TMP"
}
run pc --cflags --libs skillmeat
expect "pkg-config finds skillmeat" 0
expect_out "pkg-config points into the prefix" "-lskillmeat"
run pc --modversion skillmeat
expect_out "pkg-config reports the version" "0.1.0"

nm -D --defined-only "$LIBDIR/libskillmeat.so" | awk '{print $3}' >"$TMP/exports"
check "the library exports sm_vault_open" grep -qx sm_vault_open "$TMP/exports"
check "the library exports sm_plugins_list" grep -qx sm_plugins_list "$TMP/exports"
check "the library hides internal helpers" bash -c "! grep -qx sm_buf_put '$TMP/exports'"
check "the library exports only sm_ names" bash -c "! grep -qv '^sm_' '$TMP/exports'"

# build CMD...: compiles against the installed prefix only
build() {
  local out=$1
  shift
  "$CC" -std=c17 -Wall -Wextra -Werror "${EXTRA[@]}" -o "$out" "$@" \
    -Wl,-rpath,"$LIBDIR" >"$OUT" 2>"$ERR"
  CODE=$?
}

# ---- the example program -----------------------------------------------

make_bundle demo 1.0.0 "$TMP/demo.skillmeat-pack" e2e
build "$TMP/push_pull" "$SRC/examples/push_pull.c" $(pc --cflags --libs skillmeat)
expect "examples/push_pull.c builds with pkg-config" 0
run "$TMP/push_pull" "$TMP/example-vault" "$TMP/demo.skillmeat-pack" "$TMP/example-out"
expect "push_pull pushes and pulls" 0
expect_out "push_pull names the bundle" "pushed demo-v1.0.0"
check "push_pull's copy is byte-identical" cmp "$TMP/demo.skillmeat-pack" \
  "$TMP/example-out/demo-v1.0.0.skillmeat-pack"
check "push_pull stored the bundle in the local vault" \
  test -f "$TMP/example-vault/metadata/demo-v1.0.0.json"

# ---- a plug-in that serves a vault -------------------------------------

mkdir -m 755 "$TMP/plugins"
build "$TMP/plugins/example-dir.so" -shared -fPIC "$SRC/examples/plugin-dir/example_dir.c" \
  $(pc --cflags --libs skillmeat libcrypto)
expect "the example plug-in builds with pkg-config" 0
chmod 644 "$TMP/plugins/example-dir.so"
export SKILLMEAT_PLUGIN_PATH="$TMP/plugins"

sm plugin list
expect "plugin list succeeds" 0
expect_out "plugin list shows the plug-in loaded" "loaded  $TMP/plugins/example-dir.so"
expect_out "plugin list shows its type" "types: example-dir"
expect_out "plugin list shows its ABI" "plug-in ABI 1"
sm plugin list --json
check "plugin list --json is exact" json_true \
  'd == [{"path": T + "/plugins/example-dir.so", "loaded": True, "abi_version": 1, "types": ["example-dir"], "error": None}]'

sm vault add home local "$TMP/local-vault"
expect "a local vault is added" 0
sm vault push "$TMP/demo.skillmeat-pack" --vault home
expect "push to the local vault" 0

sm vault add ex example-dir "$TMP/ex-vault"
expect "vault add accepts a plug-in's type" 0
check "vault add stores the location" grep -qF "location = \"$TMP/ex-vault\"" "$SKILLMEAT_HOME/sharing.toml"
sm vault add ex2 example-dir "$TMP/x" --branch main
expect_err "a plug-in's type takes no --branch" 2 "do not apply to a plug-in's vault type"
sm vault add ex2 example-dir ""
expect_err "a plug-in's type needs a location" 2 "invalid location ''"
check "rejected adds write nothing" bash -c "! grep -q ex2 '$SKILLMEAT_HOME/sharing.toml'"

sm vault push "$TMP/demo.skillmeat-pack" --vault ex
expect "push through the plug-in" 0
check "the plug-in wrote the vault layout" test -f "$TMP/ex-vault/bundles/demo-v1.0.0.skillmeat-pack" \
  -a -f "$TMP/ex-vault/metadata/demo-v1.0.0.json" -a -f "$TMP/ex-vault/index.json"
sm vault ls --vault ex
expect "ls through the plug-in" 0
expect_out "ls lists the pushed bundle" "demo-v1.0.0"
sm vault pull demo-v1.0.0 --vault ex --output "$TMP/ex-out"
expect "pull through the plug-in" 0
check "the pulled copy is byte-identical" cmp "$TMP/demo.skillmeat-pack" \
  "$TMP/ex-out/demo-v1.0.0.skillmeat-pack"
sm vault push "$TMP/demo.skillmeat-pack" --vault ex
expect "pushing it again succeeds" 0
expect_out "pushing it again changes nothing" "unchanged: demo-v1.0.0"
make_bundle demo 1.0.0 "$TMP/demo-other.skillmeat-pack" other
sm vault push "$TMP/demo-other.skillmeat-pack" --vault ex
expect_err "the plug-in rejects a different bundle under the same id" 4 "already exists"
sm vault list
expect_out "vault list shows the plug-in's location" "$TMP/ex-vault"

# a plug-in in $SKILLMEAT_HOME/plugins is found too
mkdir -p "$SKILLMEAT_HOME/plugins"
cp "$TMP/plugins/example-dir.so" "$SKILLMEAT_HOME/plugins/home-copy.so"
run env SKILLMEAT_PLUGIN_PATH= "$SM" plugin list
expect_out "plugin list searches SKILLMEAT_HOME/plugins" "loaded  $SKILLMEAT_HOME/plugins/home-copy.so"
rm -r "$SKILLMEAT_HOME/plugins"

# ---- plug-ins that must not load ---------------------------------------

BAD="$TMP/bad"
mkdir -m 755 "$BAD"
broken() {
  local name=$1 flag=$2
  build "$BAD/$name.so" -shared -fPIC "-D$flag" "$SRC/tests/plugins/broken.c" \
    $(pc --cflags --libs skillmeat)
  expect "the $name plug-in builds" 0
  chmod 644 "$BAD/$name.so"
}
broken abi2 BROKEN_ABI
broken failing-init BROKEN_INIT
broken no-symbols BROKEN_NO_SYMBOLS
broken builtin-type BROKEN_BUILTIN
broken vault-abi BROKEN_VAULT_ABI
cp "$TMP/plugins/example-dir.so" "$BAD/writable.so"
chmod 666 "$BAD/writable.so"
head -c 200 /dev/zero | tr '\0' 'x' >"$BAD/text.so"
ln -s "$TMP/plugins/example-dir.so" "$BAD/link.so"
mkdir -m 755 "$TMP/second"
cp "$TMP/plugins/example-dir.so" "$TMP/second/same-type.so"
mkdir -m 775 "$TMP/group-writable"
cp "$TMP/plugins/example-dir.so" "$TMP/group-writable/other.so"
chmod 775 "$TMP/group-writable"
export SKILLMEAT_PLUGIN_PATH="$TMP/plugins::$BAD:$TMP/second:$TMP/group-writable:relative/dir:"

sm plugin list
expect "plugin list succeeds with broken plug-ins" 0
expect_out "the good plug-in still loads" "loaded  $TMP/plugins/example-dir.so"
expect_out "ABI mismatch names both versions" \
  "plug-in '$BAD/abi2.so' speaks plug-in ABI 2, this skillmeat speaks 1"
expect_out "a failing init shows its message" \
  "plug-in '$BAD/failing-init.so' failed to initialise: the broken back-end is switched off"
expect_out "missing symbols: not a plug-in" \
  "'$BAD/no-symbols.so' is not a skillmeat plug-in: it does not export skillmeat_plugin_abi_version"
expect_out "a built-in type is refused" \
  "plug-in '$BAD/builtin-type.so' failed to initialise: connector type 'local' is built into skillmeat"
expect_out "a wrong vault ABI names both versions" \
  "connector 'broken-vault-abi' is built for vault ABI 99, this skillmeat speaks vault ABI 1"
expect_out "a world-writable file is refused by name" \
  "refused plug-in '$BAD/writable.so': it is writable by group or others"
expect_out "a text file is not loadable" "cannot load plug-in '$BAD/text.so': invalid ELF header"
expect_out "a symbolic link is refused" "refused plug-in '$BAD/link.so': it is a symbolic link"
expect_out "the first plug-in keeps its type" \
  "plug-in '$TMP/second/same-type.so' failed to initialise: connector type 'example-dir' is registered already by plug-in '$TMP/plugins/example-dir.so'"
expect_out "a group-writable directory is refused by name" \
  "refused plug-in directory '$TMP/group-writable': it is writable by group or others"
expect_out "a relative directory is ignored" \
  "ignored plug-in directory 'relative/dir' in SKILLMEAT_PLUGIN_PATH"
check "the ABI of a mismatched plug-in is shown" grep -qF "plug-in ABI 2" "$OUT"
check "the ABI of the no-symbol file is unknown" \
  bash -c "! grep -A1 -F 'no-symbols.so' '$OUT' | grep -q 'plug-in ABI'"
check "plug-ins are listed in search order" \
  bash -c "grep -E '^(loaded|failed)' '$OUT' | head -2 | tail -1 | grep -qF '$BAD/abi2.so'"

sm plugin list --json
check "--json: only the good plug-in loaded" json_true 'len([p for p in d if p["loaded"]]) == 1'
check "--json: the failing init left no types" \
  json_true '[p["types"] for p in d if p["path"].endswith("/failing-init.so")] == [[]]'
check "--json: a failure has no ABI when unknown" \
  json_true '[p["abi_version"] for p in d if p["path"].endswith("/text.so")] == [None]'

# the built-in vault never loads plug-ins, so it shows no plug-in warning
sm vault ls --vault home
expect "the local vault works beside broken plug-ins" 0
expect_out "the local vault lists its bundle" "demo-v1.0.0"
check "the local vault loads no plug-ins" bash -c "! grep -q 'plug-in' '$ERR'"
sm vault pull demo-v1.0.0 --vault home --output "$TMP/home-out"
expect "pull from the local vault beside broken plug-ins" 0

# the good plug-in still serves its vault, and each failure is one warning
sm vault ls --vault ex
expect "the plug-in vault works beside broken plug-ins" 0
expect_out "the plug-in vault lists its bundle" "demo-v1.0.0"
check "each failed plug-in is one warning" test "$(grep -c '^skillmeat: warning: ' "$ERR")" -eq 11

# a type whose plug-in failed stays unknown: its registration was undone
sm vault add nope broken-init "$TMP/nope"
expect_err "vault add rejects the failed plug-in's type" 2 "unknown vault type 'broken-init'"
check "the known types include the plug-in's" grep -qF "known types: example-dir, local" "$ERR"
cat >>"$SKILLMEAT_HOME/sharing.toml" <<EOF

[vault.hand]
type = "broken-init"
location = "$TMP/nope"
EOF
sm vault ls --vault hand
expect_err "a configured vault of a failed type gives a clear error" 9 \
  "vault 'hand' has unknown type 'broken-init'"
check "the error points to plugin list" grep -qF "run 'skillmeat plugin list'" "$ERR"
check "nothing was created for the failed type" test ! -e "$TMP/nope"

# the home vault's data is unchanged by all of this
check "the local vault still holds its bundle" test -f "$TMP/local-vault/bundles/demo-v1.0.0.skillmeat-pack"

# ---- a plug-in written in C++ -------------------------------------------

CXX=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
CXX=${CXX:-$(command -v c++)}
if [ -n "$CXX" ]; then
  mkdir -m 755 "$TMP/cxx"
  "$CXX" -Wall -Wextra -Werror "${EXTRA[@]}" -shared -fPIC -o "$TMP/cxx/cxx.so" \
    "$SRC/tests/plugins/cxx_plugin.cc" $(pc --cflags --libs skillmeat) -Wl,-rpath,"$LIBDIR" \
    >"$OUT" 2>"$ERR"
  CODE=$?
  expect "a C++ plug-in builds" 0
  SKILLMEAT_PLUGIN_PATH="$TMP/cxx" run "$SM" plugin list
  expect_out "a C++ plug-in loads" "loaded  $TMP/cxx/cxx.so"
  expect_out "a C++ plug-in registers its type" "types: example-cxx"
else
  not_ok "a C++ plug-in builds" "no C++ compiler found"
fi

# ---- registrations the loader must reject --------------------------------

# Each variant of this plug-in misbehaves in one way the loader must catch.
cat >"$TMP/odd.c" <<'CSRC'
#include <skillmeat/error.h>
#include <skillmeat/plugin.h>

static int odd_new(sm_vault **out, const sm_vault_config *config, const sm_callbacks *callbacks)
{
	(void)config;
	(void)callbacks;
	*out = NULL;
	return sm_error_set(SM_EINVALID, "not used");
}

SM_PLUGIN_DECLARE();

SM_PLUGIN_EXPORT int skillmeat_plugin_init(const sm_plugin_host *host)
{
#if defined(TWICE)
	host->register_vault(host, "odd-twice", SM_VAULT_ABI_VERSION, odd_new);
	return host->register_vault(host, "odd-twice", SM_VAULT_ABI_VERSION, odd_new);
#elif defined(NO_TYPES)
	(void)host;
	(void)odd_new;
	return 0;
#else
	(void)host;
	(void)odd_new;
	return 3;
#endif
}
CSRC
ODD="$TMP/odd"
mkdir -m 755 "$ODD"
for flag in TWICE NO_TYPES POSITIVE; do
  build "$ODD/$flag.so" -shared -fPIC "-D$flag" "$TMP/odd.c" $(pc --cflags --libs skillmeat)
  expect "odd plug-in $flag builds" 0
done
# a file name that is not UTF-8, and one with a newline
printf 'junk' >"$ODD/$(printf 'bad\xff')-name.so"
printf 'junk' >"$ODD/new
line.so"
chmod 644 "$ODD"/*.so

SKILLMEAT_PLUGIN_PATH="$ODD" run "$SM" plugin list
expect "plugin list reports odd plug-ins" 0
expect_out "a type registered twice names the plug-in itself" \
  "connector type 'odd-twice' is registered twice by the same plug-in"
check "a type registered twice is not blamed on the program" \
  bash -c "! grep -qF 'registered already by the program' '$OUT'"
expect_out "a plug-in without types is refused" \
  "plug-in '$ODD/NO_TYPES.so' registered no connector types"
expect_out "a positive init result without a message is explained" \
  "skillmeat_plugin_init returned 3 without setting a message"
expect_out "a newline in a file name is escaped" "failed  $ODD/new\\x0aline.so"
check "no plug-in of the odd directory loaded" bash -c "! grep -q '^loaded' '$OUT'"

SKILLMEAT_PLUGIN_PATH="$ODD" run "$SM" plugin list --json
expect "plugin list --json reports odd plug-ins" 0
check "--json: five entries" json_true 'len(d) == 5'
check "--json: every entry has a path" json_true 'all(isinstance(p.get("path"), str) for p in d)'
check "--json: every entry has an error" json_true 'all(isinstance(p.get("error"), str) for p in d)'
check "--json: a non-UTF-8 name is escaped" json_true '[p["path"] for p in d if "bad" in p["path"]] == [T + "/odd/bad\\xff-name.so"]'
check "--json: a newline in a name is kept" json_true '[p["path"] for p in d if "line" in p["path"]] == [T + "/odd/new\nline.so"]'

# many broken files give a bounded number of warnings, and plugin list has them all
mkdir -m 755 "$TMP/junk"
for i in $(seq 1 30); do printf 'junk' >"$TMP/junk/junk$i.so"; done
chmod 644 "$TMP/junk"/*.so
SKILLMEAT_PLUGIN_PATH="$TMP/junk" run "$SM" vault ls --vault hand
check "30 broken plug-ins give 20 warnings and a summary" \
  test "$(grep -c '^skillmeat: warning: ' "$ERR")" -eq 21
check "the summary counts the rest" \
  grep -qF "skillmeat: warning: 10 more plug-ins failed to load; run 'skillmeat plugin list'" "$ERR"
SKILLMEAT_PLUGIN_PATH="$TMP/junk" run "$SM" plugin list --json
check "plugin list reports all 30 broken files" json_true 'len(d) == 30'

sm plugin list extra
expect_err "plugin list takes no arguments" 2 "expected 0 arguments"
sm plugin frobnicate
expect_err "an unknown plugin command is a usage error" 2 "unknown command 'plugin frobnicate'"

finish
