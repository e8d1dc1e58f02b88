#!/usr/bin/env bash
# The receiver benchmark: 20,000 signed deliveries at concurrency 64 against `serve` (release
# build, durable acks; notifications go to a recording notification server on a private session
# bus), then fills the store to 100,000 events and reports the server's memory.
# Prints numbers; asserts nothing. Usage: scripts/bench.sh [TOTAL_EVENTS]
set -euo pipefail
total=${1:-100000}
cd "$(dirname "$0")/.."
if [ -z "${ZOF_BENCH_INNER:-}" ]; then
  cargo build --release --quiet --bin zof-approvals
  cargo build --release --quiet -p zof-testkit --bin notification-recorder
  ZOF_BENCH_INNER=1 exec dbus-run-session -- bash "$0" "$@"
fi
target/release/notification-recorder --log /dev/null < /dev/null > /dev/null 2>&1 &
bin=target/release/zof-approvals
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
export ZOF_WEBHOOK_SECRET="bench-secret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
source scripts/bench-lib.sh
bench_serve "$bin" "$work" warn
pid=$serve_pid
url=$serve_url
echo "== 20000 deliveries, concurrency 64"
"$bin" send --url "$url" --count 20000 --concurrency 64
rest=$((total - 20000))
if [ "$rest" -gt 0 ]; then
  echo "== filling to $total stored events"
  "$bin" send --url "$url" --count "$rest" --concurrency 64
fi
sleep ${ZOF_BENCH_SETTLE:-2}
echo "== server memory after $total stored events"
grep -E 'VmRSS|VmHWM' "/proc/$pid/status"
du -sh "$work/data" | awk '{print "store on disk: " $1}'
# Acks come first; plans and notifications follow on the outbox worker. Stopping drains it, so
# the inbox afterwards shows whether every acknowledged event reached the queue and was told.
start=$(date +%s.%N)
kill -TERM "$pid"
wait "$pid" || true
echo "== stopped (outbox drained, store flushed) in $(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $start }") s"
"$bin" inbox --data-dir "$work/data" --config-dir "$work/config" --json | python3 -c '
import json, sys
rows = json.load(sys.stdin)
told = sum(1 for r in rows if r["notified_at"])
states = {}
for r in rows:
    states[r["state"]] = states.get(r["state"], 0) + 1
print(f"inbox: {len(rows)} events, states {states}, {told} announced (notification or summary)")'
