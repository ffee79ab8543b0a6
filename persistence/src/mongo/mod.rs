//! The MongoDB store: [`MongoStore`] implements [`ports::Store`] over the collections
//! `messages`, `conversations` and `participants` (see crate `mongo_documents` for their shape), written
//! by ingest with bulk, idempotent commands (see `write`) and read by history, sync and
//! conversation lists (see `read`); `scan` pages through every message (rebuilding the search
//! index). It also implements [`ports::AuditLog`] over the `audit` collection, which the nodes
//! write themselves (see `audit`).
//!
//! Every operation is bounded by [`MongoConfig`]'s timeouts: a dead or unreachable server fails
//! callers with `PortError::Unavailable`, never hangs them.

mod audit;
mod backfill;
mod client;
mod config;
mod erasure;
mod jobs;
mod reactions;
mod read;
mod retention;
mod scan;
mod user_data;
mod write;

use async_trait::async_trait;
use mongodb::bson::{doc, Document};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Database, IndexModel};
use ports::{During, MessageQuery, PortError, Store, StoreWrite, StoredConversation, Watermarks};
use wire::log::MessageRecord;
use wire::{ClientMsgId, ConversationId, MessageId, UserId};

pub use audit::AUDIT as AUDIT_COLLECTION;
pub use backfill::Backfilled;
pub use config::MongoConfig;
pub use jobs::JOBS as JOBS_COLLECTION;
pub use mongo_documents::{
    CONVERSATIONS as CONVERSATIONS_COLLECTION, MESSAGES as MESSAGES_COLLECTION,
    PARTICIPANTS as PARTICIPANTS_COLLECTION,
};

use client::{mongo_error, within};

/// The store over one MongoDB database. Cheap to clone (the driver's client is shared).
#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    database: Database,
    config: MongoConfig,
    write_concern: Document,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MongoStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Builds the client; connects lazily, so this succeeds while MongoDB is down (a bad URI
    /// fails with `Rejected`). Call [`MongoStore::ensure_indexes`] at start-up.
    pub async fn connect(config: MongoConfig) -> Result<Self, PortError> {
        let parse = ClientOptions::parse(config.uri.as_str());
        let mut options = within(config.operation_timeout, async { parse.await })
            .await
            .map_err(|error| match error {
                PortError::Rejected { service, source } => PortError::rejected(
                    service,
                    During::new(format!("bad mongodb uri {}", config.redacted_uri()), source),
                ),
                other => other,
            })?;
        options.server_selection_timeout = Some(config.server_selection_timeout);
        options.connect_timeout = Some(config.connect_timeout);
        options.app_name.get_or_insert_with(|| "parley".to_owned());
        let client = Client::with_options(options).map_err(mongo_error)?;
        let database = client.database(&config.database);
        let write_concern = if config.journal {
            doc! { "w": "majority", "j": true }
        } else {
            doc! { "w": "majority" }
        };
        Ok(Self {
            client,
            database,
            config,
            write_concern,
        })
    }

    pub fn config(&self) -> &MongoConfig {
        &self.config
    }

    /// The driver's database handle (direct queries in tests and tools).
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Creates the collections' indexes; idempotent (an existing identical index is kept).
    pub async fn ensure_indexes(&self) -> Result<(), PortError> {
        let index = |name: &str, keys: Document, unique: bool| {
            IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .name(name.to_owned())
                        .unique(unique.then_some(true))
                        .build(),
                )
                .build()
        };
        let plan = [
            (
                mongo_documents::MESSAGES,
                vec![
                    index(
                        "conversation_seq",
                        doc! { "conversation_id": 1, "seq": 1 },
                        true,
                    ),
                    index("message_id", doc! { "message_id": 1 }, true),
                    index(
                        "conversation_sender_client_msg",
                        doc! { "conversation_id": 1, "sender_id": 1, "client_msg_id": 1 },
                        false,
                    ),
                    index(
                        "sender_conversation_seq",
                        doc! { "sender_id": 1, "conversation_id": 1, "seq": 1 },
                        false,
                    ),
                    index(
                        "reactors_conversation_seq",
                        doc! { "reactors": 1, "conversation_id": 1, "seq": 1 },
                        false,
                    ),
                ],
            ),
            (
                mongo_documents::CONVERSATIONS,
                vec![
                    index("direct_pair", doc! { "direct_pair": 1 }, false),
                    index("activity", doc! { "activity_micros": -1, "_id": 1 }, false),
                ],
            ),
            (
                mongo_documents::PARTICIPANTS,
                vec![
                    index(
                        "conversation_user",
                        doc! { "conversation_id": 1, "user_id": 1 },
                        true,
                    ),
                    index("user_id", doc! { "user_id": 1 }, false),
                ],
            ),
            (
                jobs::JOBS,
                vec![index("kind_state", doc! { "kind": 1, "state": 1 }, false)],
            ),
        ];
        for (collection, indexes) in plan {
            let collection = self.database.collection::<Document>(collection);
            within(
                self.config.operation_timeout,
                collection.create_indexes(indexes),
            )
            .await?;
        }
        Ok(())
    }

    /// Whether MongoDB answers a ping within the ping timeout.
    pub async fn ping(&self) -> Result<(), PortError> {
        let admin = self.client.database("admin");
        within(
            self.config.ping_timeout,
            admin.run_command(doc! { "ping": 1 }),
        )
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn apply(&self, writes: Vec<StoreWrite>) -> Result<(), PortError> {
        self.apply_writes(writes).await
    }

    async fn conversation(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<StoredConversation>, PortError> {
        self.read_conversation(conversation_id).await
    }

    async fn watermarks(
        &self,
        conversation_id: &ConversationId,
        user_id: &UserId,
    ) -> Result<Watermarks, PortError> {
        self.read_watermarks(conversation_id, user_id).await
    }

    async fn message(
        &self,
        conversation_id: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, PortError> {
        self.read_message(conversation_id, message_id).await
    }

    async fn message_by_client_id(
        &self,
        conversation_id: &ConversationId,
        sender_id: &UserId,
        client_msg_id: &ClientMsgId,
    ) -> Result<Option<MessageRecord>, PortError> {
        self.read_message_by_client_id(conversation_id, sender_id, client_msg_id)
            .await
    }

    async fn messages(
        &self,
        conversation_id: &ConversationId,
        query: MessageQuery,
    ) -> Result<Vec<MessageRecord>, PortError> {
        self.read_messages(conversation_id, query).await
    }

    async fn is_ready(&self) -> bool {
        self.ping().await.is_ok()
    }
}
