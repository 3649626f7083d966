"""A scriptable, recording HTTP/1.1 webhook receiver for the woosync tests and demo.

Importable:

    from receiver import Receiver, Response, Blackhole, closed_port

    with Receiver() as rx:                       # 127.0.0.1, port 0 (or Receiver(port=...))
        rx.default = Response(200, body=b"ok")   # answer used when nothing is scripted
        rx.script(Response(503), Response(429, headers={"Retry-After": "1"}))  # FIFO
        rx.responder = lambda req: None          # optional: per-request decision (None = fall through)
        ...
        reqs = rx.wait_for(3, timeout=10)        # list of Request
        reqs[0].headers["webhook-id"], reqs[0].body, reqs[0].json()

Runnable (demo / manual testing): prints every request, verified with the PyPI
`standardwebhooks` package (and the WooCommerce-style X-WC-Webhook-Signature):

    python3 tests/receiver.py --port 8765 --secret whsec_...
"""
from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Iterator, Mapping, Optional

__all__ = [
    "Blackhole",
    "CIDict",
    "Receiver",
    "Request",
    "Response",
    "closed_port",
    "wc_signature",
]


class CIDict(Mapping[str, str]):
    """Read-only, case-insensitive header mapping. Repeated headers are joined with ', '.
    `getall(name)` returns every value in order."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()):
        self._items: list[tuple[str, str]] = list(items)
        self._map: dict[str, tuple[str, str]] = {}
        for k, v in self._items:
            lk = k.lower()
            if lk in self._map:
                ok, ov = self._map[lk]
                self._map[lk] = (ok, ov + ", " + v)
            else:
                self._map[lk] = (k, v)

    def __getitem__(self, key: str) -> str:
        return self._map[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._map

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._map.values())

    def __len__(self) -> int:
        return len(self._map)

    def getall(self, key: str) -> list[str]:
        lk = key.lower()
        return [v for k, v in self._items if k.lower() == lk]

    def lower_dict(self) -> dict[str, str]:
        return {k: v for k, (_, v) in self._map.items()}

    def __repr__(self) -> str:
        return f"CIDict({dict(self.items())!r})"


@dataclass
class Response:
    """What the receiver answers. `drop=True` closes the connection without answering
    (after `delay` seconds)."""

    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    drop: bool = False

    def __post_init__(self):
        if isinstance(self.body, str):
            self.body = self.body.encode()


@dataclass
class Request:
    index: int  # arrival order, 0-based
    time: float  # time.monotonic() when the whole request had been read
    wall: float  # time.time() at the same moment
    method: str
    path: str
    headers: CIDict
    body: bytes
    client: tuple
    response: Optional[Response] = None  # what was (or is being) answered
    answered: Optional[float] = None  # time.monotonic() when the answer was written (or the connection dropped)

    def json(self):
        return json.loads(self.body)

    @property
    def event_id(self) -> Optional[str]:
        """The envelope's `id`, else the webhook-id header."""
        try:
            return self.json()["id"]
        except Exception:
            return self.headers.get("webhook-id")


def wc_signature(secret: str, body: bytes) -> str:
    """WooCommerce X-WC-Webhook-Signature: base64(HMAC-SHA256(key=secret string as configured, body))."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle + the client's
    # delayed ACK would add ~40 ms to every keep-alive response
    disable_nagle_algorithm = True
    server_version = "woosync-test-receiver/1"
    sys_version = ""

    def log_message(self, format, *args):  # silence
        if self.server.receiver.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until blank line
                    while True:
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after chunk
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _handle(self):
        rx: Receiver = self.server.receiver
        body = self._read_body()
        if len(body) < int(self.headers.get("Content-Length") or 0):
            # The client went away in the middle of the body (e.g. its process was killed during
            # an attempt): not a request, as for any HTTP server. The sender retries it in full.
            self.close_connection = True
            return
        req = Request(
            index=-1,
            time=time.monotonic(),
            wall=time.time(),
            method=self.command,
            path=self.path,
            headers=CIDict(self.headers.items()),
            body=body,
            client=self.client_address,
        )
        resp = rx._record_and_plan(req)
        if resp.delay > 0:
            # sleep in small steps so stop() is not held up for long
            end = time.monotonic() + resp.delay
            while time.monotonic() < end and not rx._stopping.is_set():
                time.sleep(min(0.05, max(0.0, end - time.monotonic())))
        if resp.drop or rx._stopping.is_set():
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            req.answered = time.monotonic()
            return
        self.send_response(resp.status)
        has_ct = any(k.lower() == "content-type" for k in resp.headers)
        if not has_ct:
            self.send_header("Content-Type", "text/plain")
        for k, v in resp.headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        try:
            if self.command != "HEAD":
                self.wfile.write(resp.body)
            self.wfile.flush()
        finally:
            req.answered = time.monotonic()
        if rx.on_answered is not None:
            try:
                rx.on_answered(req, resp)
            except Exception:  # pragma: no cover - diagnostics only
                pass

    do_POST = _handle
    do_PUT = _handle
    do_GET = _handle
    do_DELETE = _handle
    do_PATCH = _handle
    do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, addr, receiver: "Receiver"):
        self.receiver = receiver
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def kill_connections(self):
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # connection resets etc. are expected in these tests
        if self.receiver.verbose:
            super().handle_error(request, client_address)


class Receiver:
    """Real HTTP/1.1 server on 127.0.0.1 recording every request and answering from a plan.

    Answer for each request, in order of precedence:
      1. `responder(request)` if set and it returns a Response,
      2. the next scripted Response from the FIFO (`script(...)`),
      3. `default`.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", default: Optional[Response] = None,
                 verbose: bool = False):
        self.host = host
        self._port = port
        self.default = default or Response(200, body=b"ok")
        self.responder: Optional[Callable[[Request], Optional[Response]]] = None
        self.on_request: Optional[Callable[[Request], None]] = None
        self.on_answered: Optional[Callable[[Request, Response], None]] = None
        self.verbose = verbose
        self._lock = threading.Condition()
        self._fifo: collections.deque = collections.deque()
        self._requests: list[Request] = []
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Receiver":
        if self._server is not None:
            return self
        self._stopping.clear()
        last = None
        for _ in range(50):  # the same port may need a moment to be reusable
            try:
                self._server = _Server((self.host, self._port), self)
                break
            except OSError as e:
                last = e
                time.sleep(0.1)
        else:
            raise last  # type: ignore[misc]
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"receiver:{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open (keep-alive) connection: afterwards the port refuses."""
        srv = self._server
        if srv is None:
            return
        self._stopping.set()
        srv.shutdown()
        srv.server_close()
        srv.kill_connections()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self._thread = None

    def restart(self) -> "Receiver":
        """Start again on the same port (keeps recorded requests and plan)."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}/hook"

    def url_for(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return f"http://{self.host}:{self._port}{path}"

    # ---- plan ------------------------------------------------------------------------------
    def script(self, *responses: Response) -> None:
        """Append responses to the FIFO (used before `default`)."""
        with self._lock:
            self._fifo.extend(responses)

    def clear_script(self) -> None:
        with self._lock:
            self._fifo.clear()

    def _record_and_plan(self, req: Request) -> Response:
        resp = None
        if self.responder is not None:
            try:
                resp = self.responder(req)
            except Exception as e:  # a broken responder must be visible
                resp = Response(599, body=f"responder error: {e!r}".encode())
        with self._lock:
            if resp is None:
                resp = self._fifo.popleft() if self._fifo else self.default
            req.index = len(self._requests)
            req.response = resp
            self._requests.append(req)
            self._lock.notify_all()
        if self.on_request is not None:
            try:
                self.on_request(req)
            except Exception:  # pragma: no cover
                pass
        return resp

    # ---- inspection ------------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def count(self) -> int:
        with self._lock:
            return len(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._fifo.clear()

    def wait_for(self, n: int, timeout: float = 10.0,
                 predicate: Optional[Callable[[Request], bool]] = None) -> list[Request]:
        """Wait until at least `n` (matching) requests were received; return them (all matching,
        possibly more than n). Raises AssertionError on timeout, listing what did arrive."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self._requests if predicate is None or predicate(r)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver: waited {timeout}s for {n} request(s), got {len(got)} "
                        f"(total received {len(self._requests)}: "
                        f"{[(r.method, r.path, r.event_id) for r in self._requests][:20]})")
                self._lock.wait(min(left, 0.1))

    def wait_quiet(self, quiet: float = 0.3, timeout: float = 10.0) -> list[Request]:
        """Wait until no request arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                last = self._requests[-1].time if self._requests else 0.0
            if time.monotonic() - last >= quiet:
                break
            time.sleep(0.05)
        return self.requests

    def max_concurrent(self) -> int:
        """Largest number of requests that were being handled at the same moment."""
        ev = []
        for r in self.requests:
            ev.append((r.time, 1))
            ev.append((r.answered if r.answered is not None else float("inf"), -1))
        ev.sort(key=lambda e: (e[0], e[1]))
        cur = best = 0
        for _, d in ev:
            cur += d
            best = max(best, cur)
        return best

    def by_event(self) -> dict[str, list[Request]]:
        out: dict[str, list[Request]] = collections.defaultdict(list)
        for r in self.requests:
            out[r.event_id].append(r)
        return dict(out)


class Blackhole:
    """A listening socket that accepts connections, reads and discards, and never answers.
    Connections are closed on stop()."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(256)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, name=f"blackhole:{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def _run(self):
        while not self._stop.is_set():
            try:
                c, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            c.setblocking(False)
            with self._lock:
                self._conns.append(c)
                self.accepted += 1
            # drain whatever is sent, never answer
            with self._lock:
                conns = list(self._conns)
            for s in conns:
                try:
                    while s.recv(65536):
                        pass
                except (BlockingIOError, OSError):
                    pass

    def stop(self):
        self._stop.set()
        self._thread.join(2)
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass
            self._conns.clear()
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port on which nothing listens (connecting gets ECONNREFUSED). Binds and closes a socket
    so the kernel does not hand the port out again right away."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- CLI ------------------------------------------------------------------------------------

def _describe(req: Request, secret: Optional[str]) -> str:
    lines = [f"#{req.index + 1} {req.method} {req.path}  ({len(req.body)} bytes)"]
    for k in ("webhook-id", "webhook-timestamp", "X-WC-Webhook-Topic", "X-WC-Webhook-Delivery-ID",
              "X-WC-Webhook-Source", "User-Agent"):
        if k in req.headers:
            lines.append(f"    {k}: {req.headers[k]}")
    if secret:
        try:
            from standardwebhooks.webhooks import Webhook
        except ImportError:
            lines.append("    standard webhooks signature: not checked (pip install standardwebhooks)")
        else:
            try:
                Webhook(secret).verify(req.body, dict(req.headers.lower_dict()))
                lines.append("    standard webhooks signature: VERIFIED")
            except Exception as e:
                lines.append(f"    standard webhooks signature: FAILED ({e})")
        wc = req.headers.get("X-WC-Webhook-Signature")
        ok = wc is not None and hmac.compare_digest(wc, wc_signature(secret, req.body))
        lines.append(f"    X-WC-Webhook-Signature: {'VERIFIED' if ok else 'FAILED'}")
    try:
        lines.append("    body: " + json.dumps(req.json(), ensure_ascii=False))
    except Exception:
        lines.append(f"    body: {req.body[:200]!r}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="woosync test webhook receiver")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--secret", default=None, help="whsec_... secret to verify signatures")
    ap.add_argument("--status", type=int, default=200, help="status code to answer")
    args = ap.parse_args(argv)

    rx = Receiver(port=args.port, host=args.host, default=Response(args.status, body=b"ok"))
    rx.on_request = lambda req: print(_describe(req, args.secret), flush=True)
    rx.start()
    print(f"listening on {rx.url_for('/')} (answering {args.status}); Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        rx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
