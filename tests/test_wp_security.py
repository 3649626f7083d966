"""Issue 12 (security hardening), the plugin's side, on the real WordPress 7.0.4 + WooCommerce 11.0.1
through real wp-admin over HTTP and the real WP-CLI 2.12.0:

- only administrators (`manage_options`) change where events go (CRM URL, proxy, allowed
  networks); a WooCommerce shop manager (`manage_woocommerce`) cannot, even with a forged post;
- the signing secret is kept sealed in an option that is not autoloaded (never in plaintext in the
  database), migrated from 0.1's plaintext without being lost, rotated through the page, and a
  secret sealed with a key that is gone is reported;
- `woosync_status()['notices']` reach administrators (admin notice) and `wp woosync status`;
- bad `wp woosync` flags give clear errors and exit 1, with no Rust debug text;
- `wp plugin uninstall` removes what the plugin created and keeps php.ini's outbox.

Multisite (one outbox shared by a network, or one per site): tests/test_wp_multisite.py.
"""
from __future__ import annotations

import json
import re

import pytest
from standardwebhooks.webhooks import Webhook

from receiver import Receiver
from test_wp_setup import _form, login_as
from wp_helpers import for_key, make_secret


@pytest.fixture
def rx():
    r = Receiver()
    r.start()
    yield r
    r.stop()


def _endpoint(wp, name="wordpress", ini=None) -> dict:
    eps = wp.php("out(woosync_endpoints());", ini=ini).last_json()
    return next((e for e in eps if e["name"] == name), None)


def _expected_cli_warnings(wp) -> None:
    """WP-CLI warnings the test asked for (`Warning: WooSync: ...` from `wp woosync status`) are not
    PHP notices; they are dropped from what the shared no-notice check looks at."""
    wp.stray[:] = [e for e in wp.stray if not e.startswith("Warning: WooSync: ")]


def _option_names(wp, like: str) -> list:
    return wp.php(f"""
        global $wpdb;
        out($wpdb->get_col($wpdb->prepare("SELECT option_name FROM {{$wpdb->options}} WHERE option_name LIKE %s ORDER BY option_name", {json.dumps(like)})));
    """).last_json()


def _options_rows(wp, like: str) -> list:
    """Rows of wp_options whose name or value matches a LIKE pattern: name, autoload, value."""
    return wp.php(f"""
        global $wpdb;
        out($wpdb->get_results($wpdb->prepare("SELECT option_name, autoload, option_value FROM {{$wpdb->options}} WHERE option_name LIKE %s OR option_value LIKE %s", {json.dumps(like)}, {json.dumps(like)}), ARRAY_A));
    """).last_json()


# ---- 1. who may change where events go -----------------------------------------------------------

def test_only_administrators_change_where_events_go(wp, rx):
    """Before: a shop manager saved any CRM URL (e.g. the cloud metadata address) and could read
    the internal service's answer through "Send test event"."""
    wp.serve(extension=True)
    admin = wp.browser("admin", wp.admin_password)
    status, body, _ = admin.request("/wp-admin/options-general.php?page=woosync")
    assert status == 200
    post = dict(_form(body, "options.php"))
    post.update({"woosync_settings[url]": rx.url, "woosync_settings[enabled]": "1",
                 "woosync_settings[topics][]": ["product.stock_updated"]})
    status, body, _ = admin.request("/wp-admin/options.php", post)
    assert status == 200, body[-2000:]
    assert _endpoint(wp)["url"] == rx.url

    # The shop manager: a forged post (the manager's own valid nonce) pointing at internal services.
    sm = login_as(wp, "manager1", "shop_manager")
    status, body, _ = sm.request("/wp-admin/options-general.php?page=woosync")
    assert status == 200, body[-1500:]
    forged = dict(_form(body, "options.php"))
    forged.update({"woosync_settings[url]": "http://169.254.169.254/latest/meta-data/",
                   "woosync_settings[proxy]": "http://10.0.0.1:3128",
                   "woosync_settings[allow_networks]": "169.254.0.0/16",
                   "woosync_settings[enabled]": "1",
                   "woosync_settings[topics][]": ["product.stock_updated", "order.created"]})
    status, body, _ = sm.request("/wp-admin/options.php", forged)
    assert status == 200, body[-2000:]
    saved = wp.php("out(get_option('woosync_settings'));").last_json()
    assert saved["url"] == rx.url, saved
    assert saved["topics"] == ["product.stock_updated", "order.created"], saved   # other changes are saved
    assert "Only administrators (manage_options) can change where events go" in body
    assert saved["proxy"] == "" and saved["allow_networks"] == "", saved
    ep = _endpoint(wp)
    assert ep["url"] == rx.url and not ep.get("proxy") and not ep["allow_networks"], ep
    # The page says so, with the destination fields read-only.
    status, body, _ = sm.request("/wp-admin/options-general.php?page=woosync")
    assert "Only administrators (manage_options) can change where events go" in body
    assert re.search(r'<input type="url"[^>]*id="woosync_url"[^>]*disabled="disabled"', body), body[-4000:]
    assert re.search(r'id="woosync_allow_networks"[^>]*disabled="disabled"', body)
    assert re.search(r'id="woosync_proxy"[^>]*disabled="disabled"', body)

    # The administrator sets the proxy-free LAN allowance; it reaches the outbox's endpoint.
    status, body, _ = admin.request("/wp-admin/options-general.php?page=woosync")
    assert 'name="woosync_settings[allow_networks]"' in body and 'name="woosync_settings[proxy]"' in body
    assert "Only administrators can change where events go" in body
    post = dict(_form(body, "options.php"))
    post.update({"woosync_settings[url]": rx.url, "woosync_settings[proxy]": "",
                 "woosync_settings[allow_networks]": "192.168.7.0/24, 10.1.2.3/32",
                 "woosync_settings[enabled]": "1", "woosync_settings[topics][]": ["product.stock_updated"]})
    status, body, _ = admin.request("/wp-admin/options.php", post)
    assert status == 200, body[-2000:]
    ep = _endpoint(wp)
    assert ep["url"] == rx.url and set(ep["allow_networks"]) == {"192.168.7.0/24", "10.1.2.3/32"}, ep
    # A malformed network is refused with a clear error and changes nothing.
    bad = dict(post, **{"woosync_settings[allow_networks]": "localhost"})
    status, body, _ = admin.request("/wp-admin/options.php", bad)
    assert status == 200 and re.search(r'(&quot;|")localhost(&quot;|") is not a network', body), body[-3000:]
    assert wp.php("out(get_option('woosync_settings')['allow_networks']);").last_json() == "192.168.7.0/24,10.1.2.3/32"
    # The manager saving the page (fields disabled, so not sent) keeps the administrator's values.
    status, body, _ = sm.request("/wp-admin/options-general.php?page=woosync")
    plain = dict(_form(body, "options.php"))
    plain.update({"woosync_settings[enabled]": "1", "woosync_settings[topics][]": ["order.created"]})
    status, body, _ = sm.request("/wp-admin/options.php", plain)
    saved = wp.php("out(get_option('woosync_settings'));").last_json()
    assert (saved["url"], saved["allow_networks"], saved["topics"]) == (rx.url, "192.168.7.0/24,10.1.2.3/32", ["order.created"]), saved


# ---- 2. the signing secret -----------------------------------------------------------------------

def test_secret_is_sealed_not_autoloaded_migrated_and_rotated(wp, rx):
    """Before: `woosync_settings` (autoloaded) held the secret in plaintext."""
    old_secret = make_secret()
    # A site as 0.1 left it: the plaintext secret inside the settings, written behind the hooks.
    wp.php(f"""
        global $wpdb;
        $s = get_option('woosync_settings', []);
        $s = array_merge(is_array($s) ? $s : [], ['url' => '{rx.url}', 'secret' => '{old_secret}', 'topics' => \\Woosync\\Settings::TOPICS, 'enabled' => true]);
        delete_option('woosync_settings');
        $wpdb->insert($wpdb->options, ['option_name' => 'woosync_settings', 'option_value' => maybe_serialize($s), 'autoload' => 'yes']);
        delete_option('woosync_endpoint_pushed');
    """)
    # The first request after the upgrade seals it, pushes the endpoint, and it still signs.
    r = wp.php("""
        t_flush_at_shutdown();
        $p = t_product('SKU-SEAL', 5); $p = wc_get_product($p->get_id()); $p->set_stock_quantity(4); $p->save();
        out(['id' => $p->get_id(), 'settings' => get_option('woosync_settings')]);
    """).last_json()
    assert "secret" not in r["settings"] and r["settings"]["secret_id"], r
    req = rx.wait_for(1, 20, for_key(f"product:{r['id']}"))[0]
    Webhook(old_secret).verify(req.body, req.headers.lower_dict())
    key_part = old_secret[len("whsec_"):]
    assert _options_rows(wp, f"%{key_part[:20]}%") == [], "the secret is still in plaintext in wp_options"
    rows = _options_rows(wp, "woosync_secret")
    assert [(x["option_name"], x["autoload"]) for x in rows] == [("woosync_secret", "off")] or \
        [(x["option_name"], x["autoload"]) for x in rows] == [("woosync_secret", "no")], rows
    assert rows[0]["option_value"].startswith("woosync-sealed-v1:")

    # Rotation through the page: shown once; the short-lived transient holds it sealed, not autoloaded.
    wp.serve(extension=True)
    admin = wp.browser("admin", wp.admin_password)
    status, body, _ = admin.request("/wp-admin/options-general.php?page=woosync")
    assert old_secret not in body and old_secret[:10] + "…" + old_secret[-4:] in body
    post = dict(_form(body, "options.php"))
    post.update({"woosync_settings[url]": rx.url, "woosync_settings[generate_secret]": "1",
                 "woosync_settings[enabled]": "1", "woosync_settings[topics][]": ["product.stock_updated"]})
    status, body, headers = admin.request("/wp-admin/options.php", post, follow=False)
    assert status == 302, (status, body[-1500:])
    rows = _options_rows(wp, "%woosync_new_secret%")
    assert {x["option_name"] for x in rows} == {"_transient_woosync_new_secret_1", "_transient_timeout_woosync_new_secret_1"}, rows
    value = next(x for x in rows if x["option_name"] == "_transient_woosync_new_secret_1")
    timeout = next(x for x in rows if x["option_name"] == "_transient_timeout_woosync_new_secret_1")
    assert value["autoload"] in ("off", "no") and value["option_value"].startswith("woosync-sealed-v1:"), value
    now = wp.php("out(time());").last_json()
    assert 0 < int(timeout["option_value"]) - now <= 120, timeout
    status, body, _ = admin.request("/wp-admin/options-general.php?page=woosync&settings-updated=true")
    m = re.search(r'id="woosync-new-secret">(whsec_[A-Za-z0-9+/=]+)</code>', body)
    assert m, body[-3000:]
    new_secret = m.group(1)
    assert new_secret != old_secret
    assert _options_rows(wp, "%woosync_new_secret%") == []      # shown once, then gone
    assert _options_rows(wp, f"%{new_secret[6:26]}%") == []
    r = wp.php("""
        t_flush_at_shutdown();
        $p = t_product('SKU-ROTATED', 5); $p = wc_get_product($p->get_id()); $p->set_stock_quantity(3); $p->save();
        out($p->get_id());
    """).last_json()
    req = rx.wait_for(1, 20, for_key(f"product:{r}"))[0]
    Webhook(new_secret).verify(req.body, req.headers.lower_dict())


def test_secret_sealed_with_a_key_that_is_gone_is_reported(wp, rx):
    secret = make_secret()
    wp.php(f"""
        $s = get_option('woosync_settings', []);
        $s['url'] = '{rx.url}'; $s['secret'] = '{secret}';
        update_option('woosync_settings', $s);
    """)
    assert wp.php("out(\\Woosync\\Secret_Store::state()['state']);").last_json() == "ok"
    # The salts "rotated": another key (WOOSYNC_KEY takes part in the sealing key).
    wp.mu_plugin("woosync-test-otherkey", "define('WOOSYNC_KEY', 'a-different-key-than-before');")
    st = wp.wp("woosync", "status", "--format=json")
    assert st.returncode == 0, st.describe()
    assert json.loads(st.stdout[st.stdout.index("{"):st.stdout.rindex("}") + 1])["secret"] == "unreadable"
    assert "signing secret was sealed with a key that is gone" in st.stderr, st.stderr
    _expected_cli_warnings(wp)
    wp.serve(extension=True)
    admin = wp.browser("admin", wp.admin_password)
    status, body, _ = admin.request("/wp-admin/options-general.php?page=woosync")
    assert status == 200 and 'id="woosync-secret-unreadable"' in body, body[-3000:]
    # The admin enters a new secret: it works again.
    fresh = make_secret()
    post = dict(_form(body, "options.php"))
    post.update({"woosync_settings[url]": rx.url, "woosync_settings[secret]": fresh, "woosync_settings[enabled]": "1",
                 "woosync_settings[topics][]": ["product.stock_updated"]})
    status, body, _ = admin.request("/wp-admin/options.php", post)
    assert status == 200 and 'id="woosync-secret-unreadable"' not in body
    assert wp.php("out(\\Woosync\\Secret_Store::get());").last_json() == fresh


# ---- 5. the extension's notices ------------------------------------------------------------------

def test_status_notices_reach_administrators_and_the_cli(wp, rx, tmp_path):
    """Before: `woosync_status()['notices']` were shown nowhere by the plugin. The outbox is this
    test's own (php.ini): a moved outbox stays moved, and the session's shop must not inherit it."""
    own = tmp_path / "own" / "outbox.sqlite"
    own.parent.mkdir(mode=0o700)
    cfg = {"woosync.database": str(own)}
    target = tmp_path / "moved.sqlite"
    r = wp.php(f"out(woosync_migrate('{target}'));", ini=cfg).last_json()
    assert r["done"] is True, r
    st = wp.wp("woosync", "status", ini=cfg)
    assert st.returncode == 0, st.describe()
    assert "this outbox was moved to" in st.stdout and "Warning: WooSync: this outbox was moved to" in st.stderr, st.describe()
    js = wp.wp("woosync", "status", "--format=json", ini=cfg)
    _expected_cli_warnings(wp)
    summary = json.loads(js.stdout[js.stdout.index("{"):js.stdout.rindex("}") + 1])
    assert any("this outbox was moved to" in n for n in summary["notices"]), summary
    wp.serve(extension=True, ini=cfg)
    admin = wp.browser("admin", wp.admin_password)
    status, body, _ = admin.request("/wp-admin/index.php")
    assert status == 200 and re.search(r'woosync-notice"><p>WooSync: this outbox was moved to', body), body[-3000:]
    sm = login_as(wp, "manager2", "shop_manager")
    status, body, _ = sm.request("/wp-admin/index.php")
    assert status == 200 and "this outbox was moved to" not in body


# ---- 6. strict input from the command line -------------------------------------------------------

@pytest.mark.parametrize("args,expect", [
    (("list", "--limit=abc"), '--limit must be a number (a whole number, at least 0), not "abc"'),
    (("list", "--limit=-3"), '--limit must be a number'),
    (("list", "--limit=2.5"), '--limit must be a number'),
    (("purge", "--older-than=1e3"), '--older-than must be a number'),
    (("reconcile", "--products", "--batch-size=0"), '--batch-size must be a number (a whole number, at least 1)'),
    (("test", "--timeout=soon"), '--timeout must be a number of seconds'),
    (("list", "--since=not a date"), 'Cannot read the date "not a date"'),
    (("list", "--endpoint=Not A Name"), '"Not A Name" is not an endpoint name'),
    (("retry", "--dead", "--endpoint=" + "x" * 100), 'is not an endpoint name'),
    (("show", "evt_nope"), '"evt_nope" is not an event id'),
    (("retry", "evt_0123456789abcdef", "evt_nope\x01"), '"evt_nope?" is not an event id'),
    (("show", "evt_0123456789abcdefghij"), 'No event evt_0123456789abcdefghij'),
])
def test_bad_cli_flags_fail_clearly(wp, args, expect):
    """Before: --limit=abc listed nothing and exited 0 (cast to 0), --batch-size=0 became 1."""
    r = wp.wp("woosync", *args)
    assert r.returncode == 1, r.describe()
    err = r.stderr.strip()
    assert err.startswith("Error: "), r.describe()
    if expect:
        assert expect in err, err
    for debug in ("Some(", "None)", "Err(", "Ok(", "panicked", "Error: Error", "Fatal", "Stack trace"):
        assert debug not in err, err
    assert len(err) < 600, err


# ---- 4. uninstall ---------------------------------------------------------------------------------

def test_uninstall_removes_what_the_plugin_created_and_keeps_the_outbox(wp, rx, tmp_path):
    """Before: the sealed secret, transients (one may hold a new secret), the screen option and the
    endpoint in the outbox stayed behind."""
    outbox = tmp_path / "php-ini" / "outbox.sqlite"
    outbox.parent.mkdir(mode=0o700)
    cfg = {"woosync.database": str(outbox)}
    secret = make_secret()
    wp.php(f"""
        $s = get_option('woosync_settings', []);
        $s['url'] = '{rx.url}'; $s['secret'] = '{secret}';
        update_option('woosync_settings', $s);
        set_transient('woosync_new_secret_1', 'woosync-sealed-v1:AAAA', 120);
        set_transient('woosync_test_result_1', ['ok' => true, 'message' => 'x'], 300);
        set_transient('woosync_log_notice_1', [['info', 'x']], 600);
        update_user_meta(1, 'woosync_log_per_page', 50);
        wp_schedule_single_event(time() + 600, 'woosync_replay_fallback');
        out(woosync_endpoints());
    """, ini=cfg)
    assert _endpoint(wp, ini=cfg)["url"] == rx.url
    before = set(_option_names(wp, "%woosync%"))
    assert {"woosync_settings", "_transient_woosync_new_secret_1", "_transient_woosync_test_result_1"} <= before, before
    wp.wp_ok("plugin", "deactivate", "woosync", ini=cfg)
    r = wp.wp("plugin", "uninstall", "woosync", "--skip-delete", ini=cfg)   # never delete the files: a symlink to the repository
    assert r.returncode == 0 and "Uninstalled" in r.stdout, r.describe()

    assert _option_names(wp, "%woosync%") == []
    r = wp.php("""
        global $wpdb;
        out(['meta' => $wpdb->get_col("SELECT meta_key FROM {$wpdb->usermeta} WHERE meta_key LIKE '%woosync%'"),
             'cron' => wp_next_scheduled('woosync_replay_fallback'),
             'table' => $wpdb->get_var("SHOW TABLES LIKE '{$wpdb->prefix}woosync_fallback'"),
             'endpoints' => array_column(woosync_endpoints(), 'name')]);
    """, ini=cfg).last_json()
    assert "wordpress" not in r.pop("endpoints"), r     # `default` (php.ini's, unconfigured here) is listed always
    assert r == {"meta": [], "cron": False, "table": None}, r
    assert outbox.is_file(), "the outbox of php.ini was deleted"
    assert (outbox.stat().st_size > 0)
