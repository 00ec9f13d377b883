#!/usr/bin/env bash
# End-to-end tests of the HTTP sources of the AWS credentials chain: the
# container endpoint and IMDSv2, served by tests/tools/mock_metadata.py on
# 127.0.0.1, plus the order of the chain around them. Every run points
# AWS_EC2_METADATA_SERVICE_ENDPOINT at the mock or sets
# AWS_EC2_METADATA_DISABLED=true, so no metadata address is ever contacted.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$SRC/tests/servers/servers.sh"

RESOLVE="$BUILD/tests/aws_cred_resolve"
CONTAINER_TOKEN="Bearer e2e-container-token-51c2"

unset DBUS_SESSION_BUS_ADDRESS AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
unset AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
unset AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
unset AWS_EC2_METADATA_SERVICE_ENDPOINT AWS_EC2_METADATA_DISABLED
for v in $(env | grep -o '^SKILLMEAT_VAULT_[A-Z0-9_]*'); do unset "$v"; done
export AWS_SHARED_CREDENTIALS_FILE="$TMP/aws-credentials"
export AWS_CONFIG_FILE="$TMP/aws-config"

# --- the mock server ---

_spawn "$TMP/mock.log" python3 "$SRC/tests/tools/mock_metadata.py" --token "$CONTAINER_TOKEN"
PORT=
for _ in $(seq 1 250); do
  read -r PORT SILENT_PORT < <(head -n1 "$TMP/mock.log" 2>/dev/null | grep -E '^[0-9]+ [0-9]+$')
  [ -n "$PORT" ] && break
  sleep 0.02
done
if [ -z "$PORT" ]; then
  echo "mock_metadata.py did not start:" >&2
  cat "$TMP/mock.log" >&2
  exit 1
fi
MOCK="http://127.0.0.1:$PORT"
DISABLED=(AWS_EC2_METADATA_DISABLED=true)
IMDS=(AWS_EC2_METADATA_SERVICE_ENDPOINT="$MOCK")

# resolve VAR=VALUE... -- [ARGS...]: runs aws_cred_resolve for vault "bucket" with extra variables.
resolve() {
  local vars=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do vars+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  run env "${vars[@]}" "$RESOLVE" bucket "$@"
}

# stat_of NAME: prints one request counter of the mock.
stat_of() {
  python3 -c 'import json, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
print(json.load(opener.open(sys.argv[1] + "/stats"))[sys.argv[2]])' "$MOCK" "$1"
}

# expect_line NAME LINE: stdout of the last run has exactly this line.
expect_line() {
  if grep -qxF -- "$2" "$OUT"; then ok "$1"; else not_ok "$1" "stdout lacks line: $2"; fi
}

# expect_fail NAME TEXT: the last run failed (exit 1) with TEXT on its error line.
expect_fail() {
  if [ "$CODE" -ne 1 ]; then
    not_ok "$1" "exit code $CODE, expected 1"
  elif [ "$(grep -c '^error ' "$ERR")" -ne 1 ]; then
    not_ok "$1" "expected exactly one error line"
  elif ! grep '^error ' "$ERR" | grep -qF -- "$2"; then
    not_ok "$1" "error line lacks: $2"
  else
    ok "$1"
  fi
}

# no_secret NAME: no secret or session token of the mock in the last run's output.
no_secret() {
  if grep -qE 'secret-[0-9a-f]|session-[0-9a-f]|e2e-container-token' "$OUT" "$ERR"; then
    not_ok "$1" "a secret value was printed"
  else
    ok "$1"
  fi
}

# lacks TEXT FILE...: none of the files contains TEXT.
lacks() {
  local text=$1
  shift
  ! grep -qF -- "$text" "$@"
}

# between VALUE MIN MAX: VALUE is a number from MIN to MAX.
between() {
  [[ "$1" =~ ^-?[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]
}

millis() { echo $(( $(date +%s%N) / 1000000 )); }

# --- container credentials ---

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
expect "container with token succeeds" 0
expect_line "container is the source" "source container"
expect_line "container access key id" "access_key_id ASIACONTAINERMOCK"
expect_line "container session token present" "session_token yes"
expect_line "container expiry present" "expires yes"
expect_line "container credentials not expiring" "expiring no"
check "verbose message names the container" grep -qxF "debug: using AWS credentials from container" "$ERR"
no_secret "container run prints no secret"
check "container request counted" [ "$(stat_of container_get)" -eq 1 ]

printf '%s\n' "$CONTAINER_TOKEN" > "$TMP/token"
chmod 600 "$TMP/token"
resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$TMP/token" AWS_CONTAINER_AUTHORIZATION_TOKEN="Bearer wrong"
expect "container token file wins over the variable" 0
expect_line "token file gives container credentials" "access_key_id ASIACONTAINERMOCK"

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="Bearer e2e-container-token-wrong"
expect_fail "wrong container token fails" "error authentication: container credentials endpoint '$MOCK' rejected the request with HTTP 401; check AWS_CONTAINER_AUTHORIZATION_TOKEN"
check "wrong token reached the endpoint" [ "$(stat_of container_rejected)" -eq 1 ]
check "wrong token printed nothing on stdout" [ ! -s "$OUT" ]
no_secret "wrong token is not printed"

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/creds"
expect_fail "container without token fails" "rejected the request with HTTP 401"

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$TMP/no-such-token"
expect_fail "missing token file fails" "error not found: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"

: > "$TMP/empty-token"
resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$TMP/empty-token"
expect_fail "empty token file fails" "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE '$TMP/empty-token' is empty"

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="http://192.0.2.1:$PORT/container/creds"
expect_fail "plain http to another host is rejected" "uses plain http to '192.0.2.1', which is allowed only for loopback"

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/missing" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
expect_fail "container 404 fails" "error network: container credentials endpoint '$MOCK' returned HTTP 404"

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/badjson" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
expect_fail "container invalid JSON fails" "error invalid input: the container credentials endpoint returned invalid JSON"

# endpoints that misbehave after accepting the token
resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/expired" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
expect_fail "expired container credentials fail" "error authentication: the container credentials endpoint returned credentials that expired at 2001-02-03T04:05:06Z"
check "expired credentials print nothing on stdout" [ ! -s "$OUT" ]
no_secret "expired credentials are not printed"

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/redirect" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
expect_fail "a container redirect is not followed" "error network: container credentials endpoint '$MOCK' returned HTTP 302"
check "the redirect target was never requested" [ "$(stat_of redirect_followed)" -eq 0 ]

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/huge" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
expect_fail "a huge container body fails" "container credentials endpoint '$MOCK': response larger than 65536 bytes"

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/leaky-error" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
expect_fail "a container 500 fails" "returned HTTP 500"
no_secret "a container error body is not printed"

START=$(millis)
resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/slow" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
ELAPSED=$(( $(millis) - START ))
expect_fail "a trickling container body times out" "error network: cannot get container credentials from '$MOCK'"
# two attempts of 5 s each
check "a trickling body is cut after two attempts" between "$ELAPSED" 9000 13000

CLOSED=$(free_port)
resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$CLOSED/creds"
expect_fail "container endpoint not listening fails" "error network: cannot get container credentials from 'http://127.0.0.1:$CLOSED'"

resolve "${DISABLED[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/expiring" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN" -- --margin 300
expect "expiring container credentials resolve" 0
expect_line "container credentials within the margin are expiring" "expiring yes"
left=$(awk '$1 == "expires_in" { print $2 }' "$OUT")
check "container expiry is about 60 s away" between "$left" 50 60

# --- IMDSv2 ---

puts=$(stat_of token_put)
resolve "${IMDS[@]}"
expect "IMDSv2 succeeds" 0
expect_line "IMDS is the source" "source instance metadata"
expect_line "IMDS access key id" "access_key_id ASIAIMDSMOCKOK"
expect_line "IMDS session token present" "session_token yes"
expect_line "IMDS expiry present" "expires yes"
expect_line "IMDS credentials not expiring" "expiring no"
left=$(awk '$1 == "expires_in" { print $2 }' "$OUT")
check "IMDS expiry is about 6 h away" between "$left" 21590 21600
check "IMDS token was requested with PUT" [ "$(stat_of token_put)" -eq $((puts + 1)) ]
check "IMDS requests all carried the token" [ "$(stat_of token_missing)" -eq 0 ]
check "IMDS role and credentials fetched" [ "$(stat_of creds_get)" -eq 1 ]
check "verbose message names IMDS" grep -qxF "debug: using AWS credentials from instance metadata" "$ERR"
no_secret "IMDS run prints no secret"

resolve AWS_EC2_METADATA_SERVICE_ENDPOINT="$MOCK/"
expect "IMDS endpoint with a trailing slash works" 0

resolve AWS_EC2_METADATA_SERVICE_ENDPOINT="$MOCK/expiring" -- --margin 300
expect "expiring IMDS credentials resolve" 0
expect_line "IMDS credentials within the margin are expiring" "expiring yes"
resolve AWS_EC2_METADATA_SERVICE_ENDPOINT="$MOCK/expiring" -- --margin 30
expect_line "IMDS credentials outside a short margin are not expiring" "expiring no"

puts=$(stat_of token_put)
resolve "${IMDS[@]}" AWS_EC2_METADATA_DISABLED=true
expect_fail "IMDS disabled finds nothing" "error authentication: no AWS credentials found"
expect_fail "IMDS disabled is named" "instance metadata (disabled by AWS_EC2_METADATA_DISABLED)"
check "IMDS disabled sends no request" [ "$(stat_of token_put)" -eq "$puts" ]
resolve "${IMDS[@]}" AWS_EC2_METADATA_DISABLED=TRUE
expect_fail "IMDS disabled is case-insensitive" "disabled by AWS_EC2_METADATA_DISABLED"

roles=$(stat_of role_get)
resolve AWS_EC2_METADATA_SERVICE_ENDPOINT="$MOCK/notoken"
expect_fail "IMDS refusing the token is not used" "instance metadata at '$MOCK' (token request returned HTTP 403)"
check "no IMDSv1 request after a refused token" [ "$(stat_of role_get)" -eq "$roles" ]

resolve AWS_EC2_METADATA_SERVICE_ENDPOINT="$MOCK/norole"
expect_fail "IMDS without a role finds nothing" "instance metadata (no IAM role attached)"

resolve AWS_EC2_METADATA_SERVICE_ENDPOINT="$MOCK/failcode"
expect_fail "IMDS credentials without Success fail" "error authentication: instance metadata has no usable credentials for IAM role 'skillmeat-test-role' (Code is not Success)"

start=$(millis)
resolve AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$SILENT_PORT"
elapsed=$(( $(millis) - start ))
echo "     IMDS that accepts but never answers: failed after $elapsed ms"
expect_fail "silent IMDS finds nothing" "instance metadata at 'http://127.0.0.1:$SILENT_PORT' (timed out, 2 attempts)"
check "silent IMDS fails within 3 s" [ "$elapsed" -lt 3000 ]
check "silent IMDS waited for both attempts" [ "$elapsed" -ge 1800 ]

start=$(millis)
resolve AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$CLOSED"
elapsed=$(( $(millis) - start ))
echo "     IMDS port closed: failed after $elapsed ms"
expect_fail "closed IMDS port finds nothing" "instance metadata at 'http://127.0.0.1:$CLOSED' (cannot connect, 2 attempts)"
check "closed IMDS port fails within 1 s" [ "$elapsed" -lt 1000 ]

# --- order of the chain around the HTTP sources ---

gets=$(stat_of container_get)
resolve "${IMDS[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN" AWS_ACCESS_KEY_ID=AKIAE2EENVIRONMENT \
  AWS_SECRET_ACCESS_KEY=e2e-env-secret
expect_line "environment wins over container and IMDS" "source environment"
check "environment hit sends no container request" [ "$(stat_of container_get)" -eq "$gets" ]

printf '[default]\naws_access_key_id = AKIAE2EPROFILE\naws_secret_access_key = e2e-profile-secret\n' \
  > "$AWS_SHARED_CREDENTIALS_FILE"
resolve "${IMDS[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
expect_line "profile wins over container" "source profile 'default'"
expect_line "profile access key id" "access_key_id AKIAE2EPROFILE"
check "profile output hides the secret" lacks e2e-profile-secret "$OUT" "$ERR"
rm -f "$AWS_SHARED_CREDENTIALS_FILE"

puts=$(stat_of token_put)
resolve "${IMDS[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
expect_line "container wins over IMDS" "source container"
check "container hit sends no IMDS request" [ "$(stat_of token_put)" -eq "$puts" ]

resolve "${IMDS[@]}" AWS_CONTAINER_CREDENTIALS_FULL_URI="$MOCK/container/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="Bearer e2e-container-token-wrong"
expect_fail "broken container does not fall through to IMDS" "rejected the request with HTTP 401"

finish
