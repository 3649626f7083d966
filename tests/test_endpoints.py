"""Endpoints stored in the outbox: fan-out, topic filters, unrouted events, circuit breaker, rate
limit, secret rotation, encryption at rest, coalescing, retention (purge) and retry_dead."""
import base64
import json
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook

from chaos_support import endpoint_info, first_successes, is_success, order_violations, poll, start_sender
from conftest import fast_ini, make_secret, php_literal
from helpers import to_unix
from receiver import Response, closed_port, wc_signature

# Every test here runs on both storage engines: a SQLite file and a MariaDB database.
pytestmark = pytest.mark.engines("sqlite", "mysql")

KEY_HEX = "8f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"


def save(name: str, cfg: dict) -> str:
    """PHP statement saving an endpoint (config passed through JSON, binary safe)."""
    return f"woosync_endpoint_save({php_literal(name)}, json_decode({php_literal(json.dumps(cfg))}, true));\n"


def by_path(receiver, path: str) -> list:
    return [q for q in receiver.requests if q.path == path]


# ---- fan-out, filters, unrouted ---------------------------------------------------------------

def test_fan_out_topic_filters_same_event_id_and_endpoints_option(php, receiver):
    setup = (save("orders", {"url": receiver.url_for("/orders"), "topics": ["order.*"], "secret": ""})
             + save("catalog", {"url": receiver.url_for("/catalog"), "topics": "product.*,order.created",
                                "secret": ""})
             + save("off", {"url": receiver.url_for("/off"), "topics": [], "enabled": False, "secret": ""}))
    r = php.json(setup + """
        $ids = [];
        $ids['both'] = woosync_dispatch('order.created', ['n' => 1]);
        $ids['orders_only'] = woosync_dispatch('order.updated', ['n' => 2]);
        $ids['catalog_only'] = woosync_dispatch('product.updated', ['n' => 3]);
        $ids['narrowed'] = woosync_dispatch('order.created', ['n' => 4], ['endpoints' => ['catalog']]);
        $ids['nobody'] = woosync_dispatch('customer.created', ['n' => 5]);
        $ok = woosync_flush(15);
        $ev = [];
        foreach ($ids as $k => $id) $ev[$k] = woosync_event($id);
        out(['ids' => $ids, 'flushed' => $ok, 'events' => $ev, 'status' => woosync_status(),
             'unrouted' => woosync_events(['status' => 'unrouted'])]);
    """, timeout=40)
    assert r["flushed"] is True, r["status"]
    ids = r["ids"]
    receiver.wait_for(5, timeout=10)
    time.sleep(0.3)
    got = {}
    for q in receiver.requests:
        got.setdefault(q.event_id, []).append(q.path)
    assert sorted(got[ids["both"]]) == ["/catalog", "/orders"], got
    assert got[ids["orders_only"]] == ["/orders"], got
    assert got[ids["catalog_only"]] == ["/catalog"], got
    assert got[ids["narrowed"]] == ["/catalog"], "the `endpoints` option did not narrow the fan-out"
    assert ids["nobody"] not in got
    assert not by_path(receiver, "/off"), "a disabled endpoint received events"
    assert receiver.count() == 5, [(q.path, q.event_id) for q in receiver.requests]
    # same event id (envelope id and webhook-id) at both endpoints, one delivery each
    both = [q for q in receiver.requests if q.event_id == ids["both"]]
    assert {q.headers["webhook-id"] for q in both} == {ids["both"]}
    assert {q.json()["id"] for q in both} == {ids["both"]}
    assert len({q.headers.get("x-wc-webhook-delivery-id") for q in both}) == 2
    ev = r["events"]["both"]
    assert sorted(d["endpoint"] for d in ev["deliveries"]) == ["catalog", "orders"]
    assert all(d["state"] == "delivered" for d in ev["deliveries"])
    assert [d["endpoint"] for d in r["events"]["narrowed"]["deliveries"]] == ["catalog"]
    # status counts are per delivery; the unmatched event is unrouted, not pending
    st = r["status"]
    assert st["delivered"] == 5 and st["pending"] == 0 and st["unrouted"] == 1 and st["dead"] == 0, st
    assert endpoint_info(st, "orders")["delivered"] == 2
    assert endpoint_info(st, "catalog")["delivered"] == 3
    assert endpoint_info(st, "off")["health"] == "off"
    assert [e["id"] for e in r["unrouted"]] == [ids["nobody"]]
    assert r["events"]["nobody"]["unrouted"] is True and r["events"]["nobody"]["deliveries"] == []


def test_unrouted_event_is_counted_and_routable_later(php, receiver):
    r = php.json(save("orders", {"url": receiver.url_for("/orders"), "topics": ["order.*"], "secret": ""}) + """
        $id = woosync_dispatch('customer.created', ['c' => 1]);
        $t = microtime(true);
        $ok = woosync_flush(5);
        out(['id' => $id, 'flushed' => $ok, 'flush_seconds' => microtime(true) - $t, 'status' => woosync_status()]);
    """)
    st = r["status"]
    assert r["flushed"] is True and r["flush_seconds"] < 2, r
    assert st["unrouted"] == 1 and st["pending"] == 0 and st["delivered"] == 0, st
    assert receiver.count() == 0
    r2 = php.json(save("crm", {"url": receiver.url_for("/crm"), "topics": ["customer.*"], "secret": ""}) + f"""
        $again = woosync_retry({php_literal(r["id"])});
        $ok = woosync_flush(10);
        out(['retried' => $again, 'flushed' => $ok, 'status' => woosync_status(),
             'event' => woosync_event({php_literal(r["id"])})]);
    """)
    assert r2["retried"] is True and r2["flushed"] is True, r2
    [q] = receiver.wait_for(1)
    assert q.path == "/crm" and q.event_id == r["id"]
    assert r2["status"]["unrouted"] == 0 and r2["status"]["delivered"] == 1, r2["status"]
    assert [d["endpoint"] for d in r2["event"]["deliveries"]] == ["crm"]


# ---- circuit breaker ---------------------------------------------------------------------------

def test_circuit_breaker_pauses_stops_attempts_and_recovers(php, receiver):
    """503s: after 5 consecutive failures the endpoint is paused. While paused no attempt reaches
    the CRM; after each pause (it follows the endpoint's retry schedule, at least 1 s) exactly one
    probe goes out; the (short) retry schedule is not burned. Once the CRM is healthy the next
    probe succeeds, the breaker closes and everything is delivered."""
    healthy = threading.Event()

    def responder(req):
        return Response(200) if healthy.is_set() else Response(503, body=b"down")

    receiver.responder = responder
    sender, first = start_sender(php, lifetime=120)
    assert first["status"]["worker"] == "sender", first
    # six retries 0.2 s apart: without a breaker every event would be dead within ~2 s
    cfg = {"url": receiver.url_for("/crm"), "secret": "", "retry_delays": "0.2,0.2,0.2,0.2,0.2,0.2",
           "timeout": 5}
    php.json(save("crm", cfg) + """
        $ids = [];
        for ($i = 0; $i < 8; $i++) $ids[] = woosync_dispatch('order.created', ['i' => $i]);
        out($ids);
    """)

    def crm():
        return endpoint_info(php.json("out(woosync_endpoints());"), "crm")

    ep = poll(lambda: (lambda e: e if e["health"] == "paused" else (False, e))(crm()), 20,
              what="endpoint crm to become paused")
    assert ep["breaker_open_until"] and ep["consecutive_failures"] >= 5, ep
    assert endpoint_info(php.status(), "crm")["health"] == "paused", "woosync_status() does not show the pause"
    burst = receiver.count()

    # watch the open breaker for 10 s: (wall time of the sample, breaker_open_until, health)
    samples = []
    t_end = time.time() + 10
    while time.time() < t_end:
        e = crm()
        t = time.time()  # the value was read before this moment
        samples.append((t, to_unix(e["breaker_open_until"]) if e["breaker_open_until"] else None, e["health"],
                        e["consecutive_failures"]))
        time.sleep(0.15)
    st = php.json("out(['s' => woosync_status(), 'e' => woosync_events(['endpoint' => 'crm', 'limit' => 100])]);")
    reqs = receiver.requests
    t0 = reqs[0].wall
    later = reqs[burst:]
    timeline = (f"requests at {[round(q.wall - t0, 2) for q in reqs]}\n"
                f"breaker_open_until seen: {sorted({round(u - t0, 2) for _, u, _, _ in samples if u})}\n"
                f"health seen: {sorted({h for _, _, h, _ in samples})}, consecutive_failures up to "
                f"{max(c for *_, c in samples)}")
    # 1. nothing reaches the CRM while the breaker is open
    inside = [round(q.wall - t0, 2) for q in later for (t, u, h, _) in samples
              if u is not None and t < q.wall < u - 0.05]
    assert not inside, f"attempts reached the CRM while the breaker was open: {sorted(set(inside))}\n{timeline}"
    # 2. half-open: one probe at a time (probes are separated by the pause, never concurrent)
    clusters = []
    for q in later:
        if clusters and q.wall - clusters[-1][-1].wall < 0.3:
            clusters[-1].append(q)
        else:
            clusters.append([q])
    assert all(len(c) == 1 for c in clusters), (
        f"probes came {[len(c) for c in clusters]} at a time, expected one\n{timeline}")
    # 3. the pause follows the endpoint's retry schedule, at least 1 s (README): with 0.2 s delays
    #    the breaker probes about once a second -- not more often, and not held back for longer
    assert 3 <= len(clusters) <= 12, f"{len(clusters)} probes in 10 s with a 1 s pause\n{timeline}"
    # 4. the retry schedule is not burned while paused
    assert st["s"]["dead"] == 0 and st["s"]["pending"] == 8, (
        f"events for a paused endpoint were burned through the retry schedule: {st['s']}\n{timeline}")
    assert sum(e["attempts"] for e in st["e"]) == len(reqs), (st["e"], len(reqs))

    healthy.set()
    n_failed = receiver.count()
    done = poll(lambda: (lambda s: s if s["delivered"] == 8 else (False, s))(php.status()), 75,
                interval=0.5, what="all 8 events delivered after the pause")
    assert done["pending"] == 0 and done["dead"] == 0, done
    after = receiver.requests[n_failed:]
    assert after and after[0].response.status == 200
    # the successful probe goes alone; the rest follow once it was answered
    if len(after) > 1:
        assert after[1].time >= after[0].answered - 0.01, "breaker probed with more than one delivery at a time"
    ep = crm()
    assert ep["health"] == "healthy" and ep["breaker_open_until"] is None and ep["consecutive_failures"] == 0, ep
    print(f"\n[breaker] {burst} failures opened it, {len(later)} failed probe(s) in 10 s, "
          f"{len(after)} attempts after recovery\n{timeline}")
    sender.kill()


# ---- rate limit --------------------------------------------------------------------------------

def test_rate_limit_is_per_outbox_across_processes(php, receiver):
    sender, _ = start_sender(php, lifetime=60)
    php.json(save("crm", {"url": receiver.url_for("/crm"), "secret": "", "rate_limit": 5}) + "out(true);")
    code = """
        $ids = [];
        for ($i = 0; $i < 10; $i++) $ids[] = woosync_dispatch('order.created', ['i' => $i]);
        out(['ids' => $ids, 'flushed' => woosync_flush(30)]);
    """
    a = php.popen(code)
    b = php.popen(code)
    outs = []
    for p in (a, b):
        o, e = p.communicate(timeout=45)
        assert p.returncode == 0, e
        outs.append(json.loads(o.strip().splitlines()[-1]))
    assert all(o["flushed"] for o in outs), outs
    reqs = receiver.wait_for(20, timeout=10)
    assert len(reqs) == 20
    spread = reqs[-1].time - reqs[0].time
    first_second = sum(1 for q in reqs if q.time - reqs[0].time < 1.0)
    print(f"\n[rate-limit] 20 events at 5/s from two processes: spread {spread:.2f}s, "
          f"{first_second} in the first second")
    assert spread >= 2.5, f"20 events with rate_limit 5/s arrived within {spread:.2f}s"
    assert spread < 10, spread
    sender.kill()


# ---- secrets -----------------------------------------------------------------------------------

def _signatures(req) -> list:
    return [s for s in req.headers["webhook-signature"].split(" ") if s]


def test_secret_rotation_two_signatures_both_verify(php, receiver):
    old, new = make_secret(), make_secret()
    r = php.json(save("crm", {"url": receiver.url_for("/crm"), "secret": old})
                 + save("crm", {"url": receiver.url_for("/crm"), "secret": new})
                 + save("shop", {"url": receiver.url_for("/wc"), "secret": old, "format": "woocommerce"})
                 + save("shop", {"url": receiver.url_for("/wc"), "secret": new, "format": "woocommerce"})
                 + """
        $id = woosync_dispatch('order.created', ['total' => '12.50']);
        out(['id' => $id, 'flushed' => woosync_flush(10), 'endpoints' => woosync_endpoints()]);
    """)
    assert r["flushed"] is True
    ep = endpoint_info(r["endpoints"], "crm")
    assert ep["rotating_until"], ep
    left = to_unix(ep["rotating_until"]) - time.time()
    assert 23 * 3600 < left <= 24 * 3600 + 60, ep["rotating_until"]
    assert new not in json.dumps(r["endpoints"]) and old not in json.dumps(r["endpoints"])
    receiver.wait_for(2)
    for path in ("/crm", "/wc"):
        [q] = by_path(receiver, path)
        sigs = _signatures(q)
        assert len(sigs) == 2 and all(s.startswith("v1,") for s in sigs), q.headers["webhook-signature"]
        headers = q.headers.lower_dict()
        # each secret alone verifies (standardwebhooks accepts if any signature matches)...
        Webhook(old).verify(q.body, headers)
        Webhook(new).verify(q.body, headers)
        # ... and the two signatures are the two different secrets, one each
        for s in (old, new):
            one = Webhook(s)
            matching = [sig for sig in sigs if one.sign(headers["webhook-id"],
                                                         _ts(headers["webhook-timestamp"]), q.body.decode()) == sig]
            assert len(matching) == 1, (path, s[:10], sigs)
        # WooCommerce's signature uses the new secret only
        assert q.headers["x-wc-webhook-signature"] == wc_signature(new, q.body), path
        assert Webhook(make_secret()).sign(headers["webhook-id"], _ts(headers["webhook-timestamp"]),
                                           q.body.decode()) not in sigs
    assert by_path(receiver, "/wc")[0].body == b'{"total":"12.50"}'


def _ts(s: str):
    from datetime import datetime, timezone
    return datetime.fromtimestamp(int(s), tz=timezone.utc)


def _file_blobs(outbox) -> dict:
    out = {}
    for p in outbox.parent.iterdir():
        if p.name.startswith(outbox.name):
            out[p.name] = p.read_bytes()
    return out


def _mysql_blobs(request, url: str) -> dict:
    """Every table of the outbox, dumped (binary columns in hex)."""
    import subprocess
    db = request.getfixturevalue("mariadb")
    prefix = url.rsplit("prefix=", 1)[1]
    tables = [t for t in db.sql("SHOW TABLES", "shop").split() if t.startswith(prefix + "woosync_")]
    assert tables, f"no {prefix}woosync_* tables"
    p = subprocess.run(["mariadb-dump", f"--socket={db.sock}", "-uroot", "--hex-blob", "shop", *tables],
                       capture_output=True, timeout=60, check=True)
    return {"dump of " + " ".join(tables): p.stdout}


def test_secrets_encrypted_at_rest_and_key_required_by_sender(php, receiver, engine, request):
    secret = make_secret()
    raw = base64.b64decode(secret[len("whsec_"):])
    keyed = {"woosync.key": KEY_HEX}
    r = php.json(save("crm", {"url": receiver.url_for("/crm"), "secret": secret}) + """
        $id = woosync_dispatch('order.created', ['n' => 1]);
        out(['id' => $id, 'flushed' => woosync_flush(10), 'status' => woosync_status(),
             'endpoints' => woosync_endpoints()]);
    """, keyed)
    assert r["flushed"] is True, r["status"]
    assert r["status"]["secrets_encrypted"] is True, r["status"]
    ep = endpoint_info(r["endpoints"], "crm")
    assert ep["secret_encrypted"] is True, ep
    assert secret not in json.dumps(r["endpoints"]) and secret not in json.dumps(r["status"])
    [q] = receiver.wait_for(1)
    Webhook(secret).verify(q.body, q.headers.lower_dict())
    assert q.headers["x-wc-webhook-signature"] == wc_signature(secret, q.body)

    # the outbox files (db, WAL, shm) never contain the secret, its base64 body or its raw bytes
    if engine == "mysql":
        blobs = _mysql_blobs(request, php.outbox)
    else:
        blobs = _file_blobs(php.outbox)
        assert any(n.endswith(".sqlite") for n in blobs), list(blobs)
    for name, data in blobs.items():
        for needle in (secret.encode(), secret[len("whsec_"):].encode(), raw, raw.hex().upper().encode()):
            assert needle not in data, f"{name} contains the endpoint secret in the clear"

    # a sender without the key must not send unsigned / wrongly signed, and must say why
    r2 = php.json("""
        $id = woosync_dispatch('order.created', ['n' => 2]);
        usleep(700000);
        out(['id' => $id, 'status' => woosync_status(), 'event' => woosync_event($id)]);
    """, {"woosync.shutdown_grace": 0})
    st = r2["status"]
    assert st["worker"] == "sender", st  # this process did hold the outbox
    problem = json.dumps([st.get("worker_error"), st.get("last_error"), endpoint_info(st, "crm")])
    assert "woosync.key" in problem, f"status does not say the key is missing: {problem}"
    assert st["pending"] == 1 and st["dead"] == 0, st
    assert receiver.count() == 1, "an event was sent although the sender could not decrypt the secret"

    r3 = php.json("out(['flushed' => woosync_flush(15), 'status' => woosync_status()]);", keyed, timeout=30)
    assert r3["flushed"] is True, r3["status"]
    reqs = receiver.wait_for(2)
    q2 = [q for q in reqs if q.event_id == r2["id"]]
    assert len(q2) == 1, [q.event_id for q in reqs]
    Webhook(secret).verify(q2[0].body, q2[0].headers.lower_dict())
    assert r3["status"]["worker_error"] is None, r3["status"]


# ---- coalescing --------------------------------------------------------------------------------

def test_coalescing_while_receiver_down_newest_state_wins(php, receiver):
    receiver.stop()  # connection refused
    ini = fast_ini(receiver.url, delays="2,2,2,2,2,2", shutdown_grace=0)
    r = php.json("""
        $ids = [];
        for ($i = 0; $i <= 9; $i++) {
            $ids[] = woosync_dispatch('product.stock_updated', ['sku' => 42, 'stock' => 100 - $i],
                                      ['key' => 'product:42', 'coalesce' => true]);
            usleep(20000);
        }
        $plain = [];
        for ($i = 0; $i < 3; $i++) $plain[] = woosync_dispatch('product.stock_updated', ['sku' => 43, 'stock' => $i], ['key' => 'product:43']);
        out(['ids' => $ids, 'plain' => $plain, 'status' => woosync_status()]);
    """, ini)
    assert r["status"]["superseded"] > 0, r["status"]
    receiver.start()
    r2 = php.json("out(['flushed' => woosync_flush(20), 'status' => woosync_status(), "
                  "'first' => woosync_event(" + php_literal(r["ids"][0]) + ")]);", ini, timeout=40)
    st = r2["status"]
    assert r2["flushed"] is True, st
    time.sleep(0.3)
    ok = first_successes(receiver.requests)
    arrived42 = [q for q in sorted(ok.values(), key=lambda q: q.index) if q.json()["key"] == "product:42"]
    arrived43 = [q for q in ok.values() if q.json()["key"] == "product:43"]
    print(f"\n[coalesce] 10 updates -> {len(arrived42)} delivered, superseded={st['superseded']}")
    assert 1 <= len(arrived42) <= 3, f"{len(arrived42)} of 10 coalesced updates were sent"
    last = arrived42[-1].json()
    assert last["id"] == r["ids"][-1] and last["data"]["stock"] == 91, last
    assert len(arrived43) == 3, "events without coalesce must not be superseded"
    assert st["superseded"] >= 7 and st["superseded"] + len(arrived42) == 10, st
    assert st["delivered"] == len(arrived42) + 3 and st["pending"] == 0 and st["dead"] == 0, st
    assert r2["first"]["deliveries"][0]["state"] == "superseded", r2["first"]
    violations, _ = order_violations(receiver.requests)
    assert not violations, violations
    # a superseded event was never put on the wire
    sent_ids = {q.event_id for q in receiver.requests}
    superseded = [i for i in r["ids"] if i not in sent_ids]
    assert len(superseded) >= 7


# ---- retention and retry_dead ------------------------------------------------------------------

def test_purge_removes_finished_events_and_counts_drop(php, receiver):
    def responder(req):
        return Response(400, body=b"rejected") if req.json()["data"].get("bad") else None

    receiver.responder = responder
    down = f"http://127.0.0.1:{closed_port()}/down"
    setup = (save("crm", {"url": receiver.url_for("/crm"), "topics": ["order.*"], "secret": "",
                          "retry_delays": "0.05"})
             + save("down", {"url": down, "topics": ["stock.*"], "secret": "", "retry_delays": "600"}))
    r = php.json(setup + """
        $ids = [];
        for ($i = 0; $i < 5; $i++) $ids[] = woosync_dispatch('order.created', ['i' => $i]);
        $bad = woosync_dispatch('order.created', ['bad' => true]);
        $unrouted = woosync_dispatch('customer.created', ['c' => 1]);
        // dispatched last on purpose: the outbox always keeps its newest event (rowid anchor)
        $pending = woosync_dispatch('stock.changed', ['sku' => 1]);
        $t = microtime(true);
        while (microtime(true) - $t < 10) {
            $s = woosync_status();
            if ($s['delivered'] == 5 && $s['dead'] == 1) break;
            usleep(50000);
        }
        $before = woosync_status();
        $none = woosync_purge(1);
        $mid = woosync_status();
        $n = woosync_purge(0);
        out(['ids' => $ids, 'bad' => $bad, 'pending' => $pending, 'unrouted' => $unrouted,
             'before' => $before, 'purged_1day' => $none, 'mid' => $mid, 'purged' => $n,
             'after' => woosync_status(), 'gone' => woosync_event($ids[0]), 'gone_dead' => woosync_event($bad),
             'kept' => woosync_event($pending), 'events' => woosync_events(['limit' => 100])]);
    """, timeout=30)
    b, a = r["before"], r["after"]
    assert b["delivered"] == 5 and b["dead"] == 1 and b["pending"] == 1 and b["unrouted"] == 1, b
    assert r["purged_1day"] == 0, "woosync_purge(1) deleted events that are seconds old"
    assert r["mid"]["delivered"] == 5 and r["mid"]["dead"] == 1, r["mid"]
    assert r["purged"] == 7, r["purged"]
    assert a["delivered"] == 0 and a["dead"] == 0 and a["unrouted"] == 0 and a["superseded"] == 0, a
    assert a["pending"] == 1, "a pending event was purged"
    assert r["gone"] is None and r["gone_dead"] is None
    assert r["kept"] is not None and r["kept"]["deliveries"][0]["state"] == "pending"
    assert [e["id"] for e in r["events"]] == [r["pending"]]
    assert endpoint_info(a, "crm")["delivered"] == 0 and endpoint_info(a, "crm")["dead"] == 0


def test_retry_dead_per_endpoint_and_all(php, receiver):
    accept = threading.Event()

    def responder(req):
        return Response(200) if accept.is_set() else Response(400, body=b"no")

    receiver.responder = responder
    setup = (save("crm", {"url": receiver.url_for("/crm"), "secret": "", "retry_delays": "0.05"})
             + save("erp", {"url": receiver.url_for("/erp"), "secret": "", "retry_delays": "0.05"}))
    r = php.json(setup + """
        $ids = [];
        for ($i = 0; $i < 3; $i++) $ids[] = woosync_dispatch('order.created', ['i' => $i], ['key' => 'order:1']);
        $ok = woosync_flush(10);
        out(['ids' => $ids, 'flushed' => $ok, 'status' => woosync_status(), 'none' => woosync_retry_dead('nosuch')]);
    """, timeout=30)
    st = r["status"]
    assert r["flushed"] is True and st["dead"] == 6 and st["pending"] == 0, st
    assert r["none"] == 0
    n_before = receiver.count()
    accept.set()
    r2 = php.json("""
        $n = woosync_retry_dead('crm');
        $ok = woosync_flush(10);
        $mid = woosync_status();
        $m = woosync_retry_dead();
        $ok2 = woosync_flush(10);
        out(['crm' => $n, 'flushed' => $ok, 'mid' => $mid, 'all' => $m, 'flushed2' => $ok2,
             'status' => woosync_status(), 'again' => woosync_retry_dead()]);
    """, timeout=40)
    assert r2["crm"] == 3, r2
    assert r2["flushed"] is True
    assert endpoint_info(r2["mid"], "crm")["delivered"] == 3 and endpoint_info(r2["mid"], "erp")["dead"] == 3, r2["mid"]
    assert r2["all"] == 3 and r2["flushed2"] is True, r2
    assert r2["status"]["delivered"] == 6 and r2["status"]["dead"] == 0, r2["status"]
    assert r2["again"] == 0
    after = receiver.requests[n_before:]
    ok = [q for q in after if is_success(q)]
    assert sorted((q.path, q.event_id) for q in ok) == sorted(
        [("/crm", i) for i in r["ids"]] + [("/erp", i) for i in r["ids"]])
    # requeued in order: per key and endpoint, sequence order is kept
    for path in ("/crm", "/erp"):
        seqs = [q.json()["sequence"] for q in ok if q.path == path]
        assert seqs == sorted(seqs), (path, seqs)
