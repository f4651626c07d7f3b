#!/bin/sh
# Builds cachewarden-<version>-1.<arch>.rpm with `rpmbuild -bb` from the prebuilt
# release binary, using packaging/rpm/cachewarden.spec.
#
#   packaging/build-rpm.sh
#
# Environment:
#   CARGO_TARGET_DIR  cargo's target dir (default: <repo>/target)
#   OUT_DIR           where the .rpm goes (default: $CARGO_TARGET_DIR/packages)
#   CACHEWARDEN_BIN   use this prebuilt binary instead of running cargo build
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
out_dir=${OUT_DIR:-$target_dir/packages}
name=cachewarden

command -v rpmbuild >/dev/null 2>&1 || {
    echo "build-rpm: rpmbuild not found (dnf install rpm-build; apt-get install rpm)" >&2
    exit 1
}

version=$(awk '
    /^\[/ { in_pkg = ($0 == "[package]") }
    in_pkg && /^version *=/ { gsub(/^version *= *"|".*$/, ""); print; exit }
' "$root/Cargo.toml")
[ -n "$version" ] || { echo "build-rpm: no version in Cargo.toml" >&2; exit 1; }
# RPM versions cannot contain "-"; "~" sorts a pre-release before the release.
rpm_version=$(echo "$version" | tr - '~')

if [ -n "${CACHEWARDEN_BIN:-}" ]; then
    bin=$CACHEWARDEN_BIN
else
    (cd "$root" && CARGO_TARGET_DIR=$target_dir cargo build --release --locked)
    bin=$target_dir/release/$name
fi
[ -x "$bin" ] || { echo "build-rpm: $bin is not an executable" >&2; exit 1; }

top=$(mktemp -d "${TMPDIR:-/tmp}/$name-rpm.XXXXXX")
trap 'rm -rf "$top"' EXIT INT TERM
mkdir -p "$top/SOURCES" "$top/BUILD" "$top/RPMS" "$top/SPECS" "$top/SRPMS"
src=$top/SOURCES
cp "$bin" "$src/$name"
if command -v strip >/dev/null 2>&1; then
    strip --strip-unneeded "$src/$name"
fi
cp "$root/systemd/$name.service" "$src/$name.service"
cp "$root/systemd/user/$name.service" "$src/$name-user.service"
cp "$root/packaging/etc/config.toml" "$src/config.toml"
cp "$root/packaging/rpm/$name.sysusers" "$src/$name.sysusers"
# Man pages and completions, generated from the binary (the spec copies this tree).
"$root/packaging/gen-docs.sh" "$src/$name" "$src/generated" /usr/share/zsh/site-functions
cp "$root/config.example.toml" "$src/config.example.toml"
cp "$root/packaging/etc/shared-server.toml" "$src/shared-server.toml"
cp "$root/systemd/$name.service.d/shared-server.conf" "$src/shared-server.conf"
cp "$root/packaging/README.md" "$src/README.packaging.md"
set --
if [ -f "$root/README.md" ]; then
    cp "$root/README.md" "$src/README.md"
    set -- --define "have_readme 1"
else
    echo "build-rpm: warning: $root/README.md is missing; not in the package" >&2
    : > "$src/README.md"
fi

# The systemd macros come with systemd-rpm-macros (Fedora) or systemd (openSUSE);
# where they are missing (building on Debian), use the stand-ins.
if [ -z "$(rpm --eval '%{?systemd_post:1}')" ]; then
    set -- "$@" --load "$root/packaging/rpm/macros.systemd-fallback"
fi

rpmbuild -bb "$root/packaging/rpm/$name.spec" \
    --define "_topdir $top" \
    --define "pkg_version $rpm_version" \
    "$@"

mkdir -p "$out_dir"
for rpm in "$top"/RPMS/*/*.rpm; do
    cp "$rpm" "$out_dir/"
    echo "$out_dir/$(basename "$rpm")"
done
