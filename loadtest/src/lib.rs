//! Parley's load-testing kit: the `parley-loadtest` generator, the `ws-ceiling` bare
//! broadcast server it measures Parley against, and the `fault-proxy` of the chaos run.
//!
//! # Layout
//! - [`scenario`]: scenario files (`loadtest/scenarios/*.toml`) and their overrides.
//! - [`net`]: source-address / URL spreading, WebSocket connect, a tiny HTTP client, `/proc`.
//! - [`client`]: one simulated user: its session, requests in flight, reconnect and `sync`.
//! - [`ledger`]: `--ledger`: every ack, abandoned send, final view and send answer of a run.
//! - [`outbox`]: a client's unacked sends, resent with the same `client_msg_id`, and its acks.
//! - [`tracker`]: per-conversation bookkeeping behind the exactly-once, in-order checks.
//! - [`stats`]: counters, HDR histograms, the progress line.
//! - [`run`]: the scenarios themselves (idle, fanout, chat, reconnect-storm) and the report.
//! - [`ceiling`]: the bare WebSocket broadcast server.
//! - [`ceiling_log`]: its durable variant's log (every frame fdatasync'd before it goes out).
//! - [`fault_proxy`]: the fault-injecting TCP proxy of the chaos run (`fault-proxy`).
//! - [`attachments`]: the `attachment-bench` phases (uploads and downloads through a node, and
//!   the storage's ceiling).
//! - [`export`]: the `export-bench` seed, RSS sampler and file check.
//!
//! Errors are `anyhow` throughout: this crate is an application whose errors end up printed.

pub mod attachments;
pub mod ceiling;
pub mod ceiling_log;
pub mod client;
pub mod cpu;
pub mod export;
pub mod fault_proxy;
pub mod ledger;
pub mod net;
pub mod outbox;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod tracker;
