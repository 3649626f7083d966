"""Two requests change one product at the same time: the CRM's last word is what the shop stores.

Found by the checkout bench (WooCommerce webhooks through woosync, CRM slow): one product ended at
the CRM with a stock figure the shop no longer had. Request A read the product, request B changed
it, read it and dispatched; then A dispatched what it had read, and per-key order delivered A's
stale figure last. WooCommerce's own stock code adds a second way: wc_update_product_stock()
computes the new figure from a read taken before its UPDATE, so two concurrent decrements both
report the same figure.

The interleavings are forced, not hoped for: a must-use plugin holds request A at a chosen point
(`T_HOLD_AT`) until the test lets it go; meanwhile request B runs. Where the plugin serialises
"read, then dispatch" per resource (a GET_LOCK in WordPress's database), B waits for A: the test
sees B waiting on the lock in MariaDB's process list, or B finishing, and only then lets A go.
"""
from __future__ import annotations

import json
import threading
import time

from wp_helpers import ini, of_key

HOLD_MU = r"""
// B must not give up on the lock while the test holds A (the default wait is 5 s; a loaded CI
// machine may take a while to notice B waiting and let A go).
add_filter('woosync_resource_lock_wait', function () { return 60; });
function t_hold_here() {
    $f = getenv('T_HOLD');
    if (!$f || file_exists("$f.reached")) { return; }
    touch("$f.reached");
    $until = microtime(true) + 90;
    while (!file_exists("$f.go") && microtime(true) < $until) { usleep(20000); }
}
add_filter('woocommerce_update_product_stock_query', function ($sql) {
    if ('stock_query' === getenv('T_HOLD_AT')) { t_hold_here(); }
    return $sql;
});
add_filter('woosync_payload', function ($p, $topic) {
    if ('payload' === getenv('T_HOLD_AT') && 'product.stock_updated' === $topic) { t_hold_here(); }
    return $p;
}, 10, 2);
add_filter('woocommerce_webhook_payload', function ($p, $resource) {
    if ('wc_payload' === getenv('T_HOLD_AT') && 'product' === $resource) { t_hold_here(); }
    return $p;
}, 10, 2);
"""


def interleave(wp, tmp_path, hold_at: str, code_a: str, code_b: str, cfg: dict) -> dict:
    """Runs A until it reaches `hold_at`, then B until it ends or waits on a lock, then lets A go.
    Returns what happened to B while A was held."""
    wp.mu_plugin("hold", HOLD_MU)
    hold = tmp_path / "hold"
    results: dict = {}

    def run(name, code, env):
        try:
            results[name] = wp.php("t_flush_at_shutdown(20);\n" + code + "\nout('ok');", ini=cfg, env=env, timeout=150)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            results[name] = e

    a = threading.Thread(target=run, args=("a", code_a, {"T_HOLD": str(hold), "T_HOLD_AT": hold_at}))
    a.start()
    deadline = time.monotonic() + 90
    while not hold.with_suffix(".reached").exists():
        assert a.is_alive() and time.monotonic() < deadline, f"A never reached {hold_at}: {results.get('a')}"
        time.sleep(0.05)
    b = threading.Thread(target=run, args=("b", code_b, {}))
    b.start()
    b_waited_on_lock = False
    while b.is_alive() and time.monotonic() < deadline:
        waiting = wp.db.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User lock'").strip()
        if waiting not in ("", "0"):
            b_waited_on_lock = True
            break
        time.sleep(0.1)
    b_done_while_a_held = not b.is_alive()
    hold.with_suffix(".go").touch()
    a.join(150)
    b.join(150)
    for name in ("a", "b"):
        r = results.get(name)
        assert r is not None and not isinstance(r, BaseException), (name, r)
        assert r.returncode == 0, (name, r.describe())
    return {"b_waited_on_lock": b_waited_on_lock, "b_done_while_a_held": b_done_while_a_held}


def stored_stock(wp, cfg, pid: int) -> int:
    return wp.php(f"out((int) get_post_meta({pid}, '_stock', true));", ini=cfg).last_json()


def new_product(wp, cfg, stock: int) -> int:
    return wp.php(f"out(t_product('CC-' . wp_generate_password(6, false), {stock})->get_id());", ini=cfg).last_json()


def test_two_concurrent_decrements_the_crm_gets_the_stored_stock(wp, rx, outbox, tmp_path):
    """A computes 10 - 1 = 9 and is held before its UPDATE; B decrements (9 stored, 9 sent); A's
    UPDATE stores 8. WooCommerce hands A's hook the 9 it computed; the CRM must end with 8."""
    cfg = ini(outbox, rx.url)
    pid = new_product(wp, cfg, 10)
    dec = f"wc_update_product_stock(wc_get_product({pid}), 1, 'decrease');"
    interleave(wp, tmp_path, "stock_query", dec, dec, cfg)
    assert stored_stock(wp, cfg, pid) == 8
    rx.wait_for(1, 30, lambda r: r.json().get("key") == f"product:{pid}" and r.json()["data"]["stock_quantity"] == 8)
    rx.wait_quiet(0.5)
    events = of_key(rx, f"product:{pid}")
    assert events[-1].json()["data"]["stock_quantity"] == 8, [e.json()["data"]["stock_quantity"] for e in events]
    assert events[-1].json()["data"]["stock_status"] == "instock"


def test_a_later_change_is_not_overtaken_by_an_earlier_read(wp, rx, outbox, tmp_path):
    """A sets 5 and is held after reading, before dispatching; B sets 4. B must not dispatch
    before A (it waits for A's lock), so the CRM's last word is 4."""
    cfg = ini(outbox, rx.url)
    pid = new_product(wp, cfg, 10)
    seen = interleave(wp, tmp_path, "payload",
                      f"wc_update_product_stock(wc_get_product({pid}), 5);",
                      f"wc_update_product_stock(wc_get_product({pid}), 4);", cfg)
    assert stored_stock(wp, cfg, pid) == 4
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
            of_key(rx, f"product:{pid}") and of_key(rx, f"product:{pid}")[-1].json()["data"]["stock_quantity"] == 4):
        time.sleep(0.1)
    rx.wait_quiet(0.5)
    got = [e.json()["data"]["stock_quantity"] for e in of_key(rx, f"product:{pid}")]
    assert got and got[-1] == 4, got
    assert seen["b_waited_on_lock"] and not seen["b_done_while_a_held"], seen


def through_wc_webhook(wp, rx, outbox, tmp_path, hold_at: str, code_a: str, code_b: str, stock: int = 10):
    """interleave() with WooCommerce's own product.updated webhook delivered by woosync; returns
    what interleave() saw, the product id and the stock figures the CRM got, in arrival order."""
    from test_wp_wc_webhooks import ALLOW_RECEIVER, cfg as wc_cfg, deliveries, make_webhook
    wp.mu_plugin("allow-receiver", ALLOW_RECEIVER % rx.port)
    cfg = wc_cfg(outbox)
    pid = new_product(wp, cfg, stock)
    make_webhook(wp, outbox, "product.updated", rx.url_for("/hook"))
    wp.wp_ok("woosync", "wc-webhooks", "enable", ini=cfg)
    seen = interleave(wp, tmp_path, hold_at, code_a % {"pid": pid}, code_b % {"pid": pid}, cfg)

    def mine():
        return [r for r in deliveries(rx.requests) if r.path == "/hook" and r.json().get("id") == pid]
    deadline = time.monotonic() + 30
    while len(mine()) < 2 and time.monotonic() < deadline:  # one delivery per request
        time.sleep(0.1)
    rx.wait_quiet(0.5)
    return seen, pid, cfg, [r.json()["stock_quantity"] for r in mine()]


def test_woocommerce_webhook_of_a_product_is_not_overtaken_by_an_earlier_read(wp, rx, outbox, tmp_path):
    """The same for WooCommerce's own product.updated webhook delivered by woosync: its payload
    is built at the end of each request (WC_Webhook::build_payload through the REST API)."""
    seen, pid, cfg, got = through_wc_webhook(wp, rx, outbox, tmp_path, "wc_payload",
                                             "wc_update_product_stock(wc_get_product(%(pid)d), 5);",
                                             "wc_update_product_stock(wc_get_product(%(pid)d), 4);")
    assert stored_stock(wp, cfg, pid) == 4
    assert got and got[-1] == 4, got
    assert seen["b_waited_on_lock"] and not seen["b_done_while_a_held"], seen
    assert json.loads(wp.wp_ok("woosync", "wc-webhooks", "status", "--format=json", ini=cfg).stdout)["enabled"]


def test_woocommerce_webhook_is_built_from_the_database_not_the_requests_product_cache(wp, rx, outbox, tmp_path):
    """A sets the stock to 5 and then reads the product again (a checkout does: emails, the order's
    line items), which puts it in WooCommerce's product instance cache (on for new shops since
    WooCommerce 10); meanwhile B sets 4 and delivers it. A's product.updated, built at the end of
    its request, must come from the database (4), not from A's cached object (5). The checkout
    bench caught the CRM ending with such a cached figure."""
    caching = wp.php("out(\\Automattic\\WooCommerce\\Utilities\\FeaturesUtil::feature_is_enabled('product_instance_caching'));"
                     ).last_json()
    assert caching is True, "the shop was expected to have WooCommerce's product instance cache on"
    _, pid, cfg, got = through_wc_webhook(
        wp, rx, outbox, tmp_path, "explicit",
        "wc_update_product_stock(wc_get_product(%(pid)d), 5); wc_get_product(%(pid)d)->get_stock_quantity(); t_hold_here();",
        "wc_update_product_stock(wc_get_product(%(pid)d), 4);")
    assert stored_stock(wp, cfg, pid) == 4
    assert got and got[-1] == 4, got
