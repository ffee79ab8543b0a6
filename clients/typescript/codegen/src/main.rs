//! Writes `clients/typescript/src/generated/wire.ts`: the TypeScript form of every protocol type
//! of the `wire` crate (objects, operation arguments and results, events, error and close codes),
//! produced by `ts-rs` from the Rust types themselves (ADR 0005).
//!
//! `cargo run -p wire-typescript` regenerates the file; the test below fails while the committed
//! file differs from what the wire types give, so a wire change cannot leave the SDK behind.

use std::path::PathBuf;

use ts_rs::{Config, TS};
use wire::events::{ServerEvent, TypingState, Welcome};
use wire::ops::{self, Op};
use wire::search;
use wire::{
    AttachmentId, AttachmentRef, ClientMsgId, CloseCode, Conversation, ConversationId,
    ConversationKind, ErrorBody, ErrorCode, ForwardedFrom, Message, MessageId, NodeId, Seq,
    SessionId, UserId,
};

const HEADER: &str = "// Generated from the Rust `wire` crate by `cargo run -p wire-typescript`.\n\
// Do not edit: change the wire types and regenerate (a test fails while this file is stale).\n";

/// Where the generated file lives, relative to this crate.
fn output_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../src/generated/wire.ts")
}

/// Seqs and counters fit in a JS number (at most 2^53 - 1 on the wire).
fn config() -> Config {
    Config::new().with_large_int("number")
}

/// `export type Name = ...;` for one wire type.
fn declare<T: TS>(config: &Config) -> String {
    format!("export {}\n", T::decl(config))
}

macro_rules! declarations {
    ($config:expr; $($type:ty),* $(,)?) => {
        [$(declare::<$type>($config)),*].concat()
    };
}

fn type_declarations(config: &Config) -> String {
    declarations!(config;
        UserId, ConversationId, MessageId, ClientMsgId, NodeId, SessionId, Seq, AttachmentId,
        ConversationKind, Conversation, ForwardedFrom, AttachmentRef, Message,
        ErrorCode, ErrorBody, Welcome, TypingState, ServerEvent,
        ops::CreateConversationArgs, ops::ConversationRef, ops::ListConversationsArgs,
        ops::UpdateConversationArgs, ops::MembersArgs, ops::SendArgs, ops::EditArgs,
        ops::MessageRef, ops::ForwardArgs, ops::ReactionArgs, ops::HistoryArgs, ops::SyncArgs,
        ops::ReceiptArgs, ops::PresenceGetArgs, ops::Empty, ops::ConversationResult,
        ops::ConversationListItem, ops::ConversationListResult, ops::SendAck,
        ops::MessageResult, ops::HistoryResult, ops::SyncResult, ops::PresenceInfo,
        ops::PresenceResult, search::SearchArgs, search::SearchHit, search::SearchResult,
    )
}

/// The argument and result type names of each operation. The match is exhaustive, so a new
/// operation does not compile until it is listed here.
fn op_types(op: Op, config: &Config) -> (String, String) {
    fn pair<A: TS, R: TS>(config: &Config) -> (String, String) {
        (A::name(config), R::name(config))
    }
    use ops::*;
    match op {
        Op::Ping => pair::<Empty, Empty>(config),
        Op::ConversationCreate => pair::<CreateConversationArgs, ConversationResult>(config),
        Op::ConversationGet => pair::<ConversationRef, ConversationResult>(config),
        Op::ConversationList => pair::<ListConversationsArgs, ConversationListResult>(config),
        Op::ConversationUpdate => pair::<UpdateConversationArgs, ConversationResult>(config),
        Op::ConversationAddMembers | Op::ConversationRemoveMembers => {
            pair::<MembersArgs, ConversationResult>(config)
        }
        Op::ConversationLeave | Op::TypingStart | Op::TypingStop => {
            pair::<ConversationRef, Empty>(config)
        }
        Op::MessageSend => pair::<SendArgs, SendAck>(config),
        Op::MessageEdit => pair::<EditArgs, MessageResult>(config),
        Op::MessageDelete => pair::<MessageRef, Empty>(config),
        Op::MessageForward => pair::<ForwardArgs, SendAck>(config),
        Op::ReactionAdd | Op::ReactionRemove => pair::<ReactionArgs, MessageResult>(config),
        Op::HistoryGet => pair::<HistoryArgs, HistoryResult>(config),
        Op::Sync => pair::<SyncArgs, SyncResult>(config),
        Op::ReceiptDelivered | Op::ReceiptRead => pair::<ReceiptArgs, Empty>(config),
        Op::PresenceGet => pair::<PresenceGetArgs, PresenceResult>(config),
        Op::SearchMessages => pair::<search::SearchArgs, search::SearchResult>(config),
    }
}

/// `OpArgs` and `OpResults`: operation name -> type, for a typed `request()`.
fn op_tables(config: &Config) -> String {
    let rows: Vec<(&str, String, String)> = Op::ALL
        .iter()
        .map(|op| {
            let (args, result) = op_types(*op, config);
            (op.as_str(), args, result)
        })
        .collect();
    let table = |name: &str, pick: &dyn Fn(&(&str, String, String)) -> String| {
        let body: String = rows
            .iter()
            .map(|row| format!("  \"{}\": {};\n", row.0, pick(row)))
            .collect();
        format!("export interface {name} {{\n{body}}}\n")
    };
    let names: String = rows
        .iter()
        .map(|row| format!("  \"{}\",\n", row.0))
        .collect();
    [
        format!("export const OPS = [\n{names}] as const;\n"),
        "export type OpName = (typeof OPS)[number];\n".to_owned(),
        table("OpArgs", &|row| row.1.clone()),
        table("OpResults", &|row| row.2.clone()),
    ]
    .concat()
}

/// Error codes as a list, close codes as a name -> number map, and the protocol version.
fn constants() -> String {
    let errors: String = ErrorCode::ALL
        .iter()
        .map(|code| format!("  \"{}\",\n", code.as_str()))
        .collect();
    let closes: String = CloseCode::ALL
        .iter()
        .map(|close| format!("  {close:?}: {},\n", close.code()))
        .collect();
    format!(
        "export const ERROR_CODES = [\n{errors}] as const;\n\
         export const CLOSE_CODES = {{\n{closes}}} as const;\n\
         export const PROTOCOL_VERSION = {};\n",
        wire::PROTOCOL_VERSION
    )
}

/// The whole generated file.
fn generate() -> String {
    let config = config();
    [
        HEADER.to_owned(),
        type_declarations(&config),
        op_tables(&config),
        constants(),
    ]
    .join("\n")
}

fn main() -> std::io::Result<()> {
    let path = output_path();
    std::fs::write(&path, generate())?;
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_typescript_types_match_the_wire_types() {
        let committed = std::fs::read_to_string(output_path()).unwrap_or_default();
        assert!(
            committed == generate(),
            "clients/typescript/src/generated/wire.ts is stale: run `cargo run -p wire-typescript` \
             and commit the result"
        );
    }

    #[test]
    fn every_operation_has_its_types() {
        let tables = op_tables(&config());
        for op in Op::ALL {
            assert!(tables.contains(&format!("\"{}\": ", op.as_str())), "{op:?}");
        }
    }
}
