#!/usr/bin/env bash
# Build a rehab-agi release: the wheel of a source tree (default: the bundled reference service in
# app/), with the toolkit's pinned flit_core and no network.
#
# Usage: scripts/build-release.sh [SOURCE_DIR] [OUT_DIR]
#   OUT_DIR defaults to the app role's files/ (roles/app/files), where the role's default
#   app_release (rehab-agi.whl) finds it; the link rehab-agi.whl names the newest build.
# The same source gives the same bytes (SOURCE_DATE_EPOCH fixed), so a rebuild is not a new release.
# Prints the wheel's path.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
src="${1:-$here/app}"
out="${2:-$here/roles/app/files}"
pip="${PIP:-$here/.venv/bin/pip}"
mkdir -p "$out"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-315532800}" "$pip" wheel -q --no-deps --no-build-isolation --no-index -w "$build" "$src" >&2
wheel="$(ls "$build"/*.whl)"
mv "$wheel" "$out/"
ln -sfn "$(basename "$wheel")" "$out/rehab-agi.whl"
echo "$out/$(basename "$wheel")"
