#!/usr/bin/env bash
# Measures the desktop app in a RELEASE build against a hello-world Tauri 2 app, both launched the
# same way by the end-to-end harness (scripts/e2e.sh + tests/e2e/desktop_e2e.py: Xvfb, private
# session bus, unlocked gnome-keyring, recording notification server, tauri-driver/WebKitWebDriver).
# Prints min / median / max over the runs of: launch -> receiver answers /healthz, launch -> window
# shown, idle PSS (app + its WebKit processes) at launch, relaunched over the 1,002 plans the
# story stored, and at the end of the story (after 1,000 more plans, screenshots, every view).
# The hello-world app is measured twice: as built (WebKit's defaults, the GPU/DMA-BUF renderer) and
# with WEBKIT_DISABLE_DMABUF_RENDERER=1, the CPU renderer this app selects for itself.
#
# The hello-world app is benches/hello-world (package `hello-tauri`, a workspace member): what
# create-tauri-app's vanilla template gives (one 800x600 window, a "Welcome to Tauri" page with its
# own assets, a `greet` command, the opener plugin), on the same tauri as src-tauri/ (one
# Cargo.lock) and built with the same release profile as the app. Unless ZOF_MEASURE_HELLO_BIN
# names another binary, this script builds it first (a no-op when it is up to date):
#   cargo build --release --locked -p hello-tauri --features custom-protocol
#
# The harness hard-codes target/debug/* and writes ci-artifacts/ next to itself, and has no switch
# for another profile. So each run copies the harness and the release binaries into a temp tree
# laid out like the repo (release binaries under target/debug/ there) and runs it from there: the
# default debug flow and the repo's ci-artifacts/ are left untouched, and a rebuild of target/
# during the runs cannot change the binaries being measured.
#
# Build first (release):
#   (cd ui && npm ci && npm run build)
#   cargo build --release -p zof-approvals-desktop --features custom-protocol
#   cargo build --release -p zof-approvals --bin zof-approvals
#   cargo build -p zof-testkit --bin notification-recorder        # debug is fine
#   target/tools/bin/tauri-driver                                 # see scripts/build-desktop.sh
#   (the hello-world app: built by this script, see above)
#
# Usage: scripts/measure-desktop.sh [RUNS] [PROFILE]   (default 3 release; `dist` measures what the
#        packages ship: target/dist/zof-approvals-desktop, with the CLI from target/dist/ if built
#        there, else from target/release/, and the release hello-world app)
# Env:   ZOF_MEASURE_HELLO_BIN=/abs/path   another hello-world binary, used as given (default: build
#                                          benches/hello-world and use target/release/hello-tauri)
#        ZOF_MEASURE_OUT=DIR               where per-run metrics and logs go (default: a new /tmp dir)
# Asserts nothing: the exit status is 0 once the table is printed, even if a story check failed
# (the per-run pass/fail counts are printed with it).
set -euo pipefail
runs=${1:-3}
profile=${2:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
app=target/$profile/zof-approvals-desktop
cli=target/$profile/zof-approvals
[ -x "$cli" ] || cli=target/release/zof-approvals
rec=target/debug/notification-recorder
[ -x "$rec" ] || rec=target/release/notification-recorder
for f in "$app" "$cli" "$rec" target/tools/bin/tauri-driver; do
  [ -x "$f" ] || { echo "missing $f (see the build steps at the top of $0)" >&2; exit 2; }
done
if [ -n "${ZOF_MEASURE_HELLO_BIN:-}" ]; then
  hello=$ZOF_MEASURE_HELLO_BIN
else
  echo "building the hello-world baseline (benches/hello-world, release)" >&2
  cargo build --release --locked -p hello-tauri --features custom-protocol >&2
  hello=target/release/hello-tauri
fi
[ -x "$hello" ] || { echo "missing $hello (ZOF_MEASURE_HELLO_BIN)" >&2; exit 2; }

out=${ZOF_MEASURE_OUT:-$(mktemp -d /tmp/zof-measure.XXXXXX)}
mkdir -p "$out"
tree=$(mktemp -d /tmp/zof-measure-tree.XXXXXX)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/scripts" "$tree/tests/e2e" "$tree/target/debug" "$tree/target/tools/bin" "$tree/hello"
cp scripts/e2e.sh "$tree/scripts/"
cp tests/e2e/desktop_e2e.py "$tree/tests/e2e/"
cp "$app" "$tree/target/debug/zof-approvals-desktop"
cp "$cli" "$tree/target/debug/zof-approvals"
cp "$rec" "$tree/target/debug/notification-recorder"
cp target/tools/bin/tauri-driver "$tree/target/tools/bin/"
cp "$hello" "$tree/hello/$(basename "$hello")"

{
  # The binaries may predate HEAD: this is the tree at measurement time, not at build time.
  echo "repo HEAD now: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  for f in "$app" "$cli" "$hello"; do
    echo "$f: $(stat -c '%s bytes, built %y' "$f")"
  done
} >"$out/binaries.txt"
cat "$out/binaries.txt" >&2

for i in $(seq "$runs"); do
  # Timings are sensitive to other load on the machine (2 cores): note it with each run.
  echo "== run $i/$runs (log: $out/run-$i.log; load average before: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  rm -rf "$tree/ci-artifacts"
  set +e
  ZOF_E2E_HELLO_BIN="$tree/hello/$(basename "$hello")" bash "$tree/scripts/e2e.sh" >"$out/run-$i.log" 2>&1
  status=$?
  set -e
  tail -n 1 "$out/run-$i.log" | sed 's/^/   /' >&2
  if [ -f "$tree/ci-artifacts/e2e-metrics.json" ]; then
    cp "$tree/ci-artifacts/e2e-metrics.json" "$out/run-$i.json"
  else
    echo "   run $i (status $status) wrote no metrics" >&2
  fi
done

python3 - "$out" "$runs" "$profile" <<'PY'
import json, os, statistics, sys

out, runs, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = []
for i in range(1, runs + 1):
    p = os.path.join(out, f"run-{i}.json")
    if os.path.exists(p):
        with open(p) as f:
            data.append(json.load(f))
if not data:
    sys.exit("no metrics from any run")


def vals(key, sub=None, scale=1.0):
    v = []
    for m in data:
        x = m.get(key)
        if sub is not None:
            x = sum(val for k, val in (x or {}).items() if k.startswith(sub)) if x else None
        if isinstance(x, (int, float)):
            v.append(x * scale)
    return v


def cell(v, fmt):
    if not v:
        return "—"
    return "/".join(fmt.format(x) for x in (min(v), statistics.median(v), max(v)))


ms = lambda k: cell(vals(k, scale=1000), "{:.0f}")
mib = lambda k, sub=None: cell(vals(k, sub), "{:.1f}")
statuses = sorted({m.get("receiver_first_status") for m in data if m.get("receiver_first_status") is not None})

H, C = "hello", "hello_cpu"
rows = [
    ("launch -> receiver answers /healthz (ms)", ms("receiver_answered_s"), "—", "—", "< 300"),
    ("launch -> WebDriver session up (ms)", ms("session_up_s"), ms(H + "_session_up_s"), ms(C + "_session_up_s"), ""),
    ("launch -> window shown (ms)", ms("window_shown_s"), ms(H + "_window_shown_s"), ms(C + "_window_shown_s"), "< 1500"),
    ("idle PSS at launch, total (MiB)", mib("app_pss_mib_at_launch"), mib(H + "_pss_mib"), mib(C + "_pss_mib"), "app <= hello + 40 MB"),
    ("  app process", mib("app_pss_mib_by_process_at_launch", "zof-approvals"), mib(H + "_pss_mib_by_process", "hello"),
     mib(C + "_pss_mib_by_process", "hello"), ""),
    ("  WebKitWebProcess", mib("app_pss_mib_by_process_at_launch", "WebKitWebPro"), mib(H + "_pss_mib_by_process", "WebKitWebPro"),
     mib(C + "_pss_mib_by_process", "WebKitWebPro"), ""),
    ("  WebKitNetworkProcess", mib("app_pss_mib_by_process_at_launch", "WebKitNetwork"), mib(H + "_pss_mib_by_process", "WebKitNetwork"),
     mib(C + "_pss_mib_by_process", "WebKitNetwork"), ""),
    ("idle PSS relaunched over 1,002 plans (MiB)", mib("app_pss_mib_relaunched"), mib(H + "_pss_mib"), mib(C + "_pss_mib"), "app <= hello + 40 MB"),
    ("  app process", mib("app_pss_mib_by_process_relaunched", "zof-approvals"), "", "", ""),
    ("  WebKitWebProcess", mib("app_pss_mib_by_process_relaunched", "WebKitWebPro"), "", "", ""),
    ("  WebKitNetworkProcess", mib("app_pss_mib_by_process_relaunched", "WebKitNetwork"), "", "", ""),
    ("idle PSS after the whole story (MiB)", mib("app_pss_mib"), "(n/a)", "(n/a)", "(screenshots, every view)"),
    ("  app process", mib("app_pss_mib_by_process", "zof-approvals"), "", "", ""),
    ("  WebKitWebProcess", mib("app_pss_mib_by_process", "WebKitWebPro"), "", "", ""),
    ("  WebKitNetworkProcess", mib("app_pss_mib_by_process", "WebKitNetwork"), "", "", ""),
]
heads = ("", f"zof-approvals ({profile})", "hello-world, WebKit defaults", "hello-world, CPU renderer like ours", "target")
widths = [max(len(r[i]) for r in rows + [heads]) for i in range(4)]
print(f"\n{len(data)} run(s); each cell: min/median/max. Metrics: {out}/run-N.json")
print(f"{heads[0]:<{widths[0]}}  " + "  ".join(f"{heads[i]:>{widths[i]}}" for i in (1, 2, 3)) + f"  {heads[4]}")
for r in rows:
    print(f"{r[0]:<{widths[0]}}  " + "  ".join(f"{r[i]:>{widths[i]}}" for i in (1, 2, 3)) + f"  {r[4]}")
print(f"first /healthz status at launch: {statuses} (503 = answering, not ready: no secret on first run)")
for hk, hl in ((H + "_pss_mib", "hello-world app's (WebKit defaults)"), (C + "_pss_mib", "hello-world app's (CPU renderer, like ours)")):
    hello_idle = vals(hk)
    if not hello_idle:
        continue
    h = statistics.median(hello_idle)
    for k, label in (("app_pss_mib_at_launch", "at launch"), ("app_pss_mib_relaunched", "relaunched over 1,002 plans"),
                     ("app_pss_mib", "after the whole story")):
        v = vals(k)
        if v:
            print(f"memory {label}: median {statistics.median(v) - h:+.1f} MiB over the {hl} idle median")
PY
for i in $(seq "$runs"); do
  if [ -f "$out/run-$i.log" ]; then
    echo "run $i: $(grep -E '^[0-9]+ passed' "$out/run-$i.log" || echo 'no summary line')"
  fi
done
