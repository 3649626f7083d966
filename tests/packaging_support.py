"""Helpers for the packaging tests: building the .deb and the plugin zip with packaging/build.sh,
apt-get install/purge, what woosync leaves on the system, FastCGI requests to any php-fpm socket.
Every subprocess call has a timeout."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def run(args, timeout: float = 300, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                       errors="replace", **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {p.returncode}\n--- stdout\n{p.stdout[-4000:]}"
                             f"\n--- stderr\n{p.stderr[-4000:]}")
    return p


def ensure_packages(*packages: str) -> None:
    """apt-get install the Debian packages that are missing (as wpsite.ensure_packages does)."""
    missing = [p for p in packages
               if "install ok installed" not in run(["dpkg-query", "-W", "-f=${Status}", p], check=False).stdout]
    if not missing:
        return
    r = run(["apt-get", "install", "-y", "--no-install-recommends", *missing], timeout=1200, check=False, env=APT_ENV)
    if r.returncode != 0:
        run(["apt-get", "update"], timeout=600, env=APT_ENV)
        run(["apt-get", "install", "-y", "--no-install-recommends", *missing], timeout=1200, env=APT_ENV)


def cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)


@dataclass
class Php:
    """The system PHP the packages are built for (php-config)."""
    version: str  # MAJOR.MINOR
    phpapi: str
    extension_dir: Path
    binary: str

    @classmethod
    def detect(cls) -> "Php":
        full = run(["php-config", "--version"]).stdout.strip()
        return cls(".".join(full.split(".")[:2]), run(["php-config", "--phpapi"]).stdout.strip(),
                   Path(run(["php-config", "--extension-dir"]).stdout.strip()),
                   run(["php-config", "--php-binary"]).stdout.strip())

    @property
    def package(self) -> str:
        return f"woosync-php{self.version}"

    @property
    def etc(self) -> Path:
        return Path("/etc/php") / self.version

    @property
    def fpm_service(self) -> str:
        return f"php{self.version}-fpm"


@dataclass
class Artifacts:
    deb: Path
    zip: Path
    deb_version: str


def build_packages(so: Path, out: Path, version_suffix: str = "") -> Artifacts:
    """packaging/build.sh (what `make package` runs) into `out`."""
    args = [PACKAGING / "build.sh", "--so", so, "--out", out]
    if version_suffix:
        args += ["--version-suffix", version_suffix]
    p = run(args, timeout=600)
    lines = p.stdout.split()
    deb = Path(next(l for l in lines if l.endswith(".deb")))
    zip_ = Path(next(l for l in lines if l.endswith(".zip")))
    assert deb.is_file() and zip_.is_file(), p.stdout
    return Artifacts(deb, zip_, cargo_version().replace("-", "~") + version_suffix)


# ---- the system ----------------------------------------------------------------------------------

def package_status(package: str) -> str:
    """dpkg's status of the package ('' when dpkg has never heard of it)."""
    p = run(["dpkg-query", "-W", "-f=${Status}", package], check=False)
    return p.stdout.strip() if p.returncode == 0 else ""


def footprint(php: Php) -> list[str]:
    """Everything of woosync's on the system: the extension, its ini and conf.d links, php-helper's
    state for the module, the package's files. Empty when nothing is installed or enabled."""
    found = []
    candidates = [php.extension_dir / "woosync.so", php.etc / "mods-available" / "woosync.ini",
                  Path("/etc/default/woosync"), Path("/usr/share/woosync"), Path("/usr/libexec/woosync"),
                  Path("/lib/systemd/system/woosync-sender@.service"),
                  Path(f"/usr/share/doc/{php.package}")]
    found += [str(p) for p in candidates if p.exists() or p.is_symlink()]
    found += sorted(glob.glob(str(php.etc / "mods-available" / "woosync.ini*")))
    found += sorted(glob.glob(str(php.etc / "*" / "conf.d" / "*woosync*")))
    found += sorted(glob.glob(f"/var/lib/php/modules/{php.version}/*/*/woosync"))
    found += sorted(glob.glob(f"/var/lib/php/modules/{php.version}/registry/woosync"))
    found += sorted(glob.glob("/etc/systemd/system/*/woosync-sender@*"))
    status = package_status(php.package)
    if status and "not-installed" not in status:
        found.append(f"dpkg: {php.package} {status}")
    return sorted(set(found))


def enabled_links(php: Php) -> dict[str, str]:
    """SAPI → conf.d link for woosync."""
    out = {}
    for link in glob.glob(str(php.etc / "*" / "conf.d" / "*woosync*")):
        out[Path(link).parent.parent.name] = link
    return out


def php_modules() -> list[str]:
    """`php -m` of the system CLI, no extension on the command line."""
    return run(["php", "-m"], timeout=60).stdout.split()


def apt_install(*args) -> subprocess.CompletedProcess:
    return run(["apt-get", "install", "-y", *args], timeout=600, env=APT_ENV)


def apt_purge(package: str) -> None:
    """apt-get purge; if that fails, dpkg --purge so a failed test never leaves the package behind."""
    if package_status(package) == "":
        return
    p = run(["apt-get", "purge", "-y", package], timeout=600, check=False, env=APT_ENV)
    if p.returncode != 0:
        run(["dpkg", "--purge", package], timeout=600, check=False, env=APT_ENV)
        raise AssertionError(f"apt-get purge {package} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")


# ---- FastCGI ----------------------------------------------------------------------------------------

def fcgi_get(sock: Path, script: Path, query: str = "", timeout: float = 30) -> str:
    """One FastCGI GET of `script` through `sock` with cgi-fcgi (libfcgi-bin); returns the body."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SCRIPT_FILENAME": str(script),
        "SCRIPT_NAME": "/" + script.name,
        "REQUEST_URI": "/" + script.name + ("?" + query if query else ""),
        "DOCUMENT_ROOT": str(script.parent),
        "QUERY_STRING": query,
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "shop.example.test",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
    }
    cgi = shutil.which("cgi-fcgi")
    assert cgi, "cgi-fcgi (libfcgi-bin) is missing"
    p = subprocess.run([cgi, "-bind", "-connect", str(sock)], env=env, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    raw = p.stdout.decode(errors="replace")
    assert p.returncode == 0, f"cgi-fcgi exited {p.returncode}: {raw}\n{p.stderr!r}"
    return raw.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in raw else raw


def systemd_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values in order]}} (comments and blank lines dropped)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert section is not None, f"{path}: {line!r} outside a section"
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def environment_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments and blanks skipped,
    surrounding quotes removed)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def unescape_instance(instance: str) -> str:
    """%I: what systemd passes for an instance made with `systemd-escape --path`."""
    return run(["systemd-escape", "--unescape", "--path", instance]).stdout.strip()


def escape_path(path: str) -> str:
    return run(["systemd-escape", "--path", path]).stdout.strip()


def pid_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def fpm_running(php: Php) -> Optional[int]:
    """PID of the system php-fpm master when its service runs."""
    p = run(["service", php.fpm_service, "status"], check=False, timeout=60)
    if p.returncode != 0:
        return None
    pidfile = Path(f"/run/php/php{php.version}-fpm.pid")
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


# ---- what the plugin zip and the package carry of php/woosync ----------------------------------------

PLUGIN_SOURCE = ROOT / "php" / "woosync"
_DEV_DIRS = {"tests", "test", "features", "node_modules"}
_DEV_FILES = re.compile(r"^(phpunit\.xml.*|phpcs\.xml.*|composer\.(json|lock)|package(-lock)?\.json|.*~)$")


def plugin_release_files() -> dict[str, bytes]:
    """relative path → content of every php/woosync file a release carries: all of them except
    tests, dev tooling and dotfiles (the rules packaging/build.sh applies, written out again)."""
    out = {}
    for path in sorted(PLUGIN_SOURCE.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(PLUGIN_SOURCE)
        if any(p.startswith(".") or p in _DEV_DIRS for p in rel.parts) or _DEV_FILES.match(rel.name):
            continue
        out[str(rel)] = path.read_bytes()
    return out
