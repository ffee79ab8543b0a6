//! [`Sanctions`] over the embedded store: one row per sanctioned user in the `sanctions` table
//! (user_id → serde_json of the [`Standing`]), in the same redb file as the store.

use std::sync::Arc;

use async_trait::async_trait;
use ports::{Ban, PortError, Sanctions, Standing};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use wire::UserId;

use super::EmbeddedStore;
use crate::error::{run_blocking, PersistenceError};

/// user_id → serde_json of the user's `Standing`.
pub(super) const SANCTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sanctions");

impl EmbeddedStore {
    /// Reads the standing of `user_id`, changes it with `change`, writes it back, durably, in
    /// one write transaction. Returns what `change` returned.
    async fn change_standing<T, F>(&self, user_id: &UserId, change: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Standing) -> T + Send + 'static,
    {
        let database = Arc::clone(&self.database);
        let user_id = user_id.clone();
        run_blocking(move || {
            let write = database.begin_write()?;
            let outcome = {
                let mut table = write.open_table(SANCTIONS)?;
                let mut standing = match table.get(user_id.as_str())? {
                    Some(bytes) => serde_json::from_slice(bytes.value())?,
                    None => Standing::default(),
                };
                let outcome = change(&mut standing);
                if standing == Standing::default() {
                    table.remove(user_id.as_str())?;
                } else {
                    table.insert(user_id.as_str(), serde_json::to_vec(&standing)?.as_slice())?;
                }
                outcome
            };
            write.commit()?;
            Ok::<_, PersistenceError>(outcome)
        })
        .await
    }
}

#[async_trait]
impl Sanctions for EmbeddedStore {
    async fn standing(&self, user_id: &UserId) -> Result<Standing, PortError> {
        let database = Arc::clone(&self.database);
        let user_id = user_id.clone();
        run_blocking(move || {
            let read = database.begin_read()?;
            let table = read.open_table(SANCTIONS)?;
            let standing = match table.get(user_id.as_str())? {
                Some(bytes) => serde_json::from_slice(bytes.value())?,
                None => Standing::default(),
            };
            Ok(standing)
        })
        .await
    }

    async fn ban(&self, user_id: &UserId, ban: &Ban) -> Result<(), PortError> {
        let ban = ban.clone();
        self.change_standing(user_id, move |standing| standing.ban = Some(ban))
            .await
    }

    async fn lift_ban(&self, user_id: &UserId) -> Result<bool, PortError> {
        self.change_standing(user_id, |standing| standing.ban.take().is_some())
            .await
    }

    async fn revoke_tokens(&self, user_id: &UserId, valid_from: i64) -> Result<(), PortError> {
        self.change_standing(user_id, move |standing| {
            standing.tokens_valid_from = standing.tokens_valid_from.max(Some(valid_from));
        })
        .await
    }
}
