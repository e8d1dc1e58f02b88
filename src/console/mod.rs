//! The optional connection to the Zof Console's API: the queue is reconciled with it (at start,
//! on a timer, after sleep or a network change, and on demand), plans missed while this computer
//! could not be reached are caught up, and a webhook subscription can be created for this app.
//! Without `console_api_url` nothing here runs and the app behaves as without it.
//!
//! - `api`: the HTTP shape of the Console API (the only code that knows it; `docs/console-api.md`);
//! - `token`: the API token, kept in the keychain and never printed;
//! - `reconcile`: one reconciliation and what it changes in the store;
//! - `review`: review and decide (who the token is, a plan's details, a decision), and the task
//!   that fetches a stored plan's details;
//! - `connection`: the task that runs reconciliations, its status, on-demand requests;
//! - `wake`: resume-from-sleep and network-back signals from the system bus, where there is one.

use std::sync::Arc;

use serde::Serialize;

mod api;
mod connection;
mod reconcile;
mod review;
mod token;
mod wake;

pub use api::{
    check_api_url, ApiUrlError, ConsoleClient, ConsolePlan, CreatedWebhook, RetryPolicy, StatusMeaning,
    MAX_ANSWER_BYTES, PAGE_LIMIT, REQUEST_TIMEOUT,
};
pub use connection::{ConnectionParts, ConnectionState, ConsoleConnection, ConsoleHandle, ConsoleStatus};
pub use reconcile::{reconcile, Outcome, ReconcileReport};
pub use review::Reviews;
pub use token::{ConsoleToken, TokenError, TOKEN_ACCOUNT};

use crate::actions::{ActionError, Actions};
use crate::domain::audit::Source;
use crate::secrets::{KeychainError, SecretStore};

/// Where the Console API token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// The keychain entry `console-token`: read at the first reconciliation, and again after
    /// the Console refused it or a new one was saved in the app (a `console login` meanwhile
    /// takes effect once the old token is refused, or at the next start).
    Keychain(Arc<dyn SecretStore>),
    /// An environment variable the user named (headless), read once.
    Env(String),
    /// A fixed token (tests, embedding).
    Fixed(ConsoleToken),
    /// No token: the connection stays off even with an API URL.
    None,
}

impl TokenSource {
    /// The current token. Blocking (a keychain read or an environment lookup).
    pub fn token(&self) -> Result<Option<ConsoleToken>, TokenError> {
        match self {
            TokenSource::Keychain(store) => ConsoleToken::load(store.as_ref()),
            TokenSource::Env(var) => ConsoleToken::from_env(var).map(Some),
            TokenSource::Fixed(token) => Ok(Some(token.clone())),
            TokenSource::None => Ok(None),
        }
    }
}

/// Everything the connection needs besides the settings (which it reads before each run).
#[derive(Debug, Clone)]
pub struct ConsoleSetup {
    pub token: TokenSource,
    pub retry: RetryPolicy,
    /// Listen for sleep and network signals on the system bus.
    pub watch_system: bool,
    /// How long a decision waits for the Console's answer before its outcome is checked.
    pub decision_timeout: std::time::Duration,
}

impl Default for ConsoleSetup {
    fn default() -> Self {
        ConsoleSetup {
            token: TokenSource::None,
            retry: RetryPolicy::default(),
            watch_system: true,
            decision_timeout: REQUEST_TIMEOUT,
        }
    }
}

impl ConsoleSetup {
    /// A fixed token, and no listening on the system bus (tests, embedding).
    pub fn fixed(token: ConsoleToken) -> ConsoleSetup {
        ConsoleSetup { token: TokenSource::Fixed(token), watch_system: false, ..ConsoleSetup::default() }
    }

    /// The default for an application: the token beside the webhook secrets in the keychain;
    /// none for secrets from the environment or fixed ones (name a token source explicitly).
    pub fn for_secrets(secrets: &crate::secrets::SecretSource) -> ConsoleSetup {
        let token = match secrets {
            crate::secrets::SecretSource::Store(store) => TokenSource::Keychain(store.clone()),
            crate::secrets::SecretSource::Env(_) | crate::secrets::SecretSource::Fixed(_) => TokenSource::None,
        };
        ConsoleSetup { token, ..ConsoleSetup::default() }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsoleError {
    #[error("no Console connection is configured: set `console_api_url` (Settings, or `--console-url`)")]
    NotConfigured,
    #[error("no Console API token is set: run `zof-approvals console login` (or paste it in Settings)")]
    NoToken,
    #[error("the Console refused the API token (HTTP {0}): it is invalid, expired, or lacks permission for remediation plans; set a new one with `zof-approvals console login`")]
    TokenRejected(u16),
    #[error("the Console API token cannot be sent as a header")]
    BadToken,
    #[error("the Console could not be reached ({0})")]
    Unreachable(String),
    #[error("the Console answered HTTP {0}")]
    Status(u16),
    #[error("the Console is rate limiting this app (HTTP 429)")]
    RateLimited { retry_after: Option<std::time::Duration> },
    #[error("the Console's answer could not be read: {0}")]
    BadAnswer(String),
    #[error(transparent)]
    BadUrl(#[from] ApiUrlError),
    #[error("the Console API token could not be read: {0}")]
    Token(#[from] TokenError),
    #[error(transparent)]
    Keychain(#[from] KeychainError),
    #[error("the event store: {0}")]
    Store(#[source] Arc<crate::store::StoreError>),
    #[error("the webhook secret or the settings could not be changed: {0}")]
    Action(#[source] Arc<ActionError>),
    #[error("the Console connection stopped")]
    Stopped,
    #[error("internal error: {0}")]
    Internal(String),
}

/// A webhook subscription this app created in the Console. Its secret went to the keychain.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Subscription {
    pub webhook_id: String,
    pub url: String,
    /// The fingerprint of the webhook secret now current.
    pub secret_fingerprint: String,
}

/// Subscribes `public_url` to `remediation.plan_pending` in the Console and makes the returned
/// signing secret current through its one owner ([`Actions::adopt_subscribed_secret`]: the
/// previous secret keeps verifying for the settings' overlap, and the rotation is recorded by
/// fingerprint, from `source`). The public URL is saved in the settings. The secret is never
/// returned or shown; only its fingerprint.
pub async fn subscribe(
    client: &ConsoleClient,
    actions: &Actions,
    public_url: &str,
    source: Source,
) -> Result<Subscription, ConsoleError> {
    let url = webhook_endpoint(public_url);
    let created = client.create_webhook(&url, "Zof Approvals desktop receiver").await?;
    let settings = actions.settings();
    let overlap = chrono::Duration::hours(i64::from(settings.secret_overlap_hours));
    let fingerprint = actions
        .adopt_subscribed_secret(created.secret, overlap, &created.id, source.clone())
        .await
        .map_err(|e| ConsoleError::Action(Arc::new(e)))?;
    let public_url = public_url.trim().to_owned();
    if settings.public_url != public_url {
        let next = crate::config::Settings { public_url, ..settings };
        actions.save_settings(next, source).await.map_err(|e| ConsoleError::Action(Arc::new(e)))?;
    }
    Ok(Subscription { webhook_id: created.id, url: created.url, secret_fingerprint: fingerprint.to_string() })
}

/// The receiver's endpoint under a public base URL (which may already name it).
pub fn webhook_endpoint(public_url: &str) -> String {
    let base = public_url.trim().trim_end_matches('/');
    if base.ends_with(crate::config::WEBHOOK_PATH) {
        base.to_owned()
    } else {
        format!("{base}{}", crate::config::WEBHOOK_PATH)
    }
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        ConsoleError::Store(Arc::new(e))
    }
}

impl ConsoleError {
    /// A stable word for the state this error leaves the connection in.
    pub fn state(&self) -> ConnectionState {
        match self {
            ConsoleError::NotConfigured => ConnectionState::Off,
            ConsoleError::NoToken | ConsoleError::Token(_) | ConsoleError::Keychain(_) | ConsoleError::BadToken => {
                ConnectionState::NoToken
            }
            ConsoleError::TokenRejected(_) => ConnectionState::TokenRejected,
            _ => ConnectionState::Unreachable,
        }
    }
}
