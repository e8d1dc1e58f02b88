//! The local control socket (`control.sock` in the data dir, mode 0600): how
//! `zof-approvals console reconcile`, `console status`, `console subscribe`, `plans`, `handle`,
//! `snooze`, `audit` and the `secret` commands reach a receiver that holds the store.
//! A Unix domain socket, not an HTTP endpoint, so no web page can reach it; one JSON line in
//! (`{"op":"reconcile"}`, `{"op":"status"}`, `{"op":"plans"}`, `{"op":"handle","plan_id":"p"}`,
//! `{"op":"snooze","plan_id":"p","minutes":60}`, `{"op":"audit","plan_id":"p","since":"…"}`,
//! `{"op":"secret_set","secret":"…","overlap_secs":86400}`, `{"op":"secret_generate"}`,
//! `{"op":"secret_revoke_previous"}`, `{"op":"subscribe","url":"https://…"}`), one JSON line out.
//! Every change goes to its one owner ([`crate::actions`]) in the receiver, which makes it and
//! records it (source `cli`) once: the notification is withdrawn and the views hear of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use chrono::{DateTime, Utc};

use crate::actions::{DecisionOutcome, DecisionReport, ErrorCode, Review};
use crate::console::{ConnectionState, ConsoleStatus, ReconcileReport, Subscription};
use crate::domain::audit::{AuditEntry, AuditFilter, Source};
use crate::domain::review::Verdict;
use crate::panel::Panel;
use crate::store::PlanRecord;
use crate::verify::Secret;

pub const SOCKET_FILE: &str = "control.sock";
/// A request line longer than this is refused (a secret, or a decision's comment, fits).
const MAX_REQUEST: u64 = 16 * 1024;
/// How long a client waits for a reconciliation (retries with backoff included).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Reconcile,
    Status,
    /// Every plan, for `zof-approvals plans` while the receiver holds the store.
    Plans,
    /// Mark `plan_id` handled (`zof-approvals handle`).
    Handle,
    /// Snooze `plan_id` for `minutes` (`zof-approvals snooze`).
    Snooze,
    /// The audit log, newest first, filtered by `plan_id`, `since` and `limit`.
    Audit,
    /// Make `secret` current (`zof-approvals secret set`); the previous one keeps verifying
    /// for `overlap_secs` (default: the settings' overlap).
    SecretSet,
    /// Generate a secret and make it current; the answer carries it, once.
    SecretGenerate,
    /// End the overlap now.
    SecretRevokePrevious,
    /// Subscribe `url` in the Console; its webhook secret becomes current.
    Subscribe,
    /// `plan_id` to review: its details read again from the Console (`zof-approvals show`).
    Review,
    /// Approve or reject `plan_id` (`verdict`), as shown at `revision`, with `comment`.
    Decide,
}

/// A secret in a request or an answer: never in `Debug`, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub zeroize::Zeroizing<String>);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(…)")
    }
}

impl Serialize for SecretText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SecretText, D::Error> {
        Ok(SecretText(zeroize::Zeroizing::new(String::deserialize(d)?)))
    }
}

/// One request on the socket: the op and what it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Request {
    pub fn new(op: Op) -> Request {
        Request {
            op,
            plan_id: None,
            minutes: None,
            since: None,
            limit: None,
            secret: None,
            overlap_secs: None,
            url: None,
            verdict: None,
            revision: None,
            comment: None,
        }
    }
}

/// At most this many audit rows in one answer.
pub const AUDIT_MAX: usize = 100_000;
/// A plan id longer than this is refused (Zof's ids are far shorter).
const MAX_PLAN_ID: usize = 256;

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
    pub state: Option<ConnectionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plans: Option<Vec<PlanRecord>>,
    /// The error's stable code (`unknown_plan`, `plan_handled`, `invalid_request`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// The plan a `handle` or `snooze` acted on, as it now is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanRecord>,
    /// `handle`: the plan was already handled (or decided in the Console); nothing changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub already: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Vec<AuditEntry>>,
    /// `secret_generate`: the new secret, to show once; `secret_revoke_previous`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretText>,
    /// `secret_revoke_previous`: the fingerprints revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<Subscription>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionReport>,
}

impl Answer {
    fn empty(ok: bool) -> Answer {
        Answer {
            ok,
            report: None,
            status: None,
            error: None,
            state: None,
            plans: None,
            code: None,
            plan: None,
            already: None,
            audit: None,
            secret: None,
            revoked: None,
            subscription: None,
            review: None,
            decision: None,
        }
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
    /// Serves `panel` on `data_dir/control.sock`. The caller holds the store's lock, so a socket
    /// file left there belongs to a receiver that is gone: it is replaced. The socket is bound in
    /// a private directory, made 0600, then moved into place, so it is never reachable by others.
    pub fn serve(data_dir: &Path, panel: Panel) -> std::io::Result<ControlSocket> {
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
        let task = tokio::spawn(accept(listener, panel, stopped));
        Ok(ControlSocket { path, task, stop })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

async fn accept(listener: UnixListener, panel: Panel, mut stop: oneshot::Receiver<()>) {
    loop {
        let conn = tokio::select! {
            _ = &mut stop => return,
            conn = listener.accept() => conn,
        };
        match conn {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, panel.clone()));
            }
            Err(e) => {
                tracing::debug!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(stream: UnixStream, panel: Panel) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = BufReader::new(read.take(MAX_REQUEST)).read_line(&mut line).await;
    let answer = match read.ok().and_then(|_| serde_json::from_str::<Request>(&line).ok()) {
        None => failure(
            "a request is one JSON line, e.g. {\"op\":\"status\"} or {\"op\":\"handle\",\"plan_id\":\"…\"}",
            None,
        ),
        Some(request) => serve_request(request, &panel).await,
    };
    if let Ok(mut text) = serde_json::to_string(&answer) {
        text.push('\n');
        let _ = write.write_all(text.as_bytes()).await;
        let _ = write.shutdown().await;
    }
}

async fn serve_request(request: Request, panel: &Panel) -> Answer {
    match request.op {
        Op::Status => {
            Answer { status: serde_json::to_value::<ConsoleStatus>(panel.console.status()).ok(), ..Answer::empty(true) }
        }
        Op::Reconcile => match panel.console.reconcile_now().await {
            Ok(report) => Answer { report: Some(report), ..Answer::empty(true) },
            Err(e) => failure(&e.to_string(), Some(e.state())),
        },
        Op::Plans => {
            let store = panel.store.clone();
            match tokio::task::spawn_blocking(move || store.plans()).await {
                Ok(Ok(plans)) => Answer { plans: Some(plans), ..Answer::empty(true) },
                Ok(Err(e)) => failure(&e.to_string(), None),
                Err(e) => failure(&e.to_string(), None),
            }
        }
        Op::Handle => match plan_id(&request) {
            Err(why) => invalid(why),
            Ok(id) => match panel.actions().handle(&id, Source::Cli).await {
                Ok(done) => Answer { plan: Some(done.plan), already: Some(done.already), ..Answer::empty(true) },
                Err(e) => coded(e.code(), &e.to_string()),
            },
        },
        Op::Snooze => match (plan_id(&request), request.minutes) {
            (Err(why), _) => invalid(why),
            (Ok(_), None) => invalid("`snooze` needs `minutes`"),
            (Ok(id), Some(minutes)) => match panel.actions().snooze(&id, minutes, Source::Cli).await {
                Ok(plan) => Answer { plan: Some(plan), ..Answer::empty(true) },
                Err(e) => coded(e.code(), &e.to_string()),
            },
        },
        Op::Audit => {
            if let Err(why) = request.plan_id.as_deref().map_or(Ok(()), check_plan_id) {
                return invalid(why);
            }
            let limit = request.limit.unwrap_or(AUDIT_MAX).clamp(1, AUDIT_MAX);
            let filter =
                AuditFilter { plan_id: request.plan_id, since: request.since, limit, ..AuditFilter::default() };
            match panel.audit(filter).await {
                Ok(rows) => Answer { audit: Some(rows), ..Answer::empty(true) },
                Err(e) => panel_failure(&e),
            }
        }
        Op::SecretSet | Op::SecretGenerate | Op::SecretRevokePrevious => secret_op(request, panel).await,
        Op::Review => match plan_id(&request) {
            Err(why) => invalid(why),
            Ok(id) => match panel.actions().review(&id).await {
                Ok(review) => Answer { review: Some(review), ..Answer::empty(true) },
                Err(e) => coded(e.code(), &e.to_string()),
            },
        },
        Op::Decide => match (plan_id(&request), request.verdict) {
            (Err(why), _) => invalid(why),
            (Ok(_), None) => invalid("`decide` needs `verdict`: approve or reject"),
            (Ok(_), Some(_))
                if request.comment.as_ref().is_some_and(|c| c.len() > crate::domain::team::MAX_COMMENT) =>
            {
                invalid("the comment is too long")
            }
            (Ok(id), Some(verdict)) => {
                let comment = request.comment.unwrap_or_default();
                let report = panel.actions().decide(&id, verdict, request.revision, &comment, Source::Cli).await;
                Answer { ok: report.outcome == DecisionOutcome::Decided, decision: Some(report), ..Answer::empty(true) }
            }
        },
        Op::Subscribe => {
            let Some(url) = request.url else { return invalid("`subscribe` needs `url`") };
            let client = match panel.console.client(&panel.settings()).await {
                Ok(client) => client,
                Err(e) => return failure(&e.to_string(), Some(e.state())),
            };
            match crate::console::subscribe(&client, panel.actions(), &url, Source::Cli).await {
                Ok(s) => Answer { subscription: Some(s), ..Answer::empty(true) },
                Err(e) => failure(&e.to_string(), Some(e.state())),
            }
        }
    }
}

/// A change of the webhook secrets asked by the CLI, made (and recorded) here.
async fn secret_op(request: Request, panel: &Panel) -> Answer {
    let actions = panel.actions();
    let overlap = match request.overlap_secs {
        Some(secs) if secs < 0 => return invalid("`overlap_secs` must not be negative"),
        Some(secs) => chrono::Duration::seconds(secs),
        None => chrono::Duration::hours(i64::from(actions.settings().secret_overlap_hours)),
    };
    let done = match request.op {
        Op::SecretSet => {
            let Some(text) = request.secret else { return invalid("`secret_set` needs `secret`") };
            let secret = match Secret::new(&text.0) {
                Ok(secret) => secret,
                Err(e) => return coded(ErrorCode::InvalidSecret, &e.to_string()),
            };
            actions.set_secret(secret, overlap, Source::Cli).await.map(|_| (None, None))
        }
        Op::SecretGenerate => actions
            .generate_secret(overlap, Source::Cli)
            .await
            .map(|(secret, _)| (Some(SecretText(zeroize::Zeroizing::new(secret.expose().to_owned()))), None)),
        _ => actions
            .revoke_previous_secret(Source::Cli)
            .await
            .map(|(revoked, _)| (None, Some(revoked.into_iter().map(|f| f.0).collect()))),
    };
    match done {
        Ok((secret, revoked)) => Answer { secret, revoked, ..Answer::empty(true) },
        Err(e) => coded(e.code(), &e.to_string()),
    }
}

/// The request's plan id, checked; else what to answer.
fn plan_id(request: &Request) -> Result<String, &'static str> {
    let id = request.plan_id.as_deref().ok_or("this op needs `plan_id`")?;
    check_plan_id(id)?;
    Ok(id.to_owned())
}

fn check_plan_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_PLAN_ID || id.chars().any(char::is_control) {
        return Err("`plan_id` must be 1 to 256 characters, without control characters");
    }
    Ok(())
}

fn invalid(message: &str) -> Answer {
    coded(ErrorCode::InvalidRequest, message)
}

fn coded(code: ErrorCode, message: &str) -> Answer {
    Answer { code: Some(code), ..failure(message, None) }
}

fn panel_failure(e: &crate::panel::PanelError) -> Answer {
    Answer { code: serde_json::from_value(serde_json::Value::from(e.code)).ok(), ..failure(&e.message, None) }
}

fn failure(message: &str, state: Option<ConnectionState>) -> Answer {
    Answer { error: Some(message.to_owned()), state, ..Answer::empty(false) }
}

/// Asks the receiver serving `data_dir`, if one does: `Ok(None)` when none listens there.
pub async fn ask(data_dir: &Path, op: Op) -> std::io::Result<Option<Answer>> {
    send(data_dir, &Request::new(op)).await
}

/// Sends `request` to the receiver serving `data_dir`, if one does: `Ok(None)` when none listens there.
pub async fn send(data_dir: &Path, request: &Request) -> std::io::Result<Option<Answer>> {
    let mut stream = match UnixStream::connect(socket_path(data_dir)).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut request = serde_json::to_string(request).map_err(std::io::Error::other)?;
    request.push('\n');
    stream.write_all(request.as_bytes()).await?;
    let mut line = String::new();
    tokio::time::timeout(CLIENT_TIMEOUT, BufReader::new(stream).read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the receiver did not answer"))??;
    serde_json::from_str(&line).map(Some).map_err(std::io::Error::other)
}
