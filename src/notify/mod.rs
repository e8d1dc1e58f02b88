//! Native notifications for pending plans, split by what each half may touch:
//!
//! - [`policy`]: the rules (coalescing, quiet hours and mute, when the panel comes forward,
//!   escalation, what a click means), pure and unit-tested;
//! - [`desktop`]: the D-Bus side on notify-rust, the only file that names it.
//!
//! The notifier writes no store records. What the user chooses on a notification that changes a
//! plan ("Snooze 1 h") goes back to the core as a [`crate::outbox::NotificationAction`], and the
//! core applies it as the panel's own button would; the mute switch is kept by the panel and
//! handed to the notifier at start.

pub mod desktop;
pub mod policy;

pub use desktop::DesktopNotifier;
pub use policy::{in_quiet_hours, AttentionGate, Coalescer};

pub const APP_NAME: &str = "Zof Approvals";
/// The icon the desktop package installs (named after the desktop binary).
pub const ICON: &str = "zof-approvals-desktop";
/// How long the "Snooze 1 h" action snoozes a plan.
pub const SNOOZE_MINUTES: u32 = 60;
