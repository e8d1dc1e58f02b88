#!/usr/bin/env bash
# Builds the panel (ui/dist, which the desktop app embeds at compile time). Its npm packages are
# installed with `npm ci` only when ui/node_modules does not match ui/package-lock.json (a fresh
# clone, or a changed lock file), so the scripts that each need the panel install it once.
# --deps-only: install the packages, build nothing.
set -euo pipefail
cd "$(dirname "$0")/../ui"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
[ "${1:-}" = --deps-only ] || npm run build
