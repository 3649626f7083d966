#!/usr/bin/env python3
"""Interleaved old-vs-new runs of the request path (dispatch p50/p99, against the bare SQLite insert).

    python3 bench/profile/pairs.py /tmp/old.so,target/release/libwoosync.so [--modes woosync,sqlite]
        [--reps 3] [--url http://127.0.0.1:18089/ | --blackhole]

Each repetition runs every build (and mode) once, in turn, so a busy machine affects all alike.
`--blackhole` starts a listener that accepts and never answers (the CRM blackholed)."""
import argparse, json, os, socket, subprocess, tempfile, threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def blackhole() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    held = []
    threading.Thread(target=lambda: [held.append(s.accept()) for _ in iter(int, 1)], daemon=True).start()
    return f"http://127.0.0.1:{s.getsockname()[1]}/"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sos")
    ap.add_argument("--modes", default="woosync")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--url", default="http://127.0.0.1:18089/")
    ap.add_argument("--blackhole", action="store_true")
    a = ap.parse_args()
    url = blackhole() if a.blackhole else a.url
    for _ in range(a.reps):
        for so in a.sos.split(","):
            for mode in a.modes.split(","):
                with tempfile.TemporaryDirectory() as d:
                    os.chmod(d, 0o700)
                    out = subprocess.run(
                        ["php", "-d", f"extension={so}", "-d", f"woosync.database={d}/o.db", "-d",
                         f"woosync.endpoint={url}", "-d", "woosync.allow_networks=127.0.0.1/32",
                         str(ROOT / "bench/php/reqpath.php"),
                         json.dumps({"mode": mode, "n": a.n, "db": f"{d}/bare.db"})],
                        capture_output=True, text=True, timeout=600)
                    s = sorted(json.loads(out.stdout)["samples"])[20:]
                    n = len(s)
                    print(f"{so:40} {mode:8} p50 {s[n // 2] / 1000:6.1f} µs  p99 {s[n * 99 // 100] / 1000:7.1f} µs",
                          flush=True)


if __name__ == "__main__":
    main()
