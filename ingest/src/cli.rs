//! The `ingest` command line:
//! `ingest [--config PATH] [--timeout-secs N] [run|setup|search|reindex]`.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub const USAGE: &str =
    "usage: ingest [--config PATH] [run | setup [--timeout-secs N] | search | reindex]
       ingest probe [URL]

Consumes Parley's event log from Kafka, writes it to MongoDB and appends message.stored
acknowledgments to the topic message.delivered; writes the audit topic into MongoDB's audit
collection.

commands:
  run     (default) serve /healthz, /readyz and /metrics on ingest.bind, wait for MongoDB,
          create its indexes, then ingest until SIGTERM/SIGINT
  setup   wait for Kafka and MongoDB, create the missing topics and the indexes, backfill
          what older documents lack, then exit
          (--timeout-secs N: give up after N seconds, default 120)
  search  the search role: keep a complete search index of the log under search.data_dir
          (a consumer group of its own) and answer the nodes' queries on search.bind
          (POST /v1/search, GET /v1/stats, /healthz, /readyz, /metrics) until SIGTERM/SIGINT
  reindex rebuild the search role's index in search.data_dir from MongoDB (stop the role
          first); the role then replays what the log still holds over it
  probe   GET URL (default http://127.0.0.1:9091/healthz) and exit 0 if it answers 2xx
          within 2 s, else 1: the container health check (no curl in the image)

options:
  -c, --config PATH    settings file (see config/parley.toml; sections [kafka], [mongo],
                       [ingest], [log]); environment variables PARLEY__SECTION__KEY override it
  -h, --help           print this help

kafka.brokers and mongo.uri are required, e.g.
  PARLEY__KAFKA__BROKERS=127.0.0.1:9092 PARLEY__MONGO__URI=mongodb://127.0.0.1:27017/ ingest setup";

/// The default `--timeout-secs` of `setup`.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve the endpoints and ingest until stopped.
    Run,
    /// Create topics and indexes, within `timeout`.
    Setup { timeout: Duration },
    /// Run a search replica.
    Search,
    /// Rebuild the search replica's index from MongoDB.
    Reindex,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub config: Option<PathBuf>,
    pub command: Command,
}

/// The URL `ingest probe` checks when given none: `/healthz` on the default `ingest.bind`.
pub const DEFAULT_PROBE_URL: &str = "http://127.0.0.1:9091/healthz";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Help,
    /// `probe [URL]`: a health check of a running ingest; loads no settings.
    Probe {
        url: String,
    },
    Start(Args),
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}\n\n{USAGE}")]
pub struct UsageError(String);

/// Parses the arguments after the program name.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Invocation, UsageError> {
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("probe") {
        args.next();
        let url = args.next().unwrap_or_else(|| DEFAULT_PROBE_URL.to_owned());
        if let Some(extra) = args.next() {
            return Err(UsageError(format!("unexpected argument {extra:?}")));
        }
        return Ok(Invocation::Probe { url });
    }
    let mut config = None;
    let mut command = None;
    let mut timeout = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Invocation::Help),
            "--config" | "-c" => {
                let path = args
                    .next()
                    .ok_or_else(|| UsageError("--config needs a path".to_owned()))?;
                config = Some(PathBuf::from(path));
            }
            "--timeout-secs" => {
                let value = args
                    .next()
                    .ok_or_else(|| UsageError("--timeout-secs needs a number".to_owned()))?;
                let seconds: u64 = value.parse().map_err(|_| {
                    UsageError(format!(
                        "--timeout-secs needs a whole number of seconds, not {value:?}"
                    ))
                })?;
                if seconds == 0 {
                    return Err(UsageError("--timeout-secs must be at least 1".to_owned()));
                }
                timeout = Some(Duration::from_secs(seconds));
            }
            "run" | "setup" | "search" | "reindex" if command.is_none() => command = Some(arg),
            other => return Err(UsageError(format!("unexpected argument {other:?}"))),
        }
    }
    let command = match command.as_deref() {
        None | Some("run") | Some("search") | Some("reindex") if timeout.is_some() => {
            return Err(UsageError(
                "--timeout-secs only applies to setup".to_owned(),
            ));
        }
        None | Some("run") => Command::Run,
        Some("search") => Command::Search,
        Some("reindex") => Command::Reindex,
        _ => Command::Setup {
            timeout: timeout.unwrap_or(DEFAULT_SETUP_TIMEOUT),
        },
    };
    Ok(Invocation::Start(Args { config, command }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, UsageError> {
        parse_args(args.iter().map(|arg| arg.to_string()))
    }

    fn start(config: Option<&str>, command: Command) -> Result<Invocation, UsageError> {
        Ok(Invocation::Start(Args {
            config: config.map(PathBuf::from),
            command,
        }))
    }

    #[test]
    fn probe_takes_an_optional_url() {
        assert_eq!(
            parse(&["probe"]),
            Ok(Invocation::Probe {
                url: DEFAULT_PROBE_URL.to_owned()
            })
        );
        assert_eq!(
            parse(&["probe", "http://127.0.0.1:9091/readyz"]),
            Ok(Invocation::Probe {
                url: "http://127.0.0.1:9091/readyz".to_owned()
            })
        );
        assert!(parse(&["probe", "http://a:1/", "extra"]).is_err());
    }

    #[test]
    fn run_is_the_default() {
        assert_eq!(parse(&[]), start(None, Command::Run));
        assert_eq!(parse(&["run"]), start(None, Command::Run));
        assert_eq!(
            parse(&["--config", "/etc/parley.toml"]),
            start(Some("/etc/parley.toml"), Command::Run)
        );
    }

    #[test]
    fn setup_takes_a_timeout() {
        let default = Command::Setup {
            timeout: DEFAULT_SETUP_TIMEOUT,
        };
        assert_eq!(parse(&["setup"]), start(None, default));
        assert_eq!(
            parse(&["-c", "p.toml", "setup", "--timeout-secs", "5"]),
            start(
                Some("p.toml"),
                Command::Setup {
                    timeout: Duration::from_secs(5)
                }
            )
        );
        assert_eq!(
            parse(&["--timeout-secs", "5", "setup"]),
            start(
                None,
                Command::Setup {
                    timeout: Duration::from_secs(5)
                }
            )
        );
    }

    #[test]
    fn search_runs_a_replica() {
        assert_eq!(parse(&["search"]), start(None, Command::Search));
        assert_eq!(parse(&["reindex"]), start(None, Command::Reindex));
        assert_eq!(
            parse(&["-c", "p.toml", "search"]),
            start(Some("p.toml"), Command::Search)
        );
    }

    #[test]
    fn help_wins() {
        assert_eq!(parse(&["setup", "--help"]), Ok(Invocation::Help));
        assert_eq!(parse(&["-h"]), Ok(Invocation::Help));
    }

    #[test]
    fn mistakes_are_explained_with_the_usage() {
        for (args, problem) in [
            (&["--config"][..], "--config needs a path"),
            (&["setup", "--timeout-secs"][..], "needs a number"),
            (&["setup", "--timeout-secs", "soon"][..], "whole number"),
            (&["setup", "--timeout-secs", "0"][..], "at least 1"),
            (&["run", "--timeout-secs", "3"][..], "only applies to setup"),
            (&["--timeout-secs", "3"][..], "only applies to setup"),
            (
                &["search", "--timeout-secs", "3"][..],
                "only applies to setup",
            ),
            (&["search", "run"][..], "unexpected argument \"run\""),
            (&["serve"][..], "unexpected argument \"serve\""),
            (&["run", "setup"][..], "unexpected argument \"setup\""),
        ] {
            let error = parse(args).expect_err(problem).to_string();
            assert!(error.contains(problem), "{args:?}: {error}");
            assert!(error.contains("usage: ingest"), "{args:?}: {error}");
        }
    }
}
