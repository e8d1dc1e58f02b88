#!/usr/bin/env bash
# Idle memory measured from outside, the plain way: the desktop app and the hello-world Tauri 2
# app (benches/hello-world) are each launched directly (no WebDriver, no test harness), in turn,
# unconfigured, with a fresh HOME and XDG dirs, on Xvfb and a private session bus, with the same
# CPU renderer (WEBKIT_DISABLE_DMABUF_RENDERER=1, which the app also sets for itself); 12 s after
# launch the PSS of the process and of every descendant (WebKit's) is summed from
# /proc/<pid>/smaps_rollup. Runs alternate between the two apps. Prints each run, the medians and
# the difference; asserts nothing.
#
# scripts/measure-desktop.sh measures the same apps through the end-to-end harness (tauri-driver,
# a configured receiver, a keychain); this one is the measure a user's `ps` or `smem` would give.
#
# Build first, in one profile (default release; `dist` for what the packages ship):
#   scripts/panel.sh
#   cargo build --release -p zof-approvals-desktop --features custom-protocol
#   cargo build --release -p hello-tauri --features custom-protocol   (the baseline for dist too)
# Usage: scripts/measure-memory.sh [RUNS] [PROFILE]      (default 2 release)
# Env:   ZOF_MEMORY_AFTER=12    seconds after launch to sample
#        ZOF_MEMORY_DETAIL=1    also each process's anonymous, file-backed and shared PSS (stderr)
#        ZOF_MEMORY_APP, ZOF_MEMORY_HELLO   other binaries to measure (e.g. an older build)
set -euo pipefail
runs=${1:-2}
profile=${2:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
app=${ZOF_MEMORY_APP:-$target_dir/$profile/zof-approvals-desktop}
hello=${ZOF_MEMORY_HELLO:-$target_dir/$profile/hello-tauri}
# The baseline is the template as built (release); a dist build of it is used only if there is one.
[ -n "${ZOF_MEMORY_HELLO:-}" ] || [ -x "$hello" ] || hello=$target_dir/release/hello-tauri
after=${ZOF_MEMORY_AFTER:-12}
for b in "$app" "$hello"; do
  [ -x "$b" ] || { echo "missing $b (see the build steps at the top of $0)" >&2; exit 2; }
done
if [ -z "${ZOF_MEMORY_INNER:-}" ]; then
  for c in xvfb-run dbus-run-session; do
    command -v "$c" >/dev/null || { echo "needs $c (scripts/deps.sh installs it)" >&2; exit 2; }
  done
  export ZOF_MEMORY_INNER=1
  exec xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- bash "$0" "$@"
fi

# PSS in KiB of $1 and all its descendants.
tree_pss() {
  local pid=$1 total=0 p kb
  for p in $pid $(descendants "$pid"); do
    kb=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}
descendants() {
  local c
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    echo "$c"
    descendants "$c"
  done
}

one() {
  local bin=$1 home pid kb
  home=$(mktemp -d /tmp/zof-memory.XXXXXX)
  mkdir -p "$home/run" && chmod 700 "$home" "$home/run"
  HOME=$home XDG_RUNTIME_DIR=$home/run XDG_CONFIG_HOME=$home/config XDG_DATA_HOME=$home/data \
    XDG_CACHE_HOME=$home/cache XDG_STATE_HOME=$home/state WEBKIT_DISABLE_DMABUF_RENDERER=1 \
    "$bin" >"$home/out" 2>&1 &
  pid=$!
  sleep "$after"
  if kill -0 "$pid" 2>/dev/null; then kb=$(tree_pss "$pid"); else kb=0; fi
  if [ -n "${ZOF_MEMORY_DETAIL:-}" ]; then
    for p in $pid $(descendants "$pid"); do
      awk -v c="$(cat /proc/"$p"/comm 2>/dev/null)" '/^Pss_(Anon|File|Shmem):/ { v[$1] = $2 / 1024 }
        END { printf "  %-16s anon %6.1f  file %6.1f  shmem %6.1f MiB\n", c, v["Pss_Anon:"], v["Pss_File:"], v["Pss_Shmem:"] }' \
        "/proc/$p/smaps_rollup" >&2 2>/dev/null || true
    done
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # WebKit's helpers go with their parent; give them a moment, then make sure.
  sleep 1
  rm -rf "$home"
  echo "$kb"
}

ours=()
theirs=()
for r in $(seq "$runs"); do
  a=$(one "$app")
  h=$(one "$hello")
  ours+=("$a")
  theirs+=("$h")
  awk -v r="$r" -v a="$a" -v h="$h" 'BEGIN { printf "run %d: app %.1f MiB, hello-world %.1f MiB, difference %+.1f MiB\n", r, a / 1024, h / 1024, (a - h) / 1024 }'
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ma=$(median "${ours[@]}")
mh=$(median "${theirs[@]}")
awk -v a="$ma" -v h="$mh" -v p="$profile" -v s="$after" -v n="$runs" \
  'BEGIN { printf "idle PSS %d s after launch (%s, %d runs, medians): app %.1f MiB, hello-world %.1f MiB, difference %+.1f MiB\n", s, p, n, a / 1024, h / 1024, (a - h) / 1024 }'
