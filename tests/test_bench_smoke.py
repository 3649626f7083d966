"""Keeps `make bench` working: runs its quick mode (a few seconds per scenario) and checks that it
produced every section. Asserts no timing — figures belong to the benchmark, not to tests."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_runs_every_scenario(so, tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--so", str(so), "--quick",
         "--only", "reqpath,delivery,fpm,resources"],  # checkout: test_bench_checkout.py
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = list(tmp_path.rglob("latest.json"))
    assert results, f"no latest.json under {tmp_path}: {r.stdout[-2000:]}"
    data = json.loads(results[0].read_text())
    for section in ("reqpath", "delivery", "fpm", "resources"):
        assert section in data and data[section], f"bench section {section} missing: {sorted(data)}"
    assert not data.get("errors"), data.get("errors")
    assert (ROOT / "bench" / "results" / "latest.json").read_text()  # committed results untouched
