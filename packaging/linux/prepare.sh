#!/usr/bin/env bash
# What the Tauri bundler needs around compiling the desktop app.
#   prepare.sh         (build.beforeBuildCommand) the panel (ui/dist, embedded in the binary at
#                      compile time), the CLI in the same profile as the app, stripped
#                      (target/packaging/zof-approvals, installed as /usr/bin/zof-approvals), and
#                      the compressed Debian changelog.
#   prepare.sh bundle  (build.beforeBundleCommand) strips the app's binary before it is packaged
#                      (Debian policy; the bundler copies it as cargo left it).
# `tauri build --debug` sets TAURI_ENV_DEBUG=true: the CLI is then a debug build too.
# ZOF_CARGO_PROFILE=dist: the app is built with `tauri build -- --profile dist` (the bundler does
# not tell its hooks which profile it builds): the CLI is built and taken from that profile too.
# ZOF_PREBUILT=1: the panel and both binaries are built already (scripts/package-test.sh's debug
# packages bundle what the test suite built); only the CLI's copy and the changelog are made.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=target/packaging
mkdir -p "$out"
profile=${ZOF_CARGO_PROFILE:-release}
[ "${TAURI_ENV_DEBUG:-false}" = true ] && profile=debug

if [ "${1:-}" = bundle ]; then
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "target/$profile/zof-approvals-desktop"
  exit 0
fi

if [ -z "${ZOF_PREBUILT:-}" ]; then
  bash scripts/panel.sh
  if [ "$profile" = debug ]; then
    cargo build --locked -p zof-approvals --bin zof-approvals
  else
    cargo build --locked --profile "$profile" -p zof-approvals --bin zof-approvals
  fi
fi
install -m 0755 "target/$profile/zof-approvals" "$out/zof-approvals"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$out/zof-approvals"

# -n: no name or time stamp in the header, so the package is reproducible (lintian checks it).
gzip -9nc packaging/linux/changelog >"$out/changelog.gz"
