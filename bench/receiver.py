"""Benchmark receiver: a small asyncio (uvloop when installed) raw HTTP/1.1 server with keep-alive.

    python bench/receiver.py --port 0 [--delay 0.1] [--blackhole] [--log FILE]

Prints `READY <port>` once listening. Every request is answered `200 ok` in one write (after `--delay`
seconds, without blocking other connections); with `--blackhole` connections are accepted and read but
never answered. With `--log`, the arrival time (time.time(), taken when the whole request has been read)
and the `webhook-id` header of every request are kept in memory and written to FILE as
`<time> <id>` lines on SIGTERM/SIGINT (or on `GET /__dump`). `GET /__count` answers the request count.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time

RESP = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class State:
    def __init__(self, delay: float, blackhole: bool, log: str | None):
        self.delay = delay
        self.blackhole = blackhole
        self.log = log
        self.rows: list[tuple[float, bytes]] = []
        self.count = 0

    def dump(self):
        if not self.log:
            return
        tmp = self.log + ".tmp"
        with open(tmp, "w") as f:
            for t, i in self.rows:
                f.write(f"{t:.6f} {i.decode(errors='replace')}\n")
        os.replace(tmp, self.log)


class Proto(asyncio.Protocol):
    __slots__ = ("st", "tr", "buf", "loop")

    def __init__(self, st: State):
        self.st = st
        self.buf = b""
        self.tr = None

    def connection_made(self, tr):
        self.tr = tr
        self.loop = asyncio.get_event_loop()
        s = tr.get_extra_info("socket")
        if s is not None:
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data):
        buf = self.buf + data
        st = self.st
        while True:
            he = buf.find(b"\r\n\r\n")
            if he < 0:
                break
            head = buf[:he]
            lower = head.lower()
            cl = 0
            p = lower.find(b"\ncontent-length:")
            if p >= 0:
                e = lower.find(b"\r", p + 16)
                cl = int(lower[p + 16:e if e >= 0 else None].strip() or b"0")
            end = he + 4 + cl
            if len(buf) < end:
                break
            now = time.time()
            st.count += 1
            if head.startswith(b"GET /__"):
                if head.startswith(b"GET /__dump"):
                    st.dump()
                body = str(st.count).encode()
                self.tr.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                buf = buf[end:]
                continue
            if st.log is not None:
                p = lower.find(b"\nwebhook-id:")
                wid = b"-"
                if p >= 0:
                    e = lower.find(b"\r", p + 12)
                    wid = head[p + 12:e if e >= 0 else None].strip()
                st.rows.append((now, wid))
            buf = buf[end:]
            if st.blackhole:
                continue
            if st.delay > 0:
                self.loop.call_later(st.delay, self._answer)
            else:
                self.tr.write(RESP)
        self.buf = buf

    def _answer(self):
        if self.tr is not None and not self.tr.is_closing():
            self.tr.write(RESP)

    def connection_lost(self, exc):
        self.tr = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--blackhole", action="store_true")
    ap.add_argument("--log")
    a = ap.parse_args()
    try:
        import uvloop  # type: ignore
        uvloop.install()
    except Exception:
        pass
    st = State(a.delay, a.blackhole, a.log)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    srv = loop.run_until_complete(loop.create_server(lambda: Proto(st), a.host, a.port, backlog=4096))
    port = srv.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {port}", flush=True)
    loop.run_until_complete(stop.wait())
    st.dump()
    srv.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
