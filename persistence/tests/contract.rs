//! Every port contract suite against the embedded and in-memory adapters.

use std::sync::Arc;

use persistence::embedded::LogOptions;
use persistence::{
    EmbeddedLog, EmbeddedStore, InProcessBus, MemoryMessageCache, MemoryPresence,
    MemoryRateLimiter, MemorySequencer,
};
use ports::contract::{self, Fixture};
use ports::{Bus, Directory, EventLog, MessageCache, Presence, RateLimiter, Sequencer, Store};
use tempfile::TempDir;

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// A fresh embedded store in its own temporary directory.
fn open_store() -> (Arc<EmbeddedStore>, TempDir) {
    let dir = temp_dir();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open store");
    (Arc::new(store), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_keeps_the_event_log_contract() {
    contract::event_log_suite(|| async {
        let dir = temp_dir();
        let log = EmbeddedLog::open(&dir.path().join("log")).expect("open log");
        let port: Arc<dyn EventLog> = Arc::new(log);
        Fixture::new(port, dir)
    })
    .await;
}

/// The same with no events kept in memory: consumers read every record from the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_read_from_its_files_keeps_the_event_log_contract() {
    contract::event_log_suite(|| async {
        let dir = temp_dir();
        let options = LogOptions {
            recent_bytes: 0,
            ..LogOptions::default()
        };
        let log = EmbeddedLog::open_with(&dir.path().join("log"), options).expect("open log");
        let port: Arc<dyn EventLog> = Arc::new(log);
        Fixture::new(port, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_the_store_contract() {
    contract::store_suite(|| async {
        let (store, dir) = open_store();
        let port: Arc<dyn Store> = store;
        Fixture::new(port, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_the_store_retention_contract() {
    contract::store_retention_suite(|| async {
        let (store, dir) = open_store();
        let port: Arc<dyn contract::RetainingStore> = store;
        Fixture::new(port, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_the_directory_contract() {
    contract::directory_suite(|| async {
        let (store, dir) = open_store();
        let port: Arc<dyn Directory> = store;
        Fixture::new(port, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_sequencer_keeps_the_sequencer_contract() {
    contract::sequencer_suite(|| async {
        let (store, dir) = open_store();
        let port: Arc<dyn Sequencer> = Arc::new(MemorySequencer::new(store));
        Fixture::new(port, dir)
    })
    .await;
}

#[tokio::test]
async fn memory_presence_keeps_the_presence_contract() {
    contract::presence_suite(|| async {
        let port: Arc<dyn Presence> = Arc::new(MemoryPresence::new());
        Fixture::unguarded(port)
    })
    .await;
}

#[tokio::test]
async fn in_process_bus_keeps_the_bus_contract() {
    contract::bus_suite(|| async {
        let port: Arc<dyn Bus> = Arc::new(InProcessBus::new(16));
        Fixture::unguarded(port)
    })
    .await;
}

#[tokio::test]
async fn memory_rate_limiter_keeps_the_rate_limiter_contract() {
    contract::rate_limiter_suite(|per_second, burst| async move {
        let port: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new(per_second, burst));
        Fixture::unguarded(port)
    })
    .await;
}

#[tokio::test]
async fn memory_message_cache_keeps_the_message_cache_contract() {
    contract::message_cache_suite(|capacity| async move {
        let port: Arc<dyn MessageCache> = Arc::new(MemoryMessageCache::new(capacity));
        Fixture::unguarded(port)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_the_sanctions_contract() {
    contract::sanctions_suite(|| async {
        let (store, dir) = open_store();
        let port: Arc<dyn ports::Sanctions> = store;
        Fixture::new(port, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_the_retention_contract() {
    contract::retention_suite(|| async {
        let (store, dir) = open_store();
        let port: Arc<dyn ports::RetentionPolicies> = store;
        Fixture::new(port, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_the_audit_log_contract() {
    contract::audit_log_suite(|| async {
        let (store, dir) = open_store();
        let port: Arc<dyn ports::AuditLog> = store;
        Fixture::new(port, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_the_jobs_contract() {
    contract::jobs_suite(|| async {
        let (store, dir) = open_store();
        let port: Arc<dyn ports::Jobs> = store;
        Fixture::new(port, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_the_user_data_contract() {
    contract::user_data_suite(|| async {
        let (store, dir) = open_store();
        let port: Arc<dyn contract::ScannableStore> = store;
        Fixture::new(port, dir)
    })
    .await;
}
