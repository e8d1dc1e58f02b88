#!/usr/bin/env bash
# The whole test suite: the panel (Vitest), the core, CLI and shell (cargo test), then the desktop
# app end to end (real WebKit window under Xvfb, WebDriver, private D-Bus, keychain, notifications).
# Installs missing system packages first, so it runs on a fresh Debian/Ubuntu machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
echo "== panel (ui/): npm ci, unit tests, build"
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm test && npm run build)
echo "== core, CLI and desktop shell: cargo test"
cargo test --workspace --locked
echo "== desktop app end to end"
bash scripts/build-desktop.sh
bash scripts/e2e.sh
