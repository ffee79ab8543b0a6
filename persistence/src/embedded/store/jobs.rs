//! [`Jobs`] over the embedded store: the `jobs` table, job id → serde_json of the [`Job`]. A
//! node keeps few jobs: `unfinished` scans them all.

use std::sync::Arc;

use async_trait::async_trait;
use ports::{Job, JobId, JobKind, JobState, JobUpdate, Jobs, PortError};
use redb::{ReadableTable, TableDefinition};

use super::EmbeddedStore;
use crate::error::{run_blocking, PersistenceError};

/// job id → serde_json of the `Job`.
pub(super) const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");

#[async_trait]
impl Jobs for EmbeddedStore {
    async fn create(&self, job: &Job) -> Result<(), PortError> {
        let database = Arc::clone(&self.database);
        let job_id = job.job_id.to_string();
        let bytes = serde_json::to_vec(job).map_err(PortError::internal)?;
        run_blocking(move || {
            let write = database.begin_write()?;
            {
                let mut table = write.open_table(JOBS)?;
                if table.get(job_id.as_str())?.is_none() {
                    table.insert(job_id.as_str(), bytes.as_slice())?;
                }
            }
            write.commit()?;
            Ok::<_, PersistenceError>(())
        })
        .await
    }

    async fn get(&self, job_id: &JobId) -> Result<Option<Job>, PortError> {
        let job_id = job_id.to_string();
        self.read(move |read| {
            let table = read.open_table(JOBS)?;
            let found = table.get(job_id.as_str())?;
            Ok(match found {
                Some(bytes) => Some(serde_json::from_slice(bytes.value())?),
                None => None,
            })
        })
        .await
    }

    async fn update(&self, job_id: &JobId, update: JobUpdate) -> Result<Option<Job>, PortError> {
        let database = Arc::clone(&self.database);
        let job_id = job_id.to_string();
        run_blocking(move || {
            let write = database.begin_write()?;
            let updated = {
                let mut table = write.open_table(JOBS)?;
                let stored: Option<Job> = match table.get(job_id.as_str())? {
                    Some(bytes) => Some(serde_json::from_slice(bytes.value())?),
                    None => None,
                };
                let Some(mut job) = stored else {
                    return Ok(None);
                };
                update.apply_to(&mut job);
                table.insert(job_id.as_str(), serde_json::to_vec(&job)?.as_slice())?;
                job
            };
            write.commit()?;
            Ok::<_, PersistenceError>(Some(updated))
        })
        .await
    }

    async fn unfinished(&self, kind: JobKind) -> Result<Vec<Job>, PortError> {
        self.read(move |read| {
            let table = read.open_table(JOBS)?;
            let mut unfinished = Vec::new();
            for row in table.iter()? {
                let (_, bytes) = row?;
                let job: Job = serde_json::from_slice(bytes.value())?;
                if job.kind == kind && job.state == JobState::Running {
                    unfinished.push(job);
                }
            }
            unfinished.sort_by_key(|job| (job.created_at, job.job_id));
            Ok(unfinished)
        })
        .await
    }
}
