"""Loading the module: --re, --ri (secret masked), and loading with bad INI values."""
import base64

import pytest

from conftest import FUNCTIONS, closed_port, make_secret


def test_re_lists_functions_and_exception_class(php):
    res = php.run_args(["--re", "woosync"], check=True)
    for fn in FUNCTIONS:
        assert f"function {fn} ]" in res.stdout, f"{fn} missing from php --re woosync\n{res.stdout}"
    assert "WooSyncException" in res.stdout, res.stdout
    info = php.json("""
        $c = new ReflectionClass('WooSyncException');
        out(['parent' => $c->getParentClass() ? $c->getParentClass()->getName() : null,
             'ext' => $c->getExtensionName(),
             'throwable' => $c->implementsInterface('Throwable')]);
    """)
    assert info == {"parent": "Exception", "ext": "woosync", "throwable": True}


def test_ri_shows_version_settings_and_masks_secret(php):
    secret = make_secret(32)
    url = f"http://127.0.0.1:{closed_port()}/ri-endpoint"
    ini = {"woosync.secret": secret, "woosync.endpoint": url, "woosync.retry_delays": "1,2,3"}
    php.json("out(woosync_dispatch('order.created', ['n' => 1]));", ini)  # so the outbox exists (counters)
    res = php.run_args(["--ri", "woosync"], ini=ini, check=True)
    out = res.stdout
    version = php.status()["version"]
    assert isinstance(version, str) and version
    assert version in out, out
    assert str(php.outbox) in out, f"--ri should show the effective database path\n{out}"
    assert url in out, f"--ri should show the effective endpoint\n{out}"
    assert "1,2,3" in out or "1, 2, 3" in out, f"--ri should show the effective retry_delays\n{out}"
    # the secret must not leak, not even its base64 part or a long piece of it
    b64 = secret[len("whsec_"):]
    assert secret not in out, out
    assert b64 not in out, out
    assert b64[:12] not in out and b64.rstrip("=")[-12:] not in out, f"--ri leaks part of the secret\n{out}"
    assert "secret" in out.lower(), f"--ri should list the (masked) secret setting\n{out}"
    # counters
    assert "pending" in out.lower(), f"--ri should show counters\n{out}"


BAD_INI = [
    ("woosync.retry_delays", "abc"),
    ("woosync.retry_delays", "5,,x"),
    ("woosync.retry_delays", "-1,5"),
    ("woosync.timeout", "abc"),
    ("woosync.timeout", "-5"),
    ("woosync.concurrency", "abc"),
    ("woosync.concurrency", "0"),
    ("woosync.max_payload_bytes", "lots"),
    ("woosync.shutdown_grace", "soon"),
    ("woosync.secret", "not-a-secret"),
    ("woosync.secret", "whsec_!!!notbase64!!!"),
    ("woosync.secret", "whsec_" + base64.b64encode(b"short").decode()),  # 5 bytes < 24
    ("woosync.endpoint", "not a url"),
    ("woosync.endpoint", "ftp://127.0.0.1/hook"),
    ("woosync.endpoint", "http://"),
]


@pytest.mark.parametrize("key,value", BAD_INI, ids=[f"{k.split('.')[1]}={v[:20]}" for k, v in BAD_INI])
def test_module_loads_with_bad_ini_but_dispatch_raises(php, key, value):
    ini = {"woosync.endpoint": f"http://127.0.0.1:{closed_port()}/hook",
           "woosync.secret": make_secret(), "woosync.retry_delays": "60"}
    ini[key] = value
    # the module loads (no startup failure) with the bad value
    res = php.run_args(["-r", "echo function_exists('woosync_dispatch') ? 'loaded' : 'missing';"], ini=ini)
    assert res.returncode == 0 and res.stdout.strip().endswith("loaded"), res.describe()
    assert "Fatal" not in res.stderr, res.describe()
    # before: a good event in the outbox (default INI)
    good = php.json("out(woosync_dispatch('product.updated', ['id' => 1]));")
    before = php.json(f"out(['total' => total_events(woosync_status()), 'ev' => woosync_event('{good}')]);")
    r = php.json("""
        out(attempt(fn() => woosync_dispatch('product.updated', ['id' => 2])));
    """, ini=ini)
    assert r["ok"] is False, f"dispatch with {key}={value!r} should raise, returned {r['value']!r}"
    assert r["class"] == "WooSyncException", r
    assert r["message"], r
    after = php.json(f"out(['total' => total_events(woosync_status()), 'ev' => woosync_event('{good}')]);")
    assert after["total"] == before["total"] == 1
    assert after["ev"]["body"] == before["ev"]["body"]
