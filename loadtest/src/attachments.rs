//! The attachment benchmark (`attachment-bench`): 1 MiB files (by default) uploaded and
//! downloaded through a node the way clients do it, then the same transfers straight against
//! the storage's presigned URLs (the ceiling: no declaration, no authorization, no redirect).
//!
//! Phases, each with `concurrency` transfers in flight:
//! - `upload`: `POST /api/v1/attachments`, then `PUT` the bytes to the presigned URL;
//! - `download`: `GET /api/v1/attachments/{id}` (302, not followed automatically), then `GET`
//!   the `Location` (the uploader may download its unsent uploads, so no message is needed);
//! - `raw-put` / `raw-get`: the same number of `PUT`s to one presigned upload URL and `GET`s of
//!   one download URL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::stats::{format_micros, LatencyHistogram};

pub struct BenchConfig {
    /// The node, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub api_key: String,
    pub files: usize,
    pub size: usize,
    pub concurrency: usize,
}

/// One phase's result.
pub struct PhaseReport {
    pub name: &'static str,
    pub files: usize,
    pub bytes: u64,
    pub elapsed: Duration,
    pub latency: LatencyHistogram,
}

impl PhaseReport {
    pub fn line(&self) -> String {
        let summary = self.latency.summary();
        let megabytes_per_second = self.bytes as f64 / 1_048_576.0 / self.elapsed.as_secs_f64();
        format!(
            "{:<9} {:>5} files  {:>8.1} MiB/s  p50 {:>9}  p99 {:>9}  max {:>9}",
            self.name,
            self.files,
            megabytes_per_second,
            format_micros(summary.p50_us),
            format_micros(summary.p99_us),
            format_micros(summary.max_us)
        )
    }
}

struct Bench {
    config: BenchConfig,
    http: reqwest::Client,
    token: String,
    file: Vec<u8>,
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Runs the four phases and returns their reports.
pub async fn run(config: BenchConfig) -> anyhow::Result<Vec<PhaseReport>> {
    let http = client()?;
    let token = token(&http, &config).await?;
    let file = (0..config.size).map(|index| (index % 251) as u8).collect();
    let bench = Arc::new(Bench {
        config,
        http,
        token,
        file,
    });
    let (upload, ids) = bench.clone().uploads().await?;
    let download = bench.clone().downloads(&ids).await?;
    let first = ids.first().context("no file uploaded")?;
    let (raw_put, raw_get) = bench.clone().raw(first).await?;
    Ok(vec![upload, download, raw_put, raw_get])
}

async fn token(http: &reqwest::Client, config: &BenchConfig) -> anyhow::Result<String> {
    let answer: Value = http
        .post(format!("{}/api/v1/auth/token", config.url))
        .header("X-Api-Key", &config.api_key)
        .json(&json!({ "user_id": format!("bench-{}", uuid::Uuid::new_v4().simple()) }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer["token"].as_str().context("no token")?.to_owned())
}

/// Runs `work(index)` for every file, `concurrency` at a time, timing each.
async fn timed<F, Fut, T>(
    name: &'static str,
    config: &BenchConfig,
    work: F,
) -> anyhow::Result<(PhaseReport, Vec<T>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let latency = LatencyHistogram::new();
    let started = Instant::now();
    let results: Vec<T> = stream::iter(0..config.files)
        .map(|index| {
            let work = work(index);
            let latency = &latency;
            async move {
                let begun = Instant::now();
                let result = work.await?;
                latency.record(begun.elapsed().as_micros() as u64);
                anyhow::Ok(result)
            }
        })
        .buffer_unordered(config.concurrency.max(1))
        .try_collect()
        .await?;
    let report = PhaseReport {
        name,
        files: config.files,
        bytes: (config.files * config.size) as u64,
        elapsed: started.elapsed(),
        latency,
    };
    Ok((report, results))
}

impl Bench {
    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    async fn uploads(self: Arc<Self>) -> anyhow::Result<(PhaseReport, Vec<String>)> {
        timed("upload", &self.config, |_| self.clone().upload_one()).await
    }

    async fn upload_one(self: Arc<Self>) -> anyhow::Result<String> {
        let created = self.declare().await?;
        let url = created["upload_url"].as_str().context("no upload_url")?;
        self.put(url).await?;
        Ok(created["attachment_id"]
            .as_str()
            .context("no id")?
            .to_owned())
    }

    /// `POST /api/v1/attachments` for one file: the answer (id and upload URL).
    async fn declare(&self) -> anyhow::Result<Value> {
        let declared = json!({ "name": "bench.bin", "content_type": "application/pdf", "size": self.file.len() });
        Ok(self
            .http
            .post(format!("{}/api/v1/attachments", self.config.url))
            .header("Authorization", self.bearer())
            .json(&declared)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn put(&self, url: &str) -> anyhow::Result<()> {
        self.http
            .put(url)
            .body(self.file.clone())
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn get(&self, url: &str) -> anyhow::Result<()> {
        let bytes = self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        anyhow::ensure!(
            bytes.len() == self.file.len(),
            "downloaded {} bytes",
            bytes.len()
        );
        Ok(())
    }

    async fn download_url(&self, attachment_id: &str) -> anyhow::Result<String> {
        let answer = self
            .http
            .get(format!(
                "{}/api/v1/attachments/{attachment_id}",
                self.config.url
            ))
            .header("Authorization", self.bearer())
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().as_u16() == 302,
            "download answered {}",
            answer.status()
        );
        Ok(answer.headers()["location"].to_str()?.to_owned())
    }

    async fn downloads(self: Arc<Self>, ids: &[String]) -> anyhow::Result<PhaseReport> {
        let (report, _) = timed("download", &self.config, |index| {
            let bench = self.clone();
            let id = ids[index].clone();
            async move { bench.get(&bench.download_url(&id).await?).await }
        })
        .await?;
        Ok(report)
    }

    /// The storage alone: one presigned upload URL and one download URL, reused.
    async fn raw(
        self: Arc<Self>,
        attachment_id: &str,
    ) -> anyhow::Result<(PhaseReport, PhaseReport)> {
        let download_url = self.download_url(attachment_id).await?;
        let created = self.declare().await?;
        let upload_url = created["upload_url"]
            .as_str()
            .context("no upload_url")?
            .to_owned();
        let (puts, _) = timed("raw-put", &self.config, |_| {
            let (bench, url) = (self.clone(), upload_url.clone());
            async move { bench.put(&url).await }
        })
        .await?;
        let (gets, _) = timed("raw-get", &self.config, |_| {
            let (bench, url) = (self.clone(), download_url.clone());
            async move { bench.get(&url).await }
        })
        .await?;
        Ok((puts, gets))
    }
}
