"""The checkout benchmark's analysis and report: what the CRM received against the database, per run; medians
and spreads per variant and CRM state; checkout.json, checkout.md and checkout.png."""
from __future__ import annotations

import json
import sqlite3
import statistics
import time
from pathlib import Path

LABEL = {"woosync": "woosync", "wc_webhooks": "WooCommerce webhooks", "wc_webhooks_cron": "WooCommerce webhooks, WP-Cron",
         "sync": "synchronous wp_remote_post",
         "none": "no integration", "woosync_wc_webhooks": "woosync delivering WC webhooks"}
STATE_LABEL = {"healthy": "healthy", "slow": "slow (2 s)", "blackholed": "blackholed"}


def pct(xs, q):
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    return [min(xs), max(xs)] if xs else None


# ----------------------------------------------------------------------------------------------- one run

def _json(s):
    try:
        return json.loads(s)
    except ValueError:
        return None


def crm_view(rows: list, variant: str):
    """Normalises what the CRM answered into (kind, id, status/stock, order-key, time, topic, msg-id) items."""
    out = []
    for r in rows:
        if r["answered"] is None:
            continue
        h, body = r["h"], _json(r["body"]) or {}
        if r["path"].startswith("/woosync"):
            topic, data = body.get("type", ""), body.get("data") or {}
            order_key, mid = body.get("sequence", 0), h.get("webhook-id")
        elif r["path"].startswith("/wc"):
            topic, data = h.get("x-wc-webhook-topic", ""), body
            order_key, mid = r["t"], h.get("x-wc-webhook-delivery-id")
        elif r["path"].startswith("/sync"):
            topic, data = body.get("topic", ""), body.get("data") or {}
            order_key, mid = body.get("sent_at", r["t"]), None
        else:
            continue
        kind = topic.split(".")[0]
        if not isinstance(data, dict) or "id" not in data:
            continue
        out.append({"kind": kind, "topic": topic, "id": int(data["id"]), "status": data.get("status"),
                    "stock": data.get("stock_quantity"), "seq": order_key, "t": r["t"], "answered": r["answered"],
                    "mid": mid})
    return out


def latest(items, kind):
    best = {}
    for it in items:
        if it["kind"] != kind:
            continue
        b = best.get(it["id"])
        if b is None or (it["seq"], it["t"]) > (b["seq"], b["t"]):
            best[it["id"]] = it
    return best


def analyze(run: Path, variant: str, state: str, res: dict, cfg, db: dict) -> dict:
    sh = json.loads((run / "shoppers.json").read_text())
    t0, W, T = sh["t0"], sh["warmup"], sh["duration"]
    recs = sh["records"]
    ok = [r for r in recs if r.get("ok")]
    we = W + T
    done_in_window = [r for r in ok if W <= r["end"] <= we]
    # Latency: checkouts that finished within the window, plus those still running when it ended, counted
    # with the time they had run by then (a lower bound: percentiles they reach are marked "at least").
    lat = [r["end"] - r["checkout_start"] for r in done_in_window]
    censored = [we - r["checkout_start"] for r in recs if r.get("checkout_start") is not None
                and r["checkout_start"] < we and (r.get("end") is None or r["end"] > we)]
    if not censored or max(censored) <= max(lat, default=0.0):
        censored = []  # nothing was held up longer than the slowest completed checkout: no bias to correct
    visit = [r["end"] - r["start"] for r in done_in_window]
    errors = [r for r in recs if r.get("error")]
    unfinished = [r for r in recs if r.get("unfinished")]
    kinds = {}
    for r in errors:
        k = r["error"][:70]
        kinds[k] = kinds.get(k, 0) + 1
    allx = lat + censored
    out = {"checkouts": len(done_in_window), "checkouts_per_s": len(done_in_window) / T,
           "latency_s": lat, "censored_s": censored, "visit_p50_s": pct(visit, 50), "visits": len(recs), "ok": len(ok),
           "errors": len(errors), "error_kinds": kinds, "unfinished": len(unfinished),
           "registered": sum(1 for r in ok if r.get("register"))}
    for q in (50, 95, 99):
        v = pct(allx, q)
        out[f"p{q}_s"] = v
        # "at least": the samples at or above this percentile are mostly checkouts the window cut short
        tail = [x for x in allx if v is not None and x >= v]
        out[f"p{q}_lower_bound"] = bool(tail) and 2 * sum(1 for c in censored if c >= v) >= len(tail)
    out["max_s"] = max(allx) if allx else None

    # ---- the database against the CRM
    orders = {k: v for k, v in db["orders"].items() if v["status"] != "checkout-draft"}
    placed = {r["order_id"] for r in ok}
    rows = [json.loads(ln) for ln in (run / "crm.jsonl").read_text().splitlines() if ln.strip()]
    items = crm_view(rows, variant)
    o_latest = latest(items, "order")
    p_latest = latest(items, "product")
    c_latest = latest(items, "customer")
    created_seen = {it["id"] for it in items if it["topic"] == "order.created"}
    mism = [oid for oid, o in orders.items() if oid in o_latest and o_latest[oid]["status"] != o["status"]]
    products = {p for r in ok for p, _ in r.get("items", [])}
    stock_bad = [p for p in products if p in p_latest and _num(p_latest[p]["stock"]) != _num(db["stock"].get(p))]
    out["db"] = {"orders": len(orders), "drafts_left": len(db["orders"]) - len(orders),
                 "placed_not_in_db": len(placed - set(orders)), "customers": len(db["users"]),
                 "products_touched": len(products), "as_actions": db["as_actions"], "webhooks": db["webhooks"]}
    out["crm_got"] = {"requests": len(rows), "answered": sum(1 for r in rows if r["answered"] is not None),
                  "by_topic": _count(it["topic"] for it in items),
                  "orders_known": len(set(orders) & set(o_latest)), "orders_created_seen": len(set(orders) & created_seen),
                  "orders_final_status_wrong": len(mism), "final_status_examples": [
                      {"order": oid, "db": orders[oid]["status"], "crm": o_latest[oid]["status"],
                       "crm_topic": o_latest[oid]["topic"]} for oid in mism[:3]],
                  "products_known": len(products & set(p_latest)), "products_stock_wrong": len(stock_bad),
                  "customers_known": len(set(db["users"]) & set(c_latest))}

    # ---- events: what the integration produced against what the CRM answered
    answered_ids = [r["h"]["webhook-id"] for r in rows if r["answered"] is not None and r["h"].get("webhook-id")]
    ev = {}
    if variant.startswith("woosync") and (run / "outbox.sqlite").exists():
        c = sqlite3.connect(f"file:{run / 'outbox.sqlite'}?mode=ro", uri=True)
        try:
            ev["events"] = c.execute("SELECT count(*) FROM events").fetchone()[0]
            ev["by_topic"] = dict(c.execute("SELECT topic, count(*) FROM events GROUP BY topic").fetchall())
            names = {0: "queued", 1: "pending", 2: "in_flight", 3: "delivered", 4: "dead", 5: "superseded"}
            ev["deliveries"] = {names.get(s, str(s)): n for s, n in
                                c.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall()}
            ev["attempts"] = c.execute("SELECT count(*) FROM attempts").fetchone()[0]
            # The endpoint's circuit breaker when the bench stopped waiting: explains a drain that hit the cap.
            now = time.time()
            ev["endpoint"] = [{"name": n, "consecutive_failures": f, "breaker_open_for_s": round(max(0.0, b - now), 1)}
                              for n, f, b in c.execute("SELECT name, consecutive_failures, breaker_until FROM endpoints "
                                                       "WHERE name <> 'default'")]
            needed = {r[0] for r in c.execute("SELECT e.event_id FROM deliveries d JOIN events e ON e.id = d.event_rowid "
                                              "WHERE d.state <> 5")}
        finally:
            c.close()
        got = set(answered_ids)
        ev["needed"] = len(needed)
        if got or variant == "woosync":
            ev["missing_at_crm"] = len(needed - got)
        else:  # woosync delivering WooCommerce's webhooks without Standard Webhooks ids: count them
            ev["missing_at_crm"] = max(0, len(needed) - sum(1 for r in rows if r["answered"] is not None))
        ev["duplicates_at_crm"] = len(answered_ids) - len(got)
        ev["per_checkout"] = ev["events"] / max(1, len(db["orders"]))
    elif variant.startswith("wc_webhooks"):
        wc = [r for r in rows if r["path"].startswith("/wc") and r["h"].get("x-wc-webhook-topic")]
        # WooCommerce pings a webhook (`webhook_id=N`, no topic) when it is saved while pending delivery:
        # after its first delivery. Not a delivery; counted apart.
        ev["pings"] = sum(1 for r in rows if r["path"].startswith("/wc") and not r["h"].get("x-wc-webhook-topic"))
        ev["actions"] = sum(db["as_actions"].values())
        ev["answered"] = sum(1 for r in wc if r["answered"] is not None)
        # A delivery that failed (unanswered: timeout, or the connection dropped when the CRM came back)
        # is marked complete by Action Scheduler and never retried; actions still waiting at the cap are
        # not delivered either.
        ev["failed"] = sum(1 for r in wc if r["answered"] is None)
        ev["lost"] = ev["failed"] + db["as_actions"].get("pending", 0) + db["as_actions"].get("in-progress", 0)
        ev["disabled_webhooks"] = sum(1 for w in db["webhooks"] if w["status"] != "active")
        ev["per_checkout"] = ev["actions"] / max(1, len(db["orders"]))
    elif variant == "sync" and (run / "sync.jsonl").exists():
        att = [json.loads(ln) for ln in (run / "sync.jsonl").read_text().splitlines() if ln.strip()]
        ev["attempts"] = len(att)
        ev["ok"] = sum(1 for x in att if x["code"] == 200)
        ev["failed"] = len(att) - ev["ok"]
        ev["lost"] = ev["failed"]
        ev["per_checkout"] = len(att) / max(1, len(db["orders"]))
        # What a checkout waits on the CRM in the CRM state under test: the mean POST duration while it
        # held (posts that ended within the load window) times the POSTs per order.
        during = [x["ms"] for x in att if x["t"] >= t0 and x["t"] + x["ms"] / 1000 <= res["window"]["end"]]
        ev["post_ms_mean"] = sum(during) / len(during) if during else None
        ev["wait_ms_per_checkout"] = (ev["post_ms_mean"] or 0) * ev["per_checkout"] if during else None
    out["events"] = ev

    # ---- time to CRM: when the CRM first had the placed order (not a draft), after the shopper's confirmation
    first = {}
    for it in items:
        if it["kind"] == "order" and it["status"] not in (None, "checkout-draft"):
            first[it["id"]] = min(first.get(it["id"], 1e18), it["answered"])
    lags = [first[r["order_id"]] - (t0 + r["end"]) for r in ok if r["order_id"] in first]
    lags_press = [first[r["order_id"]] - (t0 + r["checkout_start"]) for r in ok if r["order_id"] in first]
    never = sum(1 for r in ok if r["order_id"] not in first)
    w_end = res["window"]["end"]
    last = max((r["answered"] for r in rows if r["answered"] is not None), default=None)
    out["time_to_crm"] = {"p50_s": pct(lags, 50), "p99_s": pct(lags, 99), "max_s": max(lags) if lags else None,
                          "from_place_order_p50_s": pct(lags_press, 50),
                          "orders_never": never,
                          "complete_after_s": (last - w_end) if last is not None and res["drained"] and never == 0
                          else None}

    # ---- CPU over the load window (cores = CPU seconds / window seconds)
    cw = res["cpu_window"]
    span = cw["t"]
    ours = sum(cw[k] for k in ("fpm", "mariadb", "nginx", "crm", "shoppers", "as_runner"))
    out["cpu"] = {"window_s": span, "fpm_cores": cw["fpm"] / span, "fpm_ms_per_checkout":
                  1000 * cw["fpm"] / max(1, len(done_in_window)),
                  "woosync_threads_cores": cw["fpm_woosync_threads"] / span,
                  "mariadb_cores": cw["mariadb"] / span, "nginx_cores": cw["nginx"] / span, "crm_cores": cw["crm"] / span,
                  "shoppers_cores": cw["shoppers"] / span, "as_runner_cores": cw["as_runner"] / span,
                  "machine_cores": cw["machine"] / span, "others_cores": max(0.0, cw["machine"] - ours) / span,
                  "drain_fpm_s": res["cpu_drain"]["fpm"], "drain_as_runner_s": res["cpu_drain"]["as_runner"],
                  "drain_woosync_threads_s": res["cpu_drain"]["fpm_woosync_threads"]}
    return out


def _num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _count(it):
    d = {}
    for x in it:
        d[x] = d.get(x, 0) + 1
    return d


def one_line(r: dict) -> str:
    t = r["time_to_crm"]
    return (f"{r['checkouts_per_s']:.2f} checkouts/s, p50 {_ms(r['p50_s'])} p99 {_ms(r['p99_s'])}, "
            f"errors {r['errors']}, unfinished {r['unfinished']}, orders {r['db']['orders']}, CRM knows "
            f"{r['crm_got']['orders_known']} (final status wrong {r['crm_got']['orders_final_status_wrong']}), "
            f"time-to-CRM p50 {_s(t['p50_s'])} max {_s(t['max_s'])}, complete after {_s(t['complete_after_s'])}, "
            f"fpm {r['cpu']['fpm_ms_per_checkout']:.0f} ms CPU/checkout, events {json.dumps(r['events'].get('deliveries') or {k: v for k, v in r['events'].items() if k in ('actions', 'attempts', 'lost')})}")


def _ms(s):
    return "–" if s is None else (f"{s * 1000:.0f} ms" if s < 10 else f"{s:.1f} s")


def _s(s):
    return "–" if s is None else (f"{s * 1000:.0f} ms" if abs(s) < 1 else f"{s:.1f} s")


# ----------------------------------------------------------------------------------------------- summary

def summarize(C: dict) -> dict:
    cells = {}
    for r in C["runs"]:
        cells.setdefault(f"{r['variant']}/{r['crm']}", []).append(r)
    S = {}
    for key, rs in cells.items():
        pooled = [x for r in rs for x in r["latency_s"] + r.get("censored_s", [])]
        m = lambda f: med([f(r) for r in rs])  # noqa: E731
        sp = lambda f: spread([f(r) for r in rs])  # noqa: E731
        S[key] = {
            "variant": rs[0]["variant"], "crm": rs[0]["crm"], "runs": len(rs),
            "checkouts_per_s": m(lambda r: r["checkouts_per_s"]), "checkouts_per_s_spread": sp(lambda r: r["checkouts_per_s"]),
            "p50_s": m(lambda r: r["p50_s"]), "p95_s": m(lambda r: r["p95_s"]), "p99_s": m(lambda r: r["p99_s"]),
            "p50_spread": sp(lambda r: r["p50_s"]), "p95_spread": sp(lambda r: r["p95_s"]), "p99_spread": sp(lambda r: r["p99_s"]),
            "p50_lb": any(r.get("p50_lower_bound") for r in rs), "p95_lb": any(r.get("p95_lower_bound") for r in rs),
            "p99_lb": any(r.get("p99_lower_bound") for r in rs),
            "censored": sum(len(r.get("censored_s", [])) for r in rs),
            "pooled_p99_s": pct(pooled, 99), "pooled_n": len(pooled),
            "crm_wait_ms_per_checkout": m(lambda r: r["events"].get("wait_ms_per_checkout")),
            "errors": sum(r["errors"] for r in rs), "unfinished": sum(r["unfinished"] for r in rs),
            "orders": sum(r["db"]["orders"] for r in rs), "orders_known": sum(r["crm_got"]["orders_known"] for r in rs),
            "orders_created_seen": sum(r["crm_got"]["orders_created_seen"] for r in rs),
            "final_status_wrong": sum(r["crm_got"]["orders_final_status_wrong"] for r in rs),
            "stock_wrong": sum(r["crm_got"]["products_stock_wrong"] for r in rs),
            "products_known": sum(r["crm_got"]["products_known"] for r in rs),
            "products_touched": sum(r["db"]["products_touched"] for r in rs),
            "customers": sum(r["db"]["customers"] for r in rs), "customers_known": sum(r["crm_got"]["customers_known"] for r in rs),
            "lag_p50_s": m(lambda r: r["time_to_crm"]["p50_s"]), "lag_max_s": m(lambda r: r["time_to_crm"]["max_s"]),
            "lag_press_p50_s": m(lambda r: r["time_to_crm"].get("from_place_order_p50_s")),
            "lag_max_spread": sp(lambda r: r["time_to_crm"]["max_s"]),
            "orders_never": sum(r["time_to_crm"]["orders_never"] for r in rs),
            "complete_after_s": m(lambda r: r["time_to_crm"]["complete_after_s"]),
            "complete_runs": sum(1 for r in rs if r["time_to_crm"]["complete_after_s"] is not None),
            "fpm_ms_per_checkout": m(lambda r: r["cpu"]["fpm_ms_per_checkout"]),
            "fpm_cores": m(lambda r: r["cpu"]["fpm_cores"]),
            "woosync_threads_cores": m(lambda r: r["cpu"]["woosync_threads_cores"]),
            "as_runner_cores": m(lambda r: r["cpu"]["as_runner_cores"]),
            "shoppers_cores": m(lambda r: r["cpu"]["shoppers_cores"]),
            "mariadb_cores": m(lambda r: r["cpu"]["mariadb_cores"]),
            "machine_cores": m(lambda r: r["cpu"]["machine_cores"]), "others_cores": m(lambda r: r["cpu"]["others_cores"]),
            "events_per_checkout": m(lambda r: r["events"].get("per_checkout")),
            "missing_at_crm": sum(r["events"].get("missing_at_crm", 0) for r in rs),
            "duplicates_at_crm": sum(r["events"].get("duplicates_at_crm", 0) for r in rs),
            "lost": sum(r["events"].get("lost", 0) for r in rs),
            "pending_at_end": [r["pending_at_end"] for r in rs if not r["drained"]],
            "breaker_open_for_s": [e["breaker_open_for_s"] for r in rs if not r["drained"]
                                   for e in r["events"].get("endpoint", []) if e["breaker_open_for_s"] > 0],
        }
    return S


def goals(C: dict) -> list:
    S = C["summary"]
    g = lambda k: S.get(k, {})  # noqa: E731
    rows = []

    def add(goal, measured, met):
        rows.append({"goal": goal, "measured": measured, "met": met})

    floor, dead, ok = g("none/healthy"), g("woosync/blackholed"), g("woosync/healthy")
    if floor and dead:
        r99 = dead["p99_s"] / floor["p99_s"] if floor.get("p99_s") else None
        rt = dead["checkouts_per_s"] / floor["checkouts_per_s"] if floor.get("checkouts_per_s") else None
        add("woosync, CRM blackholed: checkout p99 within 10% of the no-integration floor",
            f"{_ms(dead['p99_s'])} vs {_ms(floor['p99_s'])} ({(r99 - 1) * 100:+.0f}%)" if r99 else "–",
            r99 is not None and r99 <= 1.10)
        add("woosync, CRM blackholed: throughput within 8% of the floor",
            f"{dead['checkouts_per_s']:.2f} vs {floor['checkouts_per_s']:.2f}/s ({(rt - 1) * 100:+.0f}%)" if rt else "–",
            rt is not None and rt >= 0.92)
    if ok and dead and ok.get("p99_spread"):
        lo, hi = ok["p99_spread"]
        # A dead CRM must not make checkouts slower than a healthy one: within the healthy runs' spread or
        # below it (a lower p99 is noise in woosync's favour, not a miss).
        add("woosync, CRM blackholed: p99 within (or below) the spread of its healthy-CRM figure",
            f"{_ms(dead['p99_s'])} vs healthy [{_ms(lo)}–{_ms(hi)}]", dead["p99_s"] is not None and dead["p99_s"] <= hi)
    ws = [v for k, v in S.items() if k.startswith("woosync/")]
    if ws:
        allok = all(v["orders_never"] == 0 and v["missing_at_crm"] == 0 and not v["pending_at_end"] for v in ws)
        add("woosync: every order and every event delivered once the CRM is back (within the drain cap)",
            "; ".join(f"{v['crm']}: {v['orders_known']}/{v['orders']} orders, {v['missing_at_crm']} events missing"
                      for v in ws), allok)
    for wk, how in (("wc_webhooks/healthy", "runner loop"), ("wc_webhooks_cron/healthy", "WP-Cron")):
        wc = g(wk)
        if ok and not wc and wk.startswith("wc_webhooks_cron"):
            add("time-to-CRM, CRM healthy: woosync ahead of WooCommerce's webhooks run by WP-Cron (its default) by "
                "orders of magnitude", "not in this run: add the opt-in cell with `--checkout-variants "
                "woosync,wc_webhooks,wc_webhooks_cron,sync,none`", None)
        if ok and wc and ok.get("lag_max_s") is not None and wc.get("lag_p50_s"):
            # The table's time-to-CRM (from the shopper's confirmation), woosync's slowest against
            # WooCommerce's typical: a negative woosync figure (the CRM had the order before the
            # shopper saw the confirmation) counts as 1 ms.
            worst = max(ok["lag_max_s"], 0.001)
            f = wc["lag_p50_s"] / worst
            add(f"time-to-CRM, CRM healthy, from the confirmation: woosync's slowest ahead of WooCommerce's webhooks' "
                f"median ({how}) by orders of magnitude (≥ 100×)",
                f"max {_s(ok['lag_max_s'])} vs p50 {_s(wc['lag_p50_s'])} ({f:.0f}×)", f >= 100)
        if ok and wc and ok.get("lag_press_p50_s") and wc.get("lag_press_p50_s"):
            f = wc["lag_press_p50_s"] / ok["lag_press_p50_s"]
            add(f"time-to-CRM, CRM healthy, from \"Place order\": woosync ahead of WooCommerce's webhooks ({how}) by "
                f"orders of magnitude (≥ 100×)", f"p50 {_s(ok['lag_press_p50_s'])} vs {_s(wc['lag_press_p50_s'])} "
                f"({f:.1f}×)", f >= 100)
    return rows


# ----------------------------------------------------------------------------------------------- files

def write_all(R: dict, C: dict, out: Path):
    C["goals"] = goals(C)
    slim = dict(C)
    (out / "checkout.json").write_text(json.dumps({"started": R.get("started"), "machine": R.get("machine"),
                                                    "so": R.get("so"), "git_head": R.get("git_head"),
                                                    "woosync_version": R.get("woosync_version"),
                                                    "mariadb": R.get("mariadb"), "checkout": slim}, indent=1,
                                                   default=str))
    write_md(R, C, out / "checkout.md")
    try:
        write_png(R, C, out / "checkout.png")
    except Exception as e:  # the chart is a convenience; the figures are in the .md and .json
        C["errors"].append(f"chart: {e}")


def _sp(s, f):
    return f"[{f(s[0])}–{f(s[1])}]" if s and s[0] != s[1] else ""


def write_md(R: dict, C: dict, path: Path):
    m = R.get("machine", {})
    cfg = C["config"]
    S = C["summary"]
    L = ["# Checkout benchmark — real WooCommerce checkouts while the CRM is healthy, slow or dead", "",
         f"Run {R.get('started')} on {m.get('nproc')} × {m.get('cpu')}, {m.get('mem_gb')} GB, PHP {m.get('php')}, "
         f"MariaDB {R.get('mariadb')}; WordPress {C['shop'].get('wordpress')} + WooCommerce {C['shop'].get('woocommerce')} "
         f"(HPOS on), {C['shop'].get('products')} products with managed stock, cash on delivery; woosync "
         f"{R.get('woosync_version', '')} ({R.get('git_head', '')}). {'**Quick smoke run: figures mean nothing.**' if cfg['quick'] else ''}",
         "",
         f"Per run: {cfg['customers']} customers, closed loop, {cfg['warmup']:.0f} s warm-up then **{cfg['duration']:.0f} s measured**; "
         f"{cfg['reps']} run(s) per cell, interleaved; medians with [min–max] over runs. php-fpm: static pool of "
         f"{cfg['children']} workers. Whole scenario {C.get('duration_s', 0) / 60:.1f} min (setup {C.get('setup_s', 0):.0f} s).",
         "", "| variant | CRM | checkouts/s | checkout p50 | p95 | p99 (pooled, n) | errors | orders → CRM has (status wrong) | "
         "time-to-CRM p50 / max | CRM complete after | php-fpm CPU per checkout | sender CPU |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = [f"{v}/{s}" for v in LABEL for s in STATE_LABEL]
    for k in order:
        v = S.get(k)
        if not v:
            continue
        sender = ""
        if v["variant"].startswith("woosync"):
            sender = f"{v['woosync_threads_cores'] * 100:.1f}% of a core (threads in php-fpm)"
        elif v["variant"] == "wc_webhooks":
            sender = f"{v['as_runner_cores'] * 100:.0f}% of a core (runner loop)"
        elif v["variant"] == "wc_webhooks_cron":
            sender = "WP-Cron requests in php-fpm"
        elif v["variant"] == "sync":
            sender = f"in the request: waits {_s((v['crm_wait_ms_per_checkout'] or 0) / 1000)} per checkout"
        crm_has = "–" if v["variant"] == "none" else (
            f"{v['orders']} → {v['orders_known']} ({v['final_status_wrong']})")
        complete = "–" if v["variant"] == "none" else (
            _s(v["complete_after_s"]) if v["complete_runs"] == v["runs"] else
            f"not within the {cfg['drain_cap']:.0f} s cap in {v['runs'] - v['complete_runs']}/{v['runs']} runs")
        lag = "–" if v["variant"] == "none" else (
            "in the request" if v["variant"] == "sync" else f"{_s(v['lag_p50_s'])} / {_s(v['lag_max_s'])}")
        unf = f" + {v['unfinished']} unfinished" if v["unfinished"] else ""
        L.append(f"| {LABEL[v['variant']]} | {STATE_LABEL[v['crm']] if v['variant'] != 'none' else '–'} | "
                 f"{v['checkouts_per_s']:.2f} {_sp(v['checkouts_per_s_spread'], lambda x: f'{x:.2f}')} | "
                 f"{_lb(v, 'p50')}{_ms(v['p50_s'])} {_sp(v['p50_spread'], _ms)} | {_lb(v, 'p95')}{_ms(v['p95_s'])} | "
                 f"{_lb(v, 'p99')}{_ms(v['p99_s'])} {_sp(v['p99_spread'], _ms)} ({_ms(v['pooled_p99_s'])}, {v['pooled_n']}) | "
                 f"{v['errors']}{unf} | {crm_has} | {lag} | "
                 f"{complete} | {v['fpm_ms_per_checkout']:.0f} ms | {sender} |")
    for k, why in C.get("skipped", {}).items():
        L.append(f"| {LABEL[k]} | – | skipped: {why} |||||||||| ")
    sh = [v["shoppers_cores"] for v in S.values() if v.get("shoppers_cores") is not None]
    L += ["", "How to read it: checkout latency is the `POST /checkout` request (\"≥\": checkouts still held by the CRM when "
          "the window ended count with the time they had run). Orders → CRM has: orders in the database → orders the "
          "CRM answered a request about (in brackets: its last word on the status differs from the database). "
          "Time-to-CRM: from the shopper's confirmation until the CRM first had the placed order (negative: before the "
          "confirmation). CRM complete after: from the end of the window, which is also when a slow or blackholed CRM "
          "recovers; capped at " + f"{cfg['drain_cap']:.0f} s. woosync's sender runs as threads inside one php-fpm "
          "worker (their CPU is read per thread; the dispatch is on the request thread, in the php-fpm figure); "
          "WooCommerce's webhooks are delivered by `wp action-scheduler run` in a loop (its best case; WP-Cron is the "
          "opt-in `wc_webhooks_cron`); the synchronous integration posts inside the request. The load generator used "
          f"{_f(med(sh), 2)} cores (median). Time-to-CRM comparisons hold for the healthy CRM only: with a slow or "
          "dead CRM they are set by the outage's length and each system's retry policy."]
    L += ["", "## Goals (issue 16)", "", "| goal | measured | met |", "|---|---|---|"]
    for gl in C.get("goals", []):
        L.append(f"| {gl['goal']} | {gl['measured']} | {'–' if gl['met'] is None else 'yes' if gl['met'] else '**no**'} |")
    L += ["", "## What the CRM got", "", "| variant | CRM | events per order | lost / missing | duplicates | stock right | "
          "customers known | pending at the cap |", "|---|---|---|---|---|---|---|---|"]
    for k in order:
        v = S.get(k)
        if not v or v["variant"] == "none":
            continue
        lost = v["missing_at_crm"] if v["variant"].startswith("woosync") else v["lost"]
        stock = f"{v['products_known'] - v['stock_wrong']}/{v['products_touched']}"
        pend = ""
        if v["pending_at_end"]:
            pend = f"{len(v['pending_at_end'])}/{v['runs']} runs: " + ", ".join(
                str(p[0] + p[1]) if isinstance(p, list) else str(p) for p in v["pending_at_end"])
            if v.get("breaker_open_for_s"):
                pend += f" (circuit breaker open {', '.join(f'{b:.0f}' for b in v['breaker_open_for_s'])} s more)"
        L.append(f"| {LABEL[v['variant']]} | {STATE_LABEL[v['crm']]} | {_f(v['events_per_checkout'], 1)} | {lost} | "
                 f"{v['duplicates_at_crm']} | {stock} | {v['customers_known']}/{v['customers']} | {pend} |")
    L += ["", "## CPU during the measured window (cores; the machine has "
          f"{m.get('nproc')})", "", "| variant | CRM | php-fpm | of which woosync threads | MariaDB | AS runner | "
          "load generator | whole machine | not ours |", "|---|---|---|---|---|---|---|---|---|"]
    for k in order:
        v = S.get(k)
        if not v:
            continue
        L.append(f"| {LABEL[v['variant']]} | {STATE_LABEL[v['crm']]} | {v['fpm_cores']:.2f} | "
                 f"{v['woosync_threads_cores']:.3f} | {v['mariadb_cores']:.2f} | {v['as_runner_cores']:.2f} | "
                 f"{v['shoppers_cores']:.2f} | {v['machine_cores']:.2f} | {v['others_cores']:.2f} |")
    L += ["", "## Every run", "", "| variant | CRM | run | checkouts/s | p50 | p99 | errors | orders | CRM knows | "
          "time-to-CRM max | drain | events |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in C["runs"]:
        ev = r["events"]
        evs = ", ".join(f"{k} {v}" for k, v in (ev.get("deliveries") or {k: v for k, v in ev.items() if k in (
            "actions", "answered", "attempts", "ok", "failed", "disabled_webhooks")}).items())
        L.append(f"| {LABEL[r['variant']]} | {r['crm']} | {r['rep']} | {r['checkouts_per_s']:.2f} | {_ms(r['p50_s'])} | "
                 f"{_ms(r['p99_s'])} | {r['errors']} | {r['db']['orders']} | {r['crm_got']['orders_known']} | "
                 f"{_s(r['time_to_crm']['max_s'])} | {'done' if r['drained'] else 'cap'} {r['drain_wait_s']:.1f} s | {evs} |")
    if C.get("errors"):
        L += ["", "## Errors", ""] + [f"- {e}" for e in C["errors"]]
    path.write_text("\n".join(L) + "\n")


def _lb(v, q):
    return "≥ " if v.get(f"{q}_lb") else ""


def _f(x, d):
    return "–" if x is None else f"{x:.{d}f}"


def write_png(R: dict, C: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    S = C["summary"]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    variants = [v for v in ("woosync", "wc_webhooks", "wc_webhooks_cron", "sync", "woosync_wc_webhooks") if any(
        k.startswith(v + "/") for k in S)]
    colors = {"woosync": "#1f77b4", "wc_webhooks": "#2ca02c", "wc_webhooks_cron": "#98df8a", "sync": "#ff7f0e",
              "woosync_wc_webhooks": "#9467bd"}
    w = 0.8 / max(1, len(variants))
    for i, v in enumerate(variants):
        xs, ys, lo, hi, lbs = [], [], [], [], []
        for j, s in enumerate(STATE_LABEL):
            c = S.get(f"{v}/{s}")
            if not c or c["p99_s"] is None:
                continue
            xs.append(j + (i - (len(variants) - 1) / 2) * w)
            ys.append(c["p99_s"] * 1000)
            spr = c["p99_spread"] or [c["p99_s"], c["p99_s"]]
            lo.append(c["p99_s"] * 1000 - spr[0] * 1000)
            hi.append(spr[1] * 1000 - c["p99_s"] * 1000)
            lbs.append(c.get("p99_lb"))
        bars = ax.bar(xs, ys, w, yerr=[lo, hi], capsize=3, label=LABEL[v], color=colors[v])
        for b, y, h, lb in zip(bars, ys, hi, lbs):
            txt = f"{y / 1000:.1f} s" if y >= 10000 else f"{y:.0f} ms"
            ax.text(b.get_x() + b.get_width() / 2, (y + h) * 1.05, ("≥ " if lb else "") + txt,
                    ha="center", va="bottom", fontsize=8)
    fl = S.get("none/healthy")
    if fl and fl["p99_s"]:
        ax.axhline(fl["p99_s"] * 1000, ls="--", color="gray",
                   label=f"no integration (the floor): {fl['p99_s'] * 1000:.0f} ms")
    ax.set_yscale("log")
    lo_y = min([c["p99_s"] for c in S.values() if c.get("p99_s")] or [1.0]) * 1000
    hi_y = max([c["p99_s"] for c in S.values() if c.get("p99_s")] or [1.0]) * 1000
    ax.set_ylim(10 ** int(__import__("math").log10(lo_y / 2)), hi_y * 3)
    ax.set_xticks(range(len(STATE_LABEL)))
    ax.set_xticklabels([f"CRM {x}" for x in STATE_LABEL.values()])
    ax.set_ylabel("checkout p99, ms (log; bars: median of runs, whiskers: min–max)")
    m = R.get("machine", {})
    cfg = C["config"]
    others = med([c.get("others_cores") for c in S.values()])
    ax.set_title(f"Store API checkout p99 — {cfg['customers']} customers, {cfg['duration']:.0f} s × {cfg['reps']} runs, "
                 f"{m.get('nproc')} × {m.get('cpu')}; other work on the machine: {_f(others, 2)} cores"
                 f"{' (QUICK: meaningless)' if cfg['quick'] else ''}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    # Re-renders checkout.md and checkout.png (summary and goals too) from a checkout.json.
    import sys
    src = Path(sys.argv[1])
    J = json.loads(src.read_text())
    C = J["checkout"]
    C["summary"] = summarize(C)
    write_all(J, C, src.parent)
