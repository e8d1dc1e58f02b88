#!/usr/bin/env bash
# Builds the desktop app with the panel embedded (debug profile: faster), the CLI and the
# notification recorder the end-to-end test uses, and installs tauri-driver if it is missing.
# Then: scripts/e2e.sh. For packages: TAURI_APP_PATH=src-tauri npx --yes @tauri-apps/cli@^2 build --bundles deb,rpm
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/deps.sh
echo "== panel (ui/): npm ci, build" >&2
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build)
echo "== desktop app, CLI, notification recorder" >&2
cargo build --locked -p zof-approvals-desktop --features custom-protocol
cargo build --locked -p zof-approvals --bin zof-approvals
if [ -f testkit/Cargo.toml ]; then
  cargo build --locked -p zof-testkit --bin notification-recorder
fi
if [ ! -x target/tools/bin/tauri-driver ]; then
  echo "== tauri-driver" >&2
  cargo install tauri-driver --version "^2" --locked --root "$root/target/tools"
fi
echo "built: target/debug/zof-approvals-desktop (run scripts/e2e.sh)" >&2
