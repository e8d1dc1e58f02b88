//! The one owner of every action a person takes: each is one function here, and every entry
//! point calls it (the panel, the control socket the CLI reaches a running receiver through,
//! the CLI on its own when nothing runs, a notification's button, the tray), so the change, its
//! audit row and what follows are the same whichever way the person came.
//!
//! - `plans`: handle, snooze, and a teammate's action applied here;
//! - `secrets`: set, generate, revoke the previous one, and a secret from a Console subscription;
//! - `settings`: saving settings (the only writer of the settings file), mute;
//! - `review`: a plan's details, and approve or reject with the Console.
//!
//! After a plan changes, [`Actions::after_plan_change`] is the one follow-up: the change is on
//! disk, the notification is withdrawn, the views hear of it (the team relay's publisher was
//! woken by the store when the action was queued).

use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

use crate::config::{ConfigError, Paths, Settings};
use crate::domain::audit::{local_name, Actor, AuditEntry, Source};
use crate::events::CoreEvent;
use crate::intake::Intake;
use crate::outbox::Notifier;
use crate::secrets::{SecretManager, SecretsError};
use crate::store::{Store, StoreError};

mod plans;
mod review;
mod secrets;
mod settings;

pub use plans::{Handled, SNOOZE_MAX_MINUTES};
pub use review::{ConsoleReviews, DecisionOutcome, DecisionReport, Review, ReviewError};
pub use settings::{save_settings_without_receiver, stored_mute};

/// Why an action was not done. Each has a stable [`ErrorCode`] for the panel and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plan is handled or decided: a snooze would do nothing.
    #[error("{0}; there is nothing to snooze")]
    NotOpen(String),
    #[error("snooze between 1 minute and 7 days")]
    InvalidSnooze,
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("the secret comes from an environment variable; restart without --secret-env to manage it here")]
    SecretsExternal,
    #[error(transparent)]
    Settings(#[from] ConfigError),
    #[error("a background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The stable word for an error, as the panel and the control socket carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    UnknownPlan,
    PlanHandled,
    InvalidSnooze,
    InvalidRequest,
    InvalidSecret,
    InvalidSettings,
    NoPreviousSecret,
    Keychain,
    Secrets,
    SecretsExternal,
    Store,
    Console,
    Internal,
    /// A code from a newer version.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownPlan => "unknown_plan",
            ErrorCode::PlanHandled => "plan_handled",
            ErrorCode::InvalidSnooze => "invalid_snooze",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidSecret => "invalid_secret",
            ErrorCode::InvalidSettings => "invalid_settings",
            ErrorCode::NoPreviousSecret => "no_previous_secret",
            ErrorCode::Keychain => "keychain",
            ErrorCode::Secrets => "secrets",
            ErrorCode::SecretsExternal => "secrets_external",
            ErrorCode::Store => "store",
            ErrorCode::Console => "console",
            ErrorCode::Internal => "internal",
            ErrorCode::Other => "other",
        }
    }
}

impl ActionError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ActionError::Store(StoreError::UnknownPlan(_)) => ErrorCode::UnknownPlan,
            ActionError::Store(_) => ErrorCode::Store,
            ActionError::NotOpen(_) => ErrorCode::PlanHandled,
            ActionError::InvalidSnooze => ErrorCode::InvalidSnooze,
            ActionError::Secrets(SecretsError::Keychain(_)) => ErrorCode::Keychain,
            ActionError::Secrets(SecretsError::Invalid(_)) => ErrorCode::InvalidSecret,
            ActionError::Secrets(SecretsError::NoPrevious) => ErrorCode::NoPreviousSecret,
            ActionError::Secrets(_) => ErrorCode::Secrets,
            ActionError::SecretsExternal => ErrorCode::SecretsExternal,
            ActionError::Settings(_) => ErrorCode::InvalidSettings,
            ActionError::Join(_) => ErrorCode::Internal,
        }
    }
}

/// The owner of person-actions, cheap to clone. A running receiver's has the notifier, the
/// views' event channel and the intake (whose secrets and policy change with an action);
/// [`Actions::offline`]'s has only the store, for the CLI when no receiver runs.
#[derive(Debug, Clone)]
pub struct Actions {
    store: Store,
    paths: Paths,
    settings: Arc<RwLock<Settings>>,
    manager: Option<SecretManager>,
    running: Option<Running>,
    /// Where review and decide reach the Console, once the application set it.
    reviews: Arc<std::sync::OnceLock<Arc<dyn ConsoleReviews>>>,
}

/// What a running receiver adds: who hears of a change.
#[derive(Debug, Clone)]
struct Running {
    notifier: Arc<dyn Notifier>,
    events: broadcast::Sender<CoreEvent>,
    intake: Intake,
}

impl Actions {
    /// The actions of a running receiver.
    pub fn running(
        intake: Intake,
        paths: Paths,
        settings: Arc<RwLock<Settings>>,
        manager: Option<SecretManager>,
        notifier: Arc<dyn Notifier>,
        events: broadcast::Sender<CoreEvent>,
    ) -> Actions {
        let store = intake.store().clone();
        Actions {
            store,
            paths,
            settings,
            manager,
            running: Some(Running { notifier, events, intake }),
            reviews: Arc::default(),
        }
    }

    /// The actions on a store opened with no receiver running (the CLI's own): the same
    /// changes and audit rows, and the same team queue, published when a relay link next exists.
    pub fn offline(store: Store, paths: Paths, settings: Settings, manager: Option<SecretManager>) -> Actions {
        Actions {
            store,
            paths,
            settings: Arc::new(RwLock::new(settings)),
            manager,
            running: None,
            reviews: Arc::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> Settings {
        self.settings.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Who acts on this machine, from `source`: the configured display name, else `user@host`.
    /// The one place that says who a person is.
    pub fn actor(&self, source: Source) -> Actor {
        let settings = self.settings.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Actor::new(local_name(&settings.display_name), source)
    }

    /// After plan `plan_id` changed: on disk, its notification withdrawn when it left the
    /// queue, the views told (the outbox worker heard of a new timer from the store).
    pub async fn after_plan_change(&self, plan_id: &str, withdraw: bool) -> Result<(), StoreError> {
        self.store.durable().await?;
        if let Some(running) = &self.running {
            if withdraw {
                running.notifier.withdraw(plan_id);
            }
            let _ = running.events.send(CoreEvent::PlanChanged { plan_id: plan_id.to_owned() });
        }
        Ok(())
    }

    /// The views hear that something beyond one plan changed (secrets, settings, mute).
    pub fn status_changed(&self) {
        if let Some(running) = &self.running {
            let _ = running.events.send(CoreEvent::StatusChanged);
        }
    }

    /// Appends audit rows now and waits until they are on disk.
    async fn record(&self, rows: Vec<AuditEntry>) -> Result<(), ActionError> {
        if rows.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || rows.iter().try_for_each(|row| store.append_audit(row))).await??;
        self.store.durable().await?;
        Ok(())
    }

    fn manager(&self) -> Result<SecretManager, ActionError> {
        self.manager.clone().ok_or(ActionError::SecretsExternal)
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }
}

#[cfg(test)]
mod tests;
