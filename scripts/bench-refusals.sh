#!/usr/bin/env bash
# What a flood of refusals costs the receiver, side by side with the same number of accepted
# deliveries in the same run: store growth (bytes on disk, after the counters' next write) and the
# CPU time `serve` spent (user + system, from /proc). Release build, notifications off.
# Prints numbers; asserts nothing. Usage: scripts/bench-refusals.sh [COUNT]
set -euo pipefail
count=${1:-20000}
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin zof-approvals
bin=target/release/zof-approvals
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
export ZOF_WEBHOOK_SECRET="bench-secret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
source scripts/bench-lib.sh
bench_serve "$bin" "$work" info --notifications off
url=$serve_url
bytes() { du -sb "$work/data" | cut -f1; }
# The counters are written at most once a second: let the last write land before measuring.
settle() { sleep 2; }
measure() {
  local name=$1
  shift
  settle
  local b0 c0
  b0=$(bytes)
  c0=$(cpu_ms "$serve_pid")
  # `send` exits non-zero when deliveries are refused, which is the point of the first run.
  "$@" >"$work/send.json" || true
  settle
  local b1 c1
  b1=$(bytes)
  c1=$(cpu_ms "$serve_pid")
  awk -v n="$name" -v g=$((b1 - b0)) -v c0="$c0" -v c1="$c1" -v count="$count" -v s="$(cat "$work/send.json")" \
    'BEGIN { printf "%-36s growth %9d bytes   serve CPU %6.0f ms (%5.1f us each)\n    %s\n", n, g, c1 - c0, (c1 - c0) * 1000 / count, s }'
}
echo "== $count deliveries each, concurrency 64, against serve (release, --notifications off)"
measure "$count unsigned (refused, 401)" "$bin" send --url "$url" --count "$count" --concurrency 64 --unsigned --json
measure "$count signed (accepted, durable)" "$bin" send --url "$url" --count "$count" --concurrency 64 --json
echo "== serve's log: $(grep -c 'refused' "$work/serve.err" || true) lines about refusals, $(wc -l <"$work/serve.err") in all (with --notifications off each accepted plan is logged once)"
