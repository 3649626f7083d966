"""Issue 12, section 4: multisite with one outbox, on a real network (`wp core multisite-install` with
the real WP-CLI 2.12.0, WordPress 7.0.4 + WooCommerce 11.0.1 network-activated, a second site).

The scheme (README "WordPress plugin", Multisite): on multisite every site, the main one too, has
the endpoint `wordpress@<blog_id>` and keys `site:<blog_id>:<kind>:<id>`; each site's log, `wp
woosync` commands, privacy exporter and eraser and retries see only its own events; a site's events
go to its own endpoint and to endpoints of no site (`default` from php.ini), never to another
site's. Two modes of php.ini's `woosync.database`: one outbox for the network (a plain path), or
one per site (`{blog_id}` in the path, replaced by the plugin).

The network's domain (ms.example.test) has no DNS here, so pages are rendered by the plugin's
own page code inside a WordPress process (tests/wp/bootstrap.php) instead of over HTTP.
"""
from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook

import wpsite
from conftest import assert_no_plugin_notices
from receiver import Receiver
from wp_helpers import data_of, make_secret


@pytest.fixture(scope="module")
def network(shop):
    site = wpsite.Site(shop.base, shop.db, "msnet", shop.so, shop.realwp, multisite_domain="msnet.example.test")
    site.install()
    res = site.php("""
        $id = wpmu_create_blog('msnet.example.test', '/shop2/', 'Shop 2', 1);
        switch_to_blog($id);
        WC_Install::install();
        restore_current_blog();
        out(['blog' => is_wp_error($id) ? $id->get_error_message() : $id]);
    """, timeout=180)
    assert res.last_json() == {"blog": 2}, res.describe()
    site.save_state()
    yield site
    site.stop_server()


@pytest.fixture
def net(network):
    network.restore_state()
    marks = network.log_marks()
    yield network
    network.stop_server()
    network.remove_mu_plugins()
    assert_no_plugin_notices(network, marks, "the multisite test")


@pytest.fixture
def rx1():
    r = Receiver()
    r.start()
    yield r
    r.stop()


@pytest.fixture
def rx2():
    r = Receiver()
    r.start()
    yield r
    r.stop()


def _site(net, blog: int) -> str:
    return net.url + ("/" if blog == 1 else "/shop2/")


def _php(net, blog: int, code: str, cfg: dict):
    return net.php(code, ini=cfg, env={"WOOSYNC_WP_URL": _site(net, blog)})


def _configure(net, blog: int, cfg: dict, url: str, secret: str) -> dict:
    """Saves the site's settings as code would (update_option): the plugin seals the secret and
    pushes the site's endpoint."""
    return _php(net, blog, f"""
        $s = get_option('woosync_settings', []);
        $s = array_merge(is_array($s) ? $s : [], ['url' => '{url}', 'secret' => '{secret}', 'topics' => \\Woosync\\Settings::TOPICS, 'enabled' => true]);
        update_option('woosync_settings', $s);
        out(['blog' => get_current_blog_id(), 'outbox' => woosync_status()['database'], 'endpoints' => woosync_endpoints()]);
    """, cfg).last_json()


def _stock_and_customer(net, blog: int, cfg: dict, sku: str) -> dict:
    """A stock change and a customer update (the network's user 1, the same user on every site)."""
    return _php(net, blog, f"""
        t_flush_at_shutdown();
        $p = t_product('{sku}', 5); $p = wc_get_product($p->get_id()); $p->set_stock_quantity(4); $p->save();
        $c = new WC_Customer(1); $c->set_billing_city('City of {sku}'); $c->save();
        out(['product' => $p->get_id()]);
    """, cfg).last_json()


def _wp_json(net, blog: int, cfg: dict, *args):
    r = net.wp("woosync", *args, "--format=json", ini=cfg, url=_site(net, blog))
    assert r.returncode == 0, r.describe()
    return json.loads(r.stdout)


def _log_page_keys(net, blog: int, cfg: dict) -> list:
    """Keys in the site's WooSync log page, rendered by Log_Page::render_page() as the admin."""
    r = _php(net, blog, """
        require_once ABSPATH . 'wp-admin/includes/admin.php';
        wp_set_current_user(1);
        set_current_screen('woocommerce_page_woosync-log');
        ob_start();
        \\Woosync\\Log_Page::render_page();
        $html = ob_get_clean();
        preg_match_all('#<code>((?:site:\\d+:)?(?:product|customer|order|test):[^<]*)</code>#', $html, $m);
        out(array_values(array_unique($m[1])));
    """, cfg)
    return r.last_json()


def test_shared_outbox_each_site_sees_and_steers_only_its_own(net, rx1, rx2, tmp_path):
    """Before: every site saved the one endpoint `wordpress` (the last one saved got every site's
    events), `order:<id>` keys collided, and each site's log, CLI and eraser reached the others'."""
    shared = tmp_path / "shared.sqlite"
    cfg = {"woosync.database": str(shared), "woosync.retry_delays": "0.2,0.2"}
    s1, s2 = make_secret(), make_secret()
    one = _configure(net, 1, cfg, rx1.url, s1)
    two = _configure(net, 2, cfg, rx2.url, s2)
    assert one["outbox"] == two["outbox"] == str(shared)
    eps = {e["name"]: e["url"] for e in two["endpoints"] if e["name"] != "default"}
    assert eps == {"wordpress@1": rx1.url, "wordpress@2": rx2.url}, two["endpoints"]
    # Site 1 saving again never rewrites site 2's endpoint.
    again = _configure(net, 1, cfg, rx1.url + "?again=1", s1)
    eps = {e["name"]: e["url"] for e in again["endpoints"] if e["name"] != "default"}
    assert eps == {"wordpress@1": rx1.url + "?again=1", "wordpress@2": rx2.url}, again["endpoints"]

    p1 = _stock_and_customer(net, 1, cfg, "SKU-NET-1")["product"]
    p2 = _stock_and_customer(net, 2, cfg, "SKU-NET-2")["product"]
    got1 = rx1.wait_for(2, 20, lambda r: r.json()["type"] in ("product.stock_updated", "customer.updated"))
    got2 = rx2.wait_for(2, 20, lambda r: r.json()["type"] in ("product.stock_updated", "customer.updated"))
    for req in got1:
        Webhook(s1).verify(req.body, req.headers.lower_dict())
    for req in got2:
        Webhook(s2).verify(req.body, req.headers.lower_dict())
    keys1 = {r.json()["key"] for r in rx1.requests}
    keys2 = {r.json()["key"] for r in rx2.requests}
    assert keys1 == {f"site:1:product:{p1}", "site:1:customer:1"}, keys1
    assert keys2 == {f"site:2:product:{p2}", "site:2:customer:1"}, keys2
    assert {data_of(r)["site"]["blog_id"] for r in rx2.requests} == {2}

    # `wp woosync list`: each site its own events; a key as typed (`customer:1`) is the site's.
    l1 = _wp_json(net, 1, cfg, "list")
    l2 = _wp_json(net, 2, cfg, "list")
    assert l1 and all(r["key"].startswith("site:1:") for r in l1), l1
    assert l2 and all(r["key"].startswith("site:2:") for r in l2), l2
    assert {r["key"] for r in _wp_json(net, 2, cfg, "list", "--key=customer:1")} == {"site:2:customer:1"}
    ep_names = {e["name"] for e in _wp_json(net, 2, cfg, "status")["endpoints"]}
    assert "wordpress@1" not in ep_names and "wordpress@2" in ep_names, ep_names
    bad = net.wp("woosync", "list", "--endpoint=wordpress@1", ini=cfg, url=_site(net, 2))
    assert bad.returncode == 1 and "belongs to another site" in bad.stderr, bad.describe()

    # `show` / `retry` of another site's event: unknown here.
    other = l1[0]["id"]
    r = net.wp("woosync", "show", other, ini=cfg, url=_site(net, 2))
    assert r.returncode == 1 and f"No event {other}" in r.stderr, r.describe()
    r = net.wp("woosync", "retry", other, ini=cfg, url=_site(net, 2))
    assert r.returncode == 1 and "Nothing was requeued" in r.stderr, r.describe()
    assert net.wp("woosync", "show", other, ini=cfg, url=_site(net, 1)).returncode == 0

    # `purge` of a shared outbox touches every site: only with --network.
    r = net.wp("woosync", "purge", "--older-than=0", ini=cfg, url=_site(net, 2))
    assert r.returncode == 1 and "--network" in r.stderr, r.describe()

    # The log page of each site.
    assert set(_log_page_keys(net, 2, cfg)) == {f"site:2:product:{p2}", "site:2:customer:1"}
    assert set(_log_page_keys(net, 1, cfg)) == {f"site:1:product:{p1}", "site:1:customer:1"}

    # Privacy: site 2's exporter and eraser for the same person (user 1) reach only site 2's events.
    r = _php(net, 2, """
        woosync_flush(10);
        $email = get_userdata(1)->user_email;
        $ex = apply_filters('wp_privacy_personal_data_exporters', [])['woosync']['callback']($email, 1);
        $er = apply_filters('wp_privacy_personal_data_erasers', [])['woosync']['callback']($email, 1);
        out(['exported' => array_column($ex['data'], 'item_id'), 'erased' => $er,
             'left' => array_column(woosync_events(['key_prefix' => 'site:', 'limit' => 100]), 'key')]);
    """, cfg).last_json()
    exported = {i.removeprefix("woosync-") for i in r["exported"]}
    assert exported and exported <= {row["id"] for row in l2}, (exported, l2)
    assert r["erased"]["items_removed"] is True, r
    left = set(r["left"])
    assert "site:2:customer:1" not in left and "site:1:customer:1" in left, r
    assert {f"site:1:product:{p1}", f"site:2:product:{p2}"} <= left


def test_blog_id_in_php_ini_gives_each_site_its_own_outbox(net, rx1, rx2, tmp_path):
    """Before: `{blog_id}` in php.ini's woosync.database was refused by the extension (it is the
    plugin's to replace) and nothing worked."""
    cfg = {"woosync.database": str(tmp_path / "site-{blog_id}.sqlite"), "woosync.retry_delays": "0.2,0.2"}
    s1, s2 = make_secret(), make_secret()
    one = _configure(net, 1, cfg, rx1.url, s1)
    two = _configure(net, 2, cfg, rx2.url, s2)
    assert one["outbox"] == str(tmp_path / "site-1.sqlite") and two["outbox"] == str(tmp_path / "site-2.sqlite")
    assert [e["name"] for e in one["endpoints"] if e["name"] != "default"] == ["wordpress@1"]
    assert [e["name"] for e in two["endpoints"] if e["name"] != "default"] == ["wordpress@2"]
    p2 = _stock_and_customer(net, 2, cfg, "SKU-TPL-2")["product"]
    rx2.wait_for(2, 20, lambda r: r.json()["key"] in (f"site:2:product:{p2}", "site:2:customer:1"))
    assert rx1.requests == []
    st = _wp_json(net, 2, cfg, "status")
    assert st["outbox"] == str(tmp_path / "site-2.sqlite") and st["outbox_chosen_by"] == "php.ini ({blog_id} per site)", st
    assert st["outbox_shared"] == "no"
    # switch_to_blog() switches the outbox too.
    r = _php(net, 1, """
        switch_to_blog(2); $in2 = woosync_status()['database']; restore_current_blog();
        out(['in2' => $in2, 'back' => woosync_status()['database']]);
    """, cfg).last_json()
    assert r == {"in2": str(tmp_path / "site-2.sqlite"), "back": str(tmp_path / "site-1.sqlite")}, r
    # A plain purge is fine here (the outbox is the site's own).
    assert net.wp("woosync", "purge", "--older-than=0", ini=cfg, url=_site(net, 2)).returncode == 0


def test_network_uninstall_removes_every_sites_data_and_keeps_the_shared_outbox(net, rx1, rx2, tmp_path):
    shared = tmp_path / "shared.sqlite"
    cfg = {"woosync.database": str(shared)}
    _configure(net, 1, cfg, rx1.url, make_secret())
    _configure(net, 2, cfg, rx2.url, make_secret())
    net.wp_ok("plugin", "deactivate", "woosync", "--network", ini=cfg)
    r = net.wp("plugin", "uninstall", "woosync", "--skip-delete", ini=cfg)   # never delete: a symlink to the repository
    assert r.returncode == 0 and "Uninstalled" in r.stdout, r.describe()
    r = net.php("""
        global $wpdb;
        $left = [];
        foreach ([1, 2] as $b) { switch_to_blog($b); $left[$b] = $wpdb->get_col("SELECT option_name FROM {$wpdb->options} WHERE option_name LIKE '%woosync%'"); restore_current_blog(); }
        out(['left' => $left, 'endpoints' => array_column(woosync_endpoints(), 'name')]);
    """, ini=cfg).last_json()
    assert r["left"] == {"1": [], "2": []}, r
    assert not {"wordpress@1", "wordpress@2", "wordpress"} & set(r["endpoints"]), r
    assert shared.is_file()


def test_shared_outbox_never_sends_a_sites_event_to_another_sites_endpoint(net, rx1, tmp_path):
    """Site 2 has no CRM URL; site 1 has. Site 2's events must stay unrouted, not go to site 1's
    CRM (the extension fans out to every matching endpoint unless told which), and retrying one
    from site 2 (the extension would route it to every endpoint) is refused."""
    shared = tmp_path / "shared.sqlite"
    cfg = {"woosync.database": str(shared), "woosync.retry_delays": "0.2,0.2"}
    _configure(net, 1, cfg, rx1.url, make_secret())
    r = _php(net, 2, """
        $p = t_product('SKU-LONELY', 5); $p = wc_get_product($p->get_id()); $p->set_stock_quantity(4); $p->save();
        $deadline = microtime(true) + 15;
        do { $ev = woosync_events(['key' => 'site:2:product:' . $p->get_id(), 'status' => 'unrouted']); if ($ev) break; usleep(100000); } while (microtime(true) < $deadline);
        out(['product' => $p->get_id(), 'unrouted' => array_column($ev, 'id'), 'failure' => get_option('woosync_last_failure')]);
    """, cfg).last_json()
    assert r["unrouted"] and not r["failure"], r
    retry = net.wp("woosync", "retry", r["unrouted"][0], ini=cfg, url=_site(net, 2))
    assert retry.returncode == 1 and "not retried" in retry.stderr, retry.describe()
    # Site 1 keeps delivering (its sender is alive) and never got site 2's event.
    mine = _stock_and_customer(net, 1, cfg, "SKU-SITE-1")["product"]
    rx1.wait_for(1, 20, lambda q: q.json()["key"] == f"site:1:product:{mine}")
    assert not [q for q in rx1.requests if q.json()["key"].startswith("site:2:")], [q.json()["key"] for q in rx1.requests]


def test_retry_dead_on_a_shared_outbox_requeues_only_this_sites(net, tmp_path):
    """`wp woosync retry --dead` (and the log's "Retry all dead", the same code) on site 2 must not
    resend site 1's dead deliveries (woosync_retry_dead() alone would requeue the whole outbox)."""
    from receiver import Response
    rxa, rxb = Receiver(default=Response(400, body=b"no")), Receiver(default=Response(400, body=b"no"))
    rxa.start()
    rxb.start()
    try:
        cfg = {"woosync.database": str(tmp_path / "shared.sqlite"), "woosync.retry_delays": "0.2,0.2"}
        _configure(net, 1, cfg, rxa.url, make_secret())
        _configure(net, 2, cfg, rxb.url, make_secret())
        ids = {}
        for blog in (1, 2):
            r = _php(net, blog, f"""
                $p = t_product('SKU-DEAD-{blog}', 5); $p = wc_get_product($p->get_id()); $p->set_stock_quantity(4); $p->save();
                $key = \\Woosync\\Site_Scope::key('product', $p->get_id());
                $deadline = microtime(true) + 20;
                do {{ $dead = woosync_events(['key' => $key, 'status' => 'dead']); if ($dead) break; usleep(100000); }} while (microtime(true) < $deadline);
                out(array_values(array_unique(array_column($dead, 'id'))));
            """, cfg).last_json()
            assert len(r) >= 1, r
            ids[blog] = set(r)
        seen_a = len(rxa.requests)
        t = net.wp("woosync", "retry", "--dead", ini=cfg, url=_site(net, 2))
        assert t.returncode == 0 and "Requeued" in t.stdout, t.describe()
        n = len(ids[2])
        rxb.wait_for(2 * n, 20, lambda q: q.json()["id"] in ids[2])
        # Site 2's retried deliveries went dead again; site 1's were never requeued.
        r = _php(net, 2, "woosync_flush(10); out(woosync_status()['pending']);", cfg)
        assert r.returncode == 0, r.describe()
        assert len(rxa.requests) == seen_a, [q.json()["key"] for q in rxa.requests]
        other = net.wp("woosync", "retry", "--dead", "--endpoint=wordpress@1", ini=cfg, url=_site(net, 2))
        assert other.returncode == 1 and "belongs to another site" in other.stderr, other.describe()
    finally:
        rxa.stop()
        rxb.stop()
