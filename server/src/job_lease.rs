//! Which node runs a job (an erasure, an export) of a durable cluster, whose nodes share the job
//! records: the holder of the job's Redis lease `<kind>:<job_id>`, renewed every third of
//! [`LEASE_TTL`] while the run lasts. When its node stops, the lease lapses and the next node
//! that looks for unfinished jobs takes the job up. Nodes with their own store (standalone, a
//! Redis-only cluster) need no lease: every lease of theirs is always held.

use std::time::Duration;

use persistence::redis::{LeaseRenewal, RedisClient, RedisLease};
use ports::{Job, PortError};
use wire::NodeId;

/// How long a job's lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// Whether this node runs a round of periodic work that one node of a cluster does at a time.
pub enum Round {
    /// Run it; its lease (none where the node shares nothing) is renewed until this is dropped.
    Run(Option<LeaseRenewal>),
    /// Another node holds the round's lease.
    Skip,
}

/// Takes the lease of a round (a sweep, a reaper round) for `ttl`, renewed while the round
/// runs ([`RedisLease::hold_round`]); without a lease every round runs.
pub async fn take_round(lease: Option<&RedisLease>, ttl: Duration) -> Result<Round, PortError> {
    let Some(lease) = lease else {
        return Ok(Round::Run(None));
    };
    Ok(match lease.hold_round(ttl).await? {
        Some(renewal) => Round::Run(Some(renewal)),
        None => Round::Skip,
    })
}

/// The leases of one node's jobs.
#[derive(Clone)]
pub struct JobLeases {
    /// `Some` when nodes share the job records (durable cluster).
    client: Option<RedisClient>,
    holder: NodeId,
}

impl JobLeases {
    pub fn new(client: Option<RedisClient>, holder: NodeId) -> Self {
        Self { client, holder }
    }

    /// Whether other nodes see this node's jobs (and may take them up).
    pub fn shared(&self) -> bool {
        self.client.is_some()
    }

    /// The lease `name` of periodic work over the shared jobs (one node per round), in the name
    /// of this node; `None` when the jobs are this node's own.
    pub fn round(&self, name: &str) -> Option<RedisLease> {
        (self.client.clone()).map(|client| RedisLease::new(client, name, self.holder.as_str()))
    }

    /// The lease of `job`, in the name of this node.
    pub fn of(&self, job: &Job) -> JobLease {
        JobLease(self.client.clone().map(|client| {
            let name = format!("{}:{}", job.kind.as_str(), job.job_id);
            RedisLease::new(client, &name, self.holder.as_str())
        }))
    }
}

/// One job's lease (`None`: always held).
#[derive(Clone)]
pub struct JobLease(Option<RedisLease>);

impl JobLease {
    /// Takes or renews the lease; `false` when another node holds it.
    pub async fn hold(&self) -> Result<bool, PortError> {
        match &self.0 {
            Some(lease) => lease.try_hold(LEASE_TTL).await,
            None => Ok(true),
        }
    }

    /// Renews the lease every third of its TTL until the returned guard is dropped: one step
    /// of a job may take longer than a TTL. A renewal that finds another holder changes
    /// nothing (the run notices at its next [`JobLease::hold`], or ends harmlessly).
    pub fn keep(&self) -> Option<LeaseRenewal> {
        self.0.as_ref().map(|lease| lease.keep(LEASE_TTL))
    }
}
