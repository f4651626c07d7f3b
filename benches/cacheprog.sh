#!/usr/bin/env bash
# Go builds through `cachewarden cacheprog` vs plain GOCACHE (issue #26's "Measure"),
# in one run, cold (empty cache) and warm (everything cached), median of RUNS warm runs.
#
#   benches/cacheprog.sh [GO] [PACKAGES...]
#
# GO defaults to the matrix's newest (scripts/test installs it); PACKAGES to `std`.
# Builds the release binary first. Prints one line per figure and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
go_dir="${CACHEWARDEN_GO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cachewarden-test/go}"
GO="${1:-$go_dir/1.27.3/go/bin/go}"
shift || true
packages=("${@:-std}")
RUNS="${RUNS:-3}"
cargo build --release --quiet
bin="$PWD/${CARGO_TARGET_DIR:-target}/release/cachewarden"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

seconds() { # command... -> elapsed seconds on stdout
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f\n", b - a }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

measure() { # label, then env assignments for go
  local label=$1
  shift
  local cache="$work/$label"
  rm -rf "$cache" && mkdir -p "$cache"
  local cold warm=()
  cold=$(seconds env GOCACHE="$cache" "$@" "$GO" build "${packages[@]}")
  for _ in $(seq "$RUNS"); do
    warm+=("$(seconds env GOCACHE="$cache" "$@" "$GO" build "${packages[@]}")")
  done
  echo "$label cold $cold warm $(median "${warm[@]}") size $(du -sB1 "$cache" | cut -f1)"
}

echo "go: $("$GO" version); packages: ${packages[*]}; warm: median of $RUNS"
plain=$(measure plain GOCACHEPROG=)
prog=$(measure cacheprog GOCACHEPROG="$bin cacheprog")
echo "$plain"
echo "$prog"
read -r _ _ pc _ pw _ _ <<<"$plain"
read -r _ _ cc _ cw _ _ <<<"$prog"
awk -v pc="$pc" -v cc="$cc" -v pw="$pw" -v cw="$cw" \
  'BEGIN { printf "cold: %.2fx plain GOCACHE; warm: %.2fx\n", cc / pc, cw / pw }'
