//! [`RedisClient`]: the pooled connections every adapter uses, with a deadline on every command,
//! one error mapping onto `PortError`, and Lua scripts run by SHA with a fallback to `EVAL`.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_redis::redis::{self, FromRedisValue, RedisError};
use deadpool_redis::{Manager, Pool, PoolError, Runtime, Timeouts};
use ports::{During, PortError, Service};

use super::config::RedisConfig;

/// A Lua script, loaded once per Redis (by `SCRIPT LOAD`) and then run by SHA.
pub(crate) struct LuaScript {
    name: &'static str,
    body: &'static str,
    sha: Mutex<Option<String>>,
}

impl LuaScript {
    pub(crate) const fn new(name: &'static str, body: &'static str) -> Self {
        Self {
            name,
            body,
            sha: Mutex::new(None),
        }
    }

    fn sha(&self) -> Option<String> {
        self.sha
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn remember(&self, sha: String) {
        *self
            .sha
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sha);
    }
}

/// Multiplexed connections to one Redis, one per thread that sends commands (made by a deadpool
/// pool, then kept: concurrent commands of a thread are pipelined on its connection), plus the
/// settings of the adapters over it.
///
/// A connection is taken out of the pool and kept: deadpool recycles a connection on every
/// checkout with an `UNWATCH` + `PING` round trip, which doubled the commands Redis served.
/// One per thread: a connection's driver task runs on the runtime that made it, so with one
/// connection per node every command of a conversation actor crossed to the thread driving it
/// and its answer crossed back (two thread wake-ups per round trip, five round trips per
/// one-to-one send in a cluster). A connection that fails is dropped on every thread (a generation
/// count): the next command of each thread makes a new one.
#[derive(Clone)]
pub struct RedisClient {
    pool: Pool,
    connections: Arc<Connections>,
    config: Arc<RedisConfig>,
}

/// The identity of a client and its clones (the key of their per-thread connections), and the
/// generation of those connections: a failure moves it on.
#[derive(Default)]
struct Connections {
    generation: AtomicU64,
}

/// A thread's connection of one client, of the generation it was made in.
struct ThreadConnection {
    client: Weak<Connections>,
    generation: u64,
    connection: redis::aio::MultiplexedConnection,
}

thread_local! {
    /// This thread's connections, one per live client (a handful per process).
    static THREAD_CONNECTIONS: RefCell<Vec<ThreadConnection>> = const { RefCell::new(Vec::new()) };
}

impl Connections {
    fn is(&self, other: &Weak<Connections>) -> bool {
        std::ptr::eq(self, other.as_ptr())
    }

    /// This thread's connection of the current generation, if it has one.
    fn of_this_thread(&self) -> Option<redis::aio::MultiplexedConnection> {
        let generation = self.generation.load(Ordering::Acquire);
        THREAD_CONNECTIONS.with_borrow(|held| {
            held.iter()
                .find(|held| self.is(&held.client) && held.generation == generation)
                .map(|held| held.connection.clone())
        })
    }

    /// Keeps `connection` as this thread's (made in `generation`), dropping the thread's older
    /// one and those of clients that are gone.
    fn keep_for_this_thread(
        self: &Arc<Self>,
        generation: u64,
        connection: redis::aio::MultiplexedConnection,
    ) {
        THREAD_CONNECTIONS.with_borrow_mut(|held| {
            held.retain(|held| held.client.strong_count() > 0 && !self.is(&held.client));
            held.push(ThreadConnection {
                client: Arc::downgrade(self),
                generation,
                connection,
            });
        });
    }

    /// Every thread's connection is dropped before its next command.
    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// Builds the pool; connects lazily, so this succeeds while Redis is down (a bad URL fails).
    pub fn new(config: RedisConfig) -> Result<Self, PortError> {
        let connection_config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout));
        let manager = Manager::new_with_config(config.url.as_str(), connection_config)
            .map_err(|error| bad_url(&config, error))?;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(config.command_timeout),
                create: Some(config.connect_timeout),
                recycle: Some(config.command_timeout),
            })
            .build()
            .map_err(|error| PortError::internal(During::new("redis pool", error)))?;
        Ok(Self {
            pool,
            connections: Arc::default(),
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Whether `other` is a clone of this client: the two share their connections.
    pub fn shares_connection_with(&self, other: &RedisClient) -> bool {
        Arc::ptr_eq(&self.connections, &other.connections)
    }

    /// `prefix` + `suffix`.
    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.config.key_prefix)
    }

    /// This thread's connection, made when it has none.
    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, PortError> {
        if let Some(connection) = self.connections.of_this_thread() {
            return Ok(connection);
        }
        let generation = self.connections.generation.load(Ordering::Acquire);
        let made = deadpool_redis::Connection::take(self.pool.get().await.map_err(pool_error)?);
        // Kept for the thread this task runs on now (a task of a multi-threaded runtime may
        // have moved while connecting: the connection still works from any thread).
        self.connections
            .keep_for_this_thread(generation, made.clone());
        Ok(made)
    }

    /// Drops the connections (one failed); each thread's next command makes a new one.
    fn forget_connection(&self) {
        self.connections.forget_all();
    }

    /// Runs `work` on this thread's connection within the command timeout.
    pub(crate) async fn run<T, F, Fut>(&self, work: F) -> Result<T, PortError>
    where
        F: FnOnce(redis::aio::MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let deadline = self.config.command_timeout;
        let attempt = async {
            let connection = self.connection().await?;
            work(connection).await.map_err(|error| {
                if error.is_unrecoverable_error()
                    || error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_timeout()
                {
                    self.forget_connection();
                }
                redis_error(error)
            })
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => {
                self.forget_connection();
                Err(timed_out(deadline))
            }
        }
    }

    /// Runs one command (within the command timeout, errors mapped like every adapter's).
    pub async fn query<T: FromRedisValue>(&self, command: redis::Cmd) -> Result<T, PortError> {
        self.run(|mut connection| async move { command.query_async(&mut connection).await })
            .await
    }

    /// Runs a pipeline (one round trip).
    pub(crate) async fn pipeline<T: FromRedisValue>(
        &self,
        pipeline: redis::Pipeline,
    ) -> Result<T, PortError> {
        self.run(|mut connection| async move { pipeline.query_async(&mut connection).await })
            .await
    }

    /// Runs `script` with `keys` and `args`: `EVALSHA` when its SHA is known, `SCRIPT LOAD` the
    /// first time, and `EVAL` when Redis forgot it (a restart), all within one timeout.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        keys: &[String],
        args: &[String],
    ) -> Result<T, PortError> {
        self.run(|mut connection| async move {
            let sha = match script.sha() {
                Some(sha) => sha,
                None => {
                    let sha: String = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(script.body)
                        .query_async(&mut connection)
                        .await?;
                    script.remember(sha.clone());
                    sha
                }
            };
            let by_sha = redis::cmd("EVALSHA")
                .arg(&sha)
                .arg(keys.len())
                .arg(keys)
                .arg(args)
                .query_async(&mut connection)
                .await;
            match by_sha {
                Err(error)
                    if error.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    redis::cmd("EVAL")
                        .arg(script.body)
                        .arg(keys.len())
                        .arg(keys)
                        .arg(args)
                        .query_async(&mut connection)
                        .await
                }
                other => other,
            }
        })
        .await
        .map_err(|error| match error {
            PortError::Rejected { service, source } => PortError::rejected(
                service,
                During::new(format!("script {}", script.name), source),
            ),
            other => other,
        })
    }

    /// Whether Redis answers `PING` within the command timeout.
    pub async fn ping(&self) -> Result<(), PortError> {
        let answer: String = self.query(redis::cmd("PING")).await?;
        if answer == "PONG" {
            Ok(())
        } else {
            Err(PortError::rejected(
                Service::Redis,
                format!("unexpected PING answer {answer}"),
            ))
        }
    }

    /// [`RedisClient::ping`] as a readiness flag.
    pub async fn is_ready(&self) -> bool {
        self.ping().await.is_ok()
    }
}

/// A URL the redis client does not accept: a setting retrying does not fix.
pub(crate) fn bad_url(config: &RedisConfig, error: RedisError) -> PortError {
    let step = format!("bad redis url {}", config.redacted_url());
    PortError::rejected(Service::Redis, During::new(step, error))
}

fn timed_out(deadline: Duration) -> PortError {
    PortError::unavailable(Service::Redis, format!("no answer within {deadline:?}"))
}

fn pool_error(error: PoolError) -> PortError {
    match error {
        PoolError::Backend(error) => redis_error(error),
        PoolError::Timeout(kind) => {
            PortError::unavailable(Service::Redis, format!("pool timeout ({kind:?})"))
        }
        other => PortError::unavailable(Service::Redis, During::new("pool", other)),
    }
}

/// Connection trouble and a Redis that cannot serve right now are `Unavailable` (retryable);
/// everything else (a script error, a reply of the wrong type) is `Rejected`.
pub(crate) fn redis_error(error: RedisError) -> PortError {
    use redis::{ErrorKind, ServerErrorKind};
    let unavailable = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::Io
                | ErrorKind::AuthenticationFailed
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        )
        || matches!(
            error.code(),
            Some("OOM" | "BUSY" | "NOREPLICAS" | "MISCONF")
        );
    if unavailable {
        PortError::unavailable(Service::Redis, error)
    } else {
        PortError::rejected(Service::Redis, error)
    }
}

/// Decodes JSON read from Redis; bad data is `Corrupt`.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, PortError> {
    serde_json::from_slice(bytes).map_err(|error| PortError::corrupt(Service::Redis, what, error))
}

pub(crate) fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<String, PortError> {
    serde_json::to_string(value)
        .map_err(|error| PortError::internal(During::new(format!("encoding {what}"), error)))
}

/// A key part that cannot run into the next one: `{len}:{value}`.
pub(crate) fn framed(value: &str) -> String {
    format!("{}:{value}", value.len())
}
