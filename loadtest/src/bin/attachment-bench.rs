//! `attachment-bench --url URL --api-key KEY [--files N] [--size BYTES] [--concurrency C]`:
//! upload and download throughput and latency of attachments through a node, and the storage's
//! own ceiling (see `loadtest::attachments`).

fn main() -> anyhow::Result<()> {
    let mut config = loadtest::attachments::BenchConfig {
        url: "http://127.0.0.1:8080".to_owned(),
        api_key: String::new(),
        files: 100,
        size: 1024 * 1024,
        concurrency: 4,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = || arguments.next().unwrap_or_default();
        match argument.as_str() {
            "--url" => config.url = value(),
            "--api-key" => config.api_key = value(),
            "--files" => config.files = value().parse()?,
            "--size" => config.size = value().parse()?,
            "--concurrency" => config.concurrency = value().parse()?,
            "-h" | "--help" => {
                println!("usage: attachment-bench --url http://127.0.0.1:8080 --api-key KEY [--files 100] [--size 1048576] [--concurrency 4]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let reports = runtime.block_on(loadtest::attachments::run(config))?;
    for report in reports {
        println!("{}", report.line());
    }
    Ok(())
}
