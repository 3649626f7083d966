"""The storage key (`woosync.key`) arriving after the sender started: what the WordPress plugin
does on every request (it derives the key from the salts and sets it with ini_set), and what a
process without the key does when it holds the sender role."""
import json
import time

from chaos_support import Fpm, first_successes
from conftest import fast_ini
import pytest

# Every test here runs on both storage engines: a SQLite file and a MariaDB database.
pytestmark = pytest.mark.engines("sqlite", "mysql")

KEY = "ab" * 32
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _sealed_endpoint(php, url: str) -> None:
    """Stores endpoint `crm` with its secret sealed under KEY (the php.ini endpoint stays empty),
    and delivers one setup event with the key, so the outbox holds everything a running shop's
    does: later processes change no endpoint (which would make any sender re-read them)."""
    r = php.json(f"""
        woosync_endpoint_save('crm', ['url' => {json.dumps(url)}, 'secret' => {json.dumps(SECRET)},
                                       'retry_delays' => '0.2,0.2,0.2']);
        woosync_dispatch('setup.done', []);
        out(['flushed' => woosync_flush(10), 'sealed' => array_column(woosync_endpoints(), 'secret_encrypted', 'name')['crm'] ?? null]);
    """, {"woosync.key": KEY})
    assert r == {"flushed": True, "sealed": True}, r


def test_key_set_with_ini_set_after_start_reaches_the_sender(php, receiver):
    """Reported as: `usleep(500000); ini_set("woosync.key", K); dispatch; flush` printed false from
    the second run on: the sender started at request startup without the key and only applied a
    key handed over later when the endpoint list changed."""
    _sealed_endpoint(php, receiver.url)
    ids = []
    for run in range(3):
        r = php.json(f"""
            woosync_status();                      // the sender starts here, before the key is set
            usleep(500000);
            ini_set('woosync.key', '{KEY}');
            $id = woosync_dispatch('order.created', ['run' => {run}]);
            out(['id' => $id, 'flushed' => woosync_flush(10), 'status' => woosync_status()]);
        """, timeout=40)
        assert r["flushed"] is True, (run, r["status"])
        assert r["status"]["worker_error"] is None, r["status"]
        ids.append(r["id"])
    receiver.wait_for(4)
    got = [q for q in receiver.requests if q.event_id in ids]
    assert sorted(q.event_id for q in got) == sorted(ids)
    for q in got:
        assert q.headers["webhook-signature"].startswith("v1,")


def test_key_handed_over_by_ini_set_alone(php, receiver):
    """The sending process gets the key from ini_set without calling any woosync function after it
    (the plugin sets the key on every request, most requests dispatch nothing). The other process
    has no key at all, so only the handed-over key can deliver."""
    _sealed_endpoint(php, receiver.url)
    holder = php.popen(f"""
        woosync_status();
        $deadline = microtime(true) + 10;
        while (woosync_status()['worker'] !== 'sender' && microtime(true) < $deadline) usleep(20000);
        out(['worker' => woosync_status()['worker']]);
        ini_set('woosync.key', '{KEY}');
        out(['key' => 'set']);
        fgets(STDIN);
    """)
    try:
        first = json.loads(holder.stdout.readline())
        assert first["worker"] == "sender", first
        assert json.loads(holder.stdout.readline()) == {"key": "set"}
        r = php.json("""
            $id = woosync_dispatch('order.created', ['n' => 1]);
            out(['id' => $id, 'flushed' => woosync_flush(15), 'worker' => woosync_status()['worker']]);
        """, timeout=40)
        assert r["worker"] == "standby", r
        assert r["flushed"] is True, r
        assert r["id"] in [q.event_id for q in receiver.wait_for(2)]
    finally:
        holder.stdin.close()
        holder.wait(15)


def test_sender_without_the_key_says_so_and_yields_to_a_process_that_has_it(php, receiver):
    _sealed_endpoint(php, receiver.url)
    keyless = php.popen("""
        woosync_status();
        $deadline = microtime(true) + 10;
        while (woosync_status()['worker'] !== 'sender' && microtime(true) < $deadline) usleep(20000);
        out(woosync_status());
        fgets(STDIN);
        out(woosync_status());
    """)
    try:
        before = json.loads(keyless.stdout.readline())
        assert before["worker"] == "sender", before
        t0 = time.monotonic()
        r = php.json("""
            $id = woosync_dispatch('order.created', ['n' => 1]);
            out(['id' => $id, 'flushed' => woosync_flush(20), 'status' => woosync_status()]);
        """, {"woosync.key": KEY}, timeout=40)
        took = time.monotonic() - t0
        assert r["flushed"] is True, r["status"]
        assert r["status"]["worker"] == "sender", r["status"]
        assert took < 15, f"the keyless sender took {took:.1f}s to hand over"
        assert r["id"] in [q.event_id for q in receiver.wait_for(2)]
        keyless.stdin.write("\n")
        keyless.stdin.flush()
        after = json.loads(keyless.stdout.readline())
        # It says why it cannot deliver, in its status and in the endpoint every process sees.
        assert "woosync.key" in (after["worker_error"] or ""), after
        [ep] = [e for e in after["endpoints"] if e["name"] == "crm"]
        assert "woosync.key" in (ep["last_error"] or ""), ep
    finally:
        keyless.stdin.close()
        keyless.wait(15)


KEYED_DISPATCH_PHP = r"""<?php
// What the WordPress plugin does on every request: set the key with ini_set, then dispatch.
ini_set('woosync.key', getenv('WOOSYNC_TEST_KEY') ?: '%s');
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
header('Content-Type: application/json');
echo json_encode(['pid' => getmypid(), 'id' => woosync_dispatch('order.created', ['i' => (int) ($q['i'] ?? 0)])]);
""" % KEY

KEYED_PAGE_PHP = r"""<?php
ini_set('woosync.key', '%s');
header('Content-Type: application/json');
echo json_encode(['pid' => getmypid()]);
""" % KEY


def test_fpm_workers_recycled_keep_delivering_with_a_key_set_by_ini_set(so, php, receiver, tmp_path):
    """Under php-fpm a worker starts its sender at its first request, before any PHP runs, without
    the key. Reported: delivery stopped for good once the first sending worker was recycled."""
    _sealed_endpoint(php, receiver.url)
    ini = {"woosync.database": str(php.outbox), "woosync.shutdown_grace": 1}
    # One worker: whenever it serves a request it is the sender, started before any PHP ran.
    fpm = Fpm(tmp_path / "fpm", so, ini, pm="static", max_children=1, max_requests=3)
    (fpm.docroot / "dispatch.php").write_text(KEYED_DISPATCH_PHP)
    (fpm.docroot / "page.php").write_text(KEYED_PAGE_PHP)
    try:
        fpm.start()
        ids, pids = [], set()
        for i in range(24):
            _, body, raw = fpm.request(fpm.docroot / ("dispatch.php" if i % 2 == 0 else "page.php"), f"i={i}")
            r = json.loads(body)
            pids.add(r["pid"])
            if "id" in r:
                ids.append(r["id"])
        assert len(pids) >= 4, f"workers did not recycle: {pids}"
        deadline = time.monotonic() + 30
        while not set(ids) <= set(first_successes(receiver.requests)) and time.monotonic() < deadline:
            fpm.request(fpm.docroot / "page.php")  # ordinary traffic, no dispatch
            time.sleep(0.3)
        missing = [i for i in ids if i not in first_successes(receiver.requests)]
        assert not missing, f"{len(missing)} of {len(ids)} events never delivered\n{fpm.log_text()}"
    finally:
        fpm.stop()
