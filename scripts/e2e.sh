#!/usr/bin/env bash
# End-to-end test of the desktop app: the real binary and WebKit under Xvfb, driven over WebDriver
# (tauri-driver), on a private D-Bus session bus with an unlocked gnome-keyring and the recording
# notification server. Fresh HOME and XDG dirs each run. Screenshots go to ci-artifacts/screenshots.
#
# Build first: scripts/build-desktop.sh. Then: scripts/e2e.sh
# Env: ZOF_E2E_HELLO_BIN=/abs/path  also measures a hello-world Tauri app the same way.
#      ZOF_E2E_REQUIRE_NOTIFY=0     a missing notification is skipped instead of failing.
#      ZOF_E2E_KEEP=1               keeps the temp dir (app log: tauri-driver*.log) after the run.
#      ZOF_E2E_TRACE=1              prints every WebDriver call.
#      ZOF_E2E_ONLY=failed-start    runs only the "port taken, fix it in Settings" story.
#      ZOF_E2E_ONLY=review          runs only the review-and-decide story (a fake Console, a high-risk
#                                   plan approved in the window through the dialog).
#      ZOF_E2E_ONLY=team-relay      runs only the Settings → Team relay story (a nats-server from
#                                   scripts/deps.sh, a relay, a delivery through it).
#      ZOF_E2E_ONLY=smoke           runs only the smoke story (panel, receiver ready, a signed
#                                   delivery in the queue, a notification): what packages are checked with.
#      ZOF_E2E_APP=/usr/bin/zof-approvals-desktop ZOF_E2E_CLI=/usr/bin/zof-approvals
#                                   other binaries than target/debug's (e.g. an installed package).
# Ends with `N passed, N failed, N skipped`; exit status 1 on any failure. Metrics (launch times,
# memory) go to ci-artifacts/e2e-metrics.json.
set -euo pipefail
export ZOF_E2E_REQUIRE_NOTIFY=${ZOF_E2E_REQUIRE_NOTIFY:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ -z "${ZOF_E2E_INNER:-}" ]; then
  for f in "${ZOF_E2E_APP:-target/debug/zof-approvals-desktop}" "${ZOF_E2E_CLI:-target/debug/zof-approvals}" target/tools/bin/tauri-driver; do
    [ -x "$f" ] || { echo "missing $f: run scripts/build-desktop.sh first" >&2; exit 2; }
  done
  for c in xvfb-run dbus-daemon gnome-keyring-daemon WebKitWebDriver python3; do
    command -v "$c" >/dev/null || { echo "missing $c: run scripts/deps.sh" >&2; exit 2; }
  done
  export ZOF_E2E_INNER=1
  exec xvfb-run -a -s "-screen 0 1280x800x24" bash "$0" "$@"
fi

# --- inside Xvfb ------------------------------------------------------------------------------
T=$(mktemp -d /tmp/zof-e2e.XXXXXX)
display=$DISPLAY
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${ZOF_E2E_KEEP:-}" ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

# Keep the toolchain reachable, then give everything else fresh, private dirs.
export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup} CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
export HOME=$T/home XDG_RUNTIME_DIR=$T/run XDG_CONFIG_HOME=$T/config XDG_DATA_HOME=$T/data XDG_CACHE_HOME=$T/cache
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_CACHE_HOME"
chmod 700 "$HOME" "$XDG_RUNTIME_DIR"

# A private session bus: nothing auto-starts on it (no service dirs), nothing leaks from the host.
cat >"$T/session.conf" <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$XDG_RUNTIME_DIR/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
XML
dbus-daemon --config-file="$T/session.conf" --nofork --print-address=1 >"$T/bus.address" 2>"$T/bus.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$T/bus.address" ] && break; sleep 0.05; done
DBUS_SESSION_BUS_ADDRESS=$(head -n1 "$T/bus.address")
export DBUS_SESSION_BUS_ADDRESS

# gnome-keyring, unlocked without a prompt: no display while it starts (a locked keyring with a
# display would wait on a prompt), the display comes back for the app afterwards.
unset DISPLAY WAYLAND_DISPLAY
keyring_env=$(echo -n e2e-password | gnome-keyring-daemon --unlock --components=secrets)
while IFS= read -r line; do [[ $line == *=* ]] && export "${line?}"; done <<<"$keyring_env"
keyring_pid=$(dbus-send --session --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
  org.freedesktop.DBus.GetConnectionUnixProcessID string:org.freedesktop.secrets 2>/dev/null | awk '{print $2}' || true)
[ -n "$keyring_pid" ] && pids+=("$keyring_pid")
export DISPLAY=$display

# The recording notification server (stdin: a FIFO the test writes `invoke <id> default` to).
if [ -x target/debug/notification-recorder ]; then
  mkfifo "$T/recorder.in"
  target/debug/notification-recorder --log "$T/notifications.jsonl" <"$T/recorder.in" >"$T/recorder.out" 2>"$T/recorder.err" &
  pids+=($!)
  exec 7>"$T/recorder.in"   # hold the FIFO open so the recorder keeps reading
  for _ in $(seq 100); do grep -q '^ready' "$T/recorder.out" 2>/dev/null && break; sleep 0.05; done
  grep -q '^ready' "$T/recorder.out" || { echo "the notification recorder did not start" >&2; cat "$T/recorder.err" >&2; exit 1; }
  export ZOF_E2E_RECORDER_IN=$T/recorder.in ZOF_E2E_NOTIFICATIONS=$T/notifications.jsonl
else
  echo "note: target/debug/notification-recorder missing (cargo build -p zof-testkit): notification steps are skipped" >&2
fi

export ZOF_E2E_TMP=$T ZOF_LOG=${ZOF_LOG:-info} NO_AT_BRIDGE=1
set +e
python3 tests/e2e/desktop_e2e.py
status=$?
set -e
exit $status
