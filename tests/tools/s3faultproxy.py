#!/usr/bin/env python3
"""HTTP/1.1 proxy on 127.0.0.1 that injects faults between an S3 client and server.

The end-to-end tests and benchmarks put it between skillmeat and the S3
emulator. It understands just enough HTTP/1.1 to find request and response
boundaries (Content-Length, chunked bodies, bodies that end at close), so it
can count requests and body bytes and damage whole requests:

  reset       read the request head and up to half of its body, then close the
              client connection with a TCP RST, so the server never receives it
  stall       read the request head, wait --stall-seconds, then reset
  503         respond 503 SlowDown without Retry-After
  503-retry   respond 503 SlowDown with "Retry-After: --retry-after"
  cut         forward the request, then send the client only half of the
              response (half the body, or half the head when there is no body)
              and reset; the server has carried the request out
  grow        forward the request, then send the response with GROW_BYTES
              more body bytes than the server sent (Content-Length raised to
              match), as a hostile store would
  list-loop   respond to the request with a truncated ListObjectsV2 page whose
              NextContinuationToken is always "loop", as a broken store would
  list-dup    forward the request, then send the response body with every
              <Contents> element of a listing twice
  no-range    forward the request without its Range and If-Range headers, so
              the server sends the whole object, as a store without range
              support would
  etag        forward the request, then send the response with another ETag,
              as a store would after the object was replaced
  416         respond 416 Range Not Satisfiable to a request with a Range
              header, as a store would for an object shorter than the
              range; other requests are forwarded

Requests that pass the --methods and --match filters are numbered 1, 2, ...
over all connections (from 1 again whenever the control file changes). With
--pattern even, request k is damaged when ceil(k * share) > ceil((k - 1) *
share): the first one is, and two damaged requests never follow each other
while share <= 0.5. With --pattern random, each request is damaged with
probability share (seeded by --seed). Damaged requests take the fault kinds
of --faults in turn.

Every request gets one JSON line in --log, written when it ends:
  {"n": 7, "conn": 3, "method": "PUT", "target": "/vault/x?partNumber=2&...",
   "status": 200, "up": 5242880, "down": 0, "fault": null, "start": 0.52, "t": 1.234}
"up" counts request body bytes read from the client, "down" response body
bytes sent to the client, "status" is the status the client saw (0 when it
saw none), "start" the seconds from proxy start to the request head and "t"
the seconds the request took. A request with a Range header also gets
"range". Accepted connections get {"event": "accept", "conn": N}.

--control FILE names a JSON object re-read whenever the file changes; its
keys "faults", "share", "pattern", "rate", "methods", "match" and
"stall_seconds" replace the options of the same name, so one proxy can serve several test phases.
"""

import argparse
import json
import math
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time

FAULT_KINDS = ("reset", "stall", "503", "503-retry", "cut", "grow", "list-loop",
               "list-dup", "no-range", "etag", "416")
GROW_BYTES = 1024 * 1024
CHUNK = 65536
MAX_HEAD = 65536


class ProxyError(Exception):
    """The connection cannot continue: a peer closed it or sent bad HTTP."""


class Settings:
    """Fault settings, shared by all connection threads and guarded by a lock."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.faults = parse_faults(args.faults)
        self.share = args.share
        self.pattern = args.pattern
        self.rate = args.rate
        self.methods = parse_methods(args.methods)
        self.match = args.match
        self.stall_seconds = args.stall_seconds
        self.retry_after = args.retry_after
        self.control = args.control
        self.control_mtime = None
        self.random = random.Random(args.seed)
        self.counter = 0
        self.damaged = 0
        self.start = time.monotonic()

    def reload(self):
        """Re-reads the control file when its modification time changed."""
        if not self.control:
            return
        try:
            mtime = os.stat(self.control).st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self.control_mtime:
            return
        with open(self.control, encoding="utf-8") as f:
            data = json.load(f)
        self.control_mtime = mtime
        self.damaged = 0
        if "faults" in data:
            self.faults = parse_faults(data["faults"])
        if "share" in data:
            self.share = float(data["share"])
        if "pattern" in data:
            self.pattern = data["pattern"]
        if "rate" in data:
            self.rate = int(data["rate"])
        if "methods" in data:
            self.methods = parse_methods(data["methods"])
        if "match" in data:
            self.match = data["match"]
        if "stall_seconds" in data:
            self.stall_seconds = float(data["stall_seconds"])

    def next_request(self, method, target):
        """Numbers the next request and returns (number, fault kind or None)."""
        with self.lock:
            self.reload()
            self.counter += 1
            n = self.counter
            if not self.faults or self.share <= 0:
                return n, None
            if self.methods and method not in self.methods:
                return n, None
            if self.match and self.match not in target:
                return n, None
            # the share applies to the requests that pass the filters
            self.damaged += 1
            k = self.damaged
            if self.pattern == "random":
                if self.random.random() >= self.share:
                    return n, None
                return n, self.faults[self.random.randrange(len(self.faults))]
            hits = math.ceil(k * self.share - 1e-9)
            if hits <= math.ceil((k - 1) * self.share - 1e-9):
                return n, None
            return n, self.faults[(hits - 1) % len(self.faults)]


def parse_faults(text):
    kinds = [k for k in (text or "").replace(" ", "").split(",") if k]
    for k in kinds:
        if k not in FAULT_KINDS:
            raise SystemExit(f"s3faultproxy: unknown fault '{k}'; known: {', '.join(FAULT_KINDS)}")
    return kinds


def parse_methods(text):
    return {m.upper() for m in (text or "").split(",") if m}


class Log:
    """Appends one JSON line per event and flushes it at once."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8") if path else None

    def write(self, record):
        if not self.file:
            return
        with self.lock:
            self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.file.flush()


class Reader:
    """Buffered reads from a socket, by line, by count or up to close."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(CHUNK)
        if not data:
            raise ProxyError("peer closed the connection")
        self.buf += data

    def head(self):
        """Returns the bytes of one message head up to and including the empty line."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise ProxyError("message head too long")
            self.fill()
        end = self.buf.index(b"\r\n\r\n") + 4
        head, self.buf = self.buf[:end], self.buf[end:]
        return head

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise ProxyError("chunk line too long")
            self.fill()
        end = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:end], self.buf[end:]
        return line

    def some(self, limit):
        """Returns between 1 and `limit` bytes."""
        if not self.buf:
            self.fill()
        piece, self.buf = self.buf[:limit], self.buf[limit:]
        return piece


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    start = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return start, headers


def header(headers, name):
    name = name.lower()
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def build_head(start, headers):
    text = start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return text.encode("latin-1")


def body_framing(headers):
    """Returns ("chunked", None), ("length", n) or ("none", 0) for a request."""
    te = header(headers, "Transfer-Encoding")
    if te and "chunked" in te.lower():
        return "chunked", None
    length = header(headers, "Content-Length")
    if length is not None:
        return "length", int(length)
    return "none", 0


def reset(sock):
    """Closes `sock` so that the peer sees a TCP RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Throttle:
    """Sleeps so that bytes passed through stay below `rate` bytes a second."""

    def __init__(self, rate):
        self.rate = rate
        self.start = time.monotonic()
        self.count = 0

    def passed(self, n):
        if not self.rate:
            return
        self.count += n
        ahead = self.count / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


def copy_body(reader, framing, length, send, limit=None, rate=0):
    """Copies one body from `reader` to `send`, returning the bytes of payload read.

    With `limit`, stops after that many payload bytes and returns early.
    `send` may be None to discard the body.
    """
    total = 0
    throttle = Throttle(rate)

    def emit(data):
        if send:
            send(data)

    if framing == "length":
        while total < length:
            want = length - total
            if limit is not None:
                want = min(want, limit - total)
                if want <= 0:
                    return total
            piece = reader.some(min(want, CHUNK))
            emit(piece)
            total += len(piece)
            throttle.passed(len(piece))
        return total
    if framing == "chunked":
        while True:
            size_line = reader.line()
            size = int(size_line.split(b";")[0].strip(), 16)
            emit(size_line)
            if size == 0:
                while True:
                    trailer = reader.line()
                    emit(trailer)
                    if trailer == b"\r\n":
                        return total
            left = size
            while left > 0:
                if limit is not None and total >= limit:
                    return total
                piece = reader.some(min(left, CHUNK))
                emit(piece)
                left -= len(piece)
                total += len(piece)
                throttle.passed(len(piece))
            emit(reader.line())
    if framing == "close":
        while True:
            try:
                piece = reader.some(CHUNK)
            except ProxyError:
                return total
            emit(piece)
            total += len(piece)
            if limit is not None and total >= limit:
                return total
    return total


SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")

LIST_LOOP = (b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><IsTruncated>true'
             b"</IsTruncated><KeyCount>0</KeyCount><NextContinuationToken>loop"
             b"</NextContinuationToken></ListBucketResult>")


class Connection(threading.Thread):
    def __init__(self, number, client, upstream, settings, log):
        super().__init__(daemon=True)
        self.number = number
        self.client = client
        self.upstream_addr = upstream
        self.server = None
        self.settings = settings
        self.log = log

    def run(self):
        self.log.write({"event": "accept", "conn": self.number})
        try:
            self.serve()
        except (ProxyError, OSError, ValueError):
            pass
        finally:
            for sock in (self.client, self.server):
                if sock:
                    try:
                        sock.close()
                    except OSError:
                        pass

    def connect_upstream(self):
        if self.server is None:
            self.server = socket.create_connection(self.upstream_addr, timeout=300)
            self.server_reader = Reader(self.server)

    def serve(self):
        self.client.settimeout(300)
        reader = Reader(self.client)
        while True:
            try:
                head = reader.head()
            except ProxyError:
                return
            if not self.handle(reader, head):
                return

    def handle(self, reader, head):
        """Relays one request and its response; returns False to close the connection."""
        start, headers = parse_head(head)
        method, target = start.split(" ")[0], start.split(" ")[1]
        n, fault = self.settings.next_request(method, target)
        framing, length = body_framing(headers)
        expect = (header(headers, "Expect") or "").lower() == "100-continue"
        began = time.monotonic()
        record = {"n": n, "conn": self.number, "method": method, "target": target,
                  "status": 0, "up": 0, "down": 0, "fault": fault,
                  "start": round(began - self.settings.start, 4)}
        if header(headers, "Range"):
            record["range"] = header(headers, "Range")
        try:
            return self.relay(reader, start, headers, method, framing, length, expect,
                              fault, record)
        finally:
            if not record.pop("logged", False):
                record["t"] = round(time.monotonic() - began, 4)
                self.log.write(record)

    def relay(self, reader, start, headers, method, framing, length, expect, fault, record):
        client = self.client
        if fault == "reset":
            if expect:
                client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if framing == "length" and length:
                record["up"] = copy_body(reader, framing, length, None, limit=length // 2)
            reset(client)
            self.client = None
            return False
        if fault == "stall":
            # logged before the wait, so a test sees the stall while it lasts
            record["t"] = 0
            self.log.write(record)
            record["logged"] = True
            time.sleep(self.settings.stall_seconds)
            reset(client)
            self.client = None
            return False
        if fault in ("503", "503-retry"):
            extra = [("Retry-After", str(self.settings.retry_after))] if fault == "503-retry" else []
            keep = not expect or framing == "none"
            if keep:
                record["up"] = copy_body(reader, framing, length, None)
            head = build_head("HTTP/1.1 503 Slow Down",
                              [("Content-Type", "application/xml"),
                               ("Content-Length", str(len(SLOWDOWN))),
                               ("Connection", "keep-alive" if keep else "close")] + extra)
            client.sendall(head + SLOWDOWN)
            record["status"] = 503
            record["down"] = len(SLOWDOWN)
            return keep
        if fault == "416" and header(headers, "Range"):
            record["up"] = copy_body(reader, framing, length, None)
            client.sendall(build_head("HTTP/1.1 416 Requested Range Not Satisfiable",
                                      [("Content-Length", "0")]))
            record["status"] = 416
            record["down"] = 0
            return True

        if fault == "list-loop":
            record["up"] = copy_body(reader, framing, length, None)
            client.sendall(build_head("HTTP/1.1 200 OK",
                                      [("Content-Type", "application/xml"),
                                       ("Content-Length", str(len(LIST_LOOP)))]) + LIST_LOOP)
            record["status"] = 200
            record["down"] = len(LIST_LOOP)
            return True

        # forward the request; the proxy sends 100 Continue to the client itself
        self.connect_upstream()
        dropped = {"expect", "range", "if-range"} if fault == "no-range" else {"expect"}
        forwarded = [(k, v) for k, v in headers if k.lower() not in dropped]
        self.server.sendall(build_head(start, forwarded))
        if expect:
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        record["up"] = copy_body(reader, framing, length, self.server.sendall,
                                 rate=self.settings.rate)

        # read the response, skipping interim 100 responses
        while True:
            rhead = self.server_reader.head()
            rstart, rheaders = parse_head(rhead)
            status = int(rstart.split(" ")[1])
            if status != 100:
                break
        record["status"] = status
        if method == "HEAD" or status in (204, 304):
            rframing, rlength = "none", 0
        else:
            rframing, rlength = body_framing(rheaders)
            if rframing == "none":
                rframing = "close"
        closes = (header(rheaders, "Connection") or "").lower() == "close" or rframing == "close"

        if fault == "cut":
            if rframing == "length" and rlength > 1:
                client.sendall(rhead)
                record["down"] = copy_body(self.server_reader, rframing, rlength, client.sendall,
                                           limit=rlength // 2)
            else:
                client.sendall(rhead[:len(rhead) // 2])
                record["status"] = 0
            reset(client)
            self.client = None
            return False

        if fault == "grow" and rframing == "length":
            grown = [(k, str(rlength + GROW_BYTES) if k.lower() == "content-length" else v)
                     for k, v in rheaders]
            client.sendall(build_head(rstart, grown))
            record["down"] = copy_body(self.server_reader, rframing, rlength, client.sendall)
            try:
                for _ in range(GROW_BYTES // CHUNK):
                    client.sendall(b"\0" * CHUNK)
                    record["down"] += CHUNK
            except OSError:
                # the client hung up once it had enough
                return False
            return not closes

        if fault == "list-dup" and rframing == "length":
            parts = []
            copy_body(self.server_reader, rframing, rlength, parts.append)
            body = re.sub(rb"(<Contents>.*?</Contents>)", rb"\1\1", b"".join(parts), flags=re.S)
            grown = [(k, str(len(body)) if k.lower() == "content-length" else v)
                     for k, v in rheaders]
            client.sendall(build_head(rstart, grown) + body)
            record["down"] = len(body)
            return not closes

        if fault == "etag":
            changed = [(k, '"replaced-object"' if k.lower() == "etag" else v) for k, v in rheaders]
            client.sendall(build_head(rstart, changed))
            record["down"] = copy_body(self.server_reader, rframing, rlength, client.sendall)
            return not closes

        client.sendall(rhead)
        record["down"] = copy_body(self.server_reader, rframing, rlength, client.sendall)
        return not closes


def main():
    parser = argparse.ArgumentParser(description="fault-injecting HTTP proxy for S3 tests")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--port-file", help="file that receives the port once listening")
    parser.add_argument("--log", help="JSON-lines log of requests")
    parser.add_argument("--faults", default="", help="comma-separated: " + ", ".join(FAULT_KINDS))
    parser.add_argument("--share", type=float, default=0.0, help="share of requests damaged")
    parser.add_argument("--pattern", choices=("even", "random"), default="even")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--methods", default="", help="damage only these methods (comma list)")
    parser.add_argument("--match", default="", help="damage only targets containing this text")
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    parser.add_argument("--retry-after", type=int, default=1, help="seconds in Retry-After")
    parser.add_argument("--rate", type=int, default=0,
                        help="max request body bytes a second per connection (0: no limit)")
    parser.add_argument("--control", help="JSON file whose keys override the fault options")
    args = parser.parse_args()

    host, _, port = args.upstream.rpartition(":")
    upstream = (host, int(port))
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("s3faultproxy: the upstream must be a loopback address")
    settings = Settings(args)
    log = Log(args.log)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    port = listener.getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    number = 0
    while True:
        client, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        number += 1
        Connection(number, client, upstream, settings, log).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
