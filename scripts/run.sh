#!/usr/bin/env bash
# Installs what is missing, builds Zof Approvals (the panel, the desktop app, the CLI) and launches
# the desktop app. Arguments are passed to the app (e.g. --hidden to start in the tray).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/panel.sh
# One cargo invocation, one feature set: the core is compiled once for both programs.
cargo build --release --locked -p zof-approvals-desktop -p zof-approvals --features zof-approvals-desktop/custom-protocol
echo "Launching Zof Approvals (the CLI is at target/release/zof-approvals)" >&2
exec target/release/zof-approvals-desktop "$@"
