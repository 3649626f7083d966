"""Chaos suite: delivery semantics under kill -9, a flaky CRM, many processes and fork.

Order is checked on the receiver side: for each key, the FIRST successful (2xx) delivery of each
event, in arrival order, must have increasing `sequence` values (chaos_support.order_violations).
"""
import collections
import json
import os
import random
import signal
import threading
import time

from chaos_support import (duplicates, first_successes, is_success, kill9, order_violations, pid_alive,
                           start_sender)
from conftest import fast_ini
from helpers import EVENT_ID_RE, LineReader
from receiver import Response

MANY_RETRIES = "0.05,0.1,0.1,0.2,0.2,0.3,0.3,0.5,0.5,0.5,1,1,1,1,1,1,1,1,1,1,1,1"


def _report(label, **kv):
    print(f"\n[{label}] " + ", ".join(f"{k}={v}" for k, v in kv.items()))


def _assert_all_delivered(receiver, ids, what):
    ok = first_successes(receiver.requests)
    missing = [i for i in ids if i not in ok]
    assert not missing, (f"{what}: {len(missing)} of {len(ids)} acknowledged event(s) never delivered "
                         f"successfully, e.g. {missing[:5]}")
    return ok


def test_kill9_dispatcher_mid_burst_nothing_lost_order_kept(php, receiver):
    """The dispatching process (which is also the outbox's sender) is killed with SIGKILL while
    it dispatches a burst over 13 keys and a backlog is being delivered; the next process delivers
    every acknowledged event, and per-key order holds across the crash."""
    receiver.default = Response(200, delay=0.005)
    ini = fast_ini(receiver.url, delays=MANY_RETRIES, concurrency=4)
    p = php.popen("""
        out(['pid' => getmypid(), 'status' => woosync_status()]);
        for ($i = 0; $i < 1000000; $i++) {
            $id = woosync_dispatch('product.stock_updated', ['i' => $i], ['key' => 'sku:' . ($i % 13)]);
            echo $id . "\\n";
            fflush(STDOUT);
            if ($i % 50 == 0) usleep(2000);
        }
    """, ini)
    out, err = LineReader(p.stdout), LineReader(p.stderr, "stderr")
    first = out.get_json(20)
    assert first["status"]["worker"] == "sender" and first["status"]["sender_pid"] == first["pid"], first
    deadline = time.monotonic() + 30
    while len(out.lines) < 1500 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.01)
    assert p.poll() is None, f"dispatcher died early: {err.lines[-10:]}"
    assert receiver.count() > 0, "nothing was delivered before the kill (no sender running?)"
    kill9(p)
    out.wait_eof(5)
    ids = [l for l in out.lines if EVENT_ID_RE.fullmatch(l)]
    assert len(ids) >= 1500 and len(set(ids)) == len(ids)
    before = receiver.count()

    r = php.json("out(['pid' => getmypid(), 'flushed' => woosync_flush(60), 'status' => woosync_status()]);",
                 ini, timeout=90)
    st = r["status"]
    assert r["flushed"] is True, st
    assert st["pending"] == 0 and st["in_flight"] == 0 and st["dead"] == 0, st
    ok = _assert_all_delivered(receiver, ids, "kill -9 of the dispatcher")
    # every event in the outbox (also ones committed but not yet echoed) arrived
    assert st["delivered"] == len(ok), (st["delivered"], len(ok))
    violations, per_key = order_violations(receiver.requests)
    dups = duplicates(receiver.requests)
    _report("kill9-dispatcher", acknowledged=len(ids), stored=st["delivered"], received_before_kill=before,
            requests=receiver.count(), duplicates=len(dups), order_violations=len(violations))
    assert not violations, f"{len(violations)} per-key order violation(s), e.g. {violations[:10]}"
    assert sorted(per_key) == sorted(f"sku:{k}" for k in range(13))
    # at-least-once around the crash: only attempts in flight at the kill may repeat
    assert len(dups) <= 4, dups


def test_kill9_sender_mid_delivery_standby_takes_over(php, receiver):
    """A slow CRM keeps 4 deliveries in flight; the sender process is killed with SIGKILL; the
    standby in another process takes over at once (dead holder's leases are reset), delivers
    everything, and per-key order holds."""
    receiver.default = Response(200, delay=0.15)
    ini = fast_ini(receiver.url, delays=MANY_RETRIES, concurrency=4, timeout=10)
    a = php.popen("""
        $ids = [];
        for ($i = 0; $i < 120; $i++) $ids[] = woosync_dispatch('order.updated', ['i' => $i], ['key' => 'order:' . ($i % 10)]);
        out(['pid' => getmypid(), 'ids' => $ids, 'status' => woosync_status()]);
        woosync_flush(120);
        sleep(120);
    """, ini)
    a_out, a_err = LineReader(a.stdout), LineReader(a.stderr, "stderr")
    a_first = a_out.get_json(20)
    assert a_first["status"]["sender_pid"] == a_first["pid"], a_first["status"]
    ids = a_first["ids"]

    b = php.popen("""
        out(['pid' => getmypid(), 'status' => woosync_status()]);
        $ok = woosync_flush(60);
        out(['pid' => getmypid(), 'flushed' => $ok, 'status' => woosync_status()]);
    """, ini)
    b_out, b_err = LineReader(b.stdout), LineReader(b.stderr, "stderr")
    b_first = b_out.get_json(20)
    assert b_first["status"]["worker"] == "standby", b_first["status"]
    assert b_first["status"]["sender_pid"] == a_first["pid"], b_first["status"]

    # kill while requests are being answered slowly
    receiver.wait_for(12, timeout=20)
    in_flight = [q for q in receiver.requests if q.answered is None]
    kill9(a)
    killed_at = time.monotonic()
    before = receiver.count()
    done = b_out.get_json(60)
    b.wait(15)
    took = time.monotonic() - killed_at
    st = done["status"]
    assert done["flushed"] is True, st
    assert st["sender_pid"] == b_first["pid"] and st["worker"] == "sender", st
    assert st["pending"] == 0 and st["dead"] == 0 and st["delivered"] == 120, st
    assert b.returncode == 0 and not [l for l in b_err.wait_eof(5) if l.strip()], b_err.lines[-10:]
    _assert_all_delivered(receiver, ids, "kill -9 of the sender")
    violations, _ = order_violations(receiver.requests)
    dups = duplicates(receiver.requests)
    _report("kill9-sender", in_flight_at_kill=len(in_flight), received_before_kill=before,
            requests=receiver.count(), duplicates=len(dups), takeover_and_rest_seconds=round(took, 2),
            order_violations=len(violations))
    assert not violations, f"{len(violations)} per-key order violation(s), e.g. {violations[:10]}"
    assert len(dups) <= 4, dups
    # the dead holder's leases are taken over at once, not after lease expiry (timeout 10 + 5 s):
    # ~110 remaining deliveries at 0.15 s with concurrency 4 need ~5 s
    assert took < 14, f"takeover after kill -9 took {took:.1f}s (lease expiry is 15 s)"


def test_flaky_receiver_everything_delivered_in_order(php, receiver):
    """30% HTTP 500, 10% dropped connections, random delays up to 30 ms: every event arrives,
    zero per-key order violations. The failure run length is capped at 3 so that the circuit
    breaker (5 consecutive failures) does not add its 30 s pause to the test's runtime."""
    rnd = random.Random(4242)
    lock = threading.Lock()
    state = {"run": 0, "500": 0, "drop": 0, "ok": 0}

    def responder(req):
        with lock:
            x = rnd.random()
            delay = rnd.random() * 0.03
            if state["run"] < 3 and x < 0.30:
                state["run"] += 1
                state["500"] += 1
                return Response(500, body=b"flaky", delay=delay)
            if state["run"] < 3 and x < 0.40:
                state["run"] += 1
                state["drop"] += 1
                return Response(drop=True, delay=delay)
            state["run"] = 0
            state["ok"] += 1
            return Response(200, delay=delay)

    receiver.responder = responder
    ini = fast_ini(receiver.url, delays=MANY_RETRIES, concurrency=4)
    n = 400
    r = php.json("""
        $ids = [];
        for ($i = 0; $i < %d; $i++) {
            $opts = ($i %% 5 == 4) ? null : ['key' => 'sku:' . ($i %% 17)];
            $ids[] = woosync_dispatch('product.updated', ['i' => $i], $opts);
        }
        $ok = woosync_flush(100);
        out(['ids' => $ids, 'flushed' => $ok, 'status' => woosync_status()]);
    """ % n, ini, timeout=130)
    st = r["status"]
    assert r["flushed"] is True, st
    assert st["delivered"] == n and st["dead"] == 0 and st["pending"] == 0, st
    _assert_all_delivered(receiver, r["ids"], "flaky receiver")
    violations, per_key = order_violations(receiver.requests)
    dups = duplicates(receiver.requests)
    _report("flaky", requests=receiver.count(), answered_500=state["500"], dropped=state["drop"],
            ok=state["ok"], duplicates=len(dups), order_violations=len(violations))
    assert state["500"] > 50 and state["drop"] > 15, state
    assert not violations, f"{len(violations)} per-key order violation(s), e.g. {violations[:10]}"
    assert len(per_key) == 17
    # a 500 or a dropped connection is never a success, so no event may have two successes
    assert not dups, f"events answered 2xx more than once: {list(dups.items())[:5]}"


def test_eight_processes_thousands_of_events_one_outbox(php, receiver):
    procs_n, per_proc = 8, 2000
    ini = fast_ini(receiver.url, delays=MANY_RETRIES, concurrency=4)
    code = """
        $n = %d;
        for ($i = 0; $i < $n; $i++) {
            // a quarter share 8 keys across all processes; the rest have none
            $opts = ($i %% 4 == 0) ? ['key' => 'shared:' . (intdiv($i, 4) %% 8)] : null;
            try {
                $id = woosync_dispatch('order.created', ['proc' => getmypid(), 'i' => $i], $opts);
            } catch (\\Throwable $e) {
                fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\\n");
                continue;
            }
            echo $id . "\\n";
        }
        $ok = woosync_flush(150);
        out(['done' => true, 'flushed' => $ok, 'status' => woosync_status()]);
    """ % per_proc
    t0 = time.monotonic()
    procs = [php.popen(code, ini) for _ in range(procs_n)]
    readers = [(LineReader(p.stdout), LineReader(p.stderr, "stderr")) for p in procs]
    deadline = time.monotonic() + 170
    for p in procs:
        p.wait(max(1, deadline - time.monotonic()))
    elapsed = time.monotonic() - t0
    ids, senders = [], set()
    for p, (out, err) in zip(procs, readers):
        lines = out.wait_eof(5)
        errs = [e for e in err.wait_eof(5) if e.strip()]
        assert p.returncode == 0, f"process exited {p.returncode}: {errs[-20:]}"
        assert not errs, f"stderr output (exceptions/warnings): {errs[-20:]}"
        mine = [l for l in lines if EVENT_ID_RE.fullmatch(l)]
        assert len(mine) == per_proc, (len(mine), lines[-3:])
        ids += mine
        assert '"flushed":true' in lines[-1], lines[-1][:2000]
    assert len(set(ids)) == procs_n * per_proc, "event ids must be unique"

    ok = _assert_all_delivered(receiver, ids, "8 processes")
    time.sleep(0.3)
    reqs = receiver.requests
    dups = duplicates(reqs)
    violations, per_key = order_violations(reqs)
    got = collections.Counter(q.event_id for q in reqs)
    _report("8-processes", events=len(ids), requests=len(reqs), duplicates=len(dups),
            order_violations=len(violations), seconds=round(elapsed, 1))
    assert set(got) == set(ids), "the receiver saw events nobody dispatched"
    assert not dups, f"{len(dups)} event(s) delivered more than once (normal case), e.g. {list(dups.items())[:5]}"
    assert not violations, f"{len(violations)} per-key order violation(s), e.g. {violations[:10]}"
    assert sorted(per_key) == [f"shared:{k}" for k in range(8)]
    for key, seqs in per_key.items():
        assert len(set(seqs)) == len(seqs), f"{key}: duplicate sequence numbers across processes"
    st = php.status(ini)
    assert st["delivered"] == procs_n * per_proc and st["pending"] == 0 and st["dead"] == 0, st


def test_pcntl_fork_with_deliveries_in_flight(php, receiver):
    """Fork while the parent's sender has slow deliveries in flight: parent and child both
    dispatch and flush, the child exits promptly, nothing is lost or sent twice, order holds."""
    receiver.default = Response(200, delay=0.1)
    ini = fast_ini(receiver.url, delays=MANY_RETRIES, concurrency=4, shutdown_grace=2)
    res = php.run("""
        $ids = [];
        for ($i = 0; $i < 20; $i++) $ids[] = woosync_dispatch('order.updated', ['who' => 'parent', 'i' => $i], ['key' => 'order:' . ($i % 4)]);
        usleep(150000); // deliveries are now in flight in this process's sender
        $pid = pcntl_fork();
        if ($pid === -1) { out(['error' => 'fork failed']); exit(1); }
        if ($pid === 0) {
            $mine = [];
            for ($i = 0; $i < 10; $i++) $mine[] = woosync_dispatch('order.updated', ['who' => 'child', 'i' => $i], ['key' => 'order:' . ($i % 4)]);
            out(['who' => 'child', 'ids' => $mine, 'flushed' => woosync_flush(30)]);
            exit(0);
        }
        for ($i = 0; $i < 10; $i++) $ids[] = woosync_dispatch('order.updated', ['who' => 'parent2', 'i' => $i], ['key' => 'order:' . ($i % 4)]);
        $ok = woosync_flush(30);
        $t = microtime(true);
        $st = 0; $waited = 0;
        while (microtime(true) - $t < 30) {
            $w = pcntl_waitpid($pid, $st, WNOHANG);
            if ($w === $pid) { $waited = 1; break; }
            usleep(20000);
        }
        if (!$waited) posix_kill($pid, SIGKILL);
        out(['who' => 'parent', 'ids' => $ids, 'flushed' => $ok, 'child_reaped' => (bool)$waited,
             'child_code' => $waited ? pcntl_wexitstatus($st) : null, 'status' => woosync_status()]);
    """, ini, timeout=90)
    assert res.returncode == 0, res.describe()
    lines = {l["who"]: l for l in res.json_lines() if isinstance(l, dict) and "who" in l}
    assert set(lines) == {"child", "parent"}, res.describe()
    parent, child = lines["parent"], lines["child"]
    assert parent["child_reaped"] is True, "forked child hung"
    assert parent["child_code"] == 0, res.describe()
    assert child["flushed"] is True and parent["flushed"] is True, res.describe()
    ids = parent["ids"] + child["ids"]
    assert len(set(ids)) == 40
    receiver.wait_for(40, timeout=20)
    time.sleep(0.5)
    _assert_all_delivered(receiver, ids, "fork")
    dups = duplicates(receiver.requests)
    violations, _ = order_violations(receiver.requests)
    assert not violations, violations
    assert not dups, f"delivered more than once after fork: {dups}"
    st = php.status(ini)
    assert st["delivered"] == 40 and st["pending"] == 0 and st["dead"] == 0, st


def test_concurrent_first_use_of_a_new_outbox(php, receiver, tmp_path):
    """Eight processes start using a not-yet-existing outbox at the same moment (php-fpm after a
    deploy, a cron burst): every one of them dispatches without an exception, repeatedly."""
    ini = fast_ini(receiver.url, delays=MANY_RETRIES, shutdown_grace=0)
    code = """
        $start = (float)$argv_start;
        while (microtime(true) < $start) usleep(200);
        $r = attempt(fn() => woosync_dispatch('order.created', ['p' => getmypid()]));
        out($r);
    """
    failures, ids = [], []
    rounds = 20
    for rnd in range(rounds):
        db = tmp_path / f"fresh{rnd}" / "outbox.sqlite"
        db.parent.mkdir()
        start = time.time() + 0.4
        # staggered by a few milliseconds: some open while another is still creating the schema
        procs = [php.popen(code.replace("$argv_start", repr(start + i * 0.002 * (rnd % 4))),
                           {**ini, "woosync.database": str(db)}) for i in range(8)]
        for p in procs:
            out, err = p.communicate(timeout=30)
            lines = [l for l in out.splitlines() if l.startswith("{")]
            r = json.loads(lines[-1]) if lines else {"ok": False, "message": f"no output; stderr {err[-500:]}"}
            if not r["ok"]:
                failures.append((rnd, r.get("class"), r.get("message")))
            else:
                ids.append(r["value"])
            if err.strip():
                failures.append((rnd, "stderr", err.strip()[-500:]))
    print(f"\n[first-use] {rounds} rounds x 8 processes: {len(failures)} failure(s)")
    assert not failures, f"{len(failures)} failure(s) opening a new outbox concurrently, e.g.:\n" + \
        "\n".join(map(str, failures[:5]))
    assert len(ids) == rounds * 8
