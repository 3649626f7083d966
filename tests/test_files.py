"""The outbox's files against other local users (real users through runuser), and paths that are
refused: the default lives in a per-user private directory; planted symlinks are never followed,
shared directories and other users' files are refused with an error naming the problem; nothing
is truncated; NUL, non-UTF-8, blank and relative paths, open_basedir; the old default location."""
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

VICTIM = "www-data"     # the web server's user
ATTACKER = "nobody"     # another local user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other local users")


def uid(user: str) -> int:
    import pwd
    return pwd.getpwnam(user).pw_uid


def as_user(user: str, *cmd: str) -> None:
    subprocess.run(["runuser", "-u", user, "--", *cmd], check=True, timeout=30)


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def shared_tmp():
    """A world-writable sticky directory like /tmp without PrivateTmp, used as TMPDIR."""
    d = Path(tempfile.mkdtemp(prefix="woosync-sharedtmp-"))
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def victim_files(tmp_path):
    """A readable place for the victim's scripts, and a file the victim owns (its wp-config.php)."""
    home = Path(tempfile.mkdtemp(prefix="woosync-victim-"))
    os.chmod(home, 0o755)
    scripts = home / "scripts"
    scripts.mkdir()
    os.chmod(scripts, 0o755)
    precious = home / "wp-config.php"
    precious.write_text("<?php define('DB_PASSWORD', 'precious');\n")
    shutil.chown(precious, VICTIM, VICTIM)
    shutil.chown(home, VICTIM, VICTIM)
    yield scripts, precious
    shutil.rmtree(home, ignore_errors=True)


def run_as_victim(php, code, tmpdir, scripts, database=None):
    res = php.run(code, database=database, user=VICTIM, script_dir=scripts, env={"TMPDIR": str(tmpdir)}, timeout=30)
    assert res.returncode == 0, res.describe()
    return res.json_lines()[-1]


DISPATCH = "out(attempt(fn() => woosync_dispatch('order.created', ['email' => 'a@example.test'])));"


def test_planted_lock_symlink_in_a_shared_tmp_never_truncates_a_victim_file(php, shared_tmp, victim_files):
    scripts, precious = victim_files
    before = digest(precious)
    # Another user prepares the victim's default directory (old and new names) before it exists.
    for name in ("woosync", f"woosync-{uid(VICTIM)}"):
        d = shared_tmp / name
        as_user(ATTACKER, "mkdir", "-m", "0777", str(d))
        as_user(ATTACKER, "chmod", "0777", str(d))
        as_user(ATTACKER, "ln", "-s", str(precious), str(d / "outbox.sqlite.lock"))
    r = run_as_victim(php, DISPATCH, shared_tmp, scripts)
    assert r["ok"] is False and r["class"] == "WooSyncException", r
    msg = r["message"]
    assert f"woosync-{uid(VICTIM)}" in msg and ("belongs to nobody" in msg or "writable by other users" in msg), msg
    assert digest(precious) == before, "the victim's file was changed"


def test_planted_lock_symlink_in_a_private_dir_is_not_followed(php, tmp_path, victim_files):
    scripts, precious = victim_files
    before = digest(precious)
    d = precious.parent / "private"
    d.mkdir(mode=0o700)
    shutil.chown(d, VICTIM, VICTIM)
    os.symlink(precious, d / "outbox.sqlite.lock")
    r = run_as_victim(php, DISPATCH, tmp_path, scripts, database=d / "outbox.sqlite")
    assert r["ok"] is False and "symbolic link" in r["message"], r
    assert digest(precious) == before


def test_outbox_pre_created_by_another_user_is_refused(php, shared_tmp, victim_files):
    """Another user pre-creates the outbox 0666 in a directory they own: reading every payload."""
    scripts, _ = victim_files
    d = shared_tmp / f"woosync-{uid(VICTIM)}"
    as_user(ATTACKER, "mkdir", "-m", "0755", str(d))
    as_user(ATTACKER, "sh", "-c", f"umask 0; : > {d}/outbox.sqlite; chmod 0666 {d}/outbox.sqlite")
    r = run_as_victim(php, DISPATCH, shared_tmp, scripts)
    assert r["ok"] is False and "belongs to nobody" in r["message"], r
    assert (d / "outbox.sqlite").stat().st_size == 0, "the victim wrote into the attacker's file"


def test_outbox_readable_by_others_is_refused(php, tmp_path):
    db = tmp_path / "db" / "outbox.sqlite"
    php.json("out(woosync_dispatch('a.b', []));", database=db)
    os.chmod(db, 0o644)
    r = php.json(DISPATCH, database=db)
    assert r["ok"] is False and "readable by other users" in r["message"], r


def test_default_location_is_private_and_per_user(php, shared_tmp, victim_files):
    scripts, _ = victim_files
    r = run_as_victim(php, "out([woosync_dispatch('a.b', []), woosync_status()['database']]);", shared_tmp, scripts)
    path = Path(r[1])
    assert path == shared_tmp / f"woosync-{uid(VICTIM)}" / "outbox.sqlite"
    for f in [path.parent, path, Path(f"{path}.lock")]:
        st = f.stat()
        assert st.st_uid == uid(VICTIM), f
        assert stat.S_IMODE(st.st_mode) == (0o700 if f.is_dir() else 0o600), (f, oct(st.st_mode))


def test_lock_file_is_never_truncated(php, tmp_path):
    db = tmp_path / "lockdb" / "outbox.sqlite"
    db.parent.mkdir(mode=0o700)
    lock = Path(f"{db}.lock")
    lock.write_text("kept\n")
    os.chmod(lock, 0o600)
    php.json("woosync_dispatch('a.b', []); out(woosync_status()['worker']);", database=db)
    assert lock.read_text() == "kept\n"


@pytest.mark.parametrize("expr,words", [
    ("'relative/outbox.sqlite'", ["relative"]),
    ("'   '", ["blanks"]),
    ("\"/tmp/a\\0b.sqlite\"", ["nul"]),
    ("\"/tmp/\\xff.sqlite\"", ["utf-8"]),
    ("'/tmp/site-{blog_id}.sqlite'", ["blog_id"]),
])
def test_unusable_database_paths_raise(php, expr, words):
    r = php.json(f"""
        ini_set('woosync.database', {expr});
        out(['dispatch' => attempt(fn() => woosync_dispatch('a.b', [])), 'status' => attempt(fn() => woosync_status())]);
    """, database=None)
    for name, res in r.items():
        assert res["ok"] is False and res["class"] == "WooSyncException", (name, res)
        assert any(w in res["message"].lower() for w in words), (name, res["message"])


def test_open_basedir_is_honoured(php, tmp_path):
    inside = tmp_path / "allowed"
    inside.mkdir()
    outside = tmp_path / "elsewhere" / "outbox.sqlite"
    ini = {"open_basedir": f"{inside}:{php.workdir}"}
    r = php.json(f"""
        $out = attempt(fn() => woosync_dispatch('a.b', []));
        ini_set('woosync.database', '{inside}/outbox.sqlite');
        out(['outside' => $out, 'inside' => attempt(fn() => woosync_dispatch('a.b', []))]);
    """, database=outside, ini=ini)
    assert r["outside"]["ok"] is False and "open_basedir" in r["outside"]["message"], r
    assert r["inside"]["ok"] is True, r
    assert not outside.exists()


def test_outbox_at_the_old_default_location_is_moved_when_safe(php, tmp_path):
    tmp = tmp_path / "t"
    tmp.mkdir()
    old = tmp / "woosync" / "outbox.sqlite"
    old.parent.mkdir(mode=0o700)
    first = php.json("out(woosync_dispatch('order.created', ['n' => 1]));", database=old)
    r = php.json("""
        $id = woosync_dispatch('order.created', ['n' => 2]);
        $s = woosync_status();
        out(['db' => $s['database'], 'total' => total_events($s), 'notices' => $s['notices'],
             'old' => woosync_event('%s') !== null]);
    """ % first, database=None, env={"TMPDIR": str(tmp)})
    assert r["db"] == str(tmp / f"woosync-{os.geteuid()}" / "outbox.sqlite")
    assert r["total"] == 2 and r["old"] is True, r
    assert r["notices"] == [], r
    assert not old.exists()


def test_outbox_at_the_old_default_location_is_reported_when_unsafe(php, tmp_path):
    tmp = tmp_path / "t"
    tmp.mkdir()
    old = tmp / "woosync" / "outbox.sqlite"
    old.parent.mkdir(mode=0o700)
    php.json("out(woosync_dispatch('order.created', ['n' => 1]));", database=old)
    os.chmod(old.parent, 0o777)  # anyone could have written it: do not take it
    r = php.json("out(woosync_status());", database=None, env={"TMPDIR": str(tmp)})
    assert old.exists()
    [notice] = r["notices"]
    assert str(old) in notice and "writable by other users" in notice, notice
    ri = php.run("(new ReflectionExtension('woosync'))->info();", database=None, env={"TMPDIR": str(tmp)}).stdout
    assert "old default location" in ri and str(old) in ri, ri
