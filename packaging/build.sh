#!/usr/bin/env bash
# `make package`: builds into OUT
#   woosync-php<MAJOR.MINOR>_<version>_<arch>.deb   with Debian's tools: dpkg-shlibdeps,
#                                                    dpkg-gencontrol, dpkg-deb
#   woosync-wordpress-plugin-<version>.zip          top-level woosync/ folder, for
#                                                    Plugins → Add New → Upload or `wp plugin install`
# <version> is Cargo.toml's (checked against the plugin's headers and the Debian changelog),
# MAJOR.MINOR and the phpapi dependency come from php-config, <arch> from dpkg.
#
#   packaging/build.sh --so target/release/libwoosync.so --out dist [--version-suffix +local1]
#
# --version-suffix appends to the package version (an upgrade test builds a newer package with
# it); the zip keeps Cargo.toml's version. PHP_CONFIG selects another PHP (default: php-config).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKGDIR="$ROOT/packaging"
PHP_CONFIG=${PHP_CONFIG:-php-config}
MAINTAINER=${MAINTAINER:-woosync developers <dev@woosync.invalid>}
SO=""
OUT=""
SUFFIX=""

die() { echo "package: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --so) SO=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --version-suffix) SUFFIX=$2; shift 2 ;;
        *) die "unknown argument $1 (use --so PATH --out DIR [--version-suffix S])" ;;
    esac
done
[ -n "$SO" ] && [ -f "$SO" ] || die "no extension at '${SO}' (--so; build it with cargo build --release)"
[ -n "$OUT" ] || die "--out DIR is required"
for tool in dpkg-deb dpkg-shlibdeps dpkg-gencontrol dpkg-parsechangelog zip strip readelf "$PHP_CONFIG"; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg-dev zip php-dev)"
done

VERSION=$("$PKGDIR/check-versions.sh" "$ROOT") || die "versions disagree (see above): fix them before packaging"
DEB_VERSION="${VERSION//-/\~}$SUFFIX"
PHP_VERSION=$("$PHP_CONFIG" --version | cut -d. -f1,2)
PHPAPI=$("$PHP_CONFIG" --phpapi)
EXT_DIR=$("$PHP_CONFIG" --extension-dir)
PHP_BIN=$("$PHP_CONFIG" --php-binary)
ARCH=$(dpkg --print-architecture)
PACKAGE="woosync-php$PHP_VERSION"
DEB="$OUT/${PACKAGE}_${DEB_VERSION}_${ARCH}.deb"
ZIP="$OUT/woosync-wordpress-plugin-$VERSION.zip"

# The extension must load into this PHP and report the version being packaged.
so_version=$("$PHP_BIN" -n -d "extension=$(realpath "$SO")" -r 'echo phpversion("woosync");' 2>&1) \
    || die "$SO does not load into $PHP_BIN: $so_version"
[ "$so_version" = "$VERSION" ] || die "$SO reports version '$so_version', Cargo.toml says '$VERSION': rebuild it"

# Reproducible: every file dated from the changelog entry.
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$PKGDIR/debian/changelog" -STimestamp)
export SOURCE_DATE_EPOCH

WORK=$(mktemp -d -t woosync-package.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
SRC="$WORK/source"               # what dpkg-shlibdeps and dpkg-gencontrol expect:
STAGE="$SRC/debian/$PACKAGE"     # debian/control, debian/changelog, debian/<package>/
mkdir -p "$STAGE" "$OUT"

subst() { # template → file, with the package's names
    sed -e "s|@PHP_VERSION@|$PHP_VERSION|g" -e "s|@PACKAGE@|$PACKAGE|g" -e "s|@MAINTAINER@|$MAINTAINER|g" "$1"
}

# ---- the WordPress plugin: only what WordPress runs (no tests, dev tooling or dotfiles) ----------
PLUGIN="$WORK/plugin/woosync"
mkdir -p "$WORK/plugin"
tar -C "$ROOT/php" -cf - \
    --exclude='.*' --exclude='tests' --exclude='test' --exclude='features' --exclude='node_modules' \
    --exclude='phpunit.xml*' --exclude='phpcs.xml*' --exclude='composer.json' --exclude='composer.lock' \
    --exclude='package.json' --exclude='package-lock.json' --exclude='*~' \
    woosync | tar -C "$WORK/plugin" -xf -
find "$PLUGIN" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
[ -f "$PLUGIN/woosync.php" ] || die "the plugin's main file is missing from $ROOT/php/woosync"

# ---- package tree -------------------------------------------------------------------------------
install -D -m 0644 "$SO" "$STAGE$EXT_DIR/woosync.so"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$STAGE$EXT_DIR/woosync.so"
install -D -m 0644 "$PKGDIR/woosync.ini" "$STAGE/etc/php/$PHP_VERSION/mods-available/woosync.ini"
install -D -m 0644 "$PKGDIR/default" "$STAGE/etc/default/woosync"
install -D -m 0644 "$PKGDIR/woosync-sender@.service" "$STAGE/lib/systemd/system/woosync-sender@.service"
install -D -m 0755 "$PKGDIR/woosync-sender" "$STAGE/usr/libexec/woosync/woosync-sender"
mkdir -p "$STAGE/usr/share/woosync/wordpress-plugin"
cp -a "$PLUGIN" "$STAGE/usr/share/woosync/wordpress-plugin/"

DOC="$STAGE/usr/share/doc/$PACKAGE"
install -d -m 0755 "$DOC"
gzip -9n < "$ROOT/README.md" > "$DOC/README.md.gz"
gzip -9n < "$PKGDIR/debian/changelog" > "$DOC/changelog.gz"
crates=$(cd "$ROOT" && cargo metadata --format-version 1 --offline --locked \
    --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" | python3 -c '
import json, sys
m = json.load(sys.stdin)
pkgs = {p["id"]: p for p in m["packages"]}
nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
root = m["resolve"]["root"]
seen, todo = set(), [root]
def proc_macro(p):
    return any("proc-macro" in t["kind"] for t in p["targets"])
while todo:  # what the library links: normal dependencies, transitively, not proc macros
    i = todo.pop()
    if i in seen or proc_macro(pkgs[i]):
        continue
    seen.add(i)
    todo += [d["pkg"] for d in nodes[i]["deps"] if any(k["kind"] is None for k in d["dep_kinds"])]
seen.discard(root)
for p in sorted((pkgs[i] for i in seen), key=lambda p: (p["name"], p["version"])):
    print(" %s %s: %s" % (p["name"], p["version"], p["license"] or "see the crate"))
')
python3 - "$PKGDIR/debian/copyright.in" "$DOC/copyright" "$crates" <<'EOF'
import sys
src, dst, crates = sys.argv[1:]
open(dst, "w").write(open(src).read().replace("@CRATES@", crates))
EOF
chmod 0644 "$DOC"/*

# ---- control data -------------------------------------------------------------------------------
subst "$PKGDIR/debian/control.in" > "$SRC/debian/control"
cp "$PKGDIR/debian/changelog" "$SRC/debian/changelog"
install -d -m 0755 "$STAGE/DEBIAN"
for script in preinst prerm postinst postrm; do
    subst "$PKGDIR/debian/$script" > "$STAGE/DEBIAN/$script"
    chmod 0755 "$STAGE/DEBIAN/$script"
done
printf '%s\n' "/etc/default/woosync" "/etc/php/$PHP_VERSION/mods-available/woosync.ini" > "$STAGE/DEBIAN/conffiles"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$STAGE/DEBIAN/conffiles" "$STAGE/DEBIAN/md5sums"
(
    cd "$SRC"
    dpkg-shlibdeps -Tdebian/substvars "debian/$PACKAGE$EXT_DIR/woosync.so"
    # Packed relocations (build.rs) need glibc 2.36, a version requirement without a symbol, which
    # dpkg-shlibdeps does not turn into a dependency.
    if readelf -V "debian/$PACKAGE$EXT_DIR/woosync.so" | grep -q GLIBC_ABI_DT_RELR; then
        sed -i -E 's/libc6 \(>= [0-9.]+\)/libc6 (>= 2.36)/' debian/substvars
    fi
    dpkg-gencontrol -p"$PACKAGE" -v"$DEB_VERSION" -Tdebian/substvars -fdebian/files -P"$STAGE" \
        -V"phpapi:Depends=phpapi-$PHPAPI"
)

find "$STAGE" "$WORK/plugin" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
rm -f "$DEB" "$ZIP"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
(cd "$WORK/plugin" && find woosync | LC_ALL=C sort | zip -X -q -@ "$(realpath "$ZIP")")
echo "$DEB"
echo "$ZIP"
