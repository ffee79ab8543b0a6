//! Helpers shared by the integration tests (also by `ingest/tests/binary.rs`, through `#[path]`).

pub mod free_ports;
pub mod redis;
pub mod seaweedfs;
pub mod secantus;
pub mod tansu;
