//! The `[log]` section ([`LogSettings`]) and [`init_logging`], the one logging setup of
//! `parley-server` and `ingest`.

use std::io;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// `[log]`: what the binaries log, and how.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr with `[log]`'s filter and format; `RUST_LOG` overrides the filter.
pub fn init_logging(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match settings.format {
        LogFormat::Json => subscriber.json().init(),
        LogFormat::Text => subscriber.init(),
    }
}
