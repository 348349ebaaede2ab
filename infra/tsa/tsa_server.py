#!/usr/bin/env python3
"""Local RFC 3161 time-stamping authority over HTTP (RFC 3161 section 3.4).

Python 3 standard library only. Every time-stamp is made by the openssl CLI:

    openssl ts -reply -config CNF -queryfile Q -out R

so the keys, certificates, policy and serial number file are whatever the
`openssl ts` configuration file CNF says (infra/scripts/lib/tsa.sh writes it).

  POST <any path>   body: DER TimeStampReq (Content-Type application/timestamp-query,
                    or no Content-Type) -> 200, application/timestamp-reply, DER
                    TimeStampResp. A request openssl can parse but will not stamp
                    (e.g. unaccepted digest or policy) gets a 200 whose
                    PKIStatus is `rejection`, as RFC 3161 wants.
  GET /health       -> 200 "ok"

Any Content-Type (or none) is accepted; an unexpected one is noted in the log.
A body that is not a TimeStampReq gets a 200 with PKIStatus `rejection`
(badDataFormat), made by openssl like any other reply.
Errors: 400 empty body, 411 no Content-Length, 413 body over 64 KiB, 500 openssl
failed or timed out (details in the log only).
One log line per request on stderr, never the payloads.

Started by `infra/scripts/stack.sh up tsa`; see infra/tsa/README.md.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_QUERY_BYTES = 64 * 1024
OPENSSL_TIMEOUT_S = 30
# Content types logged without remark (any other type, or none, is accepted as well).
ACCEPTED_TYPES = ("application/timestamp-query", "application/octet-stream")


def log(msg):
    sys.stderr.write("%s tsa: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S%z"), msg))
    sys.stderr.flush()


class Tsa:
    """Runs `openssl ts -reply`, one at a time (the serial file is not concurrency-safe)."""

    def __init__(self, openssl, config, section):
        self.openssl = openssl
        self.config = config
        self.section = section
        self.lock = threading.Lock()

    def reply(self, query_der):
        """Return (response_der, None) or (None, error_text_for_the_log)."""
        with tempfile.TemporaryDirectory(prefix="flk-tsa-") as tmp:
            qpath = os.path.join(tmp, "q.tsq")
            rpath = os.path.join(tmp, "r.tsr")
            with open(qpath, "wb") as f:
                f.write(query_der)
            cmd = [self.openssl, "ts", "-reply", "-config", self.config,
                   "-queryfile", qpath, "-out", rpath]
            if self.section:
                cmd[3:3] = ["-section", self.section]
            with self.lock:
                try:
                    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, timeout=OPENSSL_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    return None, "openssl ts -reply timed out after %ss" % OPENSSL_TIMEOUT_S
                except OSError as e:
                    return None, "cannot run %s: %s" % (self.openssl, e)
            if proc.returncode != 0:
                err = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()
                return None, "openssl ts -reply exit %d: %s" % (
                    proc.returncode, " | ".join(err.splitlines()[-6:])[:800])
            try:
                with open(rpath, "rb") as f:
                    der = f.read()
            except OSError as e:
                return None, "openssl ts -reply wrote no response: %s" % e
            if not der:
                return None, "openssl ts -reply wrote an empty response"
            return der, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "flk-tsa/1"
    tsa = None  # set in main()

    # --- helpers -----------------------------------------------------------
    def _send(self, status, body, ctype="text/plain; charset=utf-8", close=False):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._status = status
        self._out = len(body)

    def _log_line(self, t0, nin, note=""):
        log("%s %s %s -> %s in=%s out=%s %.1fms%s" % (
            self.client_address[0], self.command, self.path, getattr(self, "_status", "-"),
            nin, getattr(self, "_out", 0), (time.monotonic() - t0) * 1000,
            (" (" + note + ")") if note else ""))

    # One line per request is written by the handlers; silence the default access log.
    def log_request(self, code="-", size="-"):
        pass

    def log_message(self, fmt, *args):  # malformed requests, from BaseHTTPRequestHandler
        log("%s %s" % (self.client_address[0], fmt % args))

    # --- methods -----------------------------------------------------------
    def do_GET(self):
        t0 = time.monotonic()
        if self.path.split("?", 1)[0] == "/health":
            self._send(200, "ok\n")
        else:
            self._send(404, "not found (POST a TimeStampReq, or GET /health)\n")
        self._log_line(t0, 0)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        t0 = time.monotonic()
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self._send(411, "send the query with a Content-Length (no chunked encoding)\n", close=True)
            return self._log_line(t0, "-")
        if length is None:
            self._send(411, "Content-Length required\n", close=True)
            return self._log_line(t0, "-")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self._send(400, "bad Content-Length\n", close=True)
            return self._log_line(t0, "-")
        if n > MAX_QUERY_BYTES:
            # Body left unread: close the connection instead.
            self._send(413, "time-stamp query too large (max %d bytes)\n" % MAX_QUERY_BYTES, close=True)
            return self._log_line(t0, n)
        body = self.rfile.read(n) if n else b""
        if len(body) != n:
            self._send(400, "short body\n", close=True)
            return self._log_line(t0, len(body))
        # Lenient on purpose: RFC 3161 clients send application/timestamp-query, but a
        # missing type or curl's default form type is accepted too (noted in the log).
        note = "" if ctype in ACCEPTED_TYPES else "content-type " + (ctype or "missing")
        if not body:
            self._send(400, "empty body: POST a DER TimeStampReq\n")
            return self._log_line(t0, 0, note)
        der, err = self.tsa.reply(body)
        if err:
            self._send(500, "time-stamping failed (see the TSA log)\n")
            return self._log_line(t0, n, "; ".join(x for x in (note, err) if x))
        self._send(200, der, ctype="application/timestamp-reply")
        self._log_line(t0, n, note)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=19318)
    ap.add_argument("--config", required=True, help="openssl ts configuration file")
    ap.add_argument("--section", default="", help="TSA section of the config (default: its default_tsa)")
    ap.add_argument("--openssl", default="openssl", help="openssl binary")
    a = ap.parse_args()
    if not os.path.isfile(a.config):
        ap.error("no such config file: %s" % a.config)

    Handler.tsa = Tsa(a.openssl, a.config, a.section)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    httpd = ThreadingHTTPServer((a.host, a.port), Handler)

    def _stop(signum, _frame):
        raise SystemExit("signal %d" % signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log("listening on http://%s:%d/ (config %s, pid %d)" % (a.host, a.port, a.config, os.getpid()))
    try:
        httpd.serve_forever(poll_interval=0.5)
    except SystemExit as e:
        log("stopping (%s)" % e)
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
