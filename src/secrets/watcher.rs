//! Keeps the receiver's [`SecretsHandle`] in step with the keychain and `secrets.json`, off
//! the request path, and records which secret verified each delivery.
//!
//! The CLI and the panel rotate by writing `secrets.json`; the watcher notices the change within
//! a quarter second and swaps the whole set, retries a failing keychain every few seconds, and
//! retires secrets whose overlap ended. Keychain calls go through [`super::Keychain`]'s worker,
//! so a hung keychain costs the watcher a fast error per retry, not a thread.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{SecretManager, SecretsHandle, SecretsStatus, KEYCHAIN_TIMEOUT};
use crate::config::write_atomically;
use crate::verify::Fingerprint;

/// How often the watcher looks for changes (and retries a failing keychain).
const WATCH_EVERY: Duration = Duration::from_millis(250);
const RETRY_EVERY: Duration = Duration::from_secs(3);

/// What the receiver observed of one secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretUse {
    pub matches: u64,
    pub last_matched_at: Option<DateTime<Utc>>,
}

pub(super) fn read_usage(path: &Path) -> HashMap<String, SecretUse> {
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

/// Signalled once the first load is done, so the receiver starts with its secrets.
type FirstLoad = Arc<(Mutex<bool>, Condvar)>;

impl SecretsWatcher {
    /// Loads the secrets once (so the receiver starts with them), then watches for changes.
    pub fn start(
        manager: SecretManager,
        handle: SecretsHandle,
        usage: Arc<SecretUsage>,
    ) -> std::io::Result<SecretsWatcher> {
        usage.load(&manager.usage_file());
        let stop = Arc::new(AtomicBool::new(false));
        let first: FirstLoad = Arc::new((Mutex::new(false), Condvar::new()));
        let (flag, first_done) = (stop.clone(), first.clone());
        let thread = std::thread::Builder::new()
            .name("zof-secrets".into())
            .spawn(move || watch(&manager, &handle, &usage, &flag, &first_done))?;
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

/// The watcher thread's loop, until `stop` is set.
fn watch(manager: &SecretManager, handle: &SecretsHandle, usage: &SecretUsage, stop: &AtomicBool, first: &FirstLoad) {
    let usage_path = manager.usage_file();
    let mut stamp = None;
    let mut failing_since: Option<Instant> = None;
    let mut last_reason = String::new();
    let mut next_expiry: Option<DateTime<Utc>> = None;
    let mut first_round = true;
    while !stop.load(Ordering::Acquire) {
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
                    failing_since = Some(Instant::now());
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
                let (lock, cv) = &**first;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Secret;

    #[test]
    fn usage_is_counted_per_fingerprint_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let usage = SecretUsage::default();
        let fp = Secret::new("counted-secret-0123456789").unwrap().fingerprint();
        usage.record(&fp, Utc::now());
        usage.record(&fp, Utc::now());
        let path = dir.path().join(crate::secrets::USAGE_FILE);
        usage.persist(&path);
        assert_eq!(read_usage(&path)[&fp.0].matches, 2);
    }
}
