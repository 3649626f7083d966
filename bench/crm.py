"""The checkout benchmark's CRM: an asyncio (uvloop when installed) HTTP/1.1 receiver whose health is
switched at run time, and which keeps every request it got for the correctness check.

    python bench/crm.py --port 0            # prints `READY <port>`, stops on SIGTERM/SIGINT

Modes (`GET /__mode?m=healthy|slow|blackhole[&delay=2]`, answered `ok <mode>`):
- healthy: `200 ok` at once, keep-alive;
- slow: `200 ok` after `delay` seconds (default 2), without blocking other connections or requests;
- blackhole: reads the request and never answers.
Leaving blackhole closes every connection that holds an unanswered request, as a CRM that restarts
would: the sender sees its connection reset and retries.

Log (kept in memory): `GET /__dump?file=PATH` writes one JSON line per request: `t` (arrival,
time.time() once the whole request is read), `answered` (time the answer was written, null if never),
`mode`, `method`, `path`, `h` (lower-cased request headers) and `body` (text). `GET /__reset` forgets the
log, `GET /__count` answers `<requests> <answered>`. HTTP/1.0 requests (WordPress's Requests library
sends them for WooCommerce webhooks) get `Connection: close` and the connection is closed after the answer.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
import time
from urllib.parse import parse_qs, urlsplit

RESP_KEEP = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
RESP_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class State:
    def __init__(self):
        self.mode = "healthy"
        self.delay = 2.0
        self.rows: list[dict] = []
        self.conns: set["Proto"] = set()

    def set_mode(self, mode: str, delay: float):
        was = self.mode
        self.mode, self.delay = mode, delay
        if was == "blackhole" and mode != "blackhole":
            for c in list(self.conns):
                if c.held:
                    c.abort()

    def dump(self, path: str):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            for r in self.rows:
                f.write(json.dumps(r) + "\n")
        import os
        os.replace(tmp, path)


def _control(st: State, target: str) -> bytes:
    u = urlsplit(target)
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    if u.path == "/__mode":
        m = q.get("m", "healthy")
        if m not in ("healthy", "slow", "blackhole"):
            return b"bad mode"
        st.set_mode(m, float(q.get("delay", st.delay)))
        return f"ok {m}".encode()
    if u.path == "/__dump":
        st.dump(q["file"])
        return f"ok {len(st.rows)}".encode()
    if u.path == "/__reset":
        st.rows.clear()
        return b"ok"
    if u.path == "/__count":
        return f"{len(st.rows)} {sum(1 for r in st.rows if r['answered'] is not None)}".encode()
    return b"unknown"


class Proto(asyncio.Protocol):
    def __init__(self, st: State):
        self.st = st
        self.buf = b""
        self.tr = None
        self.held = 0  # requests read and not answered yet
        self.pending: list[dict] = []  # rows waiting for their (delayed) answer, in order

    def connection_made(self, tr):
        self.tr = tr
        self.loop = asyncio.get_event_loop()
        self.st.conns.add(self)
        s = tr.get_extra_info("socket")
        if s is not None:
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def abort(self):
        if self.tr is not None:
            self.tr.abort()

    def data_received(self, data):
        buf = self.buf + data
        st = self.st
        while True:
            he = buf.find(b"\r\n\r\n")
            if he < 0:
                break
            head = buf[:he].decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            method, target = parts[0], parts[1] if len(parts) > 1 else "/"
            version = parts[2] if len(parts) > 2 else "HTTP/1.0"
            h = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                h[k.strip().lower()] = v.strip()
            cl = int(h.get("content-length", "0") or 0)
            end = he + 4 + cl
            if len(buf) < end:
                break
            body = buf[he + 4:end]
            buf = buf[end:]
            close = version == "HTTP/1.0" and h.get("connection", "").lower() != "keep-alive" or \
                h.get("connection", "").lower() == "close"
            if target.startswith("/__"):
                out = _control(st, target)
                self.tr.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
                continue
            row = {"t": time.time(), "answered": None, "mode": st.mode, "method": method, "path": target, "h": h,
                   "body": body.decode("utf-8", "replace")}
            st.rows.append(row)
            self.held += 1
            if st.mode == "blackhole":
                continue
            self.pending.append(row)
            if st.mode == "slow":
                self.loop.call_later(st.delay, self._answer, close)
            else:
                self._answer(close)
        self.buf = buf

    def _answer(self, close):
        if self.tr is None or self.tr.is_closing() or not self.pending:
            return
        row = self.pending.pop(0)
        self.tr.write(RESP_CLOSE if close else RESP_KEEP)
        row["answered"] = time.time()
        self.held -= 1
        if close:
            self.tr.close()

    def connection_lost(self, exc):
        self.tr = None
        self.st.conns.discard(self)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    try:
        import uvloop  # type: ignore
        uvloop.install()
    except Exception:
        pass
    st = State()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    srv = loop.run_until_complete(loop.create_server(lambda: Proto(st), a.host, a.port, backlog=4096))
    port = srv.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {port}", flush=True)
    loop.run_until_complete(stop.wait())
    srv.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
