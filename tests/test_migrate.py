"""woosync_migrate: moving an outbox between SQLite and MariaDB while the shop keeps dispatching.
Pending and dead events, endpoints and per-key counters move; event ids and sequence numbers are
kept; dispatches into the frozen source land in the target with the next sequence number of their
key; per-key order holds across the switch; each call moves one batch, so an interrupted move
just continues."""
from __future__ import annotations

import json
import time

from chaos_support import first_successes, order_violations
from conftest import make_secret
from helpers import LineReader
from receiver import Receiver, Response

KEY = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

DISPATCHER = r"""
// The shop: dispatches over three keys until told to stop (a line on stdin), printing every id.
stream_set_blocking(STDIN, false);
$n = 0;
while (true) {
    $n++;
    $r = attempt(fn() => woosync_dispatch('order.updated', ['n' => $n], ['key' => 'order:' . ($n % 3)]));
    out(['n' => $n, 'ok' => $r['ok'], 'id' => $r['value'], 'msg' => $r['message']]);
    if (fgets(STDIN) !== false) break;
    usleep(20000);
}
"""


def _migrate_until_done(php, ini, database, to, limit):
    calls = []
    for _ in range(200):
        r = php.json(f"out(woosync_migrate({json.dumps(to)}, ['limit' => {limit}]));", ini, database=database)
        calls.append(r)
        if r["done"]:
            return calls
        time.sleep(0.05)
    raise AssertionError(f"the move did not finish: {calls[-3:]}")


def test_move_sqlite_to_mariadb_while_dispatching_and_back(php, outbox, mysql_url, mariadb, tmp_path):
    crm = Receiver()
    crm.start()
    erp = Receiver(default=Response(500, body=b"no"))
    erp.start()
    crm_url = crm.url
    crm.stop()  # the CRM is down: events wait
    secret = make_secret()
    # Retries every 2 s for minutes: events wait while the CRM is down, and go soon after.
    ini = {"woosync.endpoint": crm_url, "woosync.retry_delays": ",".join(["2"] * 60), "woosync.key": KEY,
           "woosync.source": "https://shop.example.test"}
    try:
        # Before: pending events on three keys, one dead event for the ERP, a sealed secret.
        before = php.json("""
            woosync_endpoint_save('erp', ['url' => %s, 'secret' => %s, 'topics' => ['erp.sync'],
                                          'retry_delays' => '0.05']);
            $ids = [];
            for ($i = 1; $i <= 9; $i++) $ids[] = woosync_dispatch('order.updated', ['before' => $i], ['key' => 'order:' . ($i %% 3)]);
            $dead = woosync_dispatch('erp.sync', ['sku' => 1]);
            $t = microtime(true);
            while (woosync_status()['dead'] < 1 && microtime(true) - $t < 10) usleep(50000);
            out(['ids' => $ids, 'dead' => $dead, 'status' => woosync_status()]);
        """ % (json.dumps(erp.url), json.dumps(secret)), ini)
        assert before["status"]["dead"] == 1, before["status"]
        assert before["status"]["pending"] >= 9, before["status"]

        # The shop keeps dispatching into the SQLite outbox during the move.
        shop = php.popen(DISPATCHER, ini)
        lines = LineReader(shop.stdout)
        lines.get(10)
        calls = _migrate_until_done(php, ini, outbox, mysql_url, limit=4)
        time.sleep(0.3)  # a few more dispatches after the move: forwarded
        shop.stdin.write("stop\n")
        shop.stdin.flush()
        shop.wait(30)
        lines.wait_eof(10)
        during = [json.loads(l) for l in lines.lines if l.startswith("{")]
        assert during and all(d["ok"] for d in during), [d for d in during if not d["ok"]][:3]
        assert sum(c["moved"] for c in calls) >= 10, calls
        assert calls[0]["keys"] == 3 and calls[0]["endpoints"] >= 1, calls[0]
        for c in calls:
            assert "****" in c["to"] and mariadb.password not in json.dumps(c), c

        # The source says where it went; nothing pending is left in it.
        src = php.status(ini)
        assert src["moved_to"] and "****" in src["moved_to"], src
        assert any("moved" in n for n in src["notices"]), src["notices"]
        assert src["pending"] == 0 and src["dead"] == 0, src

        # The target has everything: ids, the dead event (dead), the endpoint with its sealed secret.
        mysql_ini = dict(ini)
        # Moved events are routed again by the target's sender (its next cycle): wait for that, boundedly.
        tgt = php.json("""
            $t = microtime(true);
            do {
                $dead = woosync_event(%s); $first = woosync_event(%s);
                if ($dead['deliveries'] && $first['deliveries']) break;
                usleep(50000);
            } while (microtime(true) - $t < 10);
            out(['status' => woosync_status(), 'dead' => $dead, 'first' => $first, 'endpoints' => woosync_endpoints()]);
        """ % (json.dumps(before["dead"]), json.dumps(before["ids"][0])), mysql_ini, database=mysql_url)
        assert tgt["status"]["importing_from"] is None, tgt["status"]
        states = {d["endpoint"]: d["state"] for d in tgt["dead"]["deliveries"]}
        assert states.get("erp") == "dead", tgt["dead"]
        assert tgt["first"]["sequence"] == 1 and tgt["first"]["deliveries"][0]["state"] in ("pending", "queued", "in_flight")
        erp_ep = [e for e in tgt["endpoints"] if e["name"] == "erp"][0]
        assert erp_ep["secret_encrypted"] is True, erp_ep

        # The CRM comes back: every event arrives once, in per-key order, sequences gapless.
        crm = Receiver(port=int(crm_url.rsplit(":", 1)[1].split("/")[0]))
        crm.start()
        r = php.json("out(['flushed' => woosync_flush(60), 'status' => woosync_status()]);", mysql_ini,
                     database=mysql_url, timeout=90)
        assert r["flushed"] is True, r["status"]
        ids = before["ids"] + [d["id"] for d in during]
        got = first_successes(crm.requests)
        missing = [i for i in ids if i not in got]
        assert not missing, f"{len(missing)} of {len(ids)} events did not arrive: {missing[:3]}"
        violations, per_key = order_violations(crm.requests)
        assert not violations, violations[:5]
        for key, seqs in per_key.items():
            assert seqs == list(range(1, len(seqs) + 1)), (key, seqs)
        # The ERP's dead event can be retried from the target, signed with the moved secret.
        erp.default = Response(200)
        n = php.json("out(woosync_retry_dead('erp')); woosync_flush(20);", mysql_ini, database=mysql_url)
        assert n == 1
        assert erp.wait_for(3, timeout=20)[-1].json()["data"] == {"sku": 1}

        # Calling it again after it finished is harmless.
        again = php.json(f"out(woosync_migrate({json.dumps(mysql_url)}));", ini)
        assert again["done"] is True and again["moved"] == 0, again

        # And back: MariaDB to a new SQLite file; the MariaDB outbox is then the frozen one.
        back = tmp_path / "db" / "back.sqlite"
        php.json("out(woosync_dispatch('order.updated', ['after' => 1], ['key' => 'order:1']));", mysql_ini,
                 database=mysql_url)
        crm.stop()
        php.json("out(woosync_dispatch('order.updated', ['after' => 2], ['key' => 'order:1']));", mysql_ini,
                 database=mysql_url)
        _migrate_until_done(php, mysql_ini, mysql_url, str(back), limit=100)
        r = php.json("""
            $id = woosync_dispatch('order.updated', ['after' => 3], ['key' => 'order:1']);
            out(woosync_event($id));
        """, mysql_ini, database=back)
        assert r["sequence"] == per_key["order:1"][-1] + 3, (r["sequence"], per_key["order:1"][-1])
    finally:
        crm.stop()
        erp.stop()


def test_migrate_refuses_what_it_cannot_do(php, outbox, mysql_url):
    r = php.json("""
        out([
          'self' => attempt(fn() => woosync_migrate(%s)),
          'limit' => attempt(fn() => woosync_migrate(%s, ['limit' => 0])),
          'option' => attempt(fn() => woosync_migrate(%s, ['speed' => 'fast'])),
          'relative' => attempt(fn() => woosync_migrate('relative.sqlite')),
        ]);
    """ % (json.dumps(str(outbox)), json.dumps(mysql_url), json.dumps(mysql_url)))
    for name, res in r.items():
        assert res["ok"] is False and res["class"] == "WooSyncException", (name, res)
    assert "itself" in r["self"]["message"]
    assert "limit" in r["limit"]["message"] and "speed" in r["option"]["message"]
    assert "relative" in r["relative"]["message"]
