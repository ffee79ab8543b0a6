//! `fault-proxy --listen ADDR --target HOST:PORT --control ADDR`: the fault-injecting TCP proxy
//! (see `loadtest::fault_proxy`). Prints `fault-proxy listening on ADDR control on ADDR` on
//! stdout once both are bound.

use std::io::Write;

use anyhow::Context;
use loadtest::fault_proxy::{serve_control, serve_proxy, Faults};
use tokio::net::TcpListener;

const USAGE: &str =
    "usage: fault-proxy --listen 127.0.0.1:PORT --target HOST:PORT --control 127.0.0.1:PORT

Forwards every connection to --target. Control (HTTP): POST /pass, POST /latency?ms=N,
POST /stall, POST /drop; GET / shows the fault in force. Port 0 picks a free port.";

fn main() -> anyhow::Result<()> {
    let (mut listen, mut target, mut control) = (None, None, None);
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let slot = match argument.as_str() {
            "--listen" => &mut listen,
            "--target" => &mut target,
            "--control" => &mut control,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        };
        *slot = Some(arguments.next().context("a flag without its value")?);
    }
    let (Some(listen), Some(target), Some(control)) = (listen, target, control) else {
        anyhow::bail!("--listen, --target and --control are required\n{USAGE}");
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(async {
            let proxy = TcpListener::bind(&listen)
                .await
                .with_context(|| format!("bind {listen}"))?;
            let controller = TcpListener::bind(&control)
                .await
                .with_context(|| format!("bind {control}"))?;
            println!(
                "fault-proxy listening on {} control on {}",
                proxy.local_addr()?,
                controller.local_addr()?
            );
            std::io::stdout().flush()?;
            let faults = Faults::default();
            tokio::join!(
                serve_proxy(proxy, target, faults.clone()),
                serve_control(controller, faults)
            );
            Ok(())
        })
}
