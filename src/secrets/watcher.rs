//! Keeps the receiver's [`SecretsHandle`] in step with the keychain and `secrets.json`, off
//! the request path, and records which secret verified each delivery.
//!
//! The watcher sleeps until something happens: a change made through this receiver (the panel,
//! or the CLI through the control socket) puts the new set in force at once and wakes it to read
//! the new expiry times; the Secret Service's signals ([`super::signals`]) wake it when the
//! keychain changes; a delivery wakes it to record secret usage (at most once a second). It
//! also wakes to retire secrets whose overlap ended, and every few seconds while the keychain
//! fails. Where the keychain sends no signals it looks at `secrets.json` once a minute (a change
//! of the keychain alone is then seen at the next start). Keychain calls go through
//! [`super::Keychain`]'s worker, so a hung keychain costs the watcher a fast error per retry,
//! not a thread.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{SecretManager, SecretsHandle, SecretsStatus, KEYCHAIN_TIMEOUT};
use crate::config::write_atomically;
use crate::verify::Fingerprint;

/// How often a failing keychain is retried.
const RETRY_EVERY: Duration = Duration::from_secs(3);
/// How often the watcher looks for changes where the keychain sends no signals.
const POLL_EVERY: Duration = Duration::from_secs(60);
/// Secret usage is written at most this often.
const USAGE_EVERY: Duration = Duration::from_secs(1);

/// What wakes the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    /// The secrets may have changed (a keychain signal, a change made here): load them again.
    Changed,
    /// Look at `secrets.json` and the timers (the keychain's signals came or went).
    Look,
    /// A delivery was verified: its usage waits to be written.
    Usage,
    Stop,
}

/// Where to wake the watcher, once it runs; until then (and without one) waking does nothing.
#[derive(Debug, Clone, Default)]
pub(super) struct WakeWatcher(Arc<OnceLock<Sender<Wake>>>);

impl WakeWatcher {
    pub(super) fn wake(&self, why: Wake) {
        if let Some(tx) = self.0.get() {
            let _ = tx.send(why);
        }
    }

    fn connect(&self, tx: Sender<Wake>) {
        let _ = self.0.set(tx);
    }
}

/// What the receiver observed of one secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretUse {
    pub matches: u64,
    pub last_matched_at: Option<DateTime<Utc>>,
}

pub(super) fn read_usage(path: &Path) -> HashMap<String, SecretUse> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Counts which secret verified each delivery; written by the watcher, at most once a second.
#[derive(Debug, Default)]
pub struct SecretUsage {
    counts: Mutex<HashMap<String, SecretUse>>,
    dirty: AtomicBool,
    watcher: WakeWatcher,
}

impl SecretUsage {
    pub fn record(&self, fingerprint: &Fingerprint, at: DateTime<Utc>) {
        if let Ok(mut counts) = self.counts.lock() {
            let used = counts.entry(fingerprint.0.clone()).or_default();
            used.matches += 1;
            used.last_matched_at = Some(at);
        }
        // Only the first delivery since the last write wakes the watcher.
        if !self.dirty.swap(true, Ordering::AcqRel) {
            self.watcher.wake(Wake::Usage);
        }
    }

    fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
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
    wake: Sender<Wake>,
    thread: Option<std::thread::JoinHandle<()>>,
    signals: Option<tokio::task::JoinHandle<()>>,
}

/// Signalled once the first load is done, so the receiver starts with its secrets.
type FirstLoad = Arc<(Mutex<bool>, Condvar)>;

impl SecretsWatcher {
    /// Loads the secrets once (so the receiver starts with them), then watches for changes.
    /// Inside a Tokio runtime it also follows the Secret Service's signals; without one, or
    /// where there are none, it looks for changes once a minute.
    pub fn start(
        manager: SecretManager,
        handle: SecretsHandle,
        usage: Arc<SecretUsage>,
    ) -> std::io::Result<SecretsWatcher> {
        usage.load(&manager.usage_file());
        let (wake, wakes) = mpsc::channel();
        usage.watcher.connect(wake.clone());
        handle.watcher().connect(wake.clone());
        let listening = Arc::new(AtomicBool::new(false));
        let signals = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let wake = wake.clone();
            let tell = move |heard| {
                let why = match heard {
                    super::signals::Heard::Changed => Wake::Changed,
                    super::signals::Heard::Look => Wake::Look,
                };
                wake.send(why).is_ok()
            };
            rt.spawn(super::signals::follow(tell, listening.clone()))
        });
        let first: FirstLoad = Arc::new((Mutex::new(false), Condvar::new()));
        let first_done = first.clone();
        let thread = std::thread::Builder::new()
            .name("zof-secrets".into())
            .spawn(move || Watch::new(manager, handle, usage).run(&wakes, &listening, &first_done))?;
        // The receiver starts with the secrets loaded, or with the reason they are not.
        let (lock, cv) = &*first;
        if let Ok(guard) = lock.lock() {
            let _ = cv.wait_timeout_while(guard, KEYCHAIN_TIMEOUT + Duration::from_secs(1), |done| !*done);
        }
        Ok(SecretsWatcher { wake, thread: Some(thread), signals })
    }

    /// Stops the watcher after it wrote the last usage counts.
    pub fn stop(mut self) {
        let _ = self.wake.send(Wake::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SecretsWatcher {
    fn drop(&mut self) {
        if let Some(signals) = self.signals.take() {
            signals.abort();
        }
        let _ = self.wake.send(Wake::Stop);
    }
}

/// The watcher thread's state.
struct Watch {
    manager: SecretManager,
    handle: SecretsHandle,
    usage: Arc<SecretUsage>,
    stamp: Option<(std::time::SystemTime, u64)>,
    failing_since: Option<Instant>,
    last_reason: String,
    /// When the first loaded secret's overlap ends.
    next_expiry: Option<DateTime<Utc>>,
    last_usage_write: Option<Instant>,
}

impl Watch {
    fn new(manager: SecretManager, handle: SecretsHandle, usage: Arc<SecretUsage>) -> Watch {
        Watch {
            manager,
            handle,
            usage,
            stamp: None,
            failing_since: None,
            last_reason: String::new(),
            next_expiry: None,
            last_usage_write: None,
        }
    }

    /// Until told to stop: load, do what is due, sleep until the next wake or timer.
    fn run(mut self, wakes: &Receiver<Wake>, listening: &AtomicBool, first: &FirstLoad) {
        let usage_path = self.manager.usage_file();
        self.load();
        let (lock, cv) = &**first;
        if let Ok(mut done) = lock.lock() {
            *done = true;
            cv.notify_all();
        }
        let mut reload = false;
        loop {
            let now_stamp = self.manager.file_stamp();
            let retry = self.failing_since.is_some_and(|t| t.elapsed() >= RETRY_EVERY);
            if reload || now_stamp != self.stamp || retry {
                self.load();
            }
            // Only when a loaded secret's overlap has ended: no file reads otherwise.
            if self.next_expiry.is_some_and(|t| t <= Utc::now()) {
                self.next_expiry = None;
                if let Err(e) = self.manager.prune_expired(Utc::now()) {
                    tracing::warn!(error = %e, "could not retire expired secrets");
                }
            }
            if self.usage.is_dirty() && self.last_usage_write.is_none_or(|t| t.elapsed() >= USAGE_EVERY) {
                self.usage.persist(&usage_path);
                self.last_usage_write = Some(Instant::now());
            }
            let deadline = self.next_deadline(listening.load(Ordering::Acquire));
            match wait(wakes, deadline) {
                Some(woken) => reload = woken,
                None => break,
            }
        }
        self.usage.persist(&usage_path);
    }

    fn load(&mut self) {
        self.stamp = self.manager.file_stamp();
        match self.manager.load(Utc::now()) {
            Ok(set) => {
                self.failing_since = None;
                self.last_reason.clear();
                self.next_expiry = set.secrets().iter().filter_map(|s| s.expires_at).min();
                self.handle.replace(SecretsStatus::Ready(set));
            }
            Err(e) => {
                self.failing_since = Some(Instant::now());
                let reason = e.to_string();
                if reason != self.last_reason {
                    tracing::warn!(error = %reason, "webhook secrets unavailable");
                }
                self.last_reason.clone_from(&reason);
                self.handle.replace(SecretsStatus::Unavailable(reason));
            }
        }
    }

    /// The earliest of: a retry while the keychain fails, the end of an overlap, the next usage
    /// write, and (without the keychain's signals) the next poll. `None`: only a wake will do.
    fn next_deadline(&self, listening: bool) -> Option<Instant> {
        let now = Instant::now();
        let retry = self.failing_since.map(|t| t + RETRY_EVERY);
        let expiry = self.next_expiry.map(|t| now + (t - Utc::now()).to_std().unwrap_or_default());
        let usage = self.usage.is_dirty().then(|| self.last_usage_write.map_or(now, |t| t + USAGE_EVERY));
        let poll = (!listening).then(|| now + POLL_EVERY);
        [retry, expiry, usage, poll].into_iter().flatten().min()
    }
}

/// Sleeps until a wake or `deadline`, then takes every wake that queued meanwhile. `Some(true)`:
/// the secrets may have changed; `Some(false)`: look at the timers; `None`: stop.
fn wait(wakes: &Receiver<Wake>, deadline: Option<Instant>) -> Option<bool> {
    let first = match deadline {
        Some(at) => wakes.recv_timeout(at.saturating_duration_since(Instant::now())),
        None => wakes.recv().map_err(|_| RecvTimeoutError::Disconnected),
    };
    let mut changed = false;
    let mut next = match first {
        Ok(wake) => Some(wake),
        Err(RecvTimeoutError::Timeout) => None,
        Err(RecvTimeoutError::Disconnected) => return None,
    };
    while let Some(wake) = next {
        match wake {
            Wake::Stop => return None,
            Wake::Changed => changed = true,
            Wake::Look | Wake::Usage => {}
        }
        next = wakes.try_recv().ok();
    }
    Some(changed)
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
