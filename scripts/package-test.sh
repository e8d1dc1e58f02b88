#!/usr/bin/env bash
# Builds the .deb and the .rpm with the Tauri bundler and tests them as a user would meet them, as
# root on Debian 12: installs the .deb with apt-get, checks its files, validates the desktop entry
# and the AppStream metainfo, runs lintian, runs the installed CLI, runs the installed desktop app
# under Xvfb through the end-to-end smoke story (panel, receiver ready, a signed delivery in the
# queue, a notification), upgrades over it with a newer package and checks the plans are still
# there, removes it and checks the user data stayed, and reads the .rpm's files and metadata.
# Prints how long each step took, then the package sizes, the installed size and the time from
# `apt-get install` to the first notification.
#
# Run: sudo bash scripts/package-test.sh   (it installs and removes the package `zof-approvals`)
# Env: ZOF_PKG_RELEASE=1   packages an optimized build instead of debug: the `dist` profile (fat
#                          LTO, what releases ship; slower), built with `tauri build -- --profile dist`.
#      ZOF_PKG_KEEP=1      keeps the temp dir (packages, logs, the test user's data).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ "$(id -u)" -eq 0 ] || { echo "package-test: run as root (it installs and removes a package)" >&2; exit 2; }

pkg=zof-approvals
version=$(python3 -c 'import json; print(json.load(open("tauri.conf.json"))["version"])')
next_version="${version%.*}.$((${version##*.} + 1))"
profile=debug debug_flag=--debug
[ -n "${ZOF_PKG_RELEASE:-}" ] && profile=dist debug_flag=
# The bundler's hook (packaging/linux/prepare.sh) builds the CLI in the same profile.
export ZOF_CARGO_PROFILE=$profile
bundle_dir=target/$profile/bundle
W=$(mktemp -d /tmp/zof-pkg.XXXXXX)
steps=()
t_start=$SECONDS

cleanup() {
  # Leave the machine as it was: the package is installed only while this script runs.
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -q "$pkg" >/dev/null 2>&1 || true
  fi
  if [ -n "${ZOF_PKG_KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT

step() {
  local name=$1 t0 t1
  shift
  echo "== package: $name"
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  local took
  took=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
  steps+=("$(printf '%-58s %7s s' "$name" "$took")")
  echo "== package: $name took $took s"
}
fail() { echo "FAIL  $*" >&2; exit 1; }
pass() { echo "PASS  $*"; }

# --- the tools ------------------------------------------------------------------------------
tools() {
  bash scripts/deps.sh
  local packages=(desktop-file-utils appstream lintian rpm dpkg-dev) missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # Debug packages bundle what the test suite builds (scripts/test.sh: the same packages and
  # features, so after it this compiles nothing), the smoke story's notification recorder too.
  if [ "$profile" = debug ]; then
    bash scripts/panel.sh
    nice -n 10 cargo build --locked -q --workspace --features zof-approvals-desktop/custom-protocol --all-targets
  else
    nice -n 10 cargo build --locked -q -p zof-testkit --bin notification-recorder
  fi
  [ -x target/tools/bin/tauri-driver ] ||
    nice -n 10 cargo install tauri-driver --version "^2" --locked --root "$root/target/tools"
}

# --- the packages ---------------------------------------------------------------------------
build_packages() {
  # The shell embeds ui/dist at compile time: the bundler's beforeBuildCommand
  # (packaging/linux/prepare.sh) builds it first, and the CLI in the same profile.
  rm -rf "$bundle_dir/deb" "$bundle_dir/rpm"
  if [ "$profile" = debug ]; then
    # Built by `tools` with the panel embedded: bundled as they are.
    TAURI_ENV_DEBUG=true ZOF_PREBUILT=1 bash packaging/linux/prepare.sh
    TAURI_APP_PATH=src-tauri nice -n 10 npx --yes @tauri-apps/cli@^2 bundle $debug_flag --bundles deb,rpm --ci
  else
    TAURI_APP_PATH=src-tauri nice -n 10 npx --yes @tauri-apps/cli@^2 build --bundles deb,rpm --ci -- --profile "$profile"
  fi
  [ -f ui/dist/index.html ] || fail "ui/dist was not built"
  cp "$bundle_dir"/deb/*_"${version}"_amd64.deb "$W/${pkg}_${version}_amd64.deb"
  cp "$bundle_dir"/rpm/*-"${version}"-1.x86_64.rpm "$W/${pkg}-${version}-1.x86_64.rpm"
}

build_newer_deb() {
  # The same build packaged again under the next version: what an update installs over today's.
  # `tauri bundle` takes no cargo profile (it bundles target/release, or target/debug with
  # --debug) and asks `cargo metadata` where target/ is: for `dist`, a target dir whose
  # `release` is target/dist makes it bundle the dist build, into target/dist/bundle.
  local target_dir=
  if [ "$profile" = dist ]; then
    target_dir="$W/dist-target"
    mkdir -p "$target_dir"
    ln -sfn "$root/target/dist" "$target_dir/release"
  fi
  CARGO_TARGET_DIR=${target_dir:-$root/target} TAURI_APP_PATH=src-tauri nice -n 10 \
    npx --yes @tauri-apps/cli@^2 bundle $debug_flag --bundles deb --ci --config "{\"version\":\"$next_version\"}"
  cp "$bundle_dir"/deb/*_"${next_version}"_amd64.deb "$W/${pkg}_${next_version}_amd64.deb"
}

# --- install, files, validators ---------------------------------------------------------------
install_deb() {
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -q "$pkg"
  fi
  t_install=$(date +%s.%N)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$W/${pkg}_${version}_amd64.deb"
  t_installed=$(date +%s.%N)
}

desktop_file="/usr/share/applications/Zof Approvals.desktop"
metainfo=/usr/share/metainfo/ai.zof.approvals.metainfo.xml
unit=/usr/lib/systemd/user/zof-approvals.service
relay_unit=/usr/lib/systemd/system/zof-relay.service
expected_files=(
  /usr/bin/zof-approvals-desktop /usr/bin/zof-approvals "$desktop_file" "$metainfo" "$unit" "$relay_unit"
  /usr/share/doc/zof-approvals/copyright /usr/share/doc/zof-approvals/changelog.gz
)
for s in 16 32 48 64 128 256 512; do
  expected_files+=("/usr/share/icons/hicolor/${s}x${s}/apps/zof-approvals-desktop.png")
done

check_file_list() {
  dpkg -L "$pkg" >"$W/dpkg-L.txt"
  for f in "${expected_files[@]}"; do
    grep -qxF "$f" "$W/dpkg-L.txt" || fail "dpkg -L $pkg does not list $f"
    [ -e "$f" ] || fail "$f is listed but not installed"
  done
  pass "dpkg -L lists the app, the CLI, the desktop entry, 7 icon sizes, the metainfo, the user unit and the relay's system unit"
  [ -x /usr/bin/zof-approvals ] && [ -x /usr/bin/zof-approvals-desktop ] || fail "the binaries are not executable"
  if grep -q '^/etc/systemd/user/.*zof-approvals' "$W/dpkg-L.txt" || ls /etc/systemd/user/*.wants/zof-approvals.service >/dev/null 2>&1; then
    fail "the user unit is enabled by the package"
  fi
  pass "the user unit is installed, not enabled"
  if grep -q '^/etc/systemd/system/.*zof-relay' "$W/dpkg-L.txt" || ls /etc/systemd/system/*.wants/zof-relay.service >/dev/null 2>&1; then
    fail "the relay's system unit is enabled by the package"
  fi
  pass "the relay's system unit is installed, not enabled"
  # Every library the binaries link is a dependency of the package (no unresolved library).
  mkdir -p "$W/shlibs/debian"
  printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$pkg" "$pkg" >"$W/shlibs/debian/control"
  local needed depends missing=()
  needed=$(cd "$W/shlibs" && dpkg-shlibdeps -O /usr/bin/zof-approvals-desktop /usr/bin/zof-approvals 2>/dev/null |
    sed 's/^shlibs:Depends=//' | tr ',' '\n' | awk '{print $1}')
  depends=$(dpkg-query -W -f='${Depends}' "$pkg" | tr ',' '\n' | awk '{print $1}')
  for d in $needed; do grep -qxF "$d" <<<"$depends" || missing+=("$d"); done
  [ ${#missing[@]} -eq 0 ] || fail "linked but not in Depends: ${missing[*]}"
  pass "Depends covers every library the binaries link ($(echo $needed | tr ' ' ','))"
}

validate() {
  desktop-file-validate "$desktop_file" || fail "desktop-file-validate"
  pass "desktop-file-validate: $desktop_file"
  appstreamcli validate --no-net "$metainfo" || fail "appstreamcli validate --no-net"
  pass "appstreamcli validate --no-net: $metainfo"
  if command -v systemd-analyze >/dev/null 2>&1; then
    mkdir -p "$W/run" && chmod 700 "$W/run"
    XDG_RUNTIME_DIR=$W/run systemd-analyze verify --user "$unit" || fail "systemd-analyze verify $unit"
    pass "systemd-analyze verify --user: $unit"
    # The relay's unit names an EnvironmentFile the admin writes; verify reads the unit itself.
    systemd-analyze verify "$relay_unit" || fail "systemd-analyze verify $relay_unit"
    pass "systemd-analyze verify: $relay_unit"
  fi
  # Whatever systemd-analyze can check: the relay unit starts a binary the package installed.
  local relay_exec
  relay_exec=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$relay_unit")
  [ -n "$relay_exec" ] && [ -x "$relay_exec" ] || fail "$relay_unit: ExecStart binary '$relay_exec' is not installed"
  "$relay_exec" relay --help >/dev/null || fail "$relay_exec relay --help"
  pass "$relay_unit starts $relay_exec relay, installed and runnable"
}

run_lintian() {
  # lintian warns against running as root: it reads the package as a user would, nothing else.
  local status=0
  lintian --fail-on error "$W/${pkg}_${version}_amd64.deb" \
    >"$W/lintian.txt" 2>&1 || status=$?
  grep -v "^running with root privileges" "$W/lintian.txt" || true
  [ $status -eq 0 ] || fail "lintian reports errors"
  # The warnings the README lists as accepted, and no other.
  local unexpected
  unexpected=$(grep '^W: ' "$W/lintian.txt" | grep -v ' no-manual-page ' || true)
  [ -z "$unexpected" ] || fail "lintian warnings not accepted in the README: $unexpected"
  pass "lintian: no errors, only the accepted warnings ($(grep -c '^W: ' "$W/lintian.txt" || true))"
}

cli_help() {
  /usr/bin/zof-approvals --help >"$W/help.txt"
  grep -q serve "$W/help.txt" || fail "zof-approvals --help does not mention serve"
  /usr/bin/zof-approvals serve --help >/dev/null
  pass "/usr/bin/zof-approvals --help"
}

smoke() {
  ZOF_E2E_ONLY=smoke ZOF_E2E_APP=/usr/bin/zof-approvals-desktop ZOF_E2E_CLI=/usr/bin/zof-approvals \
    bash scripts/e2e.sh
  notified_at=$(python3 -c 'import json; print(json.load(open("ci-artifacts/e2e-smoke-metrics.json"))["notified_at_unix"])')
}

# --- upgrade and removal, with a user's data ---------------------------------------------------
# A user of our own: fresh HOME and XDG dirs, the secret from the environment (no keychain), no
# notifications (no D-Bus): only the store and the package matter here.
user_env() {
  export HOME=$W/user XDG_DATA_HOME=$W/user/.local/share XDG_CONFIG_HOME=$W/user/.config XDG_STATE_HOME=$W/user/.local/state
  export ZOF_WEBHOOK_SECRET=package-test-secret-0123456789abcdef
  mkdir -p "$XDG_DATA_HOME" "$XDG_CONFIG_HOME" "$XDG_STATE_HOME"
}
plans_in_inbox() {
  /usr/bin/zof-approvals inbox --json | python3 -c '
import json, sys
print(" ".join(sorted({e["plan"] for e in json.load(sys.stdin) if e.get("plan", "").startswith("plan_upgrade_")})))'
}
add_plans() {
  (
    user_env
    /usr/bin/zof-approvals serve --listen 127.0.0.1:0 --secret-env ZOF_WEBHOOK_SECRET --notifications off \
      >"$W/serve.out" 2>"$W/serve.err" &
    serve_pid=$!
    trap 'kill "$serve_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 200); do grep -q '^listening on ' "$W/serve.out" && break; sleep 0.05; done
    local url
    url="$(sed -n 's/^listening on //p' "$W/serve.out")/webhooks/zof"
    [ "$url" != /webhooks/zof ] || { cat "$W/serve.err" >&2; fail "serve did not start"; }
    for i in 1 2 3; do
      /usr/bin/zof-approvals send --url "$url" --plan "plan_upgrade_$i" --json >/dev/null
    done
    kill -TERM "$serve_pid"
    wait "$serve_pid"
    expect_upgrade_plans "before the upgrade"
    pass "three plans sent to the installed serve are in the inbox"
  )
}
# The three plans the upgrade story sent, read with the installed `inbox` (inside user_env).
expect_upgrade_plans() {
  local plans
  plans=$(plans_in_inbox)
  [ "$plans" = "plan_upgrade_1 plan_upgrade_2 plan_upgrade_3" ] || fail "inbox $1: '$plans'"
}
upgrade() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$W/${pkg}_${next_version}_amd64.deb"
  [ "$(dpkg-query -W -f='${Version}' "$pkg")" = "$next_version" ] || fail "the upgrade did not install $next_version"
  (
    user_env
    expect_upgrade_plans "after the upgrade"
  )
  pass "after upgrading $version → $next_version, zof-approvals inbox --json still lists the three plans"
}
remove() {
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -q "$pkg"
  [ ! -e /usr/bin/zof-approvals ] && [ ! -e /usr/bin/zof-approvals-desktop ] || fail "the binaries are still installed"
  (
    user_env
    [ -n "$(ls -A "$XDG_DATA_HOME/zof-approvals" 2>/dev/null)" ] || fail "the user's data went with the package"
  )
  pass "apt-get remove took the binaries and left the user's data in \$XDG_DATA_HOME/zof-approvals"
}

# --- the rpm ------------------------------------------------------------------------------------
check_rpm() {
  local rpm_file="$W/${pkg}-${version}-1.x86_64.rpm"
  rpm -qip "$rpm_file"
  rpm -qlp "$rpm_file" >"$W/rpm-l.txt"
  for f in "${expected_files[@]}"; do
    case $f in /usr/share/doc/zof-approvals/changelog.gz) continue ;; esac
    grep -qxF "$f" "$W/rpm-l.txt" || fail "rpm -qlp does not list $f"
  done
  rpm -qpR "$rpm_file" >"$W/rpm-R.txt"
  for r in 'libwebkit2gtk-4.1.so.0()(64bit)' 'libgtk-3.so.0()(64bit)' 'libdbus-1.so.3()(64bit)'; do
    grep -qxF "$r" "$W/rpm-R.txt" || fail "the rpm does not require $r"
  done
  [ "$(rpm -qp --queryformat '%{NAME} %{VERSION}' "$rpm_file")" = "$pkg $version" ] || fail "rpm name/version"
  pass "rpm -qlp lists the same files; rpm -qip/-qpR: $pkg $version, requires webkit2gtk 4.1, gtk3, dbus"
}

step "tools (deps.sh, validators, recorder, tauri-driver)" tools
step "build .deb and .rpm ($profile; debug: tauri bundle of the tested build, dist: tauri build -- --profile dist)" build_packages
step "bundle the newer .deb ($next_version, tauri bundle)" build_newer_deb
step "apt-get install ./${pkg}_${version}_amd64.deb" install_deb
step "installed app under Xvfb: smoke story" smoke
step "dpkg -L and Depends" check_file_list
step "desktop-file-validate, appstreamcli, systemd-analyze (user and relay units)" validate
step "lintian" run_lintian
step "/usr/bin/zof-approvals --help" cli_help
step "add plans through the installed serve" add_plans
step "upgrade to $next_version, plans still there" upgrade
step "apt-get remove, user data stays" remove
step "rpm -qip / -qlp / -qpR" check_rpm

deb_size=$(stat -c %s "$W/${pkg}_${version}_amd64.deb")
rpm_size=$(stat -c %s "$W/${pkg}-${version}-1.x86_64.rpm")
installed_kib=$(dpkg-deb -f "$W/${pkg}_${version}_amd64.deb" Installed-Size)
mib() { python3 -c "print(f'{$1 / 1048576:.1f}')"; }
echo "== package: steps"
printf '%s\n' "${steps[@]}"
echo "== package: numbers ($profile build)"
echo ".deb                                    $(mib "$deb_size") MiB"
echo ".rpm                                    $(mib "$rpm_size") MiB"
echo "installed size (Installed-Size)         $(mib $((installed_kib * 1024))) MiB"
echo "apt-get install                         $(python3 -c "print(f'{$t_installed - $t_install:.1f}')") s"
echo "apt-get install start → notification    $(python3 -c "print(f'{$notified_at - $t_install:.1f}')") s (install, Xvfb, bus, keyring, app launch, secret, delivery)"
echo "== package: all steps took $((SECONDS - t_start)) s"
