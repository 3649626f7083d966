"""Strict input and clear errors: what used to be accepted silently (and then misbehaved) raises a
WooSyncException naming the field; messages quote at most ~200 bytes of the input, carry no Rust
debug text and no doubled prefixes; every function raises the same way on a damaged outbox."""
import json
import os
import ssl
import subprocess

import pytest

from conftest import closed_port, fast_ini
from helpers import tcp_listener
from receiver import Blackhole

ENDPOINT_CASES = [
    # (id, settings merged into a valid endpoint, words of which one must be in the message)
    ("enabled-yes", {"enabled": "yes"}, ["enabled"]),
    ("enabled-string-1", {"enabled": "1"}, ["enabled"]),
    ("enabled-float", {"enabled": 1.0}, ["enabled"]),
    ("enabled-2", {"enabled": 2}, ["enabled"]),
    ("source-crlf", {"source": "https://shop.example\r\nX-Evil: 1"}, ["source"]),
    ("source-lf", {"source": "https://shop.example\nx"}, ["source"]),
    ("source-nul", {"source": "https://shop.example\u0000x"}, ["source"]),
    ("source-too-long", {"source": "https://shop.example/" + "a" * 2100}, ["source"]),
    ("url-port-0", {"url": "http://127.0.0.1:0/hook"}, ["port"]),
    ("url-port-65536", {"url": "http://127.0.0.1:65536/hook"}, ["port"]),
    ("url-port-huge", {"url": "http://127.0.0.1:99999999999/hook"}, ["port"]),
    ("url-port-ipv6", {"url": "http://[::1]:70000/hook"}, ["port"]),
    ("proxy-port-0", {"proxy": "http://127.0.0.1:0"}, ["port", "proxy"]),
    ("proxy-port-65536", {"proxy": "http://127.0.0.1:65536"}, ["port", "proxy"]),
    ("rate-limit-negative", {"rate_limit": -1}, ["rate_limit"]),
    ("rate-limit-tiny", {"rate_limit": 0.001}, ["rate_limit"]),
]


def _php_value(v):
    return json.dumps(v)


@pytest.mark.parametrize("settings,hints", [c[1:] for c in ENDPOINT_CASES], ids=[c[0] for c in ENDPOINT_CASES])
def test_endpoint_settings_that_used_to_be_accepted_raise(php, settings, hints):
    base = {"url": "http://127.0.0.1:9/hook", "retry_delays": "5"}
    cfg = json.dumps(dict(base, **settings))
    r = php.json(f"""
        woosync_endpoint_save('crm', ['url' => 'http://127.0.0.1:9/kept', 'enabled' => true]);
        $r = attempt(fn() => woosync_endpoint_save('crm', json_decode({_php_value(cfg)}, true)));
        out(['r' => $r, 'ep' => woosync_endpoints()[0]]);
    """)
    res = r["r"]
    assert res["ok"] is False and res["class"] == "WooSyncException", res
    msg = res["message"].lower()
    assert any(h in msg for h in hints), res["message"]
    assert r["ep"]["url"] == "http://127.0.0.1:9/kept" and r["ep"]["enabled"] is True, "the stored endpoint changed"


def test_valid_flags_and_limits_still_accepted(php):
    r = php.json("""
        $ok = [];
        foreach ([true, false, 0, 1] as $v) { woosync_endpoint_save('crm', ['url' => 'http://127.0.0.1:9/', 'enabled' => $v]); $ok[] = woosync_endpoints()[0]['enabled']; }
        woosync_endpoint_save('crm', ['url' => 'http://127.0.0.1:65535/', 'rate_limit' => 0]);
        woosync_endpoint_save('crm', ['url' => 'http://127.0.0.1:1/', 'rate_limit' => 0.01, 'proxy' => 'http://127.0.0.1:3128']);
        foreach ([true, false, 0, 1] as $v) woosync_dispatch('a.b', [], ['key' => 'k', 'coalesce' => $v]);
        out(['enabled' => $ok, 'rate' => woosync_endpoints()[0]['rate_limit']]);
    """)
    assert r == {"enabled": [True, False, False, True], "rate": 0.01}, r


@pytest.mark.parametrize("value", ['"yes"', '"1"', "1.0", "2", "[]"])
def test_coalesce_must_be_a_flag(php, value):
    r = php.json(f"""
        out(['r' => attempt(fn() => woosync_dispatch('a.b', [], ['key' => 'k', 'coalesce' => {value}])),
             'total' => total_events(woosync_status())]);
    """)
    assert r["r"]["ok"] is False and r["r"]["class"] == "WooSyncException", r
    assert "coalesce" in r["r"]["message"], r
    assert r["total"] == 0


def test_ini_source_with_a_line_break_raises(php):
    r = php.json("""
        ini_set('woosync.source', "https://shop.example\\r\\nX-Evil: yes");
        out(attempt(fn() => woosync_dispatch('a.b', [])));
    """, fast_ini("http://127.0.0.1:9/hook"))
    assert r["ok"] is False and "woosync.source" in r["message"], r


@pytest.mark.parametrize("flt", ["['limit' => -1]", "['offset' => -5]"])
def test_negative_limit_or_offset_raises(php, flt):
    r = php.json(f"out(attempt(fn() => woosync_events({flt})));")
    assert r["ok"] is False and r["class"] == "WooSyncException", r
    assert ("limit" in r["message"]) or ("offset" in r["message"]), r


def test_messages_quote_little_and_carry_no_debug_text(php):
    big = 20 * 1024 * 1024
    r = php.json(f"""
        $big = str_repeat('a', {big});
        $res = [
            'topic' => attempt(fn() => woosync_dispatch($big, [])),
            'key' => attempt(fn() => woosync_dispatch('a.b', [], ['key' => $big])),
            'option' => attempt(fn() => woosync_dispatch('a.b', [], [$big => 1])),
            'endpoint_name' => attempt(fn() => woosync_endpoint_save($big, ['url' => 'http://127.0.0.1:9/'])),
            'url' => attempt(fn() => woosync_endpoint_save('crm', ['url' => 'http://' . $big])),
            'filter' => attempt(fn() => woosync_events(['nope' => 1])),
            'filter_big' => attempt(fn() => woosync_events([$big => 1])),
            'status' => attempt(fn() => woosync_events(['status' => $big])),
            'retry' => attempt(fn() => woosync_retry($big)),
            'delete' => attempt(fn() => woosync_endpoint_delete('nope-' . str_repeat('x', 50))),
        ];
        out($res);
    """, timeout=120)
    for name, res in r.items():
        assert res["ok"] is False and res["class"] == "WooSyncException", (name, res)
        msg = res["message"]
        assert len(msg.encode()) < 1000, f"{name}: {len(msg)} bytes of message"
        assert "Some(" not in msg and "None" not in msg, f"{name}: Rust debug text in {msg!r}"
    assert r["filter"]["message"].startswith('unknown filter "nope"'), r["filter"]


def test_retry_dead_with_bytes_that_are_not_utf8_raises_woosync_exception(php):
    r = php.json('out(attempt(fn() => woosync_retry_dead("\\xff")));')
    assert r["ok"] is False and r["class"] == "WooSyncException", r


def test_network_errors_are_classed_without_doubled_prefixes(php, blackhole):
    refused = f"http://127.0.0.1:{closed_port()}/hook"
    r = php.json(f"""
        woosync_endpoint_save('slow', ['url' => '{blackhole.url}', 'timeout' => 0.5, 'retry_delays' => '']);
        woosync_endpoint_save('refused', ['url' => '{refused}', 'retry_delays' => '']);
        $id = woosync_dispatch('a.b', ['n' => 1]);
        woosync_flush(15);
        out(woosync_event($id)['attempts']);
    """, fast_ini(""), timeout=40)
    by = {a["endpoint"]: a for a in r}
    assert by["slow"]["error_class"] == "timeout", by["slow"]
    assert by["refused"]["error_class"] == "connect", by["refused"]
    for a in r:
        text = a["error"]
        assert not text.lower().startswith(a["error_class"] + ":"), f"doubled prefix: {a['error_class']}: {text}"
    ev = php.json("out(woosync_events(['limit' => 10]));")
    for row in ev:
        err = row["last_error"] or ""
        head = err.split(":")[0]
        assert f"{head}: {head}" not in err, err


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate nothing trusts."""
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))

    def handle(conn):
        try:
            with ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(65536)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (OSError, ssl.SSLError):
            pass

    with tcp_listener(handle) as (port, _):
        yield f"https://127.0.0.1:{port}/hook"


def test_tls_failures_are_classed_tls(php, tls_server):
    r = php.json(f"""
        woosync_endpoint_save('tls', ['url' => '{tls_server}', 'retry_delays' => '']);
        $id = woosync_dispatch('a.b', ['n' => 1]);
        woosync_flush(15);
        out(woosync_event($id)['attempts']);
    """, fast_ini(""), timeout=40)
    [a] = r
    assert a["error_class"] == "tls", a
    assert "certificate" in a["error"].lower(), a


def test_every_function_raises_on_a_damaged_outbox(php):
    """Pages in the middle of the file overwritten: flush used to wait out its timeout and return
    false while every other function raised."""
    php.json("""
        for ($i = 0; $i < 300; $i++) woosync_dispatch('a.b', ['x' => str_repeat('y', 500)], ['key' => 'k' . ($i % 7)]);
        out(true);
    """, fast_ini(f"http://127.0.0.1:{closed_port()}/hook", delays="300"))
    import sqlite3
    c = sqlite3.connect(str(php.outbox))
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    with open(php.outbox, "r+b") as f:
        f.seek(4096 * 10)
        f.write(os.urandom(4096 * 5))
    r = php.json("""
        out(['flush' => attempt(fn() => woosync_flush(3)), 'status' => attempt(fn() => woosync_status())]);
    """, timeout=30)
    for name, res in r.items():
        assert res["ok"] is False and res["class"] == "WooSyncException", (name, res)
    assert "damaged" in r["flush"]["message"], r["flush"]
