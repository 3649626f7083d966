"""Load generator of the checkout benchmark: concurrent customers doing real WooCommerce Store API checkouts.

    python bench/shoppers.py --url http://127.0.0.1:PORT --products 12,13,14 --customers 16 \
        --warmup 3 --duration 15 --grace 30 --out records.json

Each customer runs a closed loop (no think time) of visits, each a fresh cart as a new shopper's:
1. `GET  /wp-json/wc/store/v1/cart` — the Store API answers with the `Cart-Token` and `Nonce` headers;
2. `POST /wp-json/wc/store/v1/cart/add-item` (1 or 2 products, quantity 1-3), with `Cart-Token` and `Nonce`,
   as the block checkout sends them;
3. `POST /wp-json/wc/store/v1/checkout` with billing/shipping address and `payment_method: cod`; every
   `--register-every`-th visit also asks for an account (`create_account` + `customer_password`).
A visit succeeds when every step answers 2xx and the checkout answers an `order_id` with status `processing`.

aiohttp over keep-alive connections (one pool, at most one connection per customer; no cookies: the cart
token is the session, as for a headless client). The sequence of products, quantities and registrations is
seeded, so every variant gets the same workload. New visits start until `warmup + duration`; visits still
running then get up to `--grace` seconds and are recorded as unfinished after that. Writes JSON to `--out`:
`t0` (wall clock at start), per-visit records (times relative to t0) and this process's CPU time
(user + sys), so the orchestrator can report the load generator's CPU share.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time

import aiohttp

API = "/wp-json/wc/store/v1"


def address(rnd: random.Random, n: int, email: str) -> dict:
    return {"first_name": f"Kim{n}", "last_name": f"Shopper{rnd.randint(1, 999)}", "company": "",
            "address_1": f"Teststrasse {rnd.randint(1, 200)}", "address_2": "", "city": "Berlin", "state": "DE-BE",
            "postcode": f"{10115 + rnd.randint(0, 900)}", "country": "DE", "email": email,
            "phone": f"+4930{rnd.randint(1000000, 9999999)}"}


async def visit(rec: dict, http: aiohttp.ClientSession, base: str, rnd: random.Random, n: int, products: list,
                register: bool, run_tag: str, t0: float, timeout: float) -> dict:
    rec.update(n=n, start=time.time() - t0, register=register)
    to = aiohttp.ClientTimeout(total=timeout)
    try:
        async with http.get(base + API + "/cart", timeout=to) as r:
            await r.read()
            rec["cart_status"] = r.status
            token, nonce = r.headers.get("Cart-Token"), r.headers.get("Nonce")
        if r.status != 200 or not token:
            rec["error"] = f"cart: HTTP {r.status}, Cart-Token {'present' if token else 'missing'}"
            return rec
        hdr = {"Cart-Token": token, "Nonce": nonce or "", "Content-Type": "application/json"}
        items = [(rnd.choice(products), rnd.randint(1, 3))]
        if rnd.random() < 0.35:
            items.append((rnd.choice(products), 1))
        for pid, qty in items:
            async with http.post(base + API + "/cart/add-item", json={"id": pid, "quantity": qty}, headers=hdr,
                                 timeout=to) as r:
                body = await r.read()
                nonce = r.headers.get("Nonce", nonce)
                hdr["Nonce"] = nonce or ""
                if r.status != 201 and r.status != 200:
                    rec["error"] = f"add-item: HTTP {r.status} {body[:200]!r}"
                    return rec
        email = f"shopper-{run_tag}-{n}@example.test"
        payload = {"billing_address": address(rnd, n, email), "shipping_address": address(rnd, n, email),
                   "payment_method": "cod", "customer_note": ""}
        payload["shipping_address"].pop("email")
        if register:
            payload["create_account"] = True
            payload["customer_password"] = f"pw-{run_tag}-{n}-{rnd.randint(100000, 999999)}"
        rec["items"] = [[p, q] for p, q in items]
        rec["checkout_start"] = time.time() - t0
        async with http.post(base + API + "/checkout", json=payload, headers=hdr, timeout=to) as r:
            body = await r.read()
            rec["end"] = time.time() - t0
            rec["checkout_status"] = r.status
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        rec["order_id"] = data.get("order_id")
        rec["order_status"] = data.get("status")
        rec["customer_id"] = data.get("customer_id")
        if r.status != 200 or not rec["order_id"] or rec["order_status"] != "processing":
            rec["error"] = f"checkout: HTTP {r.status} {body[:300]!r}"
        else:
            rec["ok"] = True
    except asyncio.TimeoutError:
        rec["error"] = f"client timeout after {timeout:.0f} s"
    except aiohttp.ClientError as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    if rec.get("end") is None:
        rec["end"] = time.time() - t0
    return rec


async def customer(i: int, a, http, products, t0, stop_at, records, counter):
    rnd = random.Random(a.seed * 1000 + i)
    while time.time() - t0 < stop_at:
        counter[0] += 1
        n = counter[0]
        register = a.register_every > 0 and n % a.register_every == 0
        rec: dict = {}
        task = asyncio.ensure_future(visit(rec, http, a.url, rnd, n, products, register, a.tag, t0, a.timeout))
        records.append((task, rec))
        await asyncio.shield(task)


async def run(a) -> dict:
    products = [int(x) for x in a.products.split(",") if x]
    conn = aiohttp.TCPConnector(limit=a.customers, force_close=False, keepalive_timeout=60)
    records: list[tuple[asyncio.Future, dict]] = []
    counter = [0]
    stop_at = a.warmup + a.duration
    async with aiohttp.ClientSession(connector=conn, cookie_jar=aiohttp.DummyCookieJar()) as http:
        t0 = time.time()
        print(json.dumps({"t0": t0}), flush=True)
        tasks = [asyncio.ensure_future(customer(i, a, http, products, t0, stop_at, records, counter))
                 for i in range(a.customers)]
        await asyncio.sleep(max(0.0, stop_at - (time.time() - t0)))
        deadline = t0 + stop_at + a.grace
        while time.time() < deadline and not all(t.done() for t, _ in records):
            await asyncio.sleep(0.05)
        cut = time.time() - t0
        for t in tasks:
            t.cancel()
        out = []
        for t, rec in records:
            if not t.done():
                t.cancel()
                rec.update(unfinished=True, end=None)  # keeps start / checkout_start: censored at the cut
            out.append(rec)
        await asyncio.gather(*tasks, *(t for t, _ in records), return_exceptions=True)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"t0": t0, "warmup": a.warmup, "duration": a.duration, "cut": cut, "customers": a.customers,
            "records": out, "cpu_s": ru.ru_utime + ru.ru_stime}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--products", required=True, help="comma-separated product ids")
    ap.add_argument("--customers", type=int, default=16)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--grace", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=300.0, help="per request (nginx answers 504 after 60 s)")
    ap.add_argument("--register-every", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tag", default="r", help="unique per run: makes customer emails unique")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    try:
        import uvloop  # type: ignore
        uvloop.install()
    except Exception:
        pass
    res = asyncio.run(run(a))
    with open(a.out, "w") as f:
        json.dump(res, f)
    ok = sum(1 for r in res["records"] if r.get("ok"))
    print(json.dumps({"visits": len(res["records"]), "ok": ok, "cpu_s": res["cpu_s"]}))
    sys.exit(0)


if __name__ == "__main__":
    main()
