"""Several PHP processes on one outbox."""
import collections
import time

from conftest import fast_ini
from helpers import EVENT_ID_RE, LineReader

PROCS = 4
PER_PROC = 500


def test_four_processes_500_events_each_exactly_once(php, receiver):
    ini = fast_ini(receiver.url, delays="0.05,0.1,0.2")
    code = """
        $n = %d;
        for ($i = 0; $i < $n; $i++) {
            // a fifth of the events share keys across all processes, the rest have none
            $opts = ($i %% 5 == 0) ? ['key' => 'shared:' . ($i %% 3)] : null;
            $id = woosync_dispatch('order.created', ['proc' => getmypid(), 'i' => $i], $opts);
            echo $id . "\\n";
        }
        out(['done' => true, 'flushed' => woosync_flush(90)]);
    """ % PER_PROC
    procs = [php.popen(code, ini) for _ in range(PROCS)]
    readers = [(LineReader(p.stdout), LineReader(p.stderr, "stderr")) for p in procs]
    deadline = time.monotonic() + 150
    for p in procs:
        left = max(1, deadline - time.monotonic())
        p.wait(left)
    ids, flushed = [], []
    for p, (out, err) in zip(procs, readers):
        lines = out.wait_eof(5)
        errs = err.wait_eof(5)
        assert p.returncode == 0, f"process exited {p.returncode}: {errs[-20:]}"
        assert not [e for e in errs if e.strip()], f"stderr output: {errs[-20:]}"
        mine = [l for l in lines if EVENT_ID_RE.fullmatch(l)]
        assert len(mine) == PER_PROC, (len(mine), lines[-3:])
        ids += mine
        flushed.append(lines[-1])
    assert len(set(ids)) == PROCS * PER_PROC, "event ids must be unique"
    assert all('"flushed":true' in f for f in flushed), flushed

    receiver.wait_for(len(ids), timeout=30)
    time.sleep(0.5)
    reqs = receiver.requests
    got = collections.Counter(q.event_id for q in reqs)
    missing = [i for i in ids if got[i] == 0]
    assert not missing, f"{len(missing)} events never delivered, e.g. {missing[:5]}"
    dups = {i: n for i, n in got.items() if n > 1}
    assert not dups, f"{len(dups)} events delivered more than once, e.g. {list(dups.items())[:5]}"
    assert set(got) == set(ids)

    # shared keys: sequences unique per key across processes and delivered in sequence order
    per_key = collections.defaultdict(list)
    for q in reqs:
        env = q.json()
        if env["key"] is not None:
            per_key[env["key"]].append((q.time, env["sequence"]))
    assert sorted(per_key) == ["shared:0", "shared:1", "shared:2"]
    for key, items in per_key.items():
        seqs = [s for _, s in sorted(items)]
        assert len(set(seqs)) == len(seqs), f"{key}: duplicate sequence numbers"
        assert seqs == sorted(seqs), f"{key}: delivered out of sequence order: {seqs[:20]}"

    st = php.status(ini)
    assert st["delivered"] == PROCS * PER_PROC and st["pending"] == 0 and st["dead"] == 0, st
