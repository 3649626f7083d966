"""Helpers shared by the WordPress test files (test_wordpress.py, test_wp_orders.py, test_wp_cli.py)."""
from __future__ import annotations

import base64
import json
import os
import urllib.parse
from pathlib import Path
from typing import Optional


def make_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def ini(outbox: Path, url: Optional[str] = None, secret: Optional[str] = None, **more) -> dict:
    """php.ini settings for a test's PHP: its own outbox, the `default` endpoint at `url`, fast retries."""
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


def of_key(rx, key: str, delivered: bool = False) -> list:
    """Events the receiver got for one ordering key, in sequence order, each once: delivery is
    at-least-once (an attempt cut short, e.g. by stopping php -S, is made again with the same
    webhook-id), so a receiver deduplicates on the event id. `delivered`: only 2xx answers."""
    seen: dict = {}
    for r in rx.requests:
        if r.json().get("key") == key and (not delivered or 200 <= r.response.status < 300):
            seen.setdefault(r.json()["id"], r)
    return sorted(seen.values(), key=lambda r: r.json()["sequence"])


def table_rows(text: str) -> list[dict]:
    """Rows of a WP-CLI table: bordered (`| a | b |`, on a terminal) or tab-separated (piped)."""
    lines = [l for l in text.splitlines() if l.startswith("|")]
    if lines:
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        rows: list[dict] = []
        for line in lines[1:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if rows and not cells[0]:  # a long value wrapped onto the next line
                for k, c in zip(header, cells):
                    rows[-1][k] += c
            else:
                rows.append(dict(zip(header, cells)))
        return rows
    lines = [l for l in text.splitlines() if "\t" in l]
    header = lines[0].split("\t")
    return [dict(zip(header, l.split("\t"))) for l in lines[1:]]


def rest_users(wp, outbox, rx) -> dict:
    """A CRM user (set as the plugin's CRM user) and the admin, each with an application password
    for WooCommerce's REST API (Basic auth: allowed over http on a `local` environment)."""
    return wp.php("""
        $crm = wp_insert_user(['user_login' => 'crm-rest', 'user_pass' => wp_generate_password(), 'role' => 'administrator']);
        [$crm_pw] = WP_Application_Passwords::create_new_application_password($crm, ['name' => 'crm']);
        [$admin_pw] = WP_Application_Passwords::create_new_application_password(1, ['name' => 'other']);
        $s = get_option('woosync_settings', []); $s['crm_user'] = $crm; update_option('woosync_settings', $s);
        out(['crm' => ['crm-rest', $crm_pw], 'admin' => ['admin', $admin_pw]]);
    """, ini=ini(outbox, rx.url)).last_json()


def wc_rest(wp, user: list, method: str, route: str, body: dict) -> dict:
    import wpsite
    b = wpsite.Browser(wp.url)
    auth = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    status, text, _ = b.request(f"/?rest_route={urllib.parse.quote(route)}", json_body=body, method=method,
                                headers={"Authorization": auth})
    assert status == 200, (route, status, text[-1500:])
    return json.loads(text)
