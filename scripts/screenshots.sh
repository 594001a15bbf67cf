#!/usr/bin/env bash
# Regenerates the screenshots in docs/images/ (docs/plugin.md shows them): the HTML report and the
# attack graph that `kubectl snapsentry` makes from the example fleet in examples/views/fleet.yaml
# (an export, read with --objects: no cluster needed), rendered by headless Chromium (the Debian
# `chromium` package; scripts/toolchain.sh --apt-only installs it, skipped when present).
#
#   scripts/screenshots.sh            # writes docs/images/report.png and docs/images/graph.png
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
say() { printf '==> %s\n' "$*" >&2; }
die() {
	echo "screenshots.sh: $*" >&2
	exit 1
}

command -v chromium >/dev/null || "$repo/scripts/toolchain.sh" --apt-only
command -v chromium >/dev/null || die "chromium is not installed (apt-get install chromium)"

say "Building kubectl-snapsentry"
cargo build -q -p kubectl-snapsentry --manifest-path "$repo/Cargo.toml"
plugin="$CARGO_TARGET_DIR/debug/kubectl-snapsentry"

work=$(mktemp -d -t snapsentry-screenshots.XXXXXX)
trap 'rm -rf "$work"' EXIT
objects="$repo/examples/views/fleet.yaml"
"$plugin" --objects "$objects" -A report -o "$work/report.html" 2>/dev/null
"$plugin" --objects "$objects" -A graph -o "$work/graph.svg"

# Root cannot use Chromium's sandbox; an unprivileged user keeps it.
sandbox=()
((EUID != 0)) || sandbox=(--no-sandbox)
shoot() { # page png width height
	chromium --headless "${sandbox[@]}" --disable-gpu --hide-scrollbars --no-first-run \
		--host-resolver-rules='MAP * ~NOTFOUND' --user-data-dir="$work/profile" \
		--window-size="$3,$4" --screenshot="$2" "file://$1" 2>/dev/null
	[[ -s $2 ]] || die "chromium wrote no $2"
}

mkdir -p "$repo/docs/images"
shoot "$work/report.html" "$repo/docs/images/report.png" 1280 1700
# The graph at its own size (the SVG's width and height attributes).
read -r width height < <(sed -n 's/^<svg [^>]* width="\([0-9]*\)" height="\([0-9]*\)".*/\1 \2/p' "$work/graph.svg" | head -1)
[[ -n ${width:-} && -n ${height:-} ]] || die "no size in graph.svg"
shoot "$work/graph.svg" "$repo/docs/images/graph.png" "$width" "$height"
say "wrote docs/images/report.png and docs/images/graph.png"
