//! `export-bench --server PATH [--messages 100000] [--conversations 100] [--dir DIR] [--port P]`:
//! seeds one user with `--messages` messages straight into the embedded store of a fresh data
//! directory, starts the real `parley-server` (a standalone node) on it, exports the user
//! through the admin API while sampling the node's RSS from `/proc`, downloads the file and
//! checks its line counts by type. Prints the figures (docs/benchmarks.md, "Export").

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use loadtest::export::{count_lines, seed_store, RssSampler, Seed, EXPORTED};
use loadtest::net::rss_kib;
use persistence::EmbeddedStore;
use serde_json::Value;

const ADMIN_KEY: &str = "export-bench-admin-key-0123456789";

struct Options {
    server: PathBuf,
    seed: Seed,
    dir: PathBuf,
    port: u16,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        server: PathBuf::from("target/debug/parley-server"),
        seed: Seed {
            messages: 100_000,
            conversations: 100,
        },
        dir: std::env::temp_dir().join("parley-export-bench"),
        port: 31080,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = || arguments.next().unwrap_or_default();
        match argument.as_str() {
            "--server" => options.server = PathBuf::from(value()),
            "--messages" => options.seed.messages = value().parse()?,
            "--conversations" => options.seed.conversations = value().parse::<usize>()?.max(1),
            "--dir" => options.dir = PathBuf::from(value()),
            "--port" => options.port = value().parse()?,
            "-h" | "--help" => {
                println!("usage: export-bench [--server target/debug/parley-server] [--messages 100000] [--conversations 100] [--dir PATH (emptied first)] [--port 31080]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(parse_options()?))
}

/// The node, killed when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(options: &Options) -> anyhow::Result<Node> {
    let log = std::fs::File::create(options.dir.join("node.log"))?;
    let child = Command::new(&options.server)
        .env(
            "PARLEY__SERVER__BIND",
            format!("127.0.0.1:{}", options.port),
        )
        .env("PARLEY__STORAGE__DATA_DIR", options.dir.join("data"))
        .env("PARLEY__AUTH__ADMIN_API_KEY", ADMIN_KEY)
        .env("PARLEY__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", options.server.display()))?;
    Ok(Node(child))
}

async fn admin(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
) -> anyhow::Result<Value> {
    let response = client
        .request(method, url)
        .header("X-Admin-Key", ADMIN_KEY)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {body}");
    }
    Ok(body)
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the node never became ready")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A fresh data directory whose store holds the seed.
async fn seed_data_dir(options: &Options) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&options.dir);
    std::fs::create_dir_all(options.dir.join("data"))?;
    let seeding = Instant::now();
    let store = EmbeddedStore::open(&options.dir.join("data/store.redb"))?;
    seed_store(&store, &options.seed).await?;
    println!(
        "seeded {} messages of {EXPORTED} (+ {} of another user) in {} conversations in {:.1} s",
        options.seed.messages,
        options.seed.messages / 10,
        options.seed.conversations,
        seeding.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Starts the export and polls its job until it is final: the job, how long it took and the
/// node's peak RSS meanwhile.
async fn export(
    client: &reqwest::Client,
    base: &str,
    pid: u32,
) -> anyhow::Result<(Value, Duration, u64)> {
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let export_url = format!("{base}/api/v1/admin/users/{EXPORTED}/export");
    let job_id = admin(client, reqwest::Method::POST, &export_url).await?["job_id"]
        .as_str()
        .context("job_id")?
        .to_owned();
    let job_url = format!("{base}/api/v1/admin/jobs/{job_id}");
    loop {
        let job = admin(client, reqwest::Method::GET, &job_url).await?;
        if job["state"] != "running" {
            let took = started.elapsed();
            return Ok((job, took, sampler.stop().await));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(options: Options) -> anyhow::Result<()> {
    seed_data_dir(&options).await?;
    let node = start_node(&options)?;
    let pid = node.0.id();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", options.port);
    wait_ready(&client, &base).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid)?;
    let (job, took, export_peak) = export(&client, &base, pid).await?;
    if job["state"] != "done" {
        bail!("the export failed: {job}");
    }
    let after_export = rss_kib(pid)?;

    let sampler = RssSampler::start(pid);
    let url = job["download_url"].as_str().context("download_url")?;
    let (counts, bytes) = count_lines(url).await?;
    let download_peak = sampler.stop().await;
    println!(
        "export: {:.1} s, file {:.1} MiB ({:.1} MiB/s)",
        took.as_secs_f64(),
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / took.as_secs_f64()
    );
    println!(
        "node RSS: idle {:.1} MiB, peak during export {:.1} MiB (+{:.1}), after {:.1} MiB, peak during download {:.1} MiB (+{:.1})",
        mib(idle),
        mib(export_peak),
        mib(export_peak.saturating_sub(idle)),
        mib(after_export),
        mib(download_peak),
        mib(download_peak.saturating_sub(idle))
    );
    println!("lines by type: {counts:?}");
    let expected = options.seed.expected_lines();
    if counts != expected {
        bail!("the file holds {counts:?}, expected {expected:?}");
    }
    println!("the file holds exactly the seeded data of {EXPORTED}");
    drop(node);
    let _ = std::fs::remove_dir_all(&options.dir);
    Ok(())
}
