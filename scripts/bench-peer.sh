#!/usr/bin/env bash
# Runs the same signed load against adnanh/webhook (Debian's `webhook`, with a
# payload-hmac-sha256 trigger rule) and against `zof-approvals serve`, and prints both rates.
# Usage: scripts/bench-peer.sh [COUNT] [CONCURRENCY] [PROFILE]
#        (PROFILE: release, built here when missing, or dist; read from $CARGO_TARGET_DIR or target/)
set -euo pipefail
count=${1:-20000}
concurrency=${2:-64}
profile=${3:-release}
cd "$(dirname "$0")/.."
command -v webhook >/dev/null || { echo "install Debian's webhook package first: apt-get install webhook" >&2; exit 2; }
bin=${CARGO_TARGET_DIR:-target}/$profile/zof-approvals
if [ ! -x "$bin" ] && [ "$profile" = release ]; then cargo build --release --quiet --locked --bin zof-approvals; fi
[ -x "$bin" ] || { echo "missing $bin: cargo build --profile $profile --bin zof-approvals" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
export ZOF_WEBHOOK_SECRET="bench-secret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

cat > "$work/hooks.json" <<JSON
[{"id": "zof", "execute-command": "/bin/true", "response-message": "ok",
  "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": "$ZOF_WEBHOOK_SECRET",
                             "parameter": {"source": "header", "name": "X-Zof-Signature"}}}}]
JSON
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
webhook -hooks "$work/hooks.json" -ip 127.0.0.1 -port "$port" >"$work/webhook.log" 2>&1 &
webhook_pid=$!
for _ in $(seq 50); do curl -s "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done

source scripts/bench-lib.sh
bench_serve "$bin" "$work" warn
ours=$serve_url

# CPU time (ticks) of a process and its children so far.
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
# webhook answers before its command has run: wait until the commands it still runs are done,
# so they do not take the CPU from the next measurement.
wait_idle() {
  local before after
  after=$(cpu_ticks "$1")
  for _ in $(seq 60); do
    sleep 0.5
    before=$after
    after=$(cpu_ticks "$1")
    [ "$after" = "$before" ] && return
  done
}
wait_idle "$serve_pid"
p0=$(cpu_ticks "$webhook_pid")
peer_json=$("$bin" send --url "http://127.0.0.1:$port/hooks/zof" --count "$count" --concurrency "$concurrency" --json)
wait_idle "$webhook_pid"
p1=$(cpu_ticks "$webhook_pid")
o0=$(cpu_ticks "$serve_pid")
ours_json=$("$bin" send --url "$ours" --count "$count" --concurrency "$concurrency" --json)
# Until serve's outbox worker has caught up (it writes the plans after the acks).
wait_idle "$serve_pid"
o1=$(cpu_ticks "$serve_pid")
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")
python3 - "$peer_json" "$ours_json" "$rss_kb" "$((p1 - p0))" "$((o1 - o0))" "$(getconf CLK_TCK)" "$profile" <<'PY'
import json, sys
peer, ours, rss = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
ticks = {"adnanh/webhook": int(sys.argv[4]), "zof-approvals": int(sys.argv[5])}
hz = int(sys.argv[6])
print(f"zof-approvals built with the {sys.argv[7]} profile")
for name, s in (("adnanh/webhook", peer), ("zof-approvals", ours)):
    cpu_us = ticks[name] * 1e6 / hz / max(s['accepted'], 1)
    print(f"{name:15} {s['per_second']:9.0f}/s  accepted {s['accepted']:6}  rejected {s['rejected']}  errors {s['errors']}  "
          f"p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  CPU {cpu_us:.0f} us per delivery")
print(f"ratio (zof-approvals / webhook): {ours['per_second'] / max(peer['per_second'], 1e-9):.2f}")
print(f"zof-approvals peak RSS: {rss / 1024:.1f} MiB (durable: each ack waits for its fsync; webhook stores nothing)")
print("(CPU: user + system of the process and its waited-for children, until each was idle again: webhook runs")
print(" /bin/true for every hook; serve's count includes its outbox worker writing the plans after the acks)")
PY
