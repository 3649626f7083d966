"""What a checkout pays for WooCommerce's own webhooks: WooCommerce's default path (Action Scheduler)
against woosync delivering them (issue 15), with 1 and 5 active `order.created` webhooks.

    /work/main/.venv/bin/python bench/wc_webhooks_cost.py --so target/release/libwoosync.so [--checkouts 25]

One throw-away shop (the real WordPress 7.0.4 + WooCommerce 11.0.1 through tests/wp/wpsite.py, php -S
with one worker, the extension loaded in every variant), real Store API checkouts (cart → add-item →
checkout, cash on delivery) by a Python client. A must-use plugin times, inside each checkout request,
the webhook work done at `shutdown` (WooCommerce's wc_webhook_execute_queue, which schedules one Action
Scheduler job per webhook, plus woosync's Wc_Webhooks::deliver_queue, which builds each payload with
WC_Webhook::build_payload() and stores it) and the whole request (REQUEST_TIME_FLOAT to the end of
`shutdown`). Variants: `none` (no webhook), `wc-1`/`wc-5` (WooCommerce's default), `woosync-1`/`woosync-5`
(`wp woosync wc-webhooks enable`). Medians and 90th percentiles per variant, as a Markdown table.
WooCommerce's path builds the same payloads later, in the Action Scheduler runner; that cost is not in
the checkout and not measured here.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "wp")]

import wpsite  # noqa: E402
from receiver import Receiver  # noqa: E402
from test_wp_orders import Shopper  # noqa: E402

TIMING_MU = r"""
$GLOBALS['b_hook_ns'] = 0;
add_action('plugins_loaded', function () {
    global $wp_filter;
    foreach ([['shutdown', 10]] as [$name, $prio]) {
        foreach ($wp_filter[$name]->callbacks[$prio] ?? [] as $idx => $cb) {
            $f = $cb['function'];
            $ours = is_array($f) && is_object($f[0]) && 'Woosync\Wc_Webhooks' === get_class($f[0]) && 'deliver_queue' === $f[1];
            if ('wc_webhook_execute_queue' === $f || $ours) {
                $wp_filter[$name]->callbacks[$prio][$idx]['function'] = function (...$a) use ($f) {
                    $t = hrtime(true);
                    try { return $f(...$a); } finally { $GLOBALS['b_hook_ns'] += hrtime(true) - $t; }
                };
            }
        }
    }
}, PHP_INT_MAX);
add_action('shutdown', function () {
    if (false !== strpos($_GET['rest_route'] ?? '', '/checkout') && 'POST' === ($_SERVER['REQUEST_METHOD'] ?? '')) {
        file_put_contents(getenv('B_TIMING'), json_encode([
            'webhooks_ms' => $GLOBALS['b_hook_ns'] / 1e6,
            'request_ms' => (microtime(true) - $_SERVER['REQUEST_TIME_FLOAT']) * 1000,
        ]) . "\n", FILE_APPEND);
    }
}, PHP_INT_MAX);
"""


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--so", required=True)
    ap.add_argument("--checkouts", type=int, default=25)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="wpt-bench-", dir="/tmp"))
    base.chmod(0o755)
    db = None
    site = None
    rx = Receiver().start()
    try:
        wpsite.ensure_packages()
        realwp = wpsite.unpack(base / "realwp")
        db = wpsite.MariaDB(base)
        db.start()
        site = wpsite.Site(base, db, "shop", Path(args.so).resolve(), realwp)
        site.install()
        site.mu_plugin("allow-receiver", "add_filter('http_allowed_safe_ports', function ($p) { $p[] = %d; return $p; });" % rx.port)
        site.mu_plugin("timing", TIMING_MU)
        product = site.php("""
            $p = new WC_Product_Simple(); $p->set_name('Bench'); $p->set_regular_price('9.99'); $p->set_manage_stock(true);
            $p->set_stock_quantity(100000); $p->save(); out($p->get_id());
        """).last_json()
        site.save_state()
        rows = []
        for variant in ("none", "wc-1", "woosync-1", "wc-5", "woosync-5"):
            site.restore_state()
            outbox = base / f"{variant}.sqlite"
            timing = base / f"{variant}.timing"
            ini = {"woosync.database": str(outbox)}
            n = 0 if variant == "none" else int(variant.split("-")[1])
            for i in range(n):
                site.php(f"""
                    $w = new WC_Webhook(); $w->set_name('bench {i}'); $w->set_user_id(1); $w->set_topic('order.created');
                    $w->set_secret('bench-secret'); $w->set_delivery_url('{rx.url_for(f"/hook{i}")}');
                    $w->set_status('active'); $w->set_api_version('wp_api_v3'); $w->save(); out($w->get_id());
                """, ini=ini).last_json()
            if variant.startswith("woosync"):
                site.wp_ok("woosync", "wc-webhooks", "enable", ini=ini)
            before = len(rx.requests)
            os.environ["B_TIMING"] = str(timing)  # reaches php -S through Site.env()
            site.serve(extension=True, ini=ini, workers=1)
            for k in range(args.checkouts + 3):
                s = Shopper(site)
                status, body = s.store_api_checkout([(product, 1)], f"bench{k}@example.test")
                assert status == 200, body
            # Where the deliveries went: woosync sends them (all of them arrive); WooCommerce's
            # default leaves one Action Scheduler job per webhook and order for its runner.
            if variant.startswith("woosync"):
                site.php("out(woosync_flush(120));", ini=ini).last_json()
            delivered = len(rx.requests) - before
            # Every delivery is the order itself (not an error document of the REST API).
            assert all("line_items" in r.json() for r in rx.requests[before:]), variant
            jobs = site.php("out(count(as_get_scheduled_actions(['hook' => 'woocommerce_deliver_webhook_async', 'status' => 'pending', 'per_page' => -1], 'ids')));", ini=ini).last_json()
            expected = n * (args.checkouts + 3)
            assert (delivered, jobs) == ((expected, 0) if variant.startswith("woosync") else (0, expected)), (variant, delivered, jobs)
            site.stop_server()
            got = [json.loads(line) for line in timing.read_text().splitlines()][3:]  # 3 warm-up checkouts
            hooks = [g["webhooks_ms"] for g in got]
            req = [g["request_ms"] for g in got]
            rows.append((variant, len(got), statistics.median(hooks), pct(hooks, 0.9), statistics.median(req), pct(req, 0.9)))
            print(f"{variant}: {rows[-1]}", file=sys.stderr, flush=True)
        print("| variant | checkouts | webhook work at shutdown, median ms | p90 ms | whole checkout request, median ms | p90 ms |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.0f} | {r[5]:.0f} |")
    finally:
        if site is not None:
            site.stop_server()
        if db is not None:
            db.stop()
        rx.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
