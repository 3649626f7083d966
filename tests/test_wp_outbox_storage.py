"""The outbox in the WordPress database (issue 11, plugin side), through the real WordPress 7 +
WooCommerce 11 + WP-CLI 2.12.0 shop and a real MariaDB:

- the mysql:// URL the plugin builds from every DB_HOST form wp-config.php allows, percent-encoded,
  and used for real against a MariaDB whose password has every character a URL must escape;
- Settings → WooSync "Store the outbox in the WordPress database": switching it on with events
  waiting in the SQLite outbox (CRM down) moves them, the password never shows, and they are
  delivered in per-key order once the CRM is back; php.ini's woosync.database wins;
- `wp woosync migrate --to=<url>`: progress bar, masked passwords, exit codes, resumable.
"""
from __future__ import annotations

import json
import re
import urllib.parse

import pytest

from chaos_support import first_successes, order_violations
from receiver import Receiver

# Retries every 2 s for two minutes: events wait (not dead) while the CRM is down.
SLOW_RETRIES = ",".join(["2"] * 60)


def plugin_ini(url: str) -> dict:
    """No woosync.database: the plugin chooses the outbox (its file, or the WordPress database)."""
    return {"woosync.endpoint": url, "woosync.retry_delays": SLOW_RETRIES, "woosync.timeout": "5"}


@pytest.fixture
def private_dir(wp, tmp_path):
    """The plugin's SQLite outbox in this test's own directory (not the session's shared one)."""
    d = tmp_path / "private"
    wp.mu_plugin("woosync-test-dir", f"add_filter('woosync_private_dir', function () {{ return '{d}'; }});")
    wp.php("delete_option('woosync_outbox_path'); delete_site_option('woosync_outbox_in_wpdb'); out(1);",
           extension=False)
    yield d
    wp.mu_plugin("woosync-test-dir", None)


@pytest.fixture
def wpdb_tables(wp):
    """Drops the outbox tables the test created in the shop's database (the per-test restore only
    restores the tables of the dump)."""
    yield
    names = wp.db.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop' "
                      "AND table_name LIKE 'wp\\_woosync\\_%'").split()
    if names:
        wp.db.sql("DROP TABLE " + ", ".join(f"`{n}`" for n in names), "shop")


def crm_on(port: int) -> Receiver:
    rx = Receiver(port=port)
    rx.start()
    return rx


def arrivals(before: Receiver, after: Receiver) -> list:
    """Both receivers' requests in arrival order (the second one's indexes come after the first's)."""
    shift = before.count()
    for r in after.requests:
        r.index += shift
    return before.requests + after.requests


def port_of(url: str) -> int:
    return urllib.parse.urlparse(url).port


DISPATCH = """
t_flush_at_shutdown(%(flush)s);
$ids = [];
for ($i = 0; $i < %(n)d; $i++) {
    foreach (%(keys)s as $key) $ids[] = woosync_dispatch('order.updated', ['key' => $key, 'i' => $i], ['key' => $key]);
}
$p = wc_get_product(%(product)d); $p->set_stock_quantity($p->get_stock_quantity() - 1); $p->save();
out(['ids' => $ids, 'status' => woosync_status()]);
"""


def test_url_from_every_db_host_form_and_used_for_real(wp, mariadb):
    """The URL for each DB_HOST form (string check), and the forms a test server can serve
    (host:port, localhost:/socket, :/socket) used for real with a password that needs escaping."""
    pw = mariadb.password
    forms = wp.php(r"""
        $f = fn($h, $flags = 0, $ca = '') => \Woosync\Wpdb_Outbox::build_url($h, 'shop user', 'p@ss:w/rd?#%& x', 'shop_db', 'wp_', $flags, $ca);
        out([
            'host' => $f('db.internal'),
            'host_port' => $f('db.internal:3307'),
            'host_socket' => $f('db.internal:/var/run/mysqld/my.sock'),
            'socket' => $f(':/tmp/my sql.sock'),
            'localhost' => $f('localhost'),
            'localhost_port' => $f('localhost:3307'),
            'v6_port' => $f('[::1]:3306'),
            'v6' => $f('[2001:db8::5]'),
            'tls' => $f('db.internal', MYSQLI_CLIENT_SSL),
            'tls_noverify' => $f('db.internal', MYSQLI_CLIENT_SSL | MYSQLI_CLIENT_SSL_DONT_VERIFY_SERVER_CERT),
            'tls_ca' => $f('db.internal', MYSQLI_CLIENT_SSL, '/etc/ssl/my ca.pem'),
            'default_socket' => \Woosync\Wpdb_Outbox::default_socket(),
            'masked' => \Woosync\Wpdb_Outbox::mask($f('db.internal:3307')),
        ]);
    """, extension=False).last_json()
    auth = "mysql://shop%20user:p%40ss%3Aw%2Frd%3F%23%25%26%20x@"
    sock = urllib.parse.quote(forms["default_socket"], safe="")
    assert forms["host"] == auth + "db.internal/shop_db?prefix=wp_"
    assert forms["host_port"] == auth + "db.internal:3307/shop_db?prefix=wp_"
    assert forms["host_socket"] == auth + "localhost/shop_db?prefix=wp_&socket=%2Fvar%2Frun%2Fmysqld%2Fmy.sock"
    assert forms["socket"] == auth + "localhost/shop_db?prefix=wp_&socket=%2Ftmp%2Fmy%20sql.sock"
    # localhost means the default socket for mysqli, whatever the port: the same server WordPress uses.
    assert forms["localhost"] == forms["localhost_port"] == auth + f"localhost/shop_db?prefix=wp_&socket={sock}"
    assert forms["v6_port"] == auth + "[::1]:3306/shop_db?prefix=wp_"
    assert forms["v6"] == auth + "[2001:db8::5]/shop_db?prefix=wp_"
    assert forms["tls"] == auth + "db.internal/shop_db?prefix=wp_&ssl-mode=VERIFY_IDENTITY"
    assert forms["tls_noverify"] == auth + "db.internal/shop_db?prefix=wp_&ssl-mode=REQUIRED"
    assert forms["tls_ca"] == auth + "db.internal/shop_db?prefix=wp_&ssl-mode=VERIFY_IDENTITY&ssl-ca=%2Fetc%2Fssl%2Fmy%20ca.pem"
    assert forms["masked"] == "mysql://shop%20user:****@db.internal:3307/shop_db?prefix=wp_"

    # For real: the extension connects with each URL (the password has @ : / ? # %).
    got = wp.php(f"""
        $r = [];
        foreach ({json.dumps([f"127.0.0.1:{mariadb.port}", f"localhost:{mariadb.sock}", f":{mariadb.sock}"])} as $i => $host) {{
            $url = \\Woosync\\Wpdb_Outbox::build_url($host, 'woosync', {json.dumps(pw)}, 'shop', "pa{{$i}}_");
            ini_set('woosync.database', $url);
            $id = woosync_dispatch('test.ping', ['i' => $i], ['key' => 'k']);
            $s = woosync_status();
            $r[] = ['id' => $id, 'database' => $s['database'], 'pending' => $s['pending'] + $s['unrouted']];
        }}
        out($r);
    """, ini={"woosync.retry_delays": "60"}).last_json()
    assert len(got) == 3 and all(g["id"].startswith("evt_") and g["pending"] == 1 for g in got), got
    assert all(pw not in g["database"] and ":****@" in g["database"] for g in got), got
    tables = mariadb.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop' "
                         "AND table_name LIKE 'pa%\\_woosync\\_events'").split()
    assert sorted(tables) == ["pa0_woosync_events", "pa1_woosync_events", "pa2_woosync_events"], tables


def storage_form(page: str) -> dict:
    form = page.split('id="woosync-storage-form"', 1)[1].split("</form>", 1)[0]
    return {"nonce": re.search(r'name="_wpnonce" value="([0-9a-f]+)"', form).group(1),
            "checked": re.search(r'name="in_wpdb" value="1"\s+checked', form) is not None}


def test_switching_to_the_wordpress_database_moves_waiting_events(wp, private_dir, wpdb_tables):
    crm = Receiver()
    crm.start()
    port = port_of(crm.url)
    cfg = plugin_ini(crm.url)
    pid = wp.php("out(t_product('SKU-MOVE', 50)->get_id());", ini=cfg).last_json()
    # Delivered before: two events of order:1 and a stock change.
    first = wp.php(DISPATCH % {"flush": 15, "n": 2, "keys": "['order:1']", "product": pid}, ini=cfg).last_json()
    sqlite = first["status"]["database"]
    assert sqlite.startswith(str(private_dir)) and sqlite.endswith(".sqlite"), sqlite
    crm.wait_for(3, 15)
    crm.stop()  # the CRM is down: what follows waits
    waiting = wp.php(DISPATCH % {"flush": 0, "n": 3, "keys": "['order:1', 'order:2']", "product": pid},
                     ini=cfg).last_json()
    assert waiting["status"]["pending"] >= 7, waiting["status"]

    wp.serve(ini=cfg)
    b = wp.browser("admin", wp.admin_password)
    status, page, _ = b.request("/wp-admin/options-general.php?page=woosync")
    assert status == 200 and "Outbox storage" in page
    assert f"Outbox in use: <code>{sqlite}</code>" in page
    form = storage_form(page)
    assert form["checked"] is False  # off by default
    status, page, _ = b.request("/wp-admin/admin-post.php", {"action": "woosync_outbox_storage",
                                                             "_wpnonce": form["nonce"], "in_wpdb": "1"})
    assert status == 200, page[-2000:]
    note = re.search(r'id="woosync-storage-result"><p>([^<]*)</p>', page)
    assert note, page[-3000:]
    masked = f"mysql://wp:****@127.0.0.1:{wp.db.port}/shop?prefix=wp_"
    assert re.fullmatch(r"Moved (\d+) waiting events; the outbox now is " + re.escape(masked) + r"\.", note.group(1)), note.group(1)
    assert int(re.match(r"Moved (\d+)", note.group(1)).group(1)) >= 7
    assert storage_form(page)["checked"] is True
    assert f"Outbox in use: <code>{masked}</code>" in page
    assert wp.db.password not in page

    # Every later process uses the WordPress database: the CLI shows it masked, with the events.
    s = wp.wp("woosync", "status", "--format=json", ini=cfg)
    assert s.returncode == 0, s.describe()
    st = json.loads(s.stdout)
    shown = f"mysql://wp:****@127.0.0.1:{wp.db.port}/shop (tables wp_woosync_*)"  # as the extension shows it
    assert st["outbox"] == shown and st["pending"] >= 7, st
    assert wp.db.password not in s.stdout + s.stderr
    tables = wp.db.sql("SHOW TABLES LIKE 'wp\\_woosync\\_%'", "shop").split()
    assert "wp_woosync_events" in tables, tables

    # A new event after the switch joins its key's sequence; then the CRM comes back.
    after = wp.php(DISPATCH % {"flush": 0, "n": 1, "keys": "['order:2']", "product": pid}, ini=cfg).last_json()
    assert after["status"]["database"] == shown
    crm2 = crm_on(port)
    try:
        done = wp.php("out(woosync_flush(90));", ini=cfg, timeout=120).last_json()
        assert done is True
        ids = first["ids"] + waiting["ids"] + after["ids"]
        seen = arrivals(crm, crm2)
        got = first_successes(seen)
        assert not [i for i in ids if i not in got]
        violations, per_key = order_violations(seen)
        assert not violations, violations
        assert per_key["order:1"] == [1, 2, 3, 4, 5] and per_key["order:2"] == [1, 2, 3, 4], per_key
        assert per_key[f"product:{pid}"][-1] == max(per_key[f"product:{pid}"])

        # Switching back moves nothing (nothing waits) and returns to the same file.
        status, page, _ = b.request("/wp-admin/options-general.php?page=woosync")
        status, page, _ = b.request("/wp-admin/admin-post.php", {"action": "woosync_outbox_storage",
                                                                 "_wpnonce": storage_form(page)["nonce"]})
        note = re.search(r'id="woosync-storage-result"><p>([^<]*)</p>', page).group(1)
        assert note == f"Moved 0 waiting events; the outbox now is {sqlite}.", note
        assert json.loads(wp.wp("woosync", "status", "--format=json", ini=cfg).stdout)["outbox"] == sqlite
    finally:
        crm2.stop()


def test_php_ini_database_wins_and_the_page_says_so(wp, private_dir, tmp_path):
    outbox = tmp_path / "ini" / "outbox.sqlite"
    cfg = {**plugin_ini("http://127.0.0.1:9/"), "woosync.database": str(outbox)}
    wp.serve(ini=cfg)
    b = wp.browser("admin", wp.admin_password)
    status, page, _ = b.request("/wp-admin/options-general.php?page=woosync")
    assert status == 200
    assert f'id="woosync-storage-ini"><strong>php.ini sets woosync.database, which wins over this setting:</strong> <code>{outbox}</code>' in page
    assert 'id="woosync-storage-form"' not in page
    r = wp.php("out(\\Woosync\\Wpdb_Outbox::switch_to(true));", ini=cfg).last_json()
    assert r["ok"] is False and r["message"].startswith(f"php.ini sets woosync.database ({outbox}), which wins"), r
    assert wp.php("out(get_site_option('woosync_outbox_in_wpdb', 0));", ini=cfg).last_json() in (0, "0", False)


def test_wp_cli_migrate_sqlite_to_mariadb_then_delivered_in_order(wp, mysql_url, mariadb, tmp_path):
    crm = Receiver()
    crm.start()
    port = port_of(crm.url)
    sqlite = tmp_path / "outbox" / "outbox.sqlite"
    cfg = {**plugin_ini(crm.url), "woosync.database": str(sqlite)}
    pid = wp.php("out(t_product('SKU-MIG', 50)->get_id());", ini=cfg).last_json()
    first = wp.php(DISPATCH % {"flush": 15, "n": 2, "keys": "['order:7']", "product": pid}, ini=cfg).last_json()
    crm.wait_for(3, 15)
    crm.stop()
    waiting = wp.php(DISPATCH % {"flush": 0, "n": 6, "keys": "['order:7', 'order:8']", "product": pid},
                     ini=cfg).last_json()
    assert waiting["status"]["pending"] >= 13, waiting["status"]

    # Errors first: no target, a relative path, the outbox itself.
    bad = wp.wp("woosync", "migrate", ini=cfg)
    assert bad.returncode == 1 and "missing --to parameter" in bad.stderr, bad.describe()
    bad = wp.wp("woosync", "migrate", "--to=relative.sqlite", ini=cfg)
    assert bad.returncode == 1 and "neither a mysql:// URL nor an absolute path" in bad.stderr, bad.describe()
    bad = wp.wp("woosync", "migrate", f"--to={sqlite}", ini=cfg)
    assert bad.returncode == 1 and "already is the outbox in use" in bad.stderr, bad.describe()
    bad = wp.wp("woosync", "migrate", f"--to={mysql_url}", "--batch-size=0", ini=cfg)
    assert bad.returncode == 1 and "--batch-size must be a whole number" in bad.stderr, bad.describe()

    # On a terminal: the progress bar, in batches of 4; the password never printed.
    masked = re.sub(r":[^:@]*@", ":****@", mysql_url.split("://", 1)[1], count=1)
    t = wp.wp_tty("woosync", "migrate", f"--to={mysql_url}", "--batch-size=4", ini=cfg)
    assert t.returncode == 0, t.describe()
    out = t.stdout + t.stderr
    assert mariadb.password not in out and urllib.parse.quote(mariadb.password, safe="") not in out
    assert f"Moving the outbox {sqlite} to mysql://{masked}." in out, out
    assert re.search(r"Moving events\s+100% \[=+\]", out), out
    m = re.search(r"Moved (\d+) events, (\d+) endpoints and (\d+) per-key counters\.", out)
    assert m and int(m.group(1)) >= 13 and int(m.group(3)) >= 3, out
    assert f"Success: Moved to mysql://{masked}. Now set woosync.database to it" in out, out

    # Run again: nothing left, harmless (a pipe: no progress bar).
    again = wp.wp("woosync", "migrate", f"--to={mysql_url}", ini=cfg)
    assert again.returncode == 0 and "Moved 0 events" in again.stdout and "Moving events" not in again.stdout, again.describe()

    # The site now points at MariaDB; the CRM comes back: everything arrives in per-key order.
    mcfg = {**cfg, "woosync.database": mysql_url}
    s = json.loads(wp.wp("woosync", "status", "--format=json", ini=mcfg).stdout)
    prefix = urllib.parse.parse_qs(urllib.parse.urlparse(mysql_url).query)["prefix"][0]
    assert s["outbox"] == f"mysql://woosync:****@127.0.0.1:{mariadb.port}/shop (tables {prefix}woosync_*)", s
    assert s["pending"] >= 13, s
    crm2 = crm_on(port)
    try:
        assert wp.php("out(woosync_flush(90));", ini=mcfg, timeout=120).last_json() is True
        ids = first["ids"] + waiting["ids"]
        seen = arrivals(crm, crm2)
        got = first_successes(seen)
        assert not [i for i in ids if i not in got]
        violations, per_key = order_violations(seen)
        assert not violations, violations
        assert per_key["order:7"] == list(range(1, 9)) and per_key["order:8"] == list(range(1, 7)), per_key
    finally:
        crm2.stop()


def test_only_administrators_move_the_outbox_or_manage_the_metrics_token(wp, private_dir):
    """A shop manager (WooCommerce's manage_woocommerce role) opens Settings → WooSync but is shown
    neither form, and the handlers refuse them before looking at the nonce."""
    cfg = plugin_ini("http://127.0.0.1:9/")
    wp.php("wp_insert_user(['user_login' => 'manager', 'user_pass' => 'manager-pass-1', 'role' => 'shop_manager']); out(1);")
    wp.serve(ini=cfg)
    b = wp.browser("manager", "manager-pass-1")
    status, page, _ = b.request("/wp-admin/options-general.php?page=woosync")
    assert status == 200 and "Outbox storage" in page, page[-2000:]
    assert 'id="woosync-storage-form"' not in page and "An administrator (a network administrator on multisite) chooses" in page
    assert 'name="action" value="woosync_metrics_token"' not in page
    for action, refusal in (("woosync_outbox_storage", "not allowed to change where the outbox is stored"),
                            ("woosync_metrics_token", "Sorry, you are not allowed to do that.")):
        status, page, _ = b.request("/wp-admin/admin-post.php", {"action": action, "_wpnonce": "0", "in_wpdb": "1"})
        assert status == 403 and refusal in page, (action, status, page[-1500:])
    assert wp.php("out([get_site_option('woosync_outbox_in_wpdb', 0), get_option('woosync_metrics_token_hash', '')]);",
                  ini=cfg).last_json() == [0, ""]
    # The administrator sees both forms.
    status, page, _ = wp.browser("admin", wp.admin_password).request("/wp-admin/options-general.php?page=woosync")
    assert 'id="woosync-storage-form"' in page and 'name="action" value="woosync_metrics_token"' in page


def test_site_health_page_and_info_tab_with_the_outbox_in_the_wordpress_database(wp, private_dir, wpdb_tables):
    """Tools → Site Health as WordPress renders it (direct tests run on the page, as the web
    server's user), with the outbox in the WordPress database: healthy, and the Info tab shows the
    outbox without the database password."""
    crm = Receiver()
    crm.start()
    cfg = plugin_ini(crm.url)
    try:
        wp.php("update_site_option('woosync_outbox_in_wpdb', 1); out(1);", ini=cfg)
        wp.php("t_flush_at_shutdown(15); out(woosync_dispatch('order.updated', ['x' => 1], ['key' => 'order:5']));",
                     ini=cfg).last_json()
        crm.wait_for(1, 15)
        wp.serve(ini=cfg)
        b = wp.browser("admin", wp.admin_password)
        status, page, _ = b.request("/wp-admin/site-health.php")
        assert status == 200
        data = json.loads(re.search(r"var SiteHealth = (\{.*?\});\n", page).group(1))
        ours = {t["test"]: t for t in data["site_status"]["direct"] if t["test"].startswith("woosync_")}
        assert set(ours) == {"woosync_extension", "woosync_outbox", "woosync_key", "woosync_endpoints",
                             "woosync_pending", "woosync_sender"}, ours.keys()
        masked = f"mysql://wp:****@127.0.0.1:{wp.db.port}/shop?prefix=wp_"
        assert ours["woosync_outbox"]["status"] == "good" and masked in ours["woosync_outbox"]["description"], ours["woosync_outbox"]
        assert ours["woosync_endpoints"]["status"] == "good" and ours["woosync_pending"]["status"] == "good", ours
        assert ours["woosync_extension"]["status"] == "good", ours["woosync_extension"]
        assert wp.db.password not in page

        status, page, _ = b.request("/wp-admin/site-health.php?tab=debug")
        assert status == 200 and 'id="health-check-accordion-block-woosync"' in page, page[-2000:]
        section = page.split('id="health-check-accordion-block-woosync"', 1)[1].split("</table>", 1)[0]
        assert masked in section and "the plugin: the WordPress database" in section, section
        assert wp.db.password not in page
    finally:
        crm.stop()


def test_a_move_cut_short_switches_nothing_and_finishes_later(wp, private_dir, wpdb_tables):
    """A move longer than the web request's budget: the setting stays off, the page says how many
    events remain, new events already land in the target in order, and the next switch finishes."""
    port = port_of(f"http://127.0.0.1:{__import__('receiver').closed_port()}/")
    cfg = plugin_ini(f"http://127.0.0.1:{port}/crm")
    r = wp.php("""
        $ids = [];
        for ($i = 0; $i < 5; $i++) $ids[] = woosync_dispatch('order.updated', ['i' => $i], ['key' => 'order:9']);
        $cut = \\Woosync\\Wpdb_Outbox::switch_to(true, 0, 2);   // one batch of 2, then out of time
        $ids[] = woosync_dispatch('order.updated', ['i' => 5], ['key' => 'order:9']);
        out(['ids' => $ids, 'cut' => $cut, 'on' => \\Woosync\\Wpdb_Outbox::enabled()]);
    """, ini=cfg).last_json()
    cut = r["cut"]
    assert cut["ok"] is False and cut["done"] is False and cut["remaining"] == 3 and r["on"] is False, r
    assert cut["message"].startswith("Moved 2 events; 3 still to move to mysql://wp:****@"), cut
    assert "Press the button again, or run `wp woosync migrate --to=wordpress`, to finish the switch." in cut["message"]
    assert wp.db.password not in json.dumps(r)
    done = wp.php("out(\\Woosync\\Wpdb_Outbox::switch_to(true));", ini=cfg).last_json()
    assert done["ok"] is True and done["message"].startswith("Moved 3 waiting events; the outbox now is mysql://"), done
    events = wp.php("out(array_map(fn($e) => [$e['id'], $e['sequence']], woosync_events(['key' => 'order:9', 'limit' => 10])));",
                    ini=cfg).last_json()
    assert sorted(events, key=lambda e: e[1]) == [[i, n + 1] for n, i in enumerate(r["ids"])], (events, r["ids"])
