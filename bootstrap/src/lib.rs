//! What Parley's two binaries, `parley-server` and `ingest`, share to start and to stop.
//!
//! # Layout
//! - [`settings`]: the one configuration file (`config/parley.toml`, built in as [`DEFAULTS`])
//!   and its layered loader [`load_layers`]: defaults, an optional file, `PARLEY__SECTION__KEY`
//!   environment variables ([`parley_env`]).
//! - [`secret`]: [`Secret`], a string setting that never shows in logs.
//! - [`logging`]: the `[log]` section ([`LogSettings`]) and [`init_logging`], the one logging
//!   setup of both binaries.
//! - [`signals`]: [`StopSignals`] (SIGTERM and SIGINT, one after the other) and
//!   [`wait_for_stop_signal`] (the first of them).
//! - [`probe`]: the `probe URL` health check both binaries offer to container runtimes.
//! - [`readiness`]: [`LastCheck`], the last dependency check `/readyz` answers from, and
//!   [`check_periodically`], the background loop that refreshes it.

pub mod logging;
pub mod probe;
pub mod readiness;
pub mod secret;
pub mod settings;
pub mod signals;

pub use logging::{init_logging, LogFormat, LogSettings};
pub use readiness::{check_periodically, LastCheck};
pub use secret::Secret;
pub use settings::{load_layers, parley_env, DEFAULTS, ENV_PREFIX};
pub use signals::{wait_for_stop_signal, StopSignal, StopSignals};
