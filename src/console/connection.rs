//! The task that keeps the queue reconciled with the Console: at start, every
//! `reconcile_interval_secs`, after sleep or a network change, and on demand. It runs on its
//! own task (store work on blocking threads), so nothing here delays the receiver's answers.
//! It reads the settings before each run, so a change takes effect without a restart; the token
//! only when it has none, the Console refused it, or a new one was saved (a locked keychain may
//! prompt on every read).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::api::{ConsoleClient, RetryPolicy};
use super::reconcile::{reconcile, ReconcileReport};
use super::{wake, ConsoleError, ConsoleSetup, ConsoleToken, TokenSource};
use crate::config::Settings;
use crate::events::CoreEvent;
use crate::outbox::{Notifier, OutboxKick};
use crate::store::Store;

/// The connection's state, as a word the CLI and the panel show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// No `console_api_url`: the app works from deliveries alone.
    Off,
    /// An API URL, but no token (or the keychain cannot give it).
    NoToken,
    /// Not reconciled yet.
    Connecting,
    Ok,
    /// The Console refused the token (401/403): nothing is retried until the next interval.
    TokenRejected,
    /// The Console could not be reached or failed; retried with backoff.
    Unreachable,
}

/// What the panel and `console status` show. Never the token: only its fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsoleStatus {
    pub state: ConnectionState,
    pub api_url: String,
    pub token_fingerprint: Option<String>,
    /// Why the state is not `ok`, in words.
    pub message: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_report: Option<ReconcileReport>,
    pub next_at: Option<DateTime<Utc>>,
    pub interval_secs: u32,
    /// Requests made to the Console since start (retries included).
    pub requests: u64,
    pub public_url: String,
}

impl ConsoleStatus {
    fn initial(settings: &Settings) -> ConsoleStatus {
        let on = !settings.console_api_url.is_empty();
        ConsoleStatus {
            state: if on { ConnectionState::Connecting } else { ConnectionState::Off },
            api_url: settings.console_api_url.clone(),
            token_fingerprint: None,
            message: None,
            last_attempt_at: None,
            last_success_at: None,
            last_report: None,
            next_at: None,
            interval_secs: settings.reconcile_interval_secs,
            requests: 0,
            public_url: settings.public_url.clone(),
        }
    }
}

type Reply = oneshot::Sender<Result<ReconcileReport, ConsoleError>>;

/// Asks the running connection for a reconciliation, or for its status. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConsoleHandle(Arc<HandleParts>);

#[derive(Debug)]
struct HandleParts {
    requests: mpsc::Sender<Reply>,
    status: Arc<RwLock<ConsoleStatus>>,
    token: TokenSource,
    retry: RetryPolicy,
    /// Set when a new token was saved: the connection reads it again before its next run.
    token_changed: Arc<AtomicBool>,
}

impl ConsoleHandle {
    /// Reconciles now (after the one running, if any) and returns what it did.
    pub async fn reconcile_now(&self) -> Result<ReconcileReport, ConsoleError> {
        let (tx, rx) = oneshot::channel();
        self.0.requests.send(tx).await.map_err(|_| ConsoleError::Stopped)?;
        rx.await.map_err(|_| ConsoleError::Stopped)?
    }

    /// Asks for a reconciliation without waiting for it (after a settings or token change).
    pub fn nudge(&self) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.0.requests.try_send(tx);
    }

    pub fn status(&self) -> ConsoleStatus {
        self.0.status.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Keeps a new API token in the keychain (when the token comes from there) and reconciles
    /// with it. The token is not returned; the status shows its fingerprint after the next run.
    pub async fn set_token(&self, token: ConsoleToken) -> Result<String, ConsoleError> {
        let TokenSource::Keychain(store) = self.0.token.clone() else {
            return Err(ConsoleError::Token(super::TokenError::Keychain(crate::secrets::KeychainError::Failed(
                "the Console API token comes from the command line here; restart without --console-token-env to set it"
                    .into(),
            ))));
        };
        let fingerprint = token.fingerprint();
        tokio::task::spawn_blocking(move || token.save(store.as_ref()))
            .await
            .map_err(|e| ConsoleError::Internal(e.to_string()))??;
        self.0.token_changed.store(true, Ordering::SeqCst);
        self.nudge();
        Ok(fingerprint)
    }

    /// A client for the Console in `settings`, with the current token.
    pub async fn client(&self, settings: &Settings) -> Result<ConsoleClient, ConsoleError> {
        if settings.console_api_url.is_empty() {
            return Err(ConsoleError::NotConfigured);
        }
        let source = self.0.token.clone();
        let token = tokio::task::spawn_blocking(move || source.token())
            .await
            .map_err(|e| ConsoleError::Internal(e.to_string()))??
            .ok_or(ConsoleError::NoToken)?;
        ConsoleClient::new(&settings.console_api_url, token, self.0.retry)
    }
}

/// What the connection works on: the application's own parts.
#[derive(Debug, Clone)]
pub struct ConnectionParts {
    pub store: Store,
    pub settings: Arc<RwLock<Settings>>,
    pub notifier: Arc<dyn Notifier>,
    pub events: broadcast::Sender<CoreEvent>,
    pub outbox: OutboxKick,
    /// What follows a plan the Console resolved (withdrawn, the views told) is the actions' one follow-up.
    pub actions: crate::actions::Actions,
    /// Plans whose details are asked for as they are stored.
    pub details: crate::details::DetailsBoard,
}

/// The running connection task.
#[derive(Debug)]
pub struct ConsoleConnection {
    handle: ConsoleHandle,
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
    details: (crate::details::DetailsBoard, JoinHandle<()>),
}

impl ConsoleConnection {
    /// Starts the task (on the current runtime). With no API URL it only waits for one.
    pub fn start(parts: ConnectionParts, setup: ConsoleSetup) -> ConsoleConnection {
        let settings = parts.settings.read().unwrap_or_else(PoisonError::into_inner).clone();
        let status = Arc::new(RwLock::new(ConsoleStatus::initial(&settings)));
        let (requests, asked) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel();
        let token_changed = Arc::new(AtomicBool::new(false));
        let handle = ConsoleHandle(Arc::new(HandleParts {
            requests,
            status: status.clone(),
            token: setup.token.clone(),
            retry: setup.retry,
            token_changed: token_changed.clone(),
        }));
        let reviews = super::Reviews::new(handle.clone(), parts.settings.clone(), setup.decision_timeout);
        parts.actions.serve_reviews(Arc::new(reviews.clone()));
        let board = parts.details.clone();
        // Connected here, before any delivery is taken: none misses its details.
        let requests = board.connect();
        board.set_active(details_may_come(ConsoleStatus::initial(&settings).state));
        let fetching =
            tokio::spawn(super::review::fetch_details(reviews, parts.actions.clone(), board.clone(), requests));
        let runner = Runner { parts, setup, status, client: None, requests_before: 0, token: None, token_changed };
        let task = tokio::spawn(runner.run(asked, stopped));
        ConsoleConnection { handle, task, stop, details: (board, fetching) }
    }

    pub fn handle(&self) -> ConsoleHandle {
        self.handle.clone()
    }

    /// Stops the task; a reconciliation in flight is abandoned (its store writes are each whole).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let (board, fetching) = self.details;
        board.disconnect();
        let _ = fetching.await;
    }
}

/// Whether a stored plan's details may come from the Console in this state: not without a URL
/// or a usable token.
fn details_may_come(state: ConnectionState) -> bool {
    !matches!(state, ConnectionState::Off | ConnectionState::NoToken | ConnectionState::TokenRejected)
}

struct Runner {
    parts: ConnectionParts,
    setup: ConsoleSetup,
    status: Arc<RwLock<ConsoleStatus>>,
    /// Kept while the URL and the token stay the same (its connections are reused).
    client: Option<ConsoleClient>,
    /// Requests made by clients replaced before this one.
    requests_before: u64,
    /// The token last read. A keychain read may prompt when the keychain is locked, so it is
    /// read again only when there is none yet, the Console refused it, or a new one was saved.
    token: Option<ConsoleToken>,
    token_changed: Arc<AtomicBool>,
}

/// Where there is no logind to say so, a resume from sleep shows as the wall clock running ahead
/// of the monotonic clock (which stands still during suspend on Linux, so the timer alone would
/// wait out the rest of its interval after a long sleep).
struct ClockWatch {
    mono: Instant,
    wall: std::time::SystemTime,
}

impl ClockWatch {
    const EVERY: Duration = Duration::from_secs(15);
    const JUMP: Duration = Duration::from_secs(60);

    fn new() -> ClockWatch {
        ClockWatch { mono: Instant::now(), wall: std::time::SystemTime::now() }
    }

    /// Whether the wall clock ran ahead by more than [`ClockWatch::JUMP`] since the last look.
    fn slept(&mut self) -> bool {
        let now = ClockWatch::new();
        let wall = now.wall.duration_since(self.wall).unwrap_or_default();
        let mono = now.mono.saturating_duration_since(self.mono);
        *self = now;
        wall.saturating_sub(mono) > ClockWatch::JUMP
    }
}

/// After a failure the next try comes sooner than the interval: 30 s, doubling, at most 5 min.
const FAILURE_BACKOFF: RetryPolicy =
    RetryPolicy { first_delay: Duration::from_secs(30), max_delay: Duration::from_secs(300), attempts: 0 };

impl Runner {
    async fn run(mut self, mut asked: mpsc::Receiver<Reply>, mut stop: oneshot::Receiver<()>) {
        let (wake_tx, mut wakes) = mpsc::channel(4);
        let watcher = self.setup.watch_system.then(|| tokio::spawn(wake::watch(wake_tx)));
        let mut next = Instant::now();
        let mut failures = 0u32;
        let mut clock = ClockWatch::new();
        let mut look = tokio::time::interval(ClockWatch::EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut waiting = Vec::new();
            tokio::select! {
                _ = &mut stop => break,
                () = tokio::time::sleep_until(next) => {}
                Some(reply) = asked.recv() => waiting.push(reply),
                Some(reason) = wakes.recv() => tracing::info!(reason, "reconciling with the Console"),
                // Only while a Console is configured: an idle receiver without one never wakes here.
                _ = look.tick(), if !self.settings().console_api_url.is_empty() => {
                    if !clock.slept() {
                        continue;
                    }
                    tracing::info!("the wall clock jumped ahead (a resume from sleep?): reconciling with the Console");
                }
            }
            // Requests that queued meanwhile share this run.
            while let Ok(reply) = asked.try_recv() {
                waiting.push(reply);
            }
            let result = tokio::select! {
                r = self.run_once() => r,
                _ = &mut stop => break,
            };
            let interval = Duration::from_secs(u64::from(self.settings().reconcile_interval_secs.max(1)));
            let wait = match &result {
                Err(e) if e.state() == ConnectionState::Unreachable => {
                    failures = failures.saturating_add(1);
                    FAILURE_BACKOFF.delay(failures - 1).min(interval)
                }
                _ => {
                    failures = 0;
                    interval
                }
            };
            next = Instant::now() + wait;
            self.record(&result, Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default());
            for reply in waiting.drain(..).filter(|r| !r.is_closed()) {
                let _ = reply.send(result.clone());
            }
        }
        if let Some(w) = watcher {
            w.abort();
        }
    }

    fn settings(&self) -> Settings {
        self.parts.settings.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn run_once(&mut self) -> Result<ReconcileReport, ConsoleError> {
        let settings = self.settings();
        if settings.console_api_url.is_empty() {
            return Err(ConsoleError::NotConfigured);
        }
        if self.token_changed.swap(false, Ordering::SeqCst) {
            self.token = None;
        }
        let token = match self.token.clone() {
            Some(token) => token,
            None => {
                let source = self.setup.token.clone();
                let read = tokio::task::spawn_blocking(move || source.token())
                    .await
                    .map_err(|e| ConsoleError::Internal(e.to_string()))??
                    .ok_or(ConsoleError::NoToken)?;
                self.token = Some(read.clone());
                read
            }
        };
        let reuse = self
            .client
            .as_ref()
            .is_some_and(|c| c.api_url() == settings.console_api_url.trim_end_matches('/') && *c.token() == token);
        if !reuse {
            self.requests_before += self.client.as_ref().map_or(0, ConsoleClient::requests_made);
            self.client = Some(ConsoleClient::new(&settings.console_api_url, token, self.setup.retry)?);
        }
        let Some(client) = self.client.clone() else {
            return Err(ConsoleError::Internal("no Console client".into()));
        };
        self.set_status(|s| s.token_fingerprint = Some(client.token().fingerprint()));
        let outcome = match reconcile(&client, &self.parts.store, &settings.allow_orgs).await {
            Ok(outcome) => outcome,
            Err(e) => {
                if e.state() == ConnectionState::TokenRejected {
                    self.token = None;
                }
                return Err(e);
            }
        };
        if outcome.report.added > 0 {
            self.parts.outbox.kick();
        }
        for plan_id in &outcome.refresh {
            self.parts.details.request(plan_id);
        }
        // What the reconciliation wrote reaches disk with the next group commit.
        self.parts.store.flush_soon();
        for plan_id in outcome.changed {
            let withdraw = outcome.resolved.contains(&plan_id);
            if let Err(e) = self.parts.actions.after_plan_change(&plan_id, withdraw).await {
                tracing::warn!(error = %e, "a plan the Console changed is not on disk yet");
            }
        }
        let r = outcome.report;
        if r.resolved + r.added + r.flagged > 0 {
            tracing::info!(
                checked = r.checked,
                resolved = r.resolved,
                added = r.added,
                flagged = r.flagged,
                errors = r.errors,
                "reconciled the queue with the Console"
            );
        }
        Ok(r)
    }

    fn record(&self, result: &Result<ReconcileReport, ConsoleError>, next_at: DateTime<Utc>) {
        let settings = self.settings();
        let requests = self.requests_before + self.client.as_ref().map_or(0, ConsoleClient::requests_made);
        let was = self.status.read().unwrap_or_else(PoisonError::into_inner).state;
        self.set_status(|s| {
            let now = Utc::now();
            s.api_url = settings.console_api_url.clone();
            s.public_url = settings.public_url.clone();
            s.interval_secs = settings.reconcile_interval_secs;
            s.requests = requests;
            s.next_at = Some(next_at);
            match result {
                Ok(report) => {
                    s.state = ConnectionState::Ok;
                    s.message = None;
                    s.last_attempt_at = Some(now);
                    s.last_success_at = Some(now);
                    s.last_report = Some(*report);
                }
                Err(ConsoleError::NotConfigured) => {
                    s.state = ConnectionState::Off;
                    s.message = None;
                    s.next_at = None;
                }
                Err(e) => {
                    s.state = e.state();
                    s.message = Some(e.to_string());
                    s.last_attempt_at = Some(now);
                }
            }
        });
        let now = self.status.read().unwrap_or_else(PoisonError::into_inner).state;
        if now != was {
            match result {
                Err(e) if now != ConnectionState::Off => tracing::warn!(error = %e, "the Console connection failed"),
                _ => tracing::info!(state = ?now, "the Console connection changed state"),
            }
            self.audit_transition(was, now, result, &settings.console_api_url);
        }
        let _ = self.parts.events.send(CoreEvent::StatusChanged);
    }

    /// The audit log hears when the connection came up, and when one that was up went down
    /// (the error says why; it never holds the token).
    fn audit_transition(
        &self,
        was: ConnectionState,
        now: ConnectionState,
        result: &Result<ReconcileReport, ConsoleError>,
        url: &str,
    ) {
        use crate::domain::audit::{AuditAction, AuditEntry, Source};
        let (action, detail) = match (was, now, result) {
            (_, ConnectionState::Ok, _) => (AuditAction::ConsoleConnected, url.to_owned()),
            (ConnectionState::Ok, _, Err(e)) => (AuditAction::ConsoleDisconnected, format!("{url}: {e}")),
            _ => return,
        };
        let entry = AuditEntry::new(&self.parts.actions.actor(Source::Console), action, None, detail);
        self.parts.store.append_audit_in_background(entry);
    }

    fn set_status(&self, f: impl FnOnce(&mut ConsoleStatus)) {
        let mut status = self.status.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut status);
        // New plans wait for their details only while a Console may answer.
        self.parts.details.set_active(details_may_come(status.state));
    }
}
