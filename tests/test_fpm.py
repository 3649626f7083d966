"""php-fpm (Debian package) serving FastCGI requests that dispatch: a private master with its own
config, pool and unix socket in a tmp dir, the extension loaded with `-d extension=` on the fpm
command line, requests sent with `cgi-fcgi -bind -connect` (libfcgi-bin)."""
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chaos_support import Fpm, duplicates, first_successes, order_violations
from receiver import Blackhole, Receiver, Response

DISPATCH_PHP = r"""<?php
$t = microtime(true);
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
$i = (int)($q['i'] ?? 0);
$ids = [];
for ($k = 0; $k < 3; $k++) {
    $ids[] = woosync_dispatch('order.created', ['req' => $i, 'k' => $k], ['key' => 'order:' . ($i % 5)]);
}
header('Content-Type: application/json');
echo json_encode(['pid' => getmypid(), 'ids' => $ids, 'php_seconds' => microtime(true) - $t]);
"""

STATUS_PHP = r"""<?php
header('Content-Type: application/json');
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
$s = woosync_status();
$ev = isset($q['id']) ? woosync_event($q['id']) : null;
if ($ev) unset($ev['body'], $ev['payload']);
$inflight = isset($q['id']) ? woosync_events(['status' => 'in_flight', 'limit' => 5]) : null;
echo json_encode(['pid' => getmypid(), 'status' => $s, 'event' => $ev, 'in_flight' => $inflight]);
"""


def _ini(outbox, url, **more):
    ini = {
        "woosync.database": str(outbox),
        "woosync.endpoint": url,
        "woosync.timeout": 10,
        "woosync.retry_delays": ",".join(["1"] * 30),
        "woosync.source": "https://shop.example.test",
        "woosync.shutdown_grace": 1,
    }
    ini.update({"woosync." + k: v for k, v in more.items()})
    return ini


def _fpm(tmp_path, so, ini, **kw) -> Fpm:
    fpm = Fpm(tmp_path / "fpm", so, ini, **kw)
    (fpm.docroot / "dispatch.php").write_text(DISPATCH_PHP)
    (fpm.docroot / "status.php").write_text(STATUS_PHP)
    return fpm


def _get_json(fpm, script, query=""):
    dt, body, raw = fpm.request(fpm.docroot / script, query)
    try:
        return dt, json.loads(body)
    except json.JSONDecodeError:
        pytest.fail(f"{script}?{query}: not JSON after {dt:.2f}s:\n{raw[-3000:]}\n--- fpm log:\n{fpm.log_text()}")


def _wait_delivered(fpm, rx, ids, timeout):
    """Wait until every id got a 2xx at the receiver, while the shop keeps serving a light
    trickle of requests (one status.php every 0.5 s). The sender starts in a worker at its first
    request (threads do not survive fpm's fork), so when the worker holding the sender recycles
    and the remaining workers are fresh, delivery resumes with the next request (README,
    "Lifecycle"); the trickle models ordinary traffic. On timeout fail with the outbox status
    (read through fpm), in-flight rows, the fpm worker pids and the fpm log."""
    want = set(ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if want.issubset(first_successes(rx.requests)):
            time.sleep(0.5)
            return
        fpm.request(fpm.docroot / "status.php")
        time.sleep(0.5)
    ok = first_successes(rx.requests)
    missing = [i for i in ids if i not in ok]
    _, s = _get_json(fpm, "status.php", f"id={missing[0]}")
    st = s["status"]
    st.pop("endpoints", None)
    pytest.fail(f"after {timeout}s {len(missing)} of {len(ids)} events had not arrived "
                f"({rx.count()} requests received, last {time.monotonic() - rx.requests[-1].time if rx.requests else -1:.1f}s ago)\n"
                f"status: {json.dumps(st)}\nfirst missing event: {json.dumps(s['event'])}\n"
                f"in flight: {json.dumps(s['in_flight'])}\n"
                f"last requests: {[(q.event_id, q.response.status if q.response else None, round(time.monotonic() - q.time, 2)) for q in rx.requests[-6:]]}\n"
                f"fpm workers now: {fpm.worker_pids()}\n--- fpm log:\n{fpm.log_text()[-3000:]}")


def _check_duplicates(fpm, rx, dups, pids):
    """At-least-once around recycling: a worker that recycles while it is the sender waits
    woosync.shutdown_grace and then abandons attempts still in flight, which the next sender
    repeats. Allow at most concurrency (4) repeats per worker, none sent more than twice."""
    if len(dups) <= 4 * len(pids) and all(n <= 2 for n in dups.values()):
        return
    detail = []
    for eid in list(dups)[:3]:
        _, s = _get_json(fpm, "status.php", f"id={eid}")
        reqs = [(round(q.time - rx.requests[0].time, 3), q.headers.get("x-wc-webhook-delivery-id"))
                for q in rx.requests if q.event_id == eid]
        detail.append({"event": s["event"], "received_at_s": reqs})
    pytest.fail(f"{len(dups)} event(s) delivered more than once while {len(pids)} workers recycled "
                f"normally (pm.max_requests=20): {list(dups.items())[:8]}\n"
                + json.dumps(detail, indent=1)[:6000] + "\n--- fpm log:\n" + fpm.log_text()[-2000:])


def _crashes(log: str) -> list:
    return [l for l in log.splitlines() if re.search(r"exited on signal|SIGSEGV|SIGABRT|core dumped|Fatal error", l)]



def _check_all_delivered_no_crash(fpm, n: int) -> None:
    """Every one of the n events delivered (none pending or dead), and no worker crashed."""
    _, s = _get_json(fpm, "status.php")
    st = s["status"]
    assert st["delivered"] == n and st["pending"] == 0 and st["dead"] == 0, st
    log = fpm.log_text()
    assert not _crashes(log), "fpm workers crashed:\n" + "\n".join(_crashes(log))

def test_fpm_blackholed_crm_fast_requests_recycled_workers_lose_nothing(so, outbox, tmp_path):
    bh = Blackhole()
    port = bh.port
    fpm = _fpm(tmp_path, so, _ini(outbox, bh.url), pm="static", max_children=3, max_requests=20)
    rx = None
    try:
        fpm.start()
        n_req = 90
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda i: _get_json(fpm, "dispatch.php", f"i={i}"), range(n_req)))
        lat = sorted(dt for dt, _ in results)
        pids = {r["pid"] for _, r in results}
        ids = [i for _, r in results for i in r["ids"]]
        print(f"\n[fpm-blackhole] {n_req} requests: latency p50={lat[len(lat) // 2] * 1000:.0f}ms "
              f"max={lat[-1] * 1000:.0f}ms, {len(pids)} worker pids, accepted by black hole: {bh.accepted}")
        assert len(ids) == 3 * n_req and len(set(ids)) == len(ids)
        # A correctness bound, not a speed figure: a request that waited on the network would take
        # the HTTP timeout (10 s); 5 s leaves room for a loaded machine.
        slow = [(round(dt, 2), r["pid"]) for dt, r in results if dt >= 5.0]
        assert not slow, f"requests took >= 5 s with the CRM blackholed (HTTP timeout 10 s): {slow}"
        assert len(pids) > 3, f"workers did not recycle (pm.max_requests=20): pids {pids}"
        assert bh.accepted >= 1, "no sender ever tried the CRM"

        _, s = _get_json(fpm, "status.php")
        st = s["status"]
        assert st["pending"] == 3 * n_req and st["dead"] == 0 and st["delivered"] == 0, st
        assert st["worker"] in ("sender", "standby"), st

        # the CRM comes back on the same address
        bh.stop()
        rx = Receiver(port=port).start()
        _wait_delivered(fpm, rx, ids, 60)
        ok = first_successes(rx.requests)
        missing = [i for i in ids if i not in ok]
        assert not missing, f"{len(missing)} events lost across worker recycling, e.g. {missing[:5]}"
        violations, per_key = order_violations(rx.requests)
        dups = duplicates(rx.requests)
        print(f"[fpm-blackhole] delivered {len(ok)} after recovery, {rx.count()} requests, "
              f"duplicates={len(dups)}, order violations={len(violations)}")
        assert not violations, violations[:10]
        assert sorted(per_key) == [f"order:{k}" for k in range(5)]
        _check_duplicates(fpm, rx, dups, pids)
        _check_all_delivered_no_crash(fpm, len(ids))
    finally:
        fpm.stop()
        if rx is not None:
            rx.stop()
        try:
            bh.stop()
        except OSError:
            pass


def test_fpm_dynamic_pool_parallel_requests_exactly_once(so, outbox, tmp_path):
    rx = Receiver(default=Response(200, delay=0.002)).start()
    fpm = _fpm(tmp_path, so, _ini(outbox, rx.url), pm="dynamic", max_children=4, max_requests=20)
    try:
        fpm.start()
        n_req = 200
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: _get_json(fpm, "dispatch.php", f"i={i}"), range(n_req)))
        ids = [i for _, r in results for i in r["ids"]]
        pids = {r["pid"] for _, r in results}
        lat = max(dt for dt, _ in results)
        # Correctness bound (no request waits on delivery or a recycling worker), with margin for a
        # loaded machine; speed figures live in make bench.
        assert lat < 5.0, f"slowest request {lat:.2f}s"
        assert len(pids) >= n_req // 20, f"workers did not recycle: {len(pids)} pids"
        _wait_delivered(fpm, rx, ids, 60)
        ok = first_successes(rx.requests)
        missing = [i for i in ids if i not in ok]
        violations, _ = order_violations(rx.requests)
        dups = duplicates(rx.requests)
        print(f"\n[fpm-dynamic] {n_req} requests, {len(pids)} worker pids, {len(ids)} events, "
              f"{rx.count()} requests at the CRM, duplicates={len(dups)}, order violations={len(violations)}")
        assert not missing, f"{len(missing)} events lost, e.g. {missing[:5]}"
        assert not violations, violations[:10]
        _check_duplicates(fpm, rx, dups, pids)
        # at-least-once: only attempts a recycling sender abandons at the end of shutdown_grace repeat
        assert rx.count() == len(ids) + sum(n - 1 for n in dups.values())
        _check_all_delivered_no_crash(fpm, len(ids))
    finally:
        fpm.stop()
        rx.stop()
