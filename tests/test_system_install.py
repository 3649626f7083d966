"""woosync installed into this machine the ways the README describes: the .deb with apt-get, its
maintainer scripts (enabled for every PHP SAPI, an admin's phpdismod kept across reinstall and
upgrade, conffiles kept, purge leaves nothing), `make install` / `make uninstall` with a running
php-fpm reloaded, and the plugin zip installed with the real WP-CLI into a fresh WordPress, whose
site the packaged sender service then runs `wp woosync serve` for.

These tests change the system, so they run alone (`pytest -m system_install`, make test-system):
while woosync is enabled system-wide every other test's `-d extension=` would load it twice. They
refuse to run (skip) when woosync is already installed or enabled, and purge / uninstall in
`finally` blocks, then check that nothing is left."""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from chaos_support import Fpm
from conftest import system_woosync
from packaging_support import (PACKAGING, ROOT, Php, apt_install, apt_purge, build_packages, cargo_version,
                               enabled_links, ensure_packages, environment_file, escape_path, fcgi_get,
                               footprint, fpm_running, package_status, php_modules, pid_status,
                               plugin_release_files, run, systemd_unit, unescape_instance)

sys.path.insert(0, str(Path(__file__).resolve().parent / "wp"))
import wpsite  # noqa: E402

pytestmark = pytest.mark.system_install


@pytest.fixture(scope="session", autouse=True)
def php_system() -> Php:
    """The system PHP, checked to be free of woosync (autouse: before any other fixture)."""
    if os.geteuid() != 0:
        pytest.skip("these tests install packages into the system: run them as root")
    if not shutil.which("apt-get") or not shutil.which("phpenmod"):
        pytest.skip("these tests need Debian's apt-get and PHP packaging (phpenmod)")
    php = Php.detect()
    found = footprint(php) + system_woosync()
    if found:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        pytest.skip(f"woosync is already installed or enabled system-wide ({shown}): these tests install and "
                    "purge it; run them on a machine without it")
    return php


@pytest.fixture(scope="module")
def debs(so, tmp_path_factory):
    """The package as `make package` builds it, and two newer builds of it for upgrades."""
    ensure_packages("dpkg-dev", "zip", "php-fpm", "libfcgi-bin", "systemd")
    out = tmp_path_factory.mktemp("dist")
    return {name: build_packages(so, out / name, suffix)
            for name, suffix in (("base", ""), ("up1", "+test1"), ("up2", "+test2"))}


@contextlib.contextmanager
def installed(php: Php, deb: Path):
    """apt-get install the .deb; apt-get purge it on the way out, whatever happened. Debian's php-fpm
    trigger may (where no policy-rc.d forbids it) restart the system php-fpm: one that was not
    running before is stopped again."""
    fpm_before = fpm_running(php)
    try:
        apt_install(deb)
        yield
    finally:
        try:
            apt_purge(php.package)
        finally:
            if fpm_before is None and fpm_running(php) is not None:
                run(["service", php.fpm_service, "stop"], check=False, timeout=60)


def assert_nothing_left(php: Php) -> None:
    left = footprint(php)
    assert not left, f"left behind after removal: {left}"
    assert package_status(php.package) in ("", "unknown ok not-installed"), package_status(php.package)
    assert "woosync" not in php_modules()


def module_state(php: Php, sapi: str) -> tuple[int, str]:
    """phpquery's verdict for woosync in one SAPI: 0 enabled, 32 disabled by the admin, ..."""
    p = run(["phpquery", "-v", php.version, "-s", sapi, "-m", "woosync"], check=False)
    return p.returncode, p.stdout.strip()


def sapis(php: Php) -> list[str]:
    return run(["phpquery", "-S", "-v", php.version]).stdout.split()


DISPATCH_PHP = r"""<?php
header('Content-Type: application/json');
$out = ['loaded' => extension_loaded('woosync'), 'pid' => getmypid(),
        'scanned' => array_map('trim', explode(',', (string) php_ini_scanned_files()))];
if ($out['loaded'] && isset($_GET['db'])) {
    ini_set('woosync.database', $_GET['db']);
    ini_set('woosync.endpoint', $_GET['url']);
    $out['id'] = woosync_dispatch('order.created', ['via' => php_sapi_name()], ['key' => 'order:1']);
    $out['flushed'] = woosync_flush(15);
}
echo json_encode($out);
"""


def fpm_probe(sock: Path, script: Path, loaded: bool, query: str = "", timeout: float = 30) -> dict:
    """GET the probe script until php-fpm answers with woosync loaded (or not) as expected: a
    reload re-executes the master, whose socket is briefly gone. Fails with the last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = json.loads(fcgi_get(sock, script, query if loaded else ""))
            if last["loaded"] is loaded:
                return last
        except (AssertionError, ValueError, subprocess.TimeoutExpired) as e:
            last = repr(e)
        time.sleep(0.2)
    pytest.fail(f"php-fpm did not answer with woosync loaded={loaded} within {timeout}s: {last}")


def public_tempdir(prefix: str) -> Path:
    """A directory under /tmp that www-data can traverse (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    return d


# ---- the package -----------------------------------------------------------------------------------

def test_deb_enables_every_sapi_cli_and_fpm_deliver_and_purge_leaves_nothing(php_system, debs, receiver, tmp_path):
    php = php_system
    deb = debs["base"]
    with installed(php, deb.deb):
        assert package_status(php.package) == "install ok installed"
        links = enabled_links(php)
        assert sorted(links) == sorted(sapis(php)) and {"cli", "fpm"} <= set(links), links
        for sapi, link in links.items():
            assert os.readlink(link) == f"/etc/php/{php.version}/mods-available/woosync.ini", link
            assert module_state(php, sapi) == (0, f"woosync (Enabled for {sapi} by maintainer script)")
        assert "woosync" in php_modules()
        ri = run(["php", "--ri", "woosync"]).stdout
        assert f"Version => {cargo_version()}" in ri, ri

        # CLI: no -d extension=, only what the package enabled
        outbox = tmp_path / "cli" / "outbox.sqlite"
        p = run(["php", "-d", f'woosync.database="{outbox}"', "-d", f'woosync.endpoint="{receiver.url}"',
                 "-d", 'woosync.allow_networks="127.0.0.1/32"', "-r",
                 'echo woosync_dispatch("order.created", ["via" => "cli"]), " "; var_dump(woosync_flush(15));'],
                timeout=60)
        cli_id = p.stdout.split()[0]
        assert "bool(true)" in p.stdout and p.stderr == "", p.stdout + p.stderr
        assert "Module \"woosync\" is already loaded" not in p.stdout + p.stderr

        # a private php-fpm master that loads only the system fpm conf.d (no -d extension=)
        fpm = Fpm(tmp_path / "fpm", None, {})
        (fpm.docroot / "dispatch.php").write_text(DISPATCH_PHP)
        try:
            fpm.start()
            query = f"db={tmp_path / 'fpm-outbox' / 'outbox.sqlite'}&url={receiver.url}"
            body = json.loads(fcgi_get(fpm.sock, fpm.docroot / "dispatch.php", query))
            assert body["loaded"] is True, body
            assert f"/etc/php/{php.version}/fpm/conf.d/20-woosync.ini" in body["scanned"], body["scanned"]
            assert body["flushed"] is True, body
        finally:
            fpm.stop()
        complaints = [l for l in fpm.log_text().splitlines()
                      if "woosync" in l.lower() and re.search(r"warning|error|already loaded", l, re.I)]
        assert not complaints, fpm.log_text()

        got = {r.json()["id"]: r.json()["data"]["via"] for r in receiver.wait_for(2, timeout=20)}
        assert got == {cli_id: "cli", body["id"]: "fpm-fcgi"}, got
    assert_nothing_left(php)


def test_admin_disable_survives_reinstall_and_upgrades_conffile_edits_are_kept(php_system, debs):
    php = php_system
    ini = php.etc / "mods-available" / "woosync.ini"
    defaults = Path("/etc/default/woosync")
    with installed(php, debs["base"].deb):
        # the admin edits both conffiles
        ini.write_text(ini.read_text() + '\nwoosync.source = "https://edited.example.test"\n')
        defaults.write_text(defaults.read_text().replace("WOOSYNC_WP=/usr/local/bin/wp", "WOOSYNC_WP=/opt/wp-cli/wp"))

        # an ordinary upgrade keeps the module enabled, and the edits
        apt_install(debs["up1"].deb)
        assert run(["dpkg-query", "-W", "-f=${Version}", php.package]).stdout == debs["up1"].deb_version
        assert sorted(enabled_links(php)) == sorted(sapis(php))
        p = run(["php", "-r", 'echo ini_get("woosync.source");'])
        assert p.stdout == "https://edited.example.test", p.stdout + p.stderr

        # the admin disables it everywhere
        run(["phpdismod", "woosync"])
        assert enabled_links(php) == {}
        for sapi in sapis(php):
            assert module_state(php, sapi)[0] == 32, module_state(php, sapi)

        # reinstalling the same version and upgrading keep it disabled
        apt_install("--reinstall", debs["up1"].deb)
        assert enabled_links(php) == {} and "woosync" not in php_modules()
        apt_install(debs["up2"].deb)
        assert run(["dpkg-query", "-W", "-f=${Version}", php.package]).stdout == debs["up2"].deb_version
        assert enabled_links(php) == {} and "woosync" not in php_modules()
        for sapi in sapis(php):
            assert module_state(php, sapi) == (32, f"No module matches woosync (Disabled for {sapi} by local administrator)")

        # the edits survived every step, with no .dpkg-dist / .dpkg-new left around
        assert 'woosync.source = "https://edited.example.test"' in ini.read_text()
        assert "WOOSYNC_WP=/opt/wp-cli/wp" in defaults.read_text()
        assert not list(ini.parent.glob("woosync.ini.*")) and not list(defaults.parent.glob("woosync.*"))

        # and the admin's phpenmod brings it back
        run(["phpenmod", "woosync"])
        assert "woosync" in php_modules()
    assert_nothing_left(php)


# ---- make install / make uninstall -------------------------------------------------------------------

def test_make_install_and_uninstall_round_trip_reloads_running_fpm(php_system, so, receiver):
    php = php_system
    ensure_packages("php-fpm", "libfcgi-bin")
    sock = Path(f"/run/php/php{php.version}-fpm.sock")
    master = fpm_running(php)
    started = master is None
    if started:
        run(["service", php.fpm_service, "start"], timeout=60)
        master = fpm_running(php)
        assert master, "the system php-fpm did not start"
    www = public_tempdir("woosync-make-install-")
    outdir = www / "outbox"
    outdir.mkdir(mode=0o700)
    shutil.chown(outdir, "www-data", "www-data")
    (www / "dispatch.php").write_text(DISPATCH_PHP)
    os.chmod(www / "dispatch.php", 0o644)
    query = f"db={outdir / 'outbox.sqlite'}&url={receiver.url}"
    make = ["make", "-C", ROOT, f"SO={so}"]
    # The test receiver is on 127.0.0.1, which the destination policy refuses unless allowed (a
    # system-level setting): a conf.d file of the test's own for the system php-fpm, read at the
    # reload `make install` does, removed before `make uninstall` reloads again.
    allow = php.etc / "fpm" / "conf.d" / "99-test-allow-loopback-receiver.ini"
    try:
        allow.write_text("woosync.allow_networks = 127.0.0.1/32\n")
        fpm_probe(sock, www / "dispatch.php", loaded=False)

        p = run(make + ["install"], timeout=300)
        assert f"reloaded {php.fpm_service}" in p.stdout, p.stdout
        assert (php.extension_dir / "woosync.so").is_file()
        assert (php.etc / "mods-available/woosync.ini").read_bytes() == (PACKAGING / "woosync.ini").read_bytes()
        assert sorted(enabled_links(php)) == ["cli", "fpm"], enabled_links(php)
        assert "woosync" in php_modules()
        # the running php-fpm was reloaded: its new workers load woosync and deliver
        body = fpm_probe(sock, www / "dispatch.php", loaded=True, query=query)
        assert body["flushed"] is True, body
        assert [r.json()["id"] for r in receiver.wait_for(1, timeout=20)] == [body["id"]]

        # make install again over an edited ini keeps the edit and puts the new default next to it
        ini = php.etc / "mods-available/woosync.ini"
        ini.write_text(ini.read_text() + "woosync.timeout = 9\n")
        p = run(make + ["install"], timeout=300)
        assert "kept your edited" in p.stdout and "woosync.timeout = 9" in ini.read_text()
        assert Path(f"{ini}.dist").read_bytes() == (PACKAGING / "woosync.ini").read_bytes()
        assert run(["php", "-r", 'echo ini_get("woosync.timeout");']).stdout == "9"

        allow.unlink()
        p = run(make + ["uninstall"], timeout=300)
        assert f"reloaded {php.fpm_service}" in p.stdout, p.stdout
        assert_nothing_left(php)
        fpm_probe(sock, www / "dispatch.php", loaded=False)
        assert fpm_running(php), "php-fpm is still running after the reloads"
    finally:
        allow.unlink(missing_ok=True)
        if footprint(php):
            run([PACKAGING / "install.sh", "uninstall"], check=False, timeout=300)
        if started:
            run(["service", php.fpm_service, "stop"], check=False, timeout=60)
        shutil.rmtree(www, ignore_errors=True)


def test_make_install_refuses_files_the_package_owns(php_system, debs, so):
    php = php_system
    with installed(php, debs["base"].deb):
        before = (php.extension_dir / "woosync.so").read_bytes()
        for target in ("install", "uninstall"):
            p = run(["make", "-C", ROOT, f"SO={so}", target], check=False, timeout=300)
            assert p.returncode != 0 and f"belongs to the {php.package} package" in p.stderr, p.stdout + p.stderr
        assert (php.extension_dir / "woosync.so").read_bytes() == before
        assert sorted(enabled_links(php)) == sorted(sapis(php))
    assert_nothing_left(php)


# ---- the plugin zip and the sender service on a real WordPress ----------------------------------------

WP_CONFIG = """<?php
define('DB_NAME', 'shop');
define('DB_USER', 'wp');
define('DB_PASSWORD', '{password}');
define('DB_HOST', '127.0.0.1:{port}');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
{salts}
$table_prefix = 'wp_';
define('WP_DEBUG', true);
define('WP_DEBUG_DISPLAY', false);
define('WP_DEBUG_LOG', '{debug_log}');
define('DISABLE_WP_CRON', true);
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('FS_METHOD', 'direct');
if ( ! defined( 'ABSPATH' ) ) {{ define( 'ABSPATH', __DIR__ . '/' ); }}
require_once ABSPATH . 'wp-settings.php';
"""


@pytest.fixture(scope="module")
def realwp() -> Path:
    """The real WordPress 7.0.4 + WP-CLI 2.12.0 (../shared/realwp, see its README)."""
    unpack = ROOT.parent / "shared" / "realwp" / "unpack.sh"
    if not unpack.is_file():
        pytest.fail(f"{unpack} is missing: the real WordPress/WP-CLI tarball is needed", pytrace=False)
    dest = public_tempdir("woosync-realwp-")
    try:
        run(["bash", unpack, dest], timeout=600)
        for d, _, files in os.walk(dest):  # readable by www-data, who runs WP-CLI below
            os.chmod(d, 0o755)
        yield dest / "realwp"
    finally:
        shutil.rmtree(dest, ignore_errors=True)


class Wp:
    """The real WP-CLI, run as www-data (the web user owns wp-content, as on a real site)."""

    def __init__(self, launcher: Path, site: Path, cache: Path):
        self.launcher, self.site, self.cache = launcher, site, cache

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, HOME=str(self.cache), WP_CLI_CACHE_DIR=str(self.cache / "cache"),
                   WP_CLI_CONFIG_PATH=str(self.cache / "config.yml"))
        return run(["runuser", "-u", "www-data", "--", self.launcher, f"--path={self.site}", *args],
                   timeout=timeout, check=check, env=env, cwd=str(self.site))


class Site:
    def __init__(self, base: Path, root: Path, wp: Wp, debug_log: Path, zip_: Path):
        self.base, self.root, self.wp, self.debug_log, self.zip = base, root, wp, debug_log, zip_

    def install_plugin(self) -> subprocess.CompletedProcess:
        return self.wp("plugin", "install", str(self.zip), "--activate")

    def plugin_active(self) -> bool:
        return self.wp("plugin", "is-active", "woosync", check=False).returncode == 0

    def plugin_log_lines(self) -> list:
        """WordPress debug-log lines raised from the plugin (the temp paths here contain
        "woosync-": look for the plugin's directory and its names)."""
        return [l for l in self.debug_log.read_text(errors="replace").splitlines()
                if re.search(r"plugins/woosync/|woosync_|Woosync\\|'woosync'", l)]


@pytest.fixture(scope="class")
def site(php_system, debs, realwp):
    php = php_system
    ensure_packages("mariadb-server", "php-mysql")
    base = public_tempdir("woosync-wp-")
    root = base / "www" / "shop-1"  # a dash: the unit instance must carry it
    db = wpsite.MariaDB(base)
    try:
        db.start()
        db.create_database("shop")
        shutil.copytree(realwp / "wordpress", root)
        debug_log = base / "debug.log"
        salts = "\n".join(f"define('{k}', '{os.urandom(24).hex()}');" for k in (
            "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT", "SECURE_AUTH_SALT",
            "LOGGED_IN_SALT", "NONCE_SALT"))
        (root / "wp-config.php").write_text(WP_CONFIG.format(password=db.password, port=db.port, salts=salts,
                                                             debug_log=debug_log))
        cache = base / "wp-cli"
        cache.mkdir()
        debug_log.touch()
        for path in (root / "wp-content", cache, debug_log):
            run(["chown", "-R", "www-data:www-data", path])
        zip_ = base / debs["base"].zip.name  # where www-data can read it
        shutil.copy2(debs["base"].zip, zip_)
        os.chmod(zip_, 0o644)
        wp = Wp(realwp / "wp-cli" / "wp", root, cache)
        with installed(php, debs["base"].deb):
            wp("core", "install", "--url=http://127.0.0.1:9", "--title=Shop", "--admin_user=admin",
               f"--admin_password={os.urandom(8).hex()}", "--admin_email=admin@example.test", "--skip-email")
            yield Site(base, root, wp, debug_log, zip_)
    finally:
        db.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert_nothing_left(php)


class TestWordPress:
    """A fresh real WordPress 7.0.4 (wp core install with the real WP-CLI, a private MariaDB) on a
    machine with the package installed: the plugin zip, and the packaged sender service for it."""

    def test_plugin_zip_installs_and_activates_with_the_real_wp_cli(self, site):
        p = site.install_plugin()
        assert "Plugin installed successfully" in p.stdout and "activated" in p.stdout.lower(), p.stdout + p.stderr
        plugins = {p["name"]: p for p in json.loads(site.wp("plugin", "list", "--format=json").stdout)}
        assert plugins["woosync"]["status"] == "active" and plugins["woosync"]["version"] == cargo_version(), plugins
        installed_dir = site.root / "wp-content" / "plugins" / "woosync"
        on_disk = {str(f.relative_to(installed_dir)): f.read_bytes() for f in installed_dir.rglob("*") if f.is_file()}
        assert on_disk == plugin_release_files()
        # the packaged extension is loaded in WP-CLI, and the plugin's command talks to it
        p = site.wp("eval", 'echo json_encode(extension_loaded("woosync"));')
        assert p.stdout.strip().splitlines()[-1] == "true", p.stdout + p.stderr
        status = json.loads(site.wp("woosync", "status", "--format=json").stdout)
        assert status["pending"] == 0 and status["dead"] == 0, status
        assert not site.plugin_log_lines(), site.debug_log.read_text()[-4000:]

    def test_sender_unit_runs_wp_woosync_serve_for_the_site_as_the_web_user(self, site, realwp):
        """What systemd does for woosync-sender@<site>.service, short of being systemd: verify
        the installed unit instance, read its EnvironmentFile (pointed at the real WP-CLI here), run
        its ExecStart with %I for the instance, stop it with its KillSignal within TimeoutStopSec."""
        if not site.plugin_active():
            site.install_plugin()
        launcher = realwp / "wp-cli" / "wp"
        instance = escape_path(str(site.root))
        unit_file = Path("/lib/systemd/system/woosync-sender@.service")
        p = run(["systemd-analyze", "verify", f"woosync-sender@{instance}.service"], check=False, timeout=120)
        assert p.returncode == 0 and p.stdout + p.stderr == "", p.stdout + p.stderr

        defaults = Path("/etc/default/woosync")
        defaults.write_text(defaults.read_text().replace("WOOSYNC_WP=/usr/local/bin/wp", f"WOOSYNC_WP={launcher}")
                            + f"WP_CLI_CACHE_DIR={site.wp.cache / 'cache'}\n")
        unit = systemd_unit(unit_file)["Service"]
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        for f in unit["EnvironmentFile"]:
            env.update(environment_file(Path(f)))
        argv = unit["ExecStart"][0].replace("%I", unescape_instance(instance)).split(" ", 1)
        assert argv[1] == str(site.root)
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, cwd="/")
        try:
            try:
                out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                out = err = None
            if out is not None:
                # it ended by itself: acceptable only while `wp woosync serve` does not exist yet
                assert proc.returncode != 78, f"configuration error: {err}"
                assert "'serve' is not a registered subcommand of 'woosync'" in err, (proc.returncode, out, err)
                pytest.skip("`wp woosync serve` is not implemented yet (issue 13, other engineers): the unit's "
                            "command reached the site's real `wp woosync`, which has no `serve` yet")
            status = pid_status(proc.pid)
            uid = pwd.getpwnam("www-data").pw_uid
            assert status["Uid"].split()[:2] == [str(uid), str(uid)], status["Uid"]
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            assert f"--path={site.root}".encode() in cmdline and cmdline[-3:-1] == [b"woosync", b"serve"], cmdline
            os.killpg(proc.pid, getattr(signal, unit["KillSignal"][0]))
            proc.communicate(timeout=float(unit["TimeoutStopSec"][0].rstrip("s")))
            assert proc.returncode == 0, proc.returncode
            assert not site.plugin_log_lines(), site.debug_log.read_text()[-4000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
