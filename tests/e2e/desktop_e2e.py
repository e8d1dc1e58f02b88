#!/usr/bin/env python3
"""End-to-end story of the Zof Approvals desktop app, told through WebDriver (tauri-driver).

Run by scripts/e2e.sh inside Xvfb, with a private session bus, an unlocked gnome-keyring and
the recording notification server already up; standard library only. Prints one line per
check and ends with `N passed, N failed` (exit status 1 on any failure).
"""

import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# ZOF_E2E_APP / ZOF_E2E_CLI: other binaries, e.g. the ones a package installed in /usr/bin.
APP = os.environ.get("ZOF_E2E_APP") or os.path.join(ROOT, "target", "debug", "zof-approvals-desktop")
CLI = os.environ.get("ZOF_E2E_CLI") or os.path.join(ROOT, "target", "debug", "zof-approvals")
DRIVER = os.path.join(ROOT, "target", "tools", "bin", "tauri-driver")
NATIVE_DRIVER = shutil.which("WebKitWebDriver") or "/usr/bin/WebKitWebDriver"
SHOTS = os.path.join(ROOT, "ci-artifacts", "screenshots")
TMP = os.environ.get("ZOF_E2E_TMP") or "/tmp"
RECORDER_IN = os.environ.get("ZOF_E2E_RECORDER_IN")
NOTIFICATIONS = os.environ.get("ZOF_E2E_NOTIFICATIONS")
# Set once the app notifies natively: then a missing notification fails instead of being skipped.
REQUIRE_NOTIFY = os.environ.get("ZOF_E2E_REQUIRE_NOTIFY") == "1"
TRACE = os.environ.get("ZOF_E2E_TRACE") == "1"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
TAB, ENTER, CONTROL = "\ue004", "\ue007", "\ue009"
SECRET_1 = "e2e-first-secret-0123456789abcdef"
SECRET_2 = "e2e-second-secret-fedcba9876543210"
# The name the window's actions are recorded under (Settings → Your name).
E2E_NAME = "Erin Tester"

results = {"passed": 0, "failed": 0, "skipped": 0}
metrics = {}


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(f"{'PASS' if ok else 'FAIL'}  {name}{'' if ok or not detail else ': ' + str(detail)}", flush=True)
    return ok


def skip(name, why):
    results["skipped"] += 1
    print(f"SKIP  {name}: {why}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, fn, timeout=10.0, every=0.1):
    """Polls fn until it returns something truthy; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except (WebDriverError, OSError) as e:
            last_error = e
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" ({last_error})" if last_error else ""))


class WebDriverError(Exception):
    def __init__(self, status, error, message):
        super().__init__(f"{status} {error}: {message}")
        self.error = error


class WebDriver:
    """The few W3C WebDriver calls the story needs, over plain HTTP."""

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.session = None

    def call(self, method, path, body=None, timeout=60):
        if TRACE:
            print(f"  > {method} {path} {json.dumps(body)[:120] if body is not None else ''}", flush=True)
        data = None if body is None else json.dumps(body).encode()
        # tauri-driver forwards over pooled keep-alive connections that WebKitWebDriver may have
        # closed: the request then fails with a reset before it reached the driver. Retry those.
        attempts = 1 if path == "/session" else 3
        for attempt in range(attempts):
            req = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    return json.loads(r.read() or b"{}").get("value")
            except urllib.error.HTTPError as e:
                value = json.loads(e.read() or b"{}").get("value") or {}
                raise WebDriverError(e.code, value.get("error"), value.get("message")) from None
            except ConnectionResetError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2)

    def start(self, application, args=()):
        caps = {"capabilities": {"alwaysMatch": {"tauri:options": {"application": application, "args": list(args)}}}}
        self.session = self.call("POST", "/session", caps, timeout=120)["sessionId"]

    def end(self):
        if self.session:
            try:
                self.call("DELETE", f"/session/{self.session}", timeout=20)
            except (WebDriverError, OSError):
                pass
            self.session = None

    def s(self, path):
        return f"/session/{self.session}{path}"

    def find(self, css):
        try:
            found = self.call("POST", self.s("/element"), {"using": "css selector", "value": css})
            if not isinstance(found, dict) or ELEMENT not in found:
                raise WebDriverError(200, "unexpected answer", repr(found))
            return found[ELEMENT]
        except WebDriverError as e:
            if e.error == "no such element":
                return None
            raise

    def find_all(self, css):
        found = self.call("POST", self.s("/elements"), {"using": "css selector", "value": css})
        return [e[ELEMENT] for e in found]

    def click(self, el):
        self.call("POST", self.s(f"/element/{el}/click"), {})

    def type(self, el, text):
        self.call("POST", self.s(f"/element/{el}/clear"), {})
        self.call("POST", self.s(f"/element/{el}/value"), {"text": text})

    def text(self, el):
        return self.call("GET", self.s(f"/element/{el}/text"))

    def script(self, source, *args):
        return self.call("POST", self.s("/execute/sync"), {"script": source, "args": list(args)})

    def invoke(self, command, args=None):
        """Calls a Tauri command from the page, as the panel would: {"ok": value} or {"err": error}."""
        source = (
            "const done = arguments[arguments.length - 1];"
            "window.__TAURI_INTERNALS__.invoke(arguments[0], arguments[1])"
            ".then(v => done({ok: v === undefined ? null : v}), e => done({err: e}));"
        )
        return self.call("POST", self.s("/execute/async"), {"script": source, "args": [command, args or {}]})

    def keys(self, *values, modifier=None):
        """Presses each key in turn (W3C key codes, e.g. TAB), holding `modifier` throughout."""
        acts = [{"type": "keyDown", "value": modifier}] if modifier else []
        for v in values:
            acts += [{"type": "keyDown", "value": v}, {"type": "keyUp", "value": v}]
        if modifier:
            acts.append({"type": "keyUp", "value": modifier})
        self.call("POST", self.s("/actions"), {"actions": [{"type": "key", "id": "keyboard", "actions": acts}]})
        self.call("DELETE", self.s("/actions"))

    def screenshot(self, name):
        # WebKitGTK answers a screenshot with the next frame it paints. The app paints on the CPU
        # (no DMA-BUF renderer), where an idle page paints no frame at all, so for 1.5 s a
        # 1 px, 1%-opaque pixel in the top-left corner flickers and is then removed.
        self.script(
            "let d = document.createElement('div');"
            "d.style.cssText = 'position:fixed;left:0;top:0;width:1px;height:1px;"
            "pointer-events:none;opacity:0.01;z-index:2147483647';"
            "document.body.appendChild(d);"
            "const t = setInterval(() => { d.style.background = d.style.background ? '' : '#000'; }, 20);"
            "setTimeout(() => { clearInterval(t); d.remove(); }, 1500);"
        )
        png = base64.b64decode(self.call("GET", self.s("/screenshot")))
        os.makedirs(SHOTS, exist_ok=True)
        path = os.path.join(SHOTS, name)
        with open(path, "wb") as f:
            f.write(png)
        return path

    # Conveniences over data-testid hooks.
    def wait_for(self, css, timeout=10.0):
        return wait_until(css, lambda: self.find(css), timeout)

    def click_when_ready(self, css, timeout=10.0):
        self.click(self.wait_for(css, timeout))

    def wait_text(self, css, expected, timeout=10.0):
        def matches():
            el = self.find(css)
            return el is not None and self.text(el).strip() == expected
        return wait_until(f"{css} to read {expected!r}", matches, timeout)

    def wait_containing(self, css, part, timeout=10.0):
        def matches():
            el = self.find(css)
            return el is not None and part in self.text(el)
        return wait_until(f"{css} to hold {part!r}", matches, timeout)


# --- the X server (Xvfb), through libX11 ------------------------------------------------------

class XClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("l", ctypes.c_long * 5)]


class XEvent(ctypes.Union):
    _fields_ = [("xclient", XClientMessage), ("pad", ctypes.c_long * 24)]


class XWindowAttributes(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("border_width", ctypes.c_int), ("depth", ctypes.c_int), ("visual", ctypes.c_void_p),
                ("root", ctypes.c_ulong), ("class_", ctypes.c_int), ("bit_gravity", ctypes.c_int),
                ("win_gravity", ctypes.c_int), ("backing_store", ctypes.c_int), ("backing_planes", ctypes.c_ulong),
                ("backing_pixel", ctypes.c_ulong), ("save_under", ctypes.c_int), ("colormap", ctypes.c_ulong),
                ("map_installed", ctypes.c_int), ("map_state", ctypes.c_int), ("all_event_masks", ctypes.c_long),
                ("your_event_mask", ctypes.c_long), ("do_not_propagate_mask", ctypes.c_long),
                ("override_redirect", ctypes.c_int), ("screen", ctypes.c_void_p)]


class X11:
    """What the user does to the window from outside the page: close it (the title bar's X), and
    where the keyboard focus is. There is no window manager, so the app's own requests are final."""
    IS_VIEWABLE = 2
    CLIENT_MESSAGE = 33

    def __init__(self):
        x = ctypes.CDLL("libX11.so.6")
        x.XOpenDisplay.restype = ctypes.c_void_p
        x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x.XDefaultRootWindow.restype = ctypes.c_ulong
        x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        x.XInternAtom.restype = ctypes.c_ulong
        x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        x.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
                                 ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.POINTER(ctypes.c_ulong)),
                                 ctypes.POINTER(ctypes.c_uint)]
        x.XFetchName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_char_p)]
        x.XFree.argtypes = [ctypes.c_void_p]
        x.XGetWindowAttributes.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(XWindowAttributes)]
        x.XGetInputFocus.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.c_int)]
        x.XSetInputFocus.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_ulong]
        x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(XEvent)]
        x.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x.XCreateSimpleWindow.restype = ctypes.c_ulong
        x.XCreateSimpleWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_ulong, ctypes.c_ulong]
        x.XMapRaised.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        x.XDestroyWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        # A window that goes away between two calls is an answer (not there), not a reason for
        # Xlib's default handler to exit the harness.
        self._on_error = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(lambda d, e: 0)
        x.XSetErrorHandler(self._on_error)
        self.x = x
        self.d = x.XOpenDisplay(None)
        if not self.d:
            raise OSError("cannot open the X display")
        self.root = x.XDefaultRootWindow(self.d)

    def _tree(self, window):
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children, n = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        if not self.x.XQueryTree(self.d, window, ctypes.byref(root), ctypes.byref(parent), ctypes.byref(children), ctypes.byref(n)):
            return 0, []
        kids = [children[i] for i in range(n.value)]
        if children:
            self.x.XFree(children)
        return parent.value, kids

    def window_named(self, title):
        for w in self._tree(self.root)[1]:
            name = ctypes.c_char_p()
            if self.x.XFetchName(self.d, w, ctypes.byref(name)) and name.value:
                found = name.value.decode(errors="replace") == title
                self.x.XFree(name)
                if found:
                    return w
        return None

    def viewable(self, window):
        attrs = XWindowAttributes()
        self.x.XSync(self.d, 0)
        return bool(self.x.XGetWindowAttributes(self.d, window, ctypes.byref(attrs))) and attrs.map_state == self.IS_VIEWABLE

    def close(self, window):
        """WM_DELETE_WINDOW, as a window manager sends it for the title bar's close button."""
        ev = XEvent()
        ev.xclient.type = self.CLIENT_MESSAGE
        ev.xclient.window = window
        ev.xclient.message_type = self.x.XInternAtom(self.d, b"WM_PROTOCOLS", 0)
        ev.xclient.format = 32
        ev.xclient.l[0] = self.x.XInternAtom(self.d, b"WM_DELETE_WINDOW", 0)
        self.x.XSendEvent(self.d, window, 0, 0, ctypes.byref(ev))
        self.x.XSync(self.d, 0)

    def focus_elsewhere(self, window=None):
        """The user is typing in another application: the keyboard focus leaves our window."""
        self.x.XSetInputFocus(self.d, window or self.root, 2, 0)  # RevertToParent, CurrentTime
        self.x.XSync(self.d, 0)

    def cover(self):
        """Another application's window, mapped on top of everything (the whole screen)."""
        w = self.x.XCreateSimpleWindow(self.d, self.root, 0, 0, 1280, 800, 0, 0, 0xFFFFFF)
        self.x.XMapRaised(self.d, w)
        self.x.XSync(self.d, 0)
        return w

    def destroy(self, window):
        self.x.XDestroyWindow(self.d, window)
        self.x.XSync(self.d, 0)

    def above(self, window, other):
        """Whether `window` is stacked above `other` (both top-level)."""
        order = self._tree(self.root)[1]  # bottom to top
        return window in order and other in order and order.index(window) > order.index(other)

    def focus_within(self, window):
        focus, revert = ctypes.c_ulong(), ctypes.c_int()
        self.x.XSync(self.d, 0)
        self.x.XGetInputFocus(self.d, ctypes.byref(focus), ctypes.byref(revert))
        w = focus.value
        while w and w != self.root:
            if w == window:
                return True
            w = self._tree(w)[0]
        return False


# --- processes --------------------------------------------------------------------------------

def processes():
    """pid -> (ppid, exe) for every process we can read."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            try:
                exe = os.readlink(f"/proc/{name}/exe")
            except OSError:
                exe = ""
            out[int(name)] = (ppid, exe)
        except (OSError, ValueError):
            continue
    return out


def pids_of(binary):
    real = os.path.realpath(binary)
    return [pid for pid, (_, exe) in processes().items() if exe.replace(" (deleted)", "") == real]


def with_descendants(pid):
    procs = processes()
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _) in procs.items():
            if ppid == parent and child not in family:
                family.add(child)
                frontier.append(child)
    return sorted(family)


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def web_renderer(pid):
    """"cpu" when the web process runs with WebKit's DMA-BUF renderer off, as the app starts it."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return "unreadable"
    return "cpu" if b"WEBKIT_DISABLE_DMABUF_RENDERER=1" in env else "gpu"


def memory_kib(pid):
    """(PSS, RSS, {process: PSS}) in KiB over pid and its descendants (WebKit's web and network processes)."""
    pss = rss = 0
    each = {}
    for p in with_descendants(pid):
        try:
            one = 0
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        one = int(line.split()[1])
                        pss += one
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
            with open(f"/proc/{p}/comm") as f:
                each[f.read().strip()] = round(one / 1024, 1)
        except OSError:
            continue
    return pss, rss, each


def cli(*args, env_extra=None):
    # WebKit settings come from the app itself (or from env_extra), never from the runner.
    env = {k: v for k, v in os.environ.items() if k != "WEBKIT_DISABLE_DMABUF_RENDERER"}
    env.update(env_extra or {})
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)


def send(url, secret, **kw):
    args = ["send", "--url", url, "--secret-env", "S", "--json"]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    r = cli(*args, env_extra={"S": secret})
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": r.stderr.strip() or r.stdout.strip(), "accepted": 0}


def healthz_answered(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code  # 503 is an answer: the receiver runs but cannot accept yet
    except OSError:
        return None


class FirstAnswer(threading.Thread):
    """Times the first answer of /healthz from a start instant."""

    def __init__(self, port, t0):
        super().__init__(daemon=True)
        self.port, self.t0, self.after, self.status = port, t0, None, None

    def run(self):
        while time.monotonic() - self.t0 < 60:
            status = healthz_answered(self.port)
            if status is not None:
                self.after, self.status = time.monotonic() - self.t0, status
                return
            time.sleep(0.005)


def notifications():
    if not NOTIFICATIONS or not os.path.exists(NOTIFICATIONS):
        return []
    with open(NOTIFICATIONS) as f:
        return [json.loads(line) for line in f if line.strip()]


def recorder(command):
    with open(RECORDER_IN, "w") as f:
        f.write(command + "\n")


# --- the story --------------------------------------------------------------------------------

def start_driver(log_name, env_extra=None):
    port, native = free_port(), free_port()
    log = open(os.path.join(TMP, log_name), "w")
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.Popen([DRIVER, "--port", str(port), "--native-port", str(native),
                             "--native-driver", NATIVE_DRIVER], stdout=log, stderr=subprocess.STDOUT, env=env)
    # tauri-driver accepts connections before the native driver behind it does: wait for both.
    wait_until("tauri-driver", lambda: accepts_connections(port) and accepts_connections(native), timeout=20)
    return proc, WebDriver(port)


def accepts_connections(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def story():
    os.makedirs(SHOTS, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/zof"
    config_dir = os.path.join(os.environ["XDG_CONFIG_HOME"], "zof-approvals")
    data_dir = os.path.join(os.environ["XDG_DATA_HOME"], "zof-approvals")
    os.makedirs(config_dir, exist_ok=True)
    with open(os.path.join(config_dir, "settings.json"), "w") as f:
        json.dump({"listen": f"127.0.0.1:{port}"}, f)

    driver_proc, wd = start_driver("tauri-driver.log")
    try:
        app_pid = run_story(wd, port, url, data_dir)
        # Before the session ends: ending it would have the WebDriver kill the app.
        if app_pid:
            graceful_quit(app_pid, data_dir)
    finally:
        wd.end()
        stop(driver_proc)
    failed_start_recovers(data_dir)
    relaunched_over_the_store()


def run_story(wd, port, url, data_dir):
    # Launch: receiver answers, window shows the first-run view.
    t0 = time.monotonic()
    first = FirstAnswer(port, t0)
    first.start()
    wd.start(APP)
    metrics["session_up_s"] = time.monotonic() - t0
    first_run = wd.wait_for('[data-testid="first-run"]', timeout=30)
    metrics["window_shown_s"] = time.monotonic() - t0
    first.join(30)
    metrics["receiver_answered_s"] = first.after
    metrics["receiver_first_status"] = first.status
    check("first launch shows the first-run view", first_run is not None)
    check("the receiver answers /healthz after launch", first.after is not None, first.status)
    app_pids = pids_of(APP)
    check("exactly one app process runs", len(app_pids) == 1, app_pids)
    app_pid = app_pids[0] if app_pids else None
    wait_until("the first-run view to settle", lambda: wd.find('[data-testid="secret-input"]'))
    # Idle right after launch, before any screenshot or interaction: the like-for-like number
    # for the hello-world app, which is measured the same way.
    time.sleep(10)
    pss, _, each = memory_kib(app_pid)
    metrics["app_pss_mib_at_launch"], metrics["app_pss_mib_by_process_at_launch"] = round(pss / 1024, 1), each
    renderers = [web_renderer(p) for p in with_descendants(app_pid) if comm(p) == "WebKitWebProces"] if app_pid else []
    check("the panel's web process paints on the CPU (DMA-BUF renderer off)", renderers == ["cpu"], renderers)
    wd.screenshot("first-run.png")

    # The secret goes in through the panel; the receiver becomes ready.
    wd.type(wd.find('[data-testid="secret-input"]'), SECRET_1)
    wd.click(wd.find('[data-testid="secret-submit"]'))
    try:
        wd.wait_for('[data-testid="kpi-pending"]', timeout=15)
        wd.wait_text('[data-testid="kpi-pending"]', "0")
        check("after the secret is saved the home view shows 0 pending", True)
    except TimeoutError as e:
        check("after the secret is saved the home view shows 0 pending", False, e)
    try:
        wait_until("receiver ready (200)", lambda: healthz_answered(port) == 200, timeout=15)
        check("the receiver is ready once a secret is stored", True)
    except TimeoutError as e:
        check("the receiver is ready once a secret is stored", False, e)

    # The name actions are recorded under, set in Settings (the placeholder is the user@host default).
    wd.click(wd.find('[data-testid="nav-settings"]'))
    try:
        name_box = wd.wait_for('[data-testid="settings-display-name"]')
        placeholder = wd.script("return arguments[0].placeholder", {ELEMENT: name_box})
        check("Settings offers a display name with user@host as placeholder", "@" in (placeholder or ""), placeholder)
        wd.script("arguments[0].scrollIntoView({block: 'center'})", {ELEMENT: name_box})
        wd.type(name_box, E2E_NAME)
        wd.click(wd.find('[data-testid="save-settings"]'))
        wd.wait_text('[data-testid="save-result"]', "Settings saved.")
        check("the display name is saved from Settings", True)
    except TimeoutError as e:
        check("the display name is saved from Settings", False, e)
    wd.click(wd.find('[data-testid="nav-home"]'))

    # A delivery signed with that secret: the plan reaches the queue without a reload.
    before = len(notifications())
    sent = send(url, SECRET_1, plan="plan_e2e_1")
    check("a delivery signed with the secret is accepted", sent.get("accepted") == 1, sent)
    try:
        wd.wait_for('[data-testid="queue-row"][data-plan-id="plan_e2e_1"]')
        wd.wait_text('[data-testid="kpi-pending"]', "1")
        check("the plan appears in the queue and kpi-pending reads 1", True)
    except TimeoutError as e:
        check("the plan appears in the queue and kpi-pending reads 1", False, e)

    notified = notification_for_plan(before)
    opened_by_click = False
    if notified:
        check("a notification was raised for the plan", True)
        opened_by_click = click_notification(wd, notified["id"])
        check("clicking the notification opens the plan detail", opened_by_click)
    elif REQUIRE_NOTIFY:
        check("a notification was raised for the plan", False, "no Notify call recorded")
    else:
        skip("a notification was raised for the plan", "no Notify recorded (ZOF_E2E_REQUIRE_NOTIFY=0)")
        skip("clicking the notification opens the plan detail", "no notification to click")
    if not opened_by_click:
        wd.click(wd.find('[data-testid="queue-row"][data-plan-id="plan_e2e_1"] [data-plan-button]'))
    try:
        wd.wait_for('[data-testid="plan-detail"][data-plan-id="plan_e2e_1"]')
        wd.wait_for('[data-testid="field-plan"]')
        time.sleep(0.5)
        wd.screenshot("plan-detail.png")
        check("the plan detail shows plan_e2e_1", True)
    except TimeoutError as e:
        check("the plan detail shows plan_e2e_1", False, e)

    # Snooze, then mark handled: the queue empties; the notification is withdrawn; the plan's
    # history names who did each, from the panel.
    closes_before = [n for n in notifications() if n.get("call") == "close"]
    wd.click_when_ready('[data-testid="plan-detail"] [data-testid="snooze"]')
    try:
        wd.wait_for('[data-testid="history-row"][data-action="snoozed"]')
    except TimeoutError:
        pass
    wd.click_when_ready('[data-testid="plan-detail"] [data-testid="mark-handled"]')
    try:
        wd.wait_text('[data-testid="plan-state"]', "Handled")
    except TimeoutError:
        pass
    try:
        wd.wait_for('[data-testid="history-row"][data-action="handled"]')
        rows = [wd.text(r).strip() for r in wd.find_all('[data-testid="history-row"]')]
        ok = (len(rows) == 2 and rows[0].startswith(f"Handled by {E2E_NAME} · panel · ")
              and rows[1].startswith(f"Snoozed by {E2E_NAME} (until ") and " · panel · " in rows[1])
        check("the plan detail's history shows the handled and snoozed rows by name, from the panel", ok, rows)
    except TimeoutError as e:
        check("the plan detail's history shows the handled and snoozed rows by name, from the panel", False, e)
    wd.click(wd.find('[data-testid="nav-home"]'))
    try:
        wd.wait_text('[data-testid="kpi-pending"]', "0")
        check("after mark handled kpi-pending reads 0", True)
    except TimeoutError as e:
        check("after mark handled kpi-pending reads 0", False, e)
    if notified:
        try:
            wait_until("a close call", lambda: len([n for n in notifications() if n.get("call") == "close"]) > len(closes_before), 5)
            check("the plan's notification was closed", True)
        except TimeoutError as e:
            check("the plan's notification was closed", False, e)
    else:
        skip("the plan's notification was closed", "no notification was raised")

    # Activity view.
    wd.click(wd.find('[data-testid="nav-activity"]'))
    try:
        wd.wait_for('[data-testid="activity-row"]')
        time.sleep(0.5)
        wd.screenshot("activity.png")
        check("the activity view lists the delivery", True)
    except TimeoutError as e:
        check("the activity view lists the delivery", False, e)
    try:
        wd.click(wd.find('[data-testid="tab-actions"]'))
        wd.wait_for('[data-testid="action-row"][data-action="handled"]')
        cells = wd.script(
            "return [...document.querySelectorAll('[data-testid=\"action-row\"]')]"
            ".filter(r => r.querySelector('[data-testid=\"action-plan\"]').textContent === 'plan_e2e_1')"
            ".map(r => [r.dataset.action, r.querySelector('[data-testid=\"action-who\"]').textContent,"
            " r.querySelector('[data-testid=\"action-source\"]').textContent]);")
        wd.screenshot("activity-actions.png")
        check("Activity → Actions lists the handled and snoozed rows with the name and source panel",
              cells == [["handled", E2E_NAME, "panel"], ["snoozed", E2E_NAME, "panel"]], cells)
    except TimeoutError as e:
        check("Activity → Actions lists the handled and snoozed rows with the name and source panel", False, e)

    # Rotate the secret from the settings: old and new both verify during the overlap.
    wd.click(wd.find('[data-testid="nav-settings"]'))
    try:
        wd.wait_for('[data-testid="secret-row"][data-role="current"]')
        wd.type(wd.wait_for('[data-testid="secret-input"]'), SECRET_2)
        wd.click(wd.find('[data-testid="secret-submit"]'))
        wd.wait_for('[data-testid="secret-row"][data-role="previous"]')
        check("pasting a second secret keeps the first as previous", True)
    except TimeoutError as e:
        check("pasting a second secret keeps the first as previous", False, e)
    old = send(url, SECRET_1, plan="plan_e2e_old")
    check("a delivery signed with the old secret is accepted", old.get("accepted") == 1, old)
    # The rotation is in force as soon as the panel shows it: no wait before the new secret.
    new = send(url, SECRET_2, plan="plan_e2e_new")
    check("a delivery signed with the new secret is accepted", new.get("accepted") == 1, new)
    wd.script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    wd.screenshot("settings.png")

    # Start at login is real: the login entry appears with --hidden.
    autostart_entry = os.path.join(os.environ["HOME"], ".config", "autostart", "Zof Approvals.desktop")
    try:
        box = wd.find('[data-testid="settings-start-at-login"]')
        wd.script("arguments[0].scrollIntoView({block: 'center'})", {ELEMENT: box})
        wd.click(box)
        wd.click(wd.find('[data-testid="save-settings"]'))
        wait_until("the autostart entry", lambda: os.path.exists(autostart_entry), 10)
        with open(autostart_entry) as f:
            entry = f.read()
        check("turning on start at login writes a login entry that starts hidden", "--hidden" in entry, entry)
    except TimeoutError as e:
        check("turning on start at login writes a login entry that starts hidden", False, e)

    wd.click(wd.find('[data-testid="nav-home"]'))
    try:
        wd.wait_text('[data-testid="kpi-pending"]', "2")
        time.sleep(0.5)
        wd.screenshot("home.png")
        check("home shows the two plans from the rotation deliveries", True)
    except TimeoutError as e:
        check("home shows the two plans from the rotation deliveries", False, e)

    time.sleep(5)
    pss, _, each = memory_kib(app_pid)
    metrics["app_pss_mib_with_3_plans"], metrics["app_pss_mib_by_process_with_3_plans"] = round(pss / 1024, 1), each

    accessibility_checks(wd)
    window_story(wd, url, port, app_pid)

    # The webview reaches our commands and nothing else; secrets never come back to it.
    security_checks(wd)

    # Memory after 1,000 stored plans, idle.
    bulk = send(url, SECRET_2, count=1000, concurrency=16)
    check("1,000 more deliveries are accepted", bulk.get("accepted") == 1000, bulk)
    try:
        wd.wait_text('[data-testid="kpi-pending"]', "1002", timeout=30)
        check("the panel shows 1002 pending without a reload", True)
    except TimeoutError as e:
        check("the panel shows 1002 pending without a reload", False, e)
    time.sleep(10)
    pss, rss, each = memory_kib(app_pid)
    metrics["app_pss_mib"], metrics["app_rss_mib"] = round(pss / 1024, 1), round(rss / 1024, 1)
    metrics["app_pss_mib_by_process"] = each
    return app_pid


UNLABELLED = """return [...document.querySelectorAll('input, select, textarea, button, a[href]')]
  .filter(e => e.getClientRects().length > 0)
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')
               && !e.getAttribute('title') && !(['BUTTON', 'A'].includes(e.tagName) && (e.textContent || '').trim()))
  .map(e => e.outerHTML.slice(0, 100));"""
OVERFLOW = "const d = document.documentElement; return d.scrollWidth - d.clientWidth;"


def accessibility_checks(wd):
    """Keyboard only, labelled controls, zoomed in past 125 %, and the dark theme."""
    wd.click(wd.find('[data-testid="nav-home"]'))
    wd.wait_for('[data-testid="queue-row"]')
    wd.script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
    reached = None
    for _ in range(60):
        wd.keys(TAB)
        reached = wd.script("return document.activeElement && document.activeElement.dataset.planButton || null")
        if reached:
            break
    check("Tab alone reaches the first plan of the queue", reached == "plan_e2e_old", reached)
    if reached:
        wd.keys(ENTER)
        try:
            wd.wait_for(f'[data-testid="plan-detail"][data-plan-id="{reached}"]')
            check("Enter on it opens the plan", True)
        except TimeoutError as e:
            check("Enter on it opens the plan", False, e)
    for view in ("home", "settings", "activity"):
        wd.click(wd.find(f'[data-testid="nav-{view}"]'))
        time.sleep(0.5)
        unlabelled = wd.script(UNLABELLED)
        check(f"every control in {view} has an accessible name", unlabelled == [], unlabelled)

    # Ctrl+= twice: 140 % (the app turns on zoom hotkeys). The layout reflows, nothing scrolls sideways.
    wd.click(wd.find('[data-testid="nav-home"]'))
    wd.wait_for('[data-testid="kpi-pending"]')
    width = wd.script("return window.innerWidth")
    wd.keys("=", "=", modifier=CONTROL)
    try:
        wait_until("the page to zoom", lambda: wd.script("return window.innerWidth") < width * 0.8, 5)
        zoomed = True
    except TimeoutError:
        zoomed = False
    check("Ctrl+= zooms the panel (140 % after two steps)", zoomed, (width, wd.script("return window.innerWidth")))
    for view in ("home", "settings", "activity"):
        wd.click(wd.find(f'[data-testid="nav-{view}"]'))
        time.sleep(0.5)
        overflow = wd.script(OVERFLOW)
        check(f"zoomed in, {view} fits the window's width", overflow <= 0, f"{overflow} px too wide")
    wd.click(wd.find('[data-testid="nav-home"]'))
    wd.wait_for('[data-testid="kpi-pending"]')
    wd.screenshot("home-zoomed.png")
    wd.keys("-", "-", modifier=CONTROL)
    try:
        wait_until("the zoom to return", lambda: wd.script("return window.innerWidth") == width, 5)
        check("Ctrl+- zooms back out", True)
    except TimeoutError:
        check("Ctrl+- zooms back out", False, wd.script("return window.innerWidth"))

    # Dark: the theme button cycles system -> light -> dark.
    for _ in range(3):
        if wd.script("return document.documentElement.dataset.theme || 'system'") == "dark":
            break
        wd.click(wd.find('[data-testid="theme-toggle"]'))
    background = wd.script(
        "const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);"
        "return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;")
    check("the dark theme darkens the panel", background < 0.2, background)
    time.sleep(0.3)
    wd.screenshot("home-dark.png")
    wd.click(wd.find('[data-testid="theme-toggle"]'))
    check("the theme button returns to the system theme",
          wd.script("return document.documentElement.dataset.theme || 'system'") == "system")


def never(condition, seconds):
    """True when `condition` stays false for the whole time."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return False
        time.sleep(0.05)
    return True


def handle_arrival(wd, plan_id):
    """Marks a plan from the window checks handled, so the story's counts stay as they were."""
    try:
        wd.wait_for(f'[data-testid="queue-row"][data-plan-id="{plan_id}"]')
    except TimeoutError:
        pass
    handled = wd.invoke("mark_handled", {"planId": plan_id})
    check(f"{plan_id} is marked handled", "ok" in handled, handled)


def window_story(wd, url, port, app_pid):
    """Closing hides to the tray; a plan arriving brings the panel forward without the keyboard
    focus; a second launch shows and focuses the first instance."""
    x = X11()
    panel = x.window_named("Zof Approvals")
    check("the panel is a visible window", panel is not None and x.viewable(panel), panel)
    if panel is None:
        return
    wd.click(wd.find('[data-testid="nav-activity"]'))

    x.close(panel)
    try:
        wait_until("the panel to hide", lambda: not x.viewable(panel), 10)
        check("closing the window hides it; the app keeps serving",
              pids_of(APP) == [app_pid] and healthz_answered(port) == 200)
    except TimeoutError as e:
        check("closing the window hides it; the app keeps serving", False, e)

    x.focus_elsewhere()
    sent = send(url, SECRET_2, plan="plan_e2e_arrival")
    try:
        wait_until("the panel to come forward", lambda: x.viewable(panel), 10)
        wd.wait_for('[data-testid="kpi-pending"]')
        check("a plan arriving brings the hidden panel forward on the home view", sent.get("accepted") == 1, sent)
        check("... without taking the keyboard focus", never(lambda: x.focus_within(panel), 1.0))
    except TimeoutError as e:
        check("a plan arriving brings the hidden panel forward on the home view", False, e)
    handle_arrival(wd, "plan_e2e_arrival")

    # Visible but covered by another application's window, which has the keyboard. (The panel
    # comes forward at most every 2 s.)
    time.sleep(2)
    other = x.cover()
    x.focus_elsewhere(other)
    check("another window covers the panel", x.above(other, panel))
    sent = send(url, SECRET_2, plan="plan_e2e_covered")
    try:
        wait_until("the panel to be raised", lambda: x.above(panel, other), 10)
        check("a plan arriving raises the covered panel above the other window", sent.get("accepted") == 1, sent)
        check("... and the other window keeps the keyboard", never(lambda: x.focus_within(panel), 1.0))
    except TimeoutError as e:
        check("a plan arriving raises the covered panel above the other window", False, e)
    x.destroy(other)
    handle_arrival(wd, "plan_e2e_covered")

    # Single instance: a second launch exits at once and hands over to the first.
    x.close(panel)
    wait_until("the panel to hide", lambda: not x.viewable(panel), 10)
    x.focus_elsewhere()
    t = time.monotonic()
    second = subprocess.run([APP], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t
    metrics["second_launch_exit_s"] = took
    check("a second launch exits quickly with status 0", second.returncode == 0 and took < 10,
          f"status {second.returncode} after {took:.1f} s")
    try:
        wait_until("the first instance's panel to show", lambda: x.viewable(panel), 10)
        wait_until("the first instance's panel to take the focus", lambda: x.focus_within(panel), 5)
        check("a second launch shows and focuses the first instance's panel", True)
    except TimeoutError as e:
        check("a second launch shows and focuses the first instance's panel", False, e)
    check("the first instance still runs and serves", pids_of(APP) == [app_pid] and healthz_answered(port) == 200)
    try:
        wd.wait_text('[data-testid="kpi-pending"]', "2")
        check("the first instance's panel still answers", True)
    except TimeoutError as e:
        check("the first instance's panel still answers", False, e)


def security_checks(wd):
    for command, args in (("plugin:autostart|enable", {}), ("plugin:opener|open_url", {"url": "https://example.com"}),
                          ("plugin:clipboard-manager|read_text", {}),
                          ("plugin:event|emit", {"event": "zof://navigate", "payload": {"view": "settings"}})):
        answer = wd.invoke(command, args)
        check(f"the capability refuses {command}", "err" in answer, answer)
    generated = wd.invoke("generate_secret", {"overlapHours": 24})
    text = json.dumps(generated)
    check("generate_secret answers with fingerprints only, never the secret",
          "ok" in generated and "whsec_" not in text and SECRET_2 not in text, text[:300])
    copied = clipboard_text()
    check("generate_secret puts the new secret on the X clipboard (not the old one)",
          copied.startswith("whsec_") and copied != SECRET_2, f"{len(copied)} characters")
    answer = wd.invoke("copy_webhook_url", {})
    copied = clipboard_text()
    check("copy_webhook_url puts the receiver's address on the X clipboard",
          "ok" in answer and copied.startswith("http://127.0.0.1:") and copied.endswith("/webhooks/zof"),
          f"{answer} {copied!r}")
    blocked = wd.script("try { eval('1'); return 'ran'; } catch (e) { return 'blocked'; }")
    check("the CSP blocks eval in the panel", blocked == "blocked", blocked)
    inline = wd.script(
        "const d = document.createElement('div'); d.innerHTML = '<span style=\"display: none\">x</span>';"
        "document.body.appendChild(d); const shown = getComputedStyle(d.firstChild).display; d.remove(); return shown;")
    check("the CSP blocks inline styles in the panel", inline != "none", inline)


def clipboard_text():
    """What another application pastes: the CLIPBOARD selection, asked of its owner over X."""
    done = subprocess.run(["xclip", "-o", "-selection", "clipboard"], capture_output=True, text=True, timeout=10)
    return done.stdout if done.returncode == 0 else f"<xclip failed: {done.stderr.strip()}>"


def notification_for_plan(before, timeout=5.0):
    try:
        return wait_until("a Notify call", lambda: next(
            (n for n in notifications()[before:] if n.get("call") == "notify"), None), timeout)
    except TimeoutError:
        return None


def click_notification(wd, nid):
    """notify-rust listens for ActionInvoked only after Notify returned: resend until the panel reacts."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        recorder(f"invoke {nid} default")
        time.sleep(0.3)
        if wd.find('[data-testid="plan-detail"][data-plan-id="plan_e2e_1"]'):
            return True
    return False


def graceful_quit(app_pid, data_dir):
    """SIGTERM is Quit: the core stops, the store is flushed and its lock released."""
    t = time.monotonic()
    try:
        quit_app(app_pid)
        metrics["quit_s"] = time.monotonic() - t
        check("SIGTERM quits the app", True)
    except TimeoutError as e:
        check("SIGTERM quits the app", False, e)
        return
    r = cli("inbox", "--data-dir", data_dir, "--json")
    try:
        rows = json.loads(r.stdout)
    except json.JSONDecodeError:
        rows = []
    handled = [e for e in rows if e.get("plan") == "plan_e2e_1" and e.get("state") == "handled"]
    check("after quitting, the inbox opens (lock released) and shows plan_e2e_1 handled",
          r.returncode == 0 and len(handled) == 1, r.stderr.strip()[:300])
    check("all 1,005 accepted events are stored", len(rows) == 1005, len(rows))


def failed_start_recovers(data_dir):
    """The listen port is taken: the window still opens and says so; a new port in Settings fixes it."""
    settings_file = os.path.join(os.environ["XDG_CONFIG_HOME"], "zof-approvals", "settings.json")
    with open(settings_file) as f:
        settings = json.load(f)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    settings["listen"] = f"127.0.0.1:{blocker.getsockname()[1]}"
    with open(settings_file, "w") as f:
        json.dump(settings, f)
    driver_proc, wd = start_driver("tauri-driver-failed-start.log")
    try:
        wd.start(APP)
        try:
            status = wd.wait_for('[data-testid="receiver-status"][data-ready="false"]', timeout=20)
            # One line in the top bar, ellipsized when long: the whole reason is its title.
            text = wd.script("return arguments[0].title", {ELEMENT: status})
            check("a taken port still opens the window, which says the receiver is not ready", "cannot listen" in text, text)
            wd.wait_for('[data-testid="next-action"][data-kind="receiver_not_started"]')
            time.sleep(0.5)
            wd.screenshot("not-started.png")
        except TimeoutError as e:
            check("a taken port still opens the window, which says the receiver is not ready", False, e)
        port = free_port()
        try:
            wd.click(wd.find('[data-testid="nav-settings"]'))
            wd.type(wd.wait_for('[data-testid="settings-listen"]'), f"127.0.0.1:{port}")
            wd.click(wd.find('[data-testid="save-settings"]'))
            wd.wait_for('[data-testid="receiver-status"][data-ready="true"]', timeout=20)
            check("saving a free port in Settings starts the receiver", healthz_answered(port) == 200)
        except TimeoutError as e:
            check("saving a free port in Settings starts the receiver", False, e)
        pids = pids_of(APP)
        if pids:
            quit_app(pids[0])
    finally:
        blocker.close()
        wd.end()
        stop(driver_proc)


def smoke():
    """The short story a package is checked with (ZOF_E2E_ONLY=smoke): the panel shows, the
    receiver becomes ready, a signed delivery reaches the queue and a notification is raised."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/zof"
    config_dir = os.path.join(os.environ["XDG_CONFIG_HOME"], "zof-approvals")
    os.makedirs(config_dir, exist_ok=True)
    with open(os.path.join(config_dir, "settings.json"), "w") as f:
        json.dump({"listen": f"127.0.0.1:{port}"}, f)
    driver_proc, wd = start_driver("tauri-driver.log")
    try:
        wd.start(APP)
        check("the panel shows the first-run view", wd.wait_for('[data-testid="first-run"]', timeout=30) is not None)
        wd.type(wd.wait_for('[data-testid="secret-input"]'), SECRET_1)
        wd.click(wd.find('[data-testid="secret-submit"]'))
        wait_until("receiver ready (200)", lambda: healthz_answered(port) == 200, timeout=15)
        check("the receiver is ready once a secret is stored", True)
        before = len(notifications())
        sent = send(url, SECRET_1, plan="plan_smoke_1")
        check("a delivery signed with the secret is accepted", sent.get("accepted") == 1, sent)
        wd.wait_for('[data-testid="queue-row"][data-plan-id="plan_smoke_1"]')
        check("the plan appears in the queue", True)
        notified = notification_for_plan(before)
        metrics["notified_at_unix"] = time.time() if notified else None
        check("a notification was raised for the plan", notified is not None, "no Notify call recorded")
        app_pids = pids_of(APP)
        if check("exactly one app process runs", len(app_pids) == 1, app_pids):
            quit_app(app_pids[0])
            check("SIGTERM quits the app", True)
    finally:
        wd.end()
        stop(driver_proc)


def relaunched_over_the_store():
    """A fresh launch over the store the story filled (1,005 events, 1,002 plans pending): the
    panel shows them at once, and its idle memory is measured like the hello-world app's (launched
    by the WebDriver, no screenshot, 10 s idle)."""
    driver_proc, wd = start_driver("tauri-driver-relaunch.log")
    try:
        wd.start(APP)
        try:
            wd.wait_text('[data-testid="kpi-pending"]', "1002", timeout=30)
            check("a relaunch over the stored plans shows 1002 pending", True)
        except TimeoutError as e:
            check("a relaunch over the stored plans shows 1002 pending", False, e)
            return
        pids = pids_of(APP)
        if pids:
            # Idle first: the like-for-like number for the hello-world app.
            time.sleep(10)
            pss, rss, each = memory_kib(pids[0])
            metrics["app_pss_mib_relaunched"], metrics["app_rss_mib_relaunched"] = round(pss / 1024, 1), round(rss / 1024, 1)
            metrics["app_pss_mib_by_process_relaunched"] = each
        # The queue past the overview's 200 plans, one "Show more" at a time.
        try:
            for rows in range(50, 226, 25):
                wd.click(wd.wait_for('[data-testid="queue-more"]'))
                wait_until(f"{rows} queue rows", lambda: len(wd.find_all('[data-testid="queue-row"]')) == rows, 10)
            check("\"Show more\" reaches past the first 200 plans (225 rows)", True)
        except TimeoutError as e:
            check("\"Show more\" reaches past the first 200 plans (225 rows)", False, e)
        if pids:
            quit_app(pids[0])
    finally:
        wd.end()
        stop(driver_proc)


def quit_app(pid):
    """SIGTERM (the tray's Quit) and wait until the process has exited."""
    os.kill(pid, signal.SIGTERM)
    wait_until("the app to exit", lambda: not os.path.exists(f"/proc/{pid}") or zombie(pid), 30)


def zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except OSError:
        return True


def measure_hello(binary, prefix, env_extra=None):
    """The same launch and idle measurement for the hello-world Tauri app (benches/hello-world)."""
    driver_proc, wd = start_driver(f"tauri-driver-{prefix}.log", env_extra)
    try:
        t0 = time.monotonic()
        wd.start(binary)
        metrics[f"{prefix}_session_up_s"] = time.monotonic() - t0
        # Its page's content, as the app's window counts as shown once its first view is there.
        wd.wait_text("h1", "Welcome to Tauri", 30)
        metrics[f"{prefix}_window_shown_s"] = time.monotonic() - t0
        time.sleep(10)
        pids = pids_of(binary)
        if pids:
            pss, rss, each = memory_kib(pids[0])
            metrics[f"{prefix}_pss_mib"], metrics[f"{prefix}_rss_mib"] = round(pss / 1024, 1), round(rss / 1024, 1)
            metrics[f"{prefix}_pss_mib_by_process"] = each
    finally:
        wd.end()
        stop(driver_proc)


CONSOLE_TOKEN = "e2e-console-token-5f0c2a9d41"


def fake_console(plans, reviews=None, decisions=None):
    """A Console on loopback serving the documented contract (docs/console-api.md): `plans` maps
    plan ids to their status, and may be changed while it runs; `reviews` adds a plan's review
    fields; each decision POSTed is appended to `decisions` (its Idempotency-Key and body), and
    decides the plan as Alice Example."""
    import http.server
    reviews = reviews if reviews is not None else {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def plan(self, pid):
            decided = plans[pid] != "pending"
            return {"id": pid, "status": plans[pid], "organization_id": "org_abc", "run_id": "run_xyz",
                    "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z",
                    "decided_by": ("Alice Example" if pid in reviews else "alice@example.com") if decided else None,
                    **reviews.get(pid, {})}

        def do_GET(self):
            if self.headers.get("Authorization") != f"Bearer {CONSOLE_TOKEN}":
                return self.answer(401, {"error": "unauthorized"})
            path = self.path.split("?")[0]
            if path == "/v1/me":
                return self.answer(200, {"id": "usr_1", "email": "alice@example.com", "name": "Alice Example"})
            if path == "/v1/remediation/plans":
                return self.answer(200, {"data": [self.plan(p) for p in plans if plans[p] == "pending"], "next_cursor": None})
            pid = path.rsplit("/", 1)[-1]
            if path.startswith("/v1/remediation/plans/") and pid in plans:
                return self.answer(200, self.plan(pid))
            return self.answer(404, {"error": "not_found"})

        def do_POST(self):
            if self.headers.get("Authorization") != f"Bearer {CONSOLE_TOKEN}":
                return self.answer(401, {"error": "unauthorized"})
            parts = self.path.split("?")[0].split("/")
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if len(parts) < 2 or parts[-1] != "decision" or parts[-2] not in plans:
                return self.answer(404, {"error": "not_found"})
            pid = parts[-2]
            if decisions is not None:
                decisions.append({"key": self.headers.get("Idempotency-Key"), "body": body})
            plans[pid] = "approved" if body.get("decision") == "approve" else "rejected"
            return self.answer(200, self.plan(pid))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def app_with_console(console, name, log_name):
    """The app on its own data and config, with a webhook secret and a Console connection to
    `console` (its token in the keychain), started over WebDriver and ready; returns the driver
    process, the session and the receiver's port."""
    base = os.path.join(TMP, name)
    env = {"XDG_CONFIG_HOME": os.path.join(base, "config"), "XDG_DATA_HOME": os.path.join(base, "data")}
    config_dir = os.path.join(env["XDG_CONFIG_HOME"], "zof-approvals")
    os.makedirs(config_dir, exist_ok=True)
    port = free_port()
    with open(os.path.join(config_dir, "settings.json"), "w") as f:
        json.dump({"listen": f"127.0.0.1:{port}", "reconcile_interval_secs": 3600,
                   "console_api_url": f"http://127.0.0.1:{console.server_address[1]}"}, f)
    run_env = dict(os.environ, **env)
    for args, given in ((["secret", "set"], SECRET_1), (["console", "login"], CONSOLE_TOKEN)):
        subprocess.run([CLI, *args], input=given, text=True, check=True, capture_output=True, env=run_env, timeout=60)
    driver_proc, wd = start_driver(log_name, env)
    try:
        wd.start(APP)
        wait_until("receiver ready (200)", lambda: healthz_answered(port) == 200, timeout=20)
    except BaseException:
        wd.end()
        stop(driver_proc)
        raise
    return driver_proc, wd, port


def end_console_story(wd, driver_proc, console):
    """Quits the app (from its tray's Quit), ends the session and stops the fake Console."""
    try:
        app_pids = pids_of(APP)
        if app_pids:
            quit_app(app_pids[0])
    finally:
        wd.end()
        stop(driver_proc)
        console.shutdown()


def review_and_approve_in_the_window():
    """Its own data and config: a high-risk plan delivered, its review read in the window (title,
    steps, a diff holding a script that never runs), and approved through the dialog by typing
    the environment's name; the (fake) Console receives exactly one decision."""
    plans, decisions = {}, []
    reviews = {"plan_review_1": {
        "title": "Roll back checkout to 4.2.0", "summary": "Error rate rose after 4.3.0", "risk": "high",
        "environment": "prod-eu", "service": "checkout", "requested_by": "carol@example.com",
        "policy_pack": {"id": "pp_1", "name": "Production changes"},
        "steps": [{"action": "rollback", "target": "deploy/checkout", "detail": "to 4.2.0"}],
        "diff": "--- a/deploy.yaml\n+++ b/deploy.yaml\n-image: checkout:4.3.0\n+image: checkout:4.2.0\n"
                "+<script>window.pwned = true</script>\n",
        "revision": "rev_7", "expires_at": "2099-01-01T00:00:00Z", "viewer": {"can_decide": True, "reason": None}}}
    console = fake_console(plans, reviews, decisions)
    driver_proc, wd, port = app_with_console(console, "review-story", "tauri-driver-review.log")
    try:
        plans["plan_review_1"] = "pending"
        sent = send(f"http://127.0.0.1:{port}/webhooks/zof", SECRET_1, plan="plan_review_1")
        check("a delivery of a plan with review details is accepted", sent.get("accepted") == 1, sent)
        wd.wait_containing('[data-testid="queue-headline"]', "Roll back checkout to 4.2.0", timeout=15)
        check("the queue shows the plan's title, environment and risk", True)
        wd.click(wd.wait_for('[data-plan-button="plan_review_1"]'))
        wd.wait_text('[data-testid="review-title"]', "Roll back checkout to 4.2.0", timeout=15)
        steps = wd.text(wd.wait_for('[data-testid="review-steps"]'))
        diff = wd.text(wd.wait_for('[data-testid="review-diff"]'))
        check("the review shows the steps", "rollback" in steps, steps)
        check("a script in the diff is shown as written", "<script>window.pwned = true</script>" in diff, diff)
        check("a script in the diff never runs", wd.script("return window.pwned === undefined;") is True)
        wd.screenshot("review.png")
        wd.click(wd.wait_for('[data-testid="approve"]'))
        confirm = wd.wait_for('[data-testid="decision-confirm"]')
        disabled = "return document.querySelector('[data-testid=\"decision-confirm\"]').disabled;"
        check("Approve stays disabled until the environment is typed", wd.script(disabled) is True)
        wd.type(wd.find('[data-testid="type-environment"]'), "prod-eu")
        wd.type(wd.find('[data-testid="decision-comment"]'), "diff checked")
        check("typing the environment enables Approve", wd.script(disabled) is False)
        wd.screenshot("review-approve-dialog.png")
        wd.click(confirm)
        wd.wait_containing('[data-testid="decision-report"]', "Approved by Alice Example", timeout=20)
        check("the review says who approved it", True)
        check("the Console received exactly one decision, with the revision shown and a key",
              len(decisions) == 1 and decisions[0]["body"].get("revision") == "rev_7" and bool(decisions[0]["key"]),
              decisions)
        wd.screenshot("review-approved.png")
        # The token was used for the review and the decision; the page never holds it.
        dom = wd.script("return document.documentElement.outerHTML;")
        kept = wd.script("return JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)]);")
        answers = json.dumps([wd.invoke(c) for c in ("get_console_status", "get_settings", "get_overview")]
                             + [wd.invoke("get_queue", {"limit": 50}), wd.invoke("get_review", {"planId": "plan_review_1"})])
        check("the Console token never reaches the page: not in the DOM, web storage or any command's answer",
              CONSOLE_TOKEN not in dom and CONSOLE_TOKEN not in kept and CONSOLE_TOKEN not in answers
              and "Roll back checkout" in answers, answers[:300])
    finally:
        end_console_story(wd, driver_proc, console)


def check_with_console_clears_a_plan_resolved_there():
    """Its own data and config: a plan delivered here, approved in the (fake) Console, and
    "Check with Console" in the window takes it out of the queue."""
    plans = {}
    console = fake_console(plans)
    driver_proc, wd, port = app_with_console(console, "console-story", "tauri-driver-console.log")
    try:
        plans["plan_console_1"] = "pending"
        sent = send(f"http://127.0.0.1:{port}/webhooks/zof", SECRET_1, plan="plan_console_1")
        check("a delivery for a plan the Console knows is accepted", sent.get("accepted") == 1, sent)
        wd.wait_for('[data-testid="queue-row"][data-plan-id="plan_console_1"]', timeout=15)
        plans["plan_console_1"] = "approved"
        wd.click(wd.wait_for('[data-testid="check-with-console"]', timeout=15))
        try:
            wait_until("the approved plan leaves the queue",
                       lambda: wd.find('[data-testid="queue-row"][data-plan-id="plan_console_1"]') is None, timeout=15)
            check("\"Check with Console\" clears a plan approved in the Console", True)
        except TimeoutError as e:
            check("\"Check with Console\" clears a plan approved in the Console", False, e)
    finally:
        end_console_story(wd, driver_proc, console)


NATS_PASSWORD = "e2e-nats-password-c81d07b2e5"


def nats_server_binary():
    """As tests/relay finds it: ZOF_NATS_SERVER, the venv scripts/deps.sh makes, or the PATH."""
    venv = os.path.join(ROOT, "target", "tools", "nats-venv", "bin", "nats-server")
    return os.environ.get("ZOF_NATS_SERVER") or (venv if os.path.exists(venv) else shutil.which("nats-server"))


def team_relay_from_settings():
    """Its own data, config and logs: a nats-server that wants a user and password, a
    `zof-approvals relay` in front of it, and Settings → Team relay in the window joins it. A
    delivery to the relay reaches the queue; the typed password is in the keychain only."""
    nats_bin = nats_server_binary()
    if not nats_bin:
        skip("Settings → Team relay joins a relay", "no nats-server (run scripts/deps.sh)")
        return
    base = os.path.join(TMP, "relay-story")
    env = {k: os.path.join(base, d) for k, d in
           (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state"))}
    config_dir = os.path.join(env["XDG_CONFIG_HOME"], "zof-approvals")
    os.makedirs(config_dir, exist_ok=True)
    port, nats_port = free_port(), free_port()
    settings_file = os.path.join(config_dir, "settings.json")
    with open(settings_file, "w") as f:
        json.dump({"listen": f"127.0.0.1:{port}"}, f)
    run_env = dict(os.environ, **env)
    subprocess.run([CLI, "secret", "set"], input=SECRET_1, text=True, check=True, capture_output=True,
                   env=run_env, timeout=60)
    nats_url = f"nats://127.0.0.1:{nats_port}"
    nats_log = open(os.path.join(base, "nats.log"), "w")
    nats = subprocess.Popen([nats_bin, "-js", "-sd", os.path.join(base, "js"), "-a", "127.0.0.1", "-p", str(nats_port),
                             "--user", "e2e", "--pass", NATS_PASSWORD], stdout=subprocess.DEVNULL, stderr=nats_log)
    relay = driver_proc = wd = None
    try:
        wait_until("nats-server", lambda: accepts_connections(nats_port), timeout=10)
        relay_env = dict(os.environ, ZOF_WEBHOOK_SECRET=SECRET_1, RELAY_NATS_PASSWORD=NATS_PASSWORD)
        relay = subprocess.Popen([CLI, "relay", "--listen", "127.0.0.1:0", "--nats", nats_url, "--nats-user", "e2e",
                                  "--nats-password-env", "RELAY_NATS_PASSWORD"], env=relay_env, text=True,
                                 stdout=subprocess.PIPE, stderr=open(os.path.join(base, "relay.log"), "w"))
        line = relay.stdout.readline().strip()
        check("the relay listens", line.startswith("listening on "), line)
        relay_url = line.removeprefix("listening on ") + "/webhooks/zof"
        driver_proc, wd = start_driver("tauri-driver-relay.log", env)
        wd.start(APP)
        wait_until("receiver ready (200)", lambda: healthz_answered(port) == 200, timeout=20)
        wd.click(wd.wait_for('[data-testid="nav-settings"]'))
        state_css = '[data-testid="relay-state"]'
        wd.wait_text(state_css, "relay: off")
        wd.type(wd.find('[data-testid="relay-url"]'), nats_url)
        wd.script("arguments[0].value = 'user'; arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
                  {ELEMENT: wd.find('[data-testid="relay-auth"]')})
        wd.type(wd.wait_for('[data-testid="relay-user"]'), "e2e")
        wd.type(wd.find('[data-testid="relay-password"]'), NATS_PASSWORD)
        wd.type(wd.find('[data-testid="relay-consumer"]'), "e2e_desk")
        wd.click(wd.find('[data-testid="relay-save"]'))
        try:
            wd.wait_text(state_css, "relay: connected · consumer e2e_desk", timeout=15)
            check("Settings → Team relay: saved, the status says connected", True)
        except TimeoutError as e:
            said = wd.find('[data-testid="relay-result"]')
            check("Settings → Team relay: saved, the status says connected", False, f"{e}; {said and wd.text(said)!r}")
            wd.screenshot("team-relay-failed.png")
        dom = wd.script("return document.documentElement.outerHTML;")
        answers = json.dumps([wd.invoke("get_relay_status"), wd.invoke("get_settings")])
        placeholder = wd.script("return arguments[0].placeholder;", {ELEMENT: wd.find('[data-testid="relay-password"]')})
        check("the page shows the password only as set, by fingerprint",
              NATS_PASSWORD not in dom and NATS_PASSWORD not in answers and placeholder.startswith("set ("), placeholder)
        sent = send(relay_url, SECRET_1, plan="plan_relay_1")
        check("the relay takes a delivery", sent.get("accepted") == 1, sent)
        wd.click(wd.find('[data-testid="nav-home"]'))
        try:
            wd.wait_for('[data-testid="queue-row"][data-plan-id="plan_relay_1"]', timeout=15)
            check("a delivery through the team relay reaches the queue", True)
        except TimeoutError as e:
            check("a delivery through the team relay reaches the queue", False, e)
        with open(settings_file) as f:
            saved = f.read()
        check("settings.json names the relay, never its password",
              nats_url in saved and NATS_PASSWORD not in saved, saved)
        if shutil.which("secret-tool"):
            kept = subprocess.run(["secret-tool", "lookup", "service", "zof-approvals", "username", "nats-password"],
                                  capture_output=True, text=True, timeout=10).stdout
            check("the password is in the keychain, entry nats-password", kept == NATS_PASSWORD, repr(kept[:4]))
        app_pids = pids_of(APP)
        if app_pids:
            quit_app(app_pids[0])
        logs = os.path.join(env["XDG_STATE_HOME"], "zof-approvals", "logs")
        text = ""
        for root, _dirs, files in os.walk(logs):
            for name in files:
                with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                    text += f.read()
        check("the app's log says it follows the relay, and holds no NATS password",
              "relay: following" in text and NATS_PASSWORD not in text, logs)
    finally:
        if wd:
            wd.end()
        stop(driver_proc)
        stop(relay)
        stop(nats)


def logs_hold_no_secret():
    """After the whole story: the app's log files exist, and hold no secret and no raw body."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.environ["HOME"], ".local", "state")
    logs = os.path.join(state, "zof-approvals", "logs")
    texts = []
    for root, _dirs, files in os.walk(logs):
        for name in files:
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
    text = "\n".join(texts)
    check("the app wrote its log file", bool(text.strip()), logs)
    leaked = [s for s in (SECRET_1, SECRET_2, "whsec_", '"data":{"object"', '"organization_id":') if s in text]
    check("the log files hold no secret and no raw body", not leaked, repr(leaked))


def main():
    try:
        if os.environ.get("ZOF_E2E_ONLY") == "smoke":
            smoke()
        elif os.environ.get("ZOF_E2E_ONLY") == "team-relay":
            team_relay_from_settings()
        elif os.environ.get("ZOF_E2E_ONLY") == "review":
            review_and_approve_in_the_window()
        elif os.environ.get("ZOF_E2E_ONLY") == "failed-start":
            os.makedirs(os.path.join(os.environ["XDG_CONFIG_HOME"], "zof-approvals"), exist_ok=True)
            with open(os.path.join(os.environ["XDG_CONFIG_HOME"], "zof-approvals", "settings.json"), "w") as f:
                json.dump({}, f)
            subprocess.run([CLI, "secret", "set"], input=SECRET_1, text=True, check=True, capture_output=True)
            failed_start_recovers(os.path.join(os.environ["XDG_DATA_HOME"], "zof-approvals"))
        else:
            story()
            logs_hold_no_secret()
            check_with_console_clears_a_plan_resolved_there()
            review_and_approve_in_the_window()
            team_relay_from_settings()
    except (TimeoutError, WebDriverError, OSError, KeyError, subprocess.SubprocessError) as e:
        check("the story ran to the end", False, repr(e))
    hello = os.environ.get("ZOF_E2E_HELLO_BIN")
    if hello:
        # As built (WebKit's defaults), and with the renderer setting this app makes for itself.
        for prefix, env_extra in (("hello", None), ("hello_cpu", {"WEBKIT_DISABLE_DMABUF_RENDERER": "1"})):
            try:
                measure_hello(hello, prefix, env_extra)
            except (TimeoutError, WebDriverError, OSError) as e:
                print(f"note: hello-world measurement ({prefix}) failed: {e!r}")
    print("metrics: " + json.dumps(metrics, default=str), flush=True)
    os.makedirs(SHOTS, exist_ok=True)
    name = "e2e-smoke-metrics.json" if os.environ.get("ZOF_E2E_ONLY") == "smoke" else "e2e-metrics.json"
    with open(os.path.join(SHOTS, "..", name), "w") as f:
        json.dump(metrics, f, indent=2, default=str)
    print(f"{results['passed']} passed, {results['failed']} failed, {results['skipped']} skipped")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
