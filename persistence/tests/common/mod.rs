//! Helpers shared by the integration tests.

pub mod redis;
pub mod secantus;
pub mod tansu;
