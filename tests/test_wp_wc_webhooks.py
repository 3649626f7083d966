"""WooCommerce's own webhooks delivered by woosync (issue 15), against the real WooCommerce 11.0.1.

A receiver written for WooCommerce webhooks must not tell the difference: the wire-format test
has WooCommerce itself deliver (synchronously, `woocommerce_webhook_deliver_async` false) to one
webhook of each pair and woosync to the other, for the same events in the same request, and
compares bodies byte for byte, the X-WC-Webhook-* headers, User-Agent, Content-Type and the
signature as a WooCommerce receiver checks it. The other tests switch the option with the real
`wp woosync wc-webhooks` and look at Action Scheduler's own tables through its API.

WooCommerce's own delivery to the test receiver (127.0.0.1, a random port) needs the site's
permission, as on a real shop: `http_request_host_is_external` and `http_allowed_safe_ports`
(mu-plugin ALLOW_RECEIVER).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

from receiver import Response
from wp_helpers import ini

SECRET = "Sh0p & 'secret' <x>"

ALLOW_RECEIVER = """
add_filter('http_request_host_is_external', function ($external, $host) { return $external || '127.0.0.1' === $host; }, 10, 2);
add_filter('http_allowed_safe_ports', function ($ports) { $ports[] = %d; return $ports; });
"""

# The compare test: WooCommerce delivers the /wc/ webhooks itself, at the end of the request;
# woosync delivers the /ws/ ones. Filters a real shop uses: an auth header, a payload field, SHA-1.
COMPARE_MU = """
add_filter('woocommerce_webhook_deliver_async', '__return_false');
add_filter('woosync_wc_webhook_mirrored', function ($m, $w) { return $m && false === strpos($w->get_delivery_url(), '/wc/'); }, 10, 2);
add_filter('woocommerce_webhook_http_args', function ($a, $arg, $id) { $a['headers']['X-Shop-Auth'] = 'Bearer t0ken'; return $a; }, 10, 3);
add_filter('woocommerce_webhook_payload', function ($p, $resource) { if ('action' === $resource) { $p['probe'] = 'filtered'; } return $p; }, 10, 2);
add_filter('woocommerce_webhook_hash_algorithm', function ($algo, $body, $id) {
    $w = wc_get_webhook($id);
    return ($w && 0 === strpos($w->get_topic(), 'action.')) ? 'sha1' : $algo;
}, 10, 3);
"""

TOPICS = ["order.created", "order.updated", "product.updated", "customer.created", "coupon.created",
          "action.woocommerce_woosync_probe"]

WC_HEADERS = ["X-WC-Webhook-Source", "X-WC-Webhook-Topic", "X-WC-Webhook-Resource", "X-WC-Webhook-Event",
              "User-Agent", "Content-Type", "X-Shop-Auth"]


def cfg(outbox, **more) -> dict:
    # Mirrored endpoints retry on the php.ini schedule: fast first, then long enough that a
    # receiver down across several short PHP processes does not use it up.
    return ini(outbox, **{"retry_delays": "0.2,0.2,0.2,0.2,0.2,1,1,2,2,5,5,10,10,30,30,60", **more})


def wc_sig(secret: str, body: bytes, algo: str = "sha256") -> str:
    """As a WooCommerce receiver checks X-WC-Webhook-Signature."""
    return base64.b64encode(hmac.new(secret.encode(), body, getattr(hashlib, algo)).digest()).decode()


def make_webhook(wp, outbox, topic: str, url: str, secret: str = SECRET) -> int:
    return wp.php(f"""
        $w = new WC_Webhook();
        $w->set_name('hook ' . {json.dumps(topic)});
        $w->set_user_id(1);
        $w->set_topic({json.dumps(topic)});
        $w->set_secret({json.dumps(secret)});
        $w->set_delivery_url({json.dumps(url)});
        $w->set_status('active');
        $w->set_api_version('wp_api_v3');
        out($w->save());
    """, ini=cfg(outbox)).last_json()


def async_actions(wp, outbox, status: str = "pending") -> list:
    return wp.php(f"""
        out(array_values(array_map(function ($a) {{ return $a->get_args(); }},
            as_get_scheduled_actions(['hook' => 'woocommerce_deliver_webhook_async', 'status' => '{status}', 'per_page' => -1]))));
    """, ini=cfg(outbox)).last_json()


def update_order(wp, outbox, order_id: int, *names: str, flush: float = 15.0) -> None:
    """One request (one PHP process) that sets the billing first name to each of `names` in turn."""
    wp.php(f"""
        t_flush_at_shutdown({flush});
        foreach ({json.dumps(list(names))} as $n) {{
            $o = wc_get_order({order_id}); $o->set_billing_first_name($n); $o->save();
        }}
        out('ok');
    """, ini=cfg(outbox)).last_json()


def new_order(wp, outbox) -> int:
    return wp.php("""
        $p = t_product('WCW-' . wp_generate_password(6, false), 50);
        $o = wc_create_order(); $o->add_product($p, 1); $o->set_billing_first_name('Zero');
        $o->calculate_totals(); $o->save(); out($o->get_id());
    """, ini=cfg(outbox)).last_json()


def deliveries(requests) -> list:
    """Webhook deliveries, without WooCommerce's pings (`webhook_id=<id>`, form-encoded), which it
    sends when it saves a webhook still marked `pending_delivery` (after its own deliveries too)."""
    return [r for r in requests if r.headers.get("Content-Type") == "application/json"]


def names(requests) -> list:
    return [r.json()["billing"]["first_name"] for r in deliveries(requests)]


def test_wire_format_equals_woocommerces_own_delivery(wp, outbox, rx):
    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    wp.mu_plugin("compare", COMPARE_MU)
    ids = wp.php("""
        $p = t_product('WCW-P', 20, '5.00');
        $o = wc_create_order(); $o->add_product($p, 1); $o->set_billing_first_name('Before'); $o->calculate_totals(); $o->save();
        out(['product' => $p->get_id(), 'order' => $o->get_id()]);
    """, ini=cfg(outbox)).last_json()
    hooks = {}
    for topic in TOPICS:
        hooks[("wc", topic)] = make_webhook(wp, outbox, topic, rx.url_for(f"/wc/{topic}"))
        hooks[("ws", topic)] = make_webhook(wp, outbox, topic, rx.url_for(f"/ws/{topic}"))
    # A second woosync webhook of one topic: the order is read once for both, each gets its payload.
    hooks[("ws2", "order.updated")] = make_webhook(wp, outbox, "order.updated", rx.url_for("/ws2/order.updated"))
    wp.wp_ok("woosync", "wc-webhooks", "enable", ini=cfg(outbox))

    wp.php(f"""
        t_flush_at_shutdown(20);
        $o = wc_create_order(); $o->add_product(wc_get_product({ids['product']}), 2); $o->set_billing_first_name('Ada');
        $o->calculate_totals(); $o->save();
        $o2 = wc_get_order({ids['order']}); $o2->set_billing_first_name('Grace'); $o2->save();
        $p = wc_get_product({ids['product']}); $p->set_regular_price('12.34'); $p->save();
        wc_create_new_customer('wcw-customer@example.test', 'wcw-customer', 'pw-' . wp_generate_password(12));
        $c = new WC_Coupon(); $c->set_code('wcw-save10'); $c->set_amount(10); $c->save();
        do_action('woocommerce_woosync_probe', 42);
        out('ok');
    """, ini=cfg(outbox)).last_json()
    rx.wait_quiet(1.0, timeout=30)

    by_path: dict = {}
    for r in deliveries(rx.requests):
        by_path.setdefault(r.path, []).append(r)
    for topic in TOPICS:
        wc, ws = by_path.get(f"/wc/{topic}", []), by_path.get(f"/ws/{topic}", [])
        assert wc, f"WooCommerce delivered nothing for {topic}: {sorted(by_path)}"
        # Exactly the deliveries WooCommerce sends (e.g. one customer.created although two hooks fire).
        assert len(ws) == len(wc), (topic, len(wc), len(ws))
        if topic == "customer.created":
            assert len(ws) == 1
        for a, b in zip(sorted(wc, key=lambda r: r.body), sorted(ws, key=lambda r: r.body)):
            assert b.body == a.body, f"{topic}: bodies differ\nWooCommerce: {a.body[:600]!r}\nwoosync:     {b.body[:600]!r}"
            for h in WC_HEADERS:
                assert b.headers.get(h) == a.headers.get(h), (topic, h, a.headers.get(h), b.headers.get(h))
            assert a.headers["X-WC-Webhook-ID"] == str(hooks[("wc", topic)])
            assert b.headers["X-WC-Webhook-ID"] == str(hooks[("ws", topic)])
            algo = "sha1" if topic.startswith("action.") else "sha256"
            for r in (a, b):
                assert r.headers["X-WC-Webhook-Signature"] == wc_sig(SECRET, r.body, algo), (topic, r.path)
                assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-WC-Webhook-Delivery-ID"]), r.headers
            assert a.headers["X-WC-Webhook-Source"] == wp.url + "/"
            assert a.headers["User-Agent"].startswith("WooCommerce/11.0.1 Hookshot (WordPress/7.0")
    second = by_path.get("/ws2/order.updated", [])
    assert sorted(r.body for r in second) == sorted(r.body for r in by_path["/wc/order.updated"])
    assert {r.headers["X-WC-Webhook-ID"] for r in second} == {str(hooks[("ws2", "order.updated")])}
    action = by_path["/ws/action.woocommerce_woosync_probe"][0].json()
    assert action == {"action": "woocommerce_woosync_probe", "arg": 42, "probe": "filtered"}
    assert by_path["/ws/order.updated"] and any(r.json()["billing"]["first_name"] == "Grace" for r in by_path["/ws/order.updated"])
    # Nothing went through Action Scheduler, and the log shows the deliveries like any other.
    assert async_actions(wp, outbox) == []
    listed = json.loads(wp.wp_ok("woosync", "list", f"--endpoint=wc-webhook-{hooks[('ws', 'order.updated')]}",
                                 "--format=json", ini=cfg(outbox)).stdout)
    assert listed and all(e["state"] == "delivered" and e["topic"] == "order.updated" for e in listed), listed


def test_three_requests_give_three_deliveries_in_order_without_action_scheduler(wp, outbox, rx):
    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    order = new_order(wp, outbox)
    hook = make_webhook(wp, outbox, "order.updated", rx.url_for("/hook"))
    out = wp.wp_ok("woosync", "wc-webhooks", "enable", ini=cfg(outbox)).stdout
    assert "1 mirrored" in out, out
    for name in ("One", "Two", "Three"):
        update_order(wp, outbox, order, name)
    # Three changes in one request: one delivery, the final state (WooCommerce's rule).
    update_order(wp, outbox, order, "Four-a", "Four-b", "Four")
    got = rx.wait_for(4, timeout=30)
    rx.wait_quiet(0.5)
    assert names(rx.requests) == ["One", "Two", "Three", "Four"]
    assert all(r.headers["X-WC-Webhook-ID"] == str(hook) for r in got)
    assert async_actions(wp, outbox) == []
    status = json.loads(wp.wp_ok("woosync", "wc-webhooks", "status", "--format=json", ini=cfg(outbox)).stdout)
    assert status["enabled"] is True
    row = next(w for w in status["webhooks"] if w["id"] == hook)
    assert (row["delivered_by"], row["endpoint"], row["health"], row["pending"]) == \
        ("woosync", f"wc-webhook-{hook}", "healthy", 0), row


def test_receiver_down_for_ten_attempts_gets_everything_and_the_webhook_stays_active(wp, outbox, rx):
    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    order = new_order(wp, outbox)
    hook = make_webhook(wp, outbox, "order.updated", rx.url_for("/hook"))
    wp.wp_ok("woosync", "wc-webhooks", "enable", ini=cfg(outbox))
    rx.script(*[Response(503, body=b"down")] * 10)
    update_order(wp, outbox, order, "One", flush=0)
    update_order(wp, outbox, order, "Two", flush=90)
    ok = [r for r in rx.requests if r.response and r.response.status == 200]
    assert len([r for r in rx.requests if r.response and r.response.status == 503]) == 10
    assert names(ok) == ["One", "Two"], names(rx.requests)
    state = wp.php(f"$w = wc_get_webhook({hook}); out([$w->get_status(), $w->get_failure_count()]);",
                   ini=cfg(outbox)).last_json()
    assert state == ["active", 0]


def test_switching_on_takes_over_scheduled_deliveries_and_off_gives_back_nothing_lost(wp, outbox, rx):
    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    order = new_order(wp, outbox)
    hook = make_webhook(wp, outbox, "order.updated", rx.url_for("/hook"))
    # Off: WooCommerce's own path, an Action Scheduler job.
    update_order(wp, outbox, order, "One", flush=0)
    assert async_actions(wp, outbox) == [{"webhook_id": hook, "arg": order}]
    # On: the scheduled job is taken over (claimed, stored in woosync, marked complete).
    out = wp.wp_ok("woosync", "wc-webhooks", "enable", ini=cfg(outbox)).stdout
    assert "1 scheduled deliveries taken over" in out, out
    assert async_actions(wp, outbox) == []
    assert async_actions(wp, outbox, "complete") == [{"webhook_id": hook, "arg": order}]
    # The receiver is down: "Two" waits in woosync while the option goes off again.
    rx.default = Response(503, body=b"down")
    update_order(wp, outbox, order, "Two", flush=0)
    wp.wp_ok("woosync", "wc-webhooks", "disable", ini=cfg(outbox))
    update_order(wp, outbox, order, "Three", flush=0)
    assert async_actions(wp, outbox) == [{"webhook_id": hook, "arg": order}]
    # The receiver comes back: woosync delivers what it holds, then WooCommerce's runner its own.
    rx.default = Response(200)
    wp.php("out(woosync_flush(60));", ini=cfg(outbox)).last_json()
    wp.wp_ok("action-scheduler", "run", "--hooks=woocommerce_deliver_webhook_async", ini=cfg(outbox))
    ok = [r for r in deliveries(rx.requests) if r.response and r.response.status == 200]
    assert names(ok) == ["One", "Two", "Three"], names(rx.requests)
    assert ok[2].headers["User-Agent"].startswith("WooCommerce/")
    # Who sent what: woosync adds the Standard Webhooks id, WooCommerce's own delivery does not.
    assert ["webhook-id" in r.headers for r in ok] == [True, True, False]
    assert {r.headers["X-WC-Webhook-ID"] for r in ok} == {str(hook)}
    # One of "One" per receiver view: taken over once, never doubled.
    assert names(rx.requests).count("One") == 1


def endpoint(wp, outbox, name: str, **more):
    return next((e for e in wp.php("out(woosync_endpoints());", ini=cfg(outbox, **more)).last_json()
                 if e["name"] == name), None)


def test_destination_policy_is_wordpress_own(wp, outbox, rx):
    """A URL WordPress refuses WooCommerce (127.0.0.1 on a port outside http_allowed_safe_ports)
    stays refused: not taken over, WooCommerce's own path as before. Once the site allows it,
    woosync delivers, allowed for that host only (the php.ini allows no internal network here)."""
    none = {"allow_networks": ""}
    order = new_order(wp, outbox)
    hook = make_webhook(wp, outbox, "order.updated", rx.url_for("/hook"))
    wp.wp_ok("woosync", "wc-webhooks", "enable", ini=cfg(outbox, **none))
    row = next(w for w in json.loads(wp.wp_ok("woosync", "wc-webhooks", "status", "--format=json",
                                              ini=cfg(outbox, **none)).stdout)["webhooks"] if w["id"] == hook)
    assert row["delivered_by"] == "woocommerce" and "wp_http_validate_url" in row["refused"], row
    assert endpoint(wp, outbox, f"wc-webhook-{hook}", **none)["enabled"] is False
    wp.php(f"""$o = wc_get_order({order}); $o->set_billing_first_name('Refused'); $o->save(); out(1);""",
           ini=cfg(outbox, **none)).last_json()
    assert async_actions(wp, outbox) == [{"webhook_id": hook, "arg": order}]  # WooCommerce's path
    # WooCommerce's own delivery is refused by WordPress, as before the switch.
    wp.wp_ok("action-scheduler", "run", "--hooks=woocommerce_deliver_webhook_async", ini=cfg(outbox, **none))
    assert deliveries(rx.requests) == []

    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    update_order(wp, outbox, order, "Allowed", flush=20)
    assert names(rx.wait_for(1, timeout=20)) == ["Allowed"]
    e = endpoint(wp, outbox, f"wc-webhook-{hook}", **none)
    assert e["enabled"] is True and e["allow_networks"] == ["127.0.0.1/32"], e
    assert async_actions(wp, outbox) == []


def test_webhook_edits_follow_without_restart(wp, outbox, rx):
    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    order = new_order(wp, outbox)
    hook = make_webhook(wp, outbox, "order.updated", rx.url_for("/old"))
    wp.wp_ok("woosync", "wc-webhooks", "enable", ini=cfg(outbox))
    # New URL, new secret: the next request's delivery uses both.
    wp.php(f"""$w = wc_get_webhook({hook}); $w->set_delivery_url({json.dumps(rx.url_for('/new'))});
               $w->set_secret('n3w secret'); $w->save(); out(1);""", ini=cfg(outbox)).last_json()
    update_order(wp, outbox, order, "Edited")
    got = deliveries(rx.wait_for(1, timeout=20))
    assert [r.path for r in got] == ["/new"]
    assert got[0].headers["X-WC-Webhook-Signature"] == wc_sig("n3w secret", got[0].body)
    # Paused: WooCommerce sends nothing for it, nor does woosync; its endpoint is switched off.
    wp.php(f"$w = wc_get_webhook({hook}); $w->set_status('paused'); $w->save(); out(1);", ini=cfg(outbox)).last_json()
    update_order(wp, outbox, order, "Paused")
    assert endpoint(wp, outbox, f"wc-webhook-{hook}")["enabled"] is False
    # Deleted: the endpoint goes too.
    wp.php(f"wc_get_webhook({hook})->delete(true); out(1);", ini=cfg(outbox)).last_json()
    assert endpoint(wp, outbox, f"wc-webhook-{hook}") is None
    rx.wait_quiet(0.5)
    assert names(rx.requests) == ["Edited"]
    assert async_actions(wp, outbox) == []


def test_a_job_scheduled_by_a_request_that_began_before_the_switch_is_delivered_by_woosync(wp, outbox, rx):
    """A request that started with the option off schedules its Action Scheduler job after the
    switch-on took the others over: when Action Scheduler runs it, woosync delivers it instead of
    WooCommerce (which would count failures and disable the webhook)."""
    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    order = new_order(wp, outbox)
    hook = make_webhook(wp, outbox, "order.updated", rx.url_for("/hook"))
    wp.wp_ok("woosync", "wc-webhooks", "enable", ini=cfg(outbox))
    wp.php(f"""$o = wc_get_order({order}); $o->set_billing_first_name('Late'); $o->save();
               WC()->queue()->add('woocommerce_deliver_webhook_async', ['webhook_id' => {hook}, 'arg' => {order}], 'woocommerce-webhooks');
               out(1);""", ini=cfg(outbox)).last_json()
    # The request's own change went to woosync at once; the late job is the one left.
    assert async_actions(wp, outbox) == [{"webhook_id": hook, "arg": order}]
    wp.wp_ok("action-scheduler", "run", "--hooks=woocommerce_deliver_webhook_async", ini=cfg(outbox))
    wp.php("out(woosync_flush(30));", ini=cfg(outbox)).last_json()
    got = deliveries(rx.wait_for(2, timeout=30))
    assert names(got) == ["Late", "Late"]
    assert all("webhook-id" in r.headers for r in got), "both delivered by woosync"
    assert async_actions(wp, outbox) == [] and len(async_actions(wp, outbox, "complete")) == 1
    # WooCommerce's deliver() never ran: no failure counting, no delivery log of its own.
    assert wp.php(f"out(wc_get_webhook({hook})->get_failure_count());", ini=cfg(outbox)).last_json() == 0


class _Form(__import__("html.parser").parser.HTMLParser):
    """The fields a browser submits from the first form posting to options.php."""

    def __init__(self):
        super().__init__()
        self.fields: list = []
        self.inside = False
        self.select = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and "options.php" in (a.get("action") or ""):
            self.inside = True
        elif not self.inside or "name" not in a and tag != "option":
            return
        elif tag == "input" and a.get("type") not in ("submit", "button"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self.select = a["name"]
        elif tag == "option" and self.select and "selected" in a:
            self.fields.append((self.select, a.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None


def test_settings_switch_and_the_webhooks_screen(wp, outbox, rx):
    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    hook = make_webhook(wp, outbox, "order.updated", rx.url_for("/hook"))
    wp.serve(extension=True, ini=cfg(outbox))
    admin = wp.browser("admin", wp.admin_password)
    status, page, _ = admin.request("/wp-admin/options-general.php?page=woosync")
    assert status == 200 and "Deliver WooCommerce webhooks through WooSync" in page
    form = _Form()
    form.feed(page)
    fields = [f for f in form.fields if f[0] != "woosync_wc_webhooks"] + [("woosync_wc_webhooks", "yes")]
    assert any(name == "option_page" for name, _ in fields), fields
    data: dict = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    status, body, _ = admin.request("/wp-admin/options.php", data)
    assert status == 200, body[-800:]
    assert wp.php("out(get_option('woosync_wc_webhooks'));", ini=cfg(outbox)).last_json() == "yes"
    status, page, _ = admin.request("/wp-admin/admin.php?page=wc-settings&tab=advanced&section=webhooks")
    assert status == 200
    assert "Delivered by WooSync — healthy, 0 waiting, 0 dead" in page, page[-3000:]
    status, page, _ = admin.request(f"/wp-admin/admin.php?page=wc-settings&tab=advanced&section=webhooks&edit-webhook={hook}")
    assert status == 200 and "Delivered by WooSync" in page


def test_an_outbox_that_fails_hands_the_delivery_back_to_woocommerce(wp, outbox, rx, tmp_path):
    """Never lost: when woosync cannot store a delivery (here its outbox is a directory it cannot
    open), the entry goes back to WooCommerce's own scheduling."""
    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    order = new_order(wp, outbox)
    hook = make_webhook(wp, outbox, "order.updated", rx.url_for("/hook"))
    wp.wp_ok("woosync", "wc-webhooks", "enable", ini=cfg(outbox))
    broken = tmp_path / "not-a-file.sqlite"
    broken.mkdir()
    wp.php(f"$o = wc_get_order({order}); $o->set_billing_first_name('Kept'); $o->save(); out(1);",
           ini=cfg(broken)).last_json()
    assert async_actions(wp, outbox) == [{"webhook_id": hook, "arg": order}]
    wp.wp_ok("action-scheduler", "run", "--hooks=woocommerce_deliver_webhook_async", ini=cfg(broken))
    assert names(rx.wait_for(1, timeout=20)) == ["Kept"]


def test_store_api_checkout_delivers_the_order_as_woocommerce_builds_it(wp, outbox, rx):
    """A real block checkout (Store API over HTTP, a guest): the payload is built inside that REST
    request, as the webhook's user, and is the order itself."""
    from test_wp_orders import Shopper
    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    product = wp.php("out(t_product('WCW-SHOP', 10, '7.00')->get_id());", ini=cfg(outbox)).last_json()
    make_webhook(wp, outbox, "order.created", rx.url_for("/hook"))
    wp.wp_ok("woosync", "wc-webhooks", "enable", ini=cfg(outbox))
    wp.serve(extension=True, ini=cfg(outbox), workers=1)
    status, body = Shopper(wp).store_api_checkout([(product, 2)], "shopper@example.test")
    assert status == 200, body
    [got] = deliveries(rx.wait_for(1, timeout=30))
    data = got.json()
    assert data.get("id") == body["order_id"], data
    assert data["status"] == "processing", data["status"]  # cash on delivery, as stored at the end
    assert [(i["product_id"], i["quantity"]) for i in data["line_items"]] == [(product, 2)]
