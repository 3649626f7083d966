"""Credentials in endpoint and proxy URLs (`http://user:password@host/`) are never shown: not by
php --ri, woosync_status(), woosync_endpoints(), the 410 reason, the log; a masked URL saved back
(as a settings form does) keeps the stored password."""
import base64

from conftest import closed_port, fast_ini
from receiver import Response
import pytest

# Every test here runs on both storage engines: a SQLite file and a MariaDB database.
pytestmark = pytest.mark.engines("sqlite", "mysql")



def with_creds(url: str, user: str = "crm", password: str = "pa55word-secret") -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


def test_passwords_masked_everywhere_and_kept_when_saved_back_masked(php, receiver):
    url = with_creds(receiver.url)
    proxy = f"http://proxyuser:proxy-secret@127.0.0.1:{closed_port()}"
    ini_url = with_creds(receiver.url, "ini", "ini-secret")
    ini = fast_ini(ini_url)
    r = php.json(f"""
        woosync_endpoint_save('crm', ['url' => '{url}', 'retry_delays' => '']);
        woosync_endpoint_save('viaproxy', ['url' => '{receiver.url}', 'proxy' => '{proxy}', 'retry_delays' => '', 'topics' => ['p.x']]);
        $eps = woosync_endpoints();
        $status = woosync_status();
        // What a settings form does: show the list, save it back unchanged.
        $crm = array_values(array_filter($eps, fn($e) => $e['name'] === 'crm'))[0];
        woosync_endpoint_save('crm', ['url' => $crm['url'], 'retry_delays' => '']);
        $id = woosync_dispatch('a.b', ['n' => 1], ['endpoints' => ['crm']]);
        $p = woosync_dispatch('p.x', ['n' => 2], ['endpoints' => ['viaproxy']]);
        woosync_flush(10);
        out(['eps' => $eps, 'status' => $status, 'shown' => $crm['url'], 'event' => woosync_event($p),
             'list' => woosync_events(['limit' => 10]), 'after' => woosync_endpoints()]);
    """, ini, timeout=40)
    text = str(r)
    for secret in ("pa55word-secret", "proxy-secret", "ini-secret"):
        assert secret not in text, f"{secret} shown: {text[:3000]}"
    assert r["shown"] == with_creds(receiver.url, "crm", "****"), r["shown"]
    # the masked form saved back kept the real password: the CRM got it as Basic auth
    reqs = [q for q in receiver.wait_for(1) if q.json()["type"] == "a.b"]
    auth = reqs[0].headers["Authorization"]
    assert auth == "Basic " + base64.b64encode(b"crm:pa55word-secret").decode(), auth
    # php --ri shows neither the php.ini endpoint's nor a stored endpoint's password
    ri = php.run_args(["--ri", "woosync"], ini=ini, check=True).stdout
    assert "ini-secret" not in ri and "pa55word-secret" not in ri, ri
    assert "ini:****@" in ri, ri


def test_410_reason_and_errors_do_not_show_the_password(php, receiver):
    receiver.default = Response(410, body=b"gone")
    url = with_creds(receiver.url)
    r = php.json(f"""
        woosync_endpoint_save('crm', ['url' => '{url}', 'retry_delays' => '']);
        $id = woosync_dispatch('a.b', []);
        woosync_flush(10);
        out(['eps' => woosync_endpoints(), 'status' => woosync_status(), 'event' => woosync_event($id)]);
    """, fast_ini(""), timeout=40)
    [ep] = [e for e in r["eps"] if e["name"] == "crm"]
    assert ep["disabled_reason"] and "410" in ep["disabled_reason"], ep
    assert "pa55word-secret" not in str(r), str(r)[:3000]
    assert "crm:****@" in ep["disabled_reason"], ep["disabled_reason"]
