#!/usr/bin/env python3
"""woosync demo (driver for `make demo`).

    python3 scripts/demo.py [path/to/libwoosync.so]

Starts a webhook receiver on 127.0.0.1, dispatches sample WooCommerce events through the real
`php` binary with the extension loaded, shows what arrived and that the signatures verify
(PyPI `standardwebhooks`), then simulates a CRM outage: the receiver goes away, events stay
pending with failed attempts on record, the receiver comes back and the events are delivered.

Exit status 0 when every dispatched event arrived with a valid signature, 1 otherwise.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from receiver import Receiver, Response, wc_signature  # noqa: E402

try:
    from standardwebhooks.webhooks import Webhook
except ImportError:  # pragma: no cover
    Webhook = None

PHP = os.environ.get("PHP", "php")
BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() \
    else ("", "", "", "", "")


def ini_arg(key: str, value) -> str:
    # always quoted: the INI parser behind `php -d` stops unquoted values at '=' (whsec_ padding)
    return f'-d{key}="{value}"'


def section(title: str) -> None:
    print(f"\n{BOLD}== {title} =={RESET}", flush=True)


def php_json(so: Path, ini: dict, code: str, timeout: float = 60):
    with tempfile.NamedTemporaryFile("w", suffix=".php", delete=False) as f:
        f.write("<?php\n" + code)
        script = f.name
    args = [PHP, "-d", "display_errors=stderr", f"-dextension={so}"] + [ini_arg(k, v) for k, v in ini.items()] + [script]
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    finally:
        os.unlink(script)
    if p.returncode != 0:
        raise RuntimeError(f"php failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    return json.loads(lines[-1])


def verify(req, secret: str) -> tuple[bool, bool, str]:
    sw_ok, err = False, ""
    if Webhook is not None:
        try:
            Webhook(secret).verify(req.body, req.headers.lower_dict())
            sw_ok = True
        except Exception as e:  # noqa: BLE001
            err = str(e)
    else:
        err = "standardwebhooks not installed (pip install standardwebhooks)"
    wc = req.headers.get("X-WC-Webhook-Signature")
    wc_ok = wc is not None and wc == wc_signature(secret, req.body)
    return sw_ok, wc_ok, err


def show_request(req, secret: str) -> bool:
    sw_ok, wc_ok, err = verify(req, secret)
    h = req.headers
    print(f"  {req.method} {req.path}  topic={h.get('X-WC-Webhook-Topic')}  webhook-id={h.get('webhook-id')}")
    print(f"    {DIM}webhook-timestamp={h.get('webhook-timestamp')}  delivery={h.get('X-WC-Webhook-Delivery-ID')}  "
          f"source={h.get('X-WC-Webhook-Source')}  ua={h.get('User-Agent')}{RESET}")
    body = req.body.decode(errors="replace")
    print(f"    body: {body if len(body) < 400 else body[:400] + '...'}")
    mark = lambda ok: f"{GREEN}verified{RESET}" if ok else f"{RED}FAILED{RESET}"  # noqa: E731
    print(f"    standard webhooks signature: {mark(sw_ok)}{(' (' + err + ')') if err else ''};"
          f"  X-WC-Webhook-Signature: {mark(wc_ok)}")
    return sw_ok and wc_ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("so", nargs="?", default=os.environ.get("WOOSYNC_SO", str(ROOT / "target/release/libwoosync.so")))
    args = ap.parse_args(argv)
    so = Path(args.so).resolve()
    if not so.is_file():
        print(f"extension not found: {so}", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="woosync-demo-"))
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    rx = Receiver(default=Response(200, body=b'{"received":true}', headers={"Content-Type": "application/json"}))
    rx.start()
    ini = {
        "woosync.database": work / "outbox.sqlite",
        "woosync.endpoint": rx.url,
        # The demo's receiver is on 127.0.0.1, which the destination policy refuses unless allowed.
        "woosync.allow_networks": "127.0.0.1/32",
        "woosync.secret": secret,
        "woosync.source": "https://shop.example.test",
        "woosync.retry_delays": "1,1,1,1,1,1,1,1,1,1",
        "woosync.timeout": 5,
        "woosync.shutdown_grace": 1,
    }
    all_ids: list[str] = []
    verified: dict[str, bool] = {}

    def collect():
        for q in rx.requests:
            if q.response is not None and q.response.status == 200 and q.event_id:
                ok = verify(q, secret)
                verified[q.event_id] = verified.get(q.event_id, False) or (ok[0] and ok[1])

    try:
        section("setup")
        print(f"  php:       {subprocess.run([PHP, '-r', 'echo PHP_VERSION;'], capture_output=True, text=True, timeout=30).stdout}")
        print(f"  extension: {so}")
        print(f"  receiver:  {rx.url}")
        print(f"  outbox:    {ini['woosync.database']}")
        print(f"  secret:    {secret[:10]}... (generated for this run)")

        section("1. dispatch two events and flush")
        r = php_json(so, ini, r"""
            $ids = [];
            $ids[] = woosync_dispatch('product.stock_updated',
                ['product_id' => 42, 'sku' => 'HOODIE-BLUE-M', 'stock_quantity' => 7, 'stock_status' => 'instock'],
                ['key' => 'product:42']);
            $ids[] = woosync_dispatch('order.created', [
                'id' => 1001, 'status' => 'processing', 'currency' => 'EUR', 'total' => '59.90',
                'billing' => ['first_name' => 'Zoë', 'email' => 'zoe@example.test'],
                'line_items' => [['product_id' => 42, 'quantity' => 1, 'total' => '59.90']],
            ], ['key' => 'order:1001']);
            echo json_encode(['ids' => $ids, 'flushed' => woosync_flush(10)]), "\n";
        """)
        all_ids += r["ids"]
        for i in r["ids"]:
            print(f"  dispatched {i}")
        print(f"  woosync_flush(10) -> {r['flushed']}")
        print("  the receiver got:")
        for q in rx.wait_for(2, timeout=10):
            show_request(q, secret)

        section("2. CRM outage: receiver stopped")
        rx.stop()
        before = rx.count()
        r = php_json(so, ini, r"""
            $ids = [];
            $ids[] = woosync_dispatch('product.stock_updated',
                ['product_id' => 42, 'sku' => 'HOODIE-BLUE-M', 'stock_quantity' => 6, 'stock_status' => 'instock'],
                ['key' => 'product:42']);
            $ids[] = woosync_dispatch('order.status_changed', ['id' => 1001, 'from' => 'processing', 'to' => 'completed'],
                ['key' => 'order:1001']);
            $ok = woosync_flush(2.5);   // the CRM is down: attempts fail, events stay pending
            $s = woosync_status();
            echo json_encode(['ids' => $ids, 'flushed' => $ok, 'status' => $s, 'event' => woosync_event($ids[0])]), "\n";
        """)
        all_ids += r["ids"]
        st, ev = r["status"], r["event"]
        for i in r["ids"]:
            print(f"  dispatched {i}")
        print(f"  woosync_flush(2.5) -> {r['flushed']}  (nothing can be delivered)")
        print(f"  woosync_status(): pending={st['pending']} delivered={st['delivered']} dead={st['dead']} "
              f"in_flight={st['in_flight']} oldest_pending_age={st['oldest_pending_age']}")
        print(f"                    last_error={st['last_error']!r}")
        print(f"  woosync_event({ev['id']}):")
        for d in ev["deliveries"]:
            print(f"    delivery to {d['endpoint']}: state={d['state']} attempts={d['attempts']} "
                  f"next_attempt_at={d.get('next_attempt_at')}")
        for a in ev["attempts"]:
            print(f"    attempt at {a['started_at']}: http_status={a['http_status']} error_class={a['error_class']} "
                  f"error={a['error']!r}")
        print(f"  requests received during the outage: {rx.count() - before}")
        outage_ok = st["pending"] >= 2 and len(ev["attempts"]) >= 1

        section("3. receiver back on the same port; a new php process delivers")
        rx.start()
        r = php_json(so, ini, r"""
            $ok = woosync_flush(20);
            $s = woosync_status();
            echo json_encode(['flushed' => $ok, 'status' => $s]), "\n";
        """)
        st = r["status"]
        print(f"  woosync_flush(20) -> {r['flushed']}")
        print(f"  woosync_status(): pending={st['pending']} delivered={st['delivered']} dead={st['dead']} "
              f"last_success_at={st['last_success_at']}")
        print("  the receiver got:")
        for q in rx.requests[before:]:
            show_request(q, secret)
        if not r["flushed"]:
            print(f"  {RED}still pending; woosync_status():{RESET}")
            print("    " + json.dumps(st, indent=2).replace("\n", "\n    "))

        collect()
        section("result")
        missing = [i for i in all_ids if not verified.get(i)]
        for i in all_ids:
            print(f"  {i}: {GREEN + 'delivered, signature verified' + RESET if verified.get(i) else RED + 'NOT delivered/verified' + RESET}")
        if not outage_ok:
            print(f"  {RED}the outage was not visible in woosync_status()/woosync_event(){RESET}")
        if missing or not outage_ok:
            print(f"{RED}demo FAILED{RESET}")
            return 1
        print(f"{GREEN}demo OK: {len(all_ids)} events delivered and verified{RESET}")
        return 0
    except Exception as e:  # noqa: BLE001
        print(f"{RED}demo FAILED: {e}{RESET}", file=sys.stderr)
        return 1
    finally:
        rx.stop()


if __name__ == "__main__":
    sys.exit(main())
