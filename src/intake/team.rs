//! A teammate's action read over the relay, judged like a delivery (signature first, with
//! this laptop's own secrets), and what is refused counted like a refused delivery: anyone who
//! may publish to the relay can send refusals, so they cost counters and a bounded ring in one
//! small record ([`crate::refusals`]), never a row each, and one log line per code now and then.

use chrono::{DateTime, Duration, Utc};

use super::{log_refusals, Intake, Judge};
use crate::refusals::{Refusal, TEAM_ACTION_CODE_PREFIX};
use crate::secrets::SecretsStatus;
use crate::verify::{HeaderSource, VerifyError};

/// How much of an unverified subject a refusal keeps.
pub const SUBJECT_KEPT: usize = 64;
/// The longest reason a counted refusal keeps.
const REASON_KEPT: usize = 240;

/// Why a teammate's action read over the relay was not applied. Nothing is applied from one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TeamRefusal {
    #[error("team action refused: {0}")]
    Signature(#[from] VerifyError),
    #[error("team action refused: {0}")]
    Malformed(#[from] crate::domain::team::TeamActionError),
    #[error("team action refused: organization `{0}` is not in this receiver's allow-list")]
    OrganizationNotAllowed(String),
    #[error("team action refused: it was taken more than {0} days ago, beyond the replay window")]
    TooOld(u32),
    #[error("team action not judged: {0}")]
    Unavailable(String),
}

impl TeamRefusal {
    /// Not the message's fault (no secret yet): offered again later instead of dropped.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TeamRefusal::Unavailable(_) | TeamRefusal::Signature(VerifyError::NoSecret))
    }

    /// The refusal's code, as it is counted: `team_action_` and the reason's code.
    pub fn code(&self) -> String {
        let reason = match self {
            TeamRefusal::Signature(v) => v.code(),
            TeamRefusal::Malformed(_) => "malformed",
            TeamRefusal::OrganizationNotAllowed(_) => "organization_not_allowed",
            TeamRefusal::TooOld(_) => "too_old",
            TeamRefusal::Unavailable(_) => "not_ready",
        };
        format!("{TEAM_ACTION_CODE_PREFIX}{reason}")
    }

    /// The HTTP status a delivery refused for the same reason gets (shown beside the count).
    pub fn status(&self) -> u16 {
        match self {
            TeamRefusal::Signature(VerifyError::NoSecret) | TeamRefusal::Unavailable(_) => 503,
            TeamRefusal::Signature(_) => 401,
            TeamRefusal::Malformed(_) | TeamRefusal::TooOld(_) => 400,
            TeamRefusal::OrganizationNotAllowed(_) => 403,
        }
    }
}

impl Judge {
    /// Verifies a team action's signature over its raw body with this laptop's own secrets, as
    /// of when the stream took it (so the rotation overlap applies as for deliveries), then
    /// reads it, refuses one taken before the retention window, and applies the allow-list.
    /// The action's `at` comes back moved into `as_of` ± the tolerance, so what it claims about
    /// its own time cannot reach further than that. `subject_org` is the organization its
    /// subject names (as the source spells it), and `names_organization` says whether the
    /// body's organization is that one.
    pub fn judge_team_action(
        &self,
        headers: &dyn HeaderSource,
        body: &[u8],
        subject_org: &str,
        names_organization: impl Fn(&str) -> bool,
        as_of: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<crate::domain::team::TeamAction, TeamRefusal> {
        let secrets = self.inner.secrets.current();
        let set = match &*secrets {
            SecretsStatus::Ready(set) => set,
            SecretsStatus::Unavailable(why) => return Err(TeamRefusal::Unavailable(why.clone())),
        };
        let policy = self.policy();
        let as_of = as_of.min(now);
        policy.verifier.verify(set, headers, body, as_of)?;
        let mut action = crate::domain::team::TeamAction::parse(body)?;
        // The applied ids are forgotten after the retention window: an action older than that
        // could be applied a second time.
        if action.at < now - Duration::days(i64::from(policy.retention_days)) {
            return Err(TeamRefusal::TooOld(policy.retention_days));
        }
        if !names_organization(&action.organization_id) {
            return Err(crate::domain::team::TeamActionError::SubjectMismatch {
                subject: subject_org.to_owned(),
                body: action.organization_id.clone(),
            }
            .into());
        }
        if !policy.allow_orgs.is_empty() && !policy.allow_orgs.contains(&action.organization_id) {
            return Err(TeamRefusal::OrganizationNotAllowed(action.organization_id));
        }
        // Its time is believed within the tolerance of when the stream took it: one from the
        // future would never be pruned, and a back-dated one would always be "the earliest".
        let tolerance = policy.verifier.tolerance;
        action.at = action.at.clamp(as_of - tolerance, as_of + tolerance);
        Ok(action)
    }

    /// The headers that sign `body` with the current secret, in this receiver's scheme: how
    /// this laptop signs its own team actions. `None` while no secret is loaded.
    pub fn sign(&self, id: &str, at: DateTime<Utc>, body: &[u8]) -> Option<Vec<(&'static str, String)>> {
        let secrets = self.inner.secrets.current();
        let SecretsStatus::Ready(set) = &*secrets else {
            return None;
        };
        let current = set.current()?;
        Some(crate::verify::signature_headers(self.policy().verifier.scheme, &current.secret, id, at, body))
    }
}

impl Intake {
    /// Counts a teammate's action that was refused, with the refused deliveries, under
    /// [`TeamRefusal::code`]. `subject_org` is what the message's subject named (unverified):
    /// at most [`SUBJECT_KEPT`] characters of it are kept.
    pub fn refuse_team_action(&self, refusal: &TeamRefusal, subject_org: &str) {
        let subject = cut(subject_org, SUBJECT_KEPT);
        let reason = cut(&format!("{refusal} (on the subject of organization `{subject}`)"), REASON_KEPT);
        let counted = Refusal { at: Utc::now(), status: refusal.status(), code: refusal.code(), reason };
        if let Some(line) = self.refusals(|book| book.record(counted)) {
            log_refusals(&line);
        }
    }
}

/// `text`, cut to at most `max` characters (an ellipsis says where).
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
