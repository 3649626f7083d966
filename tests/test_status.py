"""woosync_status(): shape, counts, worker role; unrouted events; default database path."""
import os
import signal
import stat
import time

from conftest import closed_port, fast_ini
from helpers import LineReader, parse_rfc3339
import pytest

# Every test here runs on both storage engines: a SQLite file and a MariaDB database.
pytestmark = pytest.mark.engines("sqlite", "mysql")

KEYS = {"pending", "delivered", "dead", "superseded", "unrouted", "in_flight", "oldest_pending_age", "last_error",
        "last_success_at", "worker", "sender_pid", "database", "version", "endpoints"}
COUNTERS = ("pending", "delivered", "dead", "superseded", "unrouted", "in_flight")


def test_status_shape_on_empty_outbox(php, engine):
    st = php.status()
    assert KEYS <= set(st), f"missing keys: {KEYS - set(st)}"
    for k in COUNTERS:
        assert st[k] == 0 and isinstance(st[k], int), (k, st[k])
    assert st["oldest_pending_age"] is None
    assert st["last_error"] is None
    assert st["last_success_at"] is None
    assert st["worker"] in ("sender", "standby", "stopped")
    if engine == "mysql":
        # The URL with its password masked, and the tables named.
        url = str(php.outbox)
        password = url.split("://", 1)[1].split("@")[0].split(":", 1)[1]
        prefix = url.rsplit("prefix=", 1)[1]
        assert password not in st["database"] and "****" in st["database"], st["database"]
        assert f"tables {prefix}woosync_*" in st["database"], st["database"]
    else:
        assert st["database"] == str(php.outbox)
    assert isinstance(st["version"], str) and st["version"]
    assert isinstance(st["endpoints"], list)


def test_status_counts_pending_and_delivered(php, receiver):
    down = fast_ini(f"http://127.0.0.1:{closed_port()}/hook", delays="300")
    r = php.json("""
        for ($i = 0; $i < 3; $i++) woosync_dispatch('order.created', ['i' => $i]);
        $deadline = microtime(true) + 10;
        do { $s = woosync_status(); usleep(50000); }
        while (($s['last_error'] === null || $s['in_flight'] > 0) && microtime(true) < $deadline);
        usleep(300000);
        $s = woosync_status();
        $s['me'] = getmypid();
        out($s);
    """, down, timeout=30)
    assert r["pending"] == 3 and r["delivered"] == 0 and r["dead"] == 0 and r["in_flight"] == 0, r
    assert isinstance(r["oldest_pending_age"], (int, float)) and 0 <= r["oldest_pending_age"] < 60, r
    assert r["oldest_pending_age"] >= 0.2
    assert isinstance(r["last_error"], str) and r["last_error"]
    assert r["last_success_at"] is None
    assert r["worker"] == "sender" and r["sender_pid"] == r["me"], r
    [ep] = [e for e in r["endpoints"] if e["name"] == "default"]
    assert ep["url"] == down["woosync.endpoint"]
    assert ep["enabled"] is True and ep["disabled_reason"] is None and ep["disabled_at"] is None
    assert ep["pending"] == 3 and ep["delivered"] == 0 and ep["dead"] == 0

    up = fast_ini(receiver.url)
    t0 = time.time()
    r = php.json("""
        woosync_dispatch('order.created', ['i' => 10]);
        woosync_dispatch('order.created', ['i' => 11]);
        $deadline = microtime(true) + 10;   // not flush(): the 3 old events may wait 300 s
        while (woosync_status()['delivered'] < 2 && microtime(true) < $deadline) usleep(50000);
        out(['status' => woosync_status()]);
    """, up, timeout=30)
    st = r["status"]
    # the 3 old events now belong to an endpoint with a new URL; pending or sent, none lost
    assert st["delivered"] + st["pending"] == 5, st
    assert st["delivered"] >= 2
    assert abs(parse_rfc3339(st["last_success_at"]).timestamp() - t0) < 30, st["last_success_at"]
    [ep] = [e for e in st["endpoints"] if e["name"] == "default"]
    assert ep["url"] == receiver.url and ep["delivered"] >= 2


def test_status_delivered_counts(php, receiver):
    r = php.json("""
        foreach (range(1, 4) as $i) woosync_dispatch('order.created', ['i' => $i]);
        out(['flushed' => woosync_flush(10), 'status' => woosync_status()]);
    """, fast_ini(receiver.url))
    st = r["status"]
    assert r["flushed"] is True
    assert (st["pending"], st["delivered"], st["dead"], st["in_flight"], st["unrouted"]) == (0, 4, 0, 0, 0), st
    assert st["oldest_pending_age"] is None
    assert st["last_error"] is None
    parse_rfc3339(st["last_success_at"])
    [ep] = st["endpoints"]
    assert (ep["name"], ep["pending"], ep["delivered"], ep["dead"]) == ("default", 0, 4, 0)


def test_php_ini_endpoint_shows_before_the_first_dispatch(php, receiver):
    """`wp woosync status` showed "(none: set a CRM URL ...)" while php.ini set woosync.endpoint,
    until the first dispatch recorded it."""
    st = php.status(fast_ini(receiver.url))
    [ep] = [e for e in st["endpoints"] if e["name"] == "default"]
    assert ep["url"] == receiver.url and ep["health"] == "healthy" and ep["enabled"] is True, ep
    assert receiver.count() == 0


def test_unrouted_without_endpoint(php, receiver):
    t0 = time.monotonic()
    r = php.json("""
        $ids = [woosync_dispatch('order.created', ['n' => 1]), woosync_dispatch('order.updated', ['n' => 2])];
        out(['ids' => $ids, 'flushed' => woosync_flush(5), 'status' => woosync_status(), 'event' => woosync_event($ids[0])]);
    """)
    assert time.monotonic() - t0 < 4, "flush with only unrouted events must return at once"
    assert r["flushed"] is True
    st = r["status"]
    assert st["unrouted"] == 2 and st["pending"] == 0 and st["delivered"] == 0 and st["dead"] == 0, st
    assert r["event"]["id"] == r["ids"][0]
    assert r["event"]["body"]
    assert not [d for d in r["event"]["deliveries"] if d["state"] in ("queued", "pending", "in_flight")]
    time.sleep(0.2)
    assert receiver.count() == 0


def test_default_database_path_is_per_user_under_tmp(php, tmp_path):
    tmp = tmp_path / "t"
    tmp.mkdir()
    r = php.json("out([woosync_dispatch('order.created', []), woosync_status()['database']]);",
                 database=None, env={"TMPDIR": str(tmp)})
    mine = tmp / f"woosync-{os.geteuid()}" / "outbox.sqlite"
    assert r[1] == str(mine)
    assert mine.is_file() and stat.S_IMODE(mine.parent.stat().st_mode) == 0o700


def test_sender_standby_and_takeover(php, receiver):
    ini = fast_ini(receiver.url)
    hold = """
        woosync_dispatch('order.created', ['who' => '%s']);
        woosync_flush(10);
        $deadline = microtime(true) + 10;
        while (woosync_status()['worker'] === 'stopped' && microtime(true) < $deadline) usleep(50000);
        $s = woosync_status(); $s['me'] = getmypid(); out($s);
        $deadline = microtime(true) + 30;
        while (microtime(true) < $deadline) {          // report role changes until stdin closes
            $s = woosync_status(); $s['me'] = getmypid(); out($s);
            usleep(100000);
            $r = [STDIN]; $w = null; $e = null;
            if (stream_select($r, $w, $e, 0) > 0 && fgets(STDIN) === false) break;
        }
    """
    a = php.popen(hold % "a", ini)
    a_out = LineReader(a.stdout)
    sa = a_out.get_json(20)
    assert sa["worker"] == "sender" and sa["sender_pid"] == a.pid == sa["me"], sa

    b = php.popen(hold % "b", ini)
    b_out = LineReader(b.stdout)
    sb = b_out.get_json(20)
    assert sb["worker"] == "standby", sb
    assert sb["sender_pid"] == a.pid, sb
    receiver.wait_for(2)  # b's event went out through a's sender

    os.kill(a.pid, signal.SIGKILL)
    a.wait(10)
    deadline = time.monotonic() + 10
    while True:
        sb = b_out.get_json(10)
        if sb["worker"] == "sender":
            break
        assert time.monotonic() < deadline, f"standby did not take over after kill -9 of the sender: {sb}"
    assert sb["sender_pid"] == b.pid, sb
    b.stdin.close()
    b.wait(15)
