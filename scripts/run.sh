#!/usr/bin/env bash
# Installs what is missing, builds Zof Approvals (the panel, the desktop app, the CLI) and launches
# the desktop app. Arguments are passed to the app (e.g. --hidden to start in the tray).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/panel.sh
cargo build --release --locked -p zof-approvals-desktop --features custom-protocol
cargo build --release --locked -p zof-approvals --bin zof-approvals
echo "Launching Zof Approvals (the CLI is at target/release/zof-approvals)" >&2
exec target/release/zof-approvals-desktop "$@"
