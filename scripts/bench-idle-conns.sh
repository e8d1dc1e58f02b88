#!/usr/bin/env bash
# What idle connections cost deliveries: signed load against `zof-approvals serve` alone, then
# again while IDLE other TCP connections are held open to it, sending nothing. Prints p50/p99 of
# both runs and how many held connections the receiver closed meanwhile (its connection cap
# closes the longest-idle ones at once, its idle deadline the rest after request_timeout_secs).
# Prints numbers; asserts nothing.
# Usage: scripts/bench-idle-conns.sh [IDLE] [COUNT] [CONCURRENCY]
#   ZOF_BENCH_BIN=path   use this binary instead of building target/release/zof-approvals
#   ZOF_BENCH_REOPEN=1   reopen every held connection the receiver closes (a persistent client)
#   ZOF_BENCH_NOFILE=N   start the receiver with an open-file limit of N (1024: a service without
#                        LimitNOFILE), so the held connections can exhaust its descriptors
set -euo pipefail
idle=${1:-5000}
count=${2:-5000}
concurrency=${3:-16}
cd "$(dirname "$0")/.."
bin=${ZOF_BENCH_BIN:-target/release/zof-approvals}
if [ -z "${ZOF_BENCH_BIN:-}" ]; then
  cargo build --release --quiet --bin zof-approvals
fi
# Both ends hold thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((idle + 1024)) ]; then
  echo "the open-file limit ($(ulimit -n)) is too low for $idle connections; raise it (ulimit -Hn)" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
export ZOF_WEBHOOK_SECRET="bench-secret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
if [ -n "${ZOF_BENCH_NOFILE:-}" ]; then serve_wrap=(prlimit "--nofile=$ZOF_BENCH_NOFILE:$ZOF_BENCH_NOFILE"); fi
source scripts/bench-lib.sh
bench_serve "$bin" "$work" warn
base=$serve_base
url=$serve_url
hostport=${base#http://}

load() {
  "$bin" send --url "$url" --count "$count" --concurrency "$concurrency" --json
}

# Holds IDLE connections open, sending nothing; counts those the receiver closes (and reopens
# them with ZOF_BENCH_REOPEN=1). Prints one line once all are open, its counts on SIGTERM.
python3 - "$hostport" "$idle" "${ZOF_BENCH_REOPEN:-0}" >"$work/holder.out" 2>&1 <<'PY' &
import selectors, signal, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
want, reopen = int(sys.argv[2]), sys.argv[3] == "1"
sel = selectors.DefaultSelector()
counts = {"opened": 0, "failed": 0, "closed_by_server": 0}

def open_one():
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
    except OSError:
        counts["failed"] += 1
        return
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    counts["opened"] += 1

def report(*_):
    print(" ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, report)
for _ in range(want):
    open_one()
print("holding", flush=True)
while True:
    for key, _ in sel.select(timeout=1):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(s)
            s.close()
            counts["closed_by_server"] += 1
            if reopen:
                open_one()
PY
holder=$!

alone=$(load)
for _ in $(seq 600); do grep -q '^holding' "$work/holder.out" && break; sleep 0.1; done
crowded=$(load)
kill -TERM "$holder"
wait "$holder" 2>/dev/null || true
python3 - "$alone" "$crowded" "$idle" "$(tail -n 1 "$work/holder.out")" <<'PY'
import json, sys
alone, crowded, idle, holder = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
for name, s in (("alone", alone), (f"{idle} idle held", crowded)):
    print(f"{name:17} p50 {s['p50_ms']:7.2f} ms  p99 {s['p99_ms']:7.2f} ms  max {s['max_ms']:8.2f} ms"
          f"  {s['per_second']:7.0f}/s  accepted {s['accepted']}  errors {s['errors']}")
print(f"held connections: {holder}")
PY
