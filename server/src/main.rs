//! `parley-server`: one Parley node.
//!
//! # Layout
//! - `config`: settings (defaults file, `--config`, `PARLEY__*` environment), validation.
//! - `auth`: JWT issue/verify and API-key checks.
//! - `adapters`: the adapters behind the ports (standalone or Redis cluster mode).
//! - `app`: wiring of adapters, node, background tasks and the HTTP server.
//! - `http`: token, health, metrics and REST endpoints.
//! - `ws`: the WebSocket upgrade.
//! - `admin`: the admin API (`X-Admin-Key`): disconnect, ban, token revocation, moderation
//!   delete.
//! - `web_chat`: the development web chat's files and its dev-only token route.
//! - `attachments`: protocol v1.1 attachments: the blob store, their REST endpoints, the local
//!   store's signed URLs and the orphan sweep.
//! - `export`: exports of a user's data (admin jobs): JSON Lines streamed into the blob store.
//! - `metrics`: the node's Prometheus registry.
//! - `abandoned_sends`: the cluster's reaper of sends whose node died and nobody retried.

mod abandoned_sends;
mod adapters;
mod admin;
mod app;
mod attachments;
mod auth;
mod config;
mod erasure;
mod export;
mod http;
mod job_lease;
mod metrics;
mod retention;
mod web_chat;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: parley-server [--config PATH]
       parley-server probe [URL]

Runs a Parley node. With nothing configured: standalone on 127.0.0.1:8080, data under ./data.
Settings: built-in defaults (see config/parley.toml), then --config PATH, then environment
variables PARLEY__SECTION__KEY (e.g. PARLEY__SERVER__BIND=0.0.0.0:8080).

probe [URL]: GET URL (default http://127.0.0.1:8080/healthz) and exit 0 if it answers 2xx
within 2 s, else 1. The container health check (the image has no curl).";

/// The URL `parley-server probe` checks when given none: `/healthz` on the default bind.
const DEFAULT_PROBE_URL: &str = "http://127.0.0.1:8080/healthz";

fn parse_args() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().ok_or("--config needs a path")?));
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(config)
}

/// jemalloc rather than the system allocator: it keeps an idle WebSocket's memory near what the
/// session really holds (docs/adr/0004-jemalloc.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("probe") {
        if args.len() > 2 {
            eprintln!("unexpected argument {:?}\n\n{USAGE}", args[2]);
            return ExitCode::from(2);
        }
        let url = args.get(1).map_or(DEFAULT_PROBE_URL, String::as_str);
        return bootstrap::probe::run_probe_command("parley-server", url);
    }
    let config_path = match parse_args() {
        Ok(path) => path,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let loaded = match config::load(config_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("parley-server: {error}");
            return ExitCode::from(2);
        }
    };
    bootstrap::init_logging(&loaded.settings.log);
    let result = actix_web::rt::System::new().block_on(app::run(loaded));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "parley-server failed");
            eprintln!("parley-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}
