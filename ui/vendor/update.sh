#!/usr/bin/env bash
# Fetches the pinned third-party browser libraries of the web UI from the npm registry
# (`npm pack`, no install, no build) and copies just the files the pages load, with
# their licences, into ui/vendor/<package>/. VERSIONS.md lists what is here and why.
#
#   bash ui/vendor/update.sh            # re-fetch the pinned versions
#
# To move to a new version: change the pin below, run this, reload the pages that use
# the library (graph: cytoscape + cytoscape-dagre; metrics and the graph's side panel:
# uplot), update VERSIONS.md, and commit the files. ES modules are copied with a `.js`
# name so every server sends them as JavaScript (`.mjs` is not in every MIME table).
# The query service never serves this script (query/src/ui.rs excludes *.sh).
set -euo pipefail

CYTOSCAPE=3.35.0
CYTOSCAPE_DAGRE=4.0.1
# cytoscape-dagre's dist bundles @dagrejs/dagre (and its graphlib); only their licences
# are taken, for the versions that bundle holds.
DAGRE=3.0.0
GRAPHLIB=4.0.1
UPLOT=1.6.32

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# fetch <package@version> → the unpacked package directory (printed)
fetch() {
    local spec="$1" dir
    dir="$work/$(echo "$spec" | tr '/@' '__')"
    mkdir -p "$dir"
    (cd "$dir" && npm pack "$spec" --silent >/dev/null)
    tar -xzf "$dir"/*.tgz -C "$dir"
    echo "$dir/package"
}

# put <from> <to, relative to ui/vendor>
put() {
    mkdir -p "$(dirname "$here/$2")"
    cp "$1" "$here/$2"
    echo "  $2"
}

echo "cytoscape@$CYTOSCAPE"
pkg="$(fetch "cytoscape@$CYTOSCAPE")"
rm -rf "$here/cytoscape"
put "$pkg/dist/cytoscape.esm.min.mjs" cytoscape/cytoscape.esm.min.js
put "$pkg/LICENSE" cytoscape/LICENSE

echo "cytoscape-dagre@$CYTOSCAPE_DAGRE"
pkg="$(fetch "cytoscape-dagre@$CYTOSCAPE_DAGRE")"
rm -rf "$here/cytoscape-dagre"
put "$pkg/dist/cytoscape-dagre.min.mjs" cytoscape-dagre/cytoscape-dagre.min.js
# The bundle ends with a sourceMappingURL comment for a map we do not ship.
sed -i '/^\/\/# sourceMappingURL=/d' "$here/cytoscape-dagre/cytoscape-dagre.min.js"
put "$pkg/LICENSE" cytoscape-dagre/LICENSE
bundled="$(grep -o 'var U="[0-9.]*"' "$here/cytoscape-dagre/cytoscape-dagre.min.js" | head -1 | tr -dc '0-9.' || true)"
if [ -n "$bundled" ] && [ "$bundled" != "$DAGRE" ]; then
    echo "note: cytoscape-dagre bundles dagre $bundled, not $DAGRE: update DAGRE/GRAPHLIB and VERSIONS.md" >&2
fi
pkg="$(fetch "@dagrejs/dagre@$DAGRE")"
put "$pkg/LICENSE" cytoscape-dagre/LICENSE.dagre
pkg="$(fetch "@dagrejs/graphlib@$GRAPHLIB")"
put "$pkg/LICENSE" cytoscape-dagre/LICENSE.graphlib

echo "uplot@$UPLOT"
pkg="$(fetch "uplot@$UPLOT")"
rm -rf "$here/uplot"
put "$pkg/dist/uPlot.esm.js" uplot/uPlot.esm.js
put "$pkg/dist/uPlot.min.css" uplot/uPlot.min.css
put "$pkg/LICENSE" uplot/LICENSE

echo "done: review 'git status ui/vendor' and update VERSIONS.md if a pin changed"
