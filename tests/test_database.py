"""Unusable databases: foreign / corrupt files are never modified; unwritable files name their owner."""
import hashlib
import os
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path

import pytest

from conftest import closed_port


def _foreign_sqlite(path: Path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)")
    con.executemany("INSERT INTO users(name) VALUES (?)", [("alice",), ("bob",)])
    con.commit()
    con.close()


def _foreign_with_events_table(path: Path):
    # looks a bit like ours (an `events` table) but has another application_id
    con = sqlite3.connect(path)
    con.execute("PRAGMA application_id = 305419896")
    con.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, event_id TEXT, body BLOB)")
    con.execute("INSERT INTO events(event_id, body) VALUES ('x', 'y')")
    con.commit()
    con.close()


def _text(path: Path):
    path.write_text("this is not a database\n" * 50)


def _random(path: Path):
    path.write_bytes(os.urandom(16384))


def _corrupt_sqlite(path: Path):
    _foreign_sqlite(path)
    data = bytearray(path.read_bytes())
    # keep the 100-byte header, trash the rest of page 1 (the schema) and beyond
    for i in range(100, len(data)):
        data[i] = (i * 7919) & 0xFF
    path.write_bytes(bytes(data))


def _truncated_sqlite(path: Path):
    _foreign_sqlite(path)
    data = path.read_bytes()
    path.write_bytes(data[:150])


MAKERS = {
    "text-file": _text,
    "random-bytes": _random,
    "foreign-sqlite": _foreign_sqlite,
    "foreign-app-id": _foreign_with_events_table,
    "corrupt-sqlite": _corrupt_sqlite,
    "truncated-sqlite": _truncated_sqlite,
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", list(MAKERS))
def test_foreign_or_corrupt_database_is_refused_and_untouched(php, outbox, kind):
    MAKERS[kind](outbox)
    before = _digest(outbox)
    size = outbox.stat().st_size
    ini = {"woosync.endpoint": f"http://127.0.0.1:{closed_port()}/hook"}
    r = php.json("""
        $d = attempt(fn() => woosync_dispatch('order.created', ['n' => 1]));
        $res = ['dispatch' => $d,
                'flush' => attempt(fn() => woosync_flush(0.2)),
                'status' => attempt(fn() => woosync_status()),
                'retry' => attempt(fn() => woosync_retry('evt_01ARZ3NDEKTSV4RRFFQ69G5FAV')),
                'events' => attempt(fn() => woosync_events()),
                'dispatch2' => attempt(fn() => woosync_dispatch('order.created', ['n' => 2]))];
        out($res);
    """, ini)
    d = r["dispatch"]
    assert d["ok"] is False, f"dispatch into a {kind} file succeeded: {d}"
    assert d["class"] == "WooSyncException", d
    assert d["message"] and outbox.name in d["message"], f"message should name the database file: {d['message']!r}"
    assert r["dispatch2"]["ok"] is False, r["dispatch2"]
    assert outbox.stat().st_size == size
    assert _digest(outbox) == before, f"the {kind} file was modified"
    for other in ("flush", "status", "retry", "events"):
        if not r[other]["ok"]:
            assert r[other]["class"] == "WooSyncException", (other, r[other])


def test_directory_as_database_raises(php, tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    r = php.json("out(attempt(fn() => woosync_dispatch('order.created', [])));", database=d)
    assert r["ok"] is False and r["class"] == "WooSyncException" and r["message"], r


def test_database_in_unusable_location_raises(php):
    r = php.json("out(attempt(fn() => woosync_dispatch('order.created', [])));",
                 database="/proc/woosync-does-not-exist/outbox.sqlite")
    assert r["ok"] is False and r["class"] == "WooSyncException" and r["message"], r


@pytest.fixture
def shared_dir():
    d = Path(tempfile.mkdtemp(prefix="woosync-perm-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("dir_mode", [0o755, 0o1777], ids=["dir-755", "dir-1777"])
def test_unwritable_database_names_owner(php, shared_dir, receiver, dir_mode):
    if os.geteuid() != 0:
        pytest.fail("this test must run as root (it runs php as 'nobody' against a root-owned database)")
    db = shared_dir / "outbox.sqlite"
    # create a real outbox as root
    r = php.json("out(woosync_dispatch('order.created', ['n' => 1]));", database=db)
    assert r.startswith("evt_")
    for f in shared_dir.iterdir():
        os.chmod(f, 0o644)
    os.chmod(shared_dir, dir_mode)
    before = {f.name: _digest(f) for f in shared_dir.iterdir() if f.is_file()}
    assert stat.S_IMODE(db.stat().st_mode) == 0o644 and db.stat().st_uid == 0
    # the extension must be loadable by nobody
    assert php.so.stat().st_mode & 0o004, f"{php.so} must be world-readable for this test"
    script_dir = shared_dir / "scripts"
    script_dir.mkdir()
    os.chmod(script_dir, 0o755)
    res = php.run("""
        out(['dispatch' => attempt(fn() => woosync_dispatch('order.created', ['n' => 2])),
             'whoami' => posix_getpwuid(posix_geteuid())['name']]);
    """, database=db, user="nobody", script_dir=script_dir, ini={"woosync.endpoint": receiver.url}, timeout=30)
    assert res.returncode == 0, res.describe()
    out = res.json_lines()[-1]
    assert out["whoami"] == "nobody"
    d = out["dispatch"]
    assert d["ok"] is False, f"nobody could dispatch into a root-owned 0644 database: {d}"
    assert d["class"] == "WooSyncException", d
    msg = d["message"] or ""
    if dir_mode == 0o1777:
        # A directory everyone can write to is refused before its files are looked at: another
        # user could plant files there (see test_files.py).
        assert str(db) in msg and "writable by other users" in msg, msg
    else:
        assert "root" in msg, f"the error should name the file owner (root): {msg!r}"
    if dir_mode == 0o755:
        # the directory is root-owned 0755 too (nobody can't create the WAL files there):
        # naming the file or its directory is fine
        assert str(db.parent) in msg, f"the error should name the database (or its directory): {msg!r}"
    after = {f.name: _digest(f) for f in shared_dir.iterdir() if f.is_file()}
    assert after.get(db.name) == before[db.name], "the database file was modified"
    changed = [n for n in before if after.get(n) != before[n]]
    assert not changed, f"files changed by the refused process: {changed}"


def test_wal_stays_bounded_while_a_flood_is_dispatched_and_every_thread_waits(php, blackhole):
    """A tight dispatch loop with the CRM blackholed: every delivery thread hangs in an attempt, so no
    dispatch wakes the sender. It must still route and checkpoint what is stored, and the WAL be
    rewound near its 64 MB limit: 67-86 MB at most in 20 runs here, against 508 MB in these 60,000
    dispatches when such a sender cycled once a second."""
    ini = {"woosync.endpoint": blackhole.url, "woosync.timeout": "30", "woosync.retry_delays": "60",
           "woosync.concurrency": "2", "woosync.shutdown_grace": "0"}
    r = php.json("""
        $wal = ini_get('woosync.database') . '-wal';
        $data = ['sku' => 'SKU-' . str_repeat('x', 400), 'stock_quantity' => 7];
        $max = 0;
        for ($i = 0; $i < 60000; $i++) {
            woosync_dispatch('product.updated', $data, ['key' => "product:$i"]);
            if ($i % 250 == 0) { clearstatcache(); $max = max($max, (int)@filesize($wal)); }
        }
        clearstatcache();
        $s = woosync_status();
        out(['max' => max($max, (int)@filesize($wal)), 'pending' => $s['pending']]);
    """, ini, timeout=300)
    assert r["pending"] == 60000, r
    assert 0 < r["max"] <= 128 * 1024 * 1024, f"WAL reached {r['max'] / 1e6:.0f} MB"
