#!/usr/bin/env bash
# Vendor the chart libraries the dashboard serves from /static/vendor/ (nothing loads from a CDN).
#
#   bash src/leadrefinery/api/static/vendor/update.sh          # the pinned versions below
#   VEGA=6.3.1 VEGA_LITE=6.4.1 VEGA_EMBED=7.3.0 bash .../update.sh
#
# Needs `npm` (registry access) at build time only; the files it writes are committed, so a
# user's machine never fetches anything. vega 6.4.0 on npm ships no build/vega.min.js, hence 6.3.x.
set -euo pipefail
VEGA=${VEGA:-6.3.1}
VEGA_LITE=${VEGA_LITE:-6.4.1}
VEGA_EMBED=${VEGA_EMBED:-7.3.0}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
for spec in "vega@$VEGA" "vega-lite@$VEGA_LITE" "vega-embed@$VEGA_EMBED"; do
  npm pack --silent "$spec" >/dev/null
done
for pkg in vega vega-lite vega-embed; do
  mkdir -p "$pkg" && tar xzf "$pkg"-[0-9]*.tgz -C "$pkg"
  cp "$pkg/package/build/$pkg.min.js" "$here/$pkg.min.js"
  cp "$pkg/package/LICENSE" "$here/LICENSE.$pkg"
done
cat > "$here/VERSIONS" <<V
vega $VEGA
vega-lite $VEGA_LITE
vega-embed $VEGA_EMBED
V
echo "vendored into $here:"; cat "$here/VERSIONS"
