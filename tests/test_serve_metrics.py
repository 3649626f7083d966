"""woosync_serve() (a sender that does not depend on traffic) and woosync_metrics() (Prometheus),
checked with the official parser (prometheus_client) and promtool (Debian's prometheus)."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chaos_support import Fpm
from conftest import closed_port, fast_ini
from helpers import LineReader
from receiver import Response

# Every test here runs on both storage engines: a SQLite file and a MariaDB database.
pytestmark = pytest.mark.engines("sqlite", "mysql")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
                       env=env, capture_output=True, timeout=900)
        path = shutil.which("promtool")
    assert path, "promtool (Debian package prometheus) is needed for this test"
    return path


def parse(text: str) -> dict:
    """{(name, frozenset(labels)): value} from the official parser."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_serve_delivers_until_sigterm_and_coexists_with_pcntl_handlers(php, receiver, tmp_path):
    marker = tmp_path / "pcntl-handler-ran"
    p = php.popen(f"""
        pcntl_signal(SIGTERM, function () {{ file_put_contents('{marker}', 'x', FILE_APPEND); }});
        echo json_encode(['ready' => true]), "\\n";
        $t = microtime(true);
        $n = woosync_serve();
        $took = microtime(true) - $t;
        pcntl_signal_dispatch();            // the script's own handler got the SIGTERM too
        $ran_during = file_exists('{marker}') ? strlen(file_get_contents('{marker}')) : 0;
        posix_kill(getmypid(), SIGTERM);    // after serve: the script's handler again, not woosync's
        pcntl_signal_dispatch();
        out(['finished' => $n, 'ran_during' => $ran_during, 'ran_after' => strlen(file_get_contents('{marker}')),
             'took' => $took, 'again' => woosync_serve(5)]);
    """, fast_ini(receiver.url, shutdown_grace=1))
    reader = LineReader(p.stdout)
    assert json.loads(reader.get(10)) == {"ready": True}
    ids = php.json("""
        $ids = [];
        for ($i = 0; $i < 5; $i++) $ids[] = woosync_dispatch('order.created', ['i' => $i]);
        out($ids);
    """, fast_ini(receiver.url))
    receiver.wait_for(5, timeout=15)
    time.sleep(0.5)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    r = reader.get_json(10)
    p.wait(10)
    assert time.monotonic() - t0 < 1 + 2.5, "SIGTERM must stop serve within the grace (+ margin)"
    assert p.returncode == 0
    assert r["ran_during"] == 1 and r["ran_after"] == 2, r
    assert r["again"] == 0, "after SIGTERM, serve returns at once"
    got = sorted(q.event_id for q in receiver.requests)
    assert got == sorted(ids)


def test_serve_argument_and_sapi_rules(php, tmp_path):
    r = php.json("out([attempt(fn() => woosync_serve(NAN)), attempt(fn() => woosync_serve(-1)), woosync_serve(0)]);")
    assert [x["ok"] for x in r[:2]] == [False, False] and "seconds" in r[0]["message"], r
    assert r[2] == 0
    fpm = Fpm(tmp_path / "fpm", php.so, {"woosync.database": str(php.outbox)}, max_children=1)
    (fpm.docroot / "serve.php").write_text("<?php try { woosync_serve(1); echo 'ran'; } catch (Throwable $e) { echo get_class($e), ': ', $e->getMessage(); }")
    try:
        fpm.start()
        _, body, _ = fpm.request(fpm.docroot / "serve.php")
        assert body.startswith("WooSyncException") and "CLI" in body, body
    finally:
        fpm.stop()


def test_serve_takes_over_from_php_fpm_and_delivers_retries_on_a_quiet_site(php, receiver, tmp_path):
    """Events waiting for a retry while php-fpm's worker sends; then no php-fpm worker is left (the
    site is quiet, the worker recycled): the serve process, standing by meanwhile, takes over and
    delivers them."""
    receiver.script(Response(503), Response(503), Response(503))
    ini = {"woosync.database": str(php.outbox), "woosync.endpoint": receiver.url, "woosync.retry_delays": "3,3,3",
           "woosync.shutdown_grace": 0}
    fpm = Fpm(tmp_path / "fpm", php.so, ini, pm="static", max_children=1, max_requests=0)
    (fpm.docroot / "d.php").write_text("<?php echo woosync_dispatch('order.created', ['i' => (int) ($_GET['i'] ?? 0)]), ' ', getmypid();")
    serve = None
    try:
        fpm.start()
        answers = [fpm.request(fpm.docroot / "d.php", f"i={i}")[1].split() for i in range(3)]
        ids, worker = [a[0] for a in answers], int(answers[0][1])
        receiver.wait_for(3, timeout=15)          # the worker's first attempts: 503
        serve = php.popen("""
            $n = woosync_serve(30);
            out(['n' => $n, 'pid' => getmypid()]);
        """, ini)
        time.sleep(0.5)
        st = php.status(ini)
        assert st["sender_pid"] == worker, st   # php-fpm's worker sends; serve stands by
        fpm.stop()                                # no worker left
        deadline = time.monotonic() + 20
        while len({q.event_id for q in receiver.requests if q.response.status == 200}) < 3:
            assert time.monotonic() < deadline, [(q.event_id, q.response.status) for q in receiver.requests]
            time.sleep(0.2)
        assert {q.event_id for q in receiver.requests if q.response.status == 200} == set(ids)
        st = php.status(ini)
        assert st["sender_pid"] == serve.pid, st
    finally:
        fpm.stop()
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            out = LineReader(serve.stdout).get_json(10)
            serve.wait(10)
            assert out["n"] == 3, out


def test_metrics_are_valid_and_counters_never_decrease(php, receiver, tmp_path):
    receiver.script(Response(500), Response(500))
    ini = fast_ini(receiver.url, delays="0.05,0.05")
    php.json("""
        for ($i = 0; $i < 4; $i++) woosync_dispatch('order.created', ['i' => $i], ['key' => 'k']);
        out(woosync_flush(10));
    """, ini)
    first = php.json("out(woosync_metrics());", ini)
    path = tmp_path / "m.prom"
    path.write_text(first)
    check = subprocess.run([promtool(), "check", "metrics"], input=first, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    m = parse(first)
    ep = ("endpoint", "default")
    assert m[("woosync_delivered_total", frozenset({ep}))] == 4
    assert m[("woosync_attempts_total", frozenset({ep, ("outcome", "retried"), ("class", "5xx")}))] == 2
    assert m[("woosync_attempts_total", frozenset({ep, ("outcome", "delivered"), ("class", "2xx")}))] == 4
    count = m[("woosync_attempt_duration_seconds_count", frozenset({ep}))]
    assert count == 6 == m[("woosync_attempt_duration_seconds_bucket", frozenset({ep, ("le", "+Inf")}))]
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m.items()
                     if k[0] == "woosync_attempt_duration_seconds_bucket")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets must be cumulative"
    assert m[("woosync_sender_up", frozenset())] in (0, 1)
    # Purge, replay and erase remove rows: the counters do not go down.
    r = php.json("""
        $ids = array_column(woosync_events(['limit' => 10]), 'id');
        woosync_retry($ids[0]);
        woosync_flush(10);
        woosync_purge(0);
        woosync_erase('k');
        out(woosync_metrics());
    """, ini)
    after = parse(r)
    for key, v in m.items():
        if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
            assert after.get(key, 0) >= v, (key, v, after.get(key))
    assert after[("woosync_delivered_total", frozenset({ep}))] == 5


def test_metrics_show_an_outage_as_it_happens(php, blackhole, receiver):
    down = fast_ini(f"http://127.0.0.1:{closed_port()}/x", delays="0.05,0.05,0.05,0.05,0.05,0.05,0.05,0.05")
    r = php.json("""
        for ($i = 0; $i < 8; $i++) woosync_dispatch('order.created', ['i' => $i]);
        $deadline = microtime(true) + 15;
        do { usleep(100000); $m = woosync_metrics(); }
        while (strpos($m, 'woosync_breaker_open{endpoint="default"} 1') === false && microtime(true) < $deadline);
        out($m);
    """, down, timeout=30)
    m = parse(r)
    assert m[("woosync_breaker_open", frozenset({("endpoint", "default")}))] == 1
    assert m[("woosync_pending", frozenset({("endpoint", "default")}))] == 8
    assert m[("woosync_oldest_pending_age_seconds", frozenset())] > 0
