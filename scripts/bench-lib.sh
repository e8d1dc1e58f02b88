# Sourced by the benchmark scripts: `serve` on a free loopback port, and a process's CPU time.

# bench_serve BIN WORK LOG_LEVEL [SERVE ARGS...]: starts `BIN serve` (the webhook secret from
# $ZOF_WEBHOOK_SECRET, data and config under WORK, output in WORK/serve.out and WORK/serve.err),
# prefixed by the command in the array `serve_wrap` when it is set (e.g. prlimit), and waits until
# it listens. Sets serve_pid, serve_base (http://127.0.0.1:PORT) and serve_url (the webhook URL).
bench_serve() {
  local bin=$1 work=$2 level=$3
  shift 3
  ZOF_LOG=$level ${serve_wrap[@]+"${serve_wrap[@]}"} "$bin" serve --listen 127.0.0.1:0 \
    --secret-env ZOF_WEBHOOK_SECRET --data-dir "$work/data" --config-dir "$work/config" "$@" \
    >"$work/serve.out" 2>"$work/serve.err" &
  serve_pid=$!
  for _ in $(seq 100); do grep -q '^listening on ' "$work/serve.out" && break; sleep 0.05; done
  serve_base=$(sed -n 's/^listening on //p' "$work/serve.out")
  [ -n "$serve_base" ] || { echo "serve did not start:" >&2; cat "$work/serve.err" >&2; exit 1; }
  serve_url=$serve_base/webhooks/zof
}

# cpu_ms PID: the user + system CPU time PID has used so far, in milliseconds.
cpu_ms() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / t}' "/proc/$1/stat"; }
