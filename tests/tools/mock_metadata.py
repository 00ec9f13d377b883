#!/usr/bin/env python3
"""Mock AWS credential endpoints for the tests, on 127.0.0.1 only.

Serves the container credentials endpoint and IMDSv2 from one port and
keeps a second port that listens but never accepts, for timeout tests.
Prints "PORT SILENT_PORT" on the first line of standard output.

Container endpoint: GET /container/creds, /container/expiring and
/container/badjson (a body that is not JSON). The Authorization header
must equal --token, else HTTP 401. Paths that misbehave after the check:
/container/expired (an Expiration in the past), /container/huge (a
100 KiB body), /container/slow (the body trickles for 8 s),
/container/redirect (HTTP 302 to /container/creds, counted as
"redirect_followed" when followed) and /container/leaky-error (HTTP 500
whose body contains a secret-looking value).

IMDSv2, under an optional path prefix that picks the behaviour
("" normal, "/expiring" credentials that expire in 60 s, "/norole" no
role attached, "/notoken" token PUT refused with 403, "/failcode"
credentials with a Code other than Success):
  PUT  /latest/api/token   needs X-aws-ec2-metadata-token-ttl-seconds
  GET  /latest/meta-data/iam/security-credentials/         role name
  GET  /latest/meta-data/iam/security-credentials/<role>   credentials
The GETs need X-aws-ec2-metadata-token with a token the PUT issued,
else HTTP 401. GET /stats returns the request counts as JSON.
"""
import argparse
import datetime
import http.server
import json
import secrets
import socket
import sys
import threading
import time

ROLE = "skillmeat-test-role"
IMDS_PREFIXES = ("/expiring", "/norole", "/notoken", "/failcode")


def iso_in(seconds):
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tokens = set()
    stats = {"token_put": 0, "token_missing": 0, "role_get": 0, "creds_get": 0,
             "container_get": 0, "container_rejected": 0, "redirect_followed": 0}
    lock = threading.Lock()

    def log_message(self, fmt, *args):
        sys.stderr.write("mock_metadata: " + (fmt % args) + "\n")

    def count(self, key):
        with self.lock:
            self.stats[key] += 1

    def reply(self, status, body, content_type="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def split_prefix(self):
        for prefix in IMDS_PREFIXES:
            if self.path.startswith(prefix + "/"):
                return prefix, self.path[len(prefix):]
        return "", self.path

    def do_PUT(self):
        prefix, path = self.split_prefix()
        length = int(self.headers.get("Content-Length", "0") or "0")
        if length:
            self.rfile.read(length)
        if path != "/latest/api/token":
            return self.reply(404, "not found")
        if prefix == "/notoken":
            return self.reply(403, "forbidden")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            self.count("token_missing")
            return self.reply(400, "missing or invalid token TTL")
        token = "imds-" + secrets.token_hex(16)
        with self.lock:
            self.tokens.add(token)
        self.count("token_put")
        self.reply(200, token)

    def do_GET(self):
        if self.path == "/stats":
            with self.lock:
                return self.reply(200, json.dumps(self.stats), "application/json")
        if self.path.startswith("/container/"):
            return self.container()

        prefix, path = self.split_prefix()
        base = "/latest/meta-data/iam/security-credentials/"
        if not path.startswith(base):
            return self.reply(404, "not found")
        with self.lock:
            known = self.headers.get("X-aws-ec2-metadata-token") in self.tokens
        if not known:
            self.count("token_missing")
            return self.reply(401, "missing or unknown token")

        role = path[len(base):]
        if role == "":
            self.count("role_get")
            if prefix == "/norole":
                return self.reply(404, "not found")
            return self.reply(200, ROLE + "\n")
        if role != ROLE:
            return self.reply(404, "not found")

        self.count("creds_get")
        if prefix == "/failcode":
            body = {"Code": "AssumeRoleUnauthorizedAccess", "LastUpdated": iso_in(0)}
            return self.reply(200, json.dumps(body), "application/json")

        expires = 60 if prefix == "/expiring" else 6 * 3600
        body = {"Code": "Success", "LastUpdated": iso_in(0), "Type": "AWS-HMAC",
                "AccessKeyId": "ASIAIMDSMOCK" + ("EXP" if expires == 60 else "OK"),
                "SecretAccessKey": "imds-secret-" + secrets.token_hex(8),
                "Token": "imds-session-" + secrets.token_hex(8),
                "Expiration": iso_in(expires)}
        self.reply(200, json.dumps(body), "application/json")

    def container(self):
        if self.path.startswith("/container/creds?from=redirect"):
            self.count("redirect_followed")
        path = self.path.split("?")[0]
        if path not in ("/container/creds", "/container/expiring", "/container/badjson",
                        "/container/expired", "/container/huge", "/container/slow",
                        "/container/redirect", "/container/leaky-error"):
            return self.reply(404, "not found")
        if self.headers.get("Authorization") != self.server.container_token:
            self.count("container_rejected")
            return self.reply(401, "bad authorization")
        self.count("container_get")
        if path.endswith("badjson"):
            return self.reply(200, '{"AccessKeyId": "ASIA", "SecretAccessKey": ', "application/json")
        if path.endswith("huge"):
            return self.reply(200, '{"AccessKeyId": "' + "A" * 102400 + '"}', "application/json")
        if path.endswith("redirect"):
            self.send_response(302)
            self.send_header("Location", "/container/creds?from=redirect")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if path.endswith("leaky-error"):
            return self.reply(500, "internal error near secret-0123456789abcdef")
        if path.endswith("slow"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "400")
            self.end_headers()
            try:
                for _ in range(8):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                pass
            self.close_connection = True
            return None
        if path.endswith("expired"):
            body = {"AccessKeyId": "ASIACONTAINEROLD",
                    "SecretAccessKey": "container-secret-" + secrets.token_hex(8),
                    "Token": "container-session-" + secrets.token_hex(8),
                    "Expiration": "2001-02-03T04:05:06Z"}
            return self.reply(200, json.dumps(body), "application/json")

        expires = 60 if path.endswith("expiring") else 3600
        body = {"AccessKeyId": "ASIACONTAINERMOCK",
                "SecretAccessKey": "container-secret-" + secrets.token_hex(8),
                "Token": "container-session-" + secrets.token_hex(8),
                "Expiration": iso_in(expires),
                "RoleArn": "arn:aws:iam::123456789012:role/skillmeat-test"}
        self.reply(200, json.dumps(body), "application/json")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True, help="expected container Authorization header")
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.container_token = args.token
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # never accepted: connects succeed, requests time out
    print(server.server_address[1], silent.getsockname()[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
