"""Signed delivery, headers, envelope and JSON encoding."""
import json
import re
import socket
import struct
import time
import types

from standardwebhooks.webhooks import Webhook

from conftest import fast_ini
from receiver import Response, wc_signature
from helpers import EVENT_ID_RE, Obj, delivery, loads_ordered, tcp_listener, to_unix, ulid_ms
import pytest

# Every test here runs on both storage engines: a SQLite file and a MariaDB database.
pytestmark = pytest.mark.engines("sqlite", "mysql")


def test_signed_delivery_verifies_with_standardwebhooks(php, receiver, secret):
    ini = fast_ini(receiver.url, secret)
    t0 = time.time()
    r = php.json("""
        $id = woosync_dispatch('order.status_changed', ['order_id' => 42, 'status' => 'processing'], ['key' => 'order:42']);
        out(['id' => $id, 'flushed' => woosync_flush(10), 'version' => woosync_status()['version']]);
    """, ini)
    t1 = time.time()
    assert r["flushed"] is True
    eid = r["id"]
    assert EVENT_ID_RE.fullmatch(eid), eid
    assert abs(ulid_ms(eid) / 1000 - (t0 + t1) / 2) < 30, "ULID timestamp should be the dispatch time"

    [req] = receiver.wait_for(1, timeout=5)
    time.sleep(0.3)
    assert receiver.count() == 1, [x.event_id for x in receiver.requests]
    h = req.headers
    # Standard Webhooks, checked by the reference implementation
    payload = Webhook(secret).verify(req.body, h.lower_dict())
    assert payload["id"] == eid
    assert h["webhook-id"] == eid
    assert abs(int(h["webhook-timestamp"]) - time.time()) < 60
    sigs = h["webhook-signature"].split(" ")
    assert all(s.startswith("v1,") for s in sigs), sigs
    # WooCommerce compatible headers
    assert h["X-WC-Webhook-Signature"] == wc_signature(secret, req.body)
    assert h["X-WC-Webhook-Topic"] == "order.status_changed"
    assert h["X-WC-Webhook-Resource"] == "order"
    assert h["X-WC-Webhook-Event"] == "status_changed"
    assert h["X-WC-Webhook-Source"] == "https://shop.example.test"
    assert h.get("X-WC-Webhook-ID"), h
    assert h.get("X-WC-Webhook-Delivery-ID"), h
    # HTTP basics
    assert req.method == "POST"
    assert req.path == "/hook"
    assert h["Content-Type"].split(";")[0].strip() == "application/json"
    assert h["User-Agent"] == f"woosync/{r['version']}"


def test_topic_resource_event_split_at_first_dot(php, receiver, secret):
    ini = fast_ini(receiver.url, secret)
    r = php.json("out([woosync_dispatch('product.stock.low', []), woosync_flush(10)]);", ini)
    assert r[1] is True
    [req] = receiver.wait_for(1)
    assert req.headers["X-WC-Webhook-Topic"] == "product.stock.low"
    assert req.headers["X-WC-Webhook-Resource"] == "product"
    assert req.headers["X-WC-Webhook-Event"] == "stock.low"
    Webhook(secret).verify(req.body, req.headers.lower_dict())


def test_without_secret_no_signature_headers(php, receiver):
    ini = fast_ini(receiver.url, None)
    r = php.json("out([woosync_dispatch('order.created', ['id' => 1]), woosync_flush(10)]);", ini)
    assert r[1] is True
    [req] = receiver.wait_for(1)
    assert req.headers["webhook-id"] == r[0]
    assert "webhook-signature" not in req.headers, req.headers
    assert "X-WC-Webhook-Signature" not in req.headers, req.headers
    assert req.json()["id"] == r[0]


def test_unpadded_secret_config_signs_like_padded(php, receiver):
    # 32 bytes -> 44 base64 chars ending in one '='; configure it without the padding
    import base64, secrets as s
    raw = s.token_bytes(32)
    padded = "whsec_" + base64.b64encode(raw).decode()
    assert padded.endswith("=")
    unpadded = padded.rstrip("=")
    ini = fast_ini(receiver.url, unpadded)
    r = php.json("out([woosync_dispatch('order.created', ['id' => 1]), woosync_flush(10)]);", ini)
    assert r[1] is True
    [req] = receiver.wait_for(1)
    Webhook(padded).verify(req.body, req.headers.lower_dict())


ENVELOPE_RE = re.compile(
    rb'^\{"id":"(evt_[0-9A-Z]{26})","type":"([a-z0-9_.]+)","timestamp":"([^"]+)","key":(null|"(?:[^"\\]|\\.)*"),'
    rb'"sequence":(\d+),"data":(.*)\}$', re.S)


def test_envelope_format_key_and_sequence(php, receiver):
    ini = fast_ini(receiver.url)
    t0 = time.time()
    r = php.json("""
        $ids = [];
        $ids[] = woosync_dispatch('product.updated', ['id' => 42, 'n' => 1], ['key' => 'product:42']);
        $ids[] = woosync_dispatch('product.updated', ['id' => 42, 'n' => 2], ['key' => 'product:42']);
        $ids[] = woosync_dispatch('product.deleted', ['id' => 42, 'n' => 3], ['key' => 'product:42']);
        $ids[] = woosync_dispatch('coupon.created', ['code' => 'X']);
        $ids[] = woosync_dispatch('product.updated', ['id' => 7], ['key' => 'produit:é']);
        out(['ids' => $ids, 'flushed' => woosync_flush(10)]);
    """, ini)
    t1 = time.time()
    assert r["flushed"] is True
    ids = r["ids"]
    assert len(set(ids)) == 5
    reqs = receiver.wait_for(5)
    by_id = {q.event_id: q for q in reqs}
    assert set(by_id) == set(ids)
    parsed = {}
    for eid in ids:
        body = by_id[eid].body
        m = ENVELOPE_RE.match(body)
        assert m, f"envelope not in the documented compact form: {body!r}"
        assert m.group(1).decode() == eid
        ts = m.group(3).decode()
        assert t0 - 2 <= to_unix(ts) <= t1 + 2, (ts, t0, t1)
        assert ts.endswith("Z") or ts.endswith("+00:00"), f"timestamp should be UTC: {ts}"
        env = loads_ordered(body)
        assert [k for k, _ in env] == ["id", "type", "timestamp", "key", "sequence", "data"]
        parsed[eid] = dict(env)
    a, b, c, d, e = (parsed[i] for i in ids)
    assert a["type"] == "product.updated" and c["type"] == "product.deleted" and d["type"] == "coupon.created"
    assert a["key"] == b["key"] == c["key"] == "product:42"
    assert e["key"] == "produit:é"
    assert d["key"] is None and d["sequence"] == 0
    assert 1 <= a["sequence"] < b["sequence"] < c["sequence"], (a["sequence"], b["sequence"], c["sequence"])
    assert e["sequence"] >= 1
    assert dict(a["data"]) == {"id": 42, "n": 1}


def test_json_encoding_rules(php, receiver):
    ini = fast_ini(receiver.url)
    r = php.json(r"""
        $gappy = [1, 2, 3]; unset($gappy[1]);
        $o = new stdClass; $o->b = 1; $o->a = [1, 2]; $o->{'0'} = 'zero';
        $payload = [
            'empty' => [],
            'list' => [1, 2, 3],
            'gappy' => $gappy,
            'reordered' => [1 => 'a', 0 => 'b'],
            'starts_at_1' => [1 => 'a', 2 => 'b'],
            'assoc' => ['z' => 1, 'a' => 2, 'm' => 3],
            'numeric_keys' => ['10' => 'a', 'x' => 'b'],
            'mixed' => [0 => 'a', 'k' => 'b'],
            'empty_obj' => new stdClass,
            'obj' => $o,
            'nested' => [[], [[]], ['a' => []], [new stdClass]],
            'list_of_objs' => [['id' => 1], ['id' => 2]],
            'strings' => ["quote\" back\\ slash/ nl\n tab\t nul\0 ctl\x01", "héllo ✓ 😀", "</script>", ""],
            'ints' => [0, -1, PHP_INT_MAX, PHP_INT_MIN],
            'bools' => [true, false, null],
            'f_tenth' => 0.1,
            'f_sum' => 0.1 + 0.2,
            'f_neg' => -2.5,
            'f_third' => 1 / 3,
            'f_big' => 1.5e300,
            'f_small' => 2.5e-8,
            'f_whole' => 10.0,
        ];
        $floats = [];
        foreach (['f_tenth', 'f_sum', 'f_neg', 'f_third'] as $k) $floats[$k] = json_encode($payload[$k]);
        $ids = [
            woosync_dispatch('test.payload', $payload),
            woosync_dispatch('test.empty', []),
            woosync_dispatch('test.list', [1, 'two', 3.5]),
            woosync_dispatch('test.assoc', ['a' => 1]),
        ];
        out(['ids' => $ids, 'floats' => $floats, 'flushed' => woosync_flush(10)]);
    """, ini)
    assert r["flushed"] is True
    receiver.wait_for(4)
    by_id = {q.event_id: q for q in receiver.requests}
    big, empty, lst, assoc = (by_id[i].body for i in r["ids"])

    assert empty.endswith(b',"data":[]}'), empty
    assert lst.endswith(b',"data":[1,"two",3.5]}'), lst
    assert assoc.endswith(b',"data":{"a":1}}'), assoc

    data = dict(dict(loads_ordered(big))["data"])
    assert data["empty"] == [] and not isinstance(data["empty"], Obj)
    assert data["list"] == [1, 2, 3] and not isinstance(data["list"], Obj)
    assert isinstance(data["gappy"], Obj) and list(data["gappy"]) == [("0", 1), ("2", 3)]
    assert isinstance(data["reordered"], Obj) and list(data["reordered"]) == [("1", "a"), ("0", "b")]
    assert isinstance(data["starts_at_1"], Obj) and list(data["starts_at_1"]) == [("1", "a"), ("2", "b")]
    assert isinstance(data["assoc"], Obj) and list(data["assoc"]) == [("z", 1), ("a", 2), ("m", 3)]
    assert isinstance(data["numeric_keys"], Obj) and list(data["numeric_keys"]) == [("10", "a"), ("x", "b")]
    assert isinstance(data["mixed"], Obj) and list(data["mixed"]) == [("0", "a"), ("k", "b")]
    assert isinstance(data["empty_obj"], Obj) and list(data["empty_obj"]) == []
    assert isinstance(data["obj"], Obj) and list(data["obj"]) == [("b", 1), ("a", [1, 2]), ("0", "zero")]
    nested = data["nested"]
    assert not isinstance(nested, Obj) and nested[0] == [] and nested[1] == [[]]
    assert isinstance(nested[2], Obj) and list(nested[2]) == [("a", [])]
    assert isinstance(nested[3][0], Obj) and list(nested[3][0]) == []
    assert [list(x) for x in data["list_of_objs"]] == [[("id", 1)], [("id", 2)]]
    assert data["strings"] == ["quote\" back\\ slash/ nl\n tab\t nul\0 ctl\x01", "héllo ✓ 😀", "</script>", ""]
    assert data["ints"] == [0, -1, 2**63 - 1, -(2**63)]
    assert data["bools"] == [True, False, None]
    assert data["f_big"] == 1.5e300 and data["f_small"] == 2.5e-8 and data["f_whole"] == 10.0
    for k, php_text in r["floats"].items():
        m = re.search(rb'"' + k.encode() + rb'":([^,}\]]+)', big)
        assert m, k
        assert m.group(1).decode() == php_text, f"{k}: body has {m.group(1)!r}, PHP json_encode gives {php_text}"


def test_event_record_matches_what_was_sent(php, receiver, secret):
    receiver.default = Response(200, body=("R" * 3000).encode())
    ini = fast_ini(receiver.url, secret)
    r = php.json("""
        $id = woosync_dispatch('order.created', ['id' => 5, 'name' => 'Zoë'], ['key' => 'order:5']);
        $ok = woosync_flush(10);
        out(['id' => $id, 'ok' => $ok, 'event' => woosync_event($id), 'none' => woosync_event('evt_00000000000000000000000000')]);
    """, ini)
    assert r["ok"] is True
    [req] = receiver.wait_for(1)
    ev = r["event"]
    assert r["none"] is None
    assert ev["id"] == r["id"]
    assert ev["topic"] == "order.created"
    assert ev["key"] == "order:5"
    assert isinstance(ev["sequence"], int) and ev["sequence"] >= 1
    assert isinstance(ev["created_at"], str) and abs(to_unix(ev["created_at"]) - time.time()) < 60
    assert ev["body"].encode() == req.body, "woosync_event()['body'] must be the exact bytes sent"
    d = delivery(ev)
    assert d["state"] == "delivered", d
    assert d["attempts"] == 1
    assert len(ev["attempts"]) == 1
    a = ev["attempts"][0]
    assert a["endpoint"] == "default"
    assert a["http_status"] == 200
    assert a["error_class"] is None
    assert isinstance(a["duration_ms"], (int, float)) and a["duration_ms"] >= 0
    assert a["started_at"]
    resp = a["response"]
    assert isinstance(resp, str) and 0 < len(resp) <= 1024 and resp == "R" * len(resp), resp[:50]
    assert len(resp) >= 1000, "response should keep the first 1 KB"


def test_events_listing(php, receiver):
    ini = fast_ini(receiver.url)
    r = php.json("""
        $a = woosync_dispatch('order.created', ['n' => 1], ['key' => 'order:1']);
        $b = woosync_dispatch('order.updated', ['n' => 2], ['key' => 'order:1']);
        woosync_flush(10);
        out(['ids' => [$a, $b], 'all' => woosync_events(), 'null' => woosync_events(null)]);
    """, ini)
    assert isinstance(r["all"], list) and r["all"], r
    def ids_in(rows):
        return {row.get(k) for row in rows for k in ("id", "event_id") if isinstance(row, dict)}
    assert set(r["ids"]) <= ids_in(r["all"]), r["all"]
    assert set(r["ids"]) <= ids_in(r["null"]), r["null"]


def test_endpoints_option_default(php, receiver):
    ini = fast_ini(receiver.url)
    r = php.json("out([woosync_dispatch('order.created', ['n' => 1], ['endpoints' => ['default']]), woosync_flush(10)]);", ini)
    assert r[1] is True
    [req] = receiver.wait_for(1)
    assert req.event_id == r[0]


def data_segments_in(c: socket.socket) -> int:
    """Data-carrying TCP segments this socket received (Linux `tcp_info.tcpi_data_segs_in`)."""
    info = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    return struct.unpack_from("I", info, 152)[0]


@pytest.fixture
def raw_receiver():
    """A keep-alive HTTP receiver on a bare socket: the requests (head and body, by
    Content-Length) and the connections they came on."""
    seen: list[bytes] = []

    def handle(c):
        c.settimeout(10)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    more = c.recv(1 << 20)
                    if not more:
                        return
                    buf += more
                head, _, rest = buf.partition(b"\r\n\r\n")
                n = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
                while len(rest) < n:
                    more = c.recv(1 << 20)
                    if not more:
                        return
                    rest += more
                seen.append(head + b"\r\n\r\n" + rest[:n])
                buf = rest[n:]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass

    with tcp_listener(handle, threaded=True) as (port, conns):
        yield types.SimpleNamespace(url=f"http://127.0.0.1:{port}/raw", seen=seen, conns=conns)


@pytest.mark.engines("sqlite")
def test_a_request_goes_out_in_one_write_and_a_large_body_arrives_whole(php, raw_receiver):
    """Head and body of a delivery leave in one write: one data segment per request on loopback
    (two before: ureq writes the head, then the body, with TCP_NODELAY). A body larger than the
    sender's 16 KB output buffer goes in pieces, in order."""
    ini = fast_ini(raw_receiver.url)
    r = php.json("""
        $ids = [];
        for ($i = 0; $i < 10; $i++) $ids[] = woosync_dispatch('product.updated', ['n' => $i, 'pad' => str_repeat('x', 1500)]);
        out(['ids' => $ids, 'flushed' => woosync_flush(10)]);
    """, ini)
    assert r["flushed"] is True
    assert len(raw_receiver.seen) == 10
    assert {json.loads(x.partition(b"\r\n\r\n")[2])["id"] for x in raw_receiver.seen} == set(r["ids"])
    segments = sum(data_segments_in(c) for c in raw_receiver.conns)
    assert segments == 10, f"10 requests came in {segments} data segments on {len(raw_receiver.conns)} connections"

    r = php.json("""
        $id = woosync_dispatch('product.updated', ['n' => 10, 'pad' => str_repeat('y', 100000)]);
        out(['id' => $id, 'flushed' => woosync_flush(10)]);
    """, ini)
    assert r["flushed"] is True
    assert len(raw_receiver.seen) == 11
    body = json.loads(raw_receiver.seen[10].partition(b"\r\n\r\n")[2])
    assert body["id"] == r["id"] and body["data"]["pad"] == "y" * 100000
