#!/bin/sh
# Proves the packages: builds the .deb from BIN, installs it with dpkg, runs what it
# installed, checks its files, verifies its units, then removes and purges it; builds
# the .rpm where rpmbuild exists and lists it. Needs root, and changes the system it
# runs on (as CI's machine may be changed): refuses when cachewarden is installed
# already, so a real installation is never replaced.
#
#   packaging/test-install.sh BIN
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$1
fail() { echo "test-install: FAILED: $*" >&2; exit 1; }
step() { echo "test-install: $*"; }

[ "$(id -u)" -eq 0 ] || { echo "test-install: skipped: needs root (dpkg -i)"; exit 0; }
command -v dpkg >/dev/null || { echo "test-install: skipped: no dpkg on this system"; exit 0; }
if dpkg-query -W -f='${Status}' cachewarden 2>/dev/null | grep -q "ok installed"; then
    echo "test-install: skipped: cachewarden is installed here already; not replacing it"
    exit 0
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT INT TERM
deb=$(OUT_DIR=$out CACHEWARDEN_BIN=$bin "$root/packaging/build-deb.sh" | tail -n 1)
step "built $(basename "$deb")"

dpkg -i "$deb" >/dev/null
step "installed"
/usr/bin/cachewarden --version | grep -q "^cachewarden " || fail "--version"
/usr/bin/cachewarden config check /etc/cachewarden/config.toml >/dev/null || fail "config check"
for f in /usr/share/man/man1/cachewarden.1.gz /usr/share/man/man1/cachewarden-evict.1.gz \
    /usr/share/man/man1/cachewarden-config-check.1.gz \
    /usr/share/bash-completion/completions/cachewarden \
    /usr/share/zsh/vendor-completions/_cachewarden \
    /usr/share/fish/vendor_completions.d/cachewarden.fish \
    /lib/systemd/system/cachewarden.service /usr/lib/systemd/user/cachewarden.service \
    /usr/share/doc/cachewarden/README.md /usr/share/doc/cachewarden/shared-server.toml \
    /usr/share/doc/cachewarden/shared-server.conf; do
    [ -s "$f" ] || fail "missing $f"
done
zcat /usr/share/man/man1/cachewarden.1.gz | grep -q "^\.TH" || fail "man page is not troff"
if command -v man >/dev/null; then
    man -l /usr/share/man/man1/cachewarden.1.gz >/dev/null 2>&1 || fail "man cannot render it"
fi
bash -c '. /usr/share/bash-completion/completions/cachewarden && complete -p cachewarden' \
    >/dev/null || fail "bash completion does not load"
getent passwd cachewarden >/dev/null || fail "no cachewarden user"
step "binary, config, man pages, completions, units and the cachewarden user are there"

if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /lib/systemd/system/cachewarden.service || fail "system unit"
    runtime=$(mktemp -d)
    XDG_RUNTIME_DIR=$runtime systemd-analyze --user verify \
        /usr/lib/systemd/user/cachewarden.service || fail "user unit"
    rm -rf "$runtime"
    exposure=$(systemd-analyze security --offline=true /lib/systemd/system/cachewarden.service \
        | sed -n 's/.*Overall exposure level for cachewarden.service: //p')
    # The shared-server drop-in, as an admin would install it.
    units=$(mktemp -d)
    cp /lib/systemd/system/cachewarden.service "$units/"
    mkdir "$units/cachewarden.service.d"
    cp /usr/share/doc/cachewarden/shared-server.conf "$units/cachewarden.service.d/"
    SYSTEMD_UNIT_PATH=$units: systemd-analyze verify "$units/cachewarden.service" \
        > "$units/verify.log" 2>&1 || fail "system unit with the shared-server drop-in"
    if grep -q "shared-server.conf" "$units/verify.log"; then
        cat "$units/verify.log" >&2
        fail "the shared-server drop-in has warnings"
    fi
    shared_exposure=$(SYSTEMD_UNIT_PATH=$units: systemd-analyze security --offline=true \
        "$units/cachewarden.service" | sed -n 's/.*Overall exposure level for cachewarden.service: //p')
    rm -rf "$units"
    /usr/bin/cachewarden config check /usr/share/doc/cachewarden/shared-server.toml >/dev/null \
        || fail "config check shared-server.toml"
    step "systemd-analyze verify: both units pass; system unit exposure: $exposure; with the shared-server drop-in: $shared_exposure"
else
    step "systemd-analyze not found: units not verified"
fi

dpkg -r cachewarden >/dev/null
[ ! -e /usr/bin/cachewarden ] || fail "remove left the binary"
[ -f /etc/cachewarden/config.toml ] || fail "remove dropped the conffile"
dpkg -P cachewarden >/dev/null
[ ! -e /etc/cachewarden ] || fail "purge left /etc/cachewarden"
dpkg-query -W cachewarden >/dev/null 2>&1 && fail "still known to dpkg after purge"
step "removed and purged cleanly"

if command -v rpmbuild >/dev/null; then
    rpm=$(OUT_DIR=$out CACHEWARDEN_BIN=$bin "$root/packaging/build-rpm.sh" 2>/dev/null | tail -n 1)
    rpm -qlp "$rpm" > "$out/rpm.list" 2>/dev/null
    for f in /usr/bin/cachewarden /usr/share/man/man1/cachewarden.1.gz \
        /usr/share/bash-completion/completions/cachewarden \
        /usr/share/zsh/site-functions/_cachewarden /usr/lib/systemd/system/cachewarden.service; do
        grep -qx "$f" "$out/rpm.list" || fail "the rpm lacks $f"
    done
    step "built $(basename "$rpm"): $(wc -l < "$out/rpm.list") files"
    sed 's/^/  /' "$out/rpm.list"
else
    step "rpmbuild not found: no .rpm built"
fi
step "ok"
