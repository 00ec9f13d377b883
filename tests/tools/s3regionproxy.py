#!/usr/bin/env python3
"""HTTP proxy on 127.0.0.1 that plays an S3 bucket living in another region.

It reads the region from the credential scope of each request's SigV4
Authorization header. Requests signed for the bucket's region (--region)
are forwarded to the S3 emulator (--upstream) with their Host header
unchanged, so the emulator checks the signature the client made. Other
requests get the error response of a real store, picked by the key "answer"
of the control file (a JSON object read again for every request):

  redirect    301 PermanentRedirect with an x-amz-bucket-region header
              (HEAD responses carry no body, as on AWS)
  malformed   400 AuthorizationHeaderMalformed naming the region in the body
  bogus       301 naming a region that is not a valid region name
  pingpong    every request, even one signed for --region, gets a 301 that
              names the region it was not signed for

Each request adds a JSON line to --log:
  {"method": "PUT", "path": "/vault/...", "region": "us-east-1", "status": 301}
"""

import argparse
import http.client
import http.server
import json
import os
import re
import socketserver
import sys
import threading

SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/s3/aws4_request")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the emulator")
    ap.add_argument("--region", required=True, help="the region the bucket lives in")
    ap.add_argument("--control", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    up_host, up_port = args.upstream.rsplit(":", 1)
    lock = threading.Lock()

    def answer():
        try:
            with open(args.control, encoding="utf-8") as f:
                return json.load(f).get("answer", "redirect")
        except (OSError, ValueError):
            return "redirect"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def record(self, region, status):
            line = json.dumps({"method": self.command, "path": self.path.split("?")[0],
                               "region": region, "status": status})
            with lock, open(args.log, "a", encoding="utf-8") as f:
                f.write(line + "\n")

        def reply(self, status, headers, body):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def error(self, status, code, named, headers=()):
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code>"
                    "<Message>the bucket is in another region</Message>"
                    "<Region>%s</Region><BucketName>vault</BucketName></Error>"
                    % (code, named)).encode()
            self.reply(status, list(headers) + [("Content-Type", "application/xml")], body)

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            m = SCOPE.search(self.headers.get("Authorization") or "")
            region = m.group(1) if m else ""
            mode = answer()
            if mode == "pingpong":
                named = "ap-south-1" if region == args.region else args.region
                self.error(301, "PermanentRedirect", named, [("x-amz-bucket-region", named)])
                self.record(region, 301)
                return
            if region != args.region:
                if mode == "malformed":
                    self.error(400, "AuthorizationHeaderMalformed", args.region)
                    self.record(region, 400)
                elif mode == "bogus":
                    self.error(301, "PermanentRedirect", "no such/region",
                               [("x-amz-bucket-region", "no such/region")])
                    self.record(region, 301)
                else:
                    self.error(301, "PermanentRedirect", args.region,
                               [("x-amz-bucket-region", args.region)])
                    self.record(region, 301)
                return
            conn = http.client.HTTPConnection(up_host, int(up_port), timeout=60)
            conn.putrequest(self.command, self.path, skip_host=True,
                            skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in ("connection", "proxy-connection", "keep-alive"):
                    conn.putheader(k, v)
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            # a HEAD response keeps the emulator's Content-Length: the object's size
            dropped = ("connection", "transfer-encoding", "keep-alive")
            if self.command != "HEAD":
                dropped += ("content-length",)
            headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in dropped]
            conn.close()
            self.send_response(resp.status)
            for k, v in headers:
                self.send_header(k, v)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.record(region, resp.status)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
