//! Ports for the private servers tests start, chosen below the kernel's ephemeral range
//! (`net.ipv4.ip_local_port_range`, 32768 and up by default): a port the kernel hands out for
//! `bind(0)` lies in that range, where any outgoing connection of a parallel test (a Redis
//! client, a WebSocket, an HTTP request) may take it between the check and the server's own
//! bind. That happened to SeaweedFS's gRPC ports in the chaos run and the soak.
//! (Also compiled into `server`'s and `ingest`'s tests, through `#[path]`.)

// Every test crate that includes `common` compiles this; not every one uses all of it.
#![allow(dead_code)]

use std::net::TcpListener;

/// The lowest port handed out (above the usual fixed ports of services on a developer machine).
pub const LOWEST: u16 = 10_000;
/// One past the highest port handed out: the start of the default ephemeral range.
pub const EPHEMERAL_START: u16 = 32_768;

/// Whether nothing listens on `port` of 127.0.0.1 now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port nothing listens on right now, below the ephemeral range.
pub fn free_port() -> u16 {
    free_block(1, 0)
}

/// A base port `p` with `p..p + len` and, when `echo` is not 0, `p + echo..p + echo + len` all
/// free now and below the ephemeral range (SeaweedFS puts each gRPC port 10 000 above its HTTP
/// port).
pub fn free_block(len: u16, echo: u16) -> u16 {
    let span = EPHEMERAL_START - LOWEST - len - echo;
    for _ in 0..500 {
        let base = LOWEST + rand_below(u32::from(span)) as u16;
        let first = base..base + len;
        let echoed = (echo > 0).then(|| base + echo..base + echo + len);
        if first.chain(echoed.into_iter().flatten()).all(is_free) {
            return base;
        }
    }
    panic!("no free block of {len} ports below {EPHEMERAL_START}");
}

/// A random number below `bound` (each `RandomState` is seeded afresh).
fn rand_below(bound: u32) -> u32 {
    use std::hash::BuildHasher;
    (std::collections::hash_map::RandomState::new().hash_one(0u8) % u64::from(bound)) as u32
}
