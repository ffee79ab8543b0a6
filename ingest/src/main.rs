//! `ingest`: consumes Parley's event log from Kafka, writes it to MongoDB and acknowledges
//! stored messages on `message.delivered` (`run`); or, as the search role (`search`), keeps a
//! search index of the log and answers the nodes' queries. Usage in `cli::USAGE`; the work is in
//! `service`, the pipeline itself in the library ([`ingest::IngestPipeline`]).

mod cli;
mod health;
mod reindex;
mod search_role;
mod service;

use std::process::ExitCode;

use bootstrap::parley_env;
use ingest::settings::ServiceSettings;

use crate::cli::{Command, Invocation};
use crate::service::Stopped;

fn main() -> ExitCode {
    let args = match cli::parse_args(std::env::args().skip(1)) {
        Ok(Invocation::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Probe { url }) => {
            return bootstrap::probe::run_probe_command("ingest", &url);
        }
        Ok(Invocation::Start(args)) => args,
        Err(error) => {
            eprintln!("ingest: {error}");
            return ExitCode::from(2);
        }
    };
    let settings = match ServiceSettings::load(args.config.as_deref(), &parley_env()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("ingest: {error}");
            return ExitCode::from(2);
        }
    };
    bootstrap::init_logging(&settings.log);
    let hostname = std::env::var("HOSTNAME").ok();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ingest: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Setup { timeout } => service::setup(&settings, hostname.as_deref(), timeout)
                .await
                .map(|()| {
                    println!("ingest setup done");
                    Stopped::Cleanly
                }),
            Command::Run => service::run(&settings, hostname.as_deref()).await,
            Command::Search => search_role::run(&settings, hostname.as_deref()).await,
            Command::Reindex => reindex::run(&settings).await.map(|messages| {
                println!("ingest reindex done: {messages} messages");
                Stopped::Cleanly
            }),
        }
    });
    match result {
        Ok(Stopped::Cleanly) => ExitCode::SUCCESS,
        // Work may still be running (a batch in hand past its deadline): leave without waiting
        // for it. Nothing is lost: the uncommitted batch is consumed again.
        Ok(Stopped::Forced) => std::process::exit(0),
        Err(error) => {
            tracing::error!(error = %error, "ingest failed");
            eprintln!("ingest: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
