"""A throw-away WordPress on a private MariaDB, for the woosync plugin tests.

Installs Debian's `wordpress`, `mariadb-server` and `php-mysql` when missing, starts MariaDB on
127.0.0.1 with its own datadir/port/socket (never the system one), copies /usr/share/wordpress,
writes wp-config.php, installs the site with wp_install() from PHP, links the plugin from
php/woosync and activates it, and runs PHP (scripts, the stand-in `wp`, `php -S`) with or without
the built extension. Every subprocess call has a timeout.
"""
from __future__ import annotations

import http.cookiejar
import json
import os
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
PHP = os.environ.get("PHP", "php")
PACKAGES = ["wordpress", "mariadb-server", "php-mysql"]


def run(args, timeout=120, check=True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, errors="replace", **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{args!r} exited {p.returncode}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_packages() -> None:
    missing = []
    for pkg in PACKAGES:
        p = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False, timeout=30)
        if "install ok installed" not in p.stdout:
            missing.append(pkg)
    if missing or not Path("/usr/share/wordpress/wp-settings.php").is_file():
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update"], timeout=600, env=env)
        run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], timeout=1200, env=env)


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
            "skip-name-resolve\nskip-log-bin\ninnodb_buffer_pool_size=32M\ninnodb_log_file_size=8M\n"
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

    def sql(self, statement: str) -> str:
        return run(["mariadb", f"--socket={self.sock}", "-uroot", "-N", "-e", statement], timeout=60).stdout

    def create_database(self, name: str) -> None:
        self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4; "
                 f"CREATE USER IF NOT EXISTS 'wp'@'127.0.0.1' IDENTIFIED BY '{self.password}'; "
                 f"GRANT ALL ON `{name}`.* TO 'wp'@'127.0.0.1';")

    def stop(self) -> None:
        run(["mariadb-admin", f"--socket={self.sock}", "-uroot", "shutdown"], check=False, timeout=60)
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class Site:
    """One WordPress install with the woosync plugin active and the WooCommerce stand-in loaded."""

    def __init__(self, base: Path, db: MariaDB, name: str, so: Path, multisite_domain: Optional[str] = None):
        self.base = base
        self.db = db
        self.name = name
        self.so = so
        self.root = base / name
        self.port = free_port()
        self.multisite_domain = multisite_domain
        self.url = f"http://{multisite_domain}" if multisite_domain else f"http://127.0.0.1:{self.port}"
        self.scripts = base / f"{name}-scripts"
        self.server: Optional[subprocess.Popen] = None
        self._n = 0
        self.admin_password = secrets.token_hex(8)

    # ---- install -----------------------------------------------------------------------------
    def install(self, extra_config: str = "") -> None:
        shutil.copytree("/usr/share/wordpress", self.root, symlinks=False,
                        ignore=shutil.ignore_patterns(".htaccess", "wp-config.php"))
        self.scripts.mkdir()
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
define('WP_DEBUG_LOG', '{self.base}/{self.name}-debug.log');
define('DISABLE_WP_CRON', true);
define('WP_ENVIRONMENT_TYPE', 'local');
define('FS_METHOD', 'direct');
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
{extra_config}
if ( ! defined( 'ABSPATH' ) ) {{ define( 'ABSPATH', __DIR__ . '/' ); }}
require_once ABSPATH . 'wp-settings.php';
""")
        mu = self.root / "wp-content" / "mu-plugins"
        mu.mkdir(parents=True, exist_ok=True)
        (mu / "woocommerce-standin.php").write_text(
            "<?php\n/* Plugin Name: WooCommerce stand-in (woosync tests only) */\n"
            f"require_once '{HERE}/woocommerce-standin.php';\n")
        (self.root / "wp-content" / "plugins" / "woosync").symlink_to(PLUGIN_DIR)
        res = self.php(f"""
            define('WP_INSTALLING', true);
            require '{HERE}/server-vars.php'; standin_server_vars();
            require '{self.root}/wp-load.php';
            require_once ABSPATH . 'wp-admin/includes/upgrade.php';
            require_once ABSPATH . 'wp-admin/includes/plugin.php';
            $r = wp_install('woosync test shop', 'admin', 'admin@example.test', false, '', '{self.admin_password}');
            echo json_encode(['user_id' => $r['user_id']]), "\\n";
        """, bootstrap=False, timeout=180)
        assert res.returncode == 0, res.stdout + res.stderr
        if self.multisite_domain:
            self._make_network()
        res = self.php("""
            standin_wc_install();
            require_once ABSPATH . 'wp-admin/includes/plugin.php';
            $r = activate_plugin('woosync/woosync.php', '', is_multisite());
            out(['error' => is_wp_error($r) ? $r->get_error_message() : null, 'active' => is_plugin_active('woosync/woosync.php')]);
        """, timeout=120)
        out = res.last_json()
        assert out == {"error": None, "active": True}, res.describe()

    def _make_network(self) -> None:
        """Turns the fresh single site into a path-based multisite network (what Tools → Network
        Setup does), then points wp-config.php at it."""
        res = self.php(f"""
            define('WP_INSTALLING_NETWORK', true);
            require_once ABSPATH . 'wp-admin/includes/upgrade.php';
            require_once ABSPATH . 'wp-admin/includes/network.php';
            global $wpdb;
            foreach ($wpdb->tables("ms_global") as $table => $prefixed) {{ $wpdb->$table = $prefixed; }}
            install_network();
            $r = populate_network(1, '{self.multisite_domain}', 'admin@example.test', 'woosync network', '/', false);
            out(['ok' => true === $r, 'err' => is_wp_error($r) ? $r->get_error_message() : null]);
        """, timeout=120)
        assert res.last_json()["ok"], res.describe()
        cfg = self.root / "wp-config.php"
        text = cfg.read_text().replace("if ( ! defined( 'ABSPATH' ) )", f"""define('MULTISITE', true);
define('SUBDOMAIN_INSTALL', false);
define('DOMAIN_CURRENT_SITE', '{self.multisite_domain}');
define('PATH_CURRENT_SITE', '/');
define('SITE_ID_CURRENT_SITE', 1);
define('BLOG_ID_CURRENT_SITE', 1);
if ( ! defined( 'ABSPATH' ) )""", 1)
        cfg.write_text(text)

    # ---- running PHP -------------------------------------------------------------------------------
    def php_args(self, extension: bool = True, ini: Optional[dict] = None) -> list:
        args = [PHP, "-d", "display_errors=stderr", "-d", "error_reporting=E_ALL & ~E_DEPRECATED", "-d", "log_errors=0",
                "-d", "memory_limit=512M"]
        if extension:
            args.append(f"-dextension={self.so}")
            # The test CRM listens on 127.0.0.1, which the destination policy refuses unless allowed.
            ini = {"woosync.allow_networks": "127.0.0.1/32", **(ini or {})}
        for k, v in (ini or {}).items():
            args.append(f'-d{k}="{v}"')
        return args

    def env(self, extra: Optional[dict] = None) -> dict:
        env = dict(os.environ, WOOSYNC_WP_ROOT=str(self.root), WOOSYNC_WP_URL=self.url)
        env.update(extra or {})
        return env

    def php(self, code: str, extension: bool = True, ini: Optional[dict] = None, timeout: float = 120,
            bootstrap: bool = True, env: Optional[dict] = None) -> "Result":
        self._n += 1
        script = self.scripts / f"s{self._n}.php"
        head = f"require '{HERE}/bootstrap.php';\n" if bootstrap else ""
        script.write_text("<?php\n" + head + code + "\n")
        return self._exec(self.php_args(extension, ini) + [str(script)], timeout, env)

    def wp(self, *args: str, extension: bool = True, ini: Optional[dict] = None, timeout: float = 120,
           url: Optional[str] = None) -> "Result":
        argv = self.php_args(extension, ini) + [str(HERE / "wp-cli.php"), f"--path={self.root}"]
        if url:
            argv.append(f"--url={url}")
        return self._exec(argv + list(args), timeout, None)

    def _exec(self, args, timeout, env) -> "Result":
        t0 = time.monotonic()
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, errors="replace",
                           env=self.env(env), cwd=str(self.scripts))
        return Result(args, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)

    def mu_plugin(self, name: str, code: Optional[str]) -> None:
        """Adds (or with code=None removes) a must-use plugin for the next runs."""
        path = self.root / "wp-content" / "mu-plugins" / f"{name}.php"
        if code is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text("<?php\n" + code + "\n")

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
        if getattr(self, "_server_log", None):
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
    """Cookie-keeping HTTP client for wp-admin (real login through wp-login.php)."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.raw = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(self, path: str, data: Optional[dict] = None, follow: bool = True, timeout: float = 60):
        url = path if path.startswith("http") else self.base + path
        body = None
        if data is not None:
            body = urllib.parse.urlencode(data, doseq=True).encode()
        req = urllib.request.Request(url, data=body)
        opener = self.opener if follow else self.raw
        try:
            with opener.open(req, timeout=timeout) as r:
                return r.status, r.read().decode(errors="replace"), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace"), dict(e.headers)

    def login(self, user: str, password: str) -> None:
        self.jar.set_cookie(_cookie("wordpress_test_cookie", "WP%20Cookie%20check", self.base))
        status, body, _ = self.request("/wp-login.php", {"log": user, "pwd": password, "wp-submit": "Log In",
                                                         "redirect_to": self.base + "/wp-admin/", "testcookie": "1"})
        assert status == 200 and "wp-admin-bar" in body or "Dashboard" in body, f"login failed: {status}\n{body[-2000:]}"


def _cookie(name, value, base):
    host = urllib.parse.urlparse(base).hostname
    return http.cookiejar.Cookie(0, name, value, None, False, host, False, False, "/", True, False, None, False,
                                 None, None, {})
