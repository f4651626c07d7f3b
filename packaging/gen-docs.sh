#!/bin/sh
# Generates the man pages and shell completions from the binary's clap definition
# (`cachewarden man DIR`, `cachewarden completions SHELL`) into a staging root, at the
# paths the distribution's tools look in.
#
#   packaging/gen-docs.sh BIN ROOT ZSH_DIR
#
# ZSH_DIR: /usr/share/zsh/vendor-completions (Debian) or
# /usr/share/zsh/site-functions (Fedora, openSUSE).
set -eu
bin=$1
root=$2
zsh_dir=$3

man=$root/usr/share/man/man1
mkdir -p "$man"
"$bin" man "$man"
for page in "$man"/*.1; do
    gzip -9n "$page"
done
chmod 0644 "$man"/*.1.gz

install -d "$root/usr/share/bash-completion/completions" "$root$zsh_dir" \
    "$root/usr/share/fish/vendor_completions.d"
"$bin" completions bash > "$root/usr/share/bash-completion/completions/cachewarden"
"$bin" completions zsh > "$root$zsh_dir/_cachewarden"
"$bin" completions fish > "$root/usr/share/fish/vendor_completions.d/cachewarden.fish"
chmod 0644 "$root/usr/share/bash-completion/completions/cachewarden" \
    "$root$zsh_dir/_cachewarden" "$root/usr/share/fish/vendor_completions.d/cachewarden.fish"
