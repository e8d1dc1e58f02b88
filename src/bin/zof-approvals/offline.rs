//! The CLI on its own, when no receiver holds the data directory: the store opened here, and
//! the same one owner of each action the receiver uses ([`Actions::offline`]).

use std::sync::Arc;

use zof_approvals::actions::Actions;
use zof_approvals::config::{Paths, Settings};
use zof_approvals::secrets::{Keychain, SecretManager, SecretStore};
use zof_approvals::store::{Store, StoreError};

/// The store, or why a receiver that holds it cannot be asked.
pub fn open_store(dir: &std::path::Path) -> anyhow::Result<Store> {
    Store::open(dir).map_err(|e| match e {
        StoreError::Locked(dir) => anyhow::anyhow!(
            "the data directory {} is in use by a receiver that does not answer on its control socket; \
             use the app, or stop it and retry",
            dir.display()
        ),
        other => other.into(),
    })
}

/// The actions on the store and the OS keychain, opened here (blocking work, off the async threads).
pub async fn actions(paths: Paths) -> anyhow::Result<Actions> {
    tokio::task::spawn_blocking(move || {
        let settings = Settings::load(&paths.settings_file())?;
        let store = open_store(&paths.data_dir)?;
        let keychain: Arc<dyn SecretStore> = Arc::new(Keychain::default());
        let manager = SecretManager::new(keychain, &paths.config_dir, settings.rotation_reminder_days);
        Ok(Actions::offline(store, paths, settings, Some(manager)))
    })
    .await?
}
