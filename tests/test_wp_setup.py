"""Setting the woosync plugin up on the real WordPress 7.0.4 + WooCommerce 11.0.1: the settings
page over HTTP (real wp-admin, logins, nonces), where the outbox lives, a multisite network, and
the plugin's declared minimum (Debian's WordPress 6.1 with WooCommerce 7.9.0).

Same fixtures as tests/test_wordpress.py (`wp`: the session's shop restored to its fresh state,
failing the test on a plugin notice).
"""
from __future__ import annotations

import json
import os
import re
import stat
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

import wpsite
from conftest import assert_no_plugin_notices
from receiver import Receiver
from wp_helpers import data_of, for_key, ini, make_secret, of_key, topic_of


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
    wp.mu_plugin("woosync-test-nodir", "add_filter('woosync_private_dir', '__return_empty_string');")
    r = wp.php("""
        $saved = get_option('woosync_outbox_path');
        delete_option('woosync_outbox_path');
        $path = \\Woosync\\Outbox_Location::configure();
        $file = woosync_status()['database'];
        update_option('woosync_outbox_path', $saved);
        out(['path' => $path, 'file' => $file, 'uploads' => wp_upload_dir()['basedir']]);
    """).last_json()
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
    r = wp.php("out(woosync_status()['database']);").last_json()
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

    # A subscriber: no access (WordPress refuses the page; WooCommerce sends it to My account).
    sb = login_as(wp, "subscriber1", "subscriber")
    status, body, headers = sb.request("/wp-admin/options-general.php?page=woosync", follow=False)
    assert status in (302, 403) and "woosync_settings[url]" not in body, (status, headers)
    status, body, headers = sb.request("/wp-admin/options.php", dict(forged, _wpnonce=user_nonce(wp, sb, "subscriber1", "woosync-options")), follow=False)
    assert status in (302, 403), (status, headers)
    # An editor gets into wp-admin but may not change WooSync's settings, even with a valid nonce.
    ed = login_as(wp, "editor1", "editor")
    status, body, _ = ed.request("/wp-admin/options-general.php?page=woosync")
    assert status == 403 and "woosync_settings[url]" not in body
    status, body, _ = ed.request("/wp-admin/options.php", dict(forged, _wpnonce=user_nonce(wp, ed, "editor1", "woosync-options")))
    assert status == 403 and "not allowed" in body, body[-1500:]
    assert wp.php("out(get_option('woosync_settings'));").last_json() == before
    eps = wp.php("out(woosync_endpoints());").last_json()
    assert next(e for e in eps if e["name"] == "wordpress")["url"] == rx.url


def login_as(wp, login: str, role: str) -> "wpsite.Browser":
    """A new user with this role, logged in through wp-login.php."""
    pw = "pw-" + os.urandom(6).hex()
    r = wp.php(f"out(wp_insert_user(['user_login' => '{login}', 'user_pass' => '{pw}', 'user_email' => '{login}@example.test', 'role' => '{role}']));").last_json()
    assert isinstance(r, int), r
    b = wpsite.Browser(wp.url)
    b.jar.set_cookie(wpsite._cookie("wordpress_test_cookie", "WP%20Cookie%20check", wp.url))
    status, body, _ = b.request("/wp-login.php", {"log": login, "pwd": pw, "wp-submit": "Log In", "testcookie": "1"},
                                follow=False)
    assert status == 302 and any(c.name.startswith("wordpress_logged_in_") for c in b.jar), (status, body[-500:])
    return b


def user_nonce(wp, browser: "wpsite.Browser", login: str, action: str) -> str:
    """A valid nonce for `action` in the browser's logged-in session (what wp_create_nonce() gives
    that user on a page): the session token comes from the browser's logged-in cookie."""
    cookie = next(c for c in browser.jar if c.name.startswith("wordpress_logged_in_"))
    token = urllib.parse.unquote(cookie.value).split("|")[2]
    return wp.php(f"""
        $u = get_user_by('login', {json.dumps(login)});
        out(substr(wp_hash(wp_nonce_tick({json.dumps(action)}) . '|' . {json.dumps(action)} . '|' . $u->ID . '|{token}', 'nonce'), -12, 10));
    """).last_json()


def test_plugin_endpoint_delivers_from_every_process_with_the_key_from_the_salts(wp, rx, tmp_path):
    """Bug 1 seen from WordPress (the extension's fix is on main): the install path readme.txt
    describes - no woosync.key in php.ini, the plugin derives it from the salts and sets it with
    ini_set() - must deliver from every process, not only from the first one: each later process
    starts its sender before any PHP runs, without the key, and used to leave events pending with
    "the secret of endpoint ... is encrypted in the outbox; set woosync.key"."""
    secret = make_secret()
    cfg = {"woosync.database": str(tmp_path / "outbox.sqlite"), "woosync.retry_delays": "0.2,0.2"}
    r = wp.php(f"""
        $s = get_option('woosync_settings', []);
        $s['url'] = '{rx.url}'; $s['secret'] = '{secret}'; $s['topics'] = \\Woosync\\Settings::TOPICS;
        update_option('woosync_settings', $s);
        out(['key_from_ini' => ini_get('woosync.key') !== '', 'endpoints' => woosync_endpoints(),
             'sealed' => woosync_status()['secrets_encrypted'] ?? null]);
    """, ini=cfg).last_json()
    assert r["key_from_ini"] is True and r["sealed"] is True, r
    assert [e["url"] for e in r["endpoints"] if e["name"] == "wordpress"] == [rx.url], r
    for n in range(3):   # three more processes, one after the other, each its own sender
        pid = wp.php(f"""
            $p = t_product('SKU-KEY-{n}', 5);
            $p = wc_get_product($p->get_id()); $p->set_stock_quantity(4); $p->save();
            out(['id' => $p->get_id(), 'flushed' => woosync_flush(10), 'error' => woosync_status()['worker_error'] ?? '']);
        """, ini=cfg).last_json()
        assert pid["flushed"] is True and not pid["error"], pid
        req = rx.wait_for(1, 15, for_key(f"product:{pid['id']}"))[0]
        Webhook(secret).verify(req.body, req.headers.lower_dict())


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
        # Leave the outbox without the CRM URL: the endpoint is deleted from it.
        r = wp.php("""
            $s = get_option('woosync_settings'); $s['url'] = ''; update_option('woosync_settings', $s);
            out(array_column(woosync_endpoints(), 'name'));
        """).last_json()
        assert "wordpress" not in r


# ---- multisite -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def network(shop):
    """A path-based network (`wp core multisite-install`) with WooCommerce and woosync network
    activated and a second site."""
    site = wpsite.Site(shop.base, shop.db, "network", shop.so, shop.realwp, multisite_domain="ms.example.test")
    site.install()
    res = site.php("""
        $id = wpmu_create_blog('ms.example.test', '/shop2/', 'Shop 2', 1);
        switch_to_blog($id);
        WC_Install::install();   // what WooCommerce runs for a new site of a network where it is active
        restore_current_blog();
        out(['blog' => is_wp_error($id) ? $id->get_error_message() : $id]);
    """, timeout=180)
    assert res.last_json() == {"blog": 2}, res.describe()
    yield site
    site.stop_server()


def test_multisite_each_site_has_its_own_outbox_and_events(network, rx):
    marks = network.log_marks()
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

    # One site's CLI never shows the other's events; on multisite keys carry the site
    # (`site:<blog_id>:product:<id>`), so they never collide even in an outbox the network shares.
    l1 = json.loads(network.wp("woosync", "list", "--format=json", ini=cfg, url=network.url + "/").stdout)
    l2 = json.loads(network.wp("woosync", "list", "--format=json", ini=cfg, url=site2).stdout)
    assert {r["key"] for r in l1 if r["topic"] == "product.stock_updated"} == {f"site:1:product:{one['id']}"}
    assert {r["key"] for r in l2 if r["topic"] == "product.stock_updated"} == {f"site:2:product:{two['id']}"}

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
    assert_no_plugin_notices(network, marks, "the multisite test")


# ---- the declared minimum --------------------------------------------------------------------------

def test_declared_minimum_wordpress_61_with_woocommerce_790(shop, rx, tmp_path):
    """Smoke test of `Requires at least: 6.1` / `WC requires at least`: Debian's WordPress 6.1
    with the real WooCommerce 7.9.0 (the newest release that runs on it), installed and driven
    through the same real WP-CLI: stock, customer and order events arrive, `wp woosync` works, and
    the plugin raises no notice."""
    wpsite.ensure_packages(debian_wordpress=True)
    site = wpsite.Site(shop.base, shop.db, "minimum", shop.so, shop.realwp, minimum=True)
    site.install()
    try:
        outbox = tmp_path / "outbox.sqlite"
        cfg = ini(outbox, rx.url)
        versions = site.php("out(['wp' => get_bloginfo('version'), 'wc' => WC()->version]);", ini=cfg).last_json()
        assert versions["wp"].startswith("6.1.") and versions["wc"] == "7.9.0", versions
        ids = site.php("""
            t_flush_at_shutdown();
            $p = t_product('SKU-MIN', 10, '5.00');
            $p = wc_get_product($p->get_id()); $p->set_stock_quantity(9); $p->save();
            $c = wc_create_new_customer('min@example.test', 'minnie', 'pw-' . wp_generate_password());
            $o = wc_create_order(); $o->add_product($p, 2); $o->calculate_totals(); $o->set_status('processing'); $o->save();
            out(['product' => $p->get_id(), 'customer' => $c, 'order' => $o->get_id()]);
        """, ini=cfg).last_json()
        assert data_of(rx.wait_for(1, 15, for_key(f"product:{ids['product']}"))[0])["stock_quantity"] == 9
        assert topic_of(rx.wait_for(1, 15, for_key(f"customer:{ids['customer']}"))[0]) == "customer.created"
        rx.wait_for(2, 15, for_key(f"order:{ids['order']}"))
        orders = of_key(rx, f"order:{ids['order']}")
        assert [topic_of(r) for r in orders] == ["order.created", "order.status_changed"]
        assert data_of(orders[-1])["status"] == "processing" and data_of(orders[-1])["line_items"][0]["quantity"] == 2
        status = site.wp("woosync", "status", "--format=json", ini=cfg)
        assert status.returncode == 0 and json.loads(status.stdout)["delivered"] >= 4, status.describe()
        listed = json.loads(site.wp("woosync", "list", f"--key=order:{ids['order']}", "--format=json", ini=cfg).stdout)
        assert [r["topic"] for r in listed] == ["order.status_changed", "order.created"]
        assert_no_plugin_notices(site, (0, 0), "the WordPress 6.1 / WooCommerce 7.9.0 smoke test")
    finally:
        site.stop_server()


def test_without_woocommerce_active_the_plugin_keeps_the_site_working(wp, rx, tmp_path):
    """WooCommerce deactivated with the real `wp plugin deactivate`: no fatal and no notice from
    the plugin, the log page moves under Tools, the settings page and `wp woosync` still work."""
    cfg = ini(tmp_path / "outbox.sqlite", rx.url)
    wp.wp_ok("plugin", "deactivate", "woocommerce", ini=cfg)
    wp.serve(extension=True, ini=cfg)
    admin = wp.browser("admin", wp.admin_password)
    status, body, _ = admin.request("/wp-admin/tools.php?page=woosync-log")
    assert status == 200 and "WooSync log</h1>" in body, body[-1000:]
    status, body, _ = admin.request("/wp-admin/options-general.php?page=woosync")
    assert status == 200 and "woosync_settings[url]" in body
    status, _, _ = wpsite.Browser(wp.url).request("/")
    assert status == 200
    wp.stop_server()
    t = wp.wp("woosync", "test", "--endpoint=default", ini=cfg)
    assert t.returncode == 0 and "default: delivered (HTTP 200)" in t.stdout, t.describe()
    r = wp.wp("woosync", "reconcile", ini=cfg)
    assert r.returncode == 1 and "Error: WooCommerce is not active." in r.stderr
