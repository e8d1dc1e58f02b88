//! Webhook secrets: material in the OS keychain, everything else beside the settings.
//!
//! The only module that names `keyring`. Secret material lives only in the keychain (service
//! `zof-approvals`, one entry per secret); `secrets.json` in the config dir holds what may be
//! shown (fingerprint, created, expires) and `secret-usage.json` what the receiver observed
//! (last match, count). The CLI and a running receiver share these files, so a `secret` command
//! works while the receiver or the desktop app holds the event store.
//!
//! The receiver never touches the keychain on the request path: a [`SecretsHandle`] holds the
//! current [`SecretSet`] (or why there is none) and a watcher thread swaps it whole when the
//! secrets change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::write_atomically;
use crate::verify::{Fingerprint, Secret, SecretError, SecretSet};

/// The keychain service name of every entry.
pub const KEYCHAIN_SERVICE: &str = "zof-approvals";
pub const SECRETS_FILE: &str = "secrets.json";
pub const USAGE_FILE: &str = "secret-usage.json";
const LOCK_FILE: &str = "secrets.lock";

/// How long one keychain call may take before it is reported as hanging (a locked keychain
/// may wait for a password prompt that never comes).
pub const KEYCHAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The secrets as the receiver sees them right now.
#[derive(Debug, Clone)]
pub enum SecretsStatus {
    Ready(SecretSet),
    /// Why no delivery can be verified (said in `/healthz` and in 503 answers).
    Unavailable(String),
}

/// Shared, atomically replaced view of the secrets.
#[derive(Debug, Clone)]
pub struct SecretsHandle(Arc<RwLock<Arc<SecretsStatus>>>);

impl SecretsHandle {
    pub fn new(status: SecretsStatus) -> SecretsHandle {
        SecretsHandle(Arc::new(RwLock::new(Arc::new(status))))
    }

    pub fn current(&self) -> Arc<SecretsStatus> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, status: SecretsStatus) {
        let next = Arc::new(status);
        match self.0.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeychainError {
    #[error(
        "no keychain is reachable ({0}); on Linux start a Secret Service (GNOME Keyring or KWallet) in your session, or run headless with --secret-env VAR"
    )]
    Unavailable(String),
    #[error("the keychain is locked: unlock it (log in to your desktop session or unlock the \"login\" keyring), then retry")]
    Locked,
    #[error("the keychain did not answer within {} seconds: it may be locked and waiting for a password prompt; unlock it, then retry", KEYCHAIN_TIMEOUT.as_secs())]
    Timeout,
    #[error("the keychain has no entry for secret {0}: set it again with `zof-approvals secret set`")]
    Missing(Fingerprint),
    #[error("the keychain refused the operation: {0}")]
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the environment variable {0} is not set; export the webhook secret in it, or store it in the keychain with `zof-approvals secret set`")]
    EnvMissing(String),
    #[error("the environment variable {var} does not hold a usable secret: {reason}")]
    EnvInvalid { var: String, reason: SecretError },
    #[error(transparent)]
    Keychain(#[from] KeychainError),
    #[error(transparent)]
    Invalid(#[from] SecretError),
    #[error("no webhook secret is configured: paste the secret from Zof's Admin Center with `zof-approvals secret set` (or in the app's settings)")]
    NoneConfigured,
    #[error("there is no previous secret to revoke")]
    NoPrevious,
    #[error("cannot read or write the secrets metadata in {path}: {message}")]
    Metadata { path: PathBuf, message: String },
}

/// Reads the secret from an environment variable the user named (headless use and CI).
pub fn secret_from_env(var: &str) -> Result<Secret, SecretsError> {
    let value = std::env::var(var).map_err(|_| SecretsError::EnvMissing(var.into()))?;
    Secret::new(&value).map_err(|reason| SecretsError::EnvInvalid { var: var.into(), reason })
}

/// Where secret material is kept. The real one is [`Keychain`]; [`MemoryStore`] serves unit tests.
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    fn get(&self, fingerprint: &Fingerprint) -> Result<Secret, KeychainError>;
    fn set(&self, secret: &Secret) -> Result<(), KeychainError>;
    fn delete(&self, fingerprint: &Fingerprint) -> Result<(), KeychainError>;
}

/// The OS keychain: macOS Keychain, Windows Credential Manager, the Secret Service on Linux.
#[derive(Debug, Clone)]
pub struct Keychain {
    service: String,
}

impl Default for Keychain {
    fn default() -> Self {
        Keychain { service: KEYCHAIN_SERVICE.into() }
    }
}

impl Keychain {
    fn entry(&self, fingerprint: &Fingerprint) -> Result<keyring::Entry, KeychainError> {
        keyring::Entry::new(&self.service, &format!("webhook-secret-{fingerprint}")).map_err(|e| keychain_error(&e))
    }
}

/// Runs a keychain call on its own thread so that a call stuck on a prompt cannot hang the caller.
fn bounded<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KeychainError> + Send + 'static,
) -> Result<T, KeychainError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("zof-keychain".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| KeychainError::Failed(e.to_string()))?;
    rx.recv_timeout(KEYCHAIN_TIMEOUT).map_err(|_| KeychainError::Timeout)?
}

impl SecretStore for Keychain {
    fn get(&self, fingerprint: &Fingerprint) -> Result<Secret, KeychainError> {
        let entry = self.entry(fingerprint)?;
        let fp = fingerprint.clone();
        bounded(move || match entry.get_password() {
            Ok(text) => Secret::new(&text)
                .map_err(|e| KeychainError::Failed(format!("the stored secret {fp} is unusable: {e}"))),
            Err(keyring::Error::NoEntry) => Err(KeychainError::Missing(fp)),
            Err(e) => Err(keychain_error(&e)),
        })
    }

    fn set(&self, secret: &Secret) -> Result<(), KeychainError> {
        let entry = self.entry(&secret.fingerprint())?;
        let secret = secret.clone();
        bounded(move || entry.set_password(secret.expose()).map_err(|e| keychain_error(&e)))
    }

    fn delete(&self, fingerprint: &Fingerprint) -> Result<(), KeychainError> {
        let entry = self.entry(fingerprint)?;
        bounded(move || match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keychain_error(&e)),
        })
    }
}

/// keyring's errors carry platform messages; none of them contains secret material.
fn keychain_error(e: &keyring::Error) -> KeychainError {
    let text = e.to_string();
    let lower = text.to_lowercase();
    match e {
        _ if lower.contains("locked") || lower.contains("prompt") || lower.contains("dismissed") => {
            KeychainError::Locked
        }
        keyring::Error::NoStorageAccess(_) => KeychainError::Unavailable(text),
        keyring::Error::PlatformFailure(_)
            if lower.contains("dbus")
                || lower.contains("d-bus")
                || lower.contains("serviceunknown")
                || lower.contains("connect")
                || lower.contains("no such") =>
        {
            KeychainError::Unavailable(text)
        }
        _ => KeychainError::Failed(text),
    }
}

/// Secret material in memory, for unit tests of the rotation logic. Can be told to fail writes.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<Fingerprint, Secret>>,
    pub fail_writes: AtomicBool,
}

impl SecretStore for MemoryStore {
    fn get(&self, fingerprint: &Fingerprint) -> Result<Secret, KeychainError> {
        let map = self.entries.lock().map_err(|_| KeychainError::Failed("poisoned".into()))?;
        map.get(fingerprint).cloned().ok_or_else(|| KeychainError::Missing(fingerprint.clone()))
    }

    fn set(&self, secret: &Secret) -> Result<(), KeychainError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(KeychainError::Locked);
        }
        let mut map = self.entries.lock().map_err(|_| KeychainError::Failed("poisoned".into()))?;
        map.insert(secret.fingerprint(), secret.clone());
        Ok(())
    }

    fn delete(&self, fingerprint: &Fingerprint) -> Result<(), KeychainError> {
        let mut map = self.entries.lock().map_err(|_| KeychainError::Failed("poisoned".into()))?;
        map.remove(fingerprint);
        Ok(())
    }
}

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

/// What the receiver observed of one secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretUse {
    pub matches: u64,
    pub last_matched_at: Option<DateTime<Utc>>,
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
    pub fn load(&self, now: DateTime<Utc>) -> Result<SecretSet, SecretsError> {
        let file = self.read_file()?;
        let live: Vec<&SecretMeta> = file.secrets.iter().filter(|m| m.expires_at.is_none_or(|t| t > now)).collect();
        if live.is_empty() {
            return Err(SecretsError::NoneConfigured);
        }
        let mut entries = Vec::with_capacity(live.len());
        for meta in live {
            entries.push((self.store.get(&meta.fingerprint)?, meta.expires_at));
        }
        Ok(SecretSet::new(entries))
    }

    /// What the status screen and `secret status` show. `check_keychain` also reads each entry.
    pub fn report(&self, now: DateTime<Utc>, check_keychain: bool) -> Result<SecretsReport, SecretsError> {
        let file = self.read_file()?;
        let usage = read_usage(&self.dir.join(USAGE_FILE));
        let keychain = if check_keychain && !file.secrets.is_empty() {
            match file.secrets.iter().try_for_each(|m| self.store.get(&m.fingerprint).map(drop)) {
                Ok(()) => KeychainStatus { ok: true, message: None },
                Err(e) => KeychainStatus { ok: false, message: Some(e.to_string()) },
            }
        } else {
            KeychainStatus { ok: true, message: None }
        };
        let secrets = file
            .secrets
            .iter()
            .filter(|m| m.expires_at.is_none_or(|t| t > now))
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
                }
            })
            .collect();
        Ok(SecretsReport { keychain, secrets })
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

fn read_usage(path: &Path) -> HashMap<String, SecretUse> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Counts which secret verified each delivery; persisted now and then by the watcher.
#[derive(Debug, Default)]
pub struct SecretUsage {
    counts: Mutex<HashMap<String, SecretUse>>,
    dirty: AtomicBool,
}

impl SecretUsage {
    pub fn record(&self, fingerprint: &Fingerprint, at: DateTime<Utc>) {
        if let Ok(mut counts) = self.counts.lock() {
            let used = counts.entry(fingerprint.0.clone()).or_default();
            used.matches += 1;
            used.last_matched_at = Some(at);
            self.dirty.store(true, Ordering::Release);
        }
    }

    fn load(&self, path: &Path) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts = read_usage(path);
        }
    }

    fn persist(&self, path: &Path) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let bytes = match self.counts.lock() {
            Ok(counts) => serde_json::to_vec_pretty(&*counts),
            Err(_) => return,
        };
        if let Err(e) =
            bytes.map_err(|e| e.to_string()).and_then(|b| write_atomically(path, &b).map_err(|e| e.to_string()))
        {
            tracing::warn!(error = %e, "could not record secret usage");
        }
    }
}

/// Keeps a [`SecretsHandle`] in step with the keychain and the metadata file, on its own thread.
#[derive(Debug)]
pub struct SecretsWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the watcher looks for changes (and retries a failing keychain).
const WATCH_EVERY: Duration = Duration::from_millis(250);
const RETRY_EVERY: Duration = Duration::from_secs(3);

impl SecretsWatcher {
    /// Loads the secrets once (so the receiver starts with them), then watches for changes.
    pub fn start(
        manager: SecretManager,
        handle: SecretsHandle,
        usage: Arc<SecretUsage>,
    ) -> std::io::Result<SecretsWatcher> {
        let usage_path = manager.dir.join(USAGE_FILE);
        usage.load(&usage_path);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let first = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let first_done = first.clone();
        let thread = std::thread::Builder::new().name("zof-secrets".into()).spawn(move || {
            let mut stamp = None;
            let mut failing_since: Option<std::time::Instant> = None;
            let mut last_reason = String::new();
            let mut next_expiry: Option<DateTime<Utc>> = None;
            let mut first_round = true;
            while !flag.load(Ordering::Acquire) {
                let now_stamp = manager.file_stamp();
                let retry = failing_since.is_some_and(|t| t.elapsed() >= RETRY_EVERY);
                if first_round || now_stamp != stamp || retry {
                    stamp = now_stamp;
                    match manager.load(Utc::now()) {
                        Ok(set) => {
                            failing_since = None;
                            last_reason.clear();
                            next_expiry = set.secrets().iter().filter_map(|s| s.expires_at).min();
                            handle.replace(SecretsStatus::Ready(set));
                        }
                        Err(e) => {
                            failing_since = Some(std::time::Instant::now());
                            let reason = e.to_string();
                            if reason != last_reason {
                                tracing::warn!(error = %reason, "webhook secrets unavailable");
                            }
                            last_reason.clone_from(&reason);
                            handle.replace(SecretsStatus::Unavailable(reason));
                        }
                    }
                    if first_round {
                        first_round = false;
                        let (lock, cv) = &*first_done;
                        if let Ok(mut done) = lock.lock() {
                            *done = true;
                            cv.notify_all();
                        }
                    }
                }
                // Only when a loaded secret's overlap has ended: no file reads on the quiet ticks.
                if next_expiry.is_some_and(|t| t <= Utc::now()) {
                    next_expiry = None;
                    if let Err(e) = manager.prune_expired(Utc::now()) {
                        tracing::warn!(error = %e, "could not retire expired secrets");
                    }
                }
                usage.persist(&usage_path);
                std::thread::sleep(WATCH_EVERY);
            }
            usage.persist(&usage_path);
        })?;
        // The receiver starts with the secrets loaded, or with the reason they are not.
        let (lock, cv) = &*first;
        if let Ok(guard) = lock.lock() {
            let _ = cv.wait_timeout_while(guard, KEYCHAIN_TIMEOUT + Duration::from_secs(1), |done| !*done);
        }
        Ok(SecretsWatcher { stop, thread: Some(thread) })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SecretsWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as D;

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

    #[test]
    fn usage_is_counted_per_fingerprint_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let usage = SecretUsage::default();
        let fp = secret("counted-secret-0123456789").fingerprint();
        usage.record(&fp, Utc::now());
        usage.record(&fp, Utc::now());
        usage.persist(&dir.path().join(USAGE_FILE));
        assert_eq!(read_usage(&dir.path().join(USAGE_FILE))[&fp.0].matches, 2);
    }
}
