//! The local control socket (`control.sock` in the data dir, mode 0600): how
//! `zof-approvals console reconcile`, `console status` and `plans` reach a receiver that holds
//! the store.
//! A Unix domain socket, not an HTTP endpoint, so no web page can reach it; one JSON line in
//! (`{"op":"reconcile"}`, `{"op":"status"}` or `{"op":"plans"}`), one JSON line out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{ConsoleHandle, ConsoleStatus, ReconcileReport};
use crate::store::{PlanRecord, Store};

pub const SOCKET_FILE: &str = "control.sock";
/// A request line longer than this is refused.
const MAX_REQUEST: u64 = 1024;
/// How long a client waits for a reconciliation (retries with backoff included).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Reconcile,
    Status,
    /// Every plan, for `zof-approvals plans` while the receiver holds the store.
    Plans,
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    op: Op,
}

/// One answer on the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReconcileReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<super::ConnectionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plans: Option<Vec<PlanRecord>>,
}

impl Answer {
    fn empty(ok: bool) -> Answer {
        Answer { ok, report: None, status: None, error: None, state: None, plans: None }
    }
}

/// The socket being served; removed when stopped.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

impl ControlSocket {
    /// Serves `handle` on `data_dir/control.sock`. The caller holds the store's lock, so a socket
    /// file left there belongs to a receiver that is gone: it is replaced. The socket is bound in
    /// a private directory, made 0600, then moved into place, so it is never reachable by others.
    pub fn serve(data_dir: &Path, handle: ConsoleHandle, store: Store) -> std::io::Result<ControlSocket> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let path = socket_path(data_dir);
        let private = data_dir.join(format!(".control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&private);
        std::fs::DirBuilder::new().mode(0o700).create(&private)?;
        let bound = private.join(SOCKET_FILE);
        let listener = UnixListener::bind(&bound).and_then(|l| {
            std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))?;
            let _ = std::fs::remove_file(&path);
            std::fs::rename(&bound, &path)?;
            Ok(l)
        });
        let _ = std::fs::remove_dir_all(&private);
        let listener = listener?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept(listener, handle, store, stopped));
        Ok(ControlSocket { path, task, stop })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

async fn accept(listener: UnixListener, handle: ConsoleHandle, store: Store, mut stop: oneshot::Receiver<()>) {
    loop {
        let conn = tokio::select! {
            _ = &mut stop => return,
            conn = listener.accept() => conn,
        };
        match conn {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, handle.clone(), store.clone()));
            }
            Err(e) => {
                tracing::debug!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(stream: UnixStream, handle: ConsoleHandle, store: Store) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = BufReader::new(read.take(MAX_REQUEST)).read_line(&mut line).await;
    let answer = match read.ok().and_then(|_| serde_json::from_str::<Request>(&line).ok()) {
        None => failure(
            "a request is one JSON line: {\"op\":\"reconcile\"}, {\"op\":\"status\"} or {\"op\":\"plans\"}",
            None,
        ),
        Some(Request { op: Op::Status }) => {
            Answer { status: serde_json::to_value::<ConsoleStatus>(handle.status()).ok(), ..Answer::empty(true) }
        }
        Some(Request { op: Op::Reconcile }) => match handle.reconcile_now().await {
            Ok(report) => Answer { report: Some(report), ..Answer::empty(true) },
            Err(e) => failure(&e.to_string(), Some(e.state())),
        },
        Some(Request { op: Op::Plans }) => match tokio::task::spawn_blocking(move || store.plans()).await {
            Ok(Ok(plans)) => Answer { plans: Some(plans), ..Answer::empty(true) },
            Ok(Err(e)) => failure(&e.to_string(), None),
            Err(e) => failure(&e.to_string(), None),
        },
    };
    if let Ok(mut text) = serde_json::to_string(&answer) {
        text.push('\n');
        let _ = write.write_all(text.as_bytes()).await;
        let _ = write.shutdown().await;
    }
}

fn failure(message: &str, state: Option<super::ConnectionState>) -> Answer {
    Answer { error: Some(message.to_owned()), state, ..Answer::empty(false) }
}

/// Asks the receiver serving `data_dir`, if one does: `Ok(None)` when none listens there.
pub async fn ask(data_dir: &Path, op: Op) -> std::io::Result<Option<Answer>> {
    let mut stream = match UnixStream::connect(socket_path(data_dir)).await {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut request = serde_json::to_string(&Request { op }).map_err(std::io::Error::other)?;
    request.push('\n');
    stream.write_all(request.as_bytes()).await?;
    let mut line = String::new();
    tokio::time::timeout(CLIENT_TIMEOUT, BufReader::new(stream).read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the receiver did not answer"))??;
    serde_json::from_str(&line).map(Some).map_err(std::io::Error::other)
}
