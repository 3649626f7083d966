#!/usr/bin/env bash
# `make install` / `make uninstall` on Debian-style PHP (php-config, phpenmod/phpdismod):
#
#   packaging/install.sh install <path to libwoosync.so>
#     the .so            → $(php-config --extension-dir)/woosync.so
#     packaging/woosync.ini → /etc/php/<MAJOR.MINOR>/mods-available/woosync.ini
#                          (an existing, edited woosync.ini is kept; the new one goes next to it as
#                          woosync.ini.dist)
#     phpenmod -s cli -s fpm woosync, then a reload of php<MAJOR.MINOR>-fpm when it runs
#   packaging/install.sh uninstall
#     phpdismod for every SAPI (forgetting the module's state), remove both files, reload php-fpm
#
# Refuses to touch files that the woosync-php<MAJOR.MINOR> package owns (use apt for those).
# PHP_CONFIG selects another PHP (default: php-config).
set -euo pipefail

PHP_CONFIG=${PHP_CONFIG:-php-config}
HERE=$(cd "$(dirname "$0")" && pwd)
SAPIS="cli fpm"

die() { echo "install: $*" >&2; exit 1; }

command -v "$PHP_CONFIG" >/dev/null || die "$PHP_CONFIG not found: install php-dev (apt-get install php-dev)"
command -v phpenmod >/dev/null || die "phpenmod not found: this needs Debian's PHP packaging (php-common); elsewhere load the extension by hand (README, \"Install by hand\")"
[ "$(id -u)" -eq 0 ] || die "run as root (sudo make ${1:-install})"

php_version=$("$PHP_CONFIG" --version | cut -d. -f1,2)
ext_dir=$("$PHP_CONFIG" --extension-dir)
so_dest="$ext_dir/woosync.so"
ini_dir="/etc/php/$php_version/mods-available"
ini_dest="$ini_dir/woosync.ini"
package="woosync-php$php_version"

owned_by_package() {
    dpkg-query -S "$1" >/dev/null 2>&1
}

reload_fpm() {
    local service="php$php_version-fpm"
    # `service` reaches systemd or the init script alike; only a running php-fpm is reloaded.
    if service "$service" status >/dev/null 2>&1; then
        service "$service" reload
        echo "reloaded $service"
    fi
}

do_install() {
    local so=${1:-}
    [ -n "$so" ] && [ -f "$so" ] || die "no extension at '${so}': build it first (cargo build --release)"
    for f in "$so_dest" "$ini_dest"; do
        if owned_by_package "$f"; then
            die "$f belongs to the $package package: upgrade or remove the package with apt instead"
        fi
    done
    # The .so must load into this PHP before it replaces anything.
    local php_bin
    php_bin=$("$PHP_CONFIG" --php-binary)
    "$php_bin" -n -d "extension=$so" -r 'exit(extension_loaded("woosync") ? 0 : 1);' \
        || die "$so does not load into $php_bin (built for another PHP?)"

    install -d -m 0755 "$ext_dir"
    # a new inode: processes that have the old file mapped keep running it
    install -m 0644 "$so" "$so_dest.new"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$so_dest.new"
    mv -f "$so_dest.new" "$so_dest"
    echo "installed $so_dest"

    install -d -m 0755 "$ini_dir"
    if [ -f "$ini_dest" ] && ! cmp -s "$HERE/woosync.ini" "$ini_dest"; then
        install -m 0644 "$HERE/woosync.ini" "$ini_dest.dist"
        echo "kept your edited $ini_dest; the new default is $ini_dest.dist"
    else
        install -m 0644 "$HERE/woosync.ini" "$ini_dest"
        rm -f "$ini_dest.dist"
        echo "installed $ini_dest"
    fi

    local sapi
    for sapi in $SAPIS; do
        if [ -d "/etc/php/$php_version/$sapi/conf.d" ]; then
            phpenmod -v "$php_version" -s "$sapi" woosync
            echo "enabled woosync for PHP $php_version $sapi"
        fi
    done
    reload_fpm
}

do_uninstall() {
    for f in "$so_dest" "$ini_dest"; do
        if owned_by_package "$f"; then
            die "$f belongs to the $package package: remove it with apt-get purge $package"
        fi
    done
    local sapi
    if [ -f "$ini_dest" ]; then
        # Every SAPI, in case woosync was also enabled by hand for another one (apache2, cgi);
        # -p also forgets the module's enabled/disabled state. One SAPI per call: phpdismod -p
        # clears the state of the last SAPI it was given only.
        for sapi in $(phpquery -S -v "$php_version"); do
            phpdismod -p -v "$php_version" -s "$sapi" woosync
        done
        echo "disabled woosync for PHP $php_version"
    fi
    rm -f "$ini_dest" "$ini_dest.dist" "$so_dest"
    echo "removed $ini_dest and $so_dest"
    reload_fpm
}

case "${1:-}" in
    install) do_install "${2:-}" ;;
    uninstall) do_uninstall ;;
    *) die "usage: $0 install <libwoosync.so> | uninstall" ;;
esac
