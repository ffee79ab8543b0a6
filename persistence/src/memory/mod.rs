//! Node-local, in-memory adapters for standalone mode (and fakes for tests).

pub mod bus;
pub mod cache;
pub mod presence;
pub mod rate_limit;
pub mod sequencer;

pub use bus::{BusCounters, InProcessBus};
pub use cache::{MemoryMessageCache, NoMessageCache};
pub use presence::MemoryPresence;
pub use rate_limit::MemoryRateLimiter;
pub use sequencer::MemorySequencer;
