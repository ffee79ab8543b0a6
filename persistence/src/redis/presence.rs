//! [`RedisPresence`]: who is online anywhere in the cluster, with sessions that expire unless
//! their node keeps refreshing them, so a dead node's users go offline on their own.
//!
//! Keys (prefix omitted):
//! - `presence:sessions:{user}`: sorted set of `"{node}|{session}"` scored by expiry (ms on the
//!   Redis clock, now + TTL). A member whose score passed is a dead session.
//! - `presence:users`: sorted set of users with sessions, scored by their latest expiry; what
//!   [`RedisPresence::expired_users`] scans.
//! - `presence:last-seen:{user}`: ms of the last time the user went offline.
//!
//! Each adapter remembers its own node's sessions and re-scores them every TTL/3 in a
//! background task (stopped when the adapter drops). `connect`, `disconnect`, `get` and the
//! expiry scan are Lua scripts (`scripts/presence_*.lua`) timed by the Redis clock, so node
//! clocks do not matter. A session whose node stalled longer than the TTL comes back with the
//! next refresh (its user reappears online without a `connect` transition).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use ports::{PortError, Presence};
use tokio::task::JoinHandle;
use wire::ops::PresenceInfo;
use wire::{NodeId, SessionId, UserId};

use super::client::{LuaScript, RedisClient};

/// How long a session lives without a refresh.
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(30);
/// Users claimed per `expired_users` call at most.
const EXPIRED_BATCH: usize = 1000;
/// Sessions refreshed per script call.
const REFRESH_BATCH: usize = 500;

static CONNECT: LuaScript = LuaScript::new(
    "presence_connect",
    include_str!("scripts/presence_connect.lua"),
);
static DISCONNECT: LuaScript = LuaScript::new(
    "presence_disconnect",
    include_str!("scripts/presence_disconnect.lua"),
);
static REFRESH: LuaScript = LuaScript::new(
    "presence_refresh",
    include_str!("scripts/presence_refresh.lua"),
);
static GET: LuaScript = LuaScript::new("presence_get", include_str!("scripts/presence_get.lua"));
static EXPIRED: LuaScript = LuaScript::new(
    "presence_expired",
    include_str!("scripts/presence_expired.lua"),
);

struct Shared {
    client: RedisClient,
    ttl: Duration,
    /// This node's live sessions, refreshed in the background.
    local: Mutex<HashSet<(UserId, String)>>,
    /// Held by refreshes and disconnects, so a refresh cannot re-add a session that a
    /// concurrent disconnect just removed.
    refresh_lock: tokio::sync::Mutex<()>,
}

pub struct RedisPresence {
    shared: Arc<Shared>,
    refresher: JoinHandle<()>,
}

impl RedisPresence {
    /// Starts the refresh task: call within a Tokio runtime.
    pub fn new(client: RedisClient) -> Self {
        Self::with_ttl(client, DEFAULT_PRESENCE_TTL)
    }

    /// Like [`RedisPresence::new`] with another session TTL (at least 10 ms).
    pub fn with_ttl(client: RedisClient, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(10));
        let shared = Arc::new(Shared {
            client,
            ttl,
            local: Mutex::new(HashSet::new()),
            refresh_lock: tokio::sync::Mutex::new(()),
        });
        let refresher = tokio::spawn(refresh_loop(Arc::downgrade(&shared), ttl / 3));
        Self { shared, refresher }
    }

    /// The users whose last session expired (their node stopped refreshing) since any node's
    /// last call. Each such user is returned once cluster-wide: the call claims them and records
    /// their expiry as `last_seen`, so the caller should announce them offline. Users who
    /// disconnected normally are not returned (`disconnect` reported them).
    pub async fn expired_users(&self) -> Result<Vec<UserId>, PortError> {
        let client = &self.shared.client;
        let users: Vec<String> = client
            .eval(
                &EXPIRED,
                &[client.key("presence:users")],
                &[
                    client.config().key_prefix.clone(),
                    EXPIRED_BATCH.to_string(),
                ],
            )
            .await?;
        Ok(users.into_iter().map(UserId::new).collect())
    }

    /// Refreshes this node's sessions now (the background task does it every TTL/3).
    pub async fn refresh(&self) -> Result<(), PortError> {
        self.shared.refresh().await
    }
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

fn member(node_id: &NodeId, session_id: &SessionId) -> String {
    format!("{node_id}|{session_id}")
}

fn ttl_ms(ttl: Duration) -> String {
    ttl.as_millis().to_string()
}

impl Shared {
    fn sessions_key(&self, user_id: &str) -> String {
        self.client.key(&format!("presence:sessions:{user_id}"))
    }

    fn last_seen_key(&self, user_id: &str) -> String {
        self.client.key(&format!("presence:last-seen:{user_id}"))
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashSet<(UserId, String)>> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Per user, its live sessions then its last-seen ms (-1: never), from `presence_get`.
    async fn live_sessions_and_last_seen(
        &self,
        user_ids: &[UserId],
    ) -> Result<Vec<i64>, PortError> {
        let keys: Vec<String> = user_ids
            .iter()
            .flat_map(|user_id| {
                [
                    self.sessions_key(user_id.as_str()),
                    self.last_seen_key(user_id.as_str()),
                ]
            })
            .collect();
        let answer: Vec<i64> = self.client.eval(&GET, &keys, &[]).await?;
        if answer.len() != user_ids.len() * 2 {
            return Err(PortError::internal(format!(
                "presence_get answered {} values for {} users",
                answer.len(),
                user_ids.len()
            )));
        }
        Ok(answer)
    }

    async fn refresh(&self) -> Result<(), PortError> {
        let _guard = self.refresh_lock.lock().await;
        let sessions: Vec<(UserId, String)> = self.local().iter().cloned().collect();
        for batch in sessions.chunks(REFRESH_BATCH) {
            let mut keys = Vec::with_capacity(batch.len() + 1);
            keys.push(self.client.key("presence:users"));
            let mut args = Vec::with_capacity(batch.len() * 2 + 1);
            args.push(ttl_ms(self.ttl));
            for (user_id, member) in batch {
                keys.push(self.sessions_key(user_id.as_str()));
                args.push(user_id.to_string());
                args.push(member.clone());
            }
            let _refreshed: i64 = self.client.eval(&REFRESH, &keys, &args).await?;
        }
        Ok(())
    }
}

async fn refresh_loop(shared: Weak<Shared>, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(error) = shared.refresh().await {
            tracing::warn!(error = %error, "presence refresh failed");
        }
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn connect(
        &self,
        user_id: &UserId,
        session_id: &SessionId,
        node_id: &NodeId,
    ) -> Result<bool, PortError> {
        let shared = &self.shared;
        let member = member(node_id, session_id);
        let came_online: i64 = shared
            .client
            .eval(
                &CONNECT,
                &[
                    shared.sessions_key(user_id.as_str()),
                    shared.client.key("presence:users"),
                ],
                &[ttl_ms(shared.ttl), member.clone(), user_id.to_string()],
            )
            .await?;
        shared.local().insert((user_id.clone(), member));
        Ok(came_online == 1)
    }

    async fn disconnect(
        &self,
        user_id: &UserId,
        session_id: &SessionId,
        node_id: &NodeId,
    ) -> Result<bool, PortError> {
        let shared = &self.shared;
        let member = member(node_id, session_id);
        let _guard = shared.refresh_lock.lock().await;
        shared.local().remove(&(user_id.clone(), member.clone()));
        let went_offline: i64 = shared
            .client
            .eval(
                &DISCONNECT,
                &[
                    shared.sessions_key(user_id.as_str()),
                    shared.client.key("presence:users"),
                    shared.last_seen_key(user_id.as_str()),
                ],
                &[member, user_id.to_string()],
            )
            .await?;
        Ok(went_offline == 1)
    }

    async fn get(&self, user_ids: &[UserId]) -> Result<BTreeMap<UserId, PresenceInfo>, PortError> {
        if user_ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let answer = self.shared.live_sessions_and_last_seen(user_ids).await?;
        let presence = user_ids
            .iter()
            .zip(answer.chunks(2))
            .map(|(user_id, values)| {
                let last_seen = match values[1] {
                    millis if millis >= 0 => Utc.timestamp_millis_opt(millis).single(),
                    _ => None,
                };
                let info = PresenceInfo {
                    online: values[0] > 0,
                    last_seen,
                };
                (user_id.clone(), info)
            })
            .collect();
        Ok(presence)
    }

    async fn session_count(&self, user_id: &UserId) -> Result<usize, PortError> {
        let answer = self
            .shared
            .live_sessions_and_last_seen(std::slice::from_ref(user_id))
            .await?;
        Ok(usize::try_from(answer[0]).unwrap_or(0))
    }
}
