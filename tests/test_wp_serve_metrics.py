"""`wp woosync serve`, `wp woosync metrics`, the /wp-json/woosync/v1/metrics route and Tools → Site
Health (issue 13, plugin side), through the real WordPress 7 + WooCommerce 11 + WP-CLI 2.12.0 shop,
php-fpm, and PyPI's prometheus_client parser as the independent checker."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

from chaos_support import Fpm
from helpers import LineReader
from receiver import Receiver, Response, closed_port
from wp_helpers import make_secret


def parse(text: str) -> dict:
    """{(name, frozenset(labels)): value} from the official parser."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def wp_popen(wp, *args: str, ini: dict) -> subprocess.Popen:
    """The real WP-CLI as a running process (Site.wp waits for it to end)."""
    argv = ["bash", str(wp.realwp.wpcli), f"--path={wp.root}", "--allow-root", *args]
    env = wp.env({"WP_CLI_PHP": wpsite_php(), "WP_CLI_PHP_ARGS": " ".join(wp.php_args(True, ini, for_wpcli=True)),
                  "WP_CLI_CONFIG_PATH": str(wp.wpcli_home / "config.yml"),
                  "WP_CLI_CACHE_DIR": str(wp.wpcli_home / "cache"), "WP_CLI_DISABLE_AUTO_CHECK_UPDATE": "1",
                  "HOME": str(wp.wpcli_home)})
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def wpsite_php() -> str:
    import wpsite
    return wpsite.PHP


def test_wp_woosync_serve_delivers_retries_on_a_quiet_php_fpm_site(wp, tmp_path):
    """php-fpm runs the shop; its only worker sends and the CRM answers 503, so events wait for a
    retry; then the worker is gone (the site quiet, no request to start another): `wp woosync
    serve` delivers them, reports, and stops on SIGTERM within the grace with exit code 0."""
    crm = Receiver()
    crm.start()
    crm.script(Response(503), Response(503), Response(503))
    outbox = tmp_path / "outbox" / "outbox.sqlite"
    ini = {"woosync.database": str(outbox), "woosync.endpoint": crm.url, "woosync.retry_delays": "3,3,3",
           "woosync.shutdown_grace": "1", "woosync.timeout": "5"}
    serve = None
    fpm = Fpm(tmp_path / "fpm", wp.so, ini, pm="static", max_children=1, max_requests=0)
    try:
        pids = wp.php("out([t_product('SKU-Q1', 5)->get_id(), t_product('SKU-Q2', 5)->get_id(), t_product('SKU-Q3', 5)->get_id()]);",
                      ini=ini).last_json()
        (fpm.docroot / "stock.php").write_text(
            "<?php require '%s/wp-load.php';\n"
            "$p = wc_get_product((int) $_GET['id']); $p->set_stock_quantity(1); $p->save();\n"
            "echo getmypid();\n" % wp.root)
        fpm.start()
        workers = {fpm.request(fpm.docroot / "stock.php", f"id={pid}", timeout=60)[1].strip() for pid in pids}
        assert len(workers) == 1 and all(w.isdigit() for w in workers), workers
        crm.wait_for(3, 20)  # the worker's first attempts: 503, retried in 3 s
        assert wp.php("out(woosync_status()['sender_pid']);", ini=ini).last_json() == int(workers.pop())

        serve = wp_popen(wp, "woosync", "serve", ini=ini)
        out = LineReader(serve.stdout)
        assert out.get(60).startswith(f"Serving the outbox {outbox} (SIGTERM or Ctrl-C stops)."), out.lines
        fpm.stop()  # no php-fpm worker left
        deadline = time.monotonic() + 30
        while {r.json()["data"]["id"] for r in crm.requests if r.response.status == 200} != set(pids):
            assert time.monotonic() < deadline, [(r.json()["data"]["id"], r.response.status) for r in crm.requests]
            time.sleep(0.2)
        st = wp.php("out(woosync_status());", ini=ini).last_json()
        assert st["sender_pid"] not in (None, 0) and st["pending"] == 0, st

        t0 = time.monotonic()
        os.kill(serve.pid, signal.SIGTERM)
        code = serve.wait(15)
        took = time.monotonic() - t0
        stderr = serve.stderr.read()
        assert code == 0, (code, out.lines, stderr)
        assert took < 1 + 4, f"SIGTERM must stop serve within the grace (1 s) plus margin, took {took:.1f}s"
        out.eof.wait(5)
        report = [l for l in out.lines if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ delivered \d+, failed \d+, pending \d+$", l)]
        assert report and report[-1].endswith(", pending 0"), out.lines
        assert sum(int(re.search(r"delivered (\d+)", l).group(1)) for l in report) == 3, out.lines
        assert out.lines[-1] == "Stopped by a signal.", out.lines
        serve = None
    finally:
        fpm.stop()
        if serve is not None and serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(10)
        crm.stop()


def test_wp_woosync_serve_seconds_and_bad_arguments(wp, tmp_path):
    ini = {"woosync.database": str(tmp_path / "o.sqlite")}
    t = wp.wp("woosync", "serve", "--seconds=1", ini=ini)
    assert t.returncode == 0, t.describe()
    lines = t.stdout.splitlines()
    assert lines[0] == f"Serving the outbox {tmp_path / 'o.sqlite'} for 1 s (SIGTERM or Ctrl-C stops).", lines
    assert re.fullmatch(r"\S+Z delivered 0, failed 0, pending 0", lines[1]) and lines[-1] == "Time is up.", lines
    assert 1 <= t.duration < 30
    # Ctrl-C (SIGINT) stops it cleanly too, long before its time.
    p = wp_popen(wp, "woosync", "serve", "--seconds=120", ini=ini)
    try:
        out = LineReader(p.stdout)
        assert out.get(60).startswith("Serving the outbox"), out.lines
        time.sleep(1)
        os.kill(p.pid, signal.SIGINT)
        assert p.wait(15) == 0, p.stderr.read()
        out.eof.wait(5)
        assert out.lines[-1] == "Stopped by a signal." and re.fullmatch(r"\S+Z delivered 0, failed 0, pending 0", out.lines[-2]), out.lines
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    for bad in ("--seconds=-1", "--seconds=soon", "--seconds=INF"):
        b = wp.wp("woosync", "serve", bad, ini=ini)
        assert b.returncode == 1 and "Error: --seconds must be a number of seconds, 0 or more." in b.stderr, b.describe()


def test_metrics_cli_and_rest_route_with_a_bearer_token(wp, tmp_path):
    crm = Receiver()
    crm.start()
    secret = make_secret()
    ini = {"woosync.database": str(tmp_path / "o.sqlite"), "woosync.endpoint": crm.url, "woosync.secret": secret,
           "woosync.retry_delays": "0.1"}
    try:
        wp.php("for ($i = 0; $i < 3; $i++) woosync_dispatch('order.created', ['i' => $i], ['key' => 'order:1']);"
               "out(woosync_flush(15));", ini=ini)
        crm.wait_for(3, 15)
        cli = wp.wp("woosync", "metrics", ini=ini)
        assert cli.returncode == 0, cli.describe()
        m = parse(cli.stdout)
        assert m[("woosync_delivered_total", frozenset({("endpoint", "default")}))] == 3

        wp.serve(ini=ini)
        b = __import__("wpsite").Browser(wp.url)
        route = "/?rest_route=/woosync/v1/metrics"
        status, body, _ = b.request(route)
        assert status == 404 and "rest_no_route" in body, (status, body)  # no token: the route is off

        gen = wp.wp("woosync", "metrics-token", "generate", ini=ini)
        assert gen.returncode == 0, gen.describe()
        token = gen.stdout.splitlines()[0]
        assert re.fullmatch(r"[0-9a-f]{64}", token) and "Success: New metrics token (shown once" in gen.stdout
        stored = wp.php("out(get_option('woosync_metrics_token_hash'));", ini=ini).last_json()
        assert token not in stored and len(stored) == 64  # only a hash is kept

        for headers in ({}, {"Authorization": "Bearer " + "0" * 64}, {"Authorization": "Basic " + token},
                        {"Authorization": "Bearer " + token[:-1]}):
            status, body, h = b.request(route, headers=headers)
            assert status == 401 and h.get("WWW-Authenticate", "").startswith("Bearer"), (headers, status, h, body)
            assert "woosync_delivered_total" not in body
        status, body, h = b.request(route, headers={"Authorization": "Bearer " + token})
        assert status == 200, body
        assert h["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8", h
        assert not body.startswith('"'), "raw text, not a JSON string"
        m = parse(body)
        assert m[("woosync_delivered_total", frozenset({("endpoint", "default")}))] == 3
        assert secret not in body and token not in body

        # The settings page says the route is on and never shows the token.
        admin = wp.browser("admin", wp.admin_password)
        status, page, _ = admin.request("/wp-admin/options-general.php?page=woosync")
        assert 'id="woosync-metrics-state">On: scrape' in page and token not in page

        assert wp.wp("woosync", "metrics-token", "delete", ini=ini).returncode == 0
        status, body, _ = b.request(route, headers={"Authorization": "Bearer " + token})
        assert status == 404, (status, body)
    finally:
        crm.stop()


HEALTH = r"""
require_once ABSPATH . 'wp-admin/includes/class-wp-site-health.php';
function t_health() {
    \Woosync\Site_Health::reset();
    $out = [];
    foreach (WP_Site_Health::get_tests()['direct'] as $id => $t) {
        if (strpos($id, 'woosync_') === 0) {
            $r = call_user_func($t['test']);
            $out[$id] = ['status' => $r['status'], 'label' => $r['label'], 'text' => wp_strip_all_tags($r['description'])];
        }
    }
    return $out;
}
"""


def test_site_health_and_metrics_show_an_outage_and_the_recovery(wp, tmp_path):
    port = closed_port()
    url = f"http://127.0.0.1:{port}/crm"
    secret = make_secret()
    # A first retry 15 s out: the breaker that opens after 5 failures pauses 15 s (its longest).
    ini = {"woosync.database": str(tmp_path / "o.sqlite"), "woosync.endpoint": url, "woosync.secret": secret,
           "woosync.retry_delays": "15,15,15,15,15,15,15,15"}
    down = wp.php(HEALTH + r"""
        for ($i = 0; $i < 6; $i++) woosync_dispatch('order.created', ['i' => $i], ['key' => "order:$i"]);
        $deadline = microtime(true) + 20;
        do { usleep(100000); $m = woosync_metrics(); }
        while (strpos($m, 'woosync_breaker_open{endpoint="default"} 1') === false && microtime(true) < $deadline);
        $info = apply_filters('debug_information', [])['woosync'];  // what WP_Debug_Data::debug_data() shows
        out(['health' => t_health(), 'metrics' => $m, 'info' => $info]);
    """, ini=ini, timeout=60).last_json()
    m = parse(down["metrics"])
    assert m[("woosync_breaker_open", frozenset({("endpoint", "default")}))] == 1
    assert m[("woosync_pending", frozenset({("endpoint", "default")}))] == 6
    h = down["health"]
    assert set(h) == {"woosync_extension", "woosync_outbox", "woosync_key", "woosync_endpoints", "woosync_pending",
                      "woosync_sender"}, h
    assert h["woosync_endpoints"]["status"] == "critical", h["woosync_endpoints"]
    assert h["woosync_endpoints"]["label"] == "A WooSync endpoint is not receiving events"
    assert "default: the CRM keeps failing, so deliveries are paused (circuit breaker open) until" in h["woosync_endpoints"]["text"]
    assert "Check that the CRM is up and reachable from this server." in h["woosync_endpoints"]["text"]
    assert h["woosync_extension"]["status"] == "good" and "same major.minor version as the plugin (0.1.x" in h["woosync_extension"]["text"]
    assert h["woosync_outbox"]["status"] == "good" and h["woosync_key"]["status"] == "good", h
    assert h["woosync_sender"]["status"] == "good" and "The sender is process" in h["woosync_sender"]["text"], h
    assert h["woosync_pending"]["status"] == "good" and "6 events are waiting" in h["woosync_pending"]["text"], h
    info = json.dumps(down["info"])
    assert secret not in info and secret[6:] not in info and str(tmp_path) in info  # the outbox, no secret
    assert down["info"]["fields"]["outbox"]["private"] is True

    # The CRM comes back: the breaker's probe finds it, everything is delivered, all is healthy.
    crm = Receiver(port=port)
    crm.start()
    try:
        up = wp.php(HEALTH + r"""
            $flushed = woosync_flush(60);
            out(['flushed' => $flushed, 'health' => t_health(), 'metrics' => woosync_metrics()]);
        """, ini=ini, timeout=90).last_json()
        assert up["flushed"] is True
        m = parse(up["metrics"])
        assert m[("woosync_breaker_open", frozenset({("endpoint", "default")}))] == 0
        assert m[("woosync_delivered_total", frozenset({("endpoint", "default")}))] == 6
        h = up["health"]
        assert h["woosync_endpoints"] == {"status": "good", "label": "WooSync endpoints are healthy",
                                          "text": "default: healthy."}, h
        assert h["woosync_pending"]["status"] == "good" and h["woosync_pending"]["label"] == "No WooSync event is waiting"
    finally:
        crm.stop()


def test_site_health_names_where_the_key_comes_from(wp, tmp_path):
    outbox = str(tmp_path / "o.sqlite")
    derived = wp.php(HEALTH + "out(t_health()['woosync_key']);", ini={"woosync.database": outbox}).last_json()
    assert derived["status"] == "good" and "secret keys (salts) in wp-config.php" in derived["text"], derived
    ini = wp.php(HEALTH + "out(t_health()['woosync_key']);",
                 ini={"woosync.database": outbox, "woosync.key": "ab" * 32}).last_json()
    assert ini["status"] == "good" and ini["text"] == "The encryption key comes from php.ini.", ini


def test_wp_woosync_serve_reports_each_interval(wp, tmp_path):
    """A report line per interval (a minute by default; 1 s here through the filter), each with the
    events delivered and attempts failed during it and what is pending at its end."""
    crm = Receiver()
    crm.start()
    crm.script(Response(500))  # the first attempt fails, its retry is delivered
    ini = {"woosync.database": str(tmp_path / "o.sqlite"), "woosync.endpoint": crm.url,
           "woosync.retry_delays": "0.5", "woosync.shutdown_grace": "1"}
    wp.mu_plugin("woosync-test-report", "add_filter('woosync_serve_report_every', fn() => 1.0);")
    p = wp_popen(wp, "woosync", "serve", "--seconds=120", ini=ini)
    try:
        out = LineReader(p.stdout)
        assert out.get(60).startswith("Serving the outbox"), out.lines
        out.get(10)  # a first report: serve holds the lease before anything is dispatched
        wp.php("for ($i = 0; $i < 3; $i++) woosync_dispatch('order.created', ['i' => $i], ['key' => 'order:1']); out(1);",
               ini=ini)
        crm.wait_for(4, 30)  # 1 failure + 3 deliveries
        n = len(out.lines)
        deadline = time.monotonic() + 20
        while len(out.lines) < n + 2:  # two more reports: the deliveries are counted by then
            assert time.monotonic() < deadline, out.lines
            time.sleep(0.1)
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(30) == 0, p.stderr.read()
        out.eof.wait(5)
        report = [re.fullmatch(r"\S+Z delivered (\d+), failed (\d+), pending (\d+)", l) for l in out.lines[1:-1]]
        assert all(report) and len(report) >= 4, out.lines
        assert sum(int(m.group(1)) for m in report) == 3 and sum(int(m.group(2)) for m in report) == 1, out.lines
        assert report[-1].group(3) == "0" and out.lines[-1] == "Stopped by a signal.", out.lines
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        crm.stop()
