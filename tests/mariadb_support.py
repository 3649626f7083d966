"""A private MariaDB server for the shared-outbox tests: Debian's `mariadbd` started with
`--no-defaults`, its own datadir, socket and port on 127.0.0.1, binary logging on (a replicated
primary), and a `woosync` account that has every right on one database and no SUPER.

    db = MariaDB(tmp_dir).start()
    db.url(prefix="t1_")            # mysql://woosync:<percent-encoded password>@127.0.0.1:PORT/shop?prefix=t1_
    db.sql("SELECT 1")              # as root, over the socket
    db.stop(); db.start()           # a restart (same data, same port)
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Optional

DATABASE = "shop"
USER = "woosync"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MariaDB:
    def __init__(self, base: Path, max_connections: int = 151, extra_args: tuple = ()):
        self.base = Path(base)
        self.datadir = self.base / "data"
        self.sock = self.base / "mysqld.sock"
        self.port = _free_port()
        self.max_connections = max_connections
        self.extra_args = list(extra_args)  # more `mariadbd` options (e.g. TLS)
        # A password with every character a URL has to escape.
        self.password = "p@ss:w/rd?#%" + secrets.token_hex(4)
        self.proc: Optional[subprocess.Popen] = None
        self.errlog = self.base / "mysqld.err"

    # ---- lifecycle ---------------------------------------------------------------------------
    def _mysqld_args(self) -> list:
        args = ["mariadbd", "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.sock}",
                f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
                f"--pid-file={self.base / 'mysqld.pid'}", f"--log-error={self.errlog}",
                f"--log-bin={self.base / 'binlog'}", "--server-id=1", "--binlog-format=ROW",
                f"--max-connections={self.max_connections}",
                "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M",
                "--performance-schema=OFF", *self.extra_args]
        if os.geteuid() == 0:
            args.append("--user=root")
        return args

    def start(self) -> "MariaDB":
        self.base.mkdir(parents=True, exist_ok=True)
        if not (self.datadir / "mysql").is_dir():
            cmd = ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--skip-test-db",
                   "--auth-root-authentication-method=socket"]
            if os.geteuid() == 0:
                cmd.append("--user=root")
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if p.returncode != 0:
                raise RuntimeError(f"mariadb-install-db failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
            fresh = True
        else:
            fresh = False
        self.proc = subprocess.Popen(self._mysqld_args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            p = subprocess.run(["mariadb-admin", f"--socket={self.sock}", "-uroot", "ping"],
                               capture_output=True, text=True, timeout=10)
            if p.returncode == 0 and "alive" in p.stdout:
                if fresh:
                    self._create_account()
                return self
            time.sleep(0.2)
        err = self.errlog.read_text(errors="replace")[-3000:] if self.errlog.exists() else ""
        raise RuntimeError("MariaDB did not start within 60 s\n" + err)

    def _create_account(self) -> None:
        pw = self.password.replace("\\", "\\\\").replace("'", "\\'")
        self.sql(f"CREATE DATABASE `{DATABASE}` CHARACTER SET utf8mb4; "
                 f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{pw}'; "
                 f"CREATE USER '{USER}'@'localhost' IDENTIFIED BY '{pw}'; "
                 f"GRANT ALL ON `{DATABASE}`.* TO '{USER}'@'127.0.0.1'; "
                 f"GRANT ALL ON `{DATABASE}`.* TO '{USER}'@'localhost';")

    def stop(self) -> None:
        """A clean shutdown (committed data kept)."""
        subprocess.run(["mariadb-admin", f"--socket={self.sock}", "-uroot", "shutdown"],
                       capture_output=True, timeout=60)
        self._reap()

    def kill(self) -> None:
        """kill -9 of the server."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            self.proc = None

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    # ---- use ------------------------------------------------------------------------------
    def url(self, prefix: str = "wp_", scheme: str = "mysql", socket_path: bool = False) -> str:
        pw = urllib.parse.quote(self.password, safe="")
        if socket_path:
            sock = urllib.parse.quote(str(self.sock), safe="/")
            return f"{scheme}://{USER}:{pw}@localhost/{DATABASE}?prefix={prefix}&socket={sock}"
        return f"{scheme}://{USER}:{pw}@127.0.0.1:{self.port}/{DATABASE}?prefix={prefix}"

    def sql(self, statement: str, database: Optional[str] = None, timeout: float = 60) -> str:
        args = ["mariadb", f"--socket={self.sock}", "-uroot", "-N", "-B"]
        if database:
            args.append(database)
        p = subprocess.run(args + ["-e", statement], capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"SQL failed: {statement[:200]}\n{p.stderr}")
        return p.stdout

    def rows(self, statement: str) -> list:
        return [line.split("\t") for line in self.sql(statement, DATABASE).splitlines()]

    def value(self, statement: str) -> str:
        out = self.sql(statement, DATABASE).strip()
        return out.splitlines()[0] if out else ""

    def connections(self, user: str = USER) -> int:
        """Connections the server has open for `user`."""
        return int(self.sql(f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'").strip())

    def session(self) -> "Session":
        """An interactive root session over the socket (for holding locks and transactions)."""
        return Session(self)


class Session:
    """A `mariadb` client kept open, fed statements on stdin (to hold a transaction open)."""

    def __init__(self, db: MariaDB):
        self.p = subprocess.Popen(["mariadb", f"--socket={db.sock}", "-uroot", "-N", "-B", "-n", DATABASE],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)

    def send(self, statement: str, marker: Optional[str] = None, timeout: float = 20) -> str:
        """Runs `statement`; when `marker` is given, waits for `SELECT '<marker>'` to come back."""
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(statement.rstrip(";") + ";\n")
        if marker:
            self.p.stdin.write(f"SELECT '{marker}';\n")
        self.p.stdin.flush()
        if not marker:
            return ""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            if not line:
                break
            if line.strip() == marker:
                return "".join(out)
            out.append(line)
        raise AssertionError(f"no answer to {statement[:100]!r} within {timeout}s: {''.join(out)[-500:]}")

    def close(self) -> None:
        try:
            if self.p.stdin:
                self.p.stdin.close()
            self.p.wait(10)
        except Exception:
            os.killpg(self.p.pid, signal.SIGKILL)
