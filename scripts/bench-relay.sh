#!/usr/bin/env bash
# The team relay's throughput beside a plain JetStream publisher in the same run, and the time
# from the relay taking a delivery to a laptop having it on disk. One local nats-server
# (scripts/deps.sh installs it; or ZOF_NATS_SERVER), default sync, release build.
#   1. plain: `relay-bench` publishes COUNT messages with Nats-Msg-Id, 64 PubAcks awaited at once;
#   2. relay: `send --count COUNT --concurrency 64` against `zof-approvals relay` (verify, publish,
#      PubAck, then 200), and the ratio of the two;
#   3. latency: 1,000 deliveries at 200/s through the relay to one `serve --relay` laptop; for each,
#      from the relay's Zof-Received-At to the laptop's intake taking it (inbox received_at, before
#      its durable write) and to its plan being announced (inbox notified_at), p50/p99.
# Prints numbers; asserts nothing. Usage: scripts/bench-relay.sh [COUNT]
set -euo pipefail
count=${1:-20000}
cd "$(dirname "$0")/.."
nats=${ZOF_NATS_SERVER:-target/tools/nats-venv/bin/nats-server}
[ -x "$nats" ] || { echo "nats-server not found: run scripts/deps.sh, or set ZOF_NATS_SERVER" >&2; exit 1; }
if [ -z "${ZOF_BENCH_BIN:-}" ]; then cargo build --release --quiet --bin zof-approvals; fi
bin=${ZOF_BENCH_BIN:-target/release/zof-approvals}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$nats" -js -sd "$work/js" -p "$port" -a 127.0.0.1 2>"$work/nats.log" &
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
nats_url="nats://127.0.0.1:$port"
export ZOF_WEBHOOK_SECRET="bench-secret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
wait_listening() { for _ in $(seq 200); do grep -q '^listening on ' "$1" && return; sleep 0.05; done; cat "$1" "$2" >&2; exit 1; }
"$bin" relay --listen 127.0.0.1:0 --nats "$nats_url" >"$work/relay.out" 2>"$work/relay.err" &
wait_listening "$work/relay.out" "$work/relay.err"
url=$(sed -n 's/^listening on //p' "$work/relay.out")/webhooks/zof

echo "== $count deliveries at concurrency 64, one nats-server (file storage, default sync)"
plain=$("$bin" relay-bench --nats "$nats_url" --count "$count" --concurrency 64 --subject zof.bench.plain --stream BENCH 2>>"$work/bench.err")
echo "plain JetStream publisher : $plain"
relayed=$("$bin" send --url "$url" --count "$count" --concurrency 64 --json)
echo "through the relay         : $relayed"
python3 - "$plain" "$relayed" <<'PY'
import json, sys
plain, relayed = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"relay / plain             : {relayed['per_second']:.0f}/s vs {plain['per_second']:.0f}/s = {relayed['per_second'] / plain['per_second']:.2f}")
PY

echo "== 1,000 deliveries at 200/s through the relay to a laptop"
"$bin" serve --listen 127.0.0.1:0 --secret-env ZOF_WEBHOOK_SECRET --notifications off --data-dir "$work/laptop/data" \
  --config-dir "$work/laptop/config" --relay "$nats_url" --consumer bench_laptop >"$work/laptop.out" 2>"$work/laptop.err" &
laptop=$!
wait_listening "$work/laptop.out" "$work/laptop.err"
laptop_url=$(sed -n 's/^listening on //p' "$work/laptop.out")
# The laptop first catches up with the throughput run's deliveries.
for _ in $(seq 1200); do
  curl -s "$laptop_url/healthz" | grep -q '"pending":0,"state":"connected"' && [ "$(curl -s "$laptop_url/healthz" | grep -c '"outbox":0')" = 1 ] && break
  sleep 0.1
done
"$bin" send --url "$url" --count 1000 --concurrency 8 --rate 200 --json --acked-out "$work/latency-ids" >/dev/null
sleep 2
kill -TERM "$laptop"
wait "$laptop" || true
"$bin" inbox --data-dir "$work/laptop/data" --config-dir "$work/laptop/config" --json >"$work/inbox.json"
"$bin" relay-bench --nats "$nats_url" --received-times >"$work/relayed.txt" 2>>"$work/bench.err"
python3 - "$work/latency-ids" "$work/inbox.json" "$work/relayed.txt" <<'PY'
import json, sys
from datetime import datetime
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00"))
ids = set(open(sys.argv[1]).read().split())
rows = {r["id"]: r for r in json.load(open(sys.argv[2]))}
relayed = dict(line.split() for line in open(sys.argv[3]) if line.strip())
def report(name, field):
    ms = sorted((t(rows[i][field]) - t(relayed[i])).total_seconds() * 1000
                for i in ids if i in relayed and rows.get(i, {}).get(field))
    if not ms:
        print(f"{name}: none")
        return
    p = lambda q: ms[min(len(ms) - 1, int(len(ms) * q))]
    print(f"{name}: {len(ms)} of {len(ids)} acknowledged, p50 {p(0.5):.1f} ms  p99 {p(0.99):.1f} ms  max {ms[-1]:.1f} ms")
report("relay took it -> laptop intake took it ", "received_at")
report("relay took it -> plan announced (Notify)", "notified_at")
PY
