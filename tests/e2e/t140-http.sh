#!/usr/bin/env bash
# End-to-end tests of the read-only http vault against nginx over HTTPS
# with a self-signed CA, serving vault directories that the local connector
# wrote: vault add checks, list, filters, info, pull, read-only refusals,
# basic and bearer authentication, CA checks, the ETag cache, redirects, a
# connection cut mid-download, and tampered files on the server.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SRC/tests/servers/servers.sh"

# Settings of this machine or user must not reach skillmeat or curl.
unset GIT_SSL_CAINFO AWS_CA_BUNDLE CURL_CA_BUNDLE SSL_CERT_FILE SSL_CERT_DIR \
  http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
start_https || exit 1
start_https_extra || exit 1
ACCESS_LOG="$TMP/https/access.log"
CUT_PROXY="$SRC/tests/tools/http_cut_proxy.py"

# json_check FILE EXPR: passes when the Python expression EXPR is true for d = the JSON in FILE.
json_check() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
    "$1" "$2" 2>/dev/null
}

# ls_ids ARGS...: the ids that `vault ls --json ARGS` lists, space-separated.
ls_ids() {
  "$SM" vault ls --json "$@" 2>/dev/null |
    python3 -c 'import json, sys; print(" ".join(r["bundle_id"] for r in json.load(sys.stdin)))' 2>/dev/null
}

# ids_are NAME EXPECTED ARGS...: `vault ls ARGS` lists exactly EXPECTED.
ids_are() {
  local name=$1 expected=$2 got
  shift 2
  got=$(ls_ids "$@")
  if [ "$got" = "$expected" ]; then ok "$name"; else not_ok "$name" "ids: '$got'" "expected: '$expected'"; fi
}

# no_secret NAME SECRET: neither stdout nor stderr of the last run contains SECRET.
no_secret() {
  if grep -qF -- "$2" "$OUT" "$ERR"; then not_ok "$1" "output contains the secret"; else ok "$1"; fi
}

# same_tree NAME DIR DIGEST: DIR still has tree_digest DIGEST.
same_tree() {
  if [ "$(tree_digest "$2")" = "$3" ]; then ok "$1"; else not_ok "$1" "files under $2 changed"; fi
}

# log_statuses LOG PATH: the status of every logged GET of PATH, space-separated.
log_statuses() {
  grep -F "\"GET $2 HTTP" "$1" | sed -E 's/.*HTTP\/[0-9.]+" ([0-9]+).*/\1/; s/^([0-9]+) ".*/\1/' |
    tr '\n' ' ' | sed 's/ $//'
}

# --- bundles and the served vaults, written by the local connector ---

B="$TMP/bundles"
mkdir -p "$B"
make_bundle alpha-tools 1.0 "$B/alpha.skillmeat-pack" docs style
make_bundle Beta-Tools 2.0 "$B/beta.skillmeat-pack" docs
make_bundle gamma 0.1 "$B/gamma.skillmeat-pack"
make_bundle delta 1.0 "$B/delta.skillmeat-pack"
mkdir -p "$TMP/skills/big"
cp -r "$SRC/examples/skills/brand-guidelines/." "$TMP/skills/big/"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$TMP/skills/big/random.bin"
"$SM" bundle create "$TMP/skills/big" --name big --version 1.0 --description "large bundle" \
  --author e2e -o "$B/big.skillmeat-pack" >/dev/null
check "fixture bundles were created" test -s "$B/big.skillmeat-pack"

sm vault add static-src local "$HTTPS_STATIC"
expect "add local vault for /static/ exits 0" 0
sm vault add public-src local "$HTTPS_PUBLIC"
expect "add local vault for /public/ exits 0" 0
for f in alpha beta gamma; do
  sm vault push "$B/$f.skillmeat-pack" --vault static-src --no-progress
  expect "push $f into /static/ exits 0" 0
done
for f in alpha gamma big; do
  sm vault push "$B/$f.skillmeat-pack" --vault public-src --no-progress
  expect "push $f into /public/ exits 0" 0
done
STATIC_URL="https://localhost:$HTTPS_PORT/static"
PUBLIC_URL="https://localhost:$HTTPS_PORT/public"
EXTRA="https://localhost:$HTTPS_EXTRA_PORT"

# --- vault add ---

TOML="$SKILLMEAT_HOME/sharing.toml"
sm vault add web http "$STATIC_URL" --ca-bundle "$HTTPS_CA" --set-default
expect "add http vault exits 0" 0
expect_out "add names the vault" "added http vault 'web'"
check "add writes the url" grep -qx "url = \"$STATIC_URL\"" "$TOML"
check "add writes the ca_bundle" grep -qx "ca_bundle = \"$HTTPS_CA\"" "$TOML"
check "add writes no allow_http" bash -c "! grep -q allow_http '$TOML'"
toml_before=$(sha256sum "$TOML")

sm vault add leak http "https://vault:hunter22@localhost:$HTTPS_PORT/static"
expect_err "add rejects user:password" 2 "contains a password or token"
no_secret "add does not echo the password" hunter22
sm vault add leak http "https://vault@localhost:$HTTPS_PORT/static"
expect_err "add rejects user information" 2 "contains user information"
sm vault add leak http "https://localhost:$HTTPS_PORT/static?token=abc123"
expect_err "add rejects a token in the query" 2 "contains a password or token"
sm vault add leak http "https://localhost:$HTTPS_PORT/static?x=1"
expect_err "add rejects a query" 2 "has a query or fragment"
sm vault add leak http "ftp://localhost/static"
expect_err "add rejects ftp" 2 "unsupported scheme 'ftp'"
sm vault add leak http "file:///etc/static"
expect_err "add rejects file" 2 "unsupported scheme 'file'"
sm vault add leak http "http://127.0.0.1:$HTTP_PLAIN_PORT/public"
expect_err "add rejects plain http" 2 "add --allow-http for a server you trust"
sm vault add leak http "$(printf 'https://localhost/st\001atic')"
expect_err "add rejects control characters" 2 "control characters"
sm vault add leak http "https://localhost:99999/static"
expect_err "add rejects a bad port" 2 "invalid host or port"
sm vault add leak http "https:///static"
expect_err "add rejects a missing host" 2 "invalid host or port"
sm vault add leak http "$STATIC_URL" --ca-bundle "$TMP/missing.pem"
expect_err "add rejects a missing CA file" 9 "cannot read CA file"
sm vault add leak local "$TMP/leak" --allow-http
expect_err "add local rejects --allow-http" 2 "applies only to git, s3 and http vaults"
sm vault add leak http "$STATIC_URL" --region eu-west-1
expect_err "add http rejects --region" 2 "do not apply to an http vault"
check "failed adds leave sharing.toml unchanged" test "$(sha256sum "$TOML")" = "$toml_before"
check "failed adds create no directory" test ! -e "$TMP/leak"

sm vault add plain http "http://127.0.0.1:$HTTP_PLAIN_PORT/public/" --allow-http
expect "add plain http with --allow-http exits 0" 0
check "add writes allow_http" grep -qx 'allow_http = true' "$TOML"

# --- authentication ---

sm vault ls
expect_err "ls without credentials exits 6" 6 "has no credentials"
check "ls without credentials prints nothing" test ! -s "$OUT"
printf '%s\n' "$HTTPS_PASSWORD" | "$SM" vault auth web --username vault --password-stdin >/dev/null 2>&1
check "auth stores the password" test $? -eq 0

sm vault add wrong http "$STATIC_URL" --ca-bundle "$HTTPS_CA"
printf 'not-the-password-42\n' | "$SM" vault auth wrong --username vault --password-stdin >/dev/null 2>&1
sm vault ls --vault wrong -v
expect_err "ls with a wrong password exits 6" 6 "check the user name and password or token of vault 'wrong'"
no_secret "wrong password is not printed" not-the-password-42
sm vault pull alpha-tools-v1.0 --vault wrong --output "$TMP/wrong-out" --no-progress
expect_err "pull with a wrong password exits 6" 6 "HTTP 401"
check "pull with a wrong password writes nothing" test ! -e "$TMP/wrong-out"

# --- list, filters, info ---

ids_are "ls lists exactly the pushed ids" "alpha-tools-v1.0 beta-tools-v2.0 gamma-v0.1"
sm vault ls
expect "ls exits 0" 0
expect_out "ls shows the name" "Beta-Tools"
ids_are "ls --filter beta" "beta-tools-v2.0" --filter beta
ids_are "ls --filter glob" "alpha-tools-v1.0 beta-tools-v2.0" --filter '*-tools'
ids_are "ls --tag style" "alpha-tools-v1.0" --tag style
ids_are "ls --tag docs" "alpha-tools-v1.0 beta-tools-v2.0" --tag docs
ids_are "ls --tag unknown" "" --tag nothing

sm vault info beta-tools-v2.0 --json
expect "info exits 0" 0
cp "$OUT" "$TMP/info.json"
check "info name" json_check "$TMP/info.json" 'd["name"] == "Beta-Tools"'
check "info version" json_check "$TMP/info.json" 'd["version"] == "2.0"'
check "info tags" json_check "$TMP/info.json" 'd["tags"] == ["docs"]'
check "info size_bytes" json_check "$TMP/info.json" \
  "d['size_bytes'] == $(stat -c %s "$B/beta.skillmeat-pack")"
check "info sha256" json_check "$TMP/info.json" \
  "d['metadata']['sha256'] == '$(sha256sum "$B/beta.skillmeat-pack" | cut -d' ' -f1)'"
check "info equals the served metadata" json_check "$TMP/info.json" \
  "d == json.load(open('$HTTPS_STATIC/metadata/beta-tools-v2.0.json'))"
sm vault info nothing-v1
expect_err "info of an unknown id exits 3" 3 "bundle 'nothing-v1' not found in vault 'web'"
sm vault info '../index'
expect_err "info rejects an unsafe id" 9 "invalid bundle id"

# --- pull ---

sm vault pull alpha-tools-v1.0 --output "$TMP/out" --no-progress
expect "pull exits 0" 0
check "pull is byte-identical" cmp -s "$B/alpha.skillmeat-pack" "$TMP/out/alpha-tools-v1.0.skillmeat-pack"
sm bundle verify "$TMP/out/alpha-tools-v1.0.skillmeat-pack"
expect "pulled bundle verifies" 0
sm vault pull nothing-v1 --output "$TMP/out-missing" --no-progress
expect_err "pull of an unknown id exits 3" 3 "not found"
check "pull of an unknown id creates no directory" test ! -e "$TMP/out-missing"

# --- read-only ---

static_state=$(tree_digest "$HTTPS_STATIC")
sm vault push "$B/delta.skillmeat-pack" --no-progress
expect_err "push is refused as read-only" 5 "read-only"
sm vault push "$B/alpha.skillmeat-pack" --force --no-progress
expect_err "forced push is refused as read-only" 5 "read-only"
sm vault delete alpha-tools-v1.0
expect_err "delete is refused as read-only" 5 "read-only"
same_tree "refused writes change nothing on the server" "$HTTPS_STATIC" "$static_state"
check "refused writes send no request but GET" bash -c "! grep -Eq '\"(PUT|DELETE|POST)' '$ACCESS_LOG'"

# --- the ETag cache ---

: >"$ACCESS_LOG"
sm vault ls
expect "first ls of a fresh log exits 0" 0
sm vault ls
expect "second ls exits 0" 0
check "second ls gets 304" test "$(log_statuses "$ACCESS_LOG" /static/index.json)" = "304 304"
CACHE_DIR="$SKILLMEAT_HOME/cache/http/$(printf '%s' "$STATIC_URL/" | sha256sum | cut -d' ' -f1)"
check "cache file exists" test -f "$CACHE_DIR/index.cache"
check "cache file is private" test "$(stat -c %a "$CACHE_DIR/index.cache")" = 600
check "cache file names the URL" grep -qx "url $STATIC_URL/" "$CACHE_DIR/index.cache"
check "cache file holds the ETag" grep -Eq '^etag "[0-9a-f]+-[0-9a-f]+"$' "$CACHE_DIR/index.cache"
check "cache file holds no password" bash -c "! grep -qF '$HTTPS_PASSWORD' '$CACHE_DIR/index.cache'"

sm vault push "$B/delta.skillmeat-pack" --vault static-src --no-progress
: >"$ACCESS_LOG"
ids_are "ls after a change sees the new bundle" "alpha-tools-v1.0 beta-tools-v2.0 delta-v1.0 gamma-v0.1"
check "changed index is fetched again" test "$(log_statuses "$ACCESS_LOG" /static/index.json)" = "200"
printf 'skillmeat-http-cache 1\nurl %s/\netag "x"\n\n{broken' "$STATIC_URL" >"$CACHE_DIR/index.cache"
ids_are "ls ignores a damaged cache body" "alpha-tools-v1.0 beta-tools-v2.0 delta-v1.0 gamma-v0.1"
ids_are "ls after the damaged cache" "alpha-tools-v1.0 beta-tools-v2.0 delta-v1.0 gamma-v0.1"

# --- bearer token ---

sm vault add tok http "$EXTRA/bearer/" --ca-bundle "$HTTPS_CA"
sm vault ls --vault tok
expect_err "bearer location without a token exits 6" 6 "has no credentials"
printf '%s\n' "$HTTPS_TOKEN" | "$SM" vault auth tok --password-stdin >/dev/null 2>&1
ids_are "bearer token lists the public ids" "alpha-tools-v1.0 big-v1.0 gamma-v0.1" --vault tok
ids_are "bearer ls again" "alpha-tools-v1.0 big-v1.0 gamma-v0.1" --vault tok
check "bearer requests succeed then revalidate" \
  test "$(log_statuses "$HTTPS_EXTRA_LOG" /bearer/index.json)" = "401 200 304"
check "second bearer ls sends If-None-Match" \
  grep -Eq '^304 "GET /bearer/index.json HTTP/1.1" "[^"-][^"]*"$' "$HTTPS_EXTRA_LOG"
sm vault pull gamma-v0.1 --vault tok --output "$TMP/tok-out" --no-progress
expect "pull with a bearer token exits 0" 0
check "bearer pull is byte-identical" cmp -s "$B/gamma.skillmeat-pack" "$TMP/tok-out/gamma-v0.1.skillmeat-pack"
sm vault add badtok http "$EXTRA/bearer" --ca-bundle "$HTTPS_CA"
printf 'tok-wrong-value\n' | "$SM" vault auth badtok --password-stdin >/dev/null 2>&1
sm vault ls --vault badtok -v
expect_err "wrong bearer token exits 6" 6 "denied (HTTP 401)"
no_secret "wrong token is not printed" tok-wrong-value

# --- CA ---

sm vault add noca http "$PUBLIC_URL"
sm vault ls --vault noca
expect_err "self-signed server without ca_bundle exits 8" 8 "certificate"
expect_err "the TLS failure says to set ca_bundle" 8 "set ca_bundle of vault 'noca'"
sm vault add otherca http "$PUBLIC_URL" --ca-bundle /etc/ssl/certs/ca-certificates.crt
sm vault ls --vault otherca
expect_err "the wrong CA bundle exits 8" 8 "certificate"

# --- plain http and redirects ---

ids_are "plain http with allow_http lists" "alpha-tools-v1.0 big-v1.0 gamma-v0.1" --vault plain
sm vault add down http "$EXTRA/to-http" --ca-bundle "$HTTPS_CA"
: >"$HTTPS_EXTRA_LOG"
sm vault ls --vault down
expect_err "redirect to http:// exits 8" 8 "rejected a redirect from https to plain http://"
check "redirect to http:// was sent" test "$(log_statuses "$HTTPS_EXTRA_LOG" /to-http/index.json)" = 302
check "redirect to http:// is not followed" test -z "$(log_statuses "$HTTPS_EXTRA_LOG" /public/index.json)"
sm vault add moved http "$EXTRA/to-public" --ca-bundle "$HTTPS_CA"
ids_are "redirect to https on another port is followed" "alpha-tools-v1.0 big-v1.0 gamma-v0.1" --vault moved
sm vault pull big-v1.0 --vault moved --output "$TMP/moved-out" --no-progress
expect "pull through a redirect exits 0" 0
check "pull through a redirect is byte-identical" cmp -s "$B/big.skillmeat-pack" "$TMP/moved-out/big-v1.0.skillmeat-pack"
sm vault add moved-auth http "$EXTRA/to-static" --ca-bundle "$HTTPS_CA"
printf '%s\n' "$HTTPS_PASSWORD" | "$SM" vault auth moved-auth --username vault --password-stdin >/dev/null 2>&1
: >"$ACCESS_LOG"
sm vault ls --vault moved-auth
expect_err "credentials do not follow a redirect to another host" 6 "gets no credentials of vault 'moved-auth'"
check "the other host saw the request without a user" grep -Eq '^127\.0\.0\.1 - - .*"GET /static/index.json HTTP/1.1" 401' "$ACCESS_LOG"
sm vault add same-host http "$EXTRA/to-bearer" --ca-bundle "$HTTPS_CA"
printf '%s\n' "$HTTPS_TOKEN" | "$SM" vault auth same-host --password-stdin >/dev/null 2>&1
ids_are "credentials follow a redirect on the same host" "alpha-tools-v1.0 big-v1.0 gamma-v0.1" --vault same-host
sm vault add loop http "$EXTRA/loop" --ca-bundle "$HTTPS_CA"
sm vault ls --vault loop
expect_err "a redirect loop ends" 8 "redirected more than 5 times"

# --- a connection cut mid-download resumes with Range ---

: >"$TMP/cut.log"
_spawn "$TMP/cut.out" python3 "$CUT_PROXY" "$HTTPS_PORT" 1048576 "$TMP/cut.port" "$TMP/cut.log"
for _ in $(seq 1 250); do [ -s "$TMP/cut.port" ] && break; sleep 0.02; done
CUT_PORT=$(cat "$TMP/cut.port")
sm vault add cut http "https://localhost:$CUT_PORT/public" --ca-bundle "$HTTPS_CA"
: >"$ACCESS_LOG"
sm vault pull big-v1.0 --vault cut --output "$TMP/cut-out" --no-progress -v
expect "pull through a cut connection exits 0" 0
check "resumed pull is byte-identical" cmp -s "$B/big.skillmeat-pack" "$TMP/cut-out/big-v1.0.skillmeat-pack"
check "the proxy cut the first connection" grep -q '^cut 1 after 1048576 bytes$' "$TMP/cut.log"
check "the client opened a second connection" grep -qx 'connection 2' "$TMP/cut.log"
check "the second request asked for a range" \
  test "$(log_statuses "$ACCESS_LOG" /public/bundles/big-v1.0.skillmeat-pack | awk '{print $NF}')" = 206
check "the retry was reported" grep -q "retrying GET" "$ERR"

# --- tampered files on the server ---

PUB_BUNDLE="$HTTPS_PUBLIC/bundles/gamma-v0.1.skillmeat-pack"
PUB_META="$HTTPS_PUBLIC/metadata/gamma-v0.1.json"
cp "$PUB_BUNDLE" "$TMP/gamma.orig"
cp "$PUB_META" "$TMP/gamma-meta.orig"
sm vault add pub http "$PUBLIC_URL" --ca-bundle "$HTTPS_CA"

python3 - "$PUB_BUNDLE" <<'PY'
import sys
p = sys.argv[1]
data = bytearray(open(p, "rb").read())
data[len(data) // 2] ^= 0xFF
open(p, "wb").write(data)
PY
sm vault pull gamma-v0.1 --vault pub --output "$TMP/tamper-out" --no-progress
expect_err "tampered bundle exits 7" 7 "is corrupt: SHA-256"
check "tampered bundle writes nothing" test -z "$(ls -A "$TMP/tamper-out" 2>/dev/null)"
cp "$TMP/gamma.orig" "$PUB_BUNDLE"
printf 'extra' >>"$PUB_BUNDLE"
sm vault pull gamma-v0.1 --vault pub --output "$TMP/tamper-out" --no-progress
expect_err "longer bundle exits 7" 7 "larger than the expected $(stat -c %s "$TMP/gamma.orig") bytes"
check "longer bundle writes nothing" test -z "$(ls -A "$TMP/tamper-out" 2>/dev/null)"
# 256 MiB more than the record: the download must stop at the recorded size
cp "$TMP/gamma.orig" "$PUB_BUNDLE"
truncate -s +256M "$PUB_BUNDLE"
: >"$ACCESS_LOG"
sm vault pull gamma-v0.1 --vault pub --output "$TMP/tamper-out" --no-progress
expect_err "much longer bundle exits 7" 7 "is corrupt: the server sent more bytes than its metadata says"
check "much longer bundle writes nothing" test -z "$(ls -A "$TMP/tamper-out" 2>/dev/null)"
sent=$(grep -F '"GET /public/bundles/gamma-v0.1.skillmeat-pack HTTP' "$ACCESS_LOG" |
  sed -E 's/.*HTTP\/[0-9.]+" [0-9]+ ([0-9]+).*/\1/' | sort -n | tail -1)
check "much longer bundle download stopped early (${sent:-?} bytes sent)" \
  test "${sent:-999999999}" -lt $((64 * 1024 * 1024))
cp "$TMP/gamma.orig" "$PUB_BUNDLE"

sed -i 's/"sha256": "[0-9a-f]*"/"sha256": "0000000000000000000000000000000000000000000000000000000000000000"/' "$PUB_META"
sm vault pull gamma-v0.1 --vault pub --output "$TMP/tamper-out" --no-progress
expect_err "tampered metadata sha256 exits 7" 7 "its metadata says 0000"
check "tampered metadata writes nothing" test -z "$(ls -A "$TMP/tamper-out" 2>/dev/null)"
cp "$TMP/gamma-meta.orig" "$PUB_META"
sed -i 's/"bundle_id": "gamma-v0.1"/"bundle_id": "alpha-tools-v1.0"/' "$PUB_META"
sm vault info gamma-v0.1 --vault pub
expect_err "metadata naming another bundle exits 7" 7 "names bundle 'alpha-tools-v1.0', not 'gamma-v0.1'"
python3 - "$PUB_META" <<'PY'
import sys
p = sys.argv[1]
text = open(p).read().rstrip()
open(p, "w").write(text[:-1] + " " * (2 * 1024 * 1024) + "}")
PY
sm vault info gamma-v0.1 --vault pub
expect_err "metadata over 1 MiB exits 7" 7 "of vault 'pub' is larger than 1048576 bytes"
cp "$TMP/gamma-meta.orig" "$PUB_META"
printf '{"bundle_id": ' >"$PUB_META"
sm vault pull gamma-v0.1 --vault pub --output "$TMP/tamper-out" --no-progress
expect_err "truncated metadata exits 7" 7 "metadata of bundle 'gamma-v0.1' in vault 'pub' is invalid"
check "truncated metadata writes nothing" test -z "$(ls -A "$TMP/tamper-out" 2>/dev/null)"
cp "$TMP/gamma-meta.orig" "$PUB_META"
rm "$PUB_BUNDLE"
sm vault pull gamma-v0.1 --vault pub --output "$TMP/tamper-out" --no-progress
expect_err "missing bundle data exits 7" 7 "has metadata but its data"
cp "$TMP/gamma.orig" "$PUB_BUNDLE"
sm vault pull gamma-v0.1 --vault pub --output "$TMP/tamper-out" --no-progress
expect "restored bundle pulls" 0

# --- an untrusted index ---

PUB_INDEX="$HTTPS_PUBLIC/index.json"
cp "$PUB_INDEX" "$TMP/index.orig"
python3 - "$PUB_INDEX" <<'PY'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
d["other-v1"] = d.pop("gamma-v0.1")
json.dump(d, open(p, "w"))
PY
sm vault ls --vault pub
expect_err "index entry under another key exits 7" 7 "entry 'other-v1' names bundle 'gamma-v0.1'"
python3 - "$PUB_INDEX" "$TMP/index.orig" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
r = d.pop("gamma-v0.1")
r["bundle_id"] = "../../etc"
d["../../etc"] = r
json.dump(d, open(sys.argv[1], "w"))
PY
sm vault ls --vault pub
expect_err "index entry with an unsafe id exits 7" 7 "invalid bundle_id '../../etc'"
printf '[1, 2]' >"$PUB_INDEX"
sm vault ls --vault pub
expect_err "index that is not an object exits 7" 7 "is invalid: index.json: not a JSON object"
rm "$PUB_INDEX"
sm vault ls --vault pub
expect_err "missing index.json exits 3" 3 "has no index.json"
cp "$TMP/index.orig" "$PUB_INDEX"
ids_are "restored index lists again" "alpha-tools-v1.0 big-v1.0 gamma-v0.1" --vault pub

# --- a download cut, then redirected ---

# A server on 127.0.0.1 cuts the first download of big-v1.0 after 1 MiB and
# answers the resumed request with a redirect to the whole file. The bytes
# of the cut attempt must not count towards the digest of the new one.
REDIR_PORT=$(free_port)
cat >"$TMP/cut_redirect.py" <<'PY'
import http.server, os, sys
root, port = sys.argv[1], int(sys.argv[2])
state = {"cut": False}
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write(self.command + " " + self.path + " " + (self.headers.get("Range") or "-") + "\n")
    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/cut/bundles/big-v1.0.skillmeat-pack" and self.headers.get("Range"):
            self.send_response(302)
            self.send_header("Location", "/cut-target/bundles/big-v1.0.skillmeat-pack")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        rel = path.split("/", 2)[2] if path.count("/") >= 2 else ""
        file = os.path.join(root, rel)
        if ".." in rel or not os.path.isfile(file):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = open(file, "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if path.startswith("/cut/bundles/") and not state["cut"]:
            state["cut"] = True
            self.wfile.write(data[:1024 * 1024])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
_spawn "$TMP/cut_redirect.log" python3 "$TMP/cut_redirect.py" "$HTTPS_PUBLIC" "$REDIR_PORT"
wait_port "$REDIR_PORT"
sm vault add cutredir http "http://127.0.0.1:$REDIR_PORT/cut" --allow-http
sm vault pull big-v1.0 --vault cutredir --output "$TMP/cutredir-out" --no-progress
expect "pull cut, then redirected exits 0" 0
check "pull cut, then redirected is byte-identical" \
  cmp -s "$B/big.skillmeat-pack" "$TMP/cutredir-out/big-v1.0.skillmeat-pack"
check "the server redirected the resumed request" \
  grep -q '^GET /cut/bundles/big-v1.0.skillmeat-pack bytes=1048576-' "$TMP/cut_redirect.log"

# --- bad settings ---

cat >>"$TOML" <<EOF

[vault.badallow]
type = "http"
url = "$PUBLIC_URL"
allow_http = "yes"

[vault.nourl]
type = "http"

[vault.badca]
type = "http"
url = "$PUBLIC_URL"
ca_bundle = "$TMP/missing.pem"
EOF
sm vault ls --vault badallow
expect_err "invalid allow_http exits 9" 9 "invalid allow_http 'yes'"
sm vault ls --vault nourl
expect_err "missing url exits 9" 9 "has no 'url'"
sm vault ls --vault badca
expect_err "unreadable ca_bundle exits 9" 9 "cannot read ca_bundle"

finish
