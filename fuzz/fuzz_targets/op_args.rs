//! Every operation's arguments: a frame naming an operation decodes its `args` into that
//! operation's argument type without panicking, and what decodes survives a round trip
//! (encode, decode, encode gives the same JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wire::frames::{decode_args, decode_request, Request};
use wire::ops::*;

fn round_trip<T: Serialize + DeserializeOwned>(request: &Request) {
    let Ok(args) = decode_args::<T>(request) else {
        return;
    };
    let encoded = serde_json::to_value(&args).expect("decoded args encode");
    let again: T = serde_json::from_value(encoded.clone()).expect("encoded args decode");
    assert_eq!(serde_json::to_value(&again).expect("encode"), encoded);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(request) = decode_request(text) else {
        return;
    };
    let Some(op) = Op::parse(&request.op) else {
        return;
    };
    #[allow(unreachable_patterns)]
    match op {
        Op::Ping => round_trip::<Empty>(&request),
        Op::ConversationGet | Op::ConversationLeave | Op::TypingStart | Op::TypingStop => {
            round_trip::<ConversationRef>(&request)
        }
        Op::ConversationCreate => round_trip::<CreateConversationArgs>(&request),
        Op::ConversationList => round_trip::<ListConversationsArgs>(&request),
        Op::ConversationUpdate => round_trip::<UpdateConversationArgs>(&request),
        Op::ConversationAddMembers | Op::ConversationRemoveMembers => {
            round_trip::<MembersArgs>(&request)
        }
        Op::MessageSend => round_trip::<SendArgs>(&request),
        Op::MessageEdit => round_trip::<EditArgs>(&request),
        Op::MessageDelete => round_trip::<MessageRef>(&request),
        Op::MessageForward => round_trip::<ForwardArgs>(&request),
        Op::ReactionAdd | Op::ReactionRemove => round_trip::<ReactionArgs>(&request),
        Op::HistoryGet => round_trip::<HistoryArgs>(&request),
        Op::Sync => round_trip::<SyncArgs>(&request),
        Op::ReceiptDelivered | Op::ReceiptRead => round_trip::<ReceiptArgs>(&request),
        Op::PresenceGet => round_trip::<PresenceGetArgs>(&request),
        Op::SearchMessages => round_trip::<wire::search::SearchArgs>(&request),
        _ => {}
    }
});
