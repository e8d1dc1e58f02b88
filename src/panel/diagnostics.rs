//! The diagnostics a user copies into a support request: version, OS, settings, store counts,
//! secret fingerprints, refusal counts and current problems; never a secret or a body.

use chrono::{DateTime, Utc};

use super::{Panel, PanelError};
use crate::store::PlanState;

impl Panel {
    /// The diagnostics a user copies into a support request: version, OS, settings, store
    /// counts, secret fingerprints, refusal counts and current problems; never a secret or a body.
    pub async fn diagnostics(&self, log_dir: std::path::PathBuf) -> Result<String, PanelError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let facts = me.diagnostic_facts(Utc::now());
            crate::about::diagnostics_text(&me.about(&log_dir), &facts)
        })
        .await
        .map_err(PanelError::from)
    }

    /// What the diagnostics say; a part that cannot be read becomes a problem, not a failure.
    fn diagnostic_facts(&self, now: DateTime<Utc>) -> crate::about::DiagnosticFacts {
        use crate::about::{DiagnosticFacts, SecretsFacts, StoreCounts};
        let mut problems: Vec<String> =
            [self.intake.not_ready(), self.notifier.status(), self.store.down_reason()].into_iter().flatten().collect();
        let mut store = StoreCounts {
            events: self.store.event_count(),
            outbox: self.store.outbox_len(),
            quarantined: self.store.quarantined_count(),
            ..StoreCounts::default()
        };
        for plan in self.store.plans_iter() {
            match plan.map(|p| p.state) {
                Ok(PlanState::Pending) => store.pending += 1,
                Ok(PlanState::Snoozed) => store.snoozed += 1,
                Ok(PlanState::Handled) => store.handled += 1,
                Ok(PlanState::Resolved) => store.resolved += 1,
                Err(e) => {
                    problems.push(format!("the plans cannot be read: {e}"));
                    break;
                }
            }
        }
        let secrets = match &self.manager {
            Some(m) => {
                m.report(now, false).map_or_else(|e| SecretsFacts::Unreadable(e.to_string()), SecretsFacts::Managed)
            }
            None => SecretsFacts::External,
        };
        DiagnosticFacts {
            now,
            webhook_url: self.webhook_url(),
            settings: self.settings(),
            store,
            secrets,
            problems,
            refusals: self.intake.refusal_summary(now),
        }
    }
}
