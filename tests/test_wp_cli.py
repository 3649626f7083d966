"""`wp woosync` through the real WP-CLI 2.12.0 on the real WordPress 7 + WooCommerce 11 shop.

Every subcommand (status, list, show, retry, test, reconcile, purge) in every format it offers
(table, json, csv, yaml; ids/count for list), with WP-CLI's exit codes and messages. Output to a
pipe is what scripts see (tab-separated tables, no progress bar); `Site.wp_tty` runs WP-CLI on a
pseudo-terminal, as in a user's shell (bordered tables, progress bars).
"""
from __future__ import annotations

import json
import re


from receiver import Response
from wp_helpers import data_of, for_key, ini, table_rows


def parse_yaml_list(text: str) -> list[dict]:
    """The flat YAML WP-CLI prints for format_items (`---`, `- key: value` / `  key: value`)."""
    items, cur = [], None
    for line in text.splitlines():
        if line.startswith("- "):
            cur = {}
            items.append(cur)
            line = "  " + line[2:]
        if line.startswith("  ") and cur is not None and ":" in line:
            k, _, v = line.strip().partition(":")
            cur[k] = v.strip().strip('"').strip("'")
    return items


def test_status_in_every_format(wp, rx, outbox):
    cfg = ini(outbox, rx.url)
    # Bug 3 (fixed in the extension on main): the php.ini endpoint is listed from the first call,
    # before anything was dispatched, instead of "(none: set a CRM URL ...)".
    first = wp.wp("woosync", "status", "--format=json", ini=cfg)
    assert first.returncode == 0, first.describe()
    assert [(e["name"], e["url"]) for e in json.loads(first.stdout)["endpoints"]] == [("default", rx.url)], first.stdout
    assert "(none:" not in wp.wp("woosync", "status", ini=cfg).stdout
    pid = wp.php("""
        t_flush_at_shutdown();
        $p = t_product('SKU-CLI-S', 10);
        $p = wc_get_product($p->get_id()); $p->set_stock_quantity(6); $p->save();
        out($p->get_id());
    """, ini=cfg).last_json()
    rx.wait_for(1, 15, for_key(f"product:{pid}"))

    j = wp.wp("woosync", "status", "--format=json", ini=cfg)
    assert j.returncode == 0, j.describe()
    status = json.loads(j.stdout)
    assert status["outbox"] == str(outbox) and status["outbox_chosen_by"] == "php.ini"
    assert status["delivered"] >= 1 and status["pending"] == 0 and status["fallback_waiting"] == 0
    assert [(e["name"], e["url"]) for e in status["endpoints"]] == [("default", rx.url)]

    # A terminal: bordered tables, the fields then the endpoints.
    t = wp.wp_tty("woosync", "status", ini=cfg)
    assert t.returncode == 0, t.describe()
    head, _, tail = t.stdout.partition("Endpoints:")
    rows = {r["field"]: r["value"] for r in table_rows(head)}
    assert rows["outbox"] == str(outbox) and rows["worker"] in ("sender", "standby") and int(rows["delivered"]) >= 1
    assert "+-" in head and [(r["name"], r["url"]) for r in table_rows(tail)] == [("default", rx.url)]
    # A pipe: the same, tab-separated.
    p = wp.wp("woosync", "status", ini=cfg)
    rows = {r["field"]: r["value"] for r in table_rows(p.stdout.split("Endpoints:")[0])}
    assert rows["outbox"] == str(outbox) and "+-" not in p.stdout

    y = wp.wp("woosync", "status", "--format=yaml", ini=cfg)
    assert y.returncode == 0 and y.stdout.startswith("---"), y.describe()
    fields = {i["field"]: i["value"] for i in parse_yaml_list(y.stdout.split("---")[1])}
    assert fields["outbox"] == str(outbox)
    c = wp.wp("woosync", "status", "--format=csv", ini=cfg)
    lines = c.stdout.splitlines()
    assert lines[0] == "field,value" and f"outbox,{outbox}" in lines
    assert any(l.startswith("name,url,enabled") for l in lines) and any(l.startswith(f"default,{rx.url},yes") for l in lines)

    bad = wp.wp("woosync", "status", "--format=xml", ini=cfg)
    assert bad.returncode == 1 and "Error: Parameter errors" in bad.stderr and "format" in bad.stderr


def test_list_show_retry_test_purge(wp, rx, outbox):
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

    # list
    t = wp.wp_tty("woosync", "list", f"--key={key}", ini=cfg)
    assert [(r["id"], r["topic"], r["state"], r["attempts"], r["last_status"]) for r in table_rows(t.stdout)] == [
        (event_id, "product.stock_updated", "delivered", "1", "200")], t.stdout
    j = json.loads(wp.wp("woosync", "list", f"--key={key}", "--format=json", ini=cfg).stdout)
    assert j[0]["id"] == event_id and j[0]["endpoint"] == "default" and j[0]["attempts"] == 1
    c = wp.wp("woosync", "list", "--topic=product.stock_updated", "--status=delivered", "--format=csv", ini=cfg)
    assert c.stdout.splitlines()[0] == "id,topic,key,endpoint,state,attempts,last_status,created_at,next_attempt_at,last_error"
    assert event_id in c.stdout
    y = wp.wp("woosync", "list", f"--key={key}", "--format=yaml", ini=cfg)
    assert [(i["id"], i["state"]) for i in parse_yaml_list(y.stdout)] == [(event_id, "delivered")], y.stdout
    assert wp.wp("woosync", "list", f"--key={key}", "--format=ids", ini=cfg).stdout.strip() == event_id
    assert wp.wp("woosync", "list", "--format=count", f"--key={key}", ini=cfg).stdout.strip() == "1"
    bad = wp.wp("woosync", "list", "--status=lost", ini=cfg)
    assert bad.returncode == 1 and "Error: Parameter errors:\n Invalid value specified for 'status'" in bad.stderr
    bad = wp.wp("woosync", "list", "--since=when pigs fly", ini=cfg)
    assert bad.returncode == 1 and 'Error: Cannot read the date "when pigs fly".' in bad.stderr

    # show
    t = wp.wp("woosync", "show", event_id, ini=cfg)
    assert t.returncode == 0 and f"Event:    {event_id}" in t.stdout
    payload_text = t.stdout.split("Payload:\n")[1].split("\nDeliveries:")[0]
    assert json.loads(payload_text)["sku"] == "SKU-CLI" and '\n    "sku": "SKU-CLI"' in payload_text
    attempts = table_rows(t.stdout.split("Attempts:")[1])
    assert attempts[0]["http_status"] == "200" and attempts[0]["endpoint"] == "default"
    j = json.loads(wp.wp("woosync", "show", event_id, "--format=json", ini=cfg).stdout)
    assert j["id"] == event_id and j["payload"]["stock_quantity"] == 6 and j["attempts"][0]["http_status"] == 200
    c = wp.wp("woosync", "show", event_id, "--format=csv", ini=cfg)
    assert c.stdout.splitlines()[0].startswith("endpoint,started_at,duration_ms,http_status") and ",200," in c.stdout
    y = wp.wp("woosync", "show", event_id, "--format=yaml", ini=cfg)
    assert parse_yaml_list(y.stdout)[0]["http_status"] == "200"
    bad = wp.wp("woosync", "show", "evt_01AAAAAAAAAAAAAAAAAAAAAAAA", ini=cfg)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: No event evt_01AAAAAAAAAAAAAAAAAAAAAAAA")
    bad = wp.wp("woosync", "show", ini=cfg)
    assert bad.returncode == 1 and bad.stdout.startswith("usage: wp woosync show <id>")

    # retry <id>: replayed with the same id and body
    t = wp.wp("woosync", "retry", event_id, ini=cfg)
    assert t.returncode == 0 and "Success: Requeued 1 of 1 events." in t.stdout, t.describe()
    again = rx.wait_for(2, 15, lambda r: r.json()["id"] == event_id)
    assert again[1].body == again[0].body
    t = wp.wp("woosync", "retry", "evt_01AAAAAAAAAAAAAAAAAAAAAAAA", ini=cfg)
    assert t.returncode == 1 and "Warning: evt_01AAAAAAAAAAAAAAAAAAAAAAAA: unknown" in t.stderr and "Error: Nothing was requeued." in t.stderr

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

    # unknown subcommand, and the help WP-CLI builds from the docblocks
    bad = wp.wp("woosync", "frobnicate", ini=cfg)
    assert bad.returncode == 1 and "'frobnicate' is not a registered subcommand of 'woosync'" in bad.stderr
    h = wp.wp("help", "woosync", "list", ini=cfg)
    assert h.returncode == 0 and "--status=<status>" in h.stdout and "wp woosync list --status=dead" in h.stdout


def test_reconcile_with_progress_bars(wp, rx, outbox):
    cfg = ini(outbox, rx.url)
    res = wp.php("""
        woosync_suppress(function () {
            for ($i = 0; $i < 150; $i++) {
                $p = new WC_Product_Simple();
                $p->set_name("Bulk $i"); $p->set_sku("SKU-BULK-$i"); $p->set_regular_price('1.00');
                $p->set_manage_stock(true); $p->set_stock_quantity($i); $p->save();
            }
            [$parent, $vars] = t_variable('SKU-BULK-V', ['SKU-BULK-V1' => 3, 'SKU-BULK-V2' => 4]);
            $o = wc_create_order();
            $o->add_product($p, 1);
            $o->calculate_totals();
            $o->set_status('processing');
            $o->save();
            $draft = wc_create_order(['status' => 'checkout-draft']);  // a block checkout not placed yet
            $draft->add_product($p, 2);
            $draft->save();
        });
        $all = wc_get_products(['type' => array_merge(array_keys(wc_get_product_types()), ['variation']), 'limit' => -1, 'return' => 'ids', 'status' => ['publish', 'private', 'draft', 'pending']]);
        out(['total' => count($all)]);
    """, ini=cfg, timeout=240)
    total = res.last_json()["total"]
    assert total == 150 + 3
    rx.wait_quiet(0.5)
    assert rx.count() == 0  # created inside woosync_suppress(): nothing sent

    # On a terminal WP-CLI draws the progress bar (a pipe gets none).
    t = wp.wp_tty("woosync", "reconcile", "--products", "--batch-size=50", ini=cfg, timeout=240)
    assert t.returncode == 0, t.describe()
    assert re.search(r"Reconciling products\s+100% \[=+\]", t.stdout), t.stdout[-2000:]
    m = re.search(r"Success: Reconciled (\d+) products, (\d+) variations and 0 orders\.", t.stdout)
    assert m and (int(m.group(1)), int(m.group(2))) == (151, 2), t.stdout[-1000:]
    reqs = rx.wait_for(total, 120, lambda r: r.json()["type"] == "product.stock_updated")
    bulk = {data_of(r)["sku"]: data_of(r) for r in reqs}
    assert len(bulk) == total and all(d["reconcile"] is True for d in bulk.values())
    assert bulk["SKU-BULK-42"]["stock_quantity"] == 42 and bulk["SKU-BULK-V2"]["parent_id"] > 0

    p = wp.wp("woosync", "reconcile", "--orders", "--since=2000-01-01", ini=cfg, timeout=120)
    assert p.returncode == 0, p.describe()
    assert "Reconciling" not in p.stdout + p.stderr  # no progress bar into a pipe
    assert "Success: Reconciled 0 products, 0 variations and 1 orders." in p.stdout, p.stdout  # not the draft
    req = rx.wait_for(1, 30, lambda r: r.json()["type"] == "order.updated" and data_of(r).get("reconcile") is True)[0]
    assert data_of(req)["status"] == "processing" and data_of(req)["line_items"][0]["sku"] == "SKU-BULK-149"
    assert wp.php("out(woosync_flush(15));", ini=cfg).last_json() is True
    assert len({r.json()["id"] for r in rx.requests if r.json()["type"].startswith("order.")}) == 1

    bad = wp.wp("woosync", "reconcile", "--orders", "--since=not a date", ini=cfg)
    assert bad.returncode == 1 and "Error: Cannot read the date" in bad.stderr
