"""Scenario `checkout` of `make bench` (issue 16): real WooCommerce checkouts under load while the CRM is
healthy, slow or dead — with woosync, with WooCommerce's own webhooks, with a synchronous integration, and
with none.

    .venv/bin/python bench/bench.py --so target/release/libwoosync.so --only checkout           # ~15 min
    .venv/bin/python bench/bench.py --so target/release/libwoosync.so --only checkout --quick   # smoke

The stack (all on 127.0.0.1, under the bench's temp dir, stopped on exit or failure): the real WordPress 7.0.4
+ WooCommerce 11.0.1 from ../shared/realwp (installed with the real WP-CLI: `wp core install`, `wp plugin
activate`), on the MariaDB bench.py starts; nginx → php-fpm (static pool); `crm.py` as the CRM, whose health
is switched per run; `shoppers.py` (asyncio + aiohttp) as the customers. Per run: the variant's database dump
is restored (no orders, same stock), php-fpm starts fresh with the variant's pool, the customers check out for
`warmup + duration` seconds, then the CRM recovers and the bench waits (capped) until the CRM has everything.
What the CRM received is then compared with the orders, stock and customers in the database.

Report (checkout_report.py): checkout.json, checkout.md and checkout.png in the results directory.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import checkout_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHOP = HERE / "php" / "shop"
PLUGIN = ROOT / "php" / "woosync"
UNPACK = ROOT.parent / "shared" / "realwp" / "unpack.sh"

VARIANTS = {
    "woosync": "woosync (plugin + extension; stock, order and customer topics)",
    "wc_webhooks": "WooCommerce webhooks (default async: Action Scheduler), `wp action-scheduler run` in a loop",
    "wc_webhooks_cron": "WooCommerce webhooks, Action Scheduler run by WP-Cron as WordPress runs it (opt-in)",
    "sync": "synchronous wp_remote_post, 5 s timeout, same hooks",
    "none": "no integration (the floor)",
    "woosync_wc_webhooks": "woosync delivering WooCommerce's webhooks",
}
CRM_STATES = ("healthy", "slow", "blackholed")
SLOW_DELAY = 2.0


class Config:
    def __init__(self, quick: bool, a=None):
        g = (lambda k, d: getattr(a, k, None) if a is not None and getattr(a, k, None) is not None else d)
        self.quick = quick
        self.customers = g("checkout_customers", 4 if quick else 8)
        self.children = g("checkout_children", 4)
        self.warmup = 1.0 if quick else 2.0  # after the prewarm visits (one per php-fpm worker)
        self.duration = g("checkout_seconds", 3.0 if quick else 15.0)
        self.grace = 20.0 if quick else 25.0
        self.drain_cap = g("checkout_drain_cap", 30.0 if quick else 45.0)
        self.reps = g("checkout_reps", 1 if quick else 3)
        self.products = 10 if quick else 50
        self.register_every = 2 if quick else 4
        only = g("checkout_variants", "")
        self.variants = [v for v in VARIANTS if (v in only.split(",") if only else v != "wc_webhooks_cron")]
        self.plugin = Path(g("checkout_plugin", str(PLUGIN))).resolve()

    def cells(self):
        out = []
        for v in self.variants:
            for s in (("healthy",) if v in ("none", "wc_webhooks_cron") else CRM_STATES):
                out.append((v, s))
        return out


# ----------------------------------------------------------------------------------------------- processes

def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rfind(")") + 2:].split()


def _children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid) -> float:
    """CPU seconds of pid (own + reaped children) and of its live descendants."""
    st = _stat(pid)
    if st is None:
        return 0.0
    t = sum(int(x) for x in st[11:15]) / TICK
    return t + sum(tree_cpu(c) for c in _children(pid))


def threads_cpu(pid, prefix: str) -> float:
    """CPU seconds of pid's live threads whose name starts with prefix (woosync names its threads)."""
    t = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if not f.read().startswith(prefix):
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
            st = s[s.rfind(")") + 2:].split()
            t += (int(st[11]) + int(st[12])) / TICK
        except OSError:
            pass
    return t


def machine_busy() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / TICK  # all but idle and iowait


def http_get(url, timeout=10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


# ----------------------------------------------------------------------------------------------- the shop

NGINX_SHOP = """
user root;
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/nginx_body; fastcgi_temp_path {d}/nginx_fcgi;
  proxy_temp_path {d}/nginx_proxy; uwsgi_temp_path {d}/nginx_uwsgi; scgi_temp_path {d}/nginx_scgi;
  keepalive_requests 100000; keepalive_timeout 75s; client_max_body_size 8m;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {site};
    index index.php;
    location = /fpm-status {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_NAME /fpm-status;
      fastcgi_param SCRIPT_FILENAME /fpm-status;
      fastcgi_pass unix:{d}/fpm.sock;
    }}
    location / {{ try_files $uri $uri/ /index.php?$args; }}
    location ~ \\.php$ {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_pass unix:{d}/fpm.sock;
    }}
  }}
}}
"""

FPM_SHOP = """
[global]
pid = {d}/fpm.pid
error_log = {run}/fpm.err
daemonize = no
[shop]
user = root
group = root
listen = {d}/fpm.sock
pm = static
pm.max_children = {children}
pm.max_requests = 0
pm.status_path = /fpm-status
clear_env = yes
catch_workers_output = yes
php_admin_value[memory_limit] = 256M
php_admin_flag[log_errors] = on
php_admin_flag[display_errors] = off
php_admin_value[error_log] = {run}/php-errors.log
php_admin_value[opcache.memory_consumption] = 256
php_admin_value[opcache.max_accelerated_files] = 32531
php_admin_value[sendmail_path] = "cat > /dev/null"
{woosync}
"""


def _php_str(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Shop:
    """One installed shop, its services and the per-variant database dumps."""

    def __init__(self, B, ctx, cfg: Config, base: Path):
        self.B, self.ctx, self.cfg, self.d = B, ctx, cfg, base
        self.site = base / "site"
        self.opcache = base / "opcache-cli"
        self.wpcli_home = base / "wp-cli-home"
        self.sync_log = base / "sync.jsonl"
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.port = B.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.fpm = None
        self.runner = None
        self.info = {}

    # ---- WP-CLI and SQL
    def php_args(self, ext: bool, outbox: Path | str | None = None, extra: list | None = None) -> list:
        args = ["-d", "memory_limit=512M", "-d", "opcache.enable_cli=1", "-d", f"opcache.file_cache={self.opcache}",
                "-d", "opcache.file_cache_only=1", "-d", "sendmail_path=/bin/true"]
        if ext:
            args += ["-d", f"extension={self.ctx.so}", "-d", "woosync.allow_networks=127.0.0.1/32"]
            if outbox:
                args += ["-d", f'woosync.database="{outbox}"']  # quoted: a MariaDB URL holds = and &
        return args + list(extra or [])

    def wp(self, *args, ext=False, outbox=None, env=None, timeout=300, check=True, extra=None) -> subprocess.CompletedProcess:
        e = dict(os.environ, WP_CLI_PHP="php", WP_CLI_PHP_ARGS=" ".join(self.php_args(ext, outbox, extra)),
                 WP_CLI_CONFIG_PATH=str(self.wpcli_home / "config.yml"), WP_CLI_CACHE_DIR=str(self.wpcli_home / "cache"),
                 WP_CLI_DISABLE_AUTO_CHECK_UPDATE="1", HOME=str(self.wpcli_home))
        e.update(env or {})
        r = subprocess.run(["bash", str(self.wpcli), f"--path={self.site}", "--allow-root", *args], capture_output=True,
                           text=True, env=e, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"wp {' '.join(args)} exited {r.returncode}: {r.stderr[-2000:]} {r.stdout[-1000:]}")
        return r

    def sql(self, q: str) -> list:
        r = subprocess.run(["mariadb", f"--socket={self.ctx.mysql_socket}", "-uroot", "-N", "-B", "shop", "-e", q],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"SQL failed: {r.stderr[-1000:]}")
        return [ln.split("\t") for ln in r.stdout.splitlines() if ln]

    def dump(self, name: str):
        with open(self.d / f"{name}.sql", "wb") as f:
            subprocess.run(["mariadb-dump", f"--socket={self.ctx.mysql_socket}", "-uroot", "--single-transaction",
                            "--skip-comments", "--add-drop-table", "shop"], stdout=f, check=True, timeout=300)

    def restore(self, name: str) -> float:
        t = time.time()
        with open(self.d / f"{name}.sql", "rb") as f:
            subprocess.run(["mariadb", f"--socket={self.ctx.mysql_socket}", "-uroot", "shop"], stdin=f, check=True,
                           timeout=300)
        return time.time() - t

    # ---- install
    def install_wordpress(self, db_host: str | None = None, db_user: str = "root", db_password: str = ""):
        """WordPress + WooCommerce unpacked from ../shared/realwp, wp-config.php written, `wp core install` and
        `wp plugin activate woocommerce` with the real WP-CLI, in database `shop` (root over the socket unless
        told otherwise: the mysql scenario connects over TCP with its own account)."""
        db_host = db_host or f"localhost:{self.ctx.mysql_socket}"
        r = subprocess.run(["bash", str(UNPACK), str(self.d / "realwp-src")], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"{UNPACK} failed: {r.stderr[-2000:]}")
        top = Path(r.stdout.strip().splitlines()[-1]) / "realwp"
        self.wpcli = top / "wp-cli" / "wp"
        # moved, not copied: the unpacked tree is this run's own (half the files to write and to delete)
        shutil.move(str(top / "wordpress"), str(self.site))
        plugins = self.site / "wp-content" / "plugins"
        shutil.move(str(top / "woocommerce"), str(plugins / "woocommerce"))
        shutil.copytree(self.cfg.plugin, plugins / "woosync")
        (self.site / "wp-content" / "mu-plugins").mkdir(exist_ok=True)
        shutil.copy(SHOP / "mu-crm-allow.php", self.site / "wp-content" / "mu-plugins" / "bench-crm-allow.php")
        for p in (self.opcache, self.wpcli_home):
            p.mkdir(exist_ok=True)
        (self.wpcli_home / "config.yml").write_text("")
        vt = (top / "VERSIONS.txt").read_text() if (top / "VERSIONS.txt").exists() else ""
        self.info["wp_cli"] = next((ln.split()[1] for ln in vt.splitlines() if ln.startswith("WP-CLI ")), "")
        subprocess.run(["mariadb", f"--socket={self.ctx.mysql_socket}", "-uroot", "-e",
                        "CREATE DATABASE shop CHARACTER SET utf8mb4"], check=True, timeout=60)
        salts = "\n".join(f"define('{k}', '{secrets.token_hex(32)}');" for k in (
            "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT", "SECURE_AUTH_SALT",
            "LOGGED_IN_SALT", "NONCE_SALT"))
        (self.site / "wp-config.php").write_text(f"""<?php
define('DB_NAME', 'shop');
define('DB_USER', {_php_str(db_user)});
define('DB_PASSWORD', {_php_str(db_password)});
define('DB_HOST', {_php_str(db_host)});
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
{salts}
$table_prefix = 'wp_';
define('WP_HOME', '{self.url}');
define('WP_SITEURL', '{self.url}');
define('WP_DEBUG', false);
define('DISABLE_WP_CRON', ! file_exists(__DIR__ . '/.bench-wp-cron'));  // only variant wc_webhooks_cron runs WP-Cron
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_ENVIRONMENT_TYPE', 'production');
define('FS_METHOD', 'direct');
define('BENCH_CRM_PORT', {self.ctx.crm_port});
define('BENCH_CRM_URL', 'http://127.0.0.1:{self.ctx.crm_port}');
define('BENCH_SYNC_LOG', '{self.sync_log}');
if ( ! defined( 'ABSPATH' ) ) {{ define( 'ABSPATH', __DIR__ . '/' ); }}
require_once ABSPATH . 'wp-settings.php';
""")
        self.wp("core", "install", f"--url={self.url}", "--title=Bench shop", "--admin_user=admin",
                f"--admin_password={secrets.token_hex(8)}", "--admin_email=admin@example.test", "--skip-email")
        self.wp("plugin", "activate", "woocommerce")

    def install(self):
        log = self.B.log
        t = time.time()
        self.install_wordpress()
        r = self.wp("eval-file", str(SHOP / "setup.php"), env={"BENCH_PRODUCTS": str(self.cfg.products)})
        got = json.loads(r.stdout.strip().splitlines()[-1])
        if not got.get("hpos"):
            raise RuntimeError(f"HPOS is not on after setup: {got}")
        self.products = got["products"]
        self.info.update(wordpress=got["wordpress"], woocommerce=got["woocommerce"], hpos=got["hpos"],
                         products=len(self.products))
        self.dump("base")
        self.configured = {}
        needed = dict.fromkeys("wc_webhooks" if v == "wc_webhooks_cron" else v for v in self.cfg.variants)
        for v in needed:  # wc_webhooks_cron runs on the wc_webhooks dump
            if v == "woosync_wc_webhooks" and not self.has_wc_webhooks_takeover():
                continue
            self.restore("base")
            env = {"BENCH_VARIANT": v, "BENCH_CRM_URL": f"http://127.0.0.1:{self.ctx.crm_port}",
                   "BENCH_SECRET": self.secret}
            outbox = self.d / "setup-outbox.sqlite"
            if v in ("woosync", "woosync_wc_webhooks"):
                self.wp("plugin", "activate", "woosync", ext=True, outbox=outbox)
            r = self.wp("eval-file", str(SHOP / "variant.php"), ext=True, outbox=outbox,
                        env=dict(env, BENCH_VARIANT="wc_webhooks" if v == "woosync_wc_webhooks" else v))
            self.configured[v] = json.loads(r.stdout.strip().splitlines()[-1])
            if v == "woosync_wc_webhooks":
                self.wp("woosync", "wc-webhooks", "enable", ext=True, outbox=outbox)
            self.dump(v)
        log(f"checkout: shop installed in {time.time() - t:.0f} s ({self.info})")

    def has_wc_webhooks_takeover(self) -> bool:
        """Variant 5 needs the plugin's "Deliver WooCommerce webhooks through WooSync" (issue 15):
        `wp woosync wc-webhooks enable`. Detected in the plugin's CLI command, never faked."""
        return any("woosync wc-webhooks" in f.read_text(errors="replace") or "'wc-webhooks'" in f.read_text(errors="replace")
                   for f in (self.cfg.plugin / "includes").glob("*.php"))

    # ---- services
    def start_nginx(self):
        conf = self.d / "nginx.conf"
        conf.write_text(NGINX_SHOP.format(d=self.d, port=self.port, site=self.site))
        self.B.start(["nginx", "-c", str(conf), "-p", str(self.d)], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        self.B.wait_port(self.port)
        self.nginx_pid = int((self.d / "nginx.pid").read_text()) if (self.d / "nginx.pid").exists() else None

    def start_fpm(self, variant: str, run: Path):
        ext = variant in ("woosync", "woosync_wc_webhooks")
        lines = ""
        if ext:
            # the extension's settings first, the extension last (as bench.py's pool: set the other way
            # round, the values do not reach the extension)
            lines = ("php_admin_value[woosync.allow_networks] = 127.0.0.1/32\n"
                     f"php_admin_value[woosync.database] = {run / 'outbox.sqlite'}\n"
                     f"php_admin_value[extension] = {self.ctx.so}\n")
        sock = self.d / "fpm.sock"
        if sock.exists():
            sock.unlink()
        conf = run / "fpm.conf"
        conf.write_text(FPM_SHOP.format(d=self.d, run=run, children=self.cfg.children, woosync=lines))
        fpm = shutil.which("php-fpm8.2") or shutil.which("php-fpm") or "/usr/sbin/php-fpm8.2"
        self.fpm = self.B.start([fpm, "-y", str(conf), "-F", "-R"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.B.wait_port(None, 20, path=str(sock))

    def fpm_active(self) -> int:
        try:
            txt = http_get(self.url + "/fpm-status", 5)
        except Exception:
            return -1
        for ln in txt.splitlines():
            if ln.startswith("active processes:"):
                return int(ln.split(":")[1])
        return -1

    def stop_fpm(self):
        if self.fpm is not None:
            self.B.stop(self.fpm, signal.SIGQUIT, timeout=20)
            self.fpm = None

    def start_runner(self, run: Path):
        """Action Scheduler's runner as a host runs it when WP-Cron is off: `wp action-scheduler run`
        (the real command Action Scheduler registers in WP-CLI) back to back, 1 s apart when idle."""
        e = dict(os.environ, WP_CLI_PHP="php", WP_CLI_PHP_ARGS=" ".join(self.php_args(False)),
                 WP_CLI_CONFIG_PATH=str(self.wpcli_home / "config.yml"), HOME=str(self.wpcli_home),
                 WP_CLI_DISABLE_AUTO_CHECK_UPDATE="1")
        script = (f"while :; do bash {self.wpcli} --path={self.site} --allow-root action-scheduler run "
                  f"--batch-size=25 >>{run}/as-runner.log 2>&1; sleep 1; done")
        self.runner = self.B.start(["bash", "-c", script], env=e, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)

    def stop_runner(self):
        if self.runner is not None:
            self.B.stop(self.runner, signal.SIGTERM, timeout=20)
            self.runner = None


# ----------------------------------------------------------------------------------------------- one run

def crm(ctx, path: str) -> str:
    return http_get(f"http://127.0.0.1:{ctx.crm_port}{path}")


def outbox_pending(db: Path):
    """(pending deliveries, events not routed yet) read from the outbox, or None before it exists."""
    if not db.exists():
        return None
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            p = c.execute("SELECT count(*) FROM deliveries WHERE state IN (0, 1, 2)").fetchone()[0]
            u = c.execute("SELECT coalesce((SELECT max(id) FROM events), 0) - "
                          "(SELECT v FROM meta WHERE k = 'routed_upto')").fetchone()[0]
            return p, u
        finally:
            c.close()
    except sqlite3.Error:
        return None


def as_pending(shop: Shop) -> int:
    rows = shop.sql("SELECT count(*) FROM wp_actionscheduler_actions WHERE hook = 'woocommerce_deliver_webhook_async' "
                    "AND status IN ('pending', 'in-progress')")
    return int(rows[0][0])


def cpu_snapshot(shop: Shop, ctx, shoppers_pid) -> dict:
    fpm_pids = _children(shop.fpm.pid) if shop.fpm else []
    s = {"t": time.time(), "machine": machine_busy(),
         "fpm": tree_cpu(shop.fpm.pid) if shop.fpm else 0.0,
         "fpm_woosync_threads": sum(threads_cpu(p, "woosync-") for p in fpm_pids),
         "mariadb": tree_cpu(ctx.mysql_pid) if ctx.mysql_pid else 0.0,
         "nginx": tree_cpu(shop.nginx_pid) if shop.nginx_pid else 0.0,
         "crm": tree_cpu(ctx.crm_proc.pid),
         "shoppers": tree_cpu(shoppers_pid),
         "as_runner": tree_cpu(shop.runner.pid) if shop.runner else 0.0}
    return s


def run_one(B, ctx, shop: Shop, cfg: Config, variant: str, state: str, rep: int) -> dict:
    run = shop.d / f"run-{variant}-{state}-{rep}"
    run.mkdir()
    res = {"variant": variant, "crm": state, "rep": rep}
    res["restore_s"] = shop.restore("wc_webhooks" if variant == "wc_webhooks_cron" else variant)
    cron_flag = shop.site / ".bench-wp-cron"
    if variant == "wc_webhooks_cron":
        cron_flag.write_text("")
    elif cron_flag.exists():
        cron_flag.unlink()
    mu = shop.site / "wp-content" / "mu-plugins" / "bench-sync-crm.php"
    if variant == "sync":
        shutil.copy(SHOP / "mu-sync-crm.php", mu)
    elif mu.exists():
        mu.unlink()
    if shop.sync_log.exists():
        shop.sync_log.unlink()
    crm(ctx, "/__mode?m=healthy")
    crm(ctx, "/__reset")
    shop.start_fpm(variant, run)
    if variant == "wc_webhooks":
        shop.start_runner(run)
    # Warm php-fpm (OPcache, WooCommerce's first-request work) with one visit per worker, CRM healthy.
    shopper_cmd = [sys.executable, str(HERE / "shoppers.py"), "--url", shop.url, "--products",
                   ",".join(map(str, shop.products)), "--register-every", str(cfg.register_every)]
    t = time.time()
    subprocess.run(shopper_cmd + ["--customers", str(cfg.children), "--warmup", "0", "--duration", "0.01",
                                  "--grace", "120", "--seed", "99", "--tag", f"w{variant[:3]}{state[:2]}{rep}",
                                  "--out", str(run / "prewarm.json")], check=True, timeout=180, capture_output=True)
    res["prewarm_s"] = time.time() - t
    mode = {"healthy": "healthy", "slow": "slow", "blackholed": "blackhole"}[state]
    crm(ctx, f"/__mode?m={mode}&delay={SLOW_DELAY}")
    out = run / "shoppers.json"
    cmd = shopper_cmd + ["--customers", str(cfg.customers), "--warmup", str(cfg.warmup), "--duration",
                         str(cfg.duration), "--grace", str(cfg.grace), "--seed", str(rep),
                         "--tag", f"{variant[:3]}{state[:2]}{rep}", "--out", str(out)]
    sp = B.start(cmd, stdout=subprocess.PIPE, text=True)
    t0 = json.loads(sp.stdout.readline())["t0"]
    time.sleep(max(0.0, t0 + cfg.warmup - time.time()))
    a = cpu_snapshot(shop, ctx, sp.pid)
    time.sleep(max(0.0, t0 + cfg.warmup + cfg.duration - time.time()))
    b = cpu_snapshot(shop, ctx, sp.pid)
    t_end = time.time()
    if state != "healthy":
        crm(ctx, "/__mode?m=healthy")  # the CRM recovers when the load window ends
    try:
        sp.wait(cfg.grace + 60)
    finally:
        B.stop(sp)
    # Requests the customers gave up on may still run in php-fpm: let them finish (orders, events).
    t = time.time()
    while shop.fpm_active() != 1 and time.time() - t < 90:  # -1: the status request itself waited too long
        time.sleep(0.2)
    res["fpm_busy_after_load_s"] = time.time() - t
    # Drain: until nothing is queued anywhere, capped (from the end of the load window).
    drained, last = None, None
    cap = max(cfg.drain_cap, 90.0) if variant == "wc_webhooks_cron" else cfg.drain_cap
    res["drain_cap_s"] = cap
    next_visit = 0.0
    while time.time() - t_end < cap:
        if variant in ("woosync", "woosync_wc_webhooks"):
            last = outbox_pending(run / "outbox.sqlite")
            if last is not None and last[0] == 0 and last[1] == 0:
                drained = time.time()
                break
        elif variant in ("wc_webhooks", "wc_webhooks_cron"):
            if variant == "wc_webhooks_cron" and time.time() >= next_visit:
                # WP-Cron only runs when someone visits: a shopper browses the catalogue every 2 s.
                next_visit = time.time() + 2.0
                try:
                    http_get(shop.url + "/wp-json/wc/store/v1/products?per_page=1", 30)
                except Exception:
                    pass
            last = as_pending(shop)
            if last == 0:
                drained = time.time()
                break
        else:
            drained = time.time()
            break
        time.sleep(0.25)
    res["drained"] = drained is not None
    res["drain_wait_s"] = (drained or time.time()) - t_end
    res["pending_at_end"] = last
    c = cpu_snapshot(shop, ctx, sp.pid)
    shop.stop_runner()
    shop.stop_fpm()
    crm(ctx, f"/__dump?file={run / 'crm.jsonl'}")
    if shop.sync_log.exists():
        shutil.move(str(shop.sync_log), run / "sync.jsonl")
    res["window"] = {"start": a["t"], "end": b["t"], "t0": t0}
    res["cpu_window"] = {k: b[k] - a[k] for k in a}
    res["cpu_drain"] = {k: c[k] - b[k] for k in b}
    db = collect_db(shop)
    res.update(checkout_report.analyze(run, variant, state, res, cfg, db))
    return res


def collect_db(shop: Shop) -> dict:
    orders = {int(r[0]): {"status": r[1][3:] if r[1].startswith("wc-") else r[1], "total": r[2],
                          "customer_id": int(r[3] or 0)}
              for r in shop.sql("SELECT id, status, total_amount, customer_id FROM wp_wc_orders WHERE type = 'shop_order'")}
    stock = {int(r[0]): (float(r[1]) if r[1] not in ("", "NULL") else None)
             for r in shop.sql("SELECT post_id, meta_value FROM wp_postmeta WHERE meta_key = '_stock'")}
    users = {int(r[0]): r[1] for r in shop.sql("SELECT ID, user_email FROM wp_users WHERE user_login <> 'admin'")}
    actions = {r[0]: int(r[1]) for r in shop.sql(
        "SELECT status, count(*) FROM wp_actionscheduler_actions WHERE hook = 'woocommerce_deliver_webhook_async' "
        "GROUP BY status")}
    hooks = [{"id": int(r[0]), "topic": r[1], "status": r[2], "failure_count": int(r[3])}
             for r in shop.sql("SELECT webhook_id, topic, status, failure_count FROM wp_wc_webhooks")]
    return {"orders": orders, "stock": stock, "users": users, "as_actions": actions, "webhooks": hooks}


# ----------------------------------------------------------------------------------------------- scenario

def scenario(B, ctx, R: dict, a=None):
    cfg = Config(ctx.quick, a)
    fpm = shutil.which("php-fpm8.2") or shutil.which("php-fpm") or "/usr/sbin/php-fpm8.2"
    for cmd in (["php", "-m"], [fpm, "-m"]):
        if "woosync" in subprocess.run(cmd, capture_output=True, text=True).stdout.split():
            raise RuntimeError(f"woosync is enabled in the system PHP ({cmd[0]} -m lists it): the bench loads the built "
                               "extension itself and would load it twice; `make uninstall` or `phpdismod woosync` first")
    base = Path(B.TMP) / "checkout"
    base.mkdir()
    if ctx.mysql_socket is None:
        R.setdefault("mariadb", B.start_mariadb(ctx))
    pidf = Path(B.TMP) / "mysql.pid"
    ctx.mysql_pid = int(pidf.read_text()) if pidf.exists() else None
    ctx.crm_proc = B.start([sys.executable, str(HERE / "crm.py"), "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = ctx.crm_proc.stdout.readline()
    if not line.startswith("READY"):
        raise RuntimeError("crm.py did not start")
    ctx.crm_port = int(line.split()[1])
    shop = Shop(B, ctx, cfg, base)
    t_start = time.time()
    shop.install()
    shop.start_nginx()
    C = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()}, "shop": shop.info,
         "setup_s": time.time() - t_start, "runs": [], "skipped": {}, "errors": []}
    C["config"]["slow_delay_s"] = SLOW_DELAY
    C["variants"] = {v: VARIANTS[v] for v in cfg.variants}
    C["configured"] = shop.configured
    if "woosync_wc_webhooks" in cfg.variants and "woosync_wc_webhooks" not in shop.configured:
        C["skipped"]["woosync_wc_webhooks"] = (
            "needs the plugin's \"Deliver WooCommerce webhooks through WooSync\" setting / `wp woosync wc-webhooks "
            "enable` (issue 15), which this plugin does not have yet")
    cells = [c for c in cfg.cells() if c[0] in shop.configured or c[0] in ("none", "wc_webhooks_cron")]
    for rep in range(1, cfg.reps + 1):
        for variant, state in cells:
            B.log(f"checkout: {variant} / CRM {state} / run {rep}")
            try:
                r = run_one(B, ctx, shop, cfg, variant, state, rep)
                C["runs"].append(r)
                B.log("checkout:   " + checkout_report.one_line(r))
            except Exception as e:
                import traceback
                traceback.print_exc()
                C["errors"].append(f"{variant}/{state}/{rep}: {type(e).__name__}: {e}")
                shop.stop_runner()
                shop.stop_fpm()
    C["duration_s"] = time.time() - t_start
    C["summary"] = checkout_report.summarize(C)
    out = Path(ctx.out)
    out.mkdir(parents=True, exist_ok=True)
    checkout_report.write_all(R, C, out)
    R["checkout"] = {"results": str(out / "checkout.json"), "goals": C["goals"], "errors": C["errors"]}
    if C["errors"]:
        raise RuntimeError("; ".join(C["errors"]))
