#!/usr/bin/env python3
"""TCP proxy that cuts its first connection after a number of response bytes.

Usage: http_cut_proxy.py TARGET_PORT CUT_BYTES PORT_FILE LOG_FILE

Listens on a free port of 127.0.0.1, writes that port to PORT_FILE and
forwards every connection to 127.0.0.1:TARGET_PORT as raw bytes, so TLS
passes through untouched. On the first connection only, after CUT_BYTES
bytes from the server have been forwarded, it closes both sides, as a
broken network would. Later connections pass everything. LOG_FILE gets one
line per connection: "connection N" when it opens and "cut N after B bytes"
or "closed N after B bytes" when it ends.
"""
import os
import socket
import sys
import threading

BUFFER = 16384


def log(path, lock, line):
    with lock:
        with open(path, "a") as f:
            f.write(line + "\n")


def pump_up(client, server):
    """Copies client bytes to the server until either side closes."""
    try:
        while True:
            data = client.recv(BUFFER)
            if not data:
                break
            server.sendall(data)
    except OSError:
        pass
    try:
        server.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def handle(client, number, target_port, cut_bytes, log_path, lock):
    server = socket.create_connection(("127.0.0.1", target_port))
    threading.Thread(target=pump_up, args=(client, server), daemon=True).start()
    sent = 0
    limit = cut_bytes if number == 1 else None
    cut = False
    try:
        while True:
            data = server.recv(BUFFER)
            if not data:
                break
            if limit is not None and sent + len(data) >= limit:
                client.sendall(data[: limit - sent])
                sent = limit
                cut = True
                break
            client.sendall(data)
            sent += len(data)
    except OSError:
        pass
    if cut:
        # a reset, not a clean close: the client must see a broken transfer
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    for s in (client, server):
        try:
            s.close()
        except OSError:
            pass
    log(log_path, lock, f"{'cut' if cut else 'closed'} {number} after {sent} bytes")


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: http_cut_proxy.py TARGET_PORT CUT_BYTES PORT_FILE LOG_FILE")
    target_port, cut_bytes = int(sys.argv[1]), int(sys.argv[2])
    port_file, log_path = sys.argv[3], sys.argv[4]
    lock = threading.Lock()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(listener.getsockname()[1]))
    # renamed into place, so a reader never sees a half-written port
    os.rename(port_file + ".tmp", port_file)
    number = 0
    while True:
        client, _ = listener.accept()
        number += 1
        log(log_path, lock, f"connection {number}")
        threading.Thread(target=handle, args=(client, number, target_port, cut_bytes, log_path, lock),
                         daemon=True).start()


if __name__ == "__main__":
    main()
