//! The `[export]` section (protocol v1.1 §18.2): how long an export's download URL stays valid,
//! and how long its file is kept.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, Settings};

/// Longest download URL validity, in seconds (7 days, the most S3 presigning allows).
pub const MAX_EXPORT_URL_TTL_SECS: u64 = 7 * 24 * 3600;
/// Longest time an export file may be kept, in seconds (10 years).
pub const MAX_EXPORT_RETAIN_SECS: u64 = 10 * 365 * 24 * 3600;
/// The expiry sweep runs this often, or every `retain_files_secs` when that is shorter.
const EXPIRY_SWEEP_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSettings {
    /// How long the `download_url` of a done export job stays valid, in seconds.
    pub download_url_ttl_secs: u64,
    /// How long an export's file is kept after it was written, in seconds; 0: forever.
    pub retain_files_secs: u64,
}

/// Whether export files expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFiles {
    KeptForever,
    /// Deleted once this old, by a sweep running every `sweep_every`.
    Expire {
        after: Duration,
        sweep_every: Duration,
    },
}

impl ExportSettings {
    pub fn files(&self) -> ExportFiles {
        match self.retain_files_secs {
            0 => ExportFiles::KeptForever,
            secs => {
                let after = Duration::from_secs(secs);
                ExportFiles::Expire {
                    after,
                    sweep_every: after.min(EXPIRY_SWEEP_EVERY),
                }
            }
        }
    }
}

pub(super) fn validate_export(settings: &Settings) -> Result<(), ConfigError> {
    let ttl = settings.export.download_url_ttl_secs;
    if !(1..=MAX_EXPORT_URL_TTL_SECS).contains(&ttl) {
        return Err(invalid(
            "export.download_url_ttl_secs",
            format!("must be between 1 and {MAX_EXPORT_URL_TTL_SECS} (7 days)"),
        ));
    }
    if settings.export.retain_files_secs > MAX_EXPORT_RETAIN_SECS {
        return Err(invalid(
            "export.retain_files_secs",
            format!("must be between 0 (forever) and {MAX_EXPORT_RETAIN_SECS} (10 years)"),
        ));
    }
    Ok(())
}
