#!/usr/bin/env bash
# Installs what is missing, builds Zof Approvals and launches it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked --bin zof-approvals
echo "Starting the Zof Approvals receiver. Keep the webhook secret in ZOF_WEBHOOK_SECRET (or pass --secret-env)." >&2
exec target/release/zof-approvals serve "$@"
