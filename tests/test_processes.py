"""Processes: kill -9, hanging CRM, exit behaviour, hand-over to the next process, pcntl_fork."""
import collections
import os
import signal
import time

from conftest import fast_ini
from helpers import EVENT_ID_RE, LineReader
from receiver import Response
import pytest

# Every test here runs on both storage engines: a SQLite file and a MariaDB database.
pytestmark = pytest.mark.engines("sqlite", "mysql")


def test_kill9_mid_burst_loses_no_acknowledged_event(php, receiver):
    ini = fast_ini(receiver.url, delays="0.05,0.1,0.2,0.5")
    p = php.popen("""
        for ($i = 0; $i < 1000000; $i++) {
            $id = woosync_dispatch('order.created', ['i' => $i], ['key' => 'order:' . ($i % 7)]);
            echo $id . "\\n";
            fflush(STDOUT);
        }
    """, ini)
    out = LineReader(p.stdout)
    err = LineReader(p.stderr, "stderr")
    first = out.get(20)
    assert EVENT_ID_RE.fullmatch(first), (first, err.lines)
    deadline = time.monotonic() + 30
    while len(out.lines) < 400 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.01)
    assert p.poll() is None, f"dispatcher died early: {err.lines[-10:]}"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    out.wait_eof(5)
    ids = [l for l in out.lines if EVENT_ID_RE.fullmatch(l)]
    assert len(ids) >= 400 and len(set(ids)) == len(ids)
    before_kill = receiver.count()

    r = php.json("out(['flushed' => woosync_flush(60), 'status' => woosync_status()]);", ini, timeout=90)
    assert r["flushed"] is True, r["status"]
    st = r["status"]
    assert st["pending"] == 0 and st["dead"] == 0 and st["in_flight"] == 0, st
    got = collections.Counter(q.event_id for q in receiver.requests)
    missing = [i for i in ids if i not in got]
    assert not missing, f"{len(missing)} acknowledged event(s) never arrived, e.g. {missing[:5]}"
    dups = {i: n for i, n in got.items() if n > 1}
    print(f"\nkill -9: {len(ids)} ids acknowledged, {before_kill} requests before the kill, "
          f"{len(dups)} event(s) received more than once (at-least-once around the kill): {list(dups.items())[:5]}")
    # a duplicate can only come from an attempt in flight when the process died: at most the
    # sender's concurrency (4) events
    assert len(dups) <= 4, dups


def test_blackholed_crm_does_not_block_dispatch_or_exit(php, blackhole):
    ini = fast_ini(blackhole.url, delays="60", timeout=10, shutdown_grace=1, concurrency=4)
    t0 = time.monotonic()
    res = php.run("""
        $t = microtime(true);
        for ($i = 0; $i < 200; $i++) woosync_dispatch('order.created', ['i' => $i]);
        $d = microtime(true) - $t;
        usleep(200000); // let the sender connect to the black hole
        out(['dispatch_seconds' => $d, 'status' => woosync_status()]);
    """, ini, timeout=30)
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.describe()
    r = res.json_lines()[-1]
    assert r["dispatch_seconds"] < 3, f"200 dispatches took {r['dispatch_seconds']:.2f}s with a hanging CRM"
    assert r["status"]["pending"] == 200
    assert wall < 6, f"script with shutdown_grace=1 and a hanging CRM (timeout 10) took {wall:.2f}s to exit"
    assert blackhole.accepted >= 1, "the sender never tried the endpoint"
    st = php.status(ini)
    assert st["pending"] == 200 and st["dead"] == 0 and st["delivered"] == 0, st


def _exit_delay(php, code, ini):
    res = php.run(code + "\n out(['t' => microtime(true)]);", ini, timeout=30)
    end = time.time()
    assert res.returncode == 0, res.describe()
    return end - res.json_lines()[-1]["t"], res


def test_exits_promptly_when_nothing_pending(php, receiver):
    ini = fast_ini(receiver.url, shutdown_grace=3)
    d, _ = _exit_delay(php, "", ini)
    assert d < 1.5, f"extension loaded, nothing used: exit took {d:.2f}s"
    d, _ = _exit_delay(php, "woosync_status();", ini)
    assert d < 1.5, f"nothing pending: exit took {d:.2f}s (shutdown_grace=3)"
    d, _ = _exit_delay(php, "woosync_dispatch('order.created', []); woosync_flush(10);", ini)
    assert d < 1.5, f"all delivered: exit took {d:.2f}s (shutdown_grace=3)"
    d, _ = _exit_delay(php, "woosync_dispatch('order.created', []);", {"woosync.shutdown_grace": 3})
    assert d < 1.5, f"only unrouted events: exit took {d:.2f}s (shutdown_grace=3)"


def test_dispatch_and_exit_is_delivered_before_exit(php, receiver):
    ini = fast_ini(receiver.url, shutdown_grace=3)
    res = php.run("out(woosync_dispatch('order.created', ['n' => 1]));", ini, timeout=30)
    assert res.returncode == 0, res.describe()
    eid = res.json_lines()[-1]
    [req] = receiver.wait_for(1, timeout=0.3)
    assert req.event_id == eid
    st = php.status(ini)
    assert st["delivered"] == 1 and st["pending"] == 0, st


def test_hanging_crm_exit_within_grace(php, receiver):
    receiver.default = Response(200, delay=30)
    ini = fast_ini(receiver.url, shutdown_grace=1, timeout=20)
    t0 = time.monotonic()
    res = php.run("out(woosync_dispatch('order.created', ['n' => 1]));", ini, timeout=30)
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.describe()
    receiver.wait_for(1, timeout=1)
    assert wall < 4, f"exit took {wall:.2f}s with shutdown_grace=1"


def test_event_dispatched_while_crm_down_is_sent_by_next_process(php, receiver):
    receiver.stop()
    ini = fast_ini(receiver.url, delays="1,1,1,1,1,1,1,1,1,1", shutdown_grace=1)
    t0 = time.monotonic()
    res = php.run("out(woosync_dispatch('order.created', ['n' => 1]));", ini, timeout=30)
    assert res.returncode == 0, res.describe()
    assert time.monotonic() - t0 < 6
    eid = res.json_lines()[-1]
    assert receiver.count() == 0
    st = php.status(ini)
    assert st["pending"] == 1 and st["last_error"], st
    receiver.start()
    r = php.json("out(woosync_flush(20));", ini, timeout=40)
    assert r is True
    reqs = receiver.wait_for(1)
    assert [q.event_id for q in reqs] == [eid]


def test_pcntl_fork_parent_and_child_both_deliver(php, receiver):
    ini = fast_ini(receiver.url)
    res = php.run("""
        $a = woosync_dispatch('order.created', ['who' => 'parent-before']);
        $pid = pcntl_fork();
        if ($pid === -1) { out(['error' => 'fork failed']); exit(1); }
        if ($pid === 0) {
            $b = woosync_dispatch('order.created', ['who' => 'child']);
            out(['who' => 'child', 'id' => $b, 'flushed' => woosync_flush(15)]);
            exit(0);
        }
        $c = woosync_dispatch('order.created', ['who' => 'parent-after']);
        $ok = woosync_flush(15);
        pcntl_waitpid($pid, $st);
        out(['who' => 'parent', 'ids' => [$a, $c], 'flushed' => $ok,
             'child_exited' => pcntl_wifexited($st), 'child_code' => pcntl_wexitstatus($st)]);
    """, ini, timeout=45)
    assert res.returncode == 0, res.describe()
    lines = {l["who"]: l for l in res.json_lines() if isinstance(l, dict) and "who" in l}
    assert set(lines) == {"child", "parent"}, res.describe()
    assert lines["child"]["flushed"] is True
    assert lines["parent"]["flushed"] is True
    assert lines["parent"]["child_exited"] is True and lines["parent"]["child_code"] == 0
    ids = lines["parent"]["ids"] + [lines["child"]["id"]]
    receiver.wait_for(3)
    time.sleep(0.3)
    got = collections.Counter(q.event_id for q in receiver.requests)
    assert {i: got[i] for i in ids} == {i: 1 for i in ids}, got


def test_forked_child_becomes_the_sender_after_the_parent_exits(php, receiver):
    """A forked child must forget the parent's sender (keyed by PID) and start its own: with that
    check gone it believes the parent's threads are its own and nothing delivers once the parent
    has exited."""
    ini = fast_ini(receiver.url)
    res = php.run("""
        $a = woosync_dispatch('order.created', ['who' => 'parent']);
        $parent_flushed = woosync_flush(10);
        $parent = getmypid();
        $pid = pcntl_fork();
        if ($pid === -1) { out(['error' => 'fork failed']); exit(1); }
        if ($pid === 0) {
            $deadline = microtime(true) + 15;
            while (posix_getppid() === $parent && microtime(true) < $deadline) usleep(20000);
            $b = woosync_dispatch('order.created', ['who' => 'child']);
            $ok = woosync_flush(15);
            $s = woosync_status();
            out(['who' => 'child', 'pid' => getmypid(), 'orphaned' => posix_getppid() !== $parent, 'id' => $b,
                 'flushed' => $ok, 'worker' => $s['worker'], 'sender_pid' => $s['sender_pid']]);
            exit(0);
        }
        out(['who' => 'parent', 'pid' => $parent, 'id' => $a, 'flushed' => $parent_flushed]);
        exit(0);
    """, ini, timeout=60)
    assert res.returncode == 0, res.describe()
    lines = {l["who"]: l for l in res.json_lines() if isinstance(l, dict) and "who" in l}
    assert set(lines) == {"child", "parent"}, res.describe()
    parent, child = lines["parent"], lines["child"]
    assert parent["flushed"] is True
    assert child["orphaned"] is True, "the parent did not exit"
    assert child["flushed"] is True, child
    assert child["worker"] == "sender" and child["sender_pid"] == child["pid"], child
    got = [q.event_id for q in receiver.wait_for(2)]
    assert sorted(got) == sorted([parent["id"], child["id"]])


def test_repeated_fork_while_delivering(php, receiver):
    receiver.default = Response(200, delay=0.05)
    ini = fast_ini(receiver.url, shutdown_grace=1)
    res = php.run("""
        $ids = [];
        for ($i = 0; $i < 40; $i++) $ids[] = woosync_dispatch('order.created', ['i' => $i], ['key' => 'order:' . ($i % 3)]);
        $children = [];
        for ($k = 0; $k < 20; $k++) {
            $pid = pcntl_fork();
            if ($pid === -1) { out(['error' => 'fork failed']); exit(1); }
            if ($pid === 0) {
                if ($k % 2 == 0) out(['child' => $k, 'id' => woosync_dispatch('order.created', ['child' => $k])]);
                exit(0);
            }
            $children[$pid] = microtime(true);
            usleep(20000);
        }
        $deadline = microtime(true) + 20;
        $exits = [];
        while ($children && microtime(true) < $deadline) {
            $pid = pcntl_waitpid(-1, $st, WNOHANG);
            if ($pid > 0) {
                $exits[] = ['code' => pcntl_wifexited($st) ? pcntl_wexitstatus($st) : -1,
                            'signal' => pcntl_wifsignaled($st) ? pcntl_wtermsig($st) : 0,
                            'secs' => microtime(true) - $children[$pid]];
                unset($children[$pid]);
            } else {
                usleep(10000);
            }
        }
        $hung = array_keys($children);
        foreach ($hung as $pid) posix_kill($pid, SIGKILL);
        out(['parent' => true, 'ids' => $ids, 'exits' => $exits, 'hung' => $hung, 'flushed' => woosync_flush(30)]);
    """, ini, timeout=90)
    assert res.returncode == 0, res.describe()
    lines = res.json_lines()
    parent = [l for l in lines if isinstance(l, dict) and l.get("parent")]
    assert parent, res.describe()
    parent = parent[-1]
    assert parent["hung"] == [], f"{len(parent['hung'])} forked children did not exit within 20 s"
    assert len(parent["exits"]) == 20
    bad = [e for e in parent["exits"] if e["code"] != 0]
    assert not bad, f"children exited abnormally: {bad}\n{res.stderr[-2000:]}"
    slow = [e for e in parent["exits"] if e["secs"] > 5]
    assert not slow, f"children took too long to exit: {slow}"
    child_ids = [l["id"] for l in lines if isinstance(l, dict) and "child" in l]
    assert len(child_ids) == 10
    assert parent["flushed"] is True
    want = parent["ids"] + child_ids
    receiver.wait_for(len(want), timeout=10)
    time.sleep(0.3)
    got = collections.Counter(q.event_id for q in receiver.requests)
    missing = [i for i in want if got[i] == 0]
    assert not missing, f"not delivered: {missing}"
    dups = {i: n for i, n in got.items() if n > 1}
    assert not dups, f"delivered more than once: {dups}"


def test_recovery_after_outage_follows_retry_delays(php, receiver):
    """Several events fail repeatedly while the CRM is down (many consecutive failures); once it
    is back, the next attempt comes after the configured delay (1 s here), not later."""
    receiver.stop()
    ini = fast_ini(receiver.url, delays="1,1,1,1,1,1,1,1,1,1", shutdown_grace=1)
    r = php.json("""
        $ids = [];
        foreach (['product:1', 'product:2', 'order:3'] as $k) $ids[] = woosync_dispatch('product.updated', ['k' => $k], ['key' => $k]);
        $ok = woosync_flush(5.0);   // ~4 failed attempts per event (delays 1 s)
        out(['ids' => $ids, 'flushed' => $ok, 'events' => array_map('woosync_event', $ids)]);
    """, ini, timeout=30)
    assert r["flushed"] is False
    fails = sum(e["deliveries"][0]["attempts"] for e in r["events"])
    assert fails >= 3, f"expected failed attempts during the outage, got {fails}"
    receiver.start()
    t0 = time.monotonic()
    r2 = php.json("out(['flushed' => woosync_flush(15), 'status' => woosync_status()]);", ini, timeout=40)
    took = time.monotonic() - t0
    assert r2["flushed"] is True, (
        f"CRM back up, retry_delays=1: not delivered within 15 s (status: {r2['status']})")
    assert took < 6, f"delivery after the outage took {took:.1f}s with 1 s retry delays"
    got = {q.event_id for q in receiver.requests}
    assert set(r["ids"]) <= got
