"""Outcomes: retries, dead letters, woosync_retry, 4xx, 410, Retry-After, redirects, network errors."""
import time
from email.utils import formatdate

import pytest
from standardwebhooks.webhooks import Webhook

from conftest import fast_ini
from helpers import delivery, to_unix
from receiver import Response, wc_signature

# Every test here runs on both storage engines: a SQLite file and a MariaDB database.
pytestmark = pytest.mark.engines("sqlite", "mysql")

DISPATCH_FLUSH = """
    $id = woosync_dispatch('order.created', ['order_id' => 7], ['key' => 'order:7']);
    out(['id' => $id, 'flushed' => woosync_flush(%s), 'event' => woosync_event($id), 'status' => woosync_status()]);
"""


def statuses(event):
    return sorted((a["http_status"] for a in event["attempts"]), key=lambda s: (s is None, s or 0))


def test_retries_then_success_same_body_and_id(php, receiver, secret):
    receiver.script(Response(500, body=b"boom"), Response(503, body=b"busy"))
    ini = fast_ini(receiver.url, secret, delays="0.05,0.05,0.05")
    r = php.json(DISPATCH_FLUSH % 15, ini)
    assert r["flushed"] is True
    reqs = receiver.wait_for(3)
    time.sleep(0.3)
    reqs = receiver.requests
    assert len(reqs) == 3, [q.response.status for q in reqs]
    assert [q.response.status for q in reqs] == [500, 503, 200]
    assert len({q.body for q in reqs}) == 1, "body must be byte-identical on every attempt"
    assert {q.headers["webhook-id"] for q in reqs} == {r["id"]}
    dids = [q.headers["X-WC-Webhook-Delivery-ID"] for q in reqs]
    assert len(set(dids)) == 3, f"X-WC-Webhook-Delivery-ID must differ per attempt: {dids}"
    for q in reqs:
        Webhook(secret).verify(q.body, q.headers.lower_dict())
        assert q.headers["X-WC-Webhook-Signature"] == wc_signature(secret, q.body)
    ev = r["event"]
    d = delivery(ev)
    assert d["state"] == "delivered" and d["attempts"] == 3, d
    assert statuses(ev) == [200, 500, 503]
    failed = [a for a in ev["attempts"] if a["http_status"] == 500]
    assert failed[0]["response"] == "boom"
    st = r["status"]
    assert st["delivered"] == 1 and st["pending"] == 0 and st["dead"] == 0


def test_dead_after_last_delay_then_retry_and_replay(php, receiver):
    receiver.default = Response(500, body=b"down")
    ini = fast_ini(receiver.url, delays="0.05,0.05")  # 2 delays = 3 attempts
    r = php.json(DISPATCH_FLUSH % 15, ini)
    assert r["flushed"] is True, "a dead event is not pending: flush must return true"
    time.sleep(0.5)
    assert receiver.count() == 3, "N delays must give exactly N+1 attempts"
    d = delivery(r["event"])
    assert d["state"] == "dead" and d["attempts"] == 3, d
    st = r["status"]
    assert st["dead"] == 1 and st["pending"] == 0 and st["delivered"] == 0, st
    assert st["last_error"], st

    receiver.default = Response(200)
    eid = r["id"]
    r2 = php.json(f"""
        $ok = woosync_retry('{eid}');
        out(['retry' => $ok, 'flushed' => woosync_flush(10), 'event' => woosync_event('{eid}'), 'status' => woosync_status()]);
    """, ini)
    assert r2["retry"] is True
    assert r2["flushed"] is True
    reqs = receiver.wait_for(4)
    assert len(reqs) == 4
    assert reqs[3].headers["webhook-id"] == eid and reqs[3].body == reqs[0].body
    assert delivery(r2["event"])["state"] == "delivered"
    assert r2["status"]["delivered"] == 1 and r2["status"]["dead"] == 0
    # Attempts shown are the attempts logged: a retry adds to them, it does not start over at 1.
    assert delivery(r2["event"])["attempts"] == 4 == len(r2["event"]["attempts"])
    listed = php.json(f"out(woosync_events(['key' => 'order:7']));", ini)
    assert [(e["id"], e["attempts"]) for e in listed] == [(eid, 4)], listed

    # replay a delivered event: same id, same body, sent again
    r3 = php.json(f"out(['retry' => woosync_retry('{eid}'), 'flushed' => woosync_flush(10), 'event' => woosync_event('{eid}')]);", ini)
    assert r3["retry"] is True and r3["flushed"] is True
    reqs = receiver.wait_for(5)
    assert reqs[4].headers["webhook-id"] == eid and reqs[4].body == reqs[0].body
    assert delivery(r3["event"])["state"] == "delivered"
    assert delivery(r3["event"])["attempts"] == 5 == len(r3["event"]["attempts"])


def test_retry_unknown_id_is_not_true(php):
    r = php.json("out(attempt(fn() => woosync_retry('evt_01ARZ3NDEKTSV4RRFFQ69G5FAV')));")
    assert not (r["ok"] and r["value"] is True), r
    if not r["ok"]:
        assert r["class"] == "WooSyncException" and r["message"], r


@pytest.mark.parametrize("code", [400, 401, 404, 422])
def test_4xx_is_dead_after_one_attempt(php, receiver, code):
    receiver.default = Response(code, body=b"rejected")
    ini = fast_ini(receiver.url, delays="0.05,0.05,0.05")
    r = php.json(DISPATCH_FLUSH % 10, ini)
    assert r["flushed"] is True
    time.sleep(0.5)
    assert receiver.count() == 1, f"{code} must not be retried"
    d = delivery(r["event"])
    assert d["state"] == "dead" and d["attempts"] == 1, d
    assert [a["http_status"] for a in r["event"]["attempts"]] == [code]
    assert r["status"]["dead"] == 1 and r["status"]["pending"] == 0
    ep = [e for e in r["status"]["endpoints"] if e["name"] == "default"][0]
    assert ep["enabled"] is True, "only 410 disables the endpoint"


def test_410_disables_endpoint_until_url_changes(php, receiver):
    receiver.default = Response(410, body=b"gone")
    ini = fast_ini(receiver.url, delays="0.05,0.05")
    r = php.json(DISPATCH_FLUSH % 10, ini)
    time.sleep(0.3)
    assert receiver.count() == 1
    assert delivery(r["event"])["state"] == "dead"
    st = php.status(ini)
    ep = [e for e in st["endpoints"] if e["name"] == "default"][0]
    assert ep["enabled"] is False, ep
    assert ep["disabled_reason"], ep
    assert ep["disabled_at"], ep

    # later events stay pending while disabled; flush says so
    r2 = php.json("""
        $id = woosync_dispatch('order.created', ['n' => 2]);
        $flushed = woosync_flush(1.0);
        // The sender routes it (on a shared database, a sender whose predecessor could not let
        // its lease go within module shutdown's bounded wait first waits for the lease: ~4 s).
        $until = microtime(true) + 15;
        do { $ev = woosync_event($id); } while (!$ev['deliveries'] && microtime(true) < $until && usleep(50000) === null);
        out(['id' => $id, 'flushed' => $flushed, 'status' => woosync_status(), 'event' => $ev]);
    """, ini)
    assert r2["flushed"] is False
    assert r2["status"]["pending"] >= 1
    assert delivery(r2["event"])["state"] in ("queued", "pending"), r2["event"]
    time.sleep(0.3)
    assert receiver.count() == 1, "nothing may be sent to a disabled endpoint"

    # a new URL re-enables the endpoint and the pending event goes out
    receiver.default = Response(200)
    ini2 = dict(ini, **{"woosync.endpoint": receiver.url_for("/hook-v2")})
    r3 = php.json("out(['flushed' => woosync_flush(10), 'status' => woosync_status()]);", ini2)
    assert r3["flushed"] is True
    reqs = receiver.wait_for(2)
    assert reqs[1].path == "/hook-v2" and reqs[1].event_id == r2["id"]
    ep = [e for e in r3["status"]["endpoints"] if e["name"] == "default"][0]
    assert ep["enabled"] is True and ep["url"] == receiver.url_for("/hook-v2"), ep


def _retry_after_date(_req):
    return formatdate(time.time() + 3, usegmt=True)


@pytest.mark.parametrize("code,value,min_gap", [
    (429, "1", 0.9),
    (429, "0", 0.9),      # clamped up to 1 s
    (503, "2", 1.9),
    (429, "date", 1.8),   # HTTP date ~3 s ahead (whole seconds) -> more than 2 s
])
def test_retry_after_is_honoured(php, receiver, code, value, min_gap):
    first = {"done": False}

    def responder(req):
        if first["done"]:
            return None
        first["done"] = True
        v = _retry_after_date(req) if value == "date" else value
        return Response(code, headers={"Retry-After": v}, body=b"slow down")

    receiver.responder = responder
    ini = fast_ini(receiver.url, delays="0.05,0.05,0.05")
    r = php.json(DISPATCH_FLUSH % 15, ini)
    assert r["flushed"] is True
    reqs = receiver.wait_for(2)
    gap = reqs[1].time - reqs[0].time
    assert gap >= min_gap, f"Retry-After: {value} ignored: second attempt {gap:.3f}s after the first"
    assert gap < 10
    assert delivery(r["event"])["state"] == "delivered"


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses(php, receiver, code):
    receiver.script(Response(code, body=b"try again"))
    ini = fast_ini(receiver.url, delays="0.05,0.05")
    r = php.json(DISPATCH_FLUSH % 10, ini)
    assert r["flushed"] is True
    reqs = receiver.wait_for(2)
    time.sleep(0.2)
    assert receiver.count() == 2
    assert reqs[0].body == reqs[1].body
    d = delivery(r["event"])
    assert d["state"] == "delivered" and d["attempts"] == 2
    assert statuses(r["event"]) == sorted([code, 200])


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_redirect_not_followed_and_retried(php, receiver, code):
    receiver.script(Response(code, headers={"Location": receiver.url_for("/moved")}, body=b""))
    ini = fast_ini(receiver.url, delays="0.05,0.05")
    r = php.json(DISPATCH_FLUSH % 10, ini)
    assert r["flushed"] is True
    reqs = receiver.wait_for(2)
    time.sleep(0.2)
    reqs = receiver.requests
    assert [q.path for q in reqs] == ["/hook", "/hook"], "the redirect must not be followed"
    assert statuses(r["event"]) == sorted([code, 200])
    assert delivery(r["event"])["state"] == "delivered"


def test_dropped_connection_is_retried(php, receiver):
    receiver.script(Response(drop=True))
    ini = fast_ini(receiver.url, delays="0.05,0.05")
    r = php.json(DISPATCH_FLUSH % 10, ini)
    assert r["flushed"] is True
    reqs = receiver.wait_for(2)
    assert reqs[0].body == reqs[1].body
    ev = r["event"]
    assert delivery(ev)["state"] == "delivered"
    errs = [a for a in ev["attempts"] if a["http_status"] is None]
    assert len(errs) == 1 and errs[0]["error_class"] and errs[0]["error"], ev["attempts"]


def test_timeout_is_retried(php, receiver):
    receiver.script(Response(200, delay=4))
    ini = fast_ini(receiver.url, delays="0.05,0.05", timeout=1)
    r = php.json(DISPATCH_FLUSH % 15, ini)
    assert r["flushed"] is True
    reqs = receiver.wait_for(2)
    gap = reqs[1].time - reqs[0].time
    assert 0.8 <= gap < 3.5, f"second attempt should follow the 1 s timeout, gap {gap:.2f}s"
    ev = r["event"]
    assert delivery(ev)["state"] == "delivered"
    errs = [a for a in ev["attempts"] if a["http_status"] is None]
    assert len(errs) == 1 and errs[0]["error_class"], ev["attempts"]


def test_connection_refused_is_retried(php, receiver):
    from conftest import closed_port
    ini = fast_ini(f"http://127.0.0.1:{closed_port()}/hook", delays="0.05,0.05")
    r = php.json(DISPATCH_FLUSH % 10, ini)
    assert r["flushed"] is True
    d = delivery(r["event"])
    assert d["state"] == "dead" and d["attempts"] == 3, d
    assert all(a["http_status"] is None and a["error_class"] for a in r["event"]["attempts"])
    assert r["status"]["last_error"]


@pytest.mark.parametrize("value", ["999999", "date+3h"])
def test_retry_after_is_clamped_to_one_hour(php, receiver, value):
    def responder(req):
        v = formatdate(time.time() + 3 * 3600, usegmt=True) if value == "date+3h" else value
        return Response(503, headers={"Retry-After": v})

    receiver.responder = responder
    ini = fast_ini(receiver.url, delays="0.05,0.05", shutdown_grace=0.2)
    r = php.json("""
        $id = woosync_dispatch('order.created', ['n' => 1]);
        $ok = woosync_flush(1.0);
        out(['flushed' => $ok, 'event' => woosync_event($id), 'now' => microtime(true)]);
    """, ini, timeout=30)
    assert r["flushed"] is False
    assert receiver.count() == 1
    d = delivery(r["event"])
    assert d["state"] in ("pending", "queued"), d
    wait = to_unix(d["next_attempt_at"]) - r["now"]
    assert 3500 <= wait <= 3605, f"Retry-After: {value} should be clamped to 1 h, next attempt in {wait:.0f}s"
