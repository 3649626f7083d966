"""What an endpoint that mirrors a WooCommerce webhook needs from the extension: a body sent exactly
as given (`raw_body`), per-event headers, WooCommerce-style signing with the secret string as is
and a chosen hash, WooCommerce's success rule (200-302), its User-Agent and the webhook's id."""
import base64
import hashlib
import hmac
import json

import pytest

from conftest import fast_ini
from receiver import Response

# Every test here runs on both storage engines: a SQLite file and a MariaDB database.
pytestmark = pytest.mark.engines("sqlite", "mysql")

WC_SECRET = "k#4!S&<\"ecret>'_from-WooCommerce~50chars......."
UA = "WooCommerce/11.0.1 Hookshot (WordPress/7.0.4)"


def wc_sig(secret: str, body: bytes, algo=hashlib.sha256) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, algo).digest()).decode()


def mirror(php, url, **more):
    cfg = {"url": url, "secret": WC_SECRET, "signature": "woocommerce", "success_codes": "200-302",
           "user_agent": UA, "timeout": 60, "wc_webhook_id": 12, "retry_delays": "0.1,0.1",
           "source": "http://shop.example.test/", "topics": ["order.updated"]}
    cfg.update(more)
    php.json(f"woosync_endpoint_save('wc-12', json_decode({json.dumps(json.dumps(cfg))}, true)); out(true);")


def test_raw_body_sent_byte_identical_with_woocommerce_headers(php, receiver):
    mirror(php, receiver.url)
    # WooCommerce's body: trim(wp_json_encode($payload)) - escaped slashes, unicode escapes.
    body = '{"id":42,"status":"processing","note":"caf\\u00e9 \\/ \\"quoted\\"","line_items":[{"sku":"A"}]}'
    r = php.json(f"""
        $id = woosync_dispatch('order.updated', [], ['key' => 'order:42', 'endpoints' => ['wc-12'],
            'raw_body' => {json.dumps(body)},
            'headers' => ['Authorization' => 'Bearer from-http-args', 'X-WC-Webhook-Topic' => 'forged']]);
        out(['id' => $id, 'flushed' => woosync_flush(10), 'event' => woosync_event($id)]);
    """, fast_ini(""))
    assert r["flushed"] is True
    [q] = receiver.wait_for(1)
    assert q.body == body.encode(), "the body must be sent exactly as given"
    h = q.headers
    assert h["User-Agent"] == UA
    assert h["Content-Type"] == "application/json"
    assert h["X-WC-Webhook-Source"] == "http://shop.example.test/"
    assert (h["X-WC-Webhook-Topic"], h["X-WC-Webhook-Resource"], h["X-WC-Webhook-Event"]) == ("order.updated", "order", "updated")
    assert h["X-WC-Webhook-ID"] == "12"
    assert len(h["X-WC-Webhook-Delivery-ID"]) == 32
    assert h["X-WC-Webhook-Signature"] == wc_sig(WC_SECRET, q.body)
    assert h["Authorization"] == "Bearer from-http-args"
    assert "webhook-signature" not in h.lower_dict(), "WooCommerce signing only"
    assert h["webhook-id"] == r["id"]
    assert r["event"]["raw"] is True and r["event"]["payload"] == body


def test_woocommerce_success_rule_and_hash_algorithm(php, receiver):
    receiver.default = Response(302, headers={"Location": "/elsewhere"})
    mirror(php, receiver.url, hash_algorithm="sha1")
    r = php.json("""
        $id = woosync_dispatch('order.updated', [], ['endpoints' => ['wc-12'], 'raw_body' => '{"id":1}']);
        out(['flushed' => woosync_flush(10), 'event' => woosync_event($id)]);
    """, fast_ini(""))
    assert r["flushed"] is True
    assert r["event"]["deliveries"][0]["state"] == "delivered", r["event"]
    [q] = receiver.wait_for(1)
    assert q.headers["X-WC-Webhook-Signature"] == wc_sig(WC_SECRET, q.body, hashlib.sha1)
    # The default rule stays 2xx: a 302 is retried for an ordinary endpoint.
    php.json(f"woosync_endpoint_save('plain', ['url' => '{receiver.url}', 'retry_delays' => '']); out(true);")
    r = php.json("""
        $id = woosync_dispatch('a.b', ['n' => 1], ['endpoints' => ['plain']]);
        woosync_flush(10);
        out(woosync_event($id)['deliveries'][0]['state']);
    """, fast_ini(""))
    assert r == "dead"


def test_secrets_of_any_shape_only_for_woocommerce_signing(php):
    r = php.json(f"""
        out([
          'wc' => attempt(fn() => woosync_endpoint_save('a', ['url' => 'http://127.0.0.1:9/', 'signature' => 'woocommerce', 'secret' => {json.dumps(WC_SECRET)}])),
          'std' => attempt(fn() => woosync_endpoint_save('b', ['url' => 'http://127.0.0.1:9/', 'secret' => {json.dumps(WC_SECRET)}])),
          'algo' => attempt(fn() => woosync_endpoint_save('c', ['url' => 'http://127.0.0.1:9/', 'hash_algorithm' => 'whirlpool'])),
          'codes' => attempt(fn() => woosync_endpoint_save('d', ['url' => 'http://127.0.0.1:9/', 'success_codes' => '200-500'])),
        ]);
    """)
    assert r["wc"]["ok"] is True, r["wc"]
    assert r["std"]["ok"] is False and "secret" in r["std"]["message"], r["std"]
    assert r["algo"]["ok"] is False and "hash_algorithm" in r["algo"]["message"]
    assert r["codes"]["ok"] is False and "success_codes" in r["codes"]["message"]


@pytest.mark.parametrize("headers,words", [
    ("['X-A' => \"x\\r\\nInjected: 1\"]", ["control"]),
    ("['Host' => 'evil.example']", ["host"]),
    ("['Content-Length' => '5']", ["content-length"]),
    ("['Bad Name' => 'x']", ["header name"]),
])
def test_bad_headers_are_refused(php, headers, words):
    r = php.json(f"""
        out(['dispatch' => attempt(fn() => woosync_dispatch('a.b', [], ['headers' => {headers}])),
             'endpoint' => attempt(fn() => woosync_endpoint_save('x', ['url' => 'http://127.0.0.1:9/', 'headers' => {headers}])),
             'total' => total_events(woosync_status())]);
    """)
    for name in ("dispatch", "endpoint"):
        res = r[name]
        assert res["ok"] is False and res["class"] == "WooSyncException", (name, res)
        assert any(w in res["message"].lower() for w in words), (name, res["message"])
    assert r["total"] == 0


def test_raw_body_needs_an_empty_payload(php):
    r = php.json("out(attempt(fn() => woosync_dispatch('a.b', ['x' => 1], ['raw_body' => '{}'])));")
    assert r["ok"] is False and "raw_body" in r["message"], r


def test_credential_headers_masked_and_kept_when_saved_back(php, receiver):
    php.json(f"""
        woosync_endpoint_save('crm', ['url' => '{receiver.url}', 'headers' => ['Authorization' => 'Bearer t0ken-secret', 'X-Shop' => 'main']]);
        out(true);
    """)
    r = php.json(f"""
        $ep = array_column(woosync_endpoints(), null, 'name')['crm'];
        woosync_endpoint_save('crm', ['url' => $ep['url'], 'headers' => $ep['headers']]);
        woosync_dispatch('a.b', [], ['endpoints' => ['crm']]);
        out(['shown' => $ep['headers'], 'flushed' => woosync_flush(10)]);
    """, fast_ini(""))
    assert r["shown"] == {"Authorization": "Bearer ****", "X-Shop": "main"}, r
    [q] = receiver.wait_for(1)
    assert q.headers["Authorization"] == "Bearer t0ken-secret" and q.headers["X-Shop"] == "main"
