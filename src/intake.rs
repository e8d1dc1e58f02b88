//! The intake pipeline: raw bytes in, verdict out. Verify first, parse second, store durably,
//! then acknowledge and hand the work to the outbox.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::broadcast;

use crate::envelope::{Envelope, EnvelopeError};
use crate::events::CoreEvent;
use crate::outbox::OutboxKick;
use crate::secrets::{SecretUsage, SecretsHandle, SecretsStatus};
use crate::store::{DeliveryRecord, DeliveryVerdict, Intake as Stored, Store};
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
            Rejection::OrganizationNotAllowed(_) => 403,
            Rejection::TooLarge(_) => 413,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Signature(v) => v.code(),
            Rejection::Envelope(_) => "malformed_event",
            Rejection::TooOld(_) => "event_too_old",
            Rejection::OrganizationNotAllowed(_) => "organization_not_allowed",
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

/// The pipeline, shared by every request.
#[derive(Debug, Clone)]
pub struct Intake {
    inner: Arc<Parts>,
}

#[derive(Debug)]
struct Parts {
    store: Store,
    secrets: SecretsHandle,
    usage: Arc<SecretUsage>,
    /// Replaced whole when settings change (scheme, allow-list), like the secret set.
    policy: std::sync::RwLock<Arc<IntakePolicy>>,
    events: broadcast::Sender<CoreEvent>,
    outbox: OutboxKick,
}

impl Intake {
    pub fn new(
        store: Store,
        secrets: SecretsHandle,
        usage: Arc<SecretUsage>,
        policy: IntakePolicy,
        events: broadcast::Sender<CoreEvent>,
        outbox: OutboxKick,
    ) -> Intake {
        let policy = std::sync::RwLock::new(Arc::new(policy));
        Intake { inner: Arc::new(Parts { store, secrets, usage, policy, events, outbox }) }
    }

    /// Applies new settings to every delivery that starts after this call.
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

    /// Why deliveries cannot be accepted right now, if they cannot.
    pub fn not_ready(&self) -> Option<String> {
        match &*self.inner.secrets.current() {
            SecretsStatus::Unavailable(why) => Some(why.clone()),
            SecretsStatus::Ready(set) if set.is_empty() => Some(VerifyError::NoSecret.to_string()),
            SecretsStatus::Ready(_) => None,
        }
    }

    /// Judges one delivery. Returns only once an accepted event is durable.
    pub async fn receive(&self, headers: &dyn HeaderSource, body: &[u8]) -> Verdict {
        let now = Utc::now();
        let (verdict, fingerprint) = match self.judge(headers, body, now).await {
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

    async fn judge(
        &self,
        headers: &dyn HeaderSource,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(Verdict, Fingerprint), Rejection> {
        let p = &self.inner;
        let secrets = p.secrets.current();
        let set = match &*secrets {
            SecretsStatus::Ready(set) => set,
            SecretsStatus::Unavailable(why) => return Err(Rejection::Unavailable(why.clone())),
        };
        let policy = self.policy();
        let fingerprint = policy.verifier.verify(set, headers, body, now)?;
        p.usage.record(&fingerprint, now);
        let envelope = Envelope::parse(body)?;
        if envelope.created < now - Duration::days(i64::from(policy.retention_days)) {
            return Err(Rejection::TooOld(policy.retention_days));
        }
        let org = &envelope.data.object.organization_id;
        if !policy.allow_orgs.is_empty() && !policy.allow_orgs.contains(org) {
            return Err(Rejection::OrganizationNotAllowed(org.clone()));
        }
        let stored = p.store.record_event(&envelope, body, now, &fingerprint).map_err(|e| unavailable(&e))?;
        // A duplicate waits too: the first delivery's write may not be on disk yet.
        p.store.durable().await.map_err(|e| unavailable(&e))?;
        let id = envelope.id.clone();
        let verdict = match stored {
            Stored::Duplicate { .. } => Verdict::Duplicate { id },
            Stored::Accepted { acted_on: true } => {
                // The worker writes the plan and says so with `PlanChanged`.
                p.outbox.kick();
                Verdict::Accepted { id }
            }
            Stored::Accepted { acted_on: false } => Verdict::Ignored {
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
        // An accepted delivery is logged by the outbox worker with the rest of its work.
        if record.verdict != DeliveryVerdict::Accepted {
            if let Err(e) = self.inner.store.record_delivery(&record) {
                tracing::warn!(error = %e, "could not log a delivery");
            }
        }
        match verdict {
            Verdict::Rejected(r) => tracing::info!(status = r.status(), code = r.code(), "delivery rejected"),
            other => tracing::debug!(id = ?record.event_id, status = other.status(), "delivery answered"),
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

fn unavailable(e: &crate::store::StoreError) -> Rejection {
    tracing::error!(error = %e, "store unavailable");
    Rejection::Unavailable(format!("the event store is unavailable ({e})"))
}
