//! The `[retention]` section (protocol v1.1, "Compliance"): how long conversations keep their
//! messages by default, and how often the retention sweep runs.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, Settings};

/// Longest retention, in days, that the default or a conversation may have (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Days a message is kept when its conversation has no retention of its own; 0: forever.
    pub default_days: u32,
    /// How long one retention day is, in seconds: 86400. For tests only (a test sets 1 so that
    /// "older than N days" takes seconds); never change it in production.
    pub day_seconds: u64,
    pub sweep_interval_secs: u64,
    /// Days the embedded log (standalone, Redis-only cluster) keeps events; 0: forever.
    pub embedded_log_days: u32,
}

pub(super) fn validate_retention(settings: &Settings) -> Result<(), ConfigError> {
    let retention = &settings.retention;
    if retention.default_days > MAX_RETENTION_DAYS {
        return Err(invalid(
            "retention.default_days",
            format!("must be at most {MAX_RETENTION_DAYS} (0: forever)"),
        ));
    }
    if retention.embedded_log_days > MAX_RETENTION_DAYS {
        return Err(invalid(
            "retention.embedded_log_days",
            format!("must be at most {MAX_RETENTION_DAYS} (0: forever)"),
        ));
    }
    if !(1..=86_400).contains(&retention.day_seconds) {
        return Err(invalid(
            "retention.day_seconds",
            "must be between 1 and 86400 (86400 outside tests)",
        ));
    }
    if !(1..=7 * 24 * 3600).contains(&retention.sweep_interval_secs) {
        return Err(invalid(
            "retention.sweep_interval_secs",
            "must be between 1 and 604800 (7 days)",
        ));
    }
    Ok(())
}
