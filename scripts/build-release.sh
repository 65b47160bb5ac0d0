#!/usr/bin/env bash
# Build a rehab-agi release: the wheel of a source tree (default: the bundled reference service in
# app/), with the toolkit's pinned flit_core and no network, and beside it wheels/ with the
# dependency the platform provides, rehab-shard-map (built from plugins/module_utils/shard_map.py,
# packages/rehab-shard-map): a release is deployed with app_release {src: <wheel>, wheels: <OUT>/wheels}.
#
# Usage: scripts/build-release.sh [SOURCE_DIR] [OUT_DIR]
#   OUT_DIR defaults to the app role's files/ (roles/app/files), where the role's default
#   app_release (rehab-agi.whl, wheels) finds them; the link rehab-agi.whl names the newest build.
# The same source gives the same bytes (SOURCE_DATE_EPOCH fixed), so a rebuild is not a new release.
# Prints the release wheel's path.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
src="${1:-$here/app}"
out="${2:-$here/roles/app/files}"
pip="${PIP:-$here/.venv/bin/pip}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-315532800}"
mkdir -p "$out/wheels"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
wheel() { "$pip" wheel -q --no-deps --no-build-isolation --no-index -w "$build/$1" "$2" >&2; }

mkdir -p "$build/shard-map-src"
cp "$here/packages/rehab-shard-map/pyproject.toml" "$build/shard-map-src/"
cp "$here/plugins/module_utils/shard_map.py" "$build/shard-map-src/rehab_shard_map.py"
wheel shard-map "$build/shard-map-src"
rm -f "$out"/wheels/rehab_shard_map-*.whl
mv "$build"/shard-map/*.whl "$out/wheels/"

wheel release "$src"
release="$(ls "$build"/release/*.whl)"
mv "$release" "$out/"
ln -sfn "$(basename "$release")" "$out/rehab-agi.whl"
echo "$out/$(basename "$release")"
