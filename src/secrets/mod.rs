//! Webhook secrets: material in the OS keychain, everything else beside the settings.
//!
//! Secret material lives only in the keychain (service `zof-approvals`, one entry per secret);
//! `secrets.json` in the config dir holds what may be shown (fingerprint, created, expires) and
//! `secret-usage.json` what the receiver observed (last match, count). The CLI and a running
//! receiver share these files, so a `secret` command works while the receiver or the desktop app
//! holds the event store.
//!
//! The receiver never touches the keychain on the request path: a [`SecretsHandle`] holds the
//! current [`SecretSet`] (or why there is none) and a watcher thread swaps it whole when the
//! secrets change. The pieces:
//! - `keychain.rs`: the [`SecretStore`] trait and the OS keychain behind one worker thread (the
//!   only file that names `keyring`);
//! - `rotation.rs`: [`SecretManager`], which rotates, revokes, loads and reports;
//! - `watcher.rs`: [`SecretsWatcher`], which keeps the handle in step, and [`SecretUsage`];
//! - `signals.rs`: the Secret Service's D-Bus signals the watcher wakes on (the only code that
//!   names that API).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::verify::{Fingerprint, Secret, SecretError, SecretSet};

mod keychain;
mod rotation;
mod signals;
mod watcher;

pub use keychain::{Keychain, MemoryStore, SecretStore};
pub use rotation::{KeychainStatus, SecretManager, SecretMeta, SecretReport, SecretRole, SecretsReport};
pub use watcher::{SecretUsage, SecretUse, SecretsWatcher};

/// The keychain service name of every entry.
pub const KEYCHAIN_SERVICE: &str = "zof-approvals";
pub const SECRETS_FILE: &str = "secrets.json";
pub const USAGE_FILE: &str = "secret-usage.json";

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
pub struct SecretsHandle {
    status: Arc<RwLock<Arc<SecretsStatus>>>,
    watcher: watcher::WakeWatcher,
}

impl SecretsHandle {
    pub fn new(status: SecretsStatus) -> SecretsHandle {
        SecretsHandle { status: Arc::new(RwLock::new(Arc::new(status))), watcher: watcher::WakeWatcher::default() }
    }

    pub fn current(&self) -> Arc<SecretsStatus> {
        match self.status.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, status: SecretsStatus) {
        let next = Arc::new(status);
        match self.status.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    /// The secrets were changed by this process (a rotation put in force here): the watcher, if
    /// one keeps this handle, reads them again now.
    pub fn changed_here(&self) {
        self.watcher.wake(watcher::Wake::Changed);
    }

    fn watcher(&self) -> &watcher::WakeWatcher {
        &self.watcher
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
    #[error("the keychain did not answer within {0:?}: it may be locked and waiting for a password prompt; unlock it, then retry")]
    Timeout(Duration),
    /// An earlier call still hangs; asking again would only queue behind it.
    #[error("the keychain did not answer within {0:?} and still has not; waiting for it (it may be locked and waiting for a password prompt: unlock it)")]
    NotAnswering(Duration),
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

/// Where the secrets come from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// The secret store (the OS keychain by default) with metadata in the config dir.
    Store(Arc<dyn SecretStore>),
    /// One secret from an environment variable the user named (headless use, CI).
    Env(String),
    /// A fixed set (tests, embedding).
    Fixed(SecretSet),
}

impl SecretSource {
    /// The OS keychain: the default for `serve` and the desktop app.
    pub fn keychain() -> SecretSource {
        SecretSource::Store(Arc::new(Keychain::default()))
    }
}
