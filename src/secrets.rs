//! Where the webhook secrets come from, and the live secret set the receiver verifies with.
//!
//! The receiver never touches a secret store on the request path: a [`SecretsHandle`] holds the
//! current [`SecretSet`] (or why there is none) and is swapped whole when the secrets change.

use std::sync::{Arc, RwLock};

use crate::verify::{Secret, SecretSet};

/// The secrets as the receiver sees them right now.
#[derive(Debug, Clone)]
pub enum SecretsStatus {
    Ready(SecretSet),
    /// Why no delivery can be verified (said in `/healthz` and in 503 answers).
    Unavailable(String),
}

/// Shared, atomically replaced view of the secrets.
#[derive(Debug, Clone)]
pub struct SecretsHandle(Arc<RwLock<Arc<SecretsStatus>>>);

impl SecretsHandle {
    pub fn new(status: SecretsStatus) -> SecretsHandle {
        SecretsHandle(Arc::new(RwLock::new(Arc::new(status))))
    }

    pub fn current(&self) -> Arc<SecretsStatus> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, status: SecretsStatus) {
        let next = Arc::new(status);
        match self.0.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the environment variable {0} is not set; export the webhook secret in it, or use the keychain")]
    EnvMissing(String),
    #[error("the environment variable {var} does not hold a usable secret: {reason}")]
    EnvInvalid { var: String, reason: crate::verify::SecretError },
}

/// Reads the secret from an environment variable the user named (headless use and CI).
pub fn secret_from_env(var: &str) -> Result<Secret, SecretsError> {
    let value = std::env::var(var).map_err(|_| SecretsError::EnvMissing(var.into()))?;
    Secret::new(&value).map_err(|reason| SecretsError::EnvInvalid { var: var.into(), reason })
}
