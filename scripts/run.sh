#!/usr/bin/env bash
# Installs what is missing, builds Zof Approvals (the panel, the desktop app, the CLI) and launches
# the desktop app. Arguments are passed to the app (e.g. --hidden to start in the tray).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/panel.sh
# Both invocations name the same packages and features, so cargo resolves one feature set and the
# core is compiled once: the first builds what the window needs, the second only the CLI's own code.
build=(cargo build --release --locked -p zof-approvals-desktop -p zof-approvals
  --features zof-approvals-desktop/custom-protocol)
"${build[@]}" --bin zof-approvals-desktop
echo "Launching Zof Approvals; the CLI builds meanwhile" >&2
target/release/zof-approvals-desktop "$@" &
app=$!
trap 'kill "$app" 2>/dev/null' INT TERM
if nice -n 10 "${build[@]}" --bin zof-approvals --quiet; then
  echo "The CLI is at target/release/zof-approvals" >&2
else
  echo "The CLI did not build (the app runs on); build it with: ${build[*]} --bin zof-approvals" >&2
fi
wait "$app"
