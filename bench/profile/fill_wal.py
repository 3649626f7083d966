#!/usr/bin/env python3
"""The WAL while one process dispatches N events in a tight loop with the CRM blackholed (every delivery
thread stuck in an attempt): its largest size (sampled every 0.1 s), the fill rate and the filler's RSS.

    python3 bench/profile/fill_wal.py target/release/libwoosync.so [N=200000]"""
import json, os, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs import ROOT, blackhole  # noqa: E402


def main():
    so, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200000
    url = blackhole()
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o700)
        db = f"{d}/o.db"
        p = subprocess.Popen(["php", "-d", f"extension={so}", "-d", f"woosync.database={db}", "-d",
                              f"woosync.endpoint={url}", "-d", "woosync.allow_networks=127.0.0.1/32", "-d",
                              "woosync.timeout=30", "-d", "woosync.shutdown_grace=0",
                              str(ROOT / "bench/php/fill.php"), json.dumps({"n": n, "base": 0, "every": n // 10})],
                             stdout=subprocess.PIPE, text=True)
        most = 0
        while p.poll() is None:
            try:
                most = max(most, os.path.getsize(db + "-wal"))
            except OSError:
                pass
            time.sleep(0.1)
        o = json.loads(p.stdout.read().strip().splitlines()[-1])
        print(f"{n} events, {n / o['seconds']:.0f}/s; WAL at most {most / 1e6:.0f} MB; filler RSS "
              f"{o['end']['rss_kb'] / 1024:.1f} MB")


if __name__ == "__main__":
    main()
