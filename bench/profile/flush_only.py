#!/usr/bin/env python3
"""Delivery alone, interleaved builds: a process that only delivers 20,000 routed, keyed events.

    python3 bench/profile/flush_only.py /tmp/old.so,target/release/libwoosync.so [--reps 3]
        [--concurrency 4] [--url http://127.0.0.1:18089/] [--keep DIR] [--strace]

The outbox is made once with the first build: 20,000 dispatches (1,000 keys, ~650-byte payload)
while the CRM is blackholed at concurrency 1, then the one attempt left in flight is put back.
Each run copies it, starts a process with the fast receiver as the endpoint and waits until all
are delivered: deliveries/s and CPU µs per delivered event (user + sys of the whole process).
`--strace` prints the system calls per delivered event instead (`strace -f -c`); `--perf FILE` records
the last run with `perf record -F 1000 --call-graph dwarf` into FILE (the release build has debug info). `--keep DIR`
leaves the last run's outbox in DIR (for `wal_pages.py` on a copy of its WAL taken mid-run)."""
import argparse, os, shutil, sqlite3, subprocess, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs import blackhole  # noqa: E402

N = 20000
FILL = """for ($i = 0; $i < %d; $i++) woosync_dispatch('order.created', ['id' => $i, 'pad' => str_repeat('x', 600)],
    ['key' => 'k' . ($i %% %d)]);"""
FLUSH = """$n = %d; $r0 = getrusage(); $s = microtime(true);
woosync_dispatch('x.start', ['go' => 1]);  // starts the sender
while (($st = woosync_status())['delivered'] < $n + 1) { usleep(20000); if (microtime(true) - $s > 120) break; }
$dt = microtime(true) - $s; $r1 = getrusage();
$cpu = fn($r) => $r['ru_utime.tv_sec'] + $r['ru_utime.tv_usec'] / 1e6 + $r['ru_stime.tv_sec'] + $r['ru_stime.tv_usec'] / 1e6;
printf("%%6.0f/s  cpu %%6.1f µs/event  delivered %%d\\n", $n / $dt, ($cpu($r1) - $cpu($r0)) / $n * 1e6, $st['delivered']);"""


def php(so, db, url, code, conc, prefix=()):
    return subprocess.run([*prefix, "php", "-d", f"extension={so}", "-d", f"woosync.database={db}", "-d",
                           f"woosync.endpoint={url}", "-d", "woosync.allow_networks=127.0.0.1/32", "-d",
                           f"woosync.concurrency={conc}", "-r", code], capture_output=True, text=True, timeout=600,
                          check=True).stdout


def seed(so, path, n, keys):
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o700)
        php(so, f"{d}/o.db", blackhole(), FILL % (n, keys), 1)
        c = sqlite3.connect(f"{d}/o.db")
        n = c.execute("UPDATE deliveries SET state = 1, claimed_by = NULL, lease_until = NULL, attempts = 0"
                      " WHERE state = 2").rowcount
        c.execute("UPDATE stats SET n = n - ? WHERE state = 2 AND endpoint_id > 0", (n,))
        c.execute("UPDATE stats SET n = n + ? WHERE state = 1 AND endpoint_id > 0", (n,))
        c.commit()
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
        shutil.copy(f"{d}/o.db", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sos")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--url", default="http://127.0.0.1:18089/")
    ap.add_argument("--keep")
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--perf")
    ap.add_argument("--events", type=int, default=N)
    ap.add_argument("--keys", type=int, default=1000, help="events spread over this many keys")
    a = ap.parse_args()
    sos = a.sos.split(",")
    with tempfile.TemporaryDirectory() as work:
        seeded = f"{work}/seed.db"
        seed(sos[0], seeded, a.events, a.keys)
        for _ in range(a.reps):
            for so in sos:
                d = a.keep or tempfile.mkdtemp()
                os.makedirs(d, mode=0o700, exist_ok=True)
                for f in ("o.db", "o.db-wal", "o.db-shm"):
                    Path(d, f).unlink(missing_ok=True)
                shutil.copy(seeded, f"{d}/o.db")
                if a.strace:
                    out = Path(work, "strace.txt")
                    php(so, f"{d}/o.db", a.url, FLUSH % a.events, a.concurrency, ("strace", "-f", "-c", "-o", str(out)))
                    rows = [l.split() for l in out.read_text().splitlines()[2:] if l[:1] == " " or l[:1].isdigit()]
                    calls = sorted(((int(r[3]), r[-1]) for r in rows if len(r) >= 5 and r[3].isdigit()
                                    and r[-1] != "total"), reverse=True)
                    print(f"{so}: " + ", ".join(f"{name} {n / a.events:.2f}" for n, name in calls[:12]), flush=True)
                else:
                    prefix = ("perf", "record", "-q", "-F", "1000", "--call-graph", "dwarf,16384", "-o", a.perf) if a.perf else ()
                    print(f"{so:40} " + php(so, f"{d}/o.db", a.url, FLUSH % a.events, a.concurrency, prefix).strip(), flush=True)
                if not a.keep:
                    shutil.rmtree(d)


if __name__ == "__main__":
    main()
