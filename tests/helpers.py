"""Small shared helpers for the tests (not fixtures)."""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
EVENT_ID_RE = re.compile(r"evt_[0-7][0-9A-HJKMNP-TV-Z]{25}")
STATES = {"queued", "pending", "in_flight", "delivered", "dead", "superseded"}


def ulid_ms(event_id: str) -> int:
    """Milliseconds since the epoch encoded in an evt_<ULID> id."""
    ts = event_id[4:14]
    n = 0
    for ch in ts:
        n = n * 32 + CROCKFORD.index(ch)
    return n


def parse_rfc3339(s: str) -> datetime:
    assert isinstance(s, str) and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", s), f"not RFC 3339: {s!r}"
    t = s.replace("Z", "+00:00")
    # python < 3.11 can't parse more than 6 fractional digits; 3.11 can
    m = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)", t)
    frac = (m.group(2) or "")[:7]
    return datetime.fromisoformat(m.group(1) + frac + m.group(3))


def to_unix(s: str) -> float:
    return parse_rfc3339(s).timestamp()


class Obj(list):
    """A JSON object as an ordered list of (key, value) pairs, so tests can tell {} from []
    and check key order."""

    def __repr__(self):
        return "Obj(" + list.__repr__(self) + ")"


def loads_ordered(data):
    return json.loads(data, object_pairs_hook=Obj)


def delivery(event: dict, endpoint: str = "default") -> dict:
    ds = [d for d in event["deliveries"] if d["endpoint"] == endpoint]
    assert len(ds) == 1, f"expected one delivery to {endpoint!r}: {event['deliveries']}"
    return ds[0]


def wait_until(pred, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def lower_headers(req) -> dict:
    return req.headers.lower_dict()


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


class LineReader:
    """Reads a Popen's text stream on a thread; `get(timeout)` returns the next complete line
    (without newline) or raises AssertionError; `lines` holds every complete line read."""

    def __init__(self, stream, name: str = "stdout"):
        import queue
        import threading

        self._q: "queue.Queue" = queue.Queue()
        self.lines: list[str] = []
        self.partial: str = ""
        self.name = name
        self.eof = threading.Event()
        self._t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._t.start()

    def _run(self, stream):
        try:
            for line in stream:
                if line.endswith("\n"):
                    line = line[:-1]
                    self.lines.append(line)
                    self._q.put(line)
                else:
                    self.partial = line
        except (ValueError, OSError):
            pass
        finally:
            self.eof.set()
            self._q.put(None)

    def get(self, timeout: float = 10.0) -> str:
        import queue

        try:
            line = self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line on {self.name} within {timeout}s (read so far: {self.lines[-5:]})")
        if line is None:
            self._q.put(None)
            raise AssertionError(f"{self.name} closed (read so far: {self.lines[-5:]}, partial {self.partial!r})")
        return line

    def get_json(self, timeout: float = 10.0):
        while True:
            line = self.get(timeout)
            s = line.strip()
            if s.startswith(("{", "[")):
                return json.loads(s)

    def wait_eof(self, timeout: float = 10.0) -> list:
        self.eof.wait(timeout)
        self._t.join(1)
        return self.lines


@contextmanager
def tcp_listener(handle, threaded: bool = False):
    """A TCP listener on 127.0.0.1 whose accept loop runs on a thread: each connection goes to
    `handle(conn)`, on that thread or (`threaded`) on one of its own. Yields the port and the list
    of accepted connections; on exit the loop stops and the connections and listener are closed."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            conns.append(c)
            if threaded:
                threading.Thread(target=handle, args=(c,), daemon=True).start()
            else:
                handle(c)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], conns
    finally:
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        srv.close()
