//! A private desktop session for one test: its own D-Bus session bus, optionally the real
//! Secret Service (gnome-keyring, unlocked without a prompt), and fresh HOME/XDG dirs. Children
//! started through [`Session::command`] see only this session, so tests run in parallel.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zof_testkit::PrivateBus;

pub struct Session {
    pub dir: tempfile::TempDir,
    pub bus: String,
    private: PrivateBus,
    keyring: Option<Child>,
}

impl Session {
    /// A session bus with nothing on it.
    pub fn bus_only() -> Session {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["home", "run", "config", "data"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        set_private(&dir.path().join("run"));
        set_private(&dir.path().join("home"));
        let private = PrivateBus::start().expect("dbus-daemon (package dbus) is needed for these tests");
        Session { bus: private.address.clone(), dir, private, keyring: None }
    }

    /// A session bus with gnome-keyring's Secret Service, its "login" collection unlocked.
    pub fn with_keyring() -> Session {
        let mut s = Session::bus_only();
        s.start_keyring();
        s
    }

    pub fn start_keyring(&mut self) {
        let mut child = self
            .command("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon (package gnome-keyring) is needed for these tests");
        child.stdin.take().unwrap().write_all(b"test-session-password").unwrap();
        self.keyring = Some(child);
        self.wait_for_name("org.freedesktop.secrets");
    }

    pub fn stop_keyring(&mut self) {
        if let Some(mut k) = self.keyring.take() {
            let _ = k.kill();
            let _ = k.wait();
        }
    }

    /// Locks the "login" collection, as a screen lock or `secret-tool lock` would.
    pub fn lock_keyring(&self) {
        let out = self
            .command("dbus-send")
            .args([
                "--session",
                "--dest=org.freedesktop.secrets",
                "--print-reply",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.Lock",
                "array:objpath:/org/freedesktop/secrets/collection/login",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// What `secret-tool` finds in the keyring for one fingerprint.
    pub fn keyring_lookup(&self, fingerprint: &str) -> Option<String> {
        let out = self
            .command("secret-tool")
            .args(["lookup", "service", "zof-approvals", "username", &format!("webhook-secret-{fingerprint}")])
            .output()
            .expect("secret-tool (package libsecret-tools) is needed for these tests");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Deletes the keychain entry of `fingerprint` with another program (`secret-tool clear`),
    /// as a user or a keychain manager would, behind the app's back.
    pub fn keyring_clear(&self, fingerprint: &str) {
        let out = self
            .command("secret-tool")
            .args(["clear", "service", "zof-approvals", "username", &format!("webhook-secret-{fingerprint}")])
            .output()
            .expect("secret-tool (package libsecret-tools) is needed for these tests");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// A command that runs inside this session (its bus, its HOME and XDG dirs, no display).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        let d = self.dir.path();
        c.env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("HOME", d.join("home"))
            .env("XDG_RUNTIME_DIR", d.join("run"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .env("XDG_DATA_HOME", d.join("data"))
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("ZOF_WEBHOOK_SECRET");
        c
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config/zof-approvals")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data/zof-approvals")
    }

    fn wait_for_name(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = self
                .command("dbus-send")
                .args([
                    "--session",
                    "--dest=org.freedesktop.DBus",
                    "--print-reply",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    &format!("string:{name}"),
                ])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("boolean true") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{name} never appeared on the test bus");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The keyring goes first; the bus follows when `private` drops.
        self.stop_keyring();
        let _ = &self.private;
    }
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}
