//! [`IngestBarrier`]: "read your writes" over a store that ingest fills from the log. A reader
//! that must see everything the log held when it asked (a message just acknowledged but not
//! yet written to the store, e.g. while ingest lingers) waits on it; ingest then polls at once,
//! and answers once a poll that started after the request reached the log's end and its batch
//! was written.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct IngestBarrier {
    inner: Arc<Counters>,
}

struct Counters {
    /// Requests so far (each a number one above the last).
    requested: watch::Sender<u64>,
    /// The highest request answered: every record the log held when it was made is written.
    served: watch::Sender<u64>,
}

impl Default for IngestBarrier {
    fn default() -> Self {
        Self {
            inner: Arc::new(Counters {
                requested: watch::Sender::new(0),
                served: watch::Sender::new(0),
            }),
        }
    }
}

impl IngestBarrier {
    /// Returns once ingest has written everything the log held when this was called. Never,
    /// while ingest is stopped or failing: callers bound the wait.
    pub async fn wait(&self) {
        let mut wanted = 0;
        self.inner.requested.send_modify(|requested| {
            *requested += 1;
            wanted = *requested;
        });
        let mut served = self.inner.served.subscribe();
        // The sender lives in `self`: `wait_for` cannot fail while we hold it.
        let _ = served.wait_for(|served| *served >= wanted).await;
    }

    /// Ingest's side: the requests, to notice new ones while it lingers or waits for records.
    pub(crate) fn requests(&self) -> watch::Receiver<u64> {
        self.inner.requested.subscribe()
    }

    /// Ingest's side: every request up to `through` is answered (the poll that started after
    /// it found the log's end, and its batch is written).
    pub(crate) fn serve(&self, through: u64) {
        self.inner.served.send_if_modified(|served| {
            let raised = through > *served;
            *served = (*served).max(through);
            raised
        });
    }
}
