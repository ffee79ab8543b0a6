//! Deadlines, the error mapping onto `PortError`, and bulk write commands (one round trip for
//! many statements, per-statement errors reported back).

use std::future::IntoFuture;
use std::time::Duration;

use mongo_documents::integer;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{self, Error as MongoError, ErrorKind, WriteFailure};
use mongodb::Database;
use ports::{PortError, Service};

/// Duplicate key: a unique index refused an insert (for a guarded upsert: a newer version is
/// stored).
pub(super) const DUPLICATE_KEY: i32 = 11000;

/// Runs `operation` within `deadline`; a timeout is `Unavailable`.
pub(super) async fn within<T, Fut>(deadline: Duration, operation: Fut) -> Result<T, PortError>
where
    Fut: IntoFuture<Output = Result<T, MongoError>>,
{
    match tokio::time::timeout(deadline, operation).await {
        Ok(result) => result.map_err(mongo_error),
        Err(_) => Err(PortError::unavailable(
            Service::MongoDb,
            format!("no answer within {deadline:?}"),
        )),
    }
}

/// Server codes that mean "not now" (elections, shutdown, write concern trouble).
const RETRYABLE_CODES: [i32; 14] = [
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64, 100,
];

/// Connection trouble and a server that cannot serve right now are `Unavailable` (retryable);
/// everything else (a refused command, bad data) is `Rejected`.
pub(super) fn mongo_error(error: MongoError) -> PortError {
    let code = match &*error.kind {
        ErrorKind::Command(command) => Some(command.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => Some(concern.code),
        _ => None,
    };
    let unavailable = matches!(
        &*error.kind,
        ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::Io(_)
            | ErrorKind::Shutdown
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Write(WriteFailure::WriteConcernError(_))
    ) || [
        error::RETRYABLE_WRITE_ERROR,
        error::RETRYABLE_ERROR,
        error::SYSTEM_OVERLOADED_ERROR,
        error::TRANSIENT_TRANSACTION_ERROR,
    ]
    .iter()
    .any(|label| error.contains_label(label))
        || code.is_some_and(|code| RETRYABLE_CODES.contains(&code));
    if unavailable {
        PortError::unavailable(Service::MongoDb, error)
    } else {
        PortError::rejected(Service::MongoDb, error)
    }
}

/// One refused statement of a bulk command.
#[derive(Debug, Clone)]
pub(super) struct StatementError {
    pub(super) index: usize,
    pub(super) code: i32,
    pub(super) message: String,
}

/// Sends `statements` as one unordered `update` (or `delete`, per `command`) command and
/// returns the statements the server refused. A write concern error is `Unavailable`: the
/// write may not be durable.
pub(super) async fn bulk(
    database: &Database,
    deadline: Duration,
    write_concern: &Document,
    command: BulkCommand,
    collection: &str,
    statements: Vec<Document>,
) -> Result<Vec<StatementError>, PortError> {
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    let (verb, list) = match command {
        BulkCommand::Update => ("update", "updates"),
        BulkCommand::Delete => ("delete", "deletes"),
    };
    let body = doc! {
        verb: collection,
        list: statements,
        "ordered": false,
        "writeConcern": write_concern.clone(),
    };
    let response = within(deadline, database.run_command(body)).await?;
    if let Ok(concern) = response.get_document("writeConcernError") {
        return Err(PortError::unavailable(
            Service::MongoDb,
            format!("write concern on {collection}: {concern}"),
        ));
    }
    let mut refused = Vec::new();
    if let Ok(errors) = response.get_array("writeErrors") {
        for error in errors {
            let Bson::Document(error) = error else {
                return Err(PortError::rejected(
                    Service::MongoDb,
                    format!("malformed write error {error}"),
                ));
            };
            let index = integer(error.get("index"))
                .and_then(|index| usize::try_from(index).ok())
                .ok_or_else(|| {
                    PortError::rejected(
                        Service::MongoDb,
                        format!("write error without index {error}"),
                    )
                })?;
            refused.push(StatementError {
                index,
                code: integer(error.get("code")).unwrap_or(0) as i32,
                message: error.get_str("errmsg").unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(refused)
}

#[derive(Debug, Clone, Copy)]
pub(super) enum BulkCommand {
    Update,
    Delete,
}

/// Fails with `Rejected` on any refusal other than a duplicate key.
pub(super) fn only_duplicates(
    collection: &str,
    refused: &[StatementError],
) -> Result<(), PortError> {
    match refused.iter().find(|error| error.code != DUPLICATE_KEY) {
        None => Ok(()),
        Some(error) => Err(rejected(&format!("write to {collection}"), error)),
    }
}

/// Fails with `Rejected` on any refusal; `what` names the write (`"delete from participants"`).
pub(super) fn none_refused(what: &str, refused: &[StatementError]) -> Result<(), PortError> {
    match refused.first() {
        None => Ok(()),
        Some(error) => Err(rejected(what, error)),
    }
}

fn rejected(what: &str, error: &StatementError) -> PortError {
    PortError::rejected(
        Service::MongoDb,
        format!("{what} refused (code {}): {}", error.code, error.message),
    )
}

impl super::MongoStore {
    /// Sends `statements` as one bulk `command` on `collection`, failing on any refusal;
    /// `what` names the write in the error ("purge on messages refused …").
    pub(super) async fn write_all(
        &self,
        what: &str,
        command: BulkCommand,
        collection: &str,
        statements: Vec<Document>,
    ) -> Result<(), PortError> {
        let refused = bulk(
            &self.database,
            self.config.operation_timeout,
            &self.write_concern,
            command,
            collection,
            statements,
        )
        .await?;
        none_refused(&format!("{what} on {collection}"), &refused)
    }
}
