#!/usr/bin/env bash
# What a durable delivery costs `serve` in CPU, and what it still spends after a burst.
# `serve` (--notifications off, secret from the environment) in a fresh data dir; then
#   1. 20,000 signed deliveries at concurrency 64: serve's CPU time (user + system, from
#      /proc/<pid>/stat) while they are sent, and in the 30 s after, per delivery;
#   2. a burst of 60,000 more: serve's CPU time in the 30 s after the last answer.
# The sender (`zof-approvals send`) runs on the same machine; its CPU is not counted.
# With ZOF_BENCH_PERF=1 the first load is also recorded with `perf record` (call graphs from
# DWARF unwind tables) and summarized: share of samples per thread, and the functions that
# take the most (inclusive), which is what a flame graph of it shows. Prints numbers; asserts nothing.
# Build first: cargo build --release --bin zof-approvals (or --profile dist, what the packages ship).
# Usage: scripts/bench-cpu.sh [PROFILE]     (default release: $CARGO_TARGET_DIR or target/, then <profile>/)
set -euo pipefail
profile=${1:-release}
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/$profile/zof-approvals
[ -x "$bin" ] || { echo "missing $bin: cargo build --profile $profile --bin zof-approvals" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
export ZOF_WEBHOOK_SECRET="bench-secret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
source scripts/bench-lib.sh
bench_serve "$bin" "$work" "${ZOF_LOG:-info}" --notifications off
pid=$serve_pid
url=$serve_url
sleep 1

perf_pid=
if [ "${ZOF_BENCH_PERF:-0}" = 1 ]; then
  command -v perf >/dev/null || { echo "ZOF_BENCH_PERF=1 needs perf (apt-get install linux-perf)" >&2; exit 2; }
  perf record -F 1999 --call-graph dwarf,16384 -o "$work/perf.data" -p "$pid" 2>"$work/perf.err" &
  perf_pid=$!
  sleep 0.5
fi
c0=$(cpu_ms "$pid")
"$bin" send --url "$url" --count 20000 --concurrency 64 --json >"$work/first.json"
c1=$(cpu_ms "$pid")
if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
sleep 30
c2=$(cpu_ms "$pid")
"$bin" send --url "$url" --count 60000 --concurrency 64 --json >"$work/burst.json"
c3=$(cpu_ms "$pid")
# Work acknowledged and not finished yet when the burst's last answer came: the outbox worker
# (at a lower priority than the receiver) writes those plans in the 30 s after.
backlog=$(curl -s "$serve_base/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["detail"]["outbox"])' || echo "?")
sleep 30
c4=$(cpu_ms "$pid")
python3 - "$c0" "$c1" "$c2" "$c3" "$c4" "$work/first.json" "$work/burst.json" "$profile" "$backlog" <<'PY'
import json, sys
c0, c1, c2, c3, c4 = map(float, sys.argv[1:6])
first, burst = (json.load(open(p)) for p in sys.argv[6:8])
n = first["accepted"]
print(f"== serve ({sys.argv[8]}, --notifications off), sender on the same cores")
print(f"20,000 at concurrency 64: {first['per_second']:.0f}/s, p50 {first['p50_ms']:.2f} ms, p99 {first['p99_ms']:.2f} ms, accepted {n}")
print(f"  serve CPU while sending: {c1 - c0:.0f} ms ({(c1 - c0) * 1000 / max(n, 1):.1f} us per delivery)")
print(f"  serve CPU in the 30 s after: {c2 - c1:.0f} ms; in all {(c2 - c0) * 1000 / max(n, 1):.1f} us per delivery")
print(f"burst of 60,000: {burst['per_second']:.0f}/s, accepted {burst['accepted']}, serve CPU {c3 - c2:.0f} ms "
      f"({(c3 - c2) * 1000 / max(burst['accepted'], 1):.1f} us each); in the 30 s after: {(c4 - c3) / 1000:.3f} s")
print(f"  outbox entries still to finish when the burst's last answer came: {sys.argv[9]}")
PY
if [ -n "$perf_pid" ]; then
  echo "== where serve's CPU went during the 20,000 (perf, share of samples)"
  perf report -i "$work/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep '%' | head -12
  echo "-- functions, inclusive (top 40 of ours, hyper's, sled's, the kernel's)"
  perf report -i "$work/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | grep '%' |
    grep -E 'zof_approvals|sled::|hyper::|serde_json|hmac|sha2|\[k\] (tcp_|__x64_sys_|ext4_|do_writepages)' | head -40 | cut -c1-150
fi
