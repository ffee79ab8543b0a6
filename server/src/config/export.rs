//! The `[export]` section (protocol v1.1 §18.2): how long an export's download URL stays valid.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, Settings};

/// Longest download URL validity, in seconds (7 days, the most S3 presigning allows).
pub const MAX_EXPORT_URL_TTL_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSettings {
    /// How long the `download_url` of a done export job stays valid, in seconds.
    pub download_url_ttl_secs: u64,
}

pub(super) fn validate_export(settings: &Settings) -> Result<(), ConfigError> {
    let ttl = settings.export.download_url_ttl_secs;
    if !(1..=MAX_EXPORT_URL_TTL_SECS).contains(&ttl) {
        return Err(invalid(
            "export.download_url_ttl_secs",
            format!("must be between 1 and {MAX_EXPORT_URL_TTL_SECS} (7 days)"),
        ));
    }
    Ok(())
}
