"""Shared fixtures for the woosync integration tests.

Every test gets its own outbox file (``outbox``) and a ``php`` helper that runs PHP scripts with
the extension loaded and ``woosync.database`` pointing at that outbox. Every subprocess has a
timeout.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
sys.path.insert(0, str(TESTS_DIR))

from receiver import Blackhole, Receiver, Response, closed_port  # noqa: E402,F401  (re-exported for tests)

DEFAULT_SO = ROOT / "target" / "release" / "libwoosync.so"
# Test receivers listen on 127.0.0.1, which the destination policy refuses unless allowed.
LOOPBACK = "127.0.0.1/32"
PHP = os.environ.get("PHP", "php")

FUNCTIONS = [
    "woosync_dispatch",
    "woosync_flush",
    "woosync_status",
    "woosync_verify",
    "woosync_retry",
    "woosync_events",
    "woosync_event",
]

# Helpers prepended to every generated script (unless prelude=False).
PRELUDE = r"""
function out($v) {
    // one write per line, so lines from forked processes do not interleave
    echo json_encode($v, JSON_UNESCAPED_SLASHES | JSON_PRESERVE_ZERO_FRACTION | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR) . "\n";
}
/** Call $f; return ['ok'=>bool, 'value'=>..., 'class'=>?, 'message'=>?, 'parents'=>[...]] instead of throwing. */
function attempt(callable $f) {
    try {
        $v = $f();
        return ['ok' => true, 'value' => $v, 'class' => null, 'message' => null, 'parents' => []];
    } catch (\Throwable $e) {
        return ['ok' => false, 'value' => null, 'class' => get_class($e), 'message' => $e->getMessage(),
                'parents' => array_values(class_parents($e)), 'is_exception' => $e instanceof \Exception];
    }
}
function total_events(array $s) {
    return $s['pending'] + $s['delivered'] + $s['dead'] + $s['superseded'] + $s['unrouted'];
}
function b64($s) { return base64_encode($s); }
"""


def ini_arg(key: str, value) -> str:
    """One `-d` argv element, always double-quoted. PHP's CLI hands an unquoted value to the INI
    parser, which chokes on `=` (a padded whsec_ secret) and cuts URLs at `=`/`&`."""
    if isinstance(value, bool):
        value = "1" if value else "0"
    value = str(value)
    if '"' in value or "$" in value or "\\" in value or "\n" in value:
        raise ValueError(f"cannot pass INI value {value!r} safely with -d")
    return f'-d{key}="{value}"'


def make_secret(nbytes: int = 32) -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(nbytes)).decode()


@dataclass
class PhpResult:
    args: list
    returncode: int
    stdout: str
    stderr: str
    duration: float
    script: Optional[Path] = None

    def describe(self) -> str:
        return (f"php exited {self.returncode} after {self.duration:.2f}s\n"
                f"--- command: {' '.join(shlex.quote(str(a)) for a in self.args)}\n"
                f"--- stdout:\n{self.stdout[-4000:]}\n--- stderr:\n{self.stderr[-4000:]}")

    def check(self) -> "PhpResult":
        assert self.returncode == 0, self.describe()
        return self

    def json_lines(self) -> list:
        out = []
        for line in self.stdout.splitlines():
            line = line.strip()
            if line.startswith(("{", "[", '"')) or line in ("true", "false", "null") or re.fullmatch(r"-?\d+(\.\d+)?", line):
                out.append(json.loads(line))
        return out


class Php:
    """Runs PHP scripts with the extension loaded and the test's outbox configured."""

    def __init__(self, so: Path, outbox: Path, workdir: Path):
        self.so = so
        self.outbox = outbox
        self.workdir = workdir
        self.base_ini: dict = {}
        self._n = 0
        self._procs: list[subprocess.Popen] = []

    # ---- argv ---------------------------------------------------------------------------------
    def argv(self, script: Optional[Path] = None, ini: Optional[dict] = None, extension: bool = True,
             database: Optional[object] = "default", extra: tuple = ()) -> list:
        args = [PHP, "-d", "display_errors=stderr", "-d", "error_reporting=-1", "-d", "log_errors=0",
                "-d", "memory_limit=512M"]
        if extension:
            args.append(f"-dextension={self.so}")
        # The destination policy refuses loopback by default; the tests' receivers live there.
        merged = {"woosync.allow_networks": LOOPBACK}
        if database == "default":
            merged["woosync.database"] = str(self.outbox)
        elif database is not None:
            merged["woosync.database"] = str(database)
        merged.update(self.base_ini)
        merged.update(ini or {})
        for k, v in merged.items():
            if v is None:
                continue
            args.append(ini_arg(k, v))
        args.extend(extra)
        if script is not None:
            args.append(str(script))
        return args

    def write(self, code: str, prelude: bool = True, script_dir: Optional[Path] = None) -> Path:
        self._n += 1
        path = (script_dir or self.workdir) / f"script{self._n}.php"
        code = code.strip()
        if code.startswith("<?php"):
            code = code[len("<?php"):]
        path.write_text("<?php\n" + (PRELUDE if prelude else "") + "\n" + code + "\n")
        return path

    # ---- running --------------------------------------------------------------------------------
    def run(self, code: str, ini: Optional[dict] = None, timeout: float = 60, extension: bool = True,
            database: Optional[object] = "default", prelude: bool = True, user: Optional[str] = None,
            env: Optional[dict] = None, check: bool = False, stdin: Optional[str] = None,
            script_dir: Optional[Path] = None) -> PhpResult:
        """Run `code` (a PHP script body; the PRELUDE helpers are available) and return a PhpResult.
        `user` runs it via `runuser -u USER --` (the script then must live in a directory USER can
        read: pass script_dir)."""
        script = self.write(code, prelude=prelude, script_dir=script_dir)
        args = self.argv(script, ini, extension, database)
        if user is not None:
            os.chmod(script, 0o644)
            args = ["runuser", "-u", user, "--"] + args
        return self._exec(args, timeout, env, check, stdin, script, cwd=script.parent)

    def run_args(self, extra: list, ini: Optional[dict] = None, timeout: float = 60, extension: bool = True,
                 database: Optional[object] = "default", check: bool = False) -> PhpResult:
        """Run php with explicit trailing arguments, e.g. ['--re', 'woosync'] or ['-r', 'code']."""
        args = self.argv(None, ini, extension, database, tuple(extra))
        return self._exec(args, timeout, None, check, None, None)

    def _exec(self, args, timeout, env, check, stdin, script, cwd=None) -> PhpResult:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        t0 = time.monotonic()
        try:
            p = subprocess.run(args, capture_output=True, timeout=timeout, env=full_env, input=stdin,
                               text=True, errors="replace", cwd=str(cwd or self.workdir))
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            pytest.fail(f"php did not finish within {timeout}s: {' '.join(map(str, args))}\n"
                        f"--- stdout:\n{out[-3000:]}\n--- stderr:\n{err[-3000:]}")
        res = PhpResult(args, p.returncode, p.stdout, p.stderr, time.monotonic() - t0, script)
        if check:
            res.check()
        return res

    def json(self, code: str, ini: Optional[dict] = None, timeout: float = 60, **kw):
        """Run a script whose LAST stdout line is JSON (use `out($value)`); return the decoded value.
        Fails the test (with stdout/stderr) if php fails or prints no JSON."""
        res = self.run(code, ini=ini, timeout=timeout, **kw)
        assert res.returncode == 0, res.describe()
        lines = [l for l in res.stdout.splitlines() if l.strip()]
        assert lines, "php printed nothing\n" + res.describe()
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pytest.fail("php did not print JSON on its last line\n" + res.describe())

    def popen(self, code: str, ini: Optional[dict] = None, prelude: bool = True, **kw) -> subprocess.Popen:
        """Start a php script in the background (stdout/stderr pipes, text mode). Killed at teardown."""
        script = self.write(code, prelude=prelude)
        args = self.argv(script, ini)
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
                             text=True, errors="replace", cwd=str(self.workdir), start_new_session=True, **kw)
        p.args_for_report = args  # type: ignore[attr-defined]
        self._procs.append(p)
        return p

    def status(self, ini: Optional[dict] = None, **kw) -> dict:
        return self.json("out(woosync_status());", ini=ini, **kw)

    def event(self, event_id: str, ini: Optional[dict] = None) -> Optional[dict]:
        return self.json(f"out(woosync_event({json.dumps(event_id)}));", ini=ini)

    def cleanup(self):
        for p in self._procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            for f in (p.stdout, p.stderr, p.stdin):
                try:
                    if f:
                        f.close()
                except OSError:
                    pass


def php_literal(value) -> str:
    """A PHP expression for a Python str (binary-safe through base64), int, float, bool, None."""
    if isinstance(value, bytes):
        return f"base64_decode('{base64.b64encode(value).decode()}')"
    if isinstance(value, str):
        return f"base64_decode('{base64.b64encode(value.encode()).decode()}')"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return repr(value)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "engines(*names): run the test once per storage engine named (sqlite, mysql)")
    config.addinivalue_line(
        "markers",
        "system_install: installs woosync into the system (the .deb, make install); run alone with "
        "`pytest -m system_install` (make test-system), never together with the other tests")


def pytest_collection_modifyitems(config, items):
    """Tests that install into the system run only when asked for by name (`-m system_install`):
    a plain `pytest tests` as root must not install packages."""
    if "system_install" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="installs woosync into the system: run alone with "
                                   "`pytest -m system_install` (make test-system)")
    for item in items:
        if item.get_closest_marker("system_install"):
            item.add_marker(skip)


SYSTEM_WOOSYNC_PHP = r"""
$files = array_filter(array_merge([php_ini_loaded_file()], array_map('trim', explode(',', (string) php_ini_scanned_files()))));
$hits = array_values(array_filter($files, function ($f) { return is_readable($f) && stripos(file_get_contents($f), 'woosync') !== false; }));
echo json_encode(extension_loaded('woosync') ? ($hits ?: ['an ini file PHP does not name']) : []);
"""


def system_woosync() -> list:
    """The ini files through which the system PHP CLI loads woosync without `-d extension=`."""
    p = subprocess.run([PHP, "-r", SYSTEM_WOOSYNC_PHP], capture_output=True, text=True, timeout=30)
    lines = p.stdout.strip().splitlines()
    return json.loads(lines[-1]) if p.returncode == 0 and lines else []


# ---- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def so() -> Path:
    path = Path(os.environ.get("WOOSYNC_SO", str(DEFAULT_SO))).resolve()
    if not path.is_file():
        pytest.fail(f"woosync extension not found at {path} (build it, or set WOOSYNC_SO)", pytrace=False)
    loaded = system_woosync()
    if loaded:
        pytest.fail("woosync is already enabled in the system PHP (" + ", ".join(loaded) +
                    "): the tests load the built extension with -d extension= and would load it twice. "
                    "Run `make uninstall`, `apt-get purge woosync-php<version>` or `phpdismod woosync` first.",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def so_functions(so) -> list:
    """Names of the functions the built extension exports (fails clearly if it does not load)."""
    p = subprocess.run([PHP, f"-dextension={so}", "-r",
                        "echo json_encode(array_keys((new ReflectionExtension('woosync'))->getFunctions()));"],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        pytest.fail(f"php cannot load {so}:\n{p.stdout}\n{p.stderr}", pytrace=False)
    return json.loads(p.stdout.strip().splitlines()[-1])


def pytest_generate_tests(metafunc):
    """Tests (or modules) marked `@pytest.mark.engines("sqlite", "mysql")` run once per storage
    engine: the `outbox` fixture is then a SQLite file or a MariaDB URL (own table prefix per test)."""
    marker = metafunc.definition.get_closest_marker("engines")
    if marker and "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", list(marker.args), indirect=True)


@pytest.fixture
def engine(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    """One private MariaDB for the session (binary log on, an account without SUPER); each test
    uses its own table prefix. Tests that restart or reconfigure a server start their own."""
    from mariadb_support import MariaDB

    db = MariaDB(tmp_path_factory.mktemp("mariadb")).start()
    yield db
    db.destroy()


@pytest.fixture
def mysql_url(mariadb) -> str:
    """The outbox URL of a fresh set of tables (`t<hex>_woosync_*`) on the session's MariaDB."""
    return mariadb.url("t" + secrets.token_hex(4) + "_")


@pytest.fixture
def outbox(tmp_path, engine, request):
    if engine == "mysql":
        return request.getfixturevalue("mysql_url")
    d = tmp_path / "db"
    d.mkdir()
    return d / "outbox.sqlite"


@pytest.fixture
def php(so, so_functions, outbox, tmp_path):
    missing = [f for f in FUNCTIONS if f not in so_functions]
    if missing:
        pytest.fail(f"{so} does not export {missing} (exports {so_functions})", pytrace=False)
    work = tmp_path / "work"
    work.mkdir()
    helper = Php(so, outbox, work)
    yield helper
    helper.cleanup()


@pytest.fixture
def receiver():
    rx = Receiver()
    rx.start()
    yield rx
    rx.stop()


@pytest.fixture
def rx(receiver):
    """The WordPress tests' name for `receiver`."""
    return receiver


@pytest.fixture
def blackhole():
    bh = Blackhole()
    yield bh
    bh.stop()


@pytest.fixture
def secret() -> str:
    return make_secret()


def fast_ini(url: str, secret: Optional[str] = None, delays: str = "0.05,0.05", **more) -> dict:
    ini = {"woosync.endpoint": url, "woosync.retry_delays": delays, "woosync.timeout": 5,
           "woosync.source": "https://shop.example.test"}
    if secret:
        ini["woosync.secret"] = secret
    for k, v in more.items():
        ini["woosync." + k] = v
    return ini


# ---- WordPress: the real WordPress 7.0.4 + WooCommerce 11.0.1 + WP-CLI 2.12.0 -------------------
# One shop is installed per session (tests/wp/wpsite.py); every test that takes `wp` starts from the
# database dump taken right after the install, and fails when the plugin raised a PHP notice,
# warning or deprecation (WP_DEBUG_LOG is on in every test site).

sys.path.insert(0, str(TESTS_DIR / "wp"))
import wpsite  # noqa: E402


@pytest.fixture(scope="session")
def wp_base():
    import shutil
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="wpt-", dir="/tmp"))  # no "woosync" in paths: see wpsite.OURS
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def realwp(wp_base) -> "wpsite.RealWP":
    wpsite.ensure_packages()
    return wpsite.unpack(wp_base / "realwp")


@pytest.fixture(scope="session")
def wp_mariadb(wp_base, realwp):
    """The WordPress shops' own MariaDB (not the outbox engine's `mariadb`)."""
    db = wpsite.MariaDB(wp_base)
    db.start()
    yield db
    db.stop()


@pytest.fixture(scope="session")
def shop(so, wp_base, wp_mariadb, realwp):
    """The session's shop: installed with `wp core install`, WooCommerce and woosync activated
    with `wp plugin activate`, dumped right after (see wp)."""
    site = wpsite.Site(wp_base, wp_mariadb, "shop", so, realwp)
    site.install()
    site.save_state()
    yield site
    site.stop_server()


def assert_no_plugin_notices(site, marks, what: str) -> None:
    problems = site.problems_since(marks)
    assert not problems, f"the plugin raised PHP notices/warnings during {what}:\n" + "\n".join(problems[:10])


@pytest.fixture
def wp(shop, request):
    """The shop, restored to its freshly installed state; fails the test when the plugin raised a
    notice, warning or deprecation meanwhile (debug log or a PHP process's stderr)."""
    shop.restore_state()
    marks = shop.log_marks()
    yield shop
    shop.stop_server()
    shop.remove_mu_plugins()
    assert_no_plugin_notices(shop, marks, request.node.name)


@pytest.fixture(params=wpsite.STORAGES)
def storage(request, wp) -> str:
    """Runs the test once per order storage: HPOS, posts, HPOS with compatibility-mode sync."""
    wp.set_storage(request.param)
    return request.param
