#!/usr/bin/env bash
# Builds the desktop app with the panel embedded (debug profile: faster), the CLI and the
# notification recorder the end-to-end test uses, and installs tauri-driver if it is missing.
# Then: scripts/e2e.sh. With ZOF_BUILD_TESTS=1 (scripts/test.sh) it builds the test targets too.
# For packages: TAURI_APP_PATH=src-tauri npx --yes @tauri-apps/cli@^2 build --bundles deb,rpm
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/deps.sh
echo "== panel (ui/)" >&2
bash scripts/panel.sh
echo "== desktop app, CLI, notification recorder" >&2
if [ -n "${ZOF_BUILD_TESTS:-}" ]; then
  # The test suite's build: every target at once, with the packages and features its `cargo
  # test` uses (ZOF_CARGO_SELECTION, set by scripts/test.sh), so that run compiles nothing again.
  # shellcheck disable=SC2086
  cargo build --locked ${ZOF_CARGO_SELECTION:?set by scripts/test.sh} --all-targets
else
  cargo build --locked -p zof-approvals-desktop --features custom-protocol
  cargo build --locked -p zof-approvals --bin zof-approvals
  if [ -f testkit/Cargo.toml ]; then
    cargo build --locked -p zof-testkit --bin notification-recorder
  fi
fi
if [ ! -x target/tools/bin/tauri-driver ]; then
  echo "== tauri-driver" >&2
  cargo install tauri-driver --version "^2" --locked --root "$root/target/tools"
fi
echo "built: target/debug/zof-approvals-desktop (run scripts/e2e.sh)" >&2
