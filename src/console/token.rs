//! The Console API token: kept in the OS keychain (account `console-token`), held in memory in a
//! type that never prints it (its `Debug` and `Display` show a fingerprint), and sent only as the
//! `Authorization` header.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secrets::{KeychainError, SecretStore};

/// The keychain account (service `zof-approvals`) the token is kept under.
pub const TOKEN_ACCOUNT: &str = "console-token";

/// A Console API token. Write-only for users: shown only by [`ConsoleToken::fingerprint`].
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleToken(Zeroizing<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the Console API token is empty")]
    Empty,
    #[error("the Console API token contains spaces or control characters; paste it as the Console shows it")]
    Malformed,
    #[error("the environment variable {0} is not set; export the Console API token in it")]
    EnvMissing(String),
    #[error(transparent)]
    Keychain(#[from] KeychainError),
}

impl ConsoleToken {
    /// Surrounding whitespace (a pasted newline) is dropped; anything else odd is refused.
    pub fn new(text: &str) -> Result<ConsoleToken, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::Malformed);
        }
        Ok(ConsoleToken(Zeroizing::new(text.to_owned())))
    }

    /// Reads the token from the environment variable the user named (headless use).
    pub fn from_env(var: &str) -> Result<ConsoleToken, TokenError> {
        let value = Zeroizing::new(std::env::var(var).map_err(|_| TokenError::EnvMissing(var.into()))?);
        ConsoleToken::new(&value)
    }

    /// The token in the keychain, if one is set. Blocking (a keychain call).
    pub fn load(store: &dyn SecretStore) -> Result<Option<ConsoleToken>, TokenError> {
        match store.get_named(TOKEN_ACCOUNT)? {
            Some(text) => ConsoleToken::new(&text).map(Some),
            None => Ok(None),
        }
    }

    /// Puts the token in the keychain, replacing any other. Blocking (a keychain call).
    pub fn save(&self, store: &dyn SecretStore) -> Result<(), TokenError> {
        Ok(store.set_named(TOKEN_ACCOUNT, &self.0)?)
    }

    /// Twelve hex digits that name the token without revealing it.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"zof-approvals console token fingerprint v1\0");
        h.update(self.0.as_bytes());
        hex::encode(&h.finalize()[..6])
    }

    /// The `Authorization` header value; only the HTTP client calls this.
    pub(super) fn bearer(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("Bearer {}", self.0.as_str()))
    }
}

impl fmt::Debug for ConsoleToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsoleToken({})", self.fingerprint())
    }
}

impl fmt::Display for ConsoleToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token {}", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_prints_only_its_fingerprint() {
        let token = ConsoleToken::new(" zof_pat_supersecretvalue\n").unwrap();
        for shown in [format!("{token:?}"), format!("{token}")] {
            assert!(!shown.contains("supersecret"), "{shown}");
            assert!(shown.contains(&token.fingerprint()), "{shown}");
        }
        assert_eq!(ConsoleToken::new("  "), Err(TokenError::Empty));
        assert_eq!(ConsoleToken::new("a b"), Err(TokenError::Malformed));
    }

    #[test]
    fn a_token_is_kept_in_the_keychain_under_its_account() {
        let store = crate::secrets::MemoryStore::default();
        assert_eq!(ConsoleToken::load(&store).unwrap(), None);
        let token = ConsoleToken::new("zof_pat_1").unwrap();
        token.save(&store).unwrap();
        assert_eq!(ConsoleToken::load(&store).unwrap(), Some(token));
    }
}
