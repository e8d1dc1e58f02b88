//! The laptop's relay consumer while the app runs: started from the settings at launch, and
//! restarted or stopped when Settings → Team relay is saved, without restarting the app. Also
//! the NATS password, kept in the OS keychain (entry `nats-password`) and shown only by
//! fingerprint.
//!
//! One apply at a time: a save waits for the previous consumer to finish the messages it is
//! judging (stored and acknowledged) before the next one starts. A consumer set on the command
//! line (`serve --relay`) stays as it is: the flags win over the settings.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use super::TeamParts;
use super::{ConsumerHandle, LaptopLink, NatsAuth, NatsConfig, RelayStatus};
use crate::config::RelaySettings;
use crate::events::CoreEvent;
use crate::intake::Intake;
use crate::secrets::{KeychainError, SecretStore};

/// The keychain account (service `zof-approvals`) the NATS password is kept under.
pub const PASSWORD_ACCOUNT: &str = "nats-password";

/// The NATS password: its `Debug` and `Display` show a fingerprint, never the text.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsPassword(Zeroizing<String>);

impl NatsPassword {
    /// A pasted newline is dropped; an empty password is refused.
    pub fn new(text: &str) -> Result<NatsPassword, RelayControlError> {
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return Err(RelayControlError::EmptyPassword);
        }
        Ok(NatsPassword(Zeroizing::new(text.to_owned())))
    }

    /// Twelve hex digits that name the password without revealing it.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"zof-approvals nats password fingerprint v1\0");
        h.update(self.0.as_bytes());
        hex::encode(&h.finalize()[..6])
    }

    /// The password in the keychain, if one is set. Blocking (a keychain call).
    pub fn load(store: &dyn SecretStore) -> Result<Option<NatsPassword>, RelayControlError> {
        match store.get_named(PASSWORD_ACCOUNT)? {
            Some(text) => NatsPassword::new(&text).map(Some),
            None => Ok(None),
        }
    }

    /// Puts the password in the keychain, replacing any other. Blocking (a keychain call).
    pub fn save(&self, store: &dyn SecretStore) -> Result<(), RelayControlError> {
        Ok(store.set_named(PASSWORD_ACCOUNT, &self.0)?)
    }
}

impl fmt::Debug for NatsPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NatsPassword({})", self.fingerprint())
    }
}

impl fmt::Display for NatsPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "password {}", self.fingerprint())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayControlError {
    #[error("the NATS password is empty")]
    EmptyPassword,
    #[error("no keychain is used by this receiver (secrets from the environment); use a .creds file, or `serve --relay … --nats-password-env VAR`")]
    NoKeychain,
    #[error("no NATS password is set for user `{0}`: enter it in Settings → Team relay")]
    NoPassword(String),
    #[error(transparent)]
    Keychain(#[from] KeychainError),
    #[error("the team relay is set on the command line (`serve --relay`); restart without it to change it here")]
    FromCommandLine,
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the panel shows of the link: Settings → Team relay's status line and the home view's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayView {
    /// `off` (no relay URL), `failed` (the settings cannot be used, see `reason`), or the link's
    /// state: `connecting`, `connected`, `catching_up`, `disconnected`.
    pub state: &'static str,
    /// `off`, `connected`, `catching up 42`, `disconnected since …`, `not started: …`.
    pub text: String,
    pub pending: u64,
    pub since: Option<DateTime<Utc>>,
    /// Why the link is down or did not start (never a credential).
    pub reason: Option<String>,
    /// The durable consumer in use, while one runs.
    pub consumer: Option<String>,
    /// The consumer name used when the settings name none (`user@host`, made valid).
    pub default_consumer: String,
    /// The fingerprint of the NATS password in the keychain, when one is set (and known).
    pub password_fingerprint: Option<String>,
    /// Set with `serve --relay`: the settings do not change it.
    pub from_command_line: bool,
}

/// Starts, restarts and stops the relay consumer. Cheap to clone.
#[derive(Clone)]
pub struct RelayController(Arc<Inner>);

/// Names no credential and takes no lock (a caller may print it while applying).
impl fmt::Debug for RelayController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayController").field("default_consumer", &self.0.default_consumer).finish_non_exhaustive()
    }
}

struct Inner {
    parts: TeamParts,
    intake: Intake,
    events: broadcast::Sender<CoreEvent>,
    keychain: RwLock<Option<Arc<dyn SecretStore>>>,
    default_consumer: String,
    current: Mutex<Current>,
    /// Held for a whole apply, so two saves never run two consumers.
    applying: tokio::sync::Mutex<()>,
    /// The password as last read from or written to the keychain (`None`: not read yet).
    password: Mutex<Option<Option<NatsPassword>>>,
}

#[derive(Default)]
struct Current {
    running: Option<Running>,
    /// Why the settings could not be used, until the next apply.
    failed: Option<String>,
    from_command_line: bool,
    /// The application is stopping: nothing starts any more.
    closed: bool,
}

struct Running {
    handle: ConsumerHandle,
    /// What it was started with (the password by fingerprint): a save that changes nothing
    /// leaves it running.
    key: Option<(RelaySettings, Option<String>)>,
    consumer: String,
    /// Turns the link's changes of state into `StatusChanged` for the panel.
    watcher: JoinHandle<()>,
}

impl RelayController {
    /// `keychain` holds the NATS password (none: user and password cannot be used from settings).
    pub fn new(parts: TeamParts, keychain: Option<Arc<dyn SecretStore>>, default_consumer: String) -> RelayController {
        RelayController(Arc::new(Inner {
            intake: parts.intake.clone(),
            events: parts.events.clone(),
            parts,
            keychain: RwLock::new(keychain),
            default_consumer,
            current: Mutex::new(Current::default()),
            applying: tokio::sync::Mutex::new(()),
            password: Mutex::new(None),
        }))
    }

    /// Another keychain for the password (`serve` uses the OS keychain even when the webhook
    /// secret comes from the environment).
    pub fn set_keychain(&self, store: Arc<dyn SecretStore>) {
        *self.0.keychain.write().unwrap_or_else(PoisonError::into_inner) = Some(store);
        *lock(&self.0.password) = None;
    }

    pub fn default_consumer(&self) -> &str {
        &self.0.default_consumer
    }

    /// Follows `link` from now on, whatever the settings say (`serve --relay`). Must be called
    /// inside the Tokio runtime; ignored when a consumer runs already.
    pub fn start_fixed(&self, link: LaptopLink) {
        let mut current = lock(&self.0.current);
        if current.running.is_some() || current.closed {
            return;
        }
        current.from_command_line = true;
        current.running = Some(self.start(link, None));
    }

    /// Makes the running consumer match `relay`: starts, restarts (something changed, the
    /// password included) or stops it (no URL). When the settings cannot be used (no password in
    /// the keychain, say), no consumer runs and the view says why; the error is returned too.
    pub async fn apply(&self, relay: &RelaySettings) -> Result<(), RelayControlError> {
        let _one_at_a_time = self.0.applying.lock().await;
        {
            let current = lock(&self.0.current);
            if current.closed || current.from_command_line {
                return Ok(());
            }
        }
        let wanted = if relay.is_on() { self.link_for(relay).await.map(Some) } else { Ok(None) };
        let same = |r: &Running, key: &(RelaySettings, Option<String>)| r.key.as_ref() == Some(key);
        let previous = {
            let mut current = lock(&self.0.current);
            match (&wanted, &current.running) {
                (Ok(Some((_, key))), Some(running)) if same(running, key) => return Ok(()),
                (Ok(None), None) if current.failed.is_none() => return Ok(()),
                _ => {}
            }
            current.failed = wanted.as_ref().err().map(ToString::to_string);
            current.running.take()
        };
        if let Some(previous) = previous {
            self.stop_running(previous).await;
        }
        let outcome = match wanted {
            Ok(Some((link, key))) => {
                let mut current = lock(&self.0.current);
                if !current.closed {
                    current.running = Some(self.start(link, Some(key)));
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "relay: not started");
                Err(e)
            }
        };
        let _ = self.0.events.send(CoreEvent::StatusChanged);
        outcome
    }

    /// Stops the consumer for good (the application is stopping): messages being judged are
    /// stored and acknowledged; the rest stay in the stream.
    pub async fn shutdown(&self) {
        let _one_at_a_time = self.0.applying.lock().await;
        let running = {
            let mut current = lock(&self.0.current);
            current.closed = true;
            current.running.take()
        };
        if let Some(running) = running {
            self.stop_running(running).await;
        }
    }

    /// Keeps the NATS password in the keychain; returns its fingerprint. The running consumer
    /// takes it at the next [`RelayController::apply`] (a save of the settings).
    pub async fn set_password(&self, text: &str) -> Result<String, RelayControlError> {
        let password = NatsPassword::new(text)?;
        let store = self.keychain()?;
        let fingerprint = password.fingerprint();
        let to_save = password.clone();
        tokio::task::spawn_blocking(move || to_save.save(store.as_ref()))
            .await
            .map_err(|e| RelayControlError::Internal(e.to_string()))??;
        *lock(&self.0.password) = Some(Some(password));
        Ok(fingerprint)
    }

    /// The link's state now, with the password's fingerprint as last read (no keychain call).
    pub fn view(&self) -> RelayView {
        let fingerprint = lock(&self.0.password).as_ref().and_then(|p| p.as_ref().map(NatsPassword::fingerprint));
        let current = lock(&self.0.current);
        let mut view = RelayView {
            state: "off",
            text: "off".into(),
            pending: 0,
            since: None,
            reason: None,
            consumer: None,
            default_consumer: self.0.default_consumer.clone(),
            password_fingerprint: fingerprint,
            from_command_line: current.from_command_line,
        };
        if let Some(running) = &current.running {
            let health = running.handle.status().snapshot();
            view.state = health.state;
            view.text = health.text;
            view.pending = health.pending;
            view.since = health.since;
            view.reason = health.reason;
            view.consumer = Some(running.consumer.clone());
        } else if let Some(why) = &current.failed {
            view.state = "failed";
            view.text = format!("not started: {why}");
            view.reason = Some(why.clone());
        }
        view
    }

    /// [`RelayController::view`], after reading the keychain once for the password's
    /// fingerprint when it was not read yet (off the async threads).
    pub async fn view_with_password(&self) -> RelayView {
        let unread = lock(&self.0.password).is_none();
        if unread {
            if let Ok(store) = self.keychain() {
                match tokio::task::spawn_blocking(move || NatsPassword::load(store.as_ref())).await {
                    Ok(Ok(found)) => *lock(&self.0.password) = Some(found),
                    Ok(Err(e)) => tracing::debug!(error = %e, "relay: the NATS password could not be read"),
                    Err(e) => tracing::debug!(error = %e, "relay: the keychain task failed"),
                }
            }
        }
        self.view()
    }

    fn keychain(&self) -> Result<Arc<dyn SecretStore>, RelayControlError> {
        self.0.keychain.read().unwrap_or_else(PoisonError::into_inner).clone().ok_or(RelayControlError::NoKeychain)
    }

    /// The password for a link: as last read, else from the keychain (off the async threads).
    async fn password(&self, user: &str) -> Result<NatsPassword, RelayControlError> {
        let known = lock(&self.0.password).clone();
        let found = match known {
            Some(found) => found,
            None => {
                let store = self.keychain()?;
                let found = tokio::task::spawn_blocking(move || NatsPassword::load(store.as_ref()))
                    .await
                    .map_err(|e| RelayControlError::Internal(e.to_string()))??;
                *lock(&self.0.password) = Some(found.clone());
                found
            }
        };
        found.ok_or_else(|| RelayControlError::NoPassword(user.to_owned()))
    }

    /// The link `relay` describes, and what it is compared by (the password by fingerprint).
    async fn link_for(
        &self,
        relay: &RelaySettings,
    ) -> Result<(LaptopLink, (RelaySettings, Option<String>)), RelayControlError> {
        let given = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
        let (auth, fingerprint) = match (given(&relay.creds_file), given(&relay.user)) {
            (Some(path), _) => (NatsAuth::CredsFile(path.into()), None),
            (None, Some(user)) => {
                let password = self.password(&user).await?;
                let fingerprint = password.fingerprint();
                (NatsAuth::UserPassword { user, password: password.0 }, Some(fingerprint))
            }
            (None, None) => (NatsAuth::None, None),
        };
        let consumer = given(&relay.consumer).unwrap_or_else(|| self.0.default_consumer.clone());
        let nats = NatsConfig {
            url: relay.url.trim().to_owned(),
            auth,
            ca_file: given(&relay.ca_file).map(Into::into),
            name: format!("zof-approvals {consumer}"),
        };
        let link = LaptopLink { nats, stream: relay.stream.trim().to_owned(), consumer };
        Ok((link, (relay.clone(), fingerprint)))
    }

    fn start(&self, link: LaptopLink, key: Option<(RelaySettings, Option<String>)>) -> Running {
        tracing::info!(url = %link.nats.url, stream = %link.stream, consumer = %link.consumer, "relay: following");
        let consumer = link.consumer.clone();
        let handle = ConsumerHandle::start(&self.0.parts, link);
        let watcher = tokio::spawn(tell_changes(handle.status().clone(), self.0.events.clone()));
        Running { handle, key, consumer, watcher }
    }

    async fn stop_running(&self, running: Running) {
        running.watcher.abort();
        running.handle.stop().await;
        self.0.intake.detach_relay_status();
        tracing::info!(consumer = %running.consumer, "relay: stopped");
    }
}

/// A `StatusChanged` for each change of the link's state, until aborted.
async fn tell_changes(status: RelayStatus, events: broadcast::Sender<CoreEvent>) {
    let mut changes = status.changes();
    while changes.changed().await.is_ok() {
        let _ = events.send(CoreEvent::StatusChanged);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_password_prints_only_its_fingerprint_and_lives_in_its_keychain_entry() {
        let password = NatsPassword::new("hunter2-nats-secret\n").unwrap();
        for shown in [format!("{password:?}"), format!("{password}")] {
            assert!(!shown.contains("hunter2") && shown.contains(&password.fingerprint()), "{shown}");
        }
        assert_eq!(NatsPassword::new("\n"), Err(RelayControlError::EmptyPassword));
        let store = crate::secrets::MemoryStore::default();
        assert_eq!(NatsPassword::load(&store).unwrap(), None);
        password.save(&store).unwrap();
        assert_eq!(
            store.get_named(PASSWORD_ACCOUNT).unwrap().as_deref().map(String::as_str),
            Some("hunter2-nats-secret")
        );
        assert_eq!(NatsPassword::load(&store).unwrap(), Some(password));
    }
}
