#!/usr/bin/env bash
# Installs what is missing, builds Zof Approvals and launches it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked --bin zof-approvals
echo "Starting the Zof Approvals receiver. Store the webhook secret first: target/release/zof-approvals secret set" >&2
exec target/release/zof-approvals serve "$@"
