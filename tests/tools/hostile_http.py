#!/usr/bin/env python3
"""A hostile static web server for the pull tests, on 127.0.0.1.

hostile_http.py PORT_FILE ROOT: serves ROOT/vault and writes the port it
took to PORT_FILE. Requests for /bundles/*.skillmeat-pack get ROOT/A.pack
or ROOT/B.pack, chosen by the first word of ROOT/mode. The rest of that
line names the case, and the request count starts again for each case.
  cut-range       half of A, then the connection is cut; a ranged retry
                  gets the rest of B (206)
  cut-norange     half of A, cut; the retry gets all of B (200)
  cut-wrongrange  half of A, cut; the retry gets B as 206 from offset 0
  redirect        302 to /other.pack, which is B
  swap-mid        one response: the first half of A, the second half of B
"""
import http.server
import os
import re
import sys

ROOT = sys.argv[2]
counts = {}


def read(name):
    with open(os.path.join(ROOT, name), 'rb') as f:
        return f.read()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt, *args):
        sys.stderr.write('%s %s range=%s\n' % (self.command, self.path, self.headers.get('Range')))

    def send_body(self, code, data, headers=()):
        self.send_response(code)
        self.send_header('Content-Length', str(len(data)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        case = read('mode').decode().strip()
        mode = case.split()[0]
        path = self.path.split('?')[0]
        if path.startswith('/bundles/') and path.endswith('.skillmeat-pack'):
            a, b = read('A.pack'), read('B.pack')
            counts[case] = n = counts.get(case, 0) + 1
            ranged = self.headers.get('Range')
            if mode == 'redirect':
                self.send_body(302, b'', [('Location', '/other.pack')])
            elif mode == 'swap-mid':
                self.send_body(200, a[:len(a) // 2] + b[len(a) // 2:])
            elif n == 1:
                self.send_response(200)
                self.send_header('Content-Length', str(len(a)))
                self.send_header('ETag', '"one"')
                self.end_headers()
                self.wfile.write(a[:len(a) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
            elif mode == 'cut-range' and ranged:
                start = int(re.match(r'bytes=(\d+)-', ranged).group(1))
                self.send_body(206, b[start:], [('Content-Range', 'bytes %d-%d/%d' %
                                                 (start, len(b) - 1, len(b))), ('ETag', '"one"')])
            elif mode == 'cut-wrongrange' and ranged:
                self.send_body(206, b, [('Content-Range', 'bytes 0-%d/%d' % (len(b) - 1, len(b)))])
            else:
                self.send_body(200, b)
            return
        if path == '/other.pack':
            self.send_body(200, read('B.pack'))
            return
        local = os.path.join(ROOT, 'vault', path.lstrip('/'))
        if '..' not in path and os.path.isfile(local):
            self.send_body(200, read(os.path.join('vault', path.lstrip('/'))))
        else:
            self.send_body(404, b'not found')


server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
with open(sys.argv[1] + '.tmp', 'w') as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[1] + '.tmp', sys.argv[1])
server.serve_forever()
