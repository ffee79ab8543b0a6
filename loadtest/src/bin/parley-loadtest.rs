//! `parley-loadtest --scenario PATH [options]`: runs a scenario, prints a live progress line
//! (stderr), a summary table (stdout) and writes a JSON report. Exits 1 when a correctness
//! check fails, 2 on a usage or setup error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use loadtest::run::{self, Options, TargetChoice};
use loadtest::scenario::Scenario;

const USAGE: &str = "usage: parley-loadtest --scenario PATH [options]
  --url URL            server WebSocket URL, repeatable (default ws://127.0.0.1:8080/ws)
  --target T           parley | ceiling | both (fanout only; both needs --ceiling-url)
  --ceiling-url URL    ws-ceiling URL, repeatable
  --source-addrs N     spread connections over 127.0.0.1..127.0.0.N (default 8)
  --api-key KEY        X-Api-Key for the token endpoint (default parley-dev-api-key)
  --server-pid PID     the server's pid, for RSS per connection (idle)
  --cpu-pid PID        a server process (node, Redis, ingest...) whose CPU time over the
                       measured window is reported, with CPU per send and per delivery
                       (repeatable)
  --ceiling-cpu-pid PID  the same for the ceiling phase (--target ceiling|both)
  --report PATH        write the JSON report there
  --ledger PATH        write every ack, abandoned send, final view and send answer there (JSON)
  --quiet              no progress line
  --set KEY=VALUE      override any scenario key (repeatable)
  --connections N | --rooms N | --members N | --rate R | --duration SECS
                       shorthands for --set";

fn parse(arguments: Vec<String>) -> anyhow::Result<(Scenario, Options)> {
    let mut scenario_path = None;
    let mut overrides = Vec::new();
    let mut options = Options {
        urls: Vec::new(),
        ceiling_urls: Vec::new(),
        target: TargetChoice::Parley,
        source_addrs: 8,
        api_key: "parley-dev-api-key".to_owned(),
        server_pid: None,
        cpu_pids: Vec::new(),
        ceiling_cpu_pids: Vec::new(),
        report: None,
        ledger: None,
        progress: true,
    };
    let mut arguments = arguments.into_iter();
    while let Some(flag) = arguments.next() {
        if flag == "--quiet" {
            options.progress = false;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            bail!("{USAGE}");
        }
        let value = arguments
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--scenario" => scenario_path = Some(PathBuf::from(value)),
            "--url" => options.urls.push(value),
            "--ceiling-url" => options.ceiling_urls.push(value),
            "--target" => {
                options.target = match value.as_str() {
                    "parley" => TargetChoice::Parley,
                    "ceiling" => TargetChoice::Ceiling,
                    "both" => TargetChoice::Both,
                    other => bail!("unknown --target {other:?}"),
                }
            }
            "--source-addrs" => options.source_addrs = value.parse().context("--source-addrs")?,
            "--api-key" => options.api_key = value,
            "--server-pid" => options.server_pid = Some(value.parse().context("--server-pid")?),
            "--cpu-pid" => options.cpu_pids.push(value.parse().context("--cpu-pid")?),
            "--ceiling-cpu-pid" => options
                .ceiling_cpu_pids
                .push(value.parse().context("--ceiling-cpu-pid")?),
            "--report" => options.report = Some(PathBuf::from(value)),
            "--ledger" => options.ledger = Some(PathBuf::from(value)),
            "--set" => {
                let (key, value) = value
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--set needs KEY=VALUE"))?;
                overrides.push((key.to_owned(), value.to_owned()));
            }
            "--connections" | "--rooms" | "--members" | "--rate" => {
                overrides.push((flag.trim_start_matches("--").to_owned(), value))
            }
            "--duration" => overrides.push(("duration_secs".to_owned(), value)),
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    if options.urls.is_empty() {
        options.urls.push("ws://127.0.0.1:8080/ws".to_owned());
    }
    let scenario_path = scenario_path.ok_or_else(|| anyhow!("--scenario is required\n{USAGE}"))?;
    let scenario = Scenario::load(&scenario_path, &overrides)?;
    Ok((scenario, options))
}

fn main() -> ExitCode {
    let (scenario, options) = match parse(std::env::args().skip(1).collect()) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("{error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(run::run(&scenario, &options)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("run failed: {error:#}");
            return ExitCode::from(2);
        }
    };
    run::print_summary(&report);
    if let Some(path) = &options.report {
        let written = serde_json::to_string_pretty(&report)
            .map_err(anyhow::Error::from)
            .and_then(|json| {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, json)?;
                Ok(())
            });
        if let Err(error) = written {
            eprintln!("cannot write the report {}: {error:#}", path.display());
            return ExitCode::from(2);
        }
        println!("report: {}", path.display());
    }
    // Connections still closing must not delay the exit.
    runtime.shutdown_background();
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
