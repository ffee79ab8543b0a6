//! Contract suites: one per port, run by every adapter's tests (embedded and in-memory adapters
//! in `persistence`, later Redis, Kafka and MongoDB) so they all keep the same semantics.
//!
//! Each suite takes a `make` closure that returns a [`Fixture`]: a fresh adapter instance, plus
//! whatever must live as long as it (a temporary directory, a container handle). Every case
//! calls `make` once. Cases also use unique ids (UUIDs), so adapters over a shared backend pass
//! too. Suites panic on the first violated expectation.
//!
//! - [`blob_store_suite`] (in [`blob`]), with presigned URLs called through a [`blob::Transfer`].
//! - [`log`]: [`event_log_suite`] · [`store`]: [`store_suite`] (with `store_reactions`, `store_erasure`;
//!   retention: [`store_retention_suite`]) · [`directory`]: [`directory_suite`]
//! - [`sequencer`]: [`sequencer_suite`] · [`presence`]: [`presence_suite`] · [`bus`]: [`bus_suite`]
//! - sanctions: [`sanctions_suite`] · audit: [`audit_log_suite`] · retention: [`retention_suite`]
//!   · jobs: [`jobs_suite`] · user data: [`user_data_suite`] (over a [`ScannableStore`]).
//! - [`rate_limit`]: [`rate_limiter_suite`] · [`cache`]: [`message_cache_suite`] · [`fixtures`]: record builders shared by the suites.
//! - search: [`search_index_suite`].
//! - [`hooked_store`]: [`HookedStore`], a store whose writes a test can fail or hold.

pub mod audit;
pub mod blob;
pub mod bus;
pub mod cache;
pub mod directory;
pub mod fixtures;
pub mod hooked_store;
pub mod jobs;
pub mod log;
pub mod presence;
pub mod rate_limit;
pub mod retention;
pub mod sanctions;
pub mod sequencer;
pub mod store;
mod store_erasure;
mod store_reactions;
pub mod store_retention;
pub mod user_data;

// The suite of the optional search index (adapter in `search/`).
pub mod search;

use std::any::Any;
use std::sync::Arc;

pub use audit::audit_log_suite;
pub use blob::blob_store_suite;
pub use bus::bus_suite;
pub use cache::message_cache_suite;
pub use directory::directory_suite;
pub use hooked_store::{ApplyHook, HookedStore};
pub use jobs::jobs_suite;
pub use log::event_log_suite;
pub use presence::presence_suite;
pub use rate_limit::rate_limiter_suite;
pub use retention::retention_suite;
pub use sanctions::sanctions_suite;
pub use search::search_index_suite;
pub use sequencer::sequencer_suite;
pub use store::store_suite;
pub use store_retention::{store_retention_suite, RetainingStore};
pub use user_data::{user_data_suite, ScannableStore};

/// An adapter under test and what keeps its backing resources alive.
pub struct Fixture<P: ?Sized> {
    pub port: Arc<P>,
    _guard: Box<dyn Any + Send>,
}

impl<P: ?Sized> Fixture<P> {
    /// `guard` is dropped after the port (e.g. a `tempfile::TempDir`).
    pub fn new(port: Arc<P>, guard: impl Any + Send) -> Self {
        Self {
            port,
            _guard: Box::new(guard),
        }
    }

    pub fn unguarded(port: Arc<P>) -> Self {
        Self::new(port, ())
    }
}
