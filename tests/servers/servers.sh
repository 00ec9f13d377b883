# Starts real servers on loopback for one end-to-end script. Source it
# after lib.sh; each start_* function picks a free port, keeps its files
# under $TMP, and registers the server so that the script's exit stops it.
#
#   start_s3     S3 emulator checking SigV4 (key and secret "S3RVER",
#                bucket "vault"): S3_PORT, S3_ENDPOINT
#   start_sshd   sshd for the current user with a pinned host key: SSHD_PORT,
#                SSH_KEY (client key), SSH_KNOWN_HOSTS, SSH_USER, GIT_SSH_REPO
#                (a bare repository with branch main, reachable over SSH)
#   start_https  nginx over HTTPS with a self-signed CA: HTTPS_PORT, HTTPS_CA,
#                HTTPS_GIT (bare repo served by git-http-backend behind basic
#                auth, user "vault", password in HTTPS_PASSWORD), HTTPS_STATIC
#                (directory served as /static/, basic auth as well) and
#                HTTPS_PUBLIC (directory served as /public/ without auth)
#
# A script that cannot start a server reports it and fails; it never skips.

SERVERS_DIR=${SKILLMEAT_TEST_SERVERS:-$SRC/.test-servers}
_server_groups=()

_stop_servers() {
  local pgid
  for pgid in "${_server_groups[@]}"; do
    kill -TERM -- "-$pgid" 2>/dev/null
  done
  sleep 0.1
  for pgid in "${_server_groups[@]}"; do
    kill -KILL -- "-$pgid" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap _stop_servers EXIT

# free_port: prints a TCP port that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT: waits up to 10 s for something to listen on PORT.
wait_port() {
  local i
  for i in $(seq 1 500); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.02
  done
  echo "servers: nothing listens on port $1 after 10 s" >&2
  return 1
}

# _spawn LOG CMD...: runs CMD in its own process group, remembered for cleanup.
_spawn() {
  local log=$1
  shift
  setsid "$@" >"$log" 2>&1 &
  _server_groups+=("$!")
}

start_s3() {
  local js=$SERVERS_DIR/node_modules/@20minutes/s3rver/lib/cli
  if [ ! -e "$js.js" ]; then
    echo "servers: run tests/servers/install.sh first (no s3rver in $SERVERS_DIR)" >&2
    return 1
  fi
  S3_PORT=$(free_port)
  mkdir -p "$TMP/s3data"
  printf "require('%s').parseAsync(process.argv);\n" "$js" > "$TMP/s3rver.js"
  # Node 20 needs the legacy provider for paged listings (MD5 of tokens).
  NODE_OPTIONS=--openssl-legacy-provider _spawn "$TMP/s3rver.log" \
    node "$TMP/s3rver.js" -d "$TMP/s3data" -a 127.0.0.1 -p "$S3_PORT" -s \
    --configure-bucket vault
  S3_ENDPOINT=http://127.0.0.1:$S3_PORT
  wait_port "$S3_PORT"
}

start_sshd() {
  local d=$TMP/sshd
  mkdir -p "$d" /run/sshd
  chmod 700 "$d"
  ssh-keygen -q -t ed25519 -N '' -C skillmeat-test-host -f "$d/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C skillmeat-test-client -f "$d/client_ed25519"
  cp "$d/client_ed25519.pub" "$d/authorized_keys"
  chmod 600 "$d/authorized_keys"
  SSHD_PORT=$(free_port)
  SSH_USER=$(id -un)
  SSH_KEY=$d/client_ed25519
  SSH_KNOWN_HOSTS=$d/known_hosts
  echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$d/host_ed25519.pub")" > "$SSH_KNOWN_HOSTS"
  cat > "$d/sshd_config" <<CFG
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $d/host_ed25519
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
AllowUsers $SSH_USER
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AcceptEnv GIT_PROTOCOL
Subsystem sftp internal-sftp
MaxStartups 64
MaxSessions 64
CFG
  _spawn "$TMP/sshd.log" /usr/sbin/sshd -D -e -f "$d/sshd_config"
  GIT_SSH_REPO=$TMP/git/vault.git
  git init -q --bare -b main "$GIT_SSH_REPO"
  git -C "$GIT_SSH_REPO" config uploadpack.allowFilter true
  git -C "$GIT_SSH_REPO" config uploadpack.allowAnySHA1InWant true
  wait_port "$SSHD_PORT"
}

start_https() {
  local d=$TMP/https
  mkdir -p "$d/repos" "$d/tmp" "$d/static" "$d/public"
  HTTPS_PORT=$(free_port)
  HTTPS_CA=$d/cert.pem
  HTTPS_PASSWORD='s3cret pw'
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1' \
    -keyout "$d/key.pem" -out "$HTTPS_CA" 2>/dev/null
  htpasswd -bcB "$d/htpasswd" vault "$HTTPS_PASSWORD" 2>/dev/null
  HTTPS_GIT=$d/repos/vault.git
  git init -q --bare -b main "$HTTPS_GIT"
  git -C "$HTTPS_GIT" config http.receivepack true
  git -C "$HTTPS_GIT" config uploadpack.allowFilter true
  git -C "$HTTPS_GIT" config uploadpack.allowAnySHA1InWant true
  HTTPS_STATIC=$d/static
  HTTPS_PUBLIC=$d/public
  cat > "$d/nginx.conf" <<CFG
user root;
worker_processes 2;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 256; }
http {
  access_log $d/access.log;
  client_body_temp_path $d/tmp/body;
  fastcgi_temp_path $d/tmp/fcgi;
  proxy_temp_path $d/tmp/proxy;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  types { application/json json; application/octet-stream skillmeat-pack; }
  server {
    listen 127.0.0.1:$HTTPS_PORT ssl;
    server_name localhost;
    ssl_certificate $HTTPS_CA;
    ssl_certificate_key $d/key.pem;
    client_max_body_size 0;
    location ~ ^/git(/.*)\$ {
      auth_basic "vault";
      auth_basic_user_file $d/htpasswd;
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:$d/fcgiwrap.sock;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT $d/repos;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param GIT_PROTOCOL \$http_git_protocol;
      fastcgi_param REMOTE_USER \$remote_user;
      fastcgi_param PATH_INFO \$1;
    }
    location /static/ {
      auth_basic "vault";
      auth_basic_user_file $d/htpasswd;
      alias $d/static/;
    }
    location /public/ {
      alias $d/public/;
    }
  }
}
CFG
  _spawn "$TMP/fcgiwrap.log" /usr/sbin/fcgiwrap -c 4 -s "unix:$d/fcgiwrap.sock"
  _spawn "$TMP/nginx.log" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;'
  wait_port "$HTTPS_PORT" || return 1
  local i
  for i in $(seq 1 250); do
    [ -S "$d/fcgiwrap.sock" ] && return 0
    sleep 0.02
  done
  echo "servers: fcgiwrap did not create its socket" >&2
  return 1
}

# start_https_extra: call after start_https. A second nginx with the same
# certificate for the http vault tests, serving $HTTPS_PUBLIC in several
# ways: HTTPS_EXTRA_PORT (https), HTTP_PLAIN_PORT (plain http), HTTPS_TOKEN,
# and the access log HTTPS_EXTRA_LOG ("status request if-none-match").
#   https /bearer/     only with "Authorization: Bearer $HTTPS_TOKEN"
#   https /to-http/X   302 to http://127.0.0.1:$HTTP_PLAIN_PORT/public/X
#   https /to-public/X 302 to https://localhost:$HTTPS_PORT/public/X (another port)
#   https /to-static/X 302 to https://localhost:$HTTPS_PORT/static/X (basic auth there)
#   https /to-bearer/X 302 to /bearer/X on the same server
#   https /loop/X      302 to /loop/X, forever
#   http  /public/     without auth
start_https_extra() {
  local d=$TMP/https-extra
  mkdir -p "$d/tmp"
  HTTPS_EXTRA_PORT=$(free_port)
  HTTP_PLAIN_PORT=$(free_port)
  HTTPS_TOKEN=tok-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  HTTPS_EXTRA_LOG=$d/access.log
  cat > "$d/nginx.conf" <<CFG
user root;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 64; }
http {
  log_format brief '\$status "\$request" "\$http_if_none_match"';
  access_log $HTTPS_EXTRA_LOG brief;
  client_body_temp_path $d/tmp/body;
  fastcgi_temp_path $d/tmp/fcgi;
  proxy_temp_path $d/tmp/proxy;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  types { application/json json; application/octet-stream skillmeat-pack; }
  server {
    listen 127.0.0.1:$HTTPS_EXTRA_PORT ssl;
    server_name localhost;
    ssl_certificate $HTTPS_CA;
    ssl_certificate_key $TMP/https/key.pem;
    location /bearer/ {
      if (\$http_authorization != "Bearer $HTTPS_TOKEN") { return 401; }
      alias $HTTPS_PUBLIC/;
    }
    location ~ ^/to-http/(.*)\$ { return 302 http://127.0.0.1:$HTTP_PLAIN_PORT/public/\$1; }
    location ~ ^/to-public/(.*)\$ { return 302 https://localhost:$HTTPS_PORT/public/\$1; }
    location ~ ^/to-static/(.*)\$ { return 302 https://localhost:$HTTPS_PORT/static/\$1; }
    location ~ ^/to-bearer/(.*)\$ { return 302 /bearer/\$1; }
    location ~ ^/loop/(.*)\$ { return 302 /loop/\$1; }
  }
  server {
    listen 127.0.0.1:$HTTP_PLAIN_PORT;
    location /public/ { alias $HTTPS_PUBLIC/; }
  }
}
CFG
  _spawn "$TMP/nginx-extra.log" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;'
  wait_port "$HTTPS_EXTRA_PORT" && wait_port "$HTTP_PLAIN_PORT"
}
