"""Scenario `mysql` of `make bench` (issue 11): the outbox in the shop's MariaDB, as several web servers share it.

    .venv/bin/python bench/bench.py --so target/release/libwoosync.so --only mysql           # ~4 min
    .venv/bin/python bench/bench.py --so target/release/libwoosync.so --only mysql --quick   # smoke

Everything runs against one private MariaDB started here, as a replicated primary runs: binary log on
(ROW), InnoDB defaults (innodb_flush_log_at_trx_commit=1: every commit is flushed to the redo log),
everything else stock; `--mysql-opt=--sync-binlog=1` (repeatable) adds server options. woosync,
WordPress and the bare-insert baseline all connect as one account without SUPER (`woosync`, a password
with characters a URL must escape) over TCP to 127.0.0.1. "Hosts" are PHP processes with their own
TMPDIR that share nothing but that database.

1. dispatch: per-call cost of keyed `woosync_dispatch()` (500 keys, the order-like payload) into the
   MariaDB outbox — with the dispatching process being the sender, and with another host being the
   sender (the usual web node) — against a bare single-row INSERT of the same row into a plain InnoDB
   table (auto-increment PK, mysqli, one prepared statement; autocommit, and START TRANSACTION + INSERT +
   COMMIT), against the two-row floor of a keyed dispatch (counter upsert + row, one round trip), against
   Action Scheduler's real `as_enqueue_async_action` in the real WordPress 7.0.4 + WooCommerce 11.0.1
   loaded once by `wp eval-file` (with woosync_dispatch in the same process), and against woosync's SQLite
   outbox (and, once, WooCommerce's own per-webhook enqueue). What is compared is timed call by call in
   turn in one process (RUNS); the runs repeat, interleaved; percentiles pool the runs.
2. delivery: a backlog drained by a sender host to the fast receiver (nginx): 4 hosts fill the outbox
   while its endpoint is rate-limited to 0.01/s, then the limit is lifted; rate = events / (last arrival −
   lift). CPU of the sender process and of mariadbd over the drain.
3. first attempt across hosts: host B runs the sender (`woosync_serve()`), host A dispatches at a steady
   50/s; arrival at the µs receiver − A's wall clock when `woosync_dispatch` returned (same machine, same
   clock).

Results: R["mysql"] (latest.json / latest.md in a run with other scenarios) and mysql.json / mysql.md in the
results directory (the only output of `--only mysql`).
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import checkout

HERE = Path(__file__).resolve().parent
PHPDIR = HERE / "php"
DATABASE = "shop"
USER = "woosync"
KEYS = 500


class Config:
    def __init__(self, quick: bool):
        self.quick = quick
        self.reps = 1 if quick else 3
        # per run; the percentiles pool every run's samples after the warm-up (full: ≈ 5,000 per system)
        self.n_dispatch, self.warm_dispatch = (500, 100) if quick else (1800, 100)
        self.n_bare, self.warm_bare = (500, 50) if quick else (1800, 100)
        self.n_as, self.warm_as = (250, 30) if quick else (1050, 50)
        self.n_wc, self.warm_wc = (60, 10) if quick else (330, 30)  # first repetition only (a reference)
        self.drain_events = 1000 if quick else 4000
        self.drain_reps = 1 if quick else 2
        self.fillers = 4
        self.drain_concurrency = [4]  # woosync.concurrency's default first (the goal's); more with --mysql-drain-concurrency
        self.xhost_rate = 50
        self.xhost_seconds = 4 if quick else 20


# ----------------------------------------------------------------------------------------------- the server

class Server:
    """A private MariaDB: `mariadbd --no-defaults`, own datadir/socket/port, binary log on."""

    def __init__(self, B, base: Path, extra_opts: list[str] | None = None):
        self.B, self.base = B, base
        self.datadir = base / "data"
        self.sock = str(base / "mysqld.sock")
        self.port = B.free_port()
        self.extra = list(extra_opts or [])
        self.password = "b3nch:p@ss/w?rd%" + secrets.token_hex(4)  # every character a URL escapes
        self.proc = None

    def start(self):
        self.base.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                            "--auth-root-authentication-method=normal", "--skip-test-db"],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError("mariadb-install-db failed: " + r.stderr[-2000:])
        self.proc = self.B.start(["mariadbd", "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.sock}",
                                  f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root",
                                  f"--pid-file={self.base}/mysqld.pid", f"--log-error={self.base}/mysqld.err",
                                  "--skip-name-resolve", f"--log-bin={self.base}/binlog", "--server-id=1",
                                  "--binlog-format=ROW", "--max-connections=300", *self.extra],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.B.wait_port(None, 60, path=self.sock)
        pw = self.password.replace("\\", "\\\\").replace("'", "\\'")
        self.sql(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{pw}'; "
                 f"GRANT ALL ON `{DATABASE}`.* TO '{USER}'@'127.0.0.1';", db=None)
        return self

    def stop(self):
        subprocess.run(["mariadb-admin", f"--socket={self.sock}", "-uroot", "shutdown"], capture_output=True,
                       timeout=60)
        if self.proc is not None:
            self.B.stop(self.proc, timeout=30)

    def pid(self) -> int | None:
        f = self.base / "mysqld.pid"
        return int(f.read_text()) if f.exists() else None

    def url(self, prefix: str) -> str:
        pw = urllib.parse.quote(self.password, safe="")
        return f"mysql://{USER}:{pw}@127.0.0.1:{self.port}/{DATABASE}?prefix={prefix}"

    def sql(self, q: str, db: str | None = DATABASE) -> list:
        r = subprocess.run(["mariadb", f"--socket={self.sock}", "-uroot", "-N", "-B", *([db] if db else []),
                            "-e", q], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"SQL failed: {q[:200]}: {r.stderr[-1000:]}")
        return [ln.split("\t") for ln in r.stdout.splitlines() if ln]

    def status(self) -> dict:
        """Server-wide counters (statements, commits, InnoDB fsyncs) to read per delivered event."""
        rows = self.sql("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_commit', 'Binlog_commits', "
                        "'Innodb_data_fsyncs', 'Com_select', 'Com_insert', 'Com_update', 'Com_delete')", db=None)
        return {k: int(v) for k, v in rows}

    def settings(self) -> dict:
        names = ["version", "innodb_flush_log_at_trx_commit", "sync_binlog", "log_bin", "binlog_format",
                 "innodb_doublewrite", "innodb_flush_method", "innodb_buffer_pool_size", "innodb_log_file_size",
                 "tx_isolation", "max_connections"]
        row = self.sql("SELECT " + ", ".join(f"@@{n}" for n in names), db=None)[0]
        return dict(zip(names, row))


# ----------------------------------------------------------------------------------------------- PHP "hosts"

def _ini_args(ini: dict) -> list:
    out = []
    for k, v in ini.items():
        v = str(v)
        if '"' in v or "$" in v or "\\" in v or "\n" in v:
            raise ValueError(f"cannot pass INI value {v!r} safely with -d")
        out.append(f'-d{k}="{v}"')  # quoted: the INI parser cuts an unquoted URL at = and &
    return out


class Hosts:
    def __init__(self, B, ctx):
        self.B, self.ctx = B, ctx
        self.root = Path(B.TMP) / "mysql-hosts"

    def env(self, host: str) -> dict:
        d = self.root / host
        d.mkdir(parents=True, exist_ok=True)
        return dict(os.environ, TMPDIR=str(d))

    def cmd(self, script: str, args: dict, ini: dict | None, ext: bool = True) -> list:
        c = ["php"] + (["-d", f"extension={self.ctx.so}"] if ext else []) + _ini_args(ini or {})
        return c + [str(PHPDIR / script), json.dumps(args)]

    def run(self, host: str, script: str, args: dict, ini: dict | None = None, ext=True, timeout=600) -> dict:
        r = subprocess.run(self.cmd(script, args, ini, ext), capture_output=True, text=True, timeout=timeout,
                           env=self.env(host))
        if r.returncode != 0 or not r.stdout.strip():
            raise RuntimeError(f"{script} on host {host} failed ({r.returncode}): {r.stderr[-2000:]} {r.stdout[-500:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def start(self, host: str, script: str, args: dict, ini: dict | None = None):
        return self.B.start(self.cmd(script, args, ini), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=self.env(host))

    def start_sender(self, host: str, ini: dict, max_s: float = 600) -> tuple:
        """Host whose process runs the sender (woosync_serve); returns once it reports `sender`."""
        p = self.start(host, "serve.php", {"max_s": max_s, "ready_s": 30}, ini)
        line = p.stdout.readline()
        if not line.startswith("{"):
            self.B.stop(p)
            raise RuntimeError(f"sender host {host} did not start: {p.stderr.read()[-2000:]}")
        info = json.loads(line)
        if info["worker"] != "sender":
            self.B.stop(p)
            raise RuntimeError(f"host {host} did not become the sender within 30 s: {info}")
        return p, info


# ----------------------------------------------------------------------------------------------- 1. dispatch

SYSTEMS = {
    "mysql_self": "`woosync_dispatch()` → MariaDB outbox, this process is the sender",
    "mysql_standby": "`woosync_dispatch()` → MariaDB outbox, another host is the sender (the usual web node)",
    "bare_autocommit": "bare INSERT of the same row, autocommit (1 round trip)",
    "bare_commit": "bare INSERT, START TRANSACTION + INSERT + COMMIT (3 round trips)",
    "bare_two_rows": "bare per-key counter upsert + INSERT of the row, one transaction in 1 round trip (multi-statement)",
    "sqlite": "`woosync_dispatch()` → SQLite outbox (WAL), this process is the sender",
    "mysql_in_wp": "`woosync_dispatch()` → MariaDB outbox inside WordPress (another host sends)",
    "as_enqueue": "Action Scheduler `as_enqueue_async_action()` (real WordPress + WooCommerce)",
    "wc_queue": "WooCommerce's webhook enqueue (`WC()->queue()->get_next()` + `add()`)",
}
# Which systems are timed call by call in turn in one process (each process = one "run" of its systems).
RUNS = {
    "self": ("mysql_self", "bare_autocommit", "bare_commit"),
    "standby": ("mysql_standby", "bare_autocommit", "bare_commit", "bare_two_rows"),
    "wp": ("as_enqueue", "mysql_in_wp"),
    "sqlite": ("sqlite",),
    "wc_queue": ("wc_queue",),
}


def _wp_run(B, shop, cfg, mode, n, rep, url=None, fast=None):
    env = {"BENCH_N": str(n), "BENCH_MODE": mode, "BENCH_BASE": str((rep + 1) * 100000 + (50000 if mode == "wc_queue" else 0)),
           "BENCH_WOOSYNC": "1" if url else ""}
    pr = shop.wp("eval-file", str(PHPDIR / "shop" / "as_enqueue.php"), timeout=600, env=env, ext=bool(url), outbox=url,
                 extra=[f'-dwoosync.endpoint="{fast}"'] if url else None)
    return json.loads(pr.stdout.strip().splitlines()[-1])


def sc_dispatch(B, ctx, cfg: Config, srv: Server, hosts: Hosts, shop, out: dict):
    """Every run times its systems call by call in turn in one process (the order rotates each round), so a
    noisy neighbour hits the systems it compares alike; the runs themselves are interleaved, `reps` times."""
    fast = f"http://127.0.0.1:{ctx.nginx_port}/"
    samples = {k: [] for k in SYSTEMS}
    runs = []
    out_body = []
    bare_args = {"user": USER, "password": srv.password, "dbname": DATABASE, "port": srv.port, "keys": KEYS}

    def ini(prefix):
        return {"woosync.database": srv.url(prefix), "woosync.endpoint": fast, "woosync.allow_networks": "127.0.0.1/32"}

    def keep(run, rep, r, names, warm, info):
        if r.get("body_bytes_avg"):
            out_body.append(r["body_bytes_avg"])
        said = []
        for name, key in names.items():
            s = [x / 1000.0 for x in r["samples"][key]]
            samples[name] += s[warm:]
            st = {"run": run, "rep": rep + 1, "system": name, "first": s[0] if s else None, "n": len(s[warm:]),
                  "p50": B.pct(s[warm:], 50), "p99": B.pct(s[warm:], 99)}
            st.update(info)
            runs.append(st)
            said.append(f"{name} p50 {B._f(st['p50'], 0)} µs p99 {B._f(st['p99'], 0)} µs")
        B.log(f"mysql dispatch run {rep + 1} {run:8s}: " + "; ".join(said) + (f" {info}" if info else ""))

    for rep in range(cfg.reps):
        for run in RUNS:
            if run in ("wp", "wc_queue") and shop is None or run == "wc_queue" and rep > 0:
                continue
            if run == "self":
                r = hosts.run("web-1", "mysql_lat.php", dict(bare_args, n=cfg.n_dispatch, table="bench_bare_self",
                              systems=["woosync", "bare_autocommit", "bare_commit"]), ini(f"d{rep}s_"))
                keep(run, rep, r, {"mysql_self": "woosync", "bare_autocommit": "bare_autocommit",
                                   "bare_commit": "bare_commit"}, cfg.warm_dispatch,
                     {"worker": r["worker"], "is_sender": r["sender_pid"] == r["pid"]})
            elif run == "standby":
                sp, sinfo = hosts.start_sender("sender-1", ini(f"d{rep}b_"))
                try:
                    r = hosts.run("web-2", "mysql_lat.php", dict(bare_args, n=cfg.n_dispatch, table="bench_bare_standby",
                                  systems=["woosync", "bare_autocommit", "bare_commit", "bare_two_rows"]),
                              ini(f"d{rep}b_"))
                    w = _wp_run(B, shop, cfg, "as_enqueue", cfg.n_as, rep, srv.url(f"d{rep}b_"), fast) if shop else None
                finally:
                    B.stop(sp)
                keep(run, rep, r, {"mysql_standby": "woosync", "bare_autocommit": "bare_autocommit",
                                   "bare_commit": "bare_commit", "bare_two_rows": "bare_two_rows"}, cfg.warm_dispatch,
                     {"worker": r["worker"], "other_host_was_sender": r["sender_pid"] == sinfo["pid"]
                      and r["worker"] == "standby"})
                if w:
                    out.setdefault("action_scheduler_version", w["action_scheduler"])
                    keep("wp", rep, w, {"as_enqueue": "as_enqueue", "mysql_in_wp": "woosync"}, cfg.warm_as,
                         {"worker": w["worker"], "other_host_was_sender": w["sender_pid"] == sinfo["pid"]
                          and w["worker"] == "standby", "actions_in_table": w["actions"]})
            elif run == "sqlite":
                r = hosts.run("web-1", "mysql_lat.php", {"n": cfg.n_dispatch, "keys": KEYS, "systems": ["woosync"]},
                              dict(ini(""), **{"woosync.database": ctx.db("mysqlref")}))
                keep(run, rep, r, {"sqlite": "woosync"}, cfg.warm_dispatch, {"worker": r["worker"]})
            elif run == "wc_queue":
                w = _wp_run(B, shop, cfg, "wc_queue", cfg.n_wc, rep)
                keep(run, rep, w, {"wc_queue": "wc_queue"}, cfg.warm_wc, {"actions_in_table": w["actions"]})
    agg = {}
    for system, pooled in samples.items():
        if not pooled:
            continue
        rs = [x for x in runs if x["system"] == system]
        agg[system] = {"p50": B.pct(pooled, 50), "p99": B.pct(pooled, 99), "max": max(pooled),
                       "mean": sum(pooled) / len(pooled), "n": len(pooled), "first": B.med([x["first"] for x in rs]),
                       "p50_spread": B.spread([x["p50"] for x in rs]), "p99_spread": B.spread([x["p99"] for x in rs]),
                       "runs": rs}
    out["dispatch"] = {"unit": "us", "keys": KEYS, "systems": agg, "interleaving": {k: list(v) for k, v in RUNS.items()},
                       "body_bytes_avg": B.med(out_body),
                       "warmup_dropped": {"woosync": cfg.warm_dispatch, "as": cfg.warm_as, "wc_queue": cfg.warm_wc},
                       "labels": SYSTEMS}


# ----------------------------------------------------------------------------------------------- 2. throughput

def _cpu(B, sender_pid, mariadb_pid) -> dict:
    return {"t": time.time(), "sender": checkout.tree_cpu(sender_pid), "mariadb": checkout.tree_cpu(mariadb_pid),
            "machine": checkout.machine_busy()}


def sc_drain(B, ctx, cfg: Config, srv: Server, hosts: Hosts, out: dict):
    fast = f"http://127.0.0.1:{ctx.nginx_port}/"
    runs = []
    for rep, conc in [(r, c) for r in range(cfg.drain_reps) for c in cfg.drain_concurrency]:  # interleaved
        base = {"woosync.database": srv.url(f"t{rep}c{conc}_"), "woosync.allow_networks": "127.0.0.1/32",
                "woosync.concurrency": conc}
        # The events' endpoint is stored in the outbox (not woosync.endpoint), rate-limited while the outbox fills.
        hosts.run("admin", "endpoint.php", {"name": "crm", "config": {"url": fast, "rate_limit": 0.01}}, base)
        sp, sinfo = hosts.start_sender("sender-2", base)
        try:
            B.nginx_arrivals(ctx)  # only this run's arrivals
            per = cfg.drain_events // cfg.fillers
            logs = [Path(B.TMP) / f"mysql-fill-{k}.txt" for k in range(cfg.fillers)]
            fps = [hosts.start(f"web-{k + 1}", "deliver.php", {"n": per, "keys": 1000, "idlog": str(logs[k]),
                                                                "flush_timeout": 0}, base)
                   for k in range(cfg.fillers)]
            fills = []
            for p in fps:
                o, e = p.communicate(timeout=600)
                B.PROCS.remove(p)
                if p.returncode != 0:
                    raise RuntimeError(f"filler failed: {e[-2000:]}")
                fills.append(json.loads(o.strip().splitlines()[-1]))
            fill_s = max(f["t_dispatched"] for f in fills) - min(f["t0"] for f in fills)
            sa = srv.status()
            a = _cpu(B, sp.pid, srv.pid())
            rel = hosts.run("admin", "endpoint.php", {"name": "crm", "config": {"url": fast, "rate_limit": 0},
                                                      "wake": True}, base)
            fl = hosts.run("admin", "deliver.php", {"n": 0, "flush_timeout": 240}, base, timeout=300)
            b = _cpu(B, sp.pid, srv.pid())
            sb = srv.status()
        finally:
            B.stop(sp)
        arr = B.nginx_arrivals(ctx)
        ids = [ln.split()[0] for f in logs for ln in f.read_text().splitlines() if ln.strip()]
        got = [arr[i] for i in ids if i in arr]
        t_rel = rel["t_save"]
        after = [t for t in got if t >= t_rel]
        last = max(got) if got else None
        rate = len(after) / (last - t_rel) if after and last > t_rel else None
        win = b["t"] - a["t"]
        cpu = {k: b[k] - a[k] for k in ("sender", "mariadb", "machine")}
        r = {"concurrency": conc, "events": len(ids), "arrived": len(got), "missing": len(ids) - len(got),
             "delivered_before_lift": len(got) - len(after), "rate": rate, "drain_s": (last - t_rel) if last else None,
             "flushed": fl["flushed"], "fill_s": fill_s, "fill_rate": len(ids) / fill_s,
             "filler_roles": sorted({f["worker"] for f in fills}),
             "fillers_saw_sender": sorted({f["sender_pid"] for f in fills}) == [sinfo["pid"]],
             "cpu_window_s": win, "cpu_s": cpu,
             "server_per_event": {k: (sb[k] - sa[k]) / max(1, len(after)) for k in sa},
             "cores": {k: v / win for k, v in cpu.items()},
             "cpu_ms_per_1000": {k: v * 1e6 / max(1, len(after)) for k, v in cpu.items()}}
        runs.append(r)
        B.log(f"mysql drain run {rep + 1}, concurrency {conc}: {len(after)} events in {B._f(r['drain_s'], 2)} s = {B._f(rate, 0)}/s; "
              f"fill by {cfg.fillers} hosts {r['fill_rate']:.0f}/s; cores sender {r['cores']['sender']:.2f}, "
              f"mariadbd {r['cores']['mariadb']:.2f}, machine {r['cores']['machine']:.2f}; missing {r['missing']}")
    main = [r for r in runs if r["concurrency"] == cfg.drain_concurrency[0]]  # the goal's: the default
    out["delivery"] = {
        "events": cfg.drain_events, "fillers": cfg.fillers, "concurrency": cfg.drain_concurrency[0],
        "rate": B.med([r["rate"] for r in main]), "rate_spread": B.spread([r["rate"] for r in main]),
        "fill_rate": B.med([r["fill_rate"] for r in main]),
        "cores": {k: B.med([r["cores"][k] for r in main]) for k in ("sender", "mariadb", "machine")},
        "cpu_ms_per_1000": {k: B.med([r["cpu_ms_per_1000"][k] for r in main]) for k in ("sender", "mariadb", "machine")},
        "server_per_event": {k: B.med([r["server_per_event"][k] for r in main]) for k in main[0]["server_per_event"]},
        "rate_by_concurrency": {c: B.med([r["rate"] for r in runs if r["concurrency"] == c]) for c in cfg.drain_concurrency},
        "missing": sum(r["missing"] for r in runs), "runs": runs,
        "receiver": f"nginx {B.nginx_version()} (1 worker, `return 200`)"}


# ----------------------------------------------------------------------------------------------- 3. across hosts

def sc_xhost(B, ctx, cfg: Config, srv: Server, hosts: Hosts, out: dict):
    rxlog = Path(B.TMP) / "mysql-xhost-rx.log"
    res = {}
    for case in ("other_host", "same_process"):
        p, port = B.start_receiver("xhost", logfile=rxlog)
        ini = {"woosync.database": srv.url(f"x{case[0]}_"), "woosync.endpoint": f"http://127.0.0.1:{port}/",
               "woosync.allow_networks": "127.0.0.1/32"}
        secs = cfg.xhost_seconds if case == "other_host" else max(2, cfg.xhost_seconds // 4)
        n = int(cfg.xhost_rate * secs)
        idlog = Path(B.TMP) / f"mysql-xhost-{case}.txt"
        sp = sinfo = None
        try:
            if case == "other_host":
                sp, sinfo = hosts.start_sender("host-b", ini)
            r = hosts.run("host-a", "deliver.php", {"n": n, "interval_us": int(1e6 / cfg.xhost_rate), "keys": KEYS,
                                                    "idlog": str(idlog), "flush_timeout": 30, "warm": 20}, ini)
        finally:
            if sp is not None:
                B.stop(sp)
            arr = B.stop_receiver_and_read(p, rxlog)
        st = B.latency_stats(idlog, arr)
        st.update({"n_dispatched": n, "rate_per_s": cfg.xhost_rate, "seconds": secs, "flushed": r["flushed"],
                   "dispatcher_worker": r["worker"], "sender_pid": r["sender_pid"], "dispatcher_pid": r["pid"]})
        if sinfo:
            st["sender_host_pid"] = sinfo["pid"]
            st["other_host_was_sender"] = r["sender_pid"] == sinfo["pid"] and r["worker"] == "standby"
        else:
            st["dispatcher_was_sender"] = r["worker"] == "sender"
        res[case] = st
        B.log(f"mysql first attempt ({case}): p50 {B._f(st['p50_ms'], 1)} ms p99 {B._f(st['p99_ms'], 1)} ms "
              f"max {B._f(st['max_ms'], 1)} ms, {st['n']} arrived, {st['missing']} missing; dispatcher "
              f"{r['worker']}, sender pid {r['sender_pid']}")
    out["first_attempt"] = res


# ----------------------------------------------------------------------------------------------- scenario

def scenario(B, ctx, R: dict, a=None):
    cfg = Config(ctx.quick)
    if getattr(a, "mysql_drain_concurrency", None):
        cfg.drain_concurrency = [int(x) for x in a.mysql_drain_concurrency.split(",")]
    out = {"config": vars(cfg).copy(), "errors": [], "timings_s": {}}
    R["mysql"] = out
    srv = Server(B, Path(B.TMP) / "mysql-outbox", getattr(a, "mysql_opt", None) or [])
    t = time.time()
    srv.start()
    try:
        out["server"] = srv.settings()
        out["server"]["extra_options"] = srv.extra
        B.log(f"mysql: MariaDB {out['server']['version']} on 127.0.0.1:{srv.port} "
              f"(flush_log_at_trx_commit={out['server']['innodb_flush_log_at_trx_commit']}, "
              f"sync_binlog={out['server']['sync_binlog']}, log_bin={out['server']['log_bin']})")
        hosts = Hosts(B, ctx)
        shop = None
        try:  # the real WordPress + WooCommerce, over the same TCP loopback and account as woosync
            shop_ctx = SimpleNamespace(so=ctx.so, mysql_socket=srv.sock, crm_port=0)
            shop = checkout.Shop(B, shop_ctx, checkout.Config(True), Path(B.TMP) / "mysql-wp")
            shop.d.mkdir(parents=True)
            shop.install_wordpress(db_host=f"127.0.0.1:{srv.port}", db_user=USER, db_password=srv.password)
            out["wordpress"] = {"wordpress": shop.wp("eval", "echo get_bloginfo('version');").stdout.strip(),
                                "woocommerce": shop.wp("eval", "echo WC()->version;").stdout.strip(),
                                "db_host": f"127.0.0.1:{srv.port} (TCP)"}
        except Exception as e:
            shop = None
            out["errors"].append(f"WordPress install: {type(e).__name__}: {str(e)[:500]}")
            B.log("mysql: WordPress install failed, Action Scheduler baselines skipped:", e)
            srv.sql(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`", db=None)
        out["timings_s"]["setup"] = time.time() - t
        for name, fn in (("dispatch", lambda: sc_dispatch(B, ctx, cfg, srv, hosts, shop, out)),
                         ("delivery", lambda: sc_drain(B, ctx, cfg, srv, hosts, out)),
                         ("first_attempt", lambda: sc_xhost(B, ctx, cfg, srv, hosts, out))):
            t = time.time()
            try:
                fn()
            except Exception as e:
                import traceback
                traceback.print_exc()
                out["errors"].append(f"{name}: {type(e).__name__}: {str(e)[:1000]}")
            out["timings_s"][name] = time.time() - t
    except Exception as e:
        out["errors"].append(f"{type(e).__name__}: {str(e)[:1000]}")
        raise
    finally:
        srv.stop()
        write_results(B, R, Path(ctx.out))
    if out["errors"]:
        raise RuntimeError("; ".join(out["errors"]))


# ----------------------------------------------------------------------------------------------- report

def goal_rows(R) -> list[dict]:
    """Issue 11's goals for the MariaDB outbox, in bench.goals()'s format."""
    m = R.get("mysql")
    rows = []
    if not m:
        return rows
    g, f, ratio = _B_g, _fmt, _ratio

    def add(goal, measured, ok):
        rows.append({"goal": goal, "measured": measured, "met": bool(ok), "source": "11"})

    sy = g(m, "dispatch", "systems") or {}
    bare = sy.get("bare_autocommit")
    ws = [(k, sy[k]) for k in ("mysql_self", "mysql_standby") if k in sy]
    if bare and ws:
        for q in ("p50", "p99"):
            rs = [ratio(v[q], bare[q]) for _, v in ws]
            add(f"MariaDB dispatch {q} ≤ 1.5× a bare single-row INSERT + COMMIT on the same server (autocommit, "
                f"{f(bare[q], 0)} µs); this process sends / another host sends",
                " / ".join(f"{f(r, 2)}×" for r in rs), all(r is not None and r <= 1.5 for r in rs))
    asq, inwp = sy.get("as_enqueue"), sy.get("mysql_in_wp")
    if asq and inwp:
        r50, r99 = ratio(asq["p50"], inwp["p50"]), ratio(asq["p99"], inwp["p99"])
        add(f"MariaDB dispatch ≥ 3× faster than real `as_enqueue_async_action` (p50 {f(asq['p50'], 0)} µs), both "
            "called in turn in the same WordPress process", f"p50 {f(r50, 2)}× (p99 {f(r99, 2)}×)",
            r50 is not None and r50 >= 3)
    d = m.get("delivery")
    if d:
        add("≥ 3,000 deliveries/s from the MariaDB outbox to a fast receiver (2 cores, database included)",
            f"{f(d['rate'], 0)}/s", d["rate"] is not None and d["rate"] >= 3000)
    x = g(m, "first_attempt", "other_host")
    if x:
        add("first attempt across hosts p99 ≤ 250 ms (dispatch on host A → arrival, sender on host B)",
            f"{f(x['p99_ms'], 1)} ms (p50 {f(x['p50_ms'], 1)})", x["p99_ms"] is not None and x["p99_ms"] <= 250)
    return rows


def _B_g(d, *path):
    for p in path:
        if isinstance(d, dict):
            d = d.get(p)
        elif isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return None
    return d


def _fmt(x, d):
    return "n/a" if x is None else f"{x:,.{d}f}"


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def md_section(R) -> list[str]:
    m = R.get("mysql")
    if not m:
        return []
    f = _fmt
    s = m.get("server", {})
    L = ["## 5. The outbox in MariaDB (issue 11)", "",
         f"One private MariaDB {s.get('version', '?')} for everything below, run as a replicated primary: binary log "
         f"{'on' if s.get('log_bin') == '1' else 'off'} ({s.get('binlog_format')}), "
         f"innodb_flush_log_at_trx_commit={s.get('innodb_flush_log_at_trx_commit')}, "
         f"sync_binlog={s.get('sync_binlog')}, doublewrite={s.get('innodb_doublewrite')}, "
         f"flush method {s.get('innodb_flush_method')}, buffer pool {int(s.get('innodb_buffer_pool_size') or 0) >> 20} MB, "
         f"{s.get('tx_isolation')} (server default; woosync sets READ COMMITTED on its sessions)"
         + (f", extra options {' '.join(s['extra_options'])}" if s.get("extra_options") else "")
         + ". woosync, WordPress and the bare-insert baseline use one account without SUPER over TCP to 127.0.0.1; "
           "a \"host\" is a PHP process with its own TMPDIR, sharing nothing but the database.", ""]
    d = m.get("dispatch")
    if d:
        sy = d["systems"]
        bare = sy.get("bare_autocommit", {})
        reps = max([x["rep"] for v in sy.values() for x in v["runs"]] or [0])
        L += [f"### Dispatch, per call (µs; {KEYS} keys, order-like payload, bare row ≈ {f(d.get('body_bytes_avg'), 0)} B)", "",
              "Systems compared with each other are timed call by call in turn in one process (the order rotates "
              "every round), so the machine's noise hits them alike: "
              + "; ".join("[" + ", ".join(f"`{x}`" for x in v) + "]" for v in d.get("interleaving", {}).values())
              + f". Each such run was repeated {reps} times, interleaved with the others"
              + (" (the WooCommerce queue reference once)" if len(sy.get("wc_queue", {}).get("runs", [])) == 1 < reps else "")
              + "; the first calls of each run "
              "are dropped (connection, tables, sender start), the percentiles pool the rest (n), the spreads are "
              "the per-run values [min–max].", "",
              "| system | n | p50 | p99 | max | p50 spread | p99 spread | × bare INSERT p50 / p99 |",
              "|---|---|---|---|---|---|---|---|"]
        for k, label in d["labels"].items():
            v = sy.get(k)
            if not v:
                L.append(f"| {label} | not run | | | | | | |")
                continue
            L.append(f"| {label} | {v['n']:,} | {f(v['p50'], 1)} | {f(v['p99'], 1)} | {f(v['max'], 0)} | {_sp(v['p50_spread'], 1)} | "
                     f"{_sp(v['p99_spread'], 1)} | {f(_ratio(v['p50'], bare.get('p50')), 2)} / "
                     f"{f(_ratio(v['p99'], bare.get('p99')), 2)} |")
        two, sb = sy.get("bare_two_rows"), sy.get("mysql_standby")
        if two and sb:
            L += ["", "A keyed dispatch writes at least two rows in one transaction (the key's counter, the event): "
                      f"against that floor in one round trip, `woosync_dispatch()` (another host sends) is "
                      f"{f(_ratio(sb['p50'], two['p50']), 2)}× at p50 and {f(_ratio(sb['p99'], two['p99']), 2)}× at p99; "
                      "woosync's transaction also reads the migration marker (shared lock) and its event table has "
                      "four indexes (id, event id, routing, key) where the bare table has one."]
        if "as_enqueue" in sy:
            L += ["", f"Action Scheduler {d.get('action_scheduler_version') or m.get('action_scheduler_version') or ''} as "
                      f"WooCommerce {g_first(m, 'wordpress', 'woocommerce')} bundles it, on WordPress "
                      f"{g_first(m, 'wordpress', 'wordpress')}, loaded once per run by `wp eval-file` "
                      "(WP-CLI 2.12.0, OPcache on); `as_enqueue_async_action('woocommerce_deliver_webhook_async', "
                      "['webhook_id' => 1, 'arg' => <new order id>], 'woocommerce-webhooks')`."]
        L.append("")
    dl = m.get("delivery")
    if dl:
        L += [f"### Delivery from the MariaDB outbox (backlog of {dl['events']:,} events, sender on its own host, "
              f"concurrency {dl['concurrency']} (the default: the goal's figure), receiver {dl['receiver']})", "",
              f"{dl['fillers']} hosts fill the outbox ({f(dl['fill_rate'], 0)} dispatches/s together, 1,000 keys) while "
              "its endpoint is rate-limited to 0.01/s; then the limit is lifted (`woosync_endpoint_save`) and one "
              "event wakes the sender. Rate = events / (last arrival − lift). CPU over the drain (/proc, user + system).", "",
              "| run | concurrency | deliveries/s | drain s | sender php cores | mariadbd cores | machine cores | CPU ms per 1,000 (php / mariadbd) | statements / commits per event | missing |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(dl["runs"], 1):
            pe = r["server_per_event"]
            L.append(f"| {i} | {r.get('concurrency', dl['concurrency'])} | {f(r['rate'], 0)} | {f(r['drain_s'], 2)} | {r['cores']['sender']:.2f} | "
                     f"{r['cores']['mariadb']:.2f} | {r['cores']['machine']:.2f} | "
                     f"{r['cpu_ms_per_1000']['sender']:.0f} / {r['cpu_ms_per_1000']['mariadb']:.0f} | "
                     f"{pe['Questions']:.1f} / {pe['Com_commit']:.2f} | {r['missing']} |")
        bc = dl.get("rate_by_concurrency") or {}
        if len(bc) > 1:
            L += ["", "Median deliveries/s by `woosync.concurrency` (runs interleaved): "
                  + ", ".join(f"{c}: {f(v, 0)}/s" for c, v in bc.items()) + "."]
        pe = dl.get("server_per_event") or {}
        if pe:
            L += ["", f"Server counters over the drains at concurrency {dl['concurrency']}, per delivered event (medians; SHOW GLOBAL STATUS; includes the flushing "
                      f"host's polls): statements {pe['Questions']:.1f}, commits {pe['Com_commit']:.2f} (binlog "
                      f"{pe['Binlog_commits']:.2f}), InnoDB fsyncs {pe.get('Innodb_data_fsyncs', 0):.2f}, SELECT "
                      f"{pe['Com_select']:.1f}, INSERT {pe['Com_insert']:.2f}, UPDATE {pe['Com_update']:.2f}, "
                      f"DELETE {pe['Com_delete']:.2f}."]
        L.append("")
    x = m.get("first_attempt")
    if x:
        L += ["### First attempt across hosts (µs receiver; arrival − wall clock when `woosync_dispatch` returned)", "",
              "| case | dispatches | p50 ms | p99 ms | max ms | arrived | missing | roles |", "|---|---|---|---|---|---|---|---|"]
        for k, v in x.items():
            roles = (f"dispatcher {v['dispatcher_worker']}, sender pid {v['sender_pid']} = host B"
                     if k == "other_host" else f"dispatcher {v['dispatcher_worker']} (local wake-up)")
            label = ("host A dispatches, host B sends (`woosync_serve`)" if k == "other_host"
                     else "reference: one process dispatches and sends")
            L.append(f"| {label} | {v['rate_per_s']}/s for {v['seconds']} s | {f(v['p50_ms'], 1)} | {f(v['p99_ms'], 1)} | "
                     f"{f(v['max_ms'], 1)} | {v['n']} | {v['missing']} | {roles} |")
        L.append("")
    if m.get("errors"):
        L += ["Errors: " + "; ".join(m["errors"]), ""]
    return L


def g_first(d, *path):
    return _B_g(d, *path)


def _sp(s, d):
    return f"[{_fmt(s[0], d)}–{_fmt(s[1], d)}]" if s else ""


def write_results(B, R, out: Path):
    """mysql.json and mysql.md (this scenario alone, with its goals), next to latest.*."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {k: R.get(k) for k in ("started", "quick", "machine", "so", "woosync_version", "git_head", "loadavg")}
    doc["mysql"] = R["mysql"]
    doc["goals"] = goal_rows(R)
    (out / "mysql.json").write_text(json.dumps(doc, indent=1, default=str))
    mc = R["machine"]
    L = ["# woosync benchmark: the outbox in MariaDB (issue 11)", "",
         f"Machine: {mc['nproc']} × {mc['cpu']}, {mc['mem_gb']} GB; PHP {mc['php']}. Run {R['started']} "
         f"({'quick smoke' if R['quick'] else 'full'}); woosync {R.get('woosync_version')}, repo HEAD "
         f"{R.get('git_head', '?')}; load average at the start: {' '.join(g_first(R, 'loadavg', 'mysql') or [])}. "
         "Noisy shared 2-core VM: read medians, spreads and ratios.", "",
         "| goal | measured | met |", "|---|---|---|"]
    for x in doc["goals"]:
        L.append(f"| {x['goal']} | {x['measured']} | {'met' if x['met'] else '**missed**'} |")
    L += [""] + md_section(R)
    (out / "mysql.md").write_text("\n".join(L) + "\n")
