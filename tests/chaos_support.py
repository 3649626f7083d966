"""Shared code for the delivery-semantics suites (test_chaos.py, test_endpoints.py, test_fpm.py).

Order checking, status polling through short PHP processes, a background "sender" PHP process,
and a private php-fpm instance. Every process started here has a timeout and is killed by its
owner (fixtures / context managers).
"""
from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import pytest

from conftest import ini_arg


# ---- receiver-side analysis -----------------------------------------------------------------

def is_success(req) -> bool:
    """The receiver answered this request with a 2xx (not dropped, not an error status)."""
    r = req.response
    return r is not None and not r.drop and 200 <= r.status < 300 and req.answered is not None


def envelope(req) -> Optional[dict]:
    try:
        env = req.json()
    except Exception:
        return None
    return env if isinstance(env, dict) else None


def first_successes(requests: Iterable) -> dict:
    """event id -> the first request for it that the receiver answered with a 2xx."""
    out: dict = {}
    for q in sorted(requests, key=lambda r: r.index):
        if not is_success(q):
            continue
        eid = q.event_id
        if eid not in out:
            out[eid] = q
    return out


def order_violations(requests: Iterable) -> tuple[list, dict]:
    """Per-key order as seen by the receiver: for every key, take each event's FIRST successful
    delivery, sort by arrival, and count every place where the sequence goes down.
    Returns (violations, per_key) where per_key maps key -> [sequence in arrival order]."""
    per_key: dict = collections.defaultdict(list)
    for q in sorted(first_successes(requests).values(), key=lambda r: r.index):
        env = envelope(q)
        if env is None or env.get("key") is None:
            continue
        per_key[env["key"]].append(env["sequence"])
    violations = []
    for key, seqs in per_key.items():
        for a, b in zip(seqs, seqs[1:]):
            if b <= a:
                violations.append((key, a, b))
    return violations, dict(per_key)


def duplicates(requests: Iterable) -> dict:
    """event id -> number of successful deliveries, for events delivered successfully more than once."""
    c = collections.Counter(q.event_id for q in requests if is_success(q))
    return {k: n for k, n in c.items() if n > 1}


# ---- polling ---------------------------------------------------------------------------------

def poll(pred: Callable, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Call pred() until it returns something truthy; on timeout fail with the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last and not isinstance(last, tuple):
            return last
        if isinstance(last, tuple) and last[0]:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last value: {last!r}"[:6000])
        time.sleep(interval)


def endpoint_info(status_or_list, name: str) -> dict:
    eps = status_or_list["endpoints"] if isinstance(status_or_list, dict) else status_or_list
    for e in eps:
        if e["name"] == name:
            return e
    raise AssertionError(f"no endpoint {name!r} in {[e['name'] for e in eps]}")


# ---- a long-lived PHP process that hosts the sender ----------------------------------------

SENDER_CODE = r"""
// Hosts the sender thread: opens the outbox, announces itself and then just waits.
out(['pid' => getmypid(), 'status' => woosync_status()]);
$end = microtime(true) + %(lifetime)s;
while (microtime(true) < $end) { woosync_flush(1.0); usleep(100000); }
"""


def start_sender(php, ini: Optional[dict] = None, lifetime: float = 120):
    """Start a PHP process that stays alive (up to `lifetime` s) so the outbox always has a
    sender while short-lived PHP processes query it. Returns (Popen, first status line)."""
    from helpers import LineReader

    p = php.popen(SENDER_CODE % {"lifetime": lifetime}, ini)
    out = LineReader(p.stdout)
    err = LineReader(p.stderr, "stderr")
    try:
        first = out.get_json(20)
    except AssertionError as e:
        raise AssertionError(f"sender host did not start: {e}; stderr: {err.lines[-10:]}")
    p.reader = out  # type: ignore[attr-defined]
    p.err_reader = err  # type: ignore[attr-defined]
    return p, first


def kill9(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); treat it as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---- php-fpm ---------------------------------------------------------------------------------

FPM_CANDIDATES = ("php-fpm8.2", "php-fpm")


def find_fpm() -> Optional[str]:
    for name in FPM_CANDIDATES:
        for d in ("/usr/sbin", "/usr/local/sbin"):
            p = Path(d) / name
            if p.is_file():
                return str(p)
        w = shutil.which(name)
        if w:
            return w
    return None


def ensure_fpm_tools() -> tuple[str, str]:
    """(php-fpm binary, cgi-fcgi binary); installs the Debian packages when missing."""
    fpm, cgi = find_fpm(), shutil.which("cgi-fcgi")
    if fpm is None or cgi is None:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("php-fpm / cgi-fcgi missing and cannot install them (not root or no apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        pkgs = []
        if fpm is None:
            pkgs.append("php-fpm")
        if cgi is None:
            pkgs.append("libfcgi-bin")
        r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *pkgs],
                           capture_output=True, text=True, timeout=300, env=env)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=300, env=env)
            r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *pkgs],
                               capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, f"apt-get install {pkgs} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        fpm, cgi = find_fpm(), shutil.which("cgi-fcgi")
    assert fpm and cgi, (fpm, cgi)
    return fpm, cgi


class Fpm:
    """A private php-fpm master (foreground, own config, pid file, log and unix socket in `root`)
    with the extension and INI values given on its command line. `so=None` loads no extension on
    the command line: only what the system's fpm conf.d enables (the package tests)."""

    def __init__(self, root: Path, so: Optional[Path], ini: dict, pm: str = "static", max_children: int = 3,
                 max_requests: int = 20):
        self.fpm_bin, self.cgi_bin = ensure_fpm_tools()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.sock = root / "fpm.sock"
        self.log = root / "fpm.log"
        self.conf = root / "fpm.conf"
        self.docroot = root / "www"
        self.docroot.mkdir(exist_ok=True)
        pm_lines = [f"pm = {pm}", f"pm.max_children = {max_children}", f"pm.max_requests = {max_requests}"]
        if pm == "dynamic":
            pm_lines += ["pm.start_servers = 2", "pm.min_spare_servers = 1",
                         f"pm.max_spare_servers = {max_children}"]
        self.conf.write_text("\n".join([
            "[global]",
            f"pid = {root / 'fpm.pid'}",
            f"error_log = {self.log}",
            "log_level = notice",
            "daemonize = no",
            "process_control_timeout = 10",
            "",
            "[woosync]",
            f"listen = {self.sock}",
            "listen.mode = 0666",
            *pm_lines,
            "catch_workers_output = yes",
            "decorate_workers_output = no",
            "clear_env = no",
            "request_terminate_timeout = 60",
            "php_admin_flag[log_errors] = on",
            "php_admin_value[display_errors] = stderr",
            "",
        ]))
        self.args = [self.fpm_bin, "-F", "-R", "-y", str(self.conf)]
        if so is not None:
            self.args.append(f"-dextension={so}")
        # The receivers listen on 127.0.0.1, which the destination policy refuses unless allowed.
        ini = {"woosync.allow_networks": "127.0.0.1/32", **ini}
        self.args += [ini_arg(k, v) for k, v in ini.items() if v is not None]
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 15) -> "Fpm":
        self._out = open(self.root / "fpm.out", "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                out = (self.root / "fpm.out").read_text(errors="replace")[-4000:]
                pytest.fail(f"php-fpm did not come up: {' '.join(self.args)}\n{out}\n{self.log_text()}")
            time.sleep(0.05)
        return self

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(k) for k in kids]

    def request(self, script: Path, query: str = "", timeout: float = 20) -> tuple[float, str, str]:
        """One FastCGI GET request via `cgi-fcgi -bind -connect`. Returns (seconds, body, raw)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SCRIPT_FILENAME": str(script),
            "SCRIPT_NAME": "/" + script.name,
            "REQUEST_URI": "/" + script.name + ("?" + query if query else ""),
            "DOCUMENT_ROOT": str(script.parent),
            "QUERY_STRING": query,
            "REQUEST_METHOD": "GET",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": "shop.example.test",
            "SERVER_PORT": "80",
            "REMOTE_ADDR": "127.0.0.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        t0 = time.monotonic()
        try:
            p = subprocess.run([self.cgi_bin, "-bind", "-connect", str(self.sock)], env=env,
                               capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"FastCGI request did not complete within {timeout}s\n{self.log_text()}")
        dt = time.monotonic() - t0
        raw = p.stdout.decode(errors="replace")
        assert p.returncode == 0, f"cgi-fcgi exited {p.returncode}: {raw}\n{p.stderr!r}\n{self.log_text()}"
        body = raw.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in raw else raw
        return dt, body, raw

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        # workers share the master's process group: make sure none survives
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._out.close()
        self.proc = None
