//! Zof Approvals: receive Zof's `remediation.plan_pending` webhooks and tell people that a
//! remediation plan awaits their approval.
//!
//! An event flows one way, and every intake source goes through the same path:
//!
//! 1. [`receiver`] takes the HTTP request (`POST /webhooks/zof`) with its raw body, and refuses
//!    what is not a webhook delivery (browser requests) before reading it;
//! 2. [`intake`] verifies the signature against those raw bytes ([`verify`]), then parses the
//!    envelope ([`envelope`]), then claims the event id and writes the event and an outbox entry
//!    ([`store`]), and answers only once that is on disk; refusals are only counted ([`refusals`]);
//! 3. [`outbox`] drives each entry to done on its own thread: the user is told
//!    ([`outbox::Notifier`], [`notify`]), and what was done is recorded; the notifier writes nothing;
//! 4. [`events`] carries what changed to whoever shows it; [`panel`] is what the desktop shows and does.
//!
//! Where each concern lives:
//! - [`store`]: sled, and only there (`records`, `codec`, `commit`, `timers`, `prune`; quarantine
//!   of unreadable records; reopening after a disk failure);
//! - [`secrets`]: the OS keychain (`keychain`, the only code that names `keyring`), rotation, the watcher;
//! - [`notify`]: the pure policy (`policy`) and the D-Bus side (`desktop`, the only code that names `notify-rust`);
//! - [`config`]: settings and paths; [`logging`]: logs that never block the receiver, to stderr and daily files;
//! - [`audit`]: who did what, when and from where (the rows live in [`store`], append-only);
//! - [`about`]: the build, the folders and the diagnostics a user copies (never a secret or a body);
//! - [`console`]: the optional Console connection (reconciliation, catch-up, subscription); the
//!   only code that knows the Console API's HTTP shape;
//! - [`relay`]: the team relay over NATS JetStream (the only code that names `async-nats`): the
//!   relay publishes what the [`intake::Judge`] verified; a laptop's consumer is one more intake source;
//! - [`team`]: teammates' actions ("handled by alice") carried over the relay and applied once each;
//! - [`app::Application`] wires these once; the `zof-approvals` CLI and the desktop shell both run it.
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
