"""woosync_verify(): the Standard Webhooks receiver check."""
import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook

from conftest import fast_ini, make_secret


def sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret[len("whsec_"):] + "==")
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def run_cases(php, cases):
    """cases: list of dicts with body (bytes), headers (dict), secret, tolerance (optional)."""
    enc = [{"body": base64.b64encode(c["body"]).decode(), "headers": c["headers"], "secret": c["secret"],
            "tolerance": c.get("tolerance")} for c in cases]
    path = php.workdir / "cases.json"
    path.write_text(json.dumps(enc))
    return php.json(f"""
        $cases = json_decode(file_get_contents({json.dumps(str(path))}), true);
        $res = [];
        foreach ($cases as $c) {{
            $body = base64_decode($c['body']);
            $res[] = attempt(fn() => $c['tolerance'] === null
                ? woosync_verify($body, $c['headers'], $c['secret'])
                : woosync_verify($body, $c['headers'], $c['secret'], $c['tolerance']));
        }}
        out($res);
    """)


def test_verify_cases(php):
    secret = make_secret(32)
    other = make_secret(32)
    body = json.dumps({"id": "evt_1", "type": "order.created", "data": {"x": "é"}}).encode()
    mid = "evt_01HZXK5T2ZJ3Q8B4W3V6M9N0PA"
    now = int(time.time())
    good = sign(secret, mid, now, body)

    def h(ts=now, sig=good, msg_id=mid, **extra):
        d = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}
        d.update(extra)
        return d

    binary = b"\x00\xff\xfe{not json}\x80\x81" + secrets.token_bytes(64)
    bsig = sign(secret, mid, now, binary)
    unpadded = secret.rstrip("=")
    assert unpadded != secret, "want a secret whose base64 has padding"

    cases = [
        ("valid", True, dict(body=body, headers=h(), secret=secret)),
        ("valid-reference-signer", True, dict(body=body, headers=h(sig=Webhook(secret).sign(
            mid, datetime.fromtimestamp(now, tz=timezone.utc), body.decode())), secret=secret)),
        ("tampered-body", False, dict(body=body.replace(b"order", b"ordex"), headers=h(), secret=secret)),
        ("appended-byte", False, dict(body=body + b" ", headers=h(), secret=secret)),
        ("wrong-secret", False, dict(body=body, headers=h(), secret=other)),
        ("other-id", False, dict(body=body, headers=h(msg_id="evt_other"), secret=secret)),
        ("other-timestamp", False, dict(body=body, headers=h(ts=now + 1), secret=secret)),
        ("stale", False, dict(body=body, headers=h(ts=now - 400, sig=sign(secret, mid, now - 400, body)), secret=secret)),
        ("future", False, dict(body=body, headers=h(ts=now + 400, sig=sign(secret, mid, now + 400, body)), secret=secret)),
        ("stale-within-custom-tolerance", True,
         dict(body=body, headers=h(ts=now - 400, sig=sign(secret, mid, now - 400, body)), secret=secret, tolerance=600)),
        ("fresh-outside-small-tolerance", False,
         dict(body=body, headers=h(ts=now - 20, sig=sign(secret, mid, now - 20, body)), secret=secret, tolerance=5)),
        ("uppercase-headers", True, dict(body=body, headers={"WEBHOOK-ID": mid, "Webhook-Timestamp": str(now),
                                                             "Webhook-Signature": good}, secret=secret)),
        ("several-signatures-good-last", True,
         dict(body=body, headers=h(sig=f"{sign(other, mid, now, body)} v1,AAAA {good}"), secret=secret)),
        ("several-signatures-good-first", True,
         dict(body=body, headers=h(sig=f"{good} {sign(other, mid, now, body)}"), secret=secret)),
        ("several-signatures-none-good", False,
         dict(body=body, headers=h(sig=f"{sign(other, mid, now, body)} v1,AAAA"), secret=secret)),
        ("wrong-version", False, dict(body=body, headers=h(sig="v2," + good[3:]), secret=secret)),
        ("binary-body", True, dict(body=binary, headers=h(sig=bsig), secret=secret)),
        ("binary-body-tampered", False, dict(body=binary[:-1] + bytes([binary[-1] ^ 1]), headers=h(sig=bsig), secret=secret)),
        ("unpadded-secret", True, dict(body=body, headers=h(), secret=unpadded)),
        ("missing-signature", False, dict(body=body, headers={"webhook-id": mid, "webhook-timestamp": str(now)}, secret=secret)),
        ("missing-id", False, dict(body=body, headers={"webhook-timestamp": str(now), "webhook-signature": good}, secret=secret)),
        ("missing-timestamp", False, dict(body=body, headers={"webhook-id": mid, "webhook-signature": good}, secret=secret)),
        ("bad-timestamp", False, dict(body=body, headers=h(ts="yesterday"), secret=secret)),
        ("empty-signature", False, dict(body=body, headers=h(sig=""), secret=secret)),
        ("garbage-signature", False, dict(body=body, headers=h(sig="v1,!!!notbase64!!!"), secret=secret)),
        ("empty-body-signed", True, dict(body=b"", headers=h(sig=sign(secret, mid, now, b"")), secret=secret)),
    ]
    results = run_cases(php, [c[2] for c in cases])
    problems = []
    for (name, want, _), got in zip(cases, results):
        if want:
            if not (got["ok"] and got["value"] is True):
                problems.append(f"{name}: expected true, got {got}")
        else:
            # the contract answers false (not an exception) for a message that does not verify
            if got["ok"] and got["value"] is not False:
                problems.append(f"{name}: expected false, got {got['value']!r}")
            if not got["ok"]:
                problems.append(f"{name}: expected false, raised {got['class']}: {got['message']}")
    assert not problems, "\n".join(problems)


def test_reference_library_cases(php):
    """The Standard Webhooks reference libraries' own cases that a receiver check can answer,
    signed by the PyPI reference implementation: woosync_verify must agree with it."""
    body = '{"test": 2432232314}'
    mid = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    now = int(time.time())

    def signed(secret, ts=now):
        sig = Webhook(secret).sign(mid, datetime.fromtimestamp(ts, tz=timezone.utc), body)
        return {"webhook-id": mid, "webhook-timestamp": str(ts), "webhook-signature": sig}

    ref = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    trailing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr"  # unpadded, non-zero trailing bits
    short = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS"       # 23 bytes, unpadded
    b = body.encode()
    # correctly signed, timestamp now - 2^63 (beyond what datetime can hold, so signed by hand)
    ancient = {"webhook-id": mid, "webhook-timestamp": str(now - 2**63),
               "webhook-signature": sign(ref, mid, now - 2**63, b)}
    cases = [
        ("reference-secret", True, dict(body=b, headers=signed(ref), secret=ref)),
        ("without-whsec-prefix", True, dict(body=b, headers=signed(ref), secret=ref[len("whsec_"):])),
        ("unpadded-trailing-bits", True, dict(body=b, headers=signed(trailing), secret=trailing)),
        ("unpadded-trailing-bits-padded", True, dict(body=b, headers=signed(trailing), secret=trailing + "==")),
        ("unpadded-trailing-bits-bare", True, dict(body=b, headers=signed(trailing), secret=trailing[6:])),
        ("short-unpadded", True, dict(body=b, headers=signed(short), secret=short)),
        ("trailing-bits-wrong-key", False, dict(body=b, headers=signed(trailing), secret=ref)),
        # now - 2^63: the subtraction used to wrap and accept it, with any tolerance, even 0
        ("now-minus-2^63", False, dict(body=b, headers=ancient, secret=ref, tolerance=0)),
        ("now-minus-2^63-big-tolerance", False, dict(body=b, headers=ancient, secret=ref, tolerance=2**62)),
        ("partial-signature", False, dict(body=b, headers=signed(ref) | {
            "webhook-signature": signed(ref)["webhook-signature"][:8]}, secret=ref)),
        ("only-v1-prefix", False, dict(body=b, headers=signed(ref) | {"webhook-signature": "v1,"}, secret=ref)),
        ("old", False, dict(body=b, headers=signed(ref, ts=now - 320), secret=ref)),  # margin: a loaded machine
        ("new", False, dict(body=b, headers=signed(ref, ts=now + 320), secret=ref)),
        ("multi-sig", True, dict(body=b, headers=signed(ref) | {"webhook-signature": " ".join([
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            signed(ref)["webhook-signature"], "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="])}, secret=ref)),
    ]
    # sanity: the reference implementation accepts what we expect to be accepted
    for name, want, c in cases:
        if want:
            Webhook(c["secret"]).verify(c["body"], c["headers"])
    results = run_cases(php, [c[2] for c in cases])
    problems = [f"{name}: expected {want}, got {got}" for (name, want, _), got in zip(cases, results)
                if not (got["ok"] and got["value"] is want)]
    assert not problems, "\n".join(problems)
    # An empty key is refused with a WooSyncException (every reference library raises).
    [empty] = run_cases(php, [dict(body=b, headers=signed(ref), secret="")])
    assert not empty["ok"] and empty["class"] == "WooSyncException", empty


def test_verify_accepts_a_real_delivery(php, receiver, secret):
    ini = fast_ini(receiver.url, secret)
    r = php.json("out([woosync_dispatch('order.created', ['n' => 1, 'bin' => 'ok']), woosync_flush(10)]);", ini)
    assert r[1] is True
    [req] = receiver.wait_for(1)
    res = run_cases(php, [
        dict(body=req.body, headers=dict(req.headers.items()), secret=secret),
        dict(body=req.body + b"x", headers=dict(req.headers.items()), secret=secret),
    ])
    assert res[0] == {**res[0], "ok": True, "value": True}, res[0]
    assert res[1]["ok"] and res[1]["value"] is False, res[1]
