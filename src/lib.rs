//! Zof Approvals: receive Zof's `remediation.plan_pending` webhooks and tell people that a
//! remediation plan awaits their approval.
//!
//! An event flows one way, and every intake source (HTTP, the team relay, the Console) goes
//! through the same path: verify → store → ack → outbox.
//!
//! 1. [`receiver`] takes the HTTP request (`POST /webhooks/zof`) with its raw body, and refuses
//!    what is not a webhook delivery (browser requests) before reading it;
//! 2. [`intake`] verifies the signature against those raw bytes ([`verify`]), then parses the
//!    envelope ([`envelope`]), then claims the event id and writes the event and an outbox entry
//!    ([`store`]), and answers only once that is on disk; refusals are only counted ([`refusals`]);
//! 3. [`outbox`] drives each entry to done on its own thread: the user is told
//!    ([`outbox::Notifier`], [`notify`]), and what was done is recorded; the notifier writes nothing;
//! 4. [`events`] carries what changed to whoever shows it; [`panel`] is what the desktop shows.
//!
//! What a person does (handle, snooze, mute, settings, secrets) has one owner, [`actions`], which
//! every entry point calls: the panel, the [`control`] socket the CLI reaches a receiver through,
//! the CLI alone ([`actions::Actions::offline`]), a notification, the tray, a teammate's action.
//!
//! Where each concern lives, by layer (each imports only from those above it in this list;
//! `scripts/check-layers.py` checks it):
//! - [`domain`]: pure types and rules (a plan and its transitions, the team action, the audit
//!   vocabulary), with [`envelope`], [`verify`], [`config`] and [`logging`];
//! - [`store`]: sled, and only there (records, codec, group commit, timers, pruning, quarantine,
//!   reopening after a disk failure); it applies the domain's transitions and decides nothing;
//! - the pipeline: [`intake`], [`outbox`], [`events`], [`refusals`], [`notify`] (the only code that
//!   names `notify-rust`), [`secrets`] (the OS keychain; the only code that names `keyring`);
//! - [`actions`]: the one owner of every person-action, and the follow-up after a change;
//! - the sources: [`receiver`] (HTTP), [`relay`] (NATS JetStream; the only code that names
//!   `async-nats`), [`console`] (the only code that knows the Console API's HTTP shape);
//! - the outside: [`panel`] (views and the desktop's calls), [`control`], [`about`], and
//!   [`app::Application`], which wires these once; the `zof-approvals` CLI and the desktop shell
//!   both run it.
//!
//! ```
//! use zof_approvals::verify::{sign_zof, Secret, SecretSet, Verifier};
//! let secret = Secret::new("an-example-secret-0123456789").unwrap();
//! let body = br#"{"id":"evt_1"}"#;
//! let header = sign_zof(&secret, body);
//! let headers = [("X-Zof-Signature", header)];
//! let matched = Verifier::default().verify(&SecretSet::single(secret.clone()), &headers, body, chrono::Utc::now());
//! assert_eq!(matched, Ok(secret.fingerprint()));
//! ```

pub mod about;
pub mod actions;
pub mod app;
pub mod config;
pub mod console;
#[cfg(unix)]
pub mod control;
pub mod details;
pub mod domain;
pub mod envelope;
pub mod events;
pub mod intake;
pub mod logging;
pub mod notify;
pub mod outbox;
pub mod panel;
pub mod receiver;
pub mod refusals;
pub mod relay;
pub mod secrets;
pub mod store;
pub mod verify;
