//! The `SearchIndex` contract with every read going over HTTP: a Tantivy index served by the
//! replica routes (`search::remote::endpoint`) and queried with `RemoteSearch`, as a node
//! queries the search role. The indexer's writes go to the index directly, as in the role.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer};
use async_trait::async_trait;
use ports::contract::{self, Fixture};
use ports::{PortError, SearchIndex, SearchPage, SearchQuery, SearchReader};
use search::{RemoteSearch, TantivyIndex};
use wire::log::MessageRecord;
use wire::{ConversationId, Seq, UserId};

/// Writes to the local index, reads through its HTTP routes.
struct ServedIndex {
    local: Arc<TantivyIndex>,
    remote: RemoteSearch,
}

#[async_trait]
impl SearchReader for ServedIndex {
    async fn search(&self, query: SearchQuery) -> Result<SearchPage, PortError> {
        self.remote.search(query).await
    }

    async fn live_messages(&self) -> Result<u64, PortError> {
        self.remote.live_messages().await
    }
}

#[async_trait]
impl SearchIndex for ServedIndex {
    async fn apply(&self, records: Vec<MessageRecord>) -> Result<(), PortError> {
        self.local.apply(records).await
    }

    async fn erase_user(
        &self,
        conversation_id: &ConversationId,
        user_id: &UserId,
        through: Seq,
    ) -> Result<u64, PortError> {
        self.local
            .erase_user(conversation_id, user_id, through)
            .await
    }

    async fn purge(&self, conversation_id: &ConversationId, through: Seq) -> Result<(), PortError> {
        self.local.purge(conversation_id, through).await
    }
}

/// Stops the server when the fixture is dropped.
struct Served(ServerHandle);

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.0.stop(false));
    }
}

/// Serves `reader` on a free local port; its base URL and the server's handle.
fn serve(reader: Arc<dyn SearchReader>) -> (String, ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let server = HttpServer::new(move || {
        let reader = Arc::clone(&reader);
        App::new().configure(move |config| search::remote::endpoint::configure(config, reader))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{address}"), handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_queried_over_http_meets_the_contract() {
    contract::search_index_suite(|| async {
        let directory = tempfile::tempdir().expect("temporary directory");
        let local = Arc::new(TantivyIndex::open(directory.path(), 32_000_000).expect("open"));
        let (url, handle) = serve(local.clone());
        let remote = RemoteSearch::new(&url, Duration::from_secs(5)).expect("client");
        let served = ServedIndex { local, remote };
        Fixture::new(
            Arc::new(served) as Arc<dyn SearchIndex>,
            (Served(handle), directory),
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cursor_is_refused_and_a_missing_replica_is_unavailable() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let local = Arc::new(TantivyIndex::open(directory.path(), 32_000_000).expect("open"));
    let (url, handle) = serve(local);
    let _served = Served(handle);
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{url}{}", search::remote::SEARCH_PATH))
        .json(&serde_json::json!({
            "text": "hello", "conversations": [], "limit": 5, "after": "not-a-cursor"
        }))
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 400);

    let free = TcpListener::bind("127.0.0.1:0").expect("bind");
    let nobody = format!("http://{}", free.local_addr().expect("address"));
    drop(free);
    let remote = RemoteSearch::new(&nobody, Duration::from_secs(2)).expect("client");
    let error = remote.live_messages().await.expect_err("no replica there");
    assert!(matches!(error, PortError::Unavailable { .. }), "{error:?}");
}
