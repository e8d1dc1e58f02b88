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
timed "panel (ui/): unit tests, build" bash -c 'bash scripts/panel.sh --deps-only && cd ui && npm test && npm run build'
# One build of every target (the desktop app with the panel embedded, the CLI, the tests), then
# the tests with the same packages and features, so nothing is compiled twice.
# .ci/run's clippy and scripts/package-test.sh use the same, so build scripts and proc macros are
# compiled once for all of them.
export ZOF_CARGO_SELECTION="${ZOF_CARGO_SELECTION:---workspace --features zof-approvals-desktop/custom-protocol}"
timed "build: desktop app, CLI, tests" env ZOF_BUILD_TESTS=1 bash scripts/build-desktop.sh
# shellcheck disable=SC2086
timed "core, CLI and desktop shell: cargo test" cargo test --locked $ZOF_CARGO_SELECTION
timed "desktop app end to end" bash scripts/e2e.sh
