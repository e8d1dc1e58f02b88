//! Rotation, revocation and status over a secret store and `secrets.json`.
//!
//! The keychain holds the material, `secrets.json` which secrets exist and until when each
//! verifies; [`SecretManager`] keeps the two in agreement (a failed keychain write changes
//! nothing) and is shared by the CLI, the panel and the watcher, serialized by a lock file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::watcher::read_usage;
use super::{KeychainError, SecretStore, SecretsError, SECRETS_FILE, USAGE_FILE};
use crate::config::write_atomically;
use crate::verify::{Fingerprint, Secret, SecretSet};

const LOCK_FILE: &str = "secrets.lock";

/// What may be shown about one secret. `expires_at: None` marks the current secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    pub fingerprint: Fingerprint,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SecretsFile {
    secrets: Vec<SecretMeta>,
}

/// One secret as the status screen shows it: never the secret itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretReport {
    pub role: SecretRole,
    pub fingerprint: Fingerprint,
    pub created_at: DateTime<Utc>,
    pub age_days: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_matched_at: Option<DateTime<Utc>>,
    pub matches: u64,
    pub due_for_rotation: bool,
    /// The keychain has no entry for it, so it verifies nothing. Known only when the report
    /// read the keychain; `false` otherwise.
    pub missing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRole {
    Current,
    Previous,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeychainStatus {
    pub ok: bool,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretsReport {
    pub keychain: KeychainStatus,
    pub secrets: Vec<SecretReport>,
}

/// Rotation and status over a secret store and the metadata files in the config dir.
#[derive(Debug, Clone)]
pub struct SecretManager {
    store: Arc<dyn SecretStore>,
    dir: PathBuf,
    reminder_days: u32,
}

impl SecretManager {
    pub fn new(store: Arc<dyn SecretStore>, config_dir: &Path, reminder_days: u32) -> SecretManager {
        SecretManager { store, dir: config_dir.to_path_buf(), reminder_days }
    }

    pub fn secrets_file(&self) -> PathBuf {
        self.dir.join(SECRETS_FILE)
    }

    pub fn usage_file(&self) -> PathBuf {
        self.dir.join(USAGE_FILE)
    }

    /// Makes `secret` current; the current one stays valid for `overlap` (zero: revoked now).
    /// A keychain failure leaves everything as it was.
    pub fn rotate_to(
        &self,
        secret: &Secret,
        overlap: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<SecretMeta, SecretsError> {
        let _lock = self.lock()?;
        let mut file = self.read_file()?;
        let fingerprint = secret.fingerprint();
        self.store.set(secret)?;
        let mut dropped = Vec::new();
        for meta in &mut file.secrets {
            if meta.fingerprint == fingerprint {
                continue;
            }
            if meta.expires_at.is_none() {
                meta.expires_at = Some(now + overlap);
            }
        }
        file.secrets.retain(|m| {
            let keep = m.fingerprint != fingerprint && m.expires_at.is_some_and(|t| t > now);
            if !keep && m.fingerprint != fingerprint {
                dropped.push(m.fingerprint.clone());
            }
            keep
        });
        let meta = SecretMeta { fingerprint: fingerprint.clone(), created_at: now, expires_at: None };
        file.secrets.insert(0, meta.clone());
        if let Err(e) = self.write_file(&file) {
            // Undo the keychain write so the keychain and the metadata still agree.
            let _ = self.store.delete(&fingerprint);
            return Err(e);
        }
        self.forget(&dropped);
        Ok(meta)
    }

    /// Generates a strong secret, makes it current, and returns it once (for Admin Center).
    pub fn generate(&self, overlap: chrono::Duration, now: DateTime<Utc>) -> Result<Secret, SecretsError> {
        let secret = Secret::generate()?;
        self.rotate_to(&secret, overlap, now)?;
        Ok(secret)
    }

    /// Ends the overlap now: every previous secret stops verifying and leaves the keychain.
    pub fn revoke_previous(&self) -> Result<Vec<Fingerprint>, SecretsError> {
        let _lock = self.lock()?;
        let mut file = self.read_file()?;
        let previous: Vec<Fingerprint> =
            file.secrets.iter().filter(|m| m.expires_at.is_some()).map(|m| m.fingerprint.clone()).collect();
        if previous.is_empty() {
            return Err(SecretsError::NoPrevious);
        }
        file.secrets.retain(|m| m.expires_at.is_none());
        self.write_file(&file)?;
        self.forget(&previous);
        Ok(previous)
    }

    /// Drops secrets whose overlap ended, from the metadata and the keychain.
    pub fn prune_expired(&self, now: DateTime<Utc>) -> Result<Vec<Fingerprint>, SecretsError> {
        let file = self.read_file()?;
        if !file.secrets.iter().any(|m| m.expires_at.is_some_and(|t| t <= now)) {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let mut file = self.read_file()?;
        let expired: Vec<Fingerprint> = file
            .secrets
            .iter()
            .filter(|m| m.expires_at.is_some_and(|t| t <= now))
            .map(|m| m.fingerprint.clone())
            .collect();
        file.secrets.retain(|m| !expired.contains(&m.fingerprint));
        self.write_file(&file)?;
        self.forget(&expired);
        Ok(expired)
    }

    /// The set the receiver verifies with, read from the keychain.
    ///
    /// A previous secret whose entry is gone is left out (and shown in the report): it only
    /// served late deliveries, and failing the whole set for it would refuse every delivery.
    /// A missing current secret is an error.
    pub fn load(&self, now: DateTime<Utc>) -> Result<SecretSet, SecretsError> {
        let file = self.read_file()?;
        let live = live(&file, now);
        if live.is_empty() {
            return Err(SecretsError::NoneConfigured);
        }
        let mut entries = Vec::with_capacity(live.len());
        let mut missing = None;
        for meta in live {
            match self.store.get(&meta.fingerprint) {
                Ok(secret) => entries.push((secret, meta.expires_at)),
                Err(e @ KeychainError::Missing(_)) if meta.expires_at.is_some() => {
                    tracing::warn!(fingerprint = %meta.fingerprint, "a previous webhook secret is missing from the keychain; deliveries signed with it are refused");
                    missing = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        match missing {
            Some(e) if entries.is_empty() => Err(e.into()),
            _ => Ok(SecretSet::new(entries)),
        }
    }

    /// What the status screen and `secret status` show. `check_keychain` also reads each entry.
    pub fn report(&self, now: DateTime<Utc>, check_keychain: bool) -> Result<SecretsReport, SecretsError> {
        let file = self.read_file()?;
        let usage = read_usage(&self.usage_file());
        let live = live(&file, now);
        let (keychain, missing) = if check_keychain {
            self.check_entries(&live)
        } else {
            (KeychainStatus { ok: true, message: None }, HashSet::new())
        };
        let secrets = live
            .into_iter()
            .map(|m| {
                let used = usage.get(&m.fingerprint.0).cloned().unwrap_or_default();
                let age_days = (now - m.created_at).num_days();
                SecretReport {
                    role: if m.expires_at.is_none() { SecretRole::Current } else { SecretRole::Previous },
                    fingerprint: m.fingerprint.clone(),
                    created_at: m.created_at,
                    age_days,
                    expires_at: m.expires_at,
                    last_matched_at: used.last_matched_at,
                    matches: used.matches,
                    due_for_rotation: m.expires_at.is_none() && age_days >= i64::from(self.reminder_days),
                    missing: missing.contains(&m.fingerprint),
                }
            })
            .collect();
        Ok(SecretsReport { keychain, secrets })
    }

    /// Reads each entry: which are missing, and whether the keychain is fit to verify with
    /// (a missing previous secret does not make it unfit; see [`SecretManager::load`]).
    fn check_entries(&self, live: &[&SecretMeta]) -> (KeychainStatus, HashSet<Fingerprint>) {
        let mut missing = HashSet::new();
        for meta in live {
            match self.store.get(&meta.fingerprint) {
                Ok(_) => {}
                Err(KeychainError::Missing(fp)) if meta.expires_at.is_some() => {
                    missing.insert(fp);
                }
                Err(e) => {
                    if let KeychainError::Missing(fp) = &e {
                        missing.insert(fp.clone());
                    }
                    return (KeychainStatus { ok: false, message: Some(e.to_string()) }, missing);
                }
            }
        }
        (KeychainStatus { ok: true, message: None }, missing)
    }

    /// A fingerprint of what the metadata file holds now, to notice changes cheaply.
    pub fn file_stamp(&self) -> Option<(SystemTime, u64)> {
        std::fs::metadata(self.secrets_file()).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
    }

    fn forget(&self, fingerprints: &[Fingerprint]) {
        for fp in fingerprints {
            if let Err(e) = self.store.delete(fp) {
                tracing::warn!(fingerprint = %fp, error = %e, "could not delete a retired secret from the keychain");
            }
        }
    }

    fn read_file(&self) -> Result<SecretsFile, SecretsError> {
        let path = self.secrets_file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.metadata_error(&e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SecretsFile::default()),
            Err(e) => Err(self.metadata_error(&e)),
        }
    }

    fn write_file(&self, file: &SecretsFile) -> Result<(), SecretsError> {
        let bytes = serde_json::to_vec_pretty(file).map_err(|e| self.metadata_error(&e))?;
        write_atomically(&self.secrets_file(), &bytes).map_err(|e| self.metadata_error(&e))
    }

    /// Serializes read-modify-write of the metadata between the CLI and a running app.
    fn lock(&self) -> Result<std::fs::File, SecretsError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.metadata_error(&e))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK_FILE))
            .map_err(|e| self.metadata_error(&e))?;
        file.lock().map_err(|e| self.metadata_error(&e))?;
        Ok(file)
    }

    fn metadata_error(&self, e: &dyn std::fmt::Display) -> SecretsError {
        SecretsError::Metadata { path: self.dir.clone(), message: e.to_string() }
    }
}

/// The secrets that still verify at `now`, current first.
fn live(file: &SecretsFile, now: DateTime<Utc>) -> Vec<&SecretMeta> {
    file.secrets.iter().filter(|m| m.expires_at.is_none_or(|t| t > now)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MemoryStore;
    use chrono::Duration as D;
    use std::sync::atomic::Ordering;

    fn manager() -> (SecretManager, Arc<MemoryStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::default());
        (SecretManager::new(store.clone(), dir.path(), 90), store, dir)
    }

    fn secret(s: &str) -> Secret {
        Secret::new(s).unwrap()
    }

    #[test]
    fn rotation_keeps_the_previous_secret_for_the_overlap_then_retires_it() {
        let (m, store, _d) = manager();
        let t0 = Utc::now();
        m.rotate_to(&secret("first-secret-0123456789"), D::hours(24), t0).unwrap();
        m.rotate_to(&secret("second-secret-0123456789"), D::hours(24), t0 + D::hours(1)).unwrap();
        let set = m.load(t0 + D::hours(2)).unwrap();
        assert_eq!(set.secrets().len(), 2);
        let expired = m.prune_expired(t0 + D::hours(26)).unwrap();
        assert_eq!(expired, vec![secret("first-secret-0123456789").fingerprint()]);
        assert!(store.get(&expired[0]).is_err(), "the retired secret left the keychain");
        assert_eq!(m.load(t0 + D::hours(26)).unwrap().secrets().len(), 1);
    }

    #[test]
    fn a_failed_keychain_write_leaves_the_previous_state_intact() {
        let (m, store, _d) = manager();
        let t0 = Utc::now();
        m.rotate_to(&secret("first-secret-0123456789"), D::hours(24), t0).unwrap();
        let before = std::fs::read(m.secrets_file()).unwrap();
        store.fail_writes.store(true, Ordering::SeqCst);
        let err = m.rotate_to(&secret("second-secret-0123456789"), D::hours(24), t0).unwrap_err();
        assert!(err.to_string().contains("locked"), "{err}");
        assert_eq!(std::fs::read(m.secrets_file()).unwrap(), before);
        let set = m.load(t0).unwrap();
        assert_eq!(set.secrets()[0].fingerprint, secret("first-secret-0123456789").fingerprint());
    }

    #[test]
    fn revoke_previous_ends_the_overlap_now() {
        let (m, store, _d) = manager();
        let t0 = Utc::now();
        assert!(matches!(m.revoke_previous(), Err(SecretsError::NoPrevious)));
        m.rotate_to(&secret("first-secret-0123456789"), D::hours(24), t0).unwrap();
        m.rotate_to(&secret("second-secret-0123456789"), D::hours(24), t0).unwrap();
        let revoked = m.revoke_previous().unwrap();
        assert_eq!(revoked, vec![secret("first-secret-0123456789").fingerprint()]);
        assert!(store.get(&revoked[0]).is_err());
        assert_eq!(m.load(t0).unwrap().secrets().len(), 1);
    }

    #[test]
    fn a_missing_previous_entry_leaves_the_current_secret_verifying_and_is_reported() {
        let (m, store, _d) = manager();
        let t0 = Utc::now();
        let (first, second) = (secret("first-secret-0123456789"), secret("second-secret-0123456789"));
        m.rotate_to(&first, D::hours(24), t0).unwrap();
        m.rotate_to(&second, D::hours(24), t0).unwrap();
        store.delete(&first.fingerprint()).unwrap();

        let set = m.load(t0).unwrap();
        let loaded: Vec<&Fingerprint> = set.secrets().iter().map(|s| &s.fingerprint).collect();
        assert_eq!(loaded, vec![&second.fingerprint()]);
        let report = m.report(t0, true).unwrap();
        assert!(report.keychain.ok, "{:?}", report.keychain);
        let shown: Vec<(SecretRole, bool)> = report.secrets.iter().map(|s| (s.role, s.missing)).collect();
        assert_eq!(shown, vec![(SecretRole::Current, false), (SecretRole::Previous, true)]);
    }

    #[test]
    fn a_missing_current_entry_is_still_an_error() {
        let (m, store, _d) = manager();
        let t0 = Utc::now();
        let (first, second) = (secret("first-secret-0123456789"), secret("second-secret-0123456789"));
        m.rotate_to(&first, D::hours(24), t0).unwrap();
        m.rotate_to(&second, D::hours(24), t0).unwrap();
        store.delete(&second.fingerprint()).unwrap();

        let err = m.load(t0).unwrap_err();
        assert!(
            matches!(&err, SecretsError::Keychain(KeychainError::Missing(fp)) if *fp == second.fingerprint()),
            "{err}"
        );
        let report = m.report(t0, true).unwrap();
        assert!(!report.keychain.ok);
        assert!(report.secrets[0].missing);
    }

    #[test]
    fn status_never_shows_the_secret_and_flags_old_ones() {
        let (m, _store, _d) = manager();
        let t0 = Utc::now() - D::days(100);
        m.rotate_to(&secret("an-old-secret-0123456789"), D::hours(24), t0).unwrap();
        let report = m.report(Utc::now(), true).unwrap();
        assert!(report.keychain.ok);
        assert_eq!((report.secrets[0].age_days, report.secrets[0].due_for_rotation), (100, true));
        let shown = serde_json::to_string(&report).unwrap() + &std::fs::read_to_string(m.secrets_file()).unwrap();
        assert!(!shown.contains("an-old-secret"), "{shown}");
    }

    #[test]
    fn no_secret_is_a_clear_error() {
        let (m, _store, _d) = manager();
        let err = m.load(Utc::now()).unwrap_err();
        assert!(err.to_string().contains("zof-approvals secret set"), "{err}");
    }
}
