#!/bin/sh
# Builds cachewarden_<version>_<arch>.deb with plain dpkg-deb (no cargo-deb).
#
#   packaging/build-deb.sh
#
# Environment:
#   CARGO_TARGET_DIR  cargo's target dir (default: <repo>/target)
#   OUT_DIR           where the .deb goes (default: $CARGO_TARGET_DIR/packages)
#   CACHEWARDEN_BIN   use this prebuilt binary instead of running cargo build
#   DEB_REVISION      Debian revision appended to the Cargo version (default: 1)
#   DEB_MAINTAINER    Maintainer field (default: a placeholder)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
out_dir=${OUT_DIR:-$target_dir/packages}
name=cachewarden

# The version from [package] in Cargo.toml; "1.2.0-rc.1" becomes "1.2.0~rc.1" so that
# it sorts before 1.2.0 as Debian versions do.
version=$(awk '
    /^\[/ { in_pkg = ($0 == "[package]") }
    in_pkg && /^version *=/ { gsub(/^version *= *"|".*$/, ""); print; exit }
' "$root/Cargo.toml")
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml" >&2; exit 1; }
deb_version="$(echo "$version" | tr - '~')-${DEB_REVISION:-1}"
arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-cachewarden developers <cachewarden@localhost>}

if [ -n "${CACHEWARDEN_BIN:-}" ]; then
    bin=$CACHEWARDEN_BIN
else
    (cd "$root" && CARGO_TARGET_DIR=$target_dir cargo build --release --locked)
    bin=$target_dir/release/$name
fi
[ -x "$bin" ] || { echo "build-deb: $bin is not an executable" >&2; exit 1; }

stage=$(mktemp -d "${TMPDIR:-/tmp}/$name-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM
chmod 0755 "$stage"

install -D -m 0755 "$bin" "$stage/usr/bin/$name"
if command -v strip >/dev/null 2>&1; then
    strip --strip-unneeded "$stage/usr/bin/$name"
fi
"$root/packaging/gen-docs.sh" "$stage/usr/bin/$name" "$stage" /usr/share/zsh/vendor-completions
install -D -m 0644 "$root/systemd/$name.service" "$stage/lib/systemd/system/$name.service"
install -D -m 0644 "$root/systemd/user/$name.service" "$stage/usr/lib/systemd/user/$name.service"
install -D -m 0644 "$root/packaging/etc/config.toml" "$stage/etc/$name/config.toml"
doc=$stage/usr/share/doc/$name
install -D -m 0644 "$root/config.example.toml" "$doc/config.example.toml"
install -m 0644 "$root/packaging/etc/shared-server.toml" "$doc/shared-server.toml"
install -m 0644 "$root/systemd/$name.service.d/shared-server.conf" "$doc/shared-server.conf"
install -m 0644 "$root/packaging/README.md" "$doc/README.packaging.md"
install -D -m 0644 "$root/packaging/monitoring/cachewarden-alerts.yml" "$doc/monitoring/cachewarden-alerts.yml"
install -m 0644 "$root/packaging/monitoring/grafana-dashboard.json" "$doc/monitoring/grafana-dashboard.json"
if [ -f "$root/README.md" ]; then
    install -m 0644 "$root/README.md" "$doc/README.md"
else
    echo "build-deb: warning: $root/README.md is missing; not in the package" >&2
fi
cat > "$doc/copyright" <<EOF
$name $version

License: MIT OR Apache-2.0, at your option (the "license" field of Cargo.toml).
EOF
chmod 0644 "$doc/copyright"

# Shared-library dependencies: the newest glibc symbol version the binary uses.
depends=libc6
if command -v objdump >/dev/null 2>&1; then
    glibc=$(objdump -T "$stage/usr/bin/$name" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
    [ -n "$glibc" ] && depends="libc6 (>= $glibc)"
    if objdump -p "$stage/usr/bin/$name" | grep -q 'NEEDED *libgcc_s\.so\.1'; then
        depends="$depends, libgcc-s1"
    fi
fi
# postinst creates the system user with adduser.
depends="$depends, adduser"

installed_size=$(du -sk "$stage" | cut -f1)
mkdir -m 0755 "$stage/DEBIAN"

cat > "$stage/DEBIAN/control" <<EOF
Package: $name
Version: $deb_version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Suggests: golang-go
Section: admin
Priority: optional
Description: daemon that keeps build caches under size, age and free-space limits
 cachewarden keeps build and module caches (Go's GOCACHE and GOMODCACHE, plain
 directories such as ccache's) under size, age and free-space limits with LRU
 eviction, finds broken entries, and reports over a Unix socket.
 .
 This package installs a system service (cachewarden.service, running as the
 user "cachewarden", not started or enabled by default) and a user service
 (systemctl --user enable --now cachewarden).
EOF

echo "/etc/$name/config.toml" > "$stage/DEBIAN/conffiles"

cat > "$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    # The system service's user. Kept on purge: files in managed caches may be owned
    # by it, and a reused uid would inherit them.
    if ! getent passwd cachewarden >/dev/null; then
        if getent group cachewarden >/dev/null; then
            adduser --quiet --system --no-create-home --home /nonexistent \
                --ingroup cachewarden cachewarden
        else
            adduser --quiet --system --group --no-create-home --home /nonexistent \
                cachewarden
        fi
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        # Never started here; but an upgrade restarts an already running daemon so it
        # runs the new binary.
        if [ -n "$2" ]; then
            systemctl try-restart cachewarden.service >/dev/null || true
        fi
    fi
fi
exit 0
EOF

cat > "$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop cachewarden.service >/dev/null 2>&1 || true
fi
exit 0
EOF

cat > "$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
case "$1" in
remove)
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
    ;;
purge)
    # Only the enablement symlink the unit's [Install] section created, and only if
    # it is ours. The user and group stay (see postinst), and so do drop-ins an admin
    # wrote under /etc/systemd/system/cachewarden.service.d.
    wants=/etc/systemd/system/multi-user.target.wants/cachewarden.service
    if [ -L "$wants" ] && [ ! -e "$wants" ]; then
        rm -f "$wants"
    fi
    rmdir /etc/cachewarden 2>/dev/null || true
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
    ;;
esac
exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"

(cd "$stage" && find usr lib -type f -exec md5sum {} + | sort -k 2) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"

mkdir -p "$out_dir"
deb=$out_dir/${name}_${deb_version}_${arch}.deb
dpkg-deb --root-owner-group --build "$stage" "$deb"
echo "$deb"
