#!/usr/bin/env bash
# The team relay's throughput beside a plain JetStream publisher in the same run, on one node and
# on a 3-node cluster (R3), and the time from the relay taking a delivery to a laptop having it on
# disk. Local nats-servers (scripts/deps.sh installs them; or ZOF_NATS_SERVER), default sync,
# release build.
#   1. plain: `relay-bench` publishes COUNT messages with Nats-Msg-Id, 64 PubAcks awaited at once;
#   2. relay: `send --count COUNT --concurrency 64` against `zof-approvals relay` (verify, publish,
#      PubAck, then 200), and the ratio of the two; first on one node, then on a 3-node JetStream
#      cluster on loopback with both streams at --replicas 3 (each PubAck waits for a quorum);
#   3. latency: 1,000 deliveries at 200/s through the relay to one `serve --relay` laptop (one
#      node); for each, from the relay's Zof-Received-At to the laptop's intake taking it (inbox
#      received_at, before its durable write) and to its plan being announced (inbox notified_at),
#      p50/p99.
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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing listens on $1" >&2; exit 1; }
wait_listening() { for _ in $(seq 1200); do grep -q '^listening on ' "$1" && return; sleep 0.05; done; cat "$1" "$2" >&2; exit 1; }
export ZOF_WEBHOOK_SECRET="bench-secret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
summary=()

# throughput TAG LABEL NATS_URL REPLICAS: the plain publisher, then the relay, against the same
# server(s); leaves the relay running with its webhook URL in $url.
throughput() {
  local tag=$1 label=$2 nats_url=$3 replicas=$4 plain relayed line
  "$bin" relay --listen 127.0.0.1:0 --nats "$nats_url" --replicas "$replicas" >"$work/relay-$tag.out" 2>"$work/relay-$tag.err" &
  relay_pid=$!
  wait_listening "$work/relay-$tag.out" "$work/relay-$tag.err"
  url=$(sed -n 's/^listening on //p' "$work/relay-$tag.out")/webhooks/zof
  echo "== $count deliveries at concurrency 64, $label (file storage, default sync)"
  plain=$("$bin" relay-bench --nats "$nats_url" --count "$count" --concurrency 64 --subject zof.bench.plain --stream BENCH \
    --replicas "$replicas" 2>>"$work/bench.err")
  echo "plain JetStream publisher : $plain"
  relayed=$("$bin" send --url "$url" --count "$count" --concurrency 64 --json)
  echo "through the relay         : $relayed"
  line=$(python3 - "$label" "$plain" "$relayed" <<'PY'
import json, sys
label, plain, relayed = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"{label:<34}: relay {relayed['per_second']:.0f}/s (p50 {relayed.get('p50_ms', 0):.1f} ms, p99 {relayed.get('p99_ms', 0):.1f} ms)"
      f" vs plain {plain['per_second']:.0f}/s = {relayed['per_second'] / plain['per_second']:.2f}")
PY
)
  echo "relay / plain             : $line"
  summary+=("$line")
}

port=$(free_port)
"$nats" -js -sd "$work/js" -p "$port" -a 127.0.0.1 2>"$work/nats.log" &
single_nats=$!
wait_port "$port"
nats_url="nats://127.0.0.1:$port"
throughput single "one nats-server" "$nats_url" 1

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

# R3: three JetStream nodes on loopback in one cluster (as tests/relay's Cluster), both streams
# with three replicas. The single node and its relay stop first, so the cluster has the cores.
kill "$relay_pid" "$single_nats" 2>/dev/null || true
wait "$relay_pid" "$single_nats" 2>/dev/null || true
ports=() routes=() urls=()
for i in 0 1 2; do ports+=("$(free_port)"); routes+=("$(free_port)"); done
for i in 0 1 2; do
  others=()
  for j in 0 1 2; do [ "$j" = "$i" ] || others+=("nats://127.0.0.1:${routes[$j]}"); done
  "$nats" -js -sd "$work/js$i" -p "${ports[$i]}" -a 127.0.0.1 -n "n$i" --cluster_name zof \
    --cluster "nats://127.0.0.1:${routes[$i]}" --routes "$(IFS=,; echo "${others[*]}")" 2>"$work/n$i.log" &
  urls+=("nats://127.0.0.1:${ports[$i]}")
done
for p in "${ports[@]}"; do wait_port "$p"; done
throughput r3 "3-node cluster, --replicas 3" "$(IFS=,; echo "${urls[*]}")" 3

echo "== summary: $count deliveries at concurrency 64, relay vs plain publisher in the same run"
printf '%s\n' "${summary[@]}"
