"""Every bad call raises WooSyncException, stores nothing and leaves earlier events alone."""
import pytest

from conftest import closed_port

# (id, PHP statements preparing $topic/$payload/$options, hint words of which one must appear in the message)
CASES = [
    ("topic-empty", "$topic = '';", ["topic"]),
    ("topic-one-segment", "$topic = 'order';", ["topic"]),
    ("topic-uppercase", "$topic = 'Order.created';", ["topic"]),
    ("topic-trailing-dot", "$topic = 'order.';", ["topic"]),
    ("topic-leading-dot", "$topic = '.order';", ["topic"]),
    ("topic-double-dot", "$topic = 'order..created';", ["topic"]),
    ("topic-space", "$topic = 'order created';", ["topic"]),
    ("topic-dash", "$topic = 'order-x.created';", ["topic"]),
    ("topic-trailing-newline", "$topic = \"order.created\\n\";", ["topic"]),
    ("topic-accent", "$topic = 'order.créé';", ["topic"]),
    ("topic-not-utf8", "$topic = \"order.\\xff\";", ["topic", "utf"]),
    ("key-not-utf8", "$options = ['key' => \"product:\\xff\\xfe\"];", ["utf"]),
    ("payload-key-not-utf8", "$payload = [\"\\xff\" => 1];", ["utf"]),
    ("payload-value-not-utf8", "$payload = ['a' => ['b' => \"\\xc3\\x28\"]];", ["utf"]),
    ("object-prop-not-utf8", "$o = new stdClass; $o->name = \"\\xe2\\x82\"; $payload = ['o' => $o];", ["utf"]),
    ("resource", "$payload = ['f' => fopen('php://memory', 'r')];", ["resource"]),
    ("closure", "$payload = ['f' => fn() => 1];", ["closure", "object"]),
    ("arrayobject", "$payload = ['o' => new ArrayObject([1])];", ["object", "arrayobject", "stdclass"]),
    ("datetime", "$payload = ['d' => new DateTime()];", ["object", "datetime", "stdclass"]),
    ("jsonserializable", "$payload = ['j' => new class implements JsonSerializable { function jsonSerialize(): mixed { return 1; } }];",
     ["object", "stdclass", "class"]),
    ("recursive-array", "$a = ['x' => 1]; $a['self'] = &$a; $payload = $a;", ["recurs", "depth", "nest", "cycl"]),
    ("recursive-object", "$o = new stdClass; $o->self = $o; $payload = ['o' => $o];", ["recurs", "depth", "nest", "cycl"]),
    ("inf", "$payload = ['v' => INF];", ["inf", "finite"]),
    ("minus-inf", "$payload = ['v' => [1, -INF]];", ["inf", "finite"]),
    ("nan", "$payload = ['v' => NAN];", ["nan", "finite"]),
    ("too-large", "$payload = ['s' => str_repeat('a', 2000)];", ["max_payload_bytes", "large", "limit", "size", "bytes"]),
]

SCRIPT = """
    $good = woosync_dispatch('product.updated', ['id' => 1, 'name' => 'Good']);
    $before = ['total' => total_events(woosync_status()), 'event' => woosync_event($good)];
    $topic = 'product.updated'; $payload = ['id' => 2]; $options = null;
    %s
    $r = attempt(fn() => woosync_dispatch($topic, $payload, $options));
    $after = ['total' => total_events(woosync_status()), 'event' => woosync_event($good)];
    out(['r' => $r, 'before' => $before, 'after' => $after]);
"""


@pytest.mark.parametrize("setup,hints", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_dispatch_raises_and_stores_nothing(php, setup, hints):
    ini = {"woosync.endpoint": f"http://127.0.0.1:{closed_port()}/hook", "woosync.retry_delays": "300",
           "woosync.max_payload_bytes": 1000, "woosync.shutdown_grace": 0.2}
    out = php.json(SCRIPT % setup, ini)
    r = out["r"]
    assert r["ok"] is False, f"dispatch should have raised, returned {r['value']!r}"
    assert r["class"] == "WooSyncException", r
    assert "Exception" in r["parents"], r
    msg = r["message"] or ""
    assert msg.strip(), r
    assert any(h in msg.lower() for h in hints), f"message not helpful (expected one of {hints}): {msg!r}"
    assert out["after"]["total"] == out["before"]["total"] == 1, out
    assert out["after"]["event"] == out["before"]["event"] or (
        out["after"]["event"]["body"] == out["before"]["event"]["body"]
        and out["after"]["event"]["id"] == out["before"]["event"]["id"]), out


GOOD_TOPICS = ["a.b", "order.created", "order_v2.status_changed", "a1.b2.c3", "x.y_z.w_1"]


def test_valid_inputs_are_accepted(php):
    r = php.json("""
        $res = [];
        foreach (%s as $t) $res[$t] = attempt(fn() => woosync_dispatch($t, ['ok' => true]));
        $o = new stdClass; $o->a = 1;
        $res['stdclass'] = attempt(fn() => woosync_dispatch('a.b', ['o' => $o, 'n' => null, 'f' => 1.5]));
        $res['near-limit'] = attempt(fn() => woosync_dispatch('a.b', ['s' => str_repeat('a', 700)]));
        $res['key-utf8'] = attempt(fn() => woosync_dispatch('a.b', [], ['key' => 'produit:é✓']));
        $res['options-null'] = attempt(fn() => woosync_dispatch('a.b', [], null));
        $res['options-empty'] = attempt(fn() => woosync_dispatch('a.b', [], []));
        $res['coalesce-no-key'] = attempt(fn() => woosync_dispatch('a.b', [], ['coalesce' => false]));
        out($res);
    """ % ("[" + ", ".join(f"'{t}'" for t in GOOD_TOPICS) + "]"), {"woosync.max_payload_bytes": 1000})
    bad = {k: v for k, v in r.items() if not v["ok"]}
    assert not bad, bad


def test_max_payload_bytes_applies_to_the_encoded_envelope(php):
    """The limit is on the whole encoded body: a body of exactly max bytes passes, one more byte fails."""
    r = php.json("""
        $probe = woosync_dispatch('a.b', ['s' => 'x']);
        $base = strlen(woosync_event($probe)['body']) - 1;   // envelope bytes without the string's content
        out(['base' => $base]);
    """)
    base = r["base"]
    limit = base + 200
    r = php.json("""
        $fits = attempt(fn() => woosync_dispatch('a.b', ['s' => str_repeat('y', %d)]));
        $over = attempt(fn() => woosync_dispatch('a.b', ['s' => str_repeat('y', %d)]));
        out(['fits' => $fits, 'len' => $fits['ok'] ? strlen(woosync_event($fits['value'])['body']) : null, 'over' => $over]);
    """ % (limit - base, limit - base + 1), {"woosync.max_payload_bytes": limit})
    assert r["fits"]["ok"], f"a {limit}-byte body must be accepted with max_payload_bytes={limit}: {r['fits']}"
    assert r["len"] == limit
    assert r["over"]["ok"] is False and r["over"]["class"] == "WooSyncException", r["over"]


def test_flush_rejects_a_timeout_that_is_not_a_number(php):
    """NAN must be a WooSyncException, not an internal error from a panic caught at the edge."""
    r = php.json("""
        out(['nan' => attempt(fn() => woosync_flush(NAN)), 'inf' => attempt(fn() => woosync_flush(INF)),
             'negative' => attempt(fn() => woosync_flush(-1.0))]);
    """)
    for case in ("nan", "inf"):
        assert r[case]["ok"] is False and r[case]["class"] == "WooSyncException", r[case]
        assert "finite" in r[case]["message"], r[case]
    assert r["negative"]["ok"] is True and r["negative"]["value"] is True, r["negative"]  # empty outbox
