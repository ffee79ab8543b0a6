//! [`MongoConfig`]: where MongoDB is, which database, and how long anything may take.

use std::time::Duration;

/// Connection and timing settings of [`MongoStore`](super::MongoStore).
#[derive(Clone)]
pub struct MongoConfig {
    /// `mongodb://host:port/` (credentials, if any, are redacted in `Debug`).
    pub uri: String,
    /// The database holding `messages`, `conversations` and `participants`.
    pub database: String,
    /// Upper bound for finding a usable server; a dead MongoDB fails callers with
    /// `PortError::Unavailable` after this, never hangs them.
    pub server_selection_timeout: Duration,
    /// Upper bound for opening one connection.
    pub connect_timeout: Duration,
    /// Upper bound for one operation (a whole bulk command included), server selection
    /// included. Larger than the others: a batch of writes is one operation.
    pub operation_timeout: Duration,
    /// Upper bound for the readiness ping.
    pub ping_timeout: Duration,
    /// Ask for a journaled write (`j: true`) besides `w: majority`.
    pub journal: bool,
}

impl MongoConfig {
    /// The defaults for `uri` and `database`: 2 s to select a server or connect, 5 s per
    /// operation, 1 s per ping, majority + journaled writes.
    pub fn new(uri: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            database: database.into(),
            server_selection_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(1),
            journal: true,
        }
    }

    /// Sets server selection, connect and operation timeouts at once (tests of a dead server).
    pub fn with_timeouts(mut self, timeout: Duration) -> Self {
        self.server_selection_timeout = timeout;
        self.connect_timeout = timeout;
        self.operation_timeout = timeout;
        self.ping_timeout = timeout;
        self
    }

    /// The URI with any password replaced by `***`.
    pub fn redacted_uri(&self) -> String {
        match (self.uri.find("://"), self.uri.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}***{}", &self.uri[..scheme_end + 3], &self.uri[at..])
            }
            _ => self.uri.clone(),
        }
    }
}

impl std::fmt::Debug for MongoConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MongoConfig")
            .field("uri", &self.redacted_uri())
            .field("database", &self.database)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("ping_timeout", &self.ping_timeout)
            .field("journal", &self.journal)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_credentials() {
        let config = MongoConfig::new("mongodb://user:secret@127.0.0.1:27017/", "parley");
        let printed = format!("{config:?}");
        assert!(!printed.contains("secret"), "{printed}");
        assert!(
            printed.contains("mongodb://***@127.0.0.1:27017/"),
            "{printed}"
        );
    }
}
