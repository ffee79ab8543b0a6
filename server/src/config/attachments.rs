//! The `[attachments]` section (protocol v1.1): where the bytes go, what may be uploaded, and
//! how long URLs and unused uploads live.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, Secret, Settings};

/// Where attachment bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentStoreKind {
    /// Local files in standalone mode; off in cluster mode (local files are per node).
    Auto,
    /// Files under `storage.data_dir/blobs`, served by the node itself (standalone only).
    Local,
    /// An S3-compatible bucket (`s3_*` settings).
    S3,
    /// No attachments: uploads answer 404 and `welcome.data.features` omits them.
    Off,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentSettings {
    pub store: AttachmentStoreKind,
    pub max_bytes: u64,
    pub allowed_types: Vec<String>,
    pub upload_url_ttl_secs: u64,
    pub download_url_ttl_secs: u64,
    pub orphan_ttl_secs: u64,
    pub sweep_interval_secs: u64,
    pub public_url: String,
    pub s3_endpoint: String,
    pub s3_public_endpoint: String,
    pub s3_bucket: String,
    pub s3_region: String,
    pub s3_access_key: Secret,
    pub s3_secret_key: Secret,
    pub s3_timeout_ms: u64,
}

/// The store a node actually uses, after `auto` is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectiveStore {
    Local,
    S3,
    Off,
}

impl AttachmentSettings {
    pub fn upload_url_ttl(&self) -> Duration {
        Duration::from_secs(self.upload_url_ttl_secs)
    }

    pub fn download_url_ttl(&self) -> Duration {
        Duration::from_secs(self.download_url_ttl_secs)
    }

    pub fn orphan_ttl(&self) -> Duration {
        Duration::from_secs(self.orphan_ttl_secs)
    }

    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs)
    }

    /// Whether `content_type` (parameters such as `; charset=` ignored, case-insensitive) is
    /// allowed: an entry is a type (`image/png`) or a family (`image/*`).
    pub fn allows_type(&self, content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let Some((family, _)) = essence.split_once('/') else {
            return false;
        };
        self.allowed_types.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            allowed == essence || allowed.strip_suffix("/*") == Some(family)
        })
    }
}

impl Settings {
    /// Where this node keeps attachments.
    pub fn attachment_store(&self) -> EffectiveStore {
        match self.attachments.store {
            AttachmentStoreKind::Local => EffectiveStore::Local,
            AttachmentStoreKind::S3 => EffectiveStore::S3,
            AttachmentStoreKind::Off => EffectiveStore::Off,
            AttachmentStoreKind::Auto if self.redis.roles().is_some() => EffectiveStore::Off,
            AttachmentStoreKind::Auto => EffectiveStore::Local,
        }
    }
}

pub(super) fn validate_attachments(settings: &Settings) -> Result<(), ConfigError> {
    let attachments = &settings.attachments;
    if attachments.max_bytes == 0 {
        return Err(invalid("attachments.max_bytes", "must be at least 1"));
    }
    for (key, secs) in [
        (
            "attachments.upload_url_ttl_secs",
            attachments.upload_url_ttl_secs,
        ),
        (
            "attachments.download_url_ttl_secs",
            attachments.download_url_ttl_secs,
        ),
        ("attachments.orphan_ttl_secs", attachments.orphan_ttl_secs),
        (
            "attachments.sweep_interval_secs",
            attachments.sweep_interval_secs,
        ),
    ] {
        if !(1..=7 * 24 * 3600).contains(&secs) {
            return Err(invalid(key, "must be between 1 and 604800 (7 days)"));
        }
    }
    if attachments.store == AttachmentStoreKind::Local && settings.redis.roles().is_some() {
        return Err(invalid(
            "attachments.store",
            "cannot be \"local\" in cluster mode (each node would see only its own files): use \"s3\"",
        ));
    }
    if settings.attachment_store() == EffectiveStore::S3 {
        for (key, value) in [
            ("attachments.s3_endpoint", attachments.s3_endpoint.as_str()),
            ("attachments.s3_bucket", attachments.s3_bucket.as_str()),
            ("attachments.s3_region", attachments.s3_region.as_str()),
        ] {
            if value.is_empty() {
                return Err(invalid(key, "must be set when attachments.store = \"s3\""));
            }
        }
        let is_http = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        if !is_http(&attachments.s3_endpoint) {
            return Err(invalid(
                "attachments.s3_endpoint",
                "must be an http(s):// URL",
            ));
        }
        let public = &attachments.s3_public_endpoint;
        if !public.is_empty() && !is_http(public) {
            return Err(invalid(
                "attachments.s3_public_endpoint",
                "must be empty or an http(s):// URL",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{load_with_env, Loaded};
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        load_with_env(
            None,
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string())),
        )
    }

    #[test]
    fn auto_is_local_standalone_and_off_in_a_cluster() {
        let standalone = load(&[]).unwrap().settings;
        assert_eq!(standalone.attachment_store(), EffectiveStore::Local);
        let redis = ("PARLEY__REDIS__URL", "redis://127.0.0.1:6390/0");
        assert_eq!(
            load(&[redis]).unwrap().settings.attachment_store(),
            EffectiveStore::Off
        );
        let local = ("PARLEY__ATTACHMENTS__STORE", "local");
        let error = load(&[redis, local]).unwrap_err().to_string();
        assert!(error.contains("attachments.store"), "{error}");
        let s3 = ("PARLEY__ATTACHMENTS__STORE", "s3");
        let error = load(&[s3]).unwrap_err().to_string();
        assert!(error.contains("attachments.s3_endpoint"), "{error}");
    }

    #[test]
    fn types_match_exactly_or_by_family() {
        let settings = load(&[]).unwrap().settings.attachments;
        assert!(settings.allows_type("image/png"));
        assert!(settings.allows_type("IMAGE/PNG; charset=binary"));
        assert!(settings.allows_type("application/pdf"));
        assert!(!settings.allows_type("application/x-msdownload"));
        assert!(!settings.allows_type("image"));
    }
}
