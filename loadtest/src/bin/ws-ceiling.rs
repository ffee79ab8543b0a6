//! `ws-ceiling [--bind ADDR] [--workers N] [--log PATH [--group-commit-delay-us N]]`: the bare
//! WebSocket broadcast server (see `loadtest::ceiling`); with `--log`, each frame is broadcast
//! only once it is fdatasync'd to PATH (see `loadtest::ceiling_log`). Prints
//! `ws-ceiling listening on ADDR` on stdout once bound.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use loadtest::ceiling_log::DurableLog;

fn main() -> anyhow::Result<()> {
    let mut bind = "127.0.0.1:9000".to_owned();
    let mut workers = 0usize;
    let mut log_path: Option<PathBuf> = None;
    // Parley's `storage.log_group_commit_delay_us` default.
    let mut group_commit_delay_us = 1000u64;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--bind" => bind = arguments.next().unwrap_or_default(),
            "--workers" => workers = arguments.next().unwrap_or_default().parse()?,
            "--log" => log_path = arguments.next().map(PathBuf::from),
            "--group-commit-delay-us" => {
                group_commit_delay_us = arguments.next().unwrap_or_default().parse()?
            }
            "-h" | "--help" => {
                println!(
                    "usage: ws-ceiling [--bind 127.0.0.1:9000] [--workers N (0: one per core)] \
                     [--log PATH [--group-commit-delay-us 1000]]"
                );
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        runtime.worker_threads(workers);
    }
    let log = log_path
        .map(|path| DurableLog::open(&path, Duration::from_micros(group_commit_delay_us)))
        .transpose()?;
    runtime.enable_all().build()?.block_on(async {
        let (listener, addr) = loadtest::ceiling::bind(bind.parse()?).await?;
        println!("ws-ceiling listening on {addr}");
        std::io::stdout().flush()?;
        loadtest::ceiling::serve(listener, log).await?;
        Ok(())
    })
}
