//! The team relay: deliveries travel from an always-on, reachable relay to every laptop through
//! NATS JetStream. This module is the only code that names `async-nats`.
//!
//! - [`publish`]: `zof-approvals relay`, the HTTP side. It judges each delivery with the same
//!   [`Judge`](crate::intake::Judge) as the local receiver, publishes what verified to
//!   `zof.deliveries.<org>` (the raw body unchanged, the signature headers, `Nats-Msg-Id: <event
//!   id>`, `Zof-Received-At`), and answers 200 only once JetStream acknowledged it.
//! - [`consume`]: `serve --relay`, the laptop side. A durable pull consumer per laptop feeds every
//!   message through the laptop's own [`Intake`](crate::intake::Intake) (verified again with its
//!   own secrets, as of when the stream stored it) and acknowledges it only once it is durable
//!   locally; what fails verification is terminated, never redelivered.
//! - [`status`]: what `/healthz` and the logs say about the link.
//! - [`control`]: the desktop's side of `consume`: the consumer started, restarted and stopped
//!   as Settings → Team relay is saved, and the NATS password in the keychain.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use zeroize::Zeroizing;

pub mod actions;
pub mod consume;
pub mod control;
pub mod publish;
pub mod status;

pub use consume::ConsumerHandle;
pub use control::{NatsPassword, RelayControlError, RelayController, RelayView};
pub use publish::{Publisher, Relay};
pub use status::RelayStatus;

/// The stream's subjects: one per organization below this prefix.
pub const SUBJECT_PREFIX: &str = "zof.deliveries";
/// The relay's default stream name.
pub use crate::config::DEFAULT_STREAM;
/// When the relay received the delivery (RFC 3339), for information: it is not signed, so
/// laptops judge a message as of when the stream stored it ([`stored_at`]), never as of this.
pub const RECEIVED_AT_HEADER: &str = "Zof-Received-At";
/// JetStream's de-duplication key: the event id, so a retried delivery is stored once.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// Covers a sender's retries: the same event id within this window is stored once.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long the stream keeps a delivery for laptops that are offline.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest the relay waits for JetStream's acknowledgment before answering 503.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The delivery headers carried from HTTP to the message, as the verifiers read them.
pub const FORWARDED_HEADERS: [&str; 5] =
    ["x-zof-signature", "webhook-id", "webhook-timestamp", "webhook-signature", "content-type"];

/// How to authenticate to NATS. The password never appears in `Debug`, logs or errors.
#[derive(Clone, Default)]
pub enum NatsAuth {
    #[default]
    None,
    /// A `.creds` file (JWT + NKey seed), as `nsc` writes them.
    CredsFile(PathBuf),
    UserPassword {
        user: String,
        password: Zeroizing<String>,
    },
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::CredsFile(p) => write!(f, "CredsFile({})", p.display()),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user}, <redacted>)"),
        }
    }
}

/// Where NATS is and how to reach it.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:4222`, `tls://host:4222` (TLS required), or several separated by commas.
    pub url: String,
    pub auth: NatsAuth,
    /// A CA certificate (PEM) to trust besides the system's, for a server with a private CA.
    pub ca_file: Option<PathBuf>,
    /// The client name the server shows (`nats server report connections`).
    pub name: String,
}

/// The stream the relay creates when it is missing.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub name: String,
    pub replicas: usize,
    /// `zof.deliveries.>` for the relay; the benchmark's baseline uses a stream of its own.
    pub subjects: Vec<String>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            name: DEFAULT_STREAM.into(),
            replicas: 1,
            subjects: vec![format!("{SUBJECT_PREFIX}.>"), format!("{}.>", actions::ACTIONS_PREFIX)],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("invalid NATS address `{0}`")]
    Url(String),
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Creds { path: PathBuf, source: std::io::Error },
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("JetStream stream `{name}`: {reason}")]
    Stream { name: String, reason: String },
    #[error("JetStream consumer `{name}`: {reason}")]
    Consumer { name: String, reason: String },
    #[error("NATS is not reachable")]
    Disconnected,
    #[error("publishing to JetStream failed: {0}")]
    Publish(String),
    #[error("no acknowledgment from JetStream within {} s", PUBLISH_TIMEOUT.as_secs())]
    AckTimeout,
    #[error("the message stream ended: {0}")]
    Messages(String),
}

/// The subject a delivery of `org` is published to. NATS subject tokens cannot hold `.`, `*`,
/// `>` or whitespace: those become `_`.
pub fn delivery_subject(org: &str) -> String {
    format!("{SUBJECT_PREFIX}.{}", subject_token(org))
}

pub(crate) fn subject_token(text: &str) -> String {
    let token: String =
        text.chars().map(|c| if matches!(c, '.' | '*' | '>') || c.is_whitespace() { '_' } else { c }).collect();
    if token.is_empty() {
        "_".into()
    } else {
        token
    }
}

/// A durable consumer name from `user@host`: durable names cannot hold `.`, `*`, `>`, spaces,
/// or path separators, so everything but letters, digits, `-` and `_` becomes `_`.
pub fn consumer_name(user: &str, host: &str) -> String {
    let raw = format!("{user}@{host}");
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// This computer's default consumer name: `user@host` (as the audit log names this person by
/// default), made valid for NATS.
pub async fn default_consumer_name() -> String {
    // Reads /etc/hostname: off the async threads.
    let name = tokio::task::spawn_blocking(crate::domain::audit::default_display_name).await.unwrap_or_default();
    let (user, host) = name.split_once('@').unwrap_or((name.as_str(), "host"));
    consumer_name(user, host)
}

/// Connects to NATS; returns at once and keeps (re)connecting in the background, forever, so a
/// laptop that sleeps or changes networks comes back by itself. `status` hears every change.
pub async fn connect(config: &NatsConfig, status: RelayStatus) -> Result<async_nats::Client, RelayError> {
    let options = match &config.auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::CredsFile(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| RelayError::Creds { path: path.clone(), source })?,
        NatsAuth::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.to_string())
        }
    };
    let options = match &config.ca_file {
        Some(ca) => options.add_root_certificates(ca.clone()),
        None => options,
    };
    let options = options
        .name(&config.name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            // 0, 100 ms, 200 ms, … up to 2 s: back quickly after a blip, gently when down for long.
            Duration::from_millis((attempts.min(20) as u64) * 100)
        })
        .event_callback(move |event| {
            let status = status.clone();
            async move { status.on_event(&event) }
        });
    // A cluster's nodes, comma-separated; the client also learns the others from the server.
    let servers: Vec<&str> = config.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    if servers.is_empty() {
        return Err(RelayError::Url(config.url.clone()));
    }
    // The error's text may quote the URL, never a password (that goes in the CONNECT message).
    options.connect(servers).await.map_err(|e| RelayError::Connect(e.to_string()))
}

/// The stream's configuration as the relay creates it.
fn stream_config(settings: &StreamSettings) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: settings.name.clone(),
        subjects: settings.subjects.clone(),
        storage: jetstream::stream::StorageType::File,
        num_replicas: settings.replicas.max(1),
        duplicate_window: DUPLICATE_WINDOW,
        max_age: MAX_AGE,
        ..Default::default()
    }
}

/// Creates the stream if it is missing. An existing one is used as it is, except that subjects
/// it lacks are added (a stream made by an older relay gains the team actions' subjects).
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<jetstream::stream::Stream, RelayError> {
    let failed = |e: &dyn std::fmt::Display| RelayError::Stream { name: settings.name.clone(), reason: e.to_string() };
    let mut stream = js.get_or_create_stream(stream_config(settings)).await.map_err(|e| failed(&e))?;
    let mut config = stream.cached_info().config.clone();
    let missing: Vec<String> = settings.subjects.iter().filter(|s| !config.subjects.contains(s)).cloned().collect();
    if !missing.is_empty() {
        tracing::info!(stream = %settings.name, subjects = ?missing, "adding subjects to the stream");
        config.subjects.extend(missing);
        js.update_stream(config).await.map_err(|e| failed(&e))?;
        stream = js.get_stream(&settings.name).await.map_err(|e| failed(&e))?;
    }
    Ok(stream)
}

/// JetStream's view of a NATS client.
pub(crate) fn jetstream(client: async_nats::Client) -> jetstream::Context {
    jetstream::new(client)
}

/// When the stream stored `message`: JetStream's own timestamp, which whoever published the
/// message cannot set. `None` for a message that did not come from a stream.
pub(crate) fn stored_at(message: &jetstream::Message) -> Option<chrono::DateTime<chrono::Utc>> {
    let published = message.info().ok()?.published;
    chrono::DateTime::from_timestamp(published.unix_timestamp(), published.nanosecond())
}

/// Case-insensitive header lookup over a NATS message's headers.
struct NatsHeaders<'a>(Option<&'a async_nats::HeaderMap>);

impl crate::verify::HeaderSource for NatsHeaders<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        let headers = self.0?;
        headers
            .iter()
            .find(|(k, _)| AsRef::<str>::as_ref(*k).eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
            .map(|v| v.as_str().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_consumer_names_are_valid_nats_tokens() {
        assert_eq!(delivery_subject("org_abc"), "zof.deliveries.org_abc");
        assert_eq!(delivery_subject("a.b *>c"), "zof.deliveries.a_b___c");
        assert_eq!(consumer_name("alice", "laptop.local"), "alice_laptop_local");
        assert_eq!(consumer_name("bob smith", "x>y*z"), "bob_smith_x_y_z");
    }

    #[test]
    fn debug_never_shows_the_nats_password() {
        let auth = NatsAuth::UserPassword { user: "alice".into(), password: Zeroizing::new("hunter2-secret".into()) };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("hunter2") && shown.contains("alice"), "{shown}");
    }
}

/// What the consumer works with besides the link: the intake deliveries go through, and the
/// actions' owner a teammate's action is applied through (the same transition and follow-up as
/// the action taken here).
#[derive(Debug, Clone)]
pub struct TeamParts {
    pub intake: crate::intake::Intake,
    pub actions: crate::actions::Actions,
    /// Where the link's changes of state are told to the views.
    pub events: tokio::sync::broadcast::Sender<crate::events::CoreEvent>,
}

impl TeamParts {
    /// Who acts on this laptop, from `source`.
    pub fn actor(&self, source: crate::domain::audit::Source) -> crate::domain::audit::Actor {
        self.actions.actor(source)
    }

    pub fn store(&self) -> &crate::store::Store {
        self.intake.store()
    }
}

/// What a laptop needs to follow the relay.
#[derive(Debug, Clone)]
pub struct LaptopLink {
    pub nats: NatsConfig,
    pub stream: String,
    /// The durable consumer's name: one per laptop (`user@host`, sanitized).
    pub consumer: String,
}
