"""Where requests may go: the destination policy, checked on the address actually connected to
(after DNS; with a proxy, the proxy's). Loopback, private, link-local (cloud metadata) and the other
internal ranges are refused unless allowed by woosync.allow_networks (php.ini / -d only) or the
endpoint's allow_networks. A refused destination is not a dead event: the endpoint pauses with a
reason naming the address and the setting, its events wait, and flow once it is allowed."""

import pytest

from conftest import closed_port, fast_ini
from helpers import tcp_listener

NO_ALLOWANCE = {"woosync.allow_networks": None}   # drop the tests' default 127.0.0.1/32


def ini_without_allowance(url: str, **more) -> dict:
    ini = fast_ini(url, **more)
    ini.update(NO_ALLOWANCE)
    return ini


def test_loopback_refused_by_default_events_wait_then_flow_when_allowed(php, receiver):
    port = receiver.url.split(":")[2].split("/")[0]
    r = php.json(f"""
        woosync_endpoint_save('crm', ['url' => '{receiver.url}', 'retry_delays' => '0.1,0.1']);
        $id = woosync_dispatch('order.created', ['n' => 1], ['key' => 'order:1']);
        $deadline = microtime(true) + 10;
        do {{ usleep(50000); $ep = array_column(woosync_endpoints(), null, 'name')['crm']; }}
        while ($ep['health'] !== 'refused' && microtime(true) < $deadline);
        out(['id' => $id, 'ep' => $ep, 'status' => woosync_status(), 'event' => woosync_event($id)]);
    """, ini_without_allowance(""), timeout=30)
    ep = r["ep"]
    assert ep["health"] == "refused", ep
    reason = ep["refused_reason"]
    assert "127.0.0.1" in reason and "127.0.0.0/8" in reason and "allow_networks" in reason, reason
    assert r["status"]["pending"] == 1 and r["status"]["dead"] == 0, r["status"]
    [d] = r["event"]["deliveries"]
    assert d["state"] == "pending", d
    assert [a["error_class"] for a in r["event"]["attempts"]] == ["refused"], r["event"]["attempts"]
    assert receiver.count() == 0, "a refused destination was connected to"
    ri = php.run_args(["--ri", "woosync"], ini=ini_without_allowance("")).stdout
    assert "REFUSED" in ri and "127.0.0.1" in ri, ri
    # An administrator allows the CRM on this host for this endpoint: it flows at once.
    r2 = php.json(f"""
        woosync_endpoint_save('crm', ['url' => '{receiver.url}', 'retry_delays' => '0.1,0.1',
                                       'allow_networks' => ['127.0.0.1/32']]);
        out(['flushed' => woosync_flush(10), 'ep' => array_column(woosync_endpoints(), null, 'name')['crm']]);
    """, ini_without_allowance(""), timeout=30)
    assert r2["flushed"] is True and r2["ep"]["health"] == "healthy", r2
    assert r2["ep"]["allow_networks"] == ["127.0.0.1/32"], r2["ep"]
    assert [q.event_id for q in receiver.wait_for(1)] == [r["id"]]


@pytest.mark.parametrize("host", ["127.0.0.1", "0x7f.1", "2130706433", "0177.0.0.1", "localhost",
                                  "[::ffff:127.0.0.1]", "[::1]", "169.254.169.254", "10.0.0.1"])
def test_internal_addresses_in_any_spelling_are_refused(php, receiver, host):
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://{host}:{port}/hook"
    r = php.json(f"""
        woosync_endpoint_save('crm', ['url' => '{url}', 'retry_delays' => '', 'timeout' => 2]);
        $id = woosync_dispatch('order.created', []);
        $deadline = microtime(true) + 10;
        do {{ usleep(50000); $ev = woosync_event($id); }} while (!$ev['attempts'] && microtime(true) < $deadline);
        out($ev);
    """, ini_without_allowance(""), timeout=30)
    [a] = r["attempts"]
    assert a["error_class"] == "refused", a
    assert r["deliveries"][0]["state"] == "pending", r["deliveries"]
    assert receiver.count() == 0


def test_php_ini_allowance_lets_the_lan_crm_through(php, receiver):
    ini = fast_ini(receiver.url)
    ini["woosync.allow_networks"] = "10.0.0.0/8, 127.0.0.0/8"
    r = php.json("out([woosync_dispatch('a.b', []), woosync_flush(10)]);", ini)
    assert r[1] is True
    assert receiver.count() == 1


def test_malformed_allowances_raise_naming_the_setting(php):
    ini = fast_ini("http://127.0.0.1:9/hook")
    ini["woosync.allow_networks"] = "10.0.0.0/33"
    r = php.json("out(attempt(fn() => woosync_dispatch('a.b', [])));", ini)
    assert r["ok"] is False and "woosync.allow_networks" in r["message"], r
    r = php.json("out(attempt(fn() => woosync_endpoint_save('x', ['url' => 'http://10.0.0.1/', 'allow_networks' => 'nope'])));")
    assert r["ok"] is False and "allow_networks" in r["message"], r


@pytest.fixture
def connect_proxy():
    """A proxy on 127.0.0.1 that records the CONNECT line it gets and refuses with 502."""
    seen = []

    def handle(c):
        with c:
            c.settimeout(5)
            try:
                # TCP is a stream: the client may write the CONNECT line in pieces; read to its end.
                head = b""
                while b"\r\n" not in head and len(head) < 8192:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                seen.append(head.decode(errors="replace").split("\r\n")[0])
                c.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass

    with tcp_listener(handle) as (port, _):
        yield f"http://127.0.0.1:{port}", seen


def test_with_a_proxy_the_policy_applies_to_the_proxys_address(php, connect_proxy):
    proxy, seen = connect_proxy
    public = "http://93.184.216.34/hook"   # public address: only the proxy connects to it
    code = f"""
        woosync_endpoint_save('crm', ['url' => '{public}', 'proxy' => '{proxy}', 'retry_delays' => '', 'timeout' => 3]);
        $id = woosync_dispatch('a.b', []);
        woosync_flush(8);
        out(woosync_event($id)['attempts']);
    """
    refused = php.json(code, ini_without_allowance(""), timeout=30)
    assert refused[0]["error_class"] == "refused" and "127.0.0.1" in refused[0]["error"], refused
    assert seen == []
    ini = fast_ini("")
    ini["woosync.database"] = str(php.outbox.parent / "other.sqlite")
    allowed = php.json(code, ini, timeout=30)
    assert allowed[0]["error_class"] != "refused", allowed
    assert seen and seen[0].startswith("CONNECT 93.184.216.34:80"), seen
