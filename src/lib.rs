//! Zof Approvals: receive Zof's `remediation.plan_pending` webhooks and tell people that a
//! remediation plan awaits their approval.
//!
//! An event flows one way:
//!
//! 1. [`receiver`] takes the HTTP request (`POST /webhooks/zof`) with its raw body;
//! 2. [`intake`] verifies the signature against those raw bytes ([`verify`]), then parses the
//!    envelope ([`envelope`]), then claims the event id and writes the event, its plan and an
//!    outbox entry in one transaction ([`store`]), and answers only once that is on disk;
//! 3. [`outbox`] drives each entry to done on its own thread: the user is told ([`outbox::Notifier`]);
//! 4. [`events`] carries what changed to whoever shows it (the desktop panel).
//!
//! [`app::Application`] wires these once; the `zof-approvals` CLI and the desktop shell both run it.
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

pub mod app;
pub mod config;
pub mod envelope;
pub mod events;
pub mod intake;
pub mod logging;
pub mod notify;
pub mod outbox;
pub mod panel;
pub mod receiver;
pub mod refusals;
pub mod secrets;
pub mod store;
pub mod verify;
