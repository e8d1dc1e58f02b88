//! Changes of the webhook secrets: set, generate, revoke the previous one, and the secret a
//! Console subscription brought. Each changes the keychain, puts the new set in force at once
//! (a delivery signed with the new secret right after is accepted), and records one audit row
//! by fingerprint, with who and from where.

use chrono::{Duration, Utc};

use super::{ActionError, Actions};
use crate::domain::audit::{AuditAction, AuditEntry, Source};
use crate::secrets::{SecretManager, SecretsReport, SecretsStatus};
use crate::verify::{Fingerprint, Secret};

impl Actions {
    /// Makes `secret` current; the previous one keeps verifying for `overlap`. Nothing returns it.
    pub async fn set_secret(
        &self,
        secret: Secret,
        overlap: Duration,
        source: Source,
    ) -> Result<SecretsReport, ActionError> {
        let fingerprint = secret.fingerprint();
        let report = self.rotate(move |m| m.rotate_to(&secret, overlap, Utc::now()).map(drop)).await?;
        self.record_secret(source, AuditAction::SecretSet, &[fingerprint], Some(overlap), "").await?;
        Ok(report)
    }

    /// Generates a secret and makes it current. The caller hands it to the person once.
    pub async fn generate_secret(
        &self,
        overlap: Duration,
        source: Source,
    ) -> Result<(Secret, SecretsReport), ActionError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let report = self
            .rotate(move |m| {
                let secret = m.generate(overlap, Utc::now())?;
                let _ = tx.send(secret);
                Ok(())
            })
            .await?;
        let secret = rx.recv().map_err(|_| ActionError::SecretsExternal)?;
        self.record_secret(source, AuditAction::SecretGenerated, &[secret.fingerprint()], Some(overlap), "").await?;
        Ok((secret, report))
    }

    /// Ends the overlap now: previous secrets stop verifying and leave the keychain.
    pub async fn revoke_previous_secret(
        &self,
        source: Source,
    ) -> Result<(Vec<Fingerprint>, SecretsReport), ActionError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let report = self
            .rotate(move |m| {
                let _ = tx.send(m.revoke_previous()?);
                Ok(())
            })
            .await?;
        let revoked = rx.recv().unwrap_or_default();
        if !revoked.is_empty() {
            self.record_secret(source, AuditAction::SecretRevoked, &revoked, None, "").await?;
        }
        Ok((revoked, report))
    }

    /// The signing secret of a webhook the Console created for this app (`webhook_id`) becomes
    /// current, like a secret set by hand: the same rotation and the same audit row.
    pub async fn adopt_subscribed_secret(
        &self,
        secret: Secret,
        overlap: Duration,
        webhook_id: &str,
        source: Source,
    ) -> Result<Fingerprint, ActionError> {
        let fingerprint = secret.fingerprint();
        self.rotate(move |m| m.rotate_to(&secret, overlap, Utc::now()).map(drop)).await?;
        let note = format!("; from the Console subscription {webhook_id}");
        self.record_secret(source, AuditAction::SecretSet, std::slice::from_ref(&fingerprint), Some(overlap), &note)
            .await?;
        Ok(fingerprint)
    }

    /// The secrets' status (fingerprints, ages, last matches), never a secret.
    pub async fn secrets_report(&self, check_keychain: bool) -> Result<SecretsReport, ActionError> {
        let m = self.manager()?;
        Ok(tokio::task::spawn_blocking(move || m.report(Utc::now(), check_keychain)).await??)
    }

    /// Runs `change` on the keychain (blocking), puts the new set in force in a running
    /// receiver, and reports the secrets as they now are.
    async fn rotate(
        &self,
        change: impl FnOnce(&SecretManager) -> Result<(), crate::secrets::SecretsError> + Send + 'static,
    ) -> Result<SecretsReport, ActionError> {
        let m = self.manager()?;
        let live = self.running.as_ref().map(|r| r.intake.secrets().clone());
        let report = tokio::task::spawn_blocking(move || {
            change(&m)?;
            if let Some(live) = live {
                if let Ok(set) = m.load(Utc::now()) {
                    live.replace(SecretsStatus::Ready(set));
                }
                // The watcher learns of the change now (new expiry times), not on its next look.
                live.changed_here();
            }
            m.report(Utc::now(), false)
        })
        .await??;
        self.status_changed();
        Ok(report)
    }

    async fn record_secret(
        &self,
        source: Source,
        action: AuditAction,
        fingerprints: &[Fingerprint],
        overlap: Option<Duration>,
        note: &str,
    ) -> Result<(), ActionError> {
        // Whole hours, rounded up: the row says at least how long the previous secret keeps verifying.
        let hours = overlap.map(|d| u32::try_from((d.num_seconds().max(0) + 3599) / 3600).unwrap_or(u32::MAX));
        let names: Vec<String> = fingerprints.iter().map(|f| f.0.clone()).collect();
        let mut row = AuditEntry::secret_change(&self.actor(source), action, &names, hours);
        row.detail.push_str(note);
        self.record(vec![row]).await
    }
}
