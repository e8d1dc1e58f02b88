#!/usr/bin/env bash
# Idle wakeups: how often the app's own threads wake while nothing happens. Starts
# `zof-approvals serve` idle with a webhook secret configured and, when a display can be made
# (Xvfb), the desktop app idle too, one after the other; lets each settle, then samples the
# context switches (voluntary + involuntary) of every thread of the process from
# /proc/<pid>/task/*/status and prints wakeups per second per thread name and in total. Child
# processes (WebKit's) are not counted: only the app's own process.
#
# With xvfb-run, dbus-daemon and gnome-keyring-daemon installed (scripts/deps.sh), everything runs
# under Xvfb on a private session bus with an unlocked gnome-keyring (as scripts/e2e.sh does), the
# secret in the keychain, in fresh HOME and XDG dirs. Without them only `serve` is measured, with
# the secret from an environment variable (--secret-env) and notifications off.
#
# Build first: cargo build --release -p zof-approvals --bin zof-approvals (and, for the desktop
# app, scripts/panel.sh + cargo build --release -p zof-approvals-desktop --features custom-protocol).
# Usage: scripts/measure-idle.sh [release|debug|dist]       (default release: target/<profile>/)
# Env:   ZOF_IDLE_SECS=60      how long to sample (a shorter run: ZOF_IDLE_SECS=10)
#        ZOF_IDLE_SETTLE=15    how long each process idles before sampling starts
#        ZOF_IDLE_DESKTOP=0    measures `serve` only
#        ZOF_IDLE_SERVE=0      measures the desktop app only
# Prints numbers, asserts nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
profile=${1:-release}
target_dir=${CARGO_TARGET_DIR:-$root/target}
cli=$target_dir/$profile/zof-approvals
app=$target_dir/$profile/zof-approvals-desktop
secs=${ZOF_IDLE_SECS:-60}
settle=${ZOF_IDLE_SETTLE:-15}
[ -x "$cli" ] || { echo "missing $cli (see the build steps at the top of $0)" >&2; exit 2; }

if [ -z "${ZOF_IDLE_INNER:-}" ]; then
  have_session=1
  for c in xvfb-run dbus-daemon dbus-run-session gnome-keyring-daemon; do
    command -v "$c" >/dev/null || have_session=0
  done
  if [ "$have_session" = 1 ]; then
    export ZOF_IDLE_INNER=session
    T=$(mktemp -d /tmp/zof-idle-bus.XXXXXX)
    trap 'rm -rf "$T"' EXIT
    # A private session bus: no service directories, so nothing is started on demand.
    cat >"$T/session.conf" <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=$T</listen>
  <auth>EXTERNAL</auth>
  <policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy>
</busconfig>
XML
    xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session --config-file="$T/session.conf" -- bash "$0" "$@"
    exit $?
  fi
  export ZOF_IDLE_INNER=plain
fi

T=$(mktemp -d /tmp/zof-idle.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

# Fresh, private dirs (the toolchain stays reachable for nothing here, but keep the user's data out).
export HOME=$T/home XDG_RUNTIME_DIR=$T/run XDG_CONFIG_HOME=$T/config XDG_DATA_HOME=$T/data \
  XDG_CACHE_HOME=$T/cache XDG_STATE_HOME=$T/state
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME/zof-approvals" "$XDG_DATA_HOME" "$XDG_CACHE_HOME" "$XDG_STATE_HOME"
chmod 700 "$HOME" "$XDG_RUNTIME_DIR"
secret=idle-measurement-secret-0123456789

serve_args=(serve --listen 127.0.0.1:0)
if [ "$ZOF_IDLE_INNER" = session ]; then
  # gnome-keyring, unlocked without a prompt: no display while it starts.
  display=${DISPLAY:-}
  unset DISPLAY WAYLAND_DISPLAY
  keyring_env=$(echo -n idle-password | gnome-keyring-daemon --unlock --components=secrets)
  while IFS= read -r line; do [[ $line == *=* ]] && export "${line?}"; done <<<"$keyring_env"
  keyring_pid=${GNOME_KEYRING_PID:-}
  [ -n "$keyring_pid" ] && pids+=("$keyring_pid")
  printf '%s' "$secret" | "$cli" secret set >/dev/null 2>&1
  [ -n "$display" ] && export DISPLAY=$display
  echo "session: Xvfb ${DISPLAY:-none}, private bus, gnome-keyring (secret in the keychain)" >&2
else
  export ZOF_IDLE_SECRET=$secret
  serve_args+=(--secret-env ZOF_IDLE_SECRET --notifications off)
  echo "no Xvfb/bus/keyring: serve only, secret from the environment, notifications off" >&2
fi

# Context switches of every thread of $1, one line per thread: tid name voluntary involuntary.
snapshot() {
  local pid=$1 task name v n
  for task in /proc/"$pid"/task/*; do
    name=$(tr ' ' '_' <"$task/comm" 2>/dev/null) || continue
    v=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status" 2>/dev/null) || continue
    n=$(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$task/status" 2>/dev/null) || continue
    [ -n "$v" ] && echo "${task##*/} $name $v $n"
  done
}

# Samples $1 for $secs seconds and prints wakeups/s per thread name (threads that share a name
# are summed; a thread that started or ended meanwhile counts what it did while both samples saw
# it, or from 0 when it started).
measure() {
  local label=$1 pid=$2
  echo "$label: pid $pid, settling ${settle}s, then sampling ${secs}s" >&2
  sleep "$settle"
  snapshot "$pid" >"$T/before"
  sleep "$secs"
  snapshot "$pid" >"$T/after"
  kill -0 "$pid" 2>/dev/null || { echo "$label exited during the measurement" >&2; return 1; }
  echo "$label: wakeups per second over ${secs} s (voluntary + involuntary context switches)"
  awk -v secs="$secs" '
    NR == FNR { before[$1] = $3 + $4; next }
    { d = $3 + $4 - (($1 in before) ? before[$1] : 0); sum[$2] += d; threads[$2]++; total += d }
    END {
      for (name in sum) printf "  %-24s %3d thread%s %8.2f/s\n", name, threads[name], (threads[name] > 1 ? "s" : " "), sum[name] / secs
      printf "~ %-24s %3s         %8.2f/s\n", "TOTAL", "", total / secs
    }' "$T/before" "$T/after" | sort -k4,4 -g -r | sed 's/^~ /  /'
}

if [ "${ZOF_IDLE_SERVE:-1}" != 0 ]; then
  "$cli" "${serve_args[@]}" --data-dir "$T/serve-data" >"$T/serve.out" 2>"$T/serve.err" &
  serve_pid=$!
  pids+=("$serve_pid")
  for _ in $(seq 200); do grep -q "listening on" "$T/serve.out" 2>/dev/null && break; sleep 0.05; done
  grep -q "listening on" "$T/serve.out" || { echo "serve did not start:" >&2; cat "$T/serve.err" >&2; exit 1; }
  measure "serve ($profile)" "$serve_pid"
  kill -TERM "$serve_pid"
  wait "$serve_pid" 2>/dev/null || true
fi

if [ "$ZOF_IDLE_INNER" = session ] && [ "${ZOF_IDLE_DESKTOP:-1}" != 0 ]; then
  if [ ! -x "$app" ]; then
    echo "no $app: the desktop app is not measured" >&2
    exit 0
  fi
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf '{"listen": "127.0.0.1:%s"}\n' "$port" >"$XDG_CONFIG_HOME/zof-approvals/settings.json"
  "$app" >"$T/app.out" 2>"$T/app.err" &
  app_pid=$!
  pids+=("$app_pid")
  for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.1
  done
  measure "desktop app ($profile)" "$app_pid"
fi
