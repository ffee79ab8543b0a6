//! [`RedisDirectory`]: conversation records and membership shared by every node, with
//! optimistic versioning.
//!
//! Keys (prefix omitted):
//! - `conv:{id}`: hash `{record (JSON ConversationRecord), version, last_seq, last_activity}`.
//! - `conv-members:{id}`: set of the participants' user ids.
//! - `user-convs:{user}`: set of the user's conversation ids (what `list_for_user` reads).
//! - `direct:{len}:{first}:{second}`: the id of the direct conversation of a sorted user pair.
//!
//! `create` and `update` are Lua scripts (`scripts/directory_*.lua`): a direct pair finds its
//! existing conversation atomically, an update applies only over version `record.version - 1`
//! (else `PortError::Conflict`), and the per-user sets follow the participants. The update
//! script builds the keys of users who left from the prefix, so it needs a single Redis (not
//! Redis Cluster). `list_for_user` reads all of a user's conversations and sorts them (newest
//! activity first, ties by id): fine for the hundreds of conversations a user has, not for
//! millions.

use async_trait::async_trait;
use deadpool_redis::redis::{self, Value};
use ports::{CreateOutcome, Directory, PortError, Service, StoredConversation};
use wire::log::ConversationRecord;
use wire::{ConversationId, Seq, Timestamp, UserId};

use super::client::{decode, encode, framed, LuaScript, RedisClient};

static CREATE: LuaScript = LuaScript::new(
    "directory_create",
    include_str!("scripts/directory_create.lua"),
);
static UPDATE: LuaScript = LuaScript::new(
    "directory_update",
    include_str!("scripts/directory_update.lua"),
);
static ACTIVITY: LuaScript = LuaScript::new(
    "directory_activity",
    include_str!("scripts/directory_activity.lua"),
);

pub struct RedisDirectory {
    client: RedisClient,
}

impl RedisDirectory {
    pub fn new(client: RedisClient) -> Self {
        Self { client }
    }

    fn conversation_key(&self, conversation_id: &ConversationId) -> String {
        self.client.key(&format!("conv:{conversation_id}"))
    }

    fn members_key(&self, conversation_id: &ConversationId) -> String {
        self.client.key(&format!("conv-members:{conversation_id}"))
    }

    fn user_conversations_key(&self, user_id: &UserId) -> String {
        self.client.key(&format!("user-convs:{user_id}"))
    }

    /// The pair key of a direct conversation (one user talking to themselves counts too).
    fn direct_pair_key(&self, record: &ConversationRecord) -> Option<String> {
        let pair = record.direct_pair()?;
        Some(self.client.key(&format!(
            "direct:{}:{}",
            framed(pair.lower.as_str()),
            pair.higher
        )))
    }

    /// One conversation's record and recorded activity, from `HMGET record last_seq last_activity`.
    fn stored(values: &[Option<Vec<u8>>]) -> Result<Option<StoredConversation>, PortError> {
        let [record, last_seq, last_activity] = values else {
            return Err(PortError::internal("unexpected HMGET reply"));
        };
        let Some(record) = record else {
            return Ok(None);
        };
        let record: ConversationRecord = decode("conversation", record)?;
        let last_seq = match last_seq {
            Some(bytes) => Seq(std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| PortError::corrupt(Service::Redis, "last_seq", "not a number"))?),
            None => Seq::ZERO,
        };
        let last_activity_at: Timestamp = match last_activity {
            Some(bytes) => decode("activity time", bytes)?,
            None => record.conversation.created_at,
        };
        Ok(Some(StoredConversation {
            record,
            last_seq,
            last_activity_at,
        }))
    }

    async fn load_many(
        &self,
        conversation_ids: &[String],
    ) -> Result<Vec<StoredConversation>, PortError> {
        if conversation_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for conversation_id in conversation_ids {
            pipeline
                .cmd("HMGET")
                .arg(self.client.key(&format!("conv:{conversation_id}")))
                .arg("record")
                .arg("last_seq")
                .arg("last_activity");
        }
        let replies: Vec<Vec<Option<Vec<u8>>>> = self.client.pipeline(pipeline).await?;
        let mut loaded = Vec::with_capacity(replies.len());
        for reply in replies {
            if let Some(stored) = Self::stored(&reply)? {
                loaded.push(stored);
            }
        }
        Ok(loaded)
    }
}

/// Newest activity first, ties by conversation id.
fn member_ids(record: &ConversationRecord) -> Vec<UserId> {
    let mut members: Vec<UserId> = record
        .participants
        .iter()
        .map(|participant| participant.user_id.clone())
        .collect();
    members.sort();
    members.dedup();
    members
}

#[async_trait]
impl Directory for RedisDirectory {
    async fn create(&self, record: ConversationRecord) -> Result<CreateOutcome, PortError> {
        let conversation_id = record.conversation.conversation_id.clone();
        let members = member_ids(&record);
        let pair_key = self.direct_pair_key(&record);
        let mut keys = vec![
            self.conversation_key(&conversation_id),
            self.members_key(&conversation_id),
            pair_key
                .clone()
                .unwrap_or_else(|| self.client.key("direct:none")),
        ];
        keys.extend(
            members
                .iter()
                .map(|user_id| self.user_conversations_key(user_id)),
        );
        let mut args = vec![
            encode("conversation", &record)?,
            record.version.to_string(),
            conversation_id.to_string(),
            if pair_key.is_some() { "1" } else { "0" }.to_owned(),
            self.client.config().key_prefix.clone(),
        ];
        args.extend(members.iter().map(ToString::to_string));
        let reply: Vec<Value> = self.client.eval(&CREATE, &keys, &args).await?;
        match reply.as_slice() {
            [Value::Int(0)] => Ok(CreateOutcome::Created(record)),
            [Value::Int(1), Value::BulkString(existing)] => {
                Ok(CreateOutcome::Existing(decode("conversation", existing)?))
            }
            [Value::Int(2)] => Err(PortError::conflict(format!(
                "conversation {conversation_id} already exists"
            ))),
            other => Err(PortError::internal(format!(
                "unexpected directory_create reply {other:?}"
            ))),
        }
    }

    async fn get(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<ConversationRecord>, PortError> {
        let record: Option<Vec<u8>> = self
            .client
            .query(
                redis::cmd("HGET")
                    .arg(self.conversation_key(conversation_id))
                    .arg("record")
                    .to_owned(),
            )
            .await?;
        record
            .map(|bytes| decode("conversation", &bytes))
            .transpose()
    }

    async fn update(&self, record: ConversationRecord) -> Result<(), PortError> {
        let conversation_id = record.conversation.conversation_id.clone();
        if record.version < 2 {
            return Err(PortError::conflict(format!(
                "update of {conversation_id} to version {}",
                record.version
            )));
        }
        let members = member_ids(&record);
        let mut keys = vec![
            self.conversation_key(&conversation_id),
            self.members_key(&conversation_id),
        ];
        keys.extend(
            members
                .iter()
                .map(|user_id| self.user_conversations_key(user_id)),
        );
        let mut args = vec![
            encode("conversation", &record)?,
            record.version.to_string(),
            conversation_id.to_string(),
            self.client.config().key_prefix.clone(),
        ];
        args.extend(members.iter().map(ToString::to_string));
        let replaced: i64 = self.client.eval(&UPDATE, &keys, &args).await?;
        if replaced == 1 {
            Ok(())
        } else {
            Err(PortError::conflict(format!(
                "conversation {conversation_id} is not at version {}",
                record.version - 1
            )))
        }
    }

    async fn record_activity(
        &self,
        conversation_id: &ConversationId,
        last_seq: Seq,
        at: Timestamp,
    ) -> Result<(), PortError> {
        let _recorded: i64 = self
            .client
            .eval(
                &ACTIVITY,
                &[self.conversation_key(conversation_id)],
                &[last_seq.0.to_string(), encode("activity time", &at)?],
            )
            .await?;
        Ok(())
    }

    async fn list_for_user(
        &self,
        user_id: &UserId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> Result<Vec<StoredConversation>, PortError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let conversation_ids: Vec<String> = self
            .client
            .query(
                redis::cmd("SMEMBERS")
                    .arg(self.user_conversations_key(user_id))
                    .to_owned(),
            )
            .await?;
        let listed = self.load_many(&conversation_ids).await?;
        let cursor = match after {
            None => None,
            Some(after_id) => match self.load_many(&[after_id.to_string()]).await?.pop() {
                Some(cursor) => Some(cursor),
                None => return Ok(Vec::new()),
            },
        };
        Ok(ports::store::page_by_activity(
            listed,
            cursor.as_ref(),
            limit,
        ))
    }
}
