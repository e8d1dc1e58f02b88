#!/usr/bin/env bash
# The whole test suite: the panel (Vitest), the core, CLI and shell (cargo test), then the desktop
# app end to end (real WebKit window under Xvfb, WebDriver, private D-Bus, keychain, notifications).
# Installs missing system packages first, so it runs on a fresh Debian/Ubuntu machine.
# One test mounts a size-limited tmpfs (the full-disk case) and needs root; without root it says
# it skipped, unless ZOF_REQUIRE_ROOT_TESTS is set (CI), where it must run.
set -euo pipefail
cd "$(dirname "$0")/.."
timed() {
  local name=$1 t0=$SECONDS
  shift
  echo "== $name"
  "$@"
  echo "== $name: $((SECONDS - t0)) s"
}
bash scripts/deps.sh
timed "panel (ui/): npm ci, unit tests, build" bash -c 'cd ui && npm ci --no-audit --no-fund --loglevel=error && npm test && npm run build'
timed "core, CLI and desktop shell: cargo test" cargo test --workspace --locked
timed "desktop app: build" bash scripts/build-desktop.sh
timed "desktop app end to end" bash scripts/e2e.sh
