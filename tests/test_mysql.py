"""The outbox in MariaDB (`woosync.database = mysql://…`): the URL, the tables, masking of the
password, unreachable servers, dropped connections, lock waits and frozen transactions, and the
connection budget. Several hosts sharing one outbox are in test_mysql_cluster.py; the functional
tests of delivery, retries, ordering, endpoints, keys and status run on MariaDB too (marked
`engines("sqlite", "mysql")`).

The server is Debian's MariaDB, started by the tests (mariadb_support.py) with binary logging on;
the woosync account has every right on its database and no SUPER. MySQL 8 is not available here
and is not tested."""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.parse

import pytest

from conftest import fast_ini
from helpers import EVENT_ID_RE
from mariadb_support import MariaDB
from receiver import Blackhole, closed_port


def _prefix(url: str) -> str:
    return url.rsplit("prefix=", 1)[1].split("&")[0]


def _password_forms(db: MariaDB) -> list:
    return [db.password, urllib.parse.quote(db.password, safe=""), db.password[:8]]


def test_dispatch_and_delivery_through_every_url_form(php, mariadb, receiver):
    """mysql:// and mariadb:// over TCP, and a Unix socket (?socket=): each one stores, delivers,
    and reports the outbox with the password masked."""
    forms = {
        "tcp": mariadb.url("u" + secrets.token_hex(3) + "_"),
        "mariadb-scheme": mariadb.url("u" + secrets.token_hex(3) + "_", scheme="mariadb"),
        "socket": mariadb.url("u" + secrets.token_hex(3) + "_", socket_path=True),
    }
    for name, url in forms.items():
        r = php.json("""
            $id = woosync_dispatch('order.created', ['n' => 1], ['key' => 'order:1']);
            out(['id' => $id, 'flushed' => woosync_flush(10), 'status' => woosync_status(),
                 'event' => woosync_event($id)]);
        """, fast_ini(receiver.url), database=url)
        assert r["flushed"] is True, (name, r["status"])
        assert EVENT_ID_RE.fullmatch(r["id"]), r["id"]
        st = r["status"]
        for secret in _password_forms(mariadb):
            assert secret not in json.dumps(st), (name, st["database"])
        assert "****" in st["database"] and f"tables {_prefix(url)}woosync_*" in st["database"], st["database"]
        assert st["worker"] == "sender" and st["sender_pid"] and st["sender_host"], st
        assert r["event"]["sequence"] == 1 and r["event"]["deliveries"][0]["state"] == "delivered", r["event"]
    assert {q.event_id for q in receiver.wait_for(3)} == {q.event_id for q in receiver.requests}


def test_tables_prefixed_versioned_and_without_triggers_or_routines(php, mariadb, mysql_url, receiver):
    before = set(mariadb.sql("SHOW TABLES", "shop").split())
    php.json("out(woosync_dispatch('a.b', ['x' => 1]));", fast_ini(receiver.url), database=mysql_url)
    created = set(mariadb.sql("SHOW TABLES", "shop").split()) - before
    prefix = _prefix(mysql_url)
    assert created, "no tables were created"
    assert all(t.startswith(prefix + "woosync_") for t in created), created
    assert mariadb.value(f"SELECT v FROM `{prefix}woosync_meta` WHERE k = 'schema_version'") == "2"
    # Works on a replicated primary without SUPER: nothing but tables.
    for what in ("TRIGGERS WHERE TRIGGER_SCHEMA", "ROUTINES WHERE ROUTINE_SCHEMA", "EVENTS WHERE EVENT_SCHEMA"):
        n = mariadb.value(f"SELECT COUNT(*) FROM information_schema.{what} = 'shop'")
        assert n == "0", (what, n)
    engines = mariadb.sql(f"SELECT DISTINCT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' "
                          f"AND TABLE_NAME LIKE '{prefix}woosync%'").split()
    assert engines == ["InnoDB"], engines
    assert mariadb.value("SELECT @@log_bin") == "1", "the test server runs with a binary log"
    grants = mariadb.sql("SHOW GRANTS FOR 'woosync'@'127.0.0.1'")
    assert "SUPER" not in grants and "ALL PRIVILEGES ON *.*" not in grants, grants


def test_password_masked_in_ri_phpinfo_and_errors(php, mariadb, mysql_url, receiver):
    ini = fast_ini(receiver.url)
    php.json("out(woosync_dispatch('a.b', []));", ini, database=mysql_url)
    ri = php.run_args(["--ri", "woosync"], ini=ini, database=mysql_url, check=True).stdout
    info = php.run("phpinfo(INFO_MODULES);", ini=ini, database=mysql_url, check=True).stdout
    for text in (ri, info):
        for secret in _password_forms(mariadb):
            assert secret not in text, text[:3000]
        assert "woosync:****@127.0.0.1" in text, text[:3000]
    assert re.search(r"Outbox database => mysql://woosync:\*\*\*\*@", ri), ri

    # A wrong password: the server's refusal is reported, the password given is not.
    wrong = mysql_url.replace(urllib.parse.quote(mariadb.password, safe=""), "Hunter2%40secret")
    r = php.json("out(attempt(fn() => woosync_dispatch('a.b', [])));", ini, database=wrong)
    assert r["ok"] is False and r["class"] == "WooSyncException", r
    assert "Hunter2" not in r["message"] and "Access denied" in r["message"], r["message"]
    # A malformed URL: what is wrong, the password masked.
    bad = mysql_url + "&colour=blue"
    r = php.json("out(attempt(fn() => woosync_dispatch('a.b', [])));", ini, database=bad)
    assert r["ok"] is False and "colour" in r["message"], r
    for secret in _password_forms(mariadb):
        assert secret not in r["message"], r["message"]


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_server_raises_within_5_seconds(php, kind):
    """A port where nothing listens, and one that accepts TCP and never answers: dispatch, status
    and flush raise a clear WooSyncException within 5 s (no hang, no fatal error)."""
    hole = Blackhole() if kind == "silent" else None
    try:
        port = hole.port if hole else closed_port()
        url = f"mysql://woosync:s3cret-pw@127.0.0.1:{port}/shop?prefix=wp_"
        r = php.json("""
            $out = [];
            foreach (['dispatch' => fn() => woosync_dispatch('a.b', ['n' => 1], ['key' => 'k:1']),
                      'status' => fn() => woosync_status(),
                      'flush' => fn() => woosync_flush(1)] as $name => $f) {
                $t = microtime(true);
                $r = attempt($f);
                $r['seconds'] = microtime(true) - $t;
                $out[$name] = $r;
            }
            out($out);
        """, {"woosync.shutdown_grace": 0}, database=url, timeout=60)
    finally:
        if hole:
            hole.stop()
    for name, res in r.items():
        assert res["ok"] is False and res["class"] == "WooSyncException", (name, res)
        assert res["seconds"] < 5.0, (name, res)
        assert "s3cret" not in res["message"], res["message"]
        assert "cannot connect" in res["message"] or "connection" in res["message"].lower(), res["message"]


def test_connections_dropped_by_the_server_are_reopened(php, mariadb, mysql_url, receiver):
    """wait_timeout or a restart ends a session: the next call of the same process re-opens it
    without an error, and nothing is lost."""
    ini = fast_ini(receiver.url)
    p = php.popen("""
        out(['id' => woosync_dispatch('order.created', ['n' => 1], ['key' => 'order:1'])]);
        fgets(STDIN);
        $ids = [];
        for ($i = 2; $i <= 4; $i++) $ids[] = attempt(fn() => woosync_dispatch('order.created', ['n' => $i], ['key' => 'order:1']));
        out(['ids' => $ids, 'flushed' => woosync_flush(15), 'status' => woosync_status()]);
    """, dict(ini, **{"woosync.database": mysql_url}))
    first = json.loads(p.stdout.readline())
    # End every session of the account, as the server does after wait_timeout.
    ids = mariadb.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'woosync'").split()
    assert ids, "the process holds no connection"
    for i in ids:
        mariadb.sql(f"KILL CONNECTION {i}")
    p.stdin.write("go\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=60)
    r = json.loads(out.strip().splitlines()[-1])
    assert all(x["ok"] for x in r["ids"]), (r["ids"], err)
    assert r["flushed"] is True, r["status"]
    got = [q.json()["sequence"] for q in receiver.wait_for(4)]
    assert sorted(got) == [1, 2, 3, 4], got
    assert first["id"] in {q.event_id for q in receiver.requests}


def test_dispatch_never_waits_long_on_a_row_another_host_holds(php, mariadb, mysql_url, receiver):
    """Another host holding a key's counter row (e.g. frozen inside its dispatch): a dispatch of
    that key raises after about 2 s instead of InnoDB's 50 s; other keys are not held up."""
    ini = fast_ini(receiver.url)
    php.json("out(woosync_dispatch('a.b', [], ['key' => 'order:9']));", ini, database=mysql_url)
    table = f"`{_prefix(mysql_url)}woosync_key_seq`"
    holder = mariadb.session()
    try:
        holder.send(f"START TRANSACTION; SELECT seq FROM {table} WHERE `key` = 'order:9' FOR UPDATE",
                    marker="locked")
        r = php.json("""
            $t = microtime(true);
            $held = attempt(fn() => woosync_dispatch('a.b', [], ['key' => 'order:9']));
            $held['seconds'] = microtime(true) - $t;
            $t = microtime(true);
            $other = attempt(fn() => woosync_dispatch('a.b', [], ['key' => 'order:10']));
            $other['seconds'] = microtime(true) - $t;
            out(['held' => $held, 'other' => $other]);
        """, ini, database=mysql_url, timeout=60)
    finally:
        holder.close()
    held, other = r["held"], r["other"]
    assert held["ok"] is False and held["class"] == "WooSyncException", held
    assert 1.5 <= held["seconds"] < 5.0, held
    assert "locked" in held["message"] and "2 s" in held["message"], held["message"]
    assert other["ok"] is True and other["seconds"] < 1.5, other
    # The holder is gone: the key dispatches again, with the next sequence number (no gap).
    r = php.json("""
        $id = woosync_dispatch('a.b', [], ['key' => 'order:9']);
        out(woosync_event($id));
    """, ini, database=mysql_url)
    assert r["sequence"] == 2, r


FROZEN_DISPATCHER = r"""
// Dispatches bodies close to woosync.max_payload_bytes (stored statement by statement, so the
// transaction spans several round trips) with one key, for ever; prints every acknowledged id.
$n = 0;
while (true) {
    $n++;
    $r = attempt(fn() => woosync_dispatch('stock.updated', ['pad' => str_repeat('x', %(pad)d), 'n' => sprintf('%%08d', $n)], ['key' => 'sku:7']));
    out(['n' => $n, 'r' => $r]);
}
"""


def _key_row_locked(db: MariaDB, table: str, key: str) -> bool:
    """Whether another session holds the key's counter row (NOWAIT: answers at once)."""
    p = subprocess.run(["mariadb", f"--socket={db.sock}", "-uroot", "-N", "-B", "shop", "-e",
                        f"START TRANSACTION; SELECT seq FROM {table} WHERE `key` = '{key}' FOR UPDATE NOWAIT; ROLLBACK"],
                       capture_output=True, text=True, timeout=30)
    return p.returncode != 0 and ("lock" in p.stderr.lower() or "1205" in p.stderr or "3572" in p.stderr)


def test_frozen_transaction_is_ended_by_the_server(php, mariadb, mysql_url):
    """A process frozen (SIGSTOP) inside its dispatch transaction, holding the key's counter row:
    another process's dispatch of that key raises within ~2 s; within seconds the server ends the
    frozen transaction (idle_transaction_timeout) and the key dispatches again; when the frozen
    process resumes it carries on; every acknowledged event is stored with gapless sequences."""
    prefix = _prefix(mysql_url)
    table = f"`{prefix}woosync_key_seq`"
    probe = php.json("""
        $id = woosync_dispatch('stock.updated', ['pad' => str_repeat('x', 200), 'n' => sprintf('%08d', 0)], ['key' => 'sku:7']);
        out(strlen(woosync_event($id)['body']));
    """, database=mysql_url)
    # One digit of sequence number in the probe; leave room for 7 more digits but not for 19:
    # near the limit dispatch stores statement by statement, so a transaction spans round trips.
    ini = {"woosync.max_payload_bytes": probe + 7, "woosync.database": mysql_url}
    p = php.popen(FROZEN_DISPATCHER % {"pad": 200}, ini)
    caught = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not caught:
            time.sleep(0.02 + secrets.randbelow(30) / 1000)
            os.kill(p.pid, signal.SIGSTOP)
            time.sleep(0.05)
            if _key_row_locked(mariadb, table, "sku:7"):
                caught = True
            else:
                os.kill(p.pid, signal.SIGCONT)
        assert caught, "never caught the dispatcher inside a transaction"
        r = php.json("""
            $t = microtime(true);
            $r = attempt(fn() => woosync_dispatch('stock.updated', ['n' => 0], ['key' => 'sku:7']));
            $r['seconds'] = microtime(true) - $t;
            out($r);
        """, database=mysql_url, timeout=30)
        assert r["ok"] is False and "locked" in r["message"] and r["seconds"] < 5.0, r
        # The server ends the frozen session's transaction after idle_transaction_timeout (5 s).
        t0 = time.monotonic()
        while _key_row_locked(mariadb, table, "sku:7"):
            assert time.monotonic() - t0 < 15, "the frozen transaction was not ended within 15 s"
            time.sleep(0.25)
        r = php.json("out(attempt(fn() => woosync_dispatch('stock.updated', ['n' => -1], ['key' => 'sku:7'])));",
                     database=mysql_url)
        assert r["ok"] is True, r
    finally:
        os.kill(p.pid, signal.SIGCONT)
    time.sleep(2.0)  # the resumed process carries on for a while
    os.killpg(p.pid, signal.SIGKILL)
    out, _ = p.communicate(timeout=30)
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    failed = [l["r"]["message"] for l in lines if not l["r"]["ok"]]
    # Only the dispatch in progress at the freeze may fail (its session was ended under it).
    assert len(failed) <= 1, failed[:3]
    acked = [l["r"]["value"] for l in lines if l["r"]["ok"]]
    after_resume = [l for l in lines[-20:] if l["r"]["ok"]]
    assert after_resume, f"the resumed process did not dispatch again: {lines[-5:]}"
    stored = dict(mariadb.rows(f"SELECT event_id, seq FROM `{prefix}woosync_events` WHERE `key` = 'sku:7'"))
    missing = [i for i in acked if i not in stored]
    assert not missing, f"{len(missing)} acknowledged events are not stored: {missing[:3]}"
    seqs = sorted(int(s) for s in stored.values())
    assert seqs == list(range(1, len(seqs) + 1)), f"sequences have gaps or repeats: {seqs[:10]}...{seqs[-10:]}"


def test_idle_processes_hold_no_connection_under_a_low_max_connections(php, tmp_path, receiver):
    """max_connections=12 and 14 worker processes on 4 "hosts", each dispatching once (1.5 s
    apart) and then staying alive: a request-side connection is closed after 10 s idle and standbys
    hold none, so the server never runs out (holding on would need 15); once all are idle only the
    sender's connection is left."""
    db = MariaDB(tmp_path / "small-mariadb", max_connections=12).start()
    try:
        url = db.url("lc_")
        ini = dict(fast_ini(receiver.url), **{"woosync.database": url})
        workers = []
        t0 = time.monotonic()
        for i in range(14):
            # Each "host" has its own temp dir; nothing is shared but the database.
            tmp = tmp_path / f"host{i % 4}"
            tmp.mkdir(exist_ok=True)
            workers.append(php.popen("""
                $start = %f;
                while (microtime(true) < $start) usleep(10000);
                $r = attempt(fn() => woosync_dispatch('order.created', ['w' => %d], ['key' => 'order:%d']));
                fgets(STDIN);
                out($r);
            """ % (time.time() + 1 + i * 1.5, i, i % 5), ini, env=dict(os.environ, TMPDIR=str(tmp))))
        samples = []
        # The last dispatch is at ~20.5 s; its connection closes by ~33 s.
        while time.monotonic() - t0 < 35:
            samples.append((round(time.monotonic() - t0, 1), db.connections()))
            time.sleep(0.5)
        idle = [n for t, n in samples if t > 33.5]
        results = []
        for w in workers:
            out, err = w.communicate("go\n", timeout=30)
            assert w.returncode == 0, err[-2000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        failed = [r for r in results if not r["ok"]]
        assert not failed, failed[:3]
        peak = max(n for _, n in samples)
        assert peak <= 11, f"woosync held {peak} connections at once: {samples}"
        assert idle and max(idle) <= 2, f"idle processes still hold connections: {samples[-6:]}"
        assert len(receiver.wait_for(14, timeout=30)) >= 14
    finally:
        db.destroy()


def _tls_files(d) -> dict:
    """A private CA, a server certificate for 127.0.0.1 / localhost signed by it, and an unrelated CA."""
    d.mkdir(exist_ok=True)

    def ossl(*args):
        p = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, cwd=d)
        assert p.returncode == 0, p.stderr[-2000:]

    for ca in ("ca", "other-ca"):
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=woosync test {ca}",
             "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
         "-extfile", "san.ext", "-out", "server.pem")
    return {k: d / f"{k}.pem" for k in ("ca", "other-ca", "server")} | {"key": d / "server.key"}


def test_tls_to_the_database_verified_and_refused(php, tmp_path, receiver):
    """`?ssl-mode=…&ssl-ca=…`: a server that accepts only TLS over TCP (require_secure_transport) takes
    dispatch and delivery with VERIFY_CA / VERIFY_IDENTITY against its CA, and REQUIRED; the wrong CA and
    ssl-mode=DISABLED raise a WooSyncException naming the problem in words (no driver type names),
    without the password."""
    tls = _tls_files(tmp_path / "tls")
    db = MariaDB(tmp_path / "tls-mariadb", extra_args=(
        f"--ssl-ca={tls['ca']}", f"--ssl-cert={tls['server']}", f"--ssl-key={tls['key']}",
        "--require-secure-transport=ON")).start()
    try:
        base = db.url("tls_")
        ca = urllib.parse.quote(str(tls["ca"]), safe="/")
        other = urllib.parse.quote(str(tls["other-ca"]), safe="/")
        ini = fast_ini(receiver.url)
        ok_urls = [f"{base}&ssl-mode=VERIFY_CA&ssl-ca={ca}", f"{base}&ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}",
                   f"{base}&ssl-mode=REQUIRED"]
        for n, url in enumerate(ok_urls):
            r = php.json("""
                $id = woosync_dispatch('order.created', ['n' => %d], ['key' => 'order:1']);
                out(['id' => $id, 'flushed' => woosync_flush(20), 'status' => woosync_status()]);
            """ % n, ini, database=url)
            assert r["flushed"] is True and r["status"]["worker_error"] is None, (url, r["status"])
        assert len(receiver.wait_for(3, timeout=20)) == 3
        assert [json.loads(q.body)["sequence"] for q in receiver.requests] == [1, 2, 3]
        # The woosync sessions really were encrypted: the server refuses anything else over TCP.
        # (MariaDB answers a plain connection of an account that must use TLS with "Access denied".)
        for url, words in [(f"{base}&ssl-mode=VERIFY_CA&ssl-ca={other}", ("tls: invalid peer certificate",)),
                           (f"{base}&ssl-mode=DISABLED", ("access denied", "secure transport"))]:
            r = php.json("""out(attempt(fn() => woosync_dispatch('order.created', ['bad' => 1])));""", ini,
                         database=url)
            assert not r["ok"] and r["class"] == "WooSyncException", r
            assert any(w in r["message"].lower() for w in words), r["message"]
            assert all(f not in r["message"] for f in _password_forms(db)), r["message"]
            assert "Error {" not in r["message"], r["message"]  # no driver type names
    finally:
        db.destroy()
