"""Throw-away WordPress shops on a private MariaDB, for the woosync plugin tests: the real code.

The shop is the real WordPress 7.0.4 + WooCommerce 11.0.1, driven by the real WP-CLI 2.12.0, all
unpacked from ../shared/realwp/ (relative to the repository root) by its unpack.sh; Debian's
WordPress 6.1 with the real WooCommerce 7.9.0 from the same place checks the plugin's declared
minimum. MariaDB runs on 127.0.0.1 with its own datadir/port/socket (never the system one).

    realwp = wpsite.unpack(base)                 # RealWP: paths of the unpacked code
    db = wpsite.MariaDB(base); db.start()
    site = wpsite.Site(base, db, "shop", so, realwp); site.install()   # wp core install,
    site.wp("woosync", "status", ini=...)        # the real `wp` (WP_CLI_PHP_ARGS carries -d ...)
    site.php("...")                              # a PHP script with WordPress loaded
    site.save_state(); site.restore_state()      # database dump taken once, restored per test
    site.set_storage("hpos" | "posts" | "hpos-sync")

Every subprocess call has a timeout. PHP runs with OPcache's file cache (per session directory),
which makes each WordPress + WooCommerce boot ~3x cheaper; files are revalidated on every load.
"""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PLUGIN_DIR = ROOT / "php" / "woosync"
UNPACK = ROOT.parent / "shared" / "realwp" / "unpack.sh"
PHP = os.environ.get("PHP", "php")
PACKAGES = ["mariadb-server", "php-mysql", "xz-utils"]
DEBIAN_WORDPRESS = Path("/usr/share/wordpress")   # Debian's wordpress package (6.1): the plugin's minimum
STORAGES = ("hpos", "posts", "hpos-sync")


def run(args, timeout=120, check=True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, errors="replace", **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{args!r} exited {p.returncode}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def apt_install(packages: list) -> None:
    missing = []
    for pkg in packages:
        p = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False, timeout=30)
        if "install ok installed" not in p.stdout:
            missing.append(pkg)
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update"], timeout=600, env=env)
        run(["apt-get", "install", "-y", "--no-install-recommends", *missing], timeout=1200, env=env)


def ensure_packages(debian_wordpress: bool = False) -> None:
    apt_install(PACKAGES + (["wordpress"] if debian_wordpress else []))
    if debian_wordpress and not (DEBIAN_WORDPRESS / "wp-settings.php").is_file():
        raise RuntimeError(f"Debian's wordpress package did not install {DEBIAN_WORDPRESS}")


class RealWP:
    """The unpacked real code: WordPress 7.0.4, WooCommerce 11.0.1 and 7.9.0, WP-CLI 2.12.0."""

    def __init__(self, top: Path):
        self.top = top
        self.wordpress = top / "wordpress"
        self.woocommerce = top / "woocommerce"
        self.woocommerce_old = top / "woocommerce-7.9.0"
        self.wpcli = top / "wp-cli" / "wp"
        for p in (self.wordpress / "wp-settings.php", self.woocommerce / "woocommerce.php",
                  self.woocommerce_old / "woocommerce.php", self.wpcli):
            if not p.exists():
                raise RuntimeError(f"{p} is missing from the unpacked tarball in {top}")


def unpack(dest: Path) -> RealWP:
    """Runs ../shared/realwp/unpack.sh DEST (it checks the tarballs' sha256) and returns the paths."""
    if not UNPACK.is_file():
        raise RuntimeError(f"{UNPACK} not found: the tests need ../shared/realwp/ next to the repository")
    p = run(["bash", str(UNPACK), str(dest)], timeout=900)
    return RealWP(Path(p.stdout.strip().splitlines()[-1]) / "realwp")


class MariaDB:
    """A private mysqld: own datadir, socket and port on 127.0.0.1."""

    def __init__(self, base: Path):
        self.base = base
        self.datadir = base / "mysql-data"
        self.rundir = base / "mysql-run"
        self.sock = self.rundir / "mysqld.sock"
        self.port = free_port()
        self.cnf = base / "my.cnf"
        self.proc: Optional[subprocess.Popen] = None
        self.password = secrets.token_hex(8)

    def start(self) -> None:
        for d in (self.datadir, self.rundir):
            run(["install", "-d", "-o", "mysql", "-g", "root", "-m", "0750", str(d)], timeout=30)
        run(["install", "-d", "-o", "mysql", "-g", "root", "/run/mysqld"], timeout=30)
        self.cnf.write_text(
            "[mysqld]\n"
            f"datadir={self.datadir}\nsocket={self.sock}\nport={self.port}\nbind-address=127.0.0.1\n"
            f"pid-file={self.rundir}/mysqld.pid\nlog-error={self.rundir}/mysqld.err\nuser=mysql\n"
            "skip-name-resolve\nskip-log-bin\ninnodb_buffer_pool_size=64M\ninnodb_log_file_size=16M\n"
            "innodb_flush_log_at_trx_commit=2\n"
            "[client]\n"
            f"socket={self.sock}\n"
        )
        os.chmod(self.cnf, 0o644)
        run(["mariadb-install-db", f"--defaults-file={self.cnf}", "--user=mysql", "--skip-test-db",
             "--auth-root-authentication-method=socket"], timeout=300)
        self.proc = subprocess.Popen(["mysqld_safe", f"--defaults-file={self.cnf}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = run(["mariadb-admin", f"--socket={self.sock}", "-uroot", "ping"], check=False, timeout=10)
            if p.returncode == 0 and "alive" in p.stdout:
                return
            time.sleep(0.3)
        err = (self.rundir / "mysqld.err").read_text(errors="replace")[-3000:] if (self.rundir / "mysqld.err").exists() else ""
        raise RuntimeError("MariaDB did not start within 60 s\n" + err)

    def sql(self, statement: str, database: str = "") -> str:
        return run(["mariadb", f"--socket={self.sock}", "-uroot", "-N", "-e", statement]
                   + ([database] if database else []), timeout=60).stdout

    def create_database(self, name: str) -> None:
        self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4; "
                 f"CREATE USER IF NOT EXISTS 'wp'@'127.0.0.1' IDENTIFIED BY '{self.password}'; "
                 f"GRANT ALL ON `{name}`.* TO 'wp'@'127.0.0.1';")

    def dump(self, name: str, path: Path) -> None:
        with open(path, "wb") as f:
            p = subprocess.run(["mariadb-dump", f"--socket={self.sock}", "-uroot", "--single-transaction",
                                "--skip-comments", "--add-drop-table", name], stdout=f, stderr=subprocess.PIPE,
                               timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"mariadb-dump {name} failed: {p.stderr.decode(errors='replace')[-2000:]}")

    def restore(self, name: str, path: Path) -> None:
        """Drops every table (tests may have added some) and loads the dump."""
        tables = self.sql(f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{name}'").split()
        if tables:
            self.sql("SET FOREIGN_KEY_CHECKS=0; DROP TABLE " + ", ".join(f"`{t}`" for t in tables) + ";", name)
        with open(path, "rb") as f:
            p = subprocess.run(["mariadb", f"--socket={self.sock}", "-uroot", name], stdin=f,
                               capture_output=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"restoring {name} failed: {p.stderr.decode(errors='replace')[-2000:]}")

    def stop(self) -> None:
        run(["mariadb-admin", f"--socket={self.sock}", "-uroot", "shutdown"], check=False, timeout=60)
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


# A notice, warning or deprecation that concerns the plugin: raised from its files, naming the
# `woosync` text domain (WordPress's _load_textdomain_just_in_time notice), a woosync_* function
# or a Woosync\ class. Temp paths are named wpt-* so that a path never matches by accident.
PHP_PROBLEM = re.compile(r"\b(?:PHP )?(Notice|Warning|Deprecated|Fatal error|Parse error|Strict Standards):")
OURS = re.compile(r"plugins/woosync/|/php/woosync/|<code>woosync</code>|\bwoosync_[a-z_]+|Woosync\\|tests/wp/", re.I)


def problems_in(text: str) -> list:
    """PHP notices/warnings/deprecations concerning the plugin in a debug log or stderr excerpt.
    Debug log entries start with `[date] `; continuation lines (stack traces) belong to the entry."""
    entries, current = [], []
    for line in text.splitlines():
        if line.startswith("[") and current:
            entries.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        entries.append("\n".join(current))
    return [e for e in entries if PHP_PROBLEM.search(e) and OURS.search(e)]


class Site:
    """One WordPress install with WooCommerce and the woosync plugin active."""

    def __init__(self, base: Path, db: MariaDB, name: str, so: Path, realwp: RealWP,
                 multisite_domain: Optional[str] = None, minimum: bool = False):
        """`minimum=True`: Debian's WordPress 6.1 with WooCommerce 7.9.0 (the declared minimum)."""
        self.base = base
        self.db = db
        self.name = name
        self.so = so
        self.realwp = realwp
        self.minimum = minimum
        self.root = base / name
        self.port = free_port()
        self.multisite_domain = multisite_domain
        self.url = f"http://{multisite_domain}" if multisite_domain else f"http://127.0.0.1:{self.port}"
        self.scripts = base / f"{name}-scripts"
        self.debug_log = base / f"{name}-debug.log"
        self.dump_file = base / f"{name}.sql"
        self.opcache = base / "opcache"
        self.wpcli_home = base / f"{name}-wp-cli"
        self.server: Optional[subprocess.Popen] = None
        self._server_log = None
        self._n = 0
        self.admin_password = secrets.token_hex(8)
        self._mu: set = set()
        self.stray: list = []   # notices concerning the plugin seen on a PHP process's stderr

    # ---- install -----------------------------------------------------------------------------
    def install(self, extra_config: str = "") -> None:
        """wp-config.php by hand (the tarball's WP-CLI has no `config` command), then the real
        `wp core install`, `wp plugin activate woocommerce`, the shop settings through
        WooCommerce's API (`wp eval-file`), and `wp plugin activate woosync`."""
        source = DEBIAN_WORDPRESS if self.minimum else self.realwp.wordpress
        shutil.copytree(source, self.root, symlinks=False,
                        ignore=shutil.ignore_patterns(".htaccess", "wp-config.php"))
        plugins = self.root / "wp-content" / "plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.realwp.woocommerce_old if self.minimum else self.realwp.woocommerce,
                        plugins / "woocommerce", symlinks=True)
        (plugins / "woosync").symlink_to(PLUGIN_DIR)
        (self.root / "wp-content" / "mu-plugins").mkdir(exist_ok=True)
        for d in (self.scripts, self.opcache, self.wpcli_home):
            d.mkdir(exist_ok=True)
        (self.wpcli_home / "config.yml").write_text("")
        self.db.create_database(self.name)
        salts = "\n".join(f"define('{k}', '{secrets.token_hex(32)}');" for k in (
            "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT", "SECURE_AUTH_SALT",
            "LOGGED_IN_SALT", "NONCE_SALT"))
        home = "" if self.multisite_domain else f"define('WP_HOME', '{self.url}');\ndefine('WP_SITEURL', '{self.url}');"
        (self.root / "wp-config.php").write_text(f"""<?php
define('DB_NAME', '{self.name}');
define('DB_USER', 'wp');
define('DB_PASSWORD', '{self.db.password}');
define('DB_HOST', '127.0.0.1:{self.db.port}');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
{salts}
$table_prefix = 'wp_';
{home}
define('WP_DEBUG', true);
define('WP_DEBUG_DISPLAY', false);
define('WP_DEBUG_LOG', '{self.debug_log}');
define('DISABLE_WP_CRON', true);
define('WP_ENVIRONMENT_TYPE', 'local');
define('FS_METHOD', 'direct');
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
{extra_config}
/* That's all, stop editing! */
if ( ! defined( 'ABSPATH' ) ) {{ define( 'ABSPATH', __DIR__ . '/' ); }}
require_once ABSPATH . 'wp-settings.php';
""")
        common = ["--title=woosync test shop", "--admin_user=admin", f"--admin_password={self.admin_password}",
                  "--admin_email=admin@example.test", "--skip-email"]
        if self.multisite_domain:
            # Writes the multisite constants into wp-config.php (before "That's all, stop editing!").
            self.wp_ok("core", "multisite-install", f"--url={self.url}", "--base=/", *common, url=None)
        else:
            self.wp_ok("core", "install", f"--url={self.url}", *common)
        network = ["--network"] if self.multisite_domain else []
        self.wp_ok("plugin", "activate", "woocommerce", *network)
        self.wp_ok("eval-file", str(HERE / "shop-setup.php"))
        self.wp_ok("plugin", "activate", "woosync", *network)

    # ---- state -------------------------------------------------------------------------------------
    def save_state(self) -> None:
        """Dumps the database; restore_state() brings the shop back to this point."""
        self.db.dump(self.name, self.dump_file)

    def restore_state(self) -> None:
        self.db.restore(self.name, self.dump_file)

    def set_storage(self, storage: str) -> None:
        """Order storage: `hpos` (WooCommerce's order tables), `posts` (wp_posts), or `hpos-sync`
        (order tables with compatibility-mode sync to wp_posts, where extra saves fire). Run it on
        a shop without orders (restore_state() first), as WooCommerce's settings page requires."""
        assert storage in STORAGES, storage
        enabled = "no" if storage == "posts" else "yes"
        sync = "yes" if storage == "hpos-sync" else "no"
        res = self.php(f"""
            update_option('woocommerce_custom_orders_table_enabled', '{enabled}');
            update_option('woocommerce_custom_orders_table_data_sync_enabled', '{sync}');
            out(['hpos' => \\Automattic\\WooCommerce\\Utilities\\OrderUtil::custom_orders_table_usage_is_enabled(),
                 'sync' => get_option('woocommerce_custom_orders_table_data_sync_enabled'),
                 'store' => WC_Data_Store::load('order')->get_current_class_name()]);
        """)
        got = res.last_json()
        assert got["hpos"] == (enabled == "yes") and got["sync"] == sync, (storage, got)

    # ---- running PHP -------------------------------------------------------------------------------
    def php_args(self, extension: bool = True, ini: Optional[dict] = None, for_wpcli: bool = False) -> list:
        args = [] if for_wpcli else [PHP, "-d", "display_errors=stderr", "-d", "error_reporting=-1"]
        args += ["-d", "log_errors=0", "-d", "memory_limit=512M", "-d", "opcache.enable_cli=1",
                 "-d", f"opcache.file_cache={self.opcache}", "-d", "opcache.file_cache_only=1",
                 "-d", "opcache.revalidate_freq=0", "-d", "opcache.validate_timestamps=1"]
        if extension:
            args.append(f"-dextension={self.so}")
            # The test CRM listens on 127.0.0.1, which the destination policy refuses unless allowed.
            ini = {"woosync.allow_networks": "127.0.0.1/32", **(ini or {})}
        for k, v in (ini or {}).items():
            v = str(v)
            if for_wpcli and (re.search(r"\s", v) or '"' in v):
                raise ValueError(f"WP_CLI_PHP_ARGS is split on whitespace: cannot pass {k}={v!r}")
            args.append(f'-d{k}="{v}"')
        return args

    def env(self, extra: Optional[dict] = None) -> dict:
        env = dict(os.environ, WOOSYNC_WP_ROOT=str(self.root), WOOSYNC_WP_URL=self.url)
        env.update(extra or {})
        return env

    def php(self, code: str, extension: bool = True, ini: Optional[dict] = None, timeout: float = 120,
            bootstrap: bool = True, env: Optional[dict] = None) -> "Result":
        """Runs a PHP script with WordPress loaded (tests/wp/bootstrap.php: out(), helpers.php)."""
        self._n += 1
        script = self.scripts / f"s{self._n}.php"
        head = f"require '{HERE}/bootstrap.php';\n" if bootstrap else ""
        script.write_text("<?php\n" + head + code + "\n")
        return self._exec(self.php_args(extension, ini) + [str(script)], timeout, env)

    def wp(self, *args: str, extension: bool = True, ini: Optional[dict] = None, timeout: float = 120,
           url: Optional[str] = "", env: Optional[dict] = None) -> "Result":
        """The real WP-CLI: `bash wp-cli/wp --path=<site> [--url=] <args>`, with the php flags
        (extension, woosync.* settings) in WP_CLI_PHP_ARGS as its launcher expects."""
        argv = ["bash", str(self.realwp.wpcli), f"--path={self.root}", "--allow-root"]
        if url is None:
            pass
        elif url:
            argv.append(f"--url={url}")
        elif self.multisite_domain:
            argv.append(f"--url={self.url}/")
        extra = {"WP_CLI_PHP": PHP, "WP_CLI_PHP_ARGS": " ".join(self.php_args(extension, ini, for_wpcli=True)),
                 "WP_CLI_CONFIG_PATH": str(self.wpcli_home / "config.yml"),
                 "WP_CLI_CACHE_DIR": str(self.wpcli_home / "cache"), "WP_CLI_DISABLE_AUTO_CHECK_UPDATE": "1",
                 "HOME": str(self.wpcli_home)}
        extra.update(env or {})
        return self._exec(argv + list(args), timeout, extra)

    def wp_tty(self, *args: str, ini: Optional[dict] = None, timeout: float = 240) -> "Result":
        """The real WP-CLI with its stdout on a pseudo-terminal, as in a user's shell: tables are
        drawn with borders and progress bars are shown (both are off when stdout is a pipe)."""
        import pty
        import select
        master, slave = pty.openpty()
        argv = ["bash", str(self.realwp.wpcli), f"--path={self.root}", "--allow-root"] + list(args)
        env = self.env({"WP_CLI_PHP": PHP, "WP_CLI_PHP_ARGS": " ".join(self.php_args(True, ini, for_wpcli=True)),
                        "WP_CLI_CONFIG_PATH": str(self.wpcli_home / "config.yml"),
                        "WP_CLI_CACHE_DIR": str(self.wpcli_home / "cache"), "HOME": str(self.wpcli_home),
                        "COLUMNS": "300", "TERM": "xterm"})
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                                cwd=str(self.scripts), start_new_session=True)
        os.close(slave)
        chunks = []
        deadline = t0 + timeout
        try:
            while True:
                if time.monotonic() > deadline:
                    os.killpg(proc.pid, signal.SIGKILL)
                    raise AssertionError(f"wp {args} did not finish within {timeout}s: {b''.join(chunks)[-2000:]!r}")
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: the terminal's other side is closed
                        break
                    if not data:
                        break
                    chunks.append(data)
                elif proc.poll() is not None:
                    break
            err = proc.stderr.read().decode(errors="replace")
            proc.wait(30)
        finally:
            os.close(master)
            proc.stderr.close()
        self.stray.extend(problems_in(err))
        # Colours (WP-CLI's "Success:" is green on a terminal) are dropped; \r of the bar stays.
        out = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode(errors="replace").replace("\r\n", "\n"))
        return Result(argv, proc.returncode, out, err, time.monotonic() - t0)

    def wp_ok(self, *args: str, **kw) -> "Result":
        res = self.wp(*args, **kw)
        assert res.returncode == 0, res.describe()
        return res

    def _exec(self, args, timeout, env) -> "Result":
        t0 = time.monotonic()
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, errors="replace",
                               env=self.env(env), cwd=str(self.scripts))
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            raise AssertionError(f"timed out after {timeout}s: {args[-3:]}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")
        self.stray.extend(problems_in(p.stderr))
        return Result(args, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)

    def mu_plugin(self, name: str, code: Optional[str]) -> None:
        """Adds (or with code=None removes) a must-use plugin for the next runs."""
        path = self.root / "wp-content" / "mu-plugins" / f"{name}.php"
        if code is None:
            path.unlink(missing_ok=True)
            self._mu.discard(name)
        else:
            path.write_text("<?php\n" + code + "\n")
            self._mu.add(name)

    def remove_mu_plugins(self) -> None:
        """Removes every must-use plugin a test added (they are files: restore_state() keeps them)."""
        for name in list(self._mu):
            self.mu_plugin(name, None)

    def log_marks(self) -> tuple:
        """Where the debug log and the stray list end now (see problems_since)."""
        size = self.debug_log.stat().st_size if self.debug_log.exists() else 0
        return size, len(self.stray)

    def problems_since(self, marks: tuple) -> list:
        """Plugin notices written to the debug log or a PHP stderr since log_marks()."""
        size, n = marks
        text = ""
        if self.debug_log.exists():
            with open(self.debug_log, "rb") as f:
                f.seek(size)
                text = f.read().decode(errors="replace")
        return problems_in(text) + self.stray[n:]

    # ---- the web -------------------------------------------------------------------------------------
    def serve(self, extension: bool = True, ini: Optional[dict] = None, workers: int = 3,
              log: Optional[Path] = None) -> None:
        """php -S on the site's port. `workers=1` keeps one process (so the extension's sender lives
        in the server itself); `log` receives the server's output (else it is discarded)."""
        self.stop_server()
        env = self.env()
        if workers > 1:
            env["PHP_CLI_SERVER_WORKERS"] = str(workers)
        else:
            env.pop("PHP_CLI_SERVER_WORKERS", None)
        self._server_log = open(log, "wb") if log else None
        out = self._server_log or subprocess.DEVNULL
        self.server = subprocess.Popen(self.php_args(extension, ini) + ["-S", f"127.0.0.1:{self.port}", "-t", str(self.root)],
                                       stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL, env=env,
                                       cwd=str(self.root), start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:] if log else ""
                raise RuntimeError("php -S exited:\n" + tail)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("php -S did not start")

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait(10)
        self.server = None
        if self._server_log:
            self._server_log.close()
            self._server_log = None

    def browser(self, user: str, password: str) -> "Browser":
        b = Browser(self.url)
        b.login(user, password)
        return b


class Result:
    def __init__(self, args, returncode, stdout, stderr, duration):
        self.args, self.returncode, self.stdout, self.stderr, self.duration = args, returncode, stdout, stderr, duration

    def describe(self) -> str:
        return (f"exit {self.returncode} after {self.duration:.2f}s: {' '.join(map(str, self.args[-4:]))}\n"
                f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}")

    def last_json(self):
        lines = [l for l in self.stdout.splitlines() if l.strip()]
        assert self.returncode == 0 and lines, self.describe()
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            raise AssertionError("no JSON on the last line\n" + self.describe())

    def json_lines(self) -> list:
        out = []
        for line in self.stdout.splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Browser:
    """Cookie-keeping HTTP client for wp-admin and the Store API (real login through wp-login.php)."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.raw = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(self, path: str, data: Optional[dict] = None, follow: bool = True, timeout: float = 60,
                headers: Optional[dict] = None, json_body=None, method: Optional[str] = None):
        url = path if path.startswith("http") else self.base + path
        body = None
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        elif data is not None:
            body = urllib.parse.urlencode(data, doseq=True).encode()
        req = urllib.request.Request(url, data=body, headers=hdrs, method=method)
        opener = self.opener if follow else self.raw
        try:
            with opener.open(req, timeout=timeout) as r:
                return r.status, r.read().decode(errors="replace"), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace"), dict(e.headers)

    def login(self, user: str, password: str, redirect_to: str = "/wp-admin/") -> None:
        self.jar.set_cookie(_cookie("wordpress_test_cookie", "WP%20Cookie%20check", self.base))
        status, body, _ = self.request("/wp-login.php", {"log": user, "pwd": password, "wp-submit": "Log In",
                                                         "redirect_to": self.base + redirect_to, "testcookie": "1"})
        assert status == 200 and ("wp-admin-bar" in body or "Dashboard" in body), f"login failed: {status}\n{body[-2000:]}"


def _cookie(name, value, base):
    host = urllib.parse.urlparse(base).hostname
    return http.cookiejar.Cookie(0, name, value, None, False, host, False, False, "/", True, False, None, False,
                                 None, None, {})
