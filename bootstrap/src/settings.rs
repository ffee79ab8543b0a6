//! The one configuration file of Parley's binaries (`config/parley.toml`, built in as
//! [`DEFAULTS`]), loaded in layers: the defaults, then an optional file, then environment
//! variables `PARLEY__SECTION__KEY`. Each binary deserializes the sections it reads.

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;

/// Every setting with its default and comment: the file users copy.
pub const DEFAULTS: &str = include_str!("../../config/parley.toml");

/// Environment variables considered by [`load_layers`] start with this.
pub const ENV_PREFIX: &str = "PARLEY__";

/// Loads [`DEFAULTS`], then `file` if given, then the `PARLEY__*` entries of `env`, into `T`.
/// `list_keys` are keys whose environment value is a comma-separated list.
pub fn load_layers<T: DeserializeOwned>(
    file: Option<&Path>,
    env: &HashMap<String, String>,
    list_keys: &[&str],
) -> Result<T, config::ConfigError> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).required(true));
    }
    let mut environment = config::Environment::with_prefix("PARLEY")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(Some(env.clone()));
    // With a separator but no list keys, the config crate splits every value at commas.
    if !list_keys.is_empty() {
        environment = environment.list_separator(",");
        for key in list_keys {
            environment = environment.with_list_parse_key(key);
        }
    }
    builder.add_source(environment).build()?.try_deserialize()
}

/// The `PARLEY__*` variables of the process environment.
pub fn parley_env() -> HashMap<String, String> {
    std::env::vars()
        .filter(|(key, _)| key.starts_with(ENV_PREFIX))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::{LogFormat, LogSettings};

    #[derive(Debug, Deserialize)]
    struct LogOnly {
        log: LogSettings,
    }

    #[test]
    fn the_environment_overrides_the_built_in_defaults() {
        let defaults: LogOnly = load_layers(None, &HashMap::new(), &[]).expect("defaults");
        assert_eq!(defaults.log.format, LogFormat::Text);
        let env = HashMap::from([
            ("PARLEY__LOG__FORMAT".to_owned(), "json".to_owned()),
            ("OTHER__LOG__FORMAT".to_owned(), "text".to_owned()),
        ]);
        let overridden: LogOnly = load_layers(None, &env, &[]).expect("overridden");
        assert_eq!(overridden.log.format, LogFormat::Json);
    }
}
