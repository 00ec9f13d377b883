#!/usr/bin/env python3
"""Watch every process's command line and environment for a secret.

Usage: git_secret_watch.py STOP_FILE REPORT_FILE  (the secret on stdin)

The secret comes on standard input so that it never appears in this
program's own argv. Until STOP_FILE exists, the watcher reads
/proc/PID/cmdline and, where permitted, /proc/PID/environ of every other
process. It looks for the secret as it is, percent-encoded, and inside a
basic-auth value: base64 of "USER:SECRET" for each user name in the
WATCH_USERS environment variable (space-separated). At the end it writes
one summary line to REPORT_FILE:

    scans=N processes=N git=N environ=N server=N hits=N

followed by one line per hit naming the pid, the program and where the
secret was found, never the secret itself. `git` counts the distinct git
processes seen, so a test can tell that the watch overlapped git's work.

Processes whose environment has GATEWAY_INTERFACE are CGI programs of the
test web server (git-http-backend and its children). The server passes the
request's Authorization header to them by design, so they are skipped and
counted as `server`.
"""
import base64
import os
import sys
import time
import urllib.parse


def secret_forms(secret, users):
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    for user in users:
        forms.add(base64.b64encode(("%s:%s" % (user, secret)).encode()).decode())
    return [f.encode() for f in forms if f]


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def main():
    stop_file, report_file = sys.argv[1], sys.argv[2]
    secret = sys.stdin.readline().rstrip("\n")
    if not secret:
        sys.exit("git_secret_watch: no secret on stdin")
    forms = secret_forms(secret, os.environ.get("WATCH_USERS", "").split())
    me = os.getpid()
    scans = 0
    seen = set()
    git_seen = set()
    environ_read = set()
    server = set()
    hits = []

    while True:
        stopping = os.path.exists(stop_file)
        scans += 1
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            cmdline = read("/proc/%s/cmdline" % entry)
            if cmdline is None:
                continue
            comm = (read("/proc/%s/comm" % entry) or b"?").decode(errors="replace").strip()
            key = (entry, cmdline)
            environ = read("/proc/%s/environ" % entry)
            if environ is not None and b"GATEWAY_INTERFACE=" in environ:
                server.add(key)
                continue
            seen.add(key)
            if comm.startswith("git") or cmdline.startswith(b"git\0") or b"/git\0" in cmdline:
                git_seen.add(key)
            places = [("cmdline", cmdline)]
            if environ is not None:
                environ_read.add(key)
                places.append(("environ", environ))
            for place, data in places:
                if any(f in data for f in forms):
                    hits.append("pid=%s comm=%s in %s" % (entry, comm, place))
        if stopping:
            break
        # a short pause leaves CPU time to the processes watched
        time.sleep(0.001)

    with open(report_file, "w") as f:
        f.write("scans=%d processes=%d git=%d environ=%d server=%d hits=%d\n"
                % (scans, len(seen), len(git_seen), len(environ_read), len(server), len(hits)))
        for hit in sorted(set(hits)):
            f.write(hit + "\n")


if __name__ == "__main__":
    main()
