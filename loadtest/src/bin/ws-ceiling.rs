//! `ws-ceiling [--bind ADDR]`: the bare WebSocket broadcast server (see `loadtest::ceiling`).
//! Prints `ws-ceiling listening on ADDR` on stdout once bound.

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let mut bind = "127.0.0.1:9000".to_owned();
    let mut workers = 0usize;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--bind" => bind = arguments.next().unwrap_or_default(),
            "--workers" => workers = arguments.next().unwrap_or_default().parse()?,
            "-h" | "--help" => {
                println!(
                    "usage: ws-ceiling [--bind 127.0.0.1:9000] [--workers N (0: one per core)]"
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
    runtime.enable_all().build()?.block_on(async {
        let (listener, addr) = loadtest::ceiling::bind(bind.parse()?).await?;
        println!("ws-ceiling listening on {addr}");
        std::io::stdout().flush()?;
        loadtest::ceiling::serve(listener).await?;
        Ok(())
    })
}
