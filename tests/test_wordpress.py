"""The woosync WordPress plugin and `wp woosync`, on a real WordPress.

A session fixture installs Debian's wordpress + mariadb-server + php-mysql when missing, starts a
private MariaDB on 127.0.0.1, installs a fresh site with wp_install() and activates the plugin from
php/woosync (see tests/wp/wpsite.py). WooCommerce and WP-CLI are stand-ins from tests/wp/ that
mirror the real names and hook arguments; everything else (WordPress, MariaDB, PHP, the extension,
HTTP) is real.

Most tests give PHP its own outbox with `-d woosync.database=…` (php.ini decides, so the plugin
leaves it alone) and deliver to the php.ini `default` endpoint pointing at a local receiver; the
settings tests use the plugin's own `wordpress` endpoint.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

sys.path.insert(0, str(Path(__file__).resolve().parent / "wp"))
import wpsite  # noqa: E402
from receiver import Blackhole, Receiver, Response  # noqa: E402

# ---- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def wp(so):
    wpsite.ensure_packages()
    base = Path(tempfile.mkdtemp(prefix="woosync-wp-", dir="/tmp"))
    os.chmod(base, 0o755)
    db = wpsite.MariaDB(base)
    db.start()
    site = None
    try:
        site = wpsite.Site(base, db, "shop", so)
        site.install()
        yield site
    finally:
        if site is not None:
            site.stop_server()
        db.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def outbox(tmp_path) -> Path:
    d = tmp_path / "outbox"
    d.mkdir()
    return d / "outbox.sqlite"


@pytest.fixture
def rx():
    r = Receiver()
    r.start()
    yield r
    r.stop()


def make_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def ini(outbox: Path, url: str | None = None, secret: str | None = None, **more) -> dict:
    d = {"woosync.database": str(outbox), "woosync.retry_delays": "0.2,0.2", "woosync.timeout": "5"}
    if url:
        d["woosync.endpoint"] = url
    if secret:
        d["woosync.secret"] = secret
    d.update({"woosync." + k: v for k, v in more.items()})
    return d


def topic_of(req) -> str:
    return req.json()["type"]


def data_of(req) -> dict:
    return req.json()["data"]


def for_key(key: str):
    return lambda req: req.json().get("key") == key


# ---- hooks → deliveries --------------------------------------------------------------------------

def test_product_stock_hook_delivers_snapshot(wp, rx, outbox):
    secret = make_secret()
    res = wp.php("""
        t_flush_at_shutdown();
        $p = t_product('SKU-STOCK-1', 10, '19.90');
        $p = wc_get_product($p->get_id());
        $p->set_stock_quantity(7);
        $p->save();
        out(['id' => $p->get_id()]);
    """, ini=ini(outbox, rx.url, secret))
    pid = res.last_json()["id"]
    reqs = rx.wait_for(1, 15, for_key(f"product:{pid}"))
    assert len(reqs) == 1, [r.json() for r in reqs]
    req = reqs[0]
    env = req.json()
    assert env["type"] == "product.stock_updated"
    d = env["data"]
    assert d["id"] == pid and d["parent_id"] == 0 and d["sku"] == "SKU-STOCK-1" and d["type"] == "simple"
    assert d["stock_quantity"] == 7 and d["stock_status"] == "instock" and d["manage_stock"] is True
    assert d["price"] == "19.90" and d["regular_price"] == "19.90" and d["sale_price"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["date_modified"])
    assert d["site"] == {"url": wp.url, "blog_id": 1}
    # Signed both ways (independent implementations).
    Webhook(secret).verify(req.body, req.headers.lower_dict())
    expected = base64.b64encode(hmac.new(secret.encode(), req.body, hashlib.sha256).digest()).decode()
    assert req.headers["X-WC-Webhook-Signature"] == expected
    assert req.headers["X-WC-Webhook-Topic"] == "product.stock_updated"


def test_wc_update_product_stock_and_variation_carries_parent(wp, rx, outbox):
    res = wp.php("""
        t_flush_at_shutdown();
        [$parent, $vars] = t_variable('SKU-VAR', ['SKU-VAR-S' => 4, 'SKU-VAR-M' => 6]);
        wc_update_product_stock($vars['SKU-VAR-M'], 2, 'decrease');
        out(['parent' => $parent, 'vars' => $vars]);
    """, ini=ini(outbox, rx.url))
    info = res.last_json()
    vid = info["vars"]["SKU-VAR-M"]
    reqs = rx.wait_for(1, 15, for_key(f"product:{vid}"))
    assert len(reqs) == 1
    d = data_of(reqs[0])
    assert topic_of(reqs[0]) == "product.stock_updated"
    assert d["id"] == vid and d["parent_id"] == info["parent"] and d["type"] == "variation"
    assert d["sku"] == "SKU-VAR-M" and d["stock_quantity"] == 4
    # Creating them inside woosync_suppress() sent nothing.
    rx.wait_quiet(0.5)
    assert not [r for r in rx.requests if r.json().get("key") == f"product:{info['vars']['SKU-VAR-S']}"]


def test_order_created_carries_items_then_status_changes(wp, rx, outbox):
    res = wp.php("""
        t_flush_at_shutdown();
        $a = t_product('SKU-ORD-A', 50, '10.00');
        [$parent, $vars] = t_variable('SKU-ORD-V', ['SKU-ORD-V1' => 9]);
        // As the REST API and admin do: wc_create_order() saves the empty order first
        // (woocommerce_new_order fires without items), then items are added and saved.
        $order = wc_create_order(['customer_id' => 0]);
        $order->add_product(wc_get_product($a->get_id()), 2);
        $order->add_product(wc_get_product($vars['SKU-ORD-V1']), 1);
        $order->set_billing_email('buyer@example.test');
        $order->set_billing_first_name('Ada');
        $order->calculate_totals();
        $order->set_status('processing');
        $order->save();
        out(['order' => $order->get_id(), 'a' => $a->get_id(), 'parent' => $parent, 'v' => $vars['SKU-ORD-V1']]);
    """, ini=ini(outbox, rx.url))
    info = res.last_json()
    key = f"order:{info['order']}"
    reqs = rx.wait_for(2, 15, for_key(key))
    rx.wait_quiet(0.5)
    reqs = sorted([r for r in rx.requests if r.json().get("key") == key], key=lambda r: r.json()["sequence"])
    assert [topic_of(r) for r in reqs] == ["order.created", "order.status_changed"], [r.json() for r in reqs]
    created = data_of(reqs[0])
    assert created["id"] == info["order"] and created["number"] == str(info["order"])
    assert created["billing_email"] == "buyer@example.test" and created["billing"]["first_name"] == "Ada"
    assert created["currency"] == "EUR" and created["total"] == "32.50"
    items = created["line_items"]
    assert [(i["product_id"], i["variation_id"], i["sku"], i["quantity"], i["total"]) for i in items] == [
        (info["a"], 0, "SKU-ORD-A", 2, "20"), (info["parent"], info["v"], "SKU-ORD-V1", 1, "12.5")]
    changed = data_of(reqs[1])
    assert (changed["from"], changed["to"]) == ("pending", "processing")
    assert changed["status"] == "processing" and len(changed["line_items"]) == 2

    # A later change in another request: order.updated (coalesced) and status_changed with from/to.
    wp.php(f"""
        t_flush_at_shutdown();
        wc_get_order({info['order']})->update_status('completed');
        out(['ok' => true]);
    """, ini=ini(outbox, rx.url)).last_json()
    rx.wait_for(4, 15, for_key(key))
    rx.wait_quiet(0.5)
    reqs = sorted([r for r in rx.requests if r.json().get("key") == key], key=lambda r: r.json()["sequence"])
    assert [topic_of(r) for r in reqs][2:] == ["order.updated", "order.status_changed"]
    assert (data_of(reqs[3])["from"], data_of(reqs[3])["to"]) == ("processing", "completed")
    assert data_of(reqs[2])["status"] == "completed" and data_of(reqs[2])["date_completed"]


def test_classic_checkout_sends_order_created_at_checkout_processed(wp, rx, outbox):
    res = wp.php("""
        t_flush_at_shutdown();
        $p = t_product('SKU-CHK', 20, '5.00');
        // WC_Checkout::create_order(): a new order object with its items, saved once;
        // woocommerce_new_order fires from the data store before save_items().
        $order = new WC_Order();
        $order->add_product(wc_get_product($p->get_id()), 3);
        $order->set_billing_email('checkout@example.test');
        $order->calculate_totals();
        $order->save();
        $before = count(woosync_events(['key' => 'order:' . $order->get_id()]));
        // includes/class-wc-checkout.php, process_checkout().
        do_action('woocommerce_checkout_order_processed', $order->get_id(), ['payment_method' => 'cod'], $order);
        $after = woosync_events(['key' => 'order:' . $order->get_id()]);
        out(['id' => $order->get_id(), 'before' => $before, 'after' => array_column($after, 'topic')]);
    """, ini=ini(outbox, rx.url))
    r = res.last_json()
    assert r["before"] == 0 and r["after"] == ["order.created"], r
    req = rx.wait_for(1, 15, for_key(f"order:{r['id']}"))[0]
    assert [(i["sku"], i["quantity"]) for i in data_of(req)["line_items"]] == [("SKU-CHK", 3)]
    rx.wait_quiet(0.5)
    assert len([q for q in rx.requests if q.json().get("key") == f"order:{r['id']}"]) == 1


def test_disabled_or_failing_endpoint_is_never_silent(wp, rx, outbox):
    rx.default = Response(410, body=b"gone")
    res = wp.php("""
        $p = t_product('SKU-GONE', 20);
        $p = wc_get_product($p->get_id()); $p->set_stock_quantity(19); $p->save();
        woosync_flush(5);
        out(\\Woosync\\Plugin::instance()->notices()->messages());
    """, ini=ini(outbox, rx.url))
    messages = [m[1] for m in res.last_json()]
    assert any('endpoint "default" is disabled' in m and "410" in m for m in messages), messages
    cli = wp.wp("woosync", "status", ini=ini(outbox, rx.url))
    assert cli.returncode == 0 and 'Warning: WooSync: endpoint "default" is disabled' in cli.stderr, cli.describe()


def test_customer_created_and_updated(wp, rx, outbox):
    res = wp.php("""
        t_flush_at_shutdown();
        $id = wc_create_new_customer('grace@example.test', 'grace', 'pw-' . wp_generate_password());
        $c = new WC_Customer($id);
        $c->set_first_name('Grace');
        $c->set_last_name('Hopper');
        $c->set_billing_city('Arlington');
        $c->save();
        out(['id' => $id]);
    """, ini=ini(outbox, rx.url))
    cid = res.last_json()["id"]
    key = f"customer:{cid}"
    rx.wait_for(2, 15, for_key(key))
    rx.wait_quiet(0.5)
    reqs = sorted([r for r in rx.requests if r.json().get("key") == key], key=lambda r: r.json()["sequence"])
    assert [topic_of(r) for r in reqs] == ["customer.created", "customer.updated"]
    assert data_of(reqs[0])["email"] == "grace@example.test" and data_of(reqs[0])["id"] == cid
    upd = data_of(reqs[1])
    assert (upd["first_name"], upd["last_name"], upd["billing"]["city"]) == ("Grace", "Hopper", "Arlington")
    assert upd["date_modified"]


def test_rapid_stock_changes_coalesce_latest_wins(wp, rx, outbox):
    # The CRM answers slowly, so later changes find earlier ones still waiting.
    rx.default = Response(200, delay=0.4)
    res = wp.php("""
        t_flush_at_shutdown(30);
        $p = t_product('SKU-COAL', 100);
        $p = wc_get_product($p->get_id());
        for ($i = 1; $i <= 25; $i++) {
            $p->set_stock_quantity(100 - $i);
            $p->save();
        }
        out(['id' => $p->get_id()]);
    """, ini=ini(outbox, rx.url), timeout=90)
    pid = res.last_json()["id"]
    key = f"product:{pid}"
    rx.wait_for(1, 30, lambda r: r.json().get("key") == key and data_of(r)["stock_quantity"] == 75)
    rx.wait_quiet(1.0)
    got = [data_of(r)["stock_quantity"] for r in sorted(
        [r for r in rx.requests if r.json().get("key") == key], key=lambda r: r.json()["sequence"])]
    assert got[-1] == 75, got
    assert len(got) < 25, f"nothing was coalesced: {got}"
    assert got == sorted(got, reverse=True), f"out of order: {got}"
    status = wp.php("out(woosync_status());", ini=ini(outbox, rx.url)).last_json()
    assert status["superseded"] >= 25 - len(got)


def test_stock_hook_benchmark_with_crm_blackholed(wp, outbox):
    """Benchmark figure (printed, not asserted): snapshot + dispatch inside the stock hook while
    the CRM accepts connections and never answers."""
    bh = Blackhole()
    try:
        res = wp.php("""
            $p = t_product('SKU-BENCH', 100000);
            $p = wc_get_product($p->get_id());
            $t = [];
            for ($i = 0; $i < 600; $i++) {
                $p->set_stock_quantity(100000 - $i);
                $s = hrtime(true);
                do_action('woocommerce_product_set_stock', $p);
                $t[] = (hrtime(true) - $s) / 1e6;
            }
            sort($t);
            $n = count($t);
            out(['p50' => $t[intdiv($n, 2)], 'p99' => $t[(int) floor($n * 0.99)], 'max' => $t[$n - 1],
                 'events' => count(woosync_events(['key' => 'product:' . $p->get_id(), 'limit' => 1000])),
                 'fallback' => (int) get_option('woosync_fallback_count')]);
        """, ini=ini(outbox, bh.url, timeout="30"), timeout=120)
        r = res.last_json()
    finally:
        bh.stop()
    print(f"\nBENCH stock hook (snapshot + dispatch, CRM blackholed): p50 {r['p50']:.3f} ms, "
          f"p99 {r['p99']:.3f} ms, max {r['max']:.3f} ms (goal: p99 < 2 ms)")
    assert r["events"] >= 1 and r["fallback"] == 0


# ---- loop prevention -----------------------------------------------------------------------------

def test_loop_prevention(wp, rx, outbox):
    res = wp.php("""
        t_flush_at_shutdown();
        $crm = wp_insert_user(['user_login' => 'crm-bot-' . wp_generate_password(6, false), 'user_pass' => wp_generate_password(), 'role' => 'administrator']);
        $s = get_option('woosync_settings', []);
        $s['crm_user'] = $crm;
        update_option('woosync_settings', $s);
        $a = t_product('SKU-LOOP-A', 5);
        $b = t_product('SKU-LOOP-B', 5);
        $c = t_product('SKU-LOOP-C', 5);
        // 1. Code wrapped in woosync_suppress().
        woosync_suppress(function () use ($a) {
            $p = wc_get_product($a->get_id()); $p->set_stock_quantity(1); $p->save();
        });
        // 2. A REST request by the configured CRM user.
        define('REST_REQUEST', true);
        wp_set_current_user($crm);
        $p = wc_get_product($b->get_id()); $p->set_stock_quantity(2); $p->save();
        // 3. The same REST request by someone else is sent (the marker).
        wp_set_current_user(1);
        $p = wc_get_product($c->get_id()); $p->set_stock_quantity(3); $p->save();
        $s['crm_user'] = 0;
        update_option('woosync_settings', $s);
        out(['a' => $a->get_id(), 'b' => $b->get_id(), 'c' => $c->get_id()]);
    """, ini=ini(outbox, rx.url))
    ids = res.last_json()
    rx.wait_for(1, 15, for_key(f"product:{ids['c']}"))
    rx.wait_quiet(0.5)
    keys = {r.json().get("key") for r in rx.requests}
    assert f"product:{ids['a']}" not in keys and f"product:{ids['b']}" not in keys, keys



def test_loop_prevention_for_the_crm_users_rest_requests_over_http(wp, rx, outbox):
    """A real REST request (application password, Basic auth) by the configured CRM user changes
    stock without an echo; the same request by another user is sent."""
    wp.mu_plugin("woosync-test-rest", """
        add_action('rest_api_init', function () {
            register_rest_route('woosync-test/v1', '/stock/(?P<id>\\d+)', array(
                'methods' => 'POST',
                'permission_callback' => function () { return current_user_can('edit_posts'); },
                'callback' => function ($request) {
                    $p = wc_get_product((int) $request['id']);
                    $p->set_stock_quantity((int) $request['qty']);
                    $p->save();
                    return array('stock' => $p->get_stock_quantity());
                },
            ));
        });
    """)
    try:
        res = wp.php("""
            $crm = wp_insert_user(['user_login' => 'crm-rest-' . wp_generate_password(6, false), 'user_pass' => wp_generate_password(), 'role' => 'administrator']);
            [$crm_pw] = WP_Application_Passwords::create_new_application_password($crm, ['name' => 'crm']);
            [$admin_pw] = WP_Application_Passwords::create_new_application_password(1, ['name' => 'other']);
            $s = get_option('woosync_settings', []); $s['crm_user'] = $crm; update_option('woosync_settings', $s);
            $a = t_product('SKU-REST-CRM', 10); $b = t_product('SKU-REST-ADMIN', 10);
            out(['crm' => get_userdata($crm)->user_login, 'crm_pw' => $crm_pw, 'admin_pw' => $admin_pw, 'a' => $a->get_id(), 'b' => $b->get_id()]);
        """, ini=ini(outbox, rx.url))
        info = res.last_json()
        wp.serve(extension=True, ini=ini(outbox, rx.url))
        try:
            for user, pw, pid in ((info["crm"], info["crm_pw"], info["a"]), ("admin", info["admin_pw"], info["b"])):
                req = urllib.request.Request(f"{wp.url}/?rest_route=/woosync-test/v1/stock/{pid}",
                                             data=json.dumps({"qty": 3}).encode(), method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()})
                with urllib.request.urlopen(req, timeout=30) as r:
                    assert json.loads(r.read()) == {"stock": 3}
            # Delivered by the web server's own sender (no other PHP process runs meanwhile).
            rx.wait_for(1, 15, for_key(f"product:{info['b']}"))
        finally:
            wp.stop_server()
        wp.php("woosync_flush(5); out(1);", ini=ini(outbox, rx.url)).last_json()
        rx.wait_quiet(0.5)
        assert f"product:{info['a']}" not in {q.json().get("key") for q in rx.requests}
    finally:
        wp.mu_plugin("woosync-test-rest", None)
        wp.php("$s = get_option('woosync_settings', []); $s['crm_user'] = 0; update_option('woosync_settings', $s); out(1);").last_json()


# ---- filters ---------------------------------------------------------------------------------------

def test_payload_and_should_dispatch_filters(wp, rx, outbox):
    res = wp.php("""
        t_flush_at_shutdown();
        add_filter('woosync_payload', function ($payload, $topic, $product) {
            $payload['crm_ref'] = 'X-' . $product->get_sku();
            return $payload;
        }, 10, 3);
        add_filter('woosync_should_dispatch', function ($send, $topic, $payload) {
            return $payload['sku'] !== 'SKU-VETO';
        }, 10, 3);
        $v = t_product('SKU-VETO', 5); $k = t_product('SKU-KEEP', 5);
        foreach ([$v, $k] as $p) { $p = wc_get_product($p->get_id()); $p->set_stock_quantity(4); $p->save(); }
        out(['veto' => $v->get_id(), 'keep' => $k->get_id()]);
    """, ini=ini(outbox, rx.url))
    ids = res.last_json()
    req = rx.wait_for(1, 15, for_key(f"product:{ids['keep']}"))[0]
    assert data_of(req)["crm_ref"] == "X-SKU-KEEP"
    rx.wait_quiet(0.5)
    assert not [r for r in rx.requests if r.json().get("key") == f"product:{ids['veto']}"]


# ---- HPOS, privacy -------------------------------------------------------------------------------

def test_hpos_compatibility_declared(wp, outbox):
    res = wp.php("out(\\Automattic\\WooCommerce\\Utilities\\FeaturesUtil::$declared);", ini=ini(outbox))
    declared = res.last_json()
    assert any(d[0] == "custom_order_tables" and d[1].endswith("woosync/woosync.php") and d[2] is True
               for d in declared), declared


def test_privacy_exporter_and_eraser(wp, rx, outbox):
    res = wp.php("""
        t_flush_at_shutdown();
        $id = wc_create_new_customer('priv@example.test', 'privy', 'pw-' . wp_generate_password());
        $p = t_product('SKU-PRIV', 3);
        $o = wc_create_order(['customer_id' => $id]);
        $o->add_product(wc_get_product($p->get_id()), 1);
        $o->set_billing_email('priv@example.test');
        $o->save();
        out(['customer' => $id, 'order' => $o->get_id()]);
    """, ini=ini(outbox, rx.url))
    ids = res.last_json()
    rx.wait_for(2, 15, lambda r: r.json().get("key") in (f"customer:{ids['customer']}", f"order:{ids['order']}"))
    # One more change while the extension is missing: it waits in the fallback table.
    wp.php(f"""
        $c = new WC_Customer({ids['customer']}); $c->set_billing_phone('555-0100'); $c->save();
        out(['fallback' => (int) get_option('woosync_fallback_count')]);
    """, extension=False).last_json()
    res = wp.php("""
        $ex = apply_filters('wp_privacy_personal_data_exporters', []);
        $er = apply_filters('wp_privacy_personal_data_erasers', []);
        $export = call_user_func($ex['woosync']['callback'], 'priv@example.test', 1);
        $erase = call_user_func($er['woosync']['callback'], 'priv@example.test', 1);
        $again = call_user_func($ex['woosync']['callback'], 'priv@example.test', 1);
        out(['export' => $export, 'erase' => $erase, 'fallback' => (int) get_option('woosync_fallback_count'),
             'export_after' => $again]);
    """, ini=ini(outbox, rx.url))
    r = res.last_json()
    topics = [next(d["value"] for d in item["data"] if d["name"] == "Topic") for item in r["export"]["data"]]
    assert "customer.created" in topics and "order.created" in topics and "customer.updated" in topics, topics
    assert all("priv@example.test" in json.dumps(item) for item in r["export"]["data"])
    assert r["export"]["done"] is True
    # Delivered outbox events and the fallback row are erased; nothing about the email remains.
    assert r["erase"]["items_removed"] is True and r["erase"]["items_retained"] is False, r["erase"]
    assert r["fallback"] == 0
    assert not any("priv@example.test" in json.dumps(item) for item in r["export_after"]["data"]), r["export_after"]


# ---- the extension missing or failing ------------------------------------------------------------

def test_without_extension_no_fatal_notice_counts_and_cron_replay(wp, rx, outbox):
    wp.mu_plugin("woosync-test-cap", "add_filter('woosync_fallback_cap', function () { return 2; });")
    try:
        res = wp.php("""
            $ids = [];
            foreach (['SKU-NX-1', 'SKU-NX-2', 'SKU-NX-3'] as $sku) {
                $p = t_product($sku, 10);
                $p = wc_get_product($p->get_id()); $p->set_stock_quantity(8); $p->save();
                $ids[] = $p->get_id();
            }
            out(['ids' => $ids, 'loaded' => extension_loaded('woosync'),
                 'count' => (int) get_option('woosync_fallback_count'), 'dropped' => (int) get_option('woosync_fallback_dropped')]);
        """, extension=False)
        r = res.last_json()
        assert "Fatal" not in res.stderr
        assert r["loaded"] is False and r["count"] == 2 and r["dropped"] == 1
        ids = r["ids"]

        # The CLI says what is wrong, with the counts, and exits 1.
        cli = wp.wp("woosync", "status", extension=False)
        assert cli.returncode == 1, cli.describe()
        assert "Error: The woosync PHP extension is not loaded" in cli.stderr
        assert "2 waiting, 1 dropped" in cli.stderr

        # The admin sees a notice saying what is wrong and how to fix it.
        wp.serve(extension=False)
        try:
            status, body, _ = wp.browser("admin", wp.admin_password).request("/wp-admin/")
        finally:
            wp.stop_server()
        assert status == 200
        notice = re.search(r'<div class="notice notice-error woosync-notice"><p>(.*?)</p>', body, re.S)
        assert notice, body[-3000:]
        assert "extension is not loaded" in notice.group(1) and "2 events are kept" in notice.group(1)
        assert "(1 dropped" in notice.group(1) and "extension=/path/to/libwoosync.so" in notice.group(1)
    finally:
        wp.mu_plugin("woosync-test-cap", None)

    # Extension back: WP-Cron replays the kept events in order through woosync_dispatch.
    res = wp.php(f"""
        require '{wpsite.HERE}/server-vars.php';
        standin_server_vars();
        require '{wp.root}/wp-cron.php';
    """, bootstrap=False, ini=ini(outbox, rx.url))
    assert res.returncode == 0, res.describe()
    reqs = rx.wait_for(2, 15, lambda r: r.json().get("key") in (f"product:{ids[0]}", f"product:{ids[1]}"))
    assert sorted(data_of(q)["sku"] for q in reqs) == ["SKU-NX-1", "SKU-NX-2"]
    assert all(data_of(q)["stock_quantity"] == 8 for q in reqs)
    after = wp.php("out(['count' => (int) get_option('woosync_fallback_count'), 'dropped' => (int) get_option('woosync_fallback_dropped'), 'notices' => \\Woosync\\Plugin::instance()->notices()->messages()]);",
                   ini=ini(outbox, rx.url)).last_json()
    assert after["count"] == 0 and after["dropped"] == 1
    assert any("1 events were dropped" in m[1] and "reconcile" in m[1] for m in after["notices"]), after


def test_dispatch_failure_keeps_event_and_says_why(wp, rx, outbox):
    res = wp.php("""
        $p = t_product('SKU-BADCFG', 10);
        $p = wc_get_product($p->get_id()); $p->set_stock_quantity(9); $p->save();
        out(['id' => $p->get_id(), 'count' => (int) get_option('woosync_fallback_count'),
             'failure' => get_option('woosync_last_failure'),
             'notices' => \\Woosync\\Plugin::instance()->notices()->messages()]);
    """, ini=ini(outbox, "ftp://not-a-crm.example"))
    r = res.last_json()
    assert r["count"] == 1 and r["failure"]["class"] == "WooSyncException", r
    assert any("storing events in the outbox fails" in m[1] for m in r["notices"]), r["notices"]
    # Fixed configuration: the cron replay sends it.
    res = wp.php("""
        do_action('woosync_replay_fallback');
        t_flush_at_shutdown();
        out(['count' => (int) get_option('woosync_fallback_count'), 'failure' => get_option('woosync_last_failure')]);
    """, ini=ini(outbox, rx.url))
    assert res.last_json() == {"count": 0, "failure": False}
    req = rx.wait_for(1, 15, for_key(f"product:{r['id']}"))[0]
    assert data_of(req)["stock_quantity"] == 9


# ---- where the outbox lives ----------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outbox_location_private_dir_then_uploads_then_constant(wp):
    # Default: a directory next to (outside) the WordPress root, remembered in an option.
    r = wp.php("out(['ini' => ini_get('woosync.database'), 'option' => get_option('woosync_outbox_path'), 'status' => woosync_status()['database']]);").last_json()
    expected = wp.base / f"woosync-{wp.root.name}" / "outbox.sqlite"
    assert r["ini"] == r["option"] == str(expected), r
    assert _mode(expected.parent) == 0o700 and _mode(expected) == 0o600
    assert not str(expected).startswith(str(wp.root))

    # php.ini says otherwise: the plugin leaves it alone.
    other = wp.base / "from-php-ini.sqlite"
    r = wp.php("out(ini_get('woosync.database'));", ini={"woosync.database": str(other)}).last_json()
    assert r == str(other)

    # No private directory possible: uploads/woosync-<unguessable>/ with deny rules and an index file.
    saved = r = None
    wp.mu_plugin("woosync-test-nodir", "add_filter('woosync_private_dir', '__return_empty_string');")
    try:
        r = wp.php("""
            $saved = get_option('woosync_outbox_path');
            delete_option('woosync_outbox_path');
            $path = \\Woosync\\Outbox_Location::configure();
            $file = woosync_status()['database'];
            update_option('woosync_outbox_path', $saved);
            out(['path' => $path, 'file' => $file, 'uploads' => wp_upload_dir()['basedir']]);
        """).last_json()
    finally:
        wp.mu_plugin("woosync-test-nodir", None)
    path = Path(r["path"])
    assert r["file"] == r["path"]
    assert re.fullmatch(re.escape(r["uploads"]) + r"/woosync-[0-9a-f]{32}/outbox\.sqlite", r["path"]), r
    assert _mode(path.parent) == 0o700 and _mode(path) == 0o600
    assert "Require all denied" in (path.parent / ".htaccess").read_text()
    assert "<deny users=\"*\" />" in (path.parent / "web.config").read_text()
    assert (path.parent / "index.php").is_file()

    # A WOOSYNC_DATABASE constant from wp-config.php wins.
    const = wp.base / "constant" / "outbox-{blog_id}.sqlite"
    wp.mu_plugin("woosync-test-const", f"define('WOOSYNC_DATABASE', '{const}');")
    try:
        r = wp.php("out(woosync_status()['database']);").last_json()
    finally:
        wp.mu_plugin("woosync-test-const", None)
    assert r == str(wp.base / "constant" / "outbox-1.sqlite")


# ---- settings page (real wp-admin over HTTP) -----------------------------------------------------

class _Forms(HTMLParser):
    """Hidden inputs of each <form>, keyed by the form's action."""

    def __init__(self):
        super().__init__()
        self.forms: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append((a.get("action") or "", {}))
        elif tag == "input" and self.forms and (a.get("type") or "").lower() == "hidden" and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value") or ""


def _form(body: str, action: str) -> dict:
    parser = _Forms()
    parser.feed(body)
    for form_action, fields in parser.forms:
        if form_action.endswith(action):
            return dict(fields)
    raise AssertionError(f"no form posting to {action}: {[f[0] for f in parser.forms]}")


def test_settings_save_pushes_endpoint_and_test_button(wp, rx):
    wp.serve(extension=True)
    try:
        b = wp.browser("admin", wp.admin_password)
        status, body, _ = b.request("/wp-admin/options-general.php?page=woosync")
        assert status == 200 and "woosync_settings[url]" in body
        form = _form(body, "options.php")
        assert form["option_page"] == "woosync" and form["_wpnonce"]
        post = dict(form)
        post.update({"woosync_settings[url]": rx.url, "woosync_settings[secret]": "",
                     "woosync_settings[generate_secret]": "1", "woosync_settings[enabled]": "1",
                     "woosync_settings[topics][]": ["product.stock_updated", "order.created"]})
        status, body, _ = b.request("/wp-admin/options.php", post)
        assert status == 200, body[-2000:]
        m = re.search(r'id="woosync-new-secret">(whsec_[A-Za-z0-9+/=]+)</code>', body)
        assert m, body[-3000:]
        secret = m.group(1)

        # Pushed to the extension as endpoint `wordpress` (secret masked in the outbox's answers).
        eps = wp.php("out(woosync_endpoints());").last_json()
        ep = next(e for e in eps if e["name"] == "wordpress")
        assert ep["url"] == rx.url and ep["enabled"] is True
        assert secret not in json.dumps(eps)
        assert set(ep["topics"]) == {"product.stock_updated", "order.created", "woosync.*"}

        # Shown masked afterwards, never in full.
        status, body, _ = b.request("/wp-admin/options-general.php?page=woosync")
        assert secret not in body and secret[:10] + "…" + secret[-4:] in body

        # "Send test event": signed with the new secret, result shown on the page.
        test_form = _form(body, "admin-post.php")
        assert test_form["action"] == "woosync_send_test"
        status, body, _ = b.request("/wp-admin/admin-post.php", test_form)
        assert status == 200
        result = re.search(r'id="woosync-test-result"><p>(.*?)</p>', body, re.S)
        assert result and "Test event evt_" in result.group(1) and "wordpress: delivered (HTTP 200)" in result.group(1), result.group(1) if result else body[-3000:]
        req = rx.wait_for(1, 15, lambda r: r.json()["type"] == "woosync.test")[0]
        Webhook(secret).verify(req.body, req.headers.lower_dict())
        assert req.headers["X-WC-Webhook-Source"] == wp.url

        # Forged saves are rejected: bad nonce (admin), and a subscriber with a valid nonce.
        before = wp.php("out(get_option('woosync_settings'));").last_json()
        forged = dict(post, _wpnonce="0123456789")
        forged["woosync_settings[url]"] = "http://attacker.example/"
        forged.pop("woosync_settings[generate_secret]")
        status, body, _ = b.request("/wp-admin/options.php", forged)
        assert status == 403 and "link you followed has expired" in body
        status, body, _ = b.request("/wp-admin/admin-post.php", {"action": "woosync_send_test", "_wpnonce": "bad"})
        assert status == 403

        pw = "sub-" + os.urandom(6).hex()
        wp.php(f"out(wp_insert_user(['user_login' => 'subscriber1', 'user_pass' => '{pw}', 'role' => 'subscriber']));").last_json()
        sb = wp.browser("subscriber1", pw)
        status, body, _ = sb.request("/wp-admin/options-general.php?page=woosync")
        assert status == 403
        cookie = next(c for c in sb.jar if c.name.startswith("wordpress_logged_in_"))
        token = urllib.parse.unquote(cookie.value).split("|")[2]
        nonce = wp.php(f"""
            $u = get_user_by('login', 'subscriber1');
            out(substr(wp_hash(wp_nonce_tick() . '|woosync-options|' . $u->ID . '|{token}', 'nonce'), -12, 10));
        """).last_json()
        status, body, _ = sb.request("/wp-admin/options.php", dict(forged, _wpnonce=nonce))
        assert status == 403 and "not allowed" in body, body[-1500:]
        assert wp.php("out(get_option('woosync_settings'));").last_json() == before
        eps = wp.php("out(woosync_endpoints());").last_json()
        assert next(e for e in eps if e["name"] == "wordpress")["url"] == rx.url
    finally:
        wp.stop_server()


def test_php_ini_endpoint_works_next_to_the_plugin_endpoint(wp, rx):
    other = Receiver()
    other.start()
    try:
        res = wp.php(f"""
            t_flush_at_shutdown();
            $s = get_option('woosync_settings'); $s['url'] = '{rx.url}'; $s['topics'] = array_keys(\\Woosync\\Settings::topics()); update_option('woosync_settings', $s);
            $p = t_product('SKU-BOTH', 3);
            $p = wc_get_product($p->get_id()); $p->set_stock_quantity(2); $p->save();
            out(['id' => $p->get_id(), 'endpoints' => array_column(woosync_endpoints(), 'name')]);
        """, ini={"woosync.endpoint": other.url, "woosync.retry_delays": "0.2,0.2"})
        r = res.last_json()
        assert {"default", "wordpress"} <= set(r["endpoints"])
        a = rx.wait_for(1, 15, for_key(f"product:{r['id']}"))[0]
        b = other.wait_for(1, 15, for_key(f"product:{r['id']}"))[0]
        assert a.json()["id"] == b.json()["id"]
    finally:
        other.stop()
        # Leave the site without a CRM URL: the endpoint is deleted from the outbox.
        r = wp.php("""
            $s = get_option('woosync_settings'); $s['url'] = ''; update_option('woosync_settings', $s);
            out(array_column(woosync_endpoints(), 'name'));
        """).last_json()
        assert "wordpress" not in r


# ---- wp woosync ----------------------------------------------------------------------------------

def _table_rows(text: str) -> list[dict]:
    lines = [l for l in text.splitlines() if l.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, [c.strip() for c in l.strip("|").split("|")])) for l in lines[1:]]


def test_cli_subcommands_table_and_json(wp, rx, outbox):
    cfg = ini(outbox, rx.url)
    res = wp.php("""
        t_flush_at_shutdown();
        $p = t_product('SKU-CLI', 10);
        $p = wc_get_product($p->get_id()); $p->set_stock_quantity(6); $p->save();
        out(['id' => $p->get_id()]);
    """, ini=cfg)
    pid = res.last_json()["id"]
    key = f"product:{pid}"
    first = rx.wait_for(1, 15, for_key(key))[0]
    event_id = first.json()["id"]

    # status
    t = wp.wp("woosync", "status", ini=cfg)
    assert t.returncode == 0, t.describe()
    rows = {r["field"]: r["value"] for r in _table_rows(t.stdout.split("Endpoints:")[0])}
    assert rows["outbox"] == str(outbox) and rows["outbox_chosen_by"] == "php.ini" and int(rows["delivered"]) >= 1
    assert any(r["name"] == "default" and r["url"] == rx.url for r in _table_rows(t.stdout.split("Endpoints:")[1]))
    j = wp.wp("woosync", "status", "--format=json", ini=cfg)
    status = json.loads(j.stdout)
    assert status["outbox"] == str(outbox) and status["delivered"] >= 1 and status["pending"] == 0
    assert status["fallback_waiting"] == 0 and any(e["name"] == "default" for e in status["endpoints"])
    y = wp.wp("woosync", "status", "--format=yaml", ini=cfg)
    assert y.returncode == 0 and y.stdout.startswith("---") and "field: outbox" in y.stdout

    # list
    t = wp.wp("woosync", "list", f"--key={key}", ini=cfg)
    rows = _table_rows(t.stdout)
    assert [(r["id"], r["topic"], r["state"], r["last_status"]) for r in rows] == [
        (event_id, "product.stock_updated", "delivered", "200")], t.stdout
    j = json.loads(wp.wp("woosync", "list", f"--key={key}", "--format=json", ini=cfg).stdout)
    assert j[0]["id"] == event_id and j[0]["endpoint"] == "default" and j[0]["attempts"] == 1
    c = wp.wp("woosync", "list", "--topic=product.stock_updated", "--status=delivered", "--format=csv", ini=cfg)
    assert c.stdout.splitlines()[0].startswith("id,topic,key,endpoint,state") and event_id in c.stdout

    # show
    t = wp.wp("woosync", "show", event_id, ini=cfg)
    assert t.returncode == 0 and f"Event:    {event_id}" in t.stdout
    payload_text = t.stdout.split("Payload:\n")[1].split("\nDeliveries:")[0]
    assert json.loads(payload_text)["sku"] == "SKU-CLI" and '\n    "sku": "SKU-CLI"' in payload_text
    attempts = _table_rows(t.stdout.split("Attempts:")[1])
    assert attempts[0]["http_status"] == "200" and attempts[0]["endpoint"] == "default"
    j = json.loads(wp.wp("woosync", "show", event_id, "--format=json", ini=cfg).stdout)
    assert j["id"] == event_id and j["payload"]["stock_quantity"] == 6 and j["attempts"][0]["http_status"] == 200
    bad = wp.wp("woosync", "show", "evt_01AAAAAAAAAAAAAAAAAAAAAAAA", ini=cfg)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ")

    # retry <id>: replayed with the same id
    t = wp.wp("woosync", "retry", event_id, ini=cfg)
    assert t.returncode == 0 and "Success: Requeued 1 of 1 events." in t.stdout, t.describe()
    again = rx.wait_for(2, 15, lambda r: r.json()["id"] == event_id)
    assert again[1].body == again[0].body

    # retry --dead: a 400 makes the next event dead at once; after the fix it is delivered.
    rx.script(Response(400, body=b"bad"))
    wp.php(f"""
        t_flush_at_shutdown();
        $p = wc_get_product({pid}); $p->set_stock_quantity(5); $p->save();
        out(1);
    """, ini=cfg).last_json()
    dead = json.loads(wp.wp("woosync", "list", "--status=dead", f"--key={key}", "--format=json", ini=cfg).stdout)
    assert len(dead) == 1, dead
    t = wp.wp("woosync", "retry", "--dead", ini=cfg)
    assert t.returncode == 0 and "Success: Requeued 1 dead deliveries." in t.stdout, t.describe()
    rx.wait_for(2, 15, lambda r: r.json()["id"] == dead[0]["id"])
    bad = wp.wp("woosync", "retry", ini=cfg)
    assert bad.returncode == 1 and "Error: Give event ids, or --dead." in bad.stderr

    # test
    t = wp.wp("woosync", "test", "--endpoint=default", ini=cfg)
    assert t.returncode == 0 and "default: delivered (HTTP 200)" in t.stdout, t.describe()
    assert rx.wait_for(1, 5, lambda r: r.json()["type"] == "woosync.test")
    rx.script(Response(400))
    t = wp.wp("woosync", "test", "--endpoint=default", ini=cfg)
    assert t.returncode == 1 and "Error: Test event" in t.stderr and "dead" in t.stderr, t.describe()

    # purge
    t = wp.wp("woosync", "purge", "--older-than=0", ini=cfg)
    assert t.returncode == 0 and re.search(r"Success: Purged \d+ events older than 0 days\.", t.stdout), t.describe()
    bad = wp.wp("woosync", "purge", "--older-than=soon", ini=cfg)
    assert bad.returncode == 1 and "Error: --older-than must be a number" in bad.stderr

    # unknown subcommand
    bad = wp.wp("woosync", "frobnicate", ini=cfg)
    assert bad.returncode == 1 and "is not a registered subcommand" in bad.stderr


def test_cli_reconcile_with_progress(wp, rx, outbox):
    cfg = ini(outbox, rx.url)
    res = wp.php("""
        woosync_suppress(function () {
            for ($i = 0; $i < 300; $i++) {
                $p = new WC_Product_Simple();
                $p->set_name("Bulk $i"); $p->set_sku("SKU-BULK-$i"); $p->set_regular_price('1.00');
                $p->set_manage_stock(true); $p->set_stock_quantity($i); $p->save();
            }
            $o = wc_create_order();
            $o->add_product($p, 1);
            $o->calculate_totals();
            $o->save();
        });
        $all = wc_get_products(['type' => array_merge(array_keys(wc_get_product_types()), ['variation']), 'limit' => -1, 'return' => 'ids', 'status' => ['publish', 'private', 'draft', 'pending']]);
        out(['total' => count($all)]);
    """, ini=cfg, timeout=240)
    total = res.last_json()["total"]
    assert total >= 300
    assert rx.count() == 0  # created inside woosync_suppress(): nothing sent

    t = wp.wp("woosync", "reconcile", "--products", "--batch-size=50", ini=cfg, timeout=240)
    assert t.returncode == 0, t.describe()
    assert f"Reconciling products  {total}/{total}" in t.stderr, t.stderr
    m = re.search(r"Success: Reconciled (\d+) products, (\d+) variations and 0 orders\.", t.stdout)
    assert m and int(m.group(1)) + int(m.group(2)) == total, t.stdout
    reqs = rx.wait_for(total, 120, lambda r: r.json()["type"] == "product.stock_updated")
    bulk = {data_of(r)["sku"]: data_of(r) for r in reqs if data_of(r)["sku"].startswith("SKU-BULK-")}
    assert len(bulk) == 300 and all(d["reconcile"] is True for d in bulk.values())
    assert bulk["SKU-BULK-42"]["stock_quantity"] == 42

    t = wp.wp("woosync", "reconcile", "--orders", "--since=2000-01-01", ini=cfg, timeout=120)
    assert t.returncode == 0, t.describe()
    m = re.search(r"Reconciling orders  (\d+)/(\d+)", t.stderr)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) >= 1
    assert re.search(r"Success: Reconciled 0 products, 0 variations and [1-9]\d* orders\.", t.stdout)
    rx.wait_for(1, 30, lambda r: r.json()["type"] == "order.updated" and data_of(r).get("reconcile") is True)

    bad = wp.wp("woosync", "reconcile", "--orders", "--since=not a date", ini=cfg)
    assert bad.returncode == 1 and "Error: Cannot read the date" in bad.stderr


# ---- multisite -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def network(wp):
    site = wpsite.Site(wp.base, wp.db, "network", wp.so, multisite_domain="ms.example.test")
    site.install()
    res = site.php("""
        $id = wpmu_create_blog('ms.example.test', '/shop2/', 'Shop 2', 1);
        out(['blog' => is_wp_error($id) ? $id->get_error_message() : $id]);
    """, timeout=120)
    assert res.last_json() == {"blog": 2}, res.describe()
    return site


def test_multisite_each_site_has_its_own_outbox_and_events(network, rx):
    cfg = {"woosync.endpoint": rx.url, "woosync.retry_delays": "0.2,0.2"}
    site2 = network.url + "/shop2/"
    ids = {}
    for url, sku in ((network.url + "/", "SKU-MS-1"), (site2, "SKU-MS-2")):
        res = network.php(f"""
            t_flush_at_shutdown();
            $p = t_product('{sku}', 5);
            $p = wc_get_product($p->get_id()); $p->set_stock_quantity(4); $p->save();
            out(['id' => $p->get_id(), 'blog' => get_current_blog_id(), 'outbox' => woosync_status()['database']]);
        """, ini=cfg, env={"WOOSYNC_WP_URL": url})
        ids[sku] = res.last_json()
    one, two = ids["SKU-MS-1"], ids["SKU-MS-2"]
    assert (one["blog"], two["blog"]) == (1, 2)
    assert one["outbox"] != two["outbox"]
    assert one["outbox"].endswith("outbox-site-1.sqlite") and two["outbox"].endswith("outbox-site-2.sqlite")

    reqs = rx.wait_for(2, 15, lambda r: data_of(r).get("sku") in ("SKU-MS-1", "SKU-MS-2"))
    by_sku = {data_of(r)["sku"]: data_of(r)["site"] for r in reqs}
    assert by_sku["SKU-MS-1"] == {"url": "http://ms.example.test", "blog_id": 1}
    assert by_sku["SKU-MS-2"] == {"url": "http://ms.example.test/shop2", "blog_id": 2}

    # One site's CLI never shows the other's events.
    l1 = json.loads(network.wp("woosync", "list", "--format=json", ini=cfg, url=network.url + "/").stdout)
    l2 = json.loads(network.wp("woosync", "list", "--format=json", ini=cfg, url=site2).stdout)
    assert {r["key"] for r in l1 if r["topic"] == "product.stock_updated"} == {f"product:{one['id']}"}
    assert {r["key"] for r in l2 if r["topic"] == "product.stock_updated"} == {f"product:{two['id']}"}

    # Code on site 1 that switches to site 2 writes to site 2's outbox, as site 2.
    res = network.php(f"""
        t_flush_at_shutdown();
        switch_to_blog(2);
        $p = wc_get_product({two['id']}); $p->set_stock_quantity(1); $p->save();
        $db2 = woosync_status()['database'];
        restore_current_blog();
        out(['in_2' => $db2, 'back' => woosync_status()['database']]);
    """, ini=cfg, env={"WOOSYNC_WP_URL": network.url + "/"})
    r = res.last_json()
    assert r["in_2"] == two["outbox"] and r["back"] == one["outbox"]
    req = rx.wait_for(1, 15, lambda q: data_of(q).get("sku") == "SKU-MS-2" and data_of(q)["stock_quantity"] == 1)[0]
    assert data_of(req)["site"]["blog_id"] == 2
    l2 = json.loads(network.wp("woosync", "list", f"--key=product:{two['id']}", "--format=json", ini=cfg, url=site2).stdout)
    assert len(l2) == 2


def test_no_php_warnings_from_the_plugin(wp):
    """Runs last: nothing the plugin did in this session left a PHP warning or notice in WordPress's
    debug log (WP_DEBUG is on)."""
    lines = [l for log in sorted(wp.base.glob("*-debug.log")) for l in log.read_text(errors="replace").splitlines()]
    ours = [l for l in lines if ("/php/woosync/" in l or "plugins/woosync/" in l or "woocommerce-standin" in l)
            and ("PHP " in l or "Deprecated" in l)]
    assert not ours, "\n".join(ours[:20])
