"""`make package` artifacts and the packaged configuration, without installing anything: the .deb
(built with packaging/build.sh from the tested .so, checked with dpkg-deb and lintian), the plugin
zip, the ini (every setting documented with the extension's real default, and working as a real
config when uncommented), the versions, the sender unit (systemd-analyze) and its start script.

Installing the package into the system is tests/test_system_install.py (run alone)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from conftest import make_secret
from packaging_support import (PACKAGING, ROOT, Php, build_packages, cargo_version, ensure_packages,
                               plugin_release_files, run, systemd_unit)

INI = PACKAGING / "woosync.ini"
UNIT = PACKAGING / "woosync-sender@.service"
SENDER = PACKAGING / "woosync-sender"


@pytest.fixture(scope="module")
def php_info() -> Php:
    return Php.detect()


@pytest.fixture(scope="module")
def artifacts(so, tmp_path_factory):
    ensure_packages("dpkg-dev", "zip")
    return build_packages(so, tmp_path_factory.mktemp("dist"))


def ini_defaults(so) -> dict:
    p = run(["php", "-n", f"-dextension={so}", "-r", 'echo json_encode(ini_get_all("woosync", false));'])
    return json.loads(p.stdout)


# ---- versions ------------------------------------------------------------------------------------

def _version_tree(dst: Path) -> None:
    for rel in ("Cargo.toml", "php/woosync/woosync.php", "php/woosync/readme.txt",
                "packaging/debian/changelog", "packaging/check-versions.sh"):
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst / rel)


def test_versions_agree_and_the_check_names_a_drift(tmp_path):
    version = cargo_version()
    p = run([PACKAGING / "check-versions.sh", ROOT])
    assert p.stdout.strip() == version

    # the same check on a copy whose plugin header and Debian changelog lag behind
    _version_tree(tmp_path)
    plugin = tmp_path / "php/woosync/woosync.php"
    plugin.write_text(re.sub(r"(\* Version:\s*)\S+", r"\g<1>0.0.9", plugin.read_text(), count=1))
    log = tmp_path / "packaging/debian/changelog"
    log.write_text(log.read_text().replace(f"woosync ({version.replace('-', '~')})", "woosync (0.0.8)", 1))
    p = run([tmp_path / "packaging/check-versions.sh", tmp_path], check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Version: header" in p.stderr and "'0.0.9'" in p.stderr, p.stderr
    assert "changelog" in p.stderr and "'0.0.8'" in p.stderr, p.stderr
    assert "WOOSYNC_PLUGIN_VERSION" not in p.stderr and "Stable tag" not in p.stderr, p.stderr


def test_packaging_refuses_a_so_of_another_version(so, tmp_path):
    """build.sh checks the .so it packages reports Cargo.toml's version (here: a tree that says
    another version)."""
    tree = tmp_path / "tree"
    _version_tree(tree)
    for rel in ("packaging",):
        shutil.copytree(ROOT / rel, tree / rel, dirs_exist_ok=True)
    shutil.copytree(ROOT / "php", tree / "php", dirs_exist_ok=True)
    shutil.copy2(ROOT / "README.md", tree / "README.md")
    for rel, old, new in (("Cargo.toml", r'^version = "[^"]+"', 'version = "9.9.9"'),
                          ("php/woosync/woosync.php", r"(\* Version:\s*)\S+", r"\g<1>9.9.9"),
                          ("php/woosync/woosync.php", r"('WOOSYNC_PLUGIN_VERSION',\s*)'[^']+'", r"\g<1>'9.9.9'"),
                          ("php/woosync/readme.txt", r"(Stable tag:\s*)\S+", r"\g<1>9.9.9")):
        f = tree / rel
        f.write_text(re.sub(old, new, f.read_text(), count=1, flags=re.M))
    log = tree / "packaging/debian/changelog"
    log.write_text(re.sub(r"^woosync \([^)]+\)", "woosync (9.9.9)", log.read_text(), count=1))
    p = run([tree / "packaging/build.sh", "--so", so, "--out", tmp_path / "out"], check=False)
    assert p.returncode != 0
    assert f"reports version '{cargo_version()}', Cargo.toml says '9.9.9'" in p.stderr, p.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# ---- the ini ---------------------------------------------------------------------------------------

def _documented(text: str) -> dict:
    """`;woosync.x = value` lines → {name: value without quotes}."""
    out = {}
    for m in re.finditer(r'^;(woosync\.[a-z_]+) = (.*)$', text, re.M):
        assert m.group(1) not in out, f"{m.group(1)} documented twice"
        out[m.group(1)] = m.group(2).strip().strip('"')
    return out


def test_ini_documents_every_setting_with_the_extensions_default(so):
    text = INI.read_text()
    defaults = ini_defaults(so)
    documented = _documented(text)
    assert sorted(documented) == sorted(defaults), "the ini must show exactly the extension's settings"
    for name, default in defaults.items():
        assert re.search(rf"^; {re.escape(name)}: \S", text, re.M), f"{name} has no explanation"
        if default != "":
            assert documented[name] == default, f"{name}: the ini shows {documented[name]!r}, the extension's default is {default!r}"
    # nothing is set: every setting is a commented line; the extension is loaded by name
    active = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith(";")]
    assert active == ["extension=woosync.so"], active
    assert re.search(r"^; priority=\d+$", text, re.M), "phpenmod reads the conf.d priority from '; priority=NN'"
    # the database paragraph: the plugin chooses, and the bare-PHP default is not durable
    database = text[text.index("; woosync.database:"):text.index(";woosync.database")]
    assert "plugin chooses a private path per site" in database
    assert "<temp dir>/woosync-<uid>/outbox.sqlite" in database and "NOT durable" in database and "reboot" in database


def test_ini_loads_cleanly_and_uncommented_it_is_a_working_config(so, tmp_path, receiver):
    """As conf.d would: the file alone loads the extension (by name from extension_dir) without a
    warning; then with every documented line uncommented (examples replaced by this test's outbox,
    receiver and secret) a dispatch arrives signed."""
    ext_dir = tmp_path / "ext"
    ext_dir.mkdir()
    shutil.copy2(so, ext_dir / "woosync.so")
    code = 'echo json_encode(["loaded" => extension_loaded("woosync"), "ini" => ini_get_all("woosync", false)]);'
    p = run(["php", "-n", "-c", INI, f"-dextension_dir={ext_dir}", "-d", "display_startup_errors=1",
             "-d", "error_reporting=-1", "-r", code])
    assert p.stderr == "" and "Warning" not in p.stdout, p.stdout + p.stderr
    got = json.loads(p.stdout)
    assert got["loaded"] and got["ini"] == ini_defaults(so)

    secret = make_secret()
    outbox = tmp_path / "db" / "outbox.sqlite"
    examples = {"woosync.database": str(outbox), "woosync.endpoint": receiver.url, "woosync.secret": secret,
                "woosync.source": "https://shop.example.test", "woosync.allow_networks": "127.0.0.1/32"}
    lines = []
    for line in INI.read_text().splitlines():
        m = re.match(r'^;(woosync\.[a-z_]+) = (.*)$', line)
        if m:
            value = examples.get(m.group(1))
            line = f'{m.group(1)} = "{value}"' if value is not None else line[1:]
        lines.append(line)
    live = tmp_path / "live.ini"
    live.write_text("\n".join(lines) + "\n")
    p = run(["php", "-n", "-c", live, f"-dextension_dir={ext_dir}", "-d", "error_reporting=-1", "-r",
             'echo woosync_dispatch("order.created", ["id" => 7]), "\\n"; var_dump(woosync_flush(20));'],
            timeout=60)
    event_id = p.stdout.split()[0]
    assert "bool(true)" in p.stdout and p.stderr == "", p.stdout + p.stderr
    req = receiver.wait_for(1, timeout=20)[0]
    assert req.json()["id"] == event_id and req.headers["X-WC-Webhook-Source"] == "https://shop.example.test"
    Webhook(secret).verify(req.body, dict(req.headers.lower_dict()))


# ---- the .deb ----------------------------------------------------------------------------------------

def test_deb_name_fields_and_dependencies(artifacts, php_info, so):
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    assert artifacts.deb.name == f"{php_info.package}_{artifacts.deb_version}_{arch}.deb"
    field = lambda name: run(["dpkg-deb", "-f", artifacts.deb, name]).stdout.strip()  # noqa: E731
    assert field("Package") == php_info.package
    assert field("Version") == cargo_version().replace("-", "~")
    assert field("Architecture") == arch
    depends = [d.strip() for d in field("Depends").split(",")]
    assert f"phpapi-{php_info.phpapi}" in depends, depends
    # dpkg-shlibdeps: the libraries the .so links (libc at least), with versions
    libc = [d for d in depends if re.fullmatch(r"libc6 \(>= [\d.]+\)", d)]
    assert libc, depends
    # packed relocations (build.rs) need glibc 2.36: a requirement dpkg-shlibdeps does not see
    if "GLIBC_ABI_DT_RELR" in run(["readelf", "-V", str(so)]).stdout:
        v = tuple(int(x) for x in re.search(r"\(>= ([\d.]+)\)", libc[0]).group(1).split(".")[:2])
        assert v >= (2, 36), libc
    assert field("Pre-Depends").startswith("php-common"), "php-maintscript-helper comes from php-common"
    # the named phpapi is what this PHP's packages provide
    prov = run(["apt-cache", "showpkg", f"phpapi-{php_info.phpapi}"]).stdout
    assert f"php{php_info.version}-cli" in prov.split("Reverse Provides:", 1)[1], prov


def test_deb_contents_conffiles_and_scripts(artifacts, php_info, tmp_path):
    listing = run(["dpkg-deb", "-c", artifacts.deb]).stdout
    paths = {line.split()[5].lstrip(".") for line in listing.splitlines()}
    ext = php_info.extension_dir
    expected = {f"{ext}/woosync.so", f"/etc/php/{php_info.version}/mods-available/woosync.ini",
                "/etc/default/woosync", "/lib/systemd/system/woosync-sender@.service",
                "/usr/libexec/woosync/woosync-sender",
                f"/usr/share/doc/{php_info.package}/README.md.gz", f"/usr/share/doc/{php_info.package}/changelog.gz",
                f"/usr/share/doc/{php_info.package}/copyright"}
    expected |= {f"/usr/share/woosync/wordpress-plugin/woosync/{rel}" for rel in plugin_release_files()}
    files = {p for p in paths if not p.endswith("/")}
    assert files == expected, (sorted(files - expected), sorted(expected - files))
    assert all(" root/root " in line for line in listing.splitlines()), listing

    ctrl = tmp_path / "control"
    run(["dpkg-deb", "-e", artifacts.deb, ctrl])
    assert sorted((ctrl / "conffiles").read_text().split()) == sorted(
        ["/etc/default/woosync", f"/etc/php/{php_info.version}/mods-available/woosync.ini"])
    for script in ("preinst", "prerm", "postinst", "postrm"):
        text = (ctrl / script).read_text()
        assert os.access(ctrl / script, os.X_OK) and "@" not in text.replace("woosync-sender@", ""), script
        run(["sh", "-n", ctrl / script])
    assert 'php_invoke enmod "$version" ALL "$name"' in (ctrl / "postinst").read_text()
    assert 'php_invoke dismod "$version" ALL "$name"' in (ctrl / "postrm").read_text()

    root = tmp_path / "root"
    run(["dpkg-deb", "-x", artifacts.deb, root])
    so = root / str(ext).lstrip("/") / "woosync.so"
    p = run(["php", "-n", f"-dextension={so}", "-r", 'echo phpversion("woosync");'])
    assert p.stdout == cargo_version()
    sections = run(["readelf", "-S", "-W", so]).stdout
    assert ".symtab" not in sections and ".debug_info" not in sections, "the packaged .so is stripped"
    assert (root / "etc/php" / php_info.version / "mods-available/woosync.ini").read_bytes() == INI.read_bytes()
    assert (root / "usr/libexec/woosync/woosync-sender").read_bytes() == SENDER.read_bytes()
    assert (root / "lib/systemd/system/woosync-sender@.service").read_bytes() == UNIT.read_bytes()
    assert (root / "etc/default/woosync").read_bytes() == (PACKAGING / "default").read_bytes()
    plugin = root / "usr/share/woosync/wordpress-plugin/woosync"
    for rel, content in plugin_release_files().items():
        assert (plugin / rel).read_bytes() == content, rel
    copyright_ = (root / "usr/share/doc" / php_info.package / "copyright").read_text()
    assert "Files: php/woosync/*" in copyright_ and re.search(r"^ rusqlite \S+: MIT$", copyright_, re.M), copyright_[:2000]


def test_deb_passes_lintian(artifacts, tmp_path):
    ensure_packages("lintian")
    # lintian does not want to run as root: a copy nobody can read, checked as nobody
    d = Path(tempfile.mkdtemp(prefix="woosync-lintian-", dir="/tmp"))
    try:
        os.chmod(d, 0o755)
        deb = d / artifacts.deb.name
        shutil.copy2(artifacts.deb, deb)
        os.chmod(deb, 0o644)
        p = run(["runuser", "-u", "nobody", "--", "lintian", "--fail-on", "warning", deb], check=False, timeout=300,
                cwd="/")
        assert p.returncode == 0 and not re.search(r"^[EW]: ", p.stdout, re.M), p.stdout + p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- the plugin zip ------------------------------------------------------------------------------------

def test_plugin_zip_holds_exactly_the_plugin_under_woosync(artifacts):
    version = cargo_version()
    assert artifacts.zip.name == f"woosync-wordpress-plugin-{version}.zip"
    with zipfile.ZipFile(artifacts.zip) as z:
        assert z.testzip() is None
        names = z.namelist()
        files = {n[len("woosync/"):]: z.read(n) for n in names if not n.endswith("/")}
        header = z.read("woosync/woosync.php").decode()
    assert all(n == "woosync/" or n.startswith("woosync/") for n in names), names
    expected = plugin_release_files()
    assert sorted(files) == sorted(expected)
    assert all(files[k] == expected[k] for k in expected)
    assert not any(re.search(r"(^|/)(tests?|\.[^/]*)(/|$)", n) for n in files), "tests or dotfiles in the zip"
    assert re.search(rf"^\s*\*\s*Version:\s*{re.escape(version)}\s*$", header, re.M)


# ---- the sender service --------------------------------------------------------------------------------

def test_sender_unit_settings():
    unit = systemd_unit(UNIT)
    svc = unit["Service"]
    assert svc["ExecStart"] == ["/usr/libexec/woosync/woosync-sender %I"]
    assert svc["EnvironmentFile"] == ["/etc/default/woosync"]
    assert svc["Restart"] == ["on-failure"] and svc["KillSignal"] == ["SIGTERM"]
    assert svc["RestartPreventExitStatus"] == ["78"], "configuration errors (exit 78) are not restarted"
    assert svc["NoNewPrivileges"] == ["yes"] and svc["ProtectSystem"] == ["full"]
    assert svc["PrivateTmp"] == ["false"], "the outbox may live in the temp dir"
    assert "ProtectHome" not in svc and "MemoryDenyWriteExecute" not in svc
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    env = {}
    for line in (PACKAGING / "default").read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            env[k] = v
    assert env == {"WOOSYNC_WP": "/usr/local/bin/wp", "WOOSYNC_USER": "www-data"}


def test_sender_unit_stop_timeout_is_above_every_valid_shutdown_grace(so, tmp_path):
    """TimeoutStopSec must exceed woosync.shutdown_grace; the extension itself says which graces
    are valid: its upper bound works, the unit's timeout is rejected."""
    stop = systemd_unit(UNIT)["Service"]["TimeoutStopSec"][0]
    assert stop.endswith("s")
    stop_s = float(stop[:-1])
    code = ('try { woosync_dispatch("a.b", []); echo "ok"; } '
            'catch (WooSyncException $e) { echo $e->getMessage(); }')
    graces = {}
    for grace in ("60", stop[:-1]):
        p = run(["php", "-n", f"-dextension={so}", f"-dwoosync.shutdown_grace={grace}",
                 f"-dwoosync.database={tmp_path / grace / 'o.sqlite'}", "-r", code], timeout=120)
        graces[grace] = p.stdout
    assert graces["60"] == "ok", graces
    m = re.search(r"use a number from 0 to ([\d.]+)", graces[stop[:-1]])
    assert m, graces
    assert stop_s > float(m.group(1)) + 10, f"TimeoutStopSec={stop} leaves no time after a {m.group(1)} s grace"


def test_sender_unit_verifies_with_systemd_analyze(tmp_path):
    """systemd-analyze verify on an instance (the unit's ExecStart pointed at this tree's start
    script, since the package is not installed here), and its hardening score."""
    ensure_packages("systemd")
    d = tmp_path / "units"
    d.mkdir()
    text = UNIT.read_text().replace("/usr/libexec/woosync/woosync-sender", str(SENDER))
    (d / UNIT.name).write_text(text)
    instance = d / "woosync-sender@var-www-shop.service"
    p = run(["systemd-analyze", "verify", instance], check=False, timeout=120)
    assert p.returncode == 0 and p.stdout + p.stderr == "", p.stdout + p.stderr
    p = run(["systemd-analyze", "security", "--offline=true", instance], timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", p.stdout)
    assert m, p.stdout[-2000:]
    assert float(m.group(1)) <= 5.0, p.stdout


# ---- the sender's start script ---------------------------------------------------------------------------

RECORDER = r"""#!/bin/sh
# Stand-in for `wp`: `wp woosync serve` is being written by others (issue 13). It records how
# woosync-sender started it: user, groups, capabilities, HOME, working directory, arguments.
echo "user=$(id -un) group=$(id -gn) groups=$(id -Gn | tr ' ' ,)"
echo "home=$HOME cwd=$PWD extra=${WOOSYNC_TEST_EXTRA:-}"
grep -E '^Cap(Inh|Prm|Eff|Amb):' /proc/self/status | tr -s '\t ' ' '
for a in "$@"; do echo "arg=$a"; done
"""


@pytest.fixture
def public_dir():
    """A directory under /tmp that www-data can traverse (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="woosync-sender-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _sender(site: str, env: dict) -> subprocess.CompletedProcess:
    full = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env}
    return subprocess.run([str(SENDER), site], capture_output=True, text=True, timeout=60, env=full, cwd="/")


@pytest.mark.skipif(os.geteuid() != 0, reason="the start script switches users: needs root")
def test_sender_script_runs_wp_serve_as_the_configured_user(public_dir):
    site = public_dir / "var www" / "shop-1"  # a space and a dash: what systemd-escape must carry
    site.mkdir(parents=True)
    (site / "wp-load.php").write_text("<?php\n")
    wp = public_dir / "wp"
    wp.write_text(RECORDER)
    os.chmod(wp, 0o755)
    instance = run(["systemd-escape", "--path", str(site)]).stdout.strip()
    assert run(["systemd-escape", "--unescape", "--path", instance]).stdout.strip() == str(site)
    p = _sender(str(site), {"WOOSYNC_WP": str(wp), "WOOSYNC_USER": "www-data", "WOOSYNC_TEST_EXTRA": "kept"})
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    www_home = run(["getent", "passwd", "www-data"]).stdout.split(":")[5]
    assert "user=www-data group=www-data" in out, out
    assert f"home={www_home} cwd={site} extra=kept" in out, out
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert f"{cap}: 0000000000000000" in out, out
    assert [l[4:] for l in out.splitlines() if l.startswith("arg=")] == [f"--path={site}", "woosync", "serve"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the start script switches users: needs root")
def test_sender_script_reports_configuration_errors_with_exit_78(public_dir):
    site = public_dir / "shop"
    site.mkdir()
    (site / "wp-load.php").write_text("<?php\n")
    private = public_dir / "private"
    private.mkdir(mode=0o700)
    (private / "wp-load.php").write_text("<?php\n")
    wp = public_dir / "wp"
    wp.write_text(RECORDER)
    os.chmod(wp, 0o755)
    not_exec = public_dir / "wp-not-executable"
    not_exec.write_text(RECORDER)
    good = {"WOOSYNC_WP": str(wp), "WOOSYNC_USER": "www-data"}
    cases = [
        (str(site), {"WOOSYNC_USER": "www-data"}, "WOOSYNC_WP is not set"),
        (str(site), {"WOOSYNC_WP": str(wp)}, "WOOSYNC_USER is not set"),
        (str(site), {**good, "WOOSYNC_USER": "no-such-user-woosync"}, "no-such-user-woosync: no such user"),
        (str(site), {**good, "WOOSYNC_USER": "root"}, "WOOSYNC_USER=root: run the sender as the web server's user"),
        (str(site), {**good, "WOOSYNC_WP": str(not_exec)}, "is not an executable file"),
        (str(site), {**good, "WOOSYNC_WP": str(public_dir / "missing")}, "is not an executable file"),
        ("var/www/shop", good, "is not an absolute path"),
        (str(public_dir), good, f"{public_dir} is not a WordPress directory readable by www-data"),
        (str(private), good, f"{private} is not a WordPress directory readable by www-data"),
    ]
    for path, env, message in cases:
        p = _sender(path, env)
        assert p.returncode == 78 and message in p.stderr and p.stdout == "", (path, env, p.returncode, p.stdout, p.stderr)


def test_make_install_asks_for_a_build_first(tmp_path):
    """`sudo make install` never runs cargo (as root); without a built .so it says what to do."""
    p = run(["make", "-C", ROOT, f"SO={tmp_path / 'libwoosync.so'}", "install"], check=False, timeout=60)
    assert p.returncode != 0 and "run 'make build' first (as your user), then 'sudo make install'" in p.stderr, \
        p.stdout + p.stderr
    assert "cargo" not in p.stdout + p.stderr
