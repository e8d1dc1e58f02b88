//! The intake pipeline: raw bytes in, verdict out. Verify first, parse second, store durably,
//! then acknowledge and hand the work to the outbox.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::broadcast;

use crate::envelope::{Envelope, EnvelopeError};
use crate::events::CoreEvent;
use crate::outbox::OutboxKick;
use crate::refusals::{LogLine, Refusal, RefusalBook, RefusalSummary};
use crate::secrets::{SecretUsage, SecretsHandle, SecretsStatus};
use crate::store::{Claim, DeliveryRecord, DeliveryVerdict, Store};
use crate::verify::{Fingerprint, HeaderSource, Verifier, VerifyError};

/// What a delivery gets back.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Accepted { id: String },
    Duplicate { id: String },
    Ignored { id: String, reason: String },
    Rejected(Rejection),
}

/// Why a delivery was refused. The messages are safe for the sender: no secret, no body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Signature(#[from] VerifyError),
    #[error("malformed event: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("the event was created more than {0} days ago, beyond the replay window; it is refused")]
    TooOld(u32),
    #[error("organization `{0}` is not in this receiver's allow-list")]
    OrganizationNotAllowed(String),
    #[error(
        "requests from a web browser (with an Origin or Sec-Fetch-* header) are not webhook deliveries; they are refused"
    )]
    BrowserRequest,
    #[error("the body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the body could not be read: {0}")]
    UnreadableBody(String),
    #[error("the receiver is not ready: {0}; retry later")]
    Unavailable(String),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Signature(VerifyError::NoSecret) | Rejection::Unavailable(_) => 503,
            Rejection::Signature(_) => 401,
            Rejection::Envelope(_) | Rejection::TooOld(_) | Rejection::UnreadableBody(_) => 400,
            Rejection::OrganizationNotAllowed(_) | Rejection::BrowserRequest => 403,
            Rejection::TooLarge(_) => 413,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Signature(v) => v.code(),
            Rejection::Envelope(_) => "malformed_event",
            Rejection::TooOld(_) => "event_too_old",
            Rejection::OrganizationNotAllowed(_) => "organization_not_allowed",
            Rejection::BrowserRequest => "browser_request_refused",
            Rejection::TooLarge(_) => "body_too_large",
            Rejection::UnreadableBody(_) => "unreadable_body",
            Rejection::Unavailable(_) => "not_ready",
        }
    }
}

impl Verdict {
    pub fn status(&self) -> u16 {
        match self {
            Verdict::Rejected(r) => r.status(),
            _ => 200,
        }
    }
}

/// A link another intake source keeps (the team relay), as `/healthz` shows it under `detail.relay`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkHealth {
    /// `connecting`, `connected`, `catching_up` or `disconnected`.
    pub state: &'static str,
    /// Messages the relay holds that this side has not taken yet (as of the last one taken).
    pub pending: u64,
    /// Since when the link is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The last error, when the link is down because of one (never a credential).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The same in one phrase: `connected`, `catching up 42`, `disconnected since …`.
    pub text: String,
}

/// Whatever keeps a link the intake takes deliveries over, and can say how it is.
pub trait LinkHealthSource: Send + Sync + std::fmt::Debug {
    fn health(&self) -> LinkHealth;
}

/// Limits that protect an HTTP intake source (the receiver, the relay's front end) from large, slow or too many requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Whole-request deadline, body included: a body trickled byte by byte is cut off here.
    pub request_timeout: std::time::Duration,
    pub max_concurrent_requests: usize,
    /// Open connections; at the cap a new one closes the one idle the longest.
    pub max_connections: usize,
}

pub use crate::config::DEFAULT_MAX_CONNECTIONS;

/// Headers only a web browser sends. A page the user visits can POST to a loopback address
/// (`fetch(..., {mode: "no-cors"})`); such a request is never a webhook delivery, so it is
/// refused before its body is read.
pub const BROWSER_HEADERS: [&str; 3] = ["origin", "sec-fetch-mode", "sec-fetch-site"];

/// Counts `/healthz` reports beside its status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthDetail {
    /// Records set aside because they could not be read.
    pub quarantined: usize,
    /// Plans whose notification was given up after failing for too long.
    pub not_notified: usize,
    /// Work acknowledged but not finished yet.
    pub outbox: usize,
    /// The team relay link (`serve --relay`): connected, catching up, or disconnected since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<LinkHealth>,
}

/// The intake's share of the settings.
#[derive(Debug, Clone)]
pub struct IntakePolicy {
    pub verifier: Verifier,
    pub allow_orgs: Vec<String>,
    pub retention_days: u32,
}

impl IntakePolicy {
    pub fn from_settings(settings: &crate::config::Settings) -> IntakePolicy {
        IntakePolicy {
            verifier: Verifier {
                scheme: settings.scheme,
                tolerance: chrono::Duration::seconds(i64::from(settings.tolerance_secs)),
            },
            allow_orgs: settings.allow_orgs.clone(),
            retention_days: settings.retention_days,
        }
    }
}

/// A delivery that verified, parsed and passed the policy: what may be stored or forwarded.
#[derive(Debug, Clone)]
pub struct Verified {
    pub envelope: Envelope,
    pub fingerprint: Fingerprint,
}

/// The judging half of the pipeline: signature, envelope, policy; no store. The [`Intake`] runs
/// it before storing, and the team relay (`relay`) runs it before publishing, so both answer the
/// same deliveries the same way.
#[derive(Debug, Clone)]
pub struct Judge {
    inner: Arc<JudgeParts>,
}

#[derive(Debug)]
struct JudgeParts {
    secrets: SecretsHandle,
    usage: Arc<SecretUsage>,
    /// Replaced whole when settings change (scheme, allow-list), like the secret set.
    policy: std::sync::RwLock<Arc<IntakePolicy>>,
}

impl Judge {
    pub fn new(secrets: SecretsHandle, usage: Arc<SecretUsage>, policy: IntakePolicy) -> Judge {
        let policy = std::sync::RwLock::new(Arc::new(policy));
        Judge { inner: Arc::new(JudgeParts { secrets, usage, policy }) }
    }

    /// Applies new settings to every delivery judged after this call.
    pub fn set_policy(&self, policy: IntakePolicy) {
        match self.inner.policy.write() {
            Ok(mut g) => *g = Arc::new(policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(policy),
        }
    }

    fn policy(&self) -> Arc<IntakePolicy> {
        match self.inner.policy.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Why no delivery can verify right now, if none can.
    pub fn not_ready(&self) -> Option<String> {
        match &*self.inner.secrets.current() {
            SecretsStatus::Unavailable(why) => Some(why.clone()),
            SecretsStatus::Ready(set) if set.is_empty() => Some(VerifyError::NoSecret.to_string()),
            SecretsStatus::Ready(_) => None,
        }
    }

    /// Verifies the signature over the raw body, parses the envelope and applies the policy.
    ///
    /// `as_of` is when the delivery was received: the signature's timestamp tolerance and the
    /// secrets' expiry are judged at that time (a delivery relayed hours ago is judged as of its
    /// arrival at the relay). The replay window is always judged at `now`: an old delivery
    /// replayed with a forged arrival time is still refused there, or by its event id.
    pub fn judge(
        &self,
        headers: &dyn HeaderSource,
        body: &[u8],
        as_of: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Verified, Rejection> {
        let secrets = self.inner.secrets.current();
        let set = match &*secrets {
            SecretsStatus::Ready(set) => set,
            SecretsStatus::Unavailable(why) => return Err(Rejection::Unavailable(why.clone())),
        };
        let policy = self.policy();
        // Never later than now: a time from the future would widen nothing, but is not believed.
        let as_of = as_of.min(now);
        let fingerprint = policy.verifier.verify(set, headers, body, as_of)?;
        self.inner.usage.record(&fingerprint, now);
        let envelope = Envelope::parse(body)?;
        if envelope.created < now - Duration::days(i64::from(policy.retention_days)) {
            return Err(Rejection::TooOld(policy.retention_days));
        }
        let org = &envelope.data.object.organization_id;
        if !policy.allow_orgs.is_empty() && !policy.allow_orgs.contains(org) {
            return Err(Rejection::OrganizationNotAllowed(org.clone()));
        }
        Ok(Verified { envelope, fingerprint })
    }
}

/// The pipeline, shared by every request.
#[derive(Debug, Clone)]
pub struct Intake {
    inner: Arc<Parts>,
}

#[derive(Debug)]
struct Parts {
    store: Store,
    secrets: SecretsHandle,
    judge: Judge,
    events: broadcast::Sender<CoreEvent>,
    outbox: OutboxKick,
    /// Refusals are counted, not logged one by one (see `refusals`).
    refusals: Mutex<RefusalBook>,
    /// Plans whose details are asked for as they are stored.
    details: crate::details::DetailsBoard,
    /// Told of each refusal counted, so the counters are written soon after (see `persist_refusals`).
    refused: Arc<tokio::sync::Notify>,
    /// The team relay link, when deliveries also come from JetStream (replaced when the
    /// consumer restarts with new settings, cleared when it stops).
    relay: std::sync::RwLock<Option<Arc<dyn LinkHealthSource>>>,
}

/// The store key of the refusal counters.
const REFUSALS_KEY: &str = "refusals";

impl Intake {
    pub fn new(
        store: Store,
        secrets: SecretsHandle,
        usage: Arc<SecretUsage>,
        policy: IntakePolicy,
        events: broadcast::Sender<CoreEvent>,
        outbox: OutboxKick,
        details: crate::details::DetailsBoard,
    ) -> Intake {
        let judge = Judge::new(secrets.clone(), usage, policy);
        // Blocking, but brief: one small record, read once while the application is built.
        let refusals = Mutex::new(load_refusals(&store));
        let relay = std::sync::RwLock::new(None);
        let refused = Arc::new(tokio::sync::Notify::new());
        Intake { inner: Arc::new(Parts { store, secrets, judge, events, outbox, refusals, refused, details, relay }) }
    }

    /// Applies new settings to every delivery that starts after this call.
    pub fn set_policy(&self, policy: IntakePolicy) {
        self.inner.judge.set_policy(policy);
    }

    /// Plans whose details are asked for as they are stored (the Console side reads it).
    pub fn details(&self) -> &crate::details::DetailsBoard {
        &self.inner.details
    }

    /// The judging half, for a source that must judge before it stores (the team relay's consumer).
    pub fn judge(&self) -> &Judge {
        &self.inner.judge
    }

    /// Makes `/healthz` report this relay link's state (a later call replaces it: the consumer
    /// restarted with new settings).
    pub fn attach_relay_status(&self, status: Arc<dyn LinkHealthSource>) {
        *self.inner.relay.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
    }

    /// `/healthz` no longer reports a relay link (the consumer was stopped).
    pub fn detach_relay_status(&self) {
        *self.inner.relay.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Why deliveries cannot be accepted right now, if they cannot.
    pub fn not_ready(&self) -> Option<String> {
        match &*self.inner.secrets.current() {
            SecretsStatus::Unavailable(why) => Some(why.clone()),
            SecretsStatus::Ready(set) if set.is_empty() => Some(VerifyError::NoSecret.to_string()),
            SecretsStatus::Ready(_) => self
                .inner
                .store
                .down_reason()
                .map(|why| format!("the event store failed and is being reopened ({why})")),
        }
    }

    /// What `/healthz` adds to its status: records set aside, plans never notified, work waiting.
    pub fn health_detail(&self) -> HealthDetail {
        let store = &self.inner.store;
        HealthDetail {
            quarantined: store.quarantined_count(),
            not_notified: store.not_notified_count(),
            outbox: store.outbox_len(),
            relay: self
                .inner
                .relay
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .map(|link| link.health()),
        }
    }

    /// Refusal counts per code, for the activity view.
    pub fn refusal_summary(&self, now: DateTime<Utc>) -> Vec<RefusalSummary> {
        self.refusals(|book| book.summary(now))
    }

    /// The newest refusals, newest first.
    pub fn recent_refusals(&self) -> Vec<Refusal> {
        self.refusals(|book| book.recent())
    }

    /// Writes the refusal counters to the store if they changed, and the log lines that are
    /// due. Blocking (a store write): call it from a blocking thread, at most about once a
    /// second, after [`Intake::refusals_counted`] said a refusal was counted. Returns when log
    /// lines wait to fall due: call it again then.
    pub fn persist_refusals(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (snapshot, lines, next) =
            self.refusals(|book| (book.take_snapshot(), book.due_lines(now), book.next_line_at()));
        lines.iter().for_each(log_refusals);
        if let Some(snapshot) = snapshot {
            if let Err(e) = self.inner.store.set_meta(REFUSALS_KEY, &snapshot) {
                tracing::warn!(error = %e, "could not save the refusal counters");
            }
            self.inner.store.flush_soon();
            let _ = self.inner.events.send(CoreEvent::StatusChanged);
        }
        next
    }

    /// Notified each time a refusal is counted: the counters then want [`Intake::persist_refusals`].
    pub fn refusals_counted(&self) -> Arc<tokio::sync::Notify> {
        self.inner.refused.clone()
    }

    /// Wakes the outbox worker: time-based work may have changed (a snooze, new quiet hours).
    pub fn kick_outbox(&self) {
        self.inner.outbox.kick();
    }

    fn refusals<T>(&self, f: impl FnOnce(&mut RefusalBook) -> T) -> T {
        match self.inner.refusals.lock() {
            Ok(mut book) => f(&mut book),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Judges one delivery. Returns only once an accepted event is durable.
    pub async fn receive(&self, headers: &dyn HeaderSource, body: &[u8]) -> Verdict {
        self.receive_as_of(headers, body, Utc::now()).await
    }

    /// Like [`Intake::receive`], for a delivery that reached us through a relay: the signature
    /// is judged as of `received_at`, when the relay's stream took it (see [`Judge::judge`]);
    /// callers pass a time the sender of the message cannot choose.
    pub async fn receive_as_of(&self, headers: &dyn HeaderSource, body: &[u8], received_at: DateTime<Utc>) -> Verdict {
        let now = Utc::now();
        let (verdict, fingerprint) = match self.judge_and_store(headers, body, received_at, now).await {
            Ok((verdict, fp)) => (verdict, Some(fp)),
            Err(rejection) => (Verdict::Rejected(rejection), None),
        };
        self.log(&verdict, fingerprint.as_ref(), now);
        verdict
    }

    /// Records a delivery refused before its body reached the pipeline (too large, unreadable).
    pub fn refuse(&self, rejection: Rejection) -> Verdict {
        let verdict = Verdict::Rejected(rejection);
        self.log(&verdict, None, Utc::now());
        verdict
    }

    async fn judge_and_store(
        &self,
        headers: &dyn HeaderSource,
        body: &[u8],
        as_of: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(Verdict, Fingerprint), Rejection> {
        let p = &self.inner;
        let Verified { envelope, fingerprint } = p.judge.judge(headers, body, as_of, now)?;
        let claim = p.store.record_event(&envelope, body, now, &fingerprint).map_err(|e| unavailable(&e))?;
        // A duplicate waits too: the first delivery's write may not be on disk yet.
        p.store.durable().await.map_err(|e| unavailable(&e))?;
        let id = envelope.id.clone();
        let verdict = match claim {
            Claim::Duplicate { .. } => Verdict::Duplicate { id },
            Claim::Accepted { acted_on: true } => {
                // Asked for before the worker announces the plan, which waits a moment for them.
                p.details.expect(&envelope.data.object.id);
                // The worker writes the plan and says so with `PlanChanged`.
                p.outbox.kick();
                Verdict::Accepted { id }
            }
            Claim::Accepted { acted_on: false } => Verdict::Ignored {
                id,
                reason: format!("events of type `{}` are recorded but not acted on", envelope.kind),
            },
        };
        Ok((verdict, fingerprint))
    }

    fn log(&self, verdict: &Verdict, fingerprint: Option<&Fingerprint>, at: DateTime<Utc>) {
        let line = |event_id: &String, kind: DeliveryVerdict, code: &str, reason: String| DeliveryRecord {
            at,
            event_id: Some(event_id.clone()),
            verdict: kind,
            status: verdict.status(),
            code: code.into(),
            reason,
            fingerprint: fingerprint.cloned(),
        };
        let record = match verdict {
            Verdict::Accepted { id } => DeliveryRecord::accepted(id, at, fingerprint.cloned()),
            Verdict::Duplicate { id } => line(
                id,
                DeliveryVerdict::Duplicate,
                "duplicate",
                "duplicate: this event id was already received".to_string(),
            ),
            Verdict::Ignored { id, reason } => line(id, DeliveryVerdict::Ignored, "ignored", reason.clone()),
            Verdict::Rejected(r) => DeliveryRecord {
                at,
                event_id: None,
                verdict: DeliveryVerdict::Rejected,
                status: r.status(),
                code: r.code().into(),
                reason: r.to_string(),
                fingerprint: None,
            },
        };
        match record.verdict {
            // Counted in memory (O(1)), written with the counters about once a second.
            DeliveryVerdict::Rejected => {
                let refusal =
                    Refusal { at, status: record.status, code: record.code.clone(), reason: record.reason.clone() };
                if let Some(line) = self.refusals(|book| book.record(refusal)) {
                    log_refusals(&line);
                }
                self.inner.refused.notify_one();
                // Views hear of refusals once a second (see `persist_refusals`), not once each.
                return;
            }
            // An accepted delivery is logged by the outbox worker with the rest of its work.
            DeliveryVerdict::Accepted => {}
            DeliveryVerdict::Duplicate | DeliveryVerdict::Ignored => {
                if let Err(e) = self.inner.store.record_delivery(&record) {
                    tracing::warn!(error = %e, "could not log a delivery");
                }
                self.inner.store.flush_soon();
                tracing::debug!(id = ?record.event_id, code = %record.code, "delivery answered");
            }
        }
        let _ = self.inner.events.send(CoreEvent::Delivery(record));
    }

    pub fn secrets(&self) -> &SecretsHandle {
        &self.inner.secrets
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
}

fn log_refusals(line: &LogLine) {
    let what = if crate::refusals::is_team_action(&line.code) { "team actions" } else { "deliveries" };
    tracing::info!(code = %line.code, status = line.status, count = line.count, "{what} refused since the last line for this code");
}

fn load_refusals(store: &Store) -> RefusalBook {
    match store.meta::<RefusalBook>(REFUSALS_KEY) {
        Ok(book) => book.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the refusal counters; starting from zero");
            RefusalBook::default()
        }
    }
}

fn unavailable(e: &crate::store::StoreError) -> Rejection {
    tracing::error!(error = %e, "store unavailable");
    Rejection::Unavailable(format!("the event store is unavailable ({e})"))
}

mod team;
pub use team::TeamRefusal;

#[cfg(test)]
mod tests;
