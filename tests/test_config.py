"""Settings at work: ini_set at run time, concurrency, retry delays with jitter, attempt timestamps."""
import time

from standardwebhooks.webhooks import Webhook

from conftest import fast_ini, make_secret
from receiver import Response, wc_signature


def test_ini_set_changes_endpoint_secret_source_and_database(php, receiver, tmp_path):
    s1, s2 = make_secret(), make_secret()
    other_db = tmp_path / "db" / "other.sqlite"
    ini = fast_ini(receiver.url_for("/first"), s1)
    r = php.json(f"""
        $a = woosync_dispatch('order.created', ['n' => 1]);
        $f1 = woosync_flush(10);
        ini_set('woosync.endpoint', '{receiver.url_for("/second")}');
        ini_set('woosync.secret', '{s2}');
        ini_set('woosync.source', 'https://other.example.test');
        $b = woosync_dispatch('order.created', ['n' => 2]);
        $f2 = woosync_flush(10);
        $st_main = woosync_status();
        ini_set('woosync.database', '{other_db}');
        $c = woosync_dispatch('order.created', ['n' => 3]);
        $f3 = woosync_flush(10);
        $st_other = woosync_status();
        out(['ids' => [$a, $b, $c], 'flushed' => [$f1, $f2, $f3], 'main' => $st_main, 'other' => $st_other,
             'c_in_other' => woosync_event($c) !== null]);
    """, ini)
    assert r["flushed"] == [True, True, True]
    a, b, c = r["ids"]
    reqs = receiver.wait_for(3)
    by_id = {q.event_id: q for q in reqs}
    assert by_id[a].path == "/first" and by_id[b].path == "/second" and by_id[c].path == "/second"
    Webhook(s1).verify(by_id[a].body, by_id[a].headers.lower_dict())
    Webhook(s2).verify(by_id[b].body, by_id[b].headers.lower_dict())
    assert by_id[b].headers["X-WC-Webhook-Signature"] == wc_signature(s2, by_id[b].body)
    assert by_id[b].headers["X-WC-Webhook-Source"] == "https://other.example.test"
    assert r["main"]["database"] == str(php.outbox)
    assert r["other"]["database"] == str(other_db)
    assert other_db.is_file()
    assert r["c_in_other"] is True
    assert r["other"]["delivered"] == 1, r["other"]
    main_after = php.status(ini)
    assert main_after["delivered"] == 2, main_after


def test_concurrency_limits_parallel_requests(php, receiver):
    receiver.default = Response(200, delay=0.4)
    ini = fast_ini(receiver.url, concurrency=2, timeout=10)
    r = php.json("""
        for ($i = 0; $i < 8; $i++) woosync_dispatch('order.created', ['i' => $i]);
        out(woosync_flush(30));
    """, ini, timeout=60)
    assert r is True
    receiver.wait_for(8)
    m = receiver.max_concurrent()
    assert m <= 2, f"woosync.concurrency=2 but {m} requests were open at once"
    assert m == 2, "events without key should be sent in parallel (up to woosync.concurrency)"


def test_retry_delays_are_honoured_with_jitter(php, receiver):
    receiver.default = Response(500)
    ini = fast_ini(receiver.url, delays="0.5,0.5,0.5,0.5")
    r = php.json("""
        $id = woosync_dispatch('order.created', ['n' => 1]);
        out(['flushed' => woosync_flush(20), 'event' => woosync_event($id)]);
    """, ini, timeout=40)
    assert r["flushed"] is True
    reqs = receiver.wait_for(5)
    time.sleep(0.8)
    assert receiver.count() == 5, "4 delays = 5 attempts"
    gaps = [b.time - a.time for a, b in zip(reqs, reqs[1:])]
    for g in gaps:
        assert 0.35 <= g <= 3.0, f"delay 0.5 s +-20% jitter, got gaps {gaps}"
    assert max(gaps) - min(gaps) > 0.002, f"no jitter at all? gaps {gaps}"
    assert r["event"]["deliveries"][0]["state"] == "dead"


def test_webhook_timestamp_is_the_attempt_time(php, receiver, secret):
    first = {"done": False}

    def responder(req):
        if not first["done"]:
            first["done"] = True
            return Response(503, headers={"Retry-After": "2"})
        return None

    receiver.responder = responder
    ini = fast_ini(receiver.url, secret, delays="0.05,0.05")
    r = php.json("out([woosync_dispatch('order.created', []), woosync_flush(15)]);", ini, timeout=30)
    assert r[1] is True
    q1, q2 = receiver.wait_for(2)
    t1, t2 = int(q1.headers["webhook-timestamp"]), int(q2.headers["webhook-timestamp"])
    assert t2 >= t1 + 1, f"webhook-timestamp should be the time of each attempt: {t1}, {t2}"
    assert q1.body == q2.body
    for q in (q1, q2):
        Webhook(secret).verify(q.body, q.headers.lower_dict())
