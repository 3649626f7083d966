#!/usr/bin/env bash
# Checks that every version the release carries agrees with Cargo.toml's: the WordPress plugin's
# `Version:` header and WOOSYNC_PLUGIN_VERSION, its readme.txt `Stable tag:`, and the top entry of
# packaging/debian/changelog. Prints the version on success; names each mismatch and exits 1.
#   packaging/check-versions.sh [repository root]
set -euo pipefail
ROOT=$(cd "${1:-$(dirname "$0")/..}" && pwd)

cargo_version=$(sed -n '/^\[package\]/,/^\[/s/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n1)
[ -n "$cargo_version" ] || { echo "check-versions: no version in $ROOT/Cargo.toml [package]" >&2; exit 1; }

plugin="$ROOT/php/woosync/woosync.php"
header=$(sed -n 's/^[[:space:]]*\*[[:space:]]*Version:[[:space:]]*\([^[:space:]]*\).*/\1/p' "$plugin" | head -n1)
constant=$(sed -n "s/^define([[:space:]]*'WOOSYNC_PLUGIN_VERSION',[[:space:]]*'\([^']*\)'.*/\1/p" "$plugin" | head -n1)
stable=$(sed -n 's/^Stable tag:[[:space:]]*\([^[:space:]]*\).*/\1/p' "$ROOT/php/woosync/readme.txt" | head -n1)
changelog=$(dpkg-parsechangelog -l "$ROOT/packaging/debian/changelog" -SVersion)

status=0
check() { # what, found
    if [ "$2" != "$cargo_version" ]; then
        echo "check-versions: $1 is '${2}', Cargo.toml says '$cargo_version'" >&2
        status=1
    fi
}
check "the plugin's Version: header (php/woosync/woosync.php)" "$header"
check "WOOSYNC_PLUGIN_VERSION (php/woosync/woosync.php)" "$constant"
check "the plugin's Stable tag (php/woosync/readme.txt)" "$stable"
check "the top entry of packaging/debian/changelog" "${changelog//\~/-}"
[ "$status" -eq 0 ] && echo "$cargo_version"
exit "$status"
