//! [`Jobs`] over MongoDB: the `jobs` collection, one document per job, written by the nodes
//! themselves (durable cluster mode): `{_id: job id, kind, state, job}` where `job` is the
//! record's JSON and `kind` and `state` serve `unfinished` (index `kind_state`). Creating is an
//! upsert with `$setOnInsert`, so creating a job twice changes nothing; an update reads the
//! job and replaces it (only the job's owner node updates it).

use async_trait::async_trait;
use mongodb::bson::{doc, Document};
use ports::{Job, JobId, JobKind, JobState, JobUpdate, Jobs, PortError, Service};

use super::client::within;
use super::MongoStore;

/// The collection of job records.
pub const JOBS: &str = "jobs";

fn corrupt(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PortError {
    PortError::corrupt(Service::MongoDb, "job record", error)
}

/// The fields of a job's document (all but `_id`).
fn fields_of(job: &Job) -> Result<Document, PortError> {
    let json = serde_json::to_string(job).map_err(PortError::internal)?;
    Ok(doc! {
        "kind": job.kind.as_str(),
        "state": job.state.as_str(),
        "job": json,
    })
}

fn job_of(document: &Document) -> Result<Job, PortError> {
    let json = document.get_str("job").map_err(corrupt)?;
    serde_json::from_str(json).map_err(corrupt)
}

#[async_trait]
impl Jobs for MongoStore {
    async fn create(&self, job: &Job) -> Result<(), PortError> {
        let collection = self.database.collection::<Document>(JOBS);
        let upsert = collection
            .update_one(
                doc! { "_id": job.job_id.to_string() },
                doc! { "$setOnInsert": fields_of(job)? },
            )
            .upsert(true);
        within(self.config.operation_timeout, upsert).await?;
        Ok(())
    }

    async fn get(&self, job_id: &JobId) -> Result<Option<Job>, PortError> {
        let found = self
            .find_sorted(
                JOBS,
                doc! { "_id": job_id.to_string() },
                doc! { "job": 1 },
                None,
                Some(1),
            )
            .await?;
        found.first().map(job_of).transpose()
    }

    async fn update(&self, job_id: &JobId, update: JobUpdate) -> Result<Option<Job>, PortError> {
        let Some(mut job) = self.get(job_id).await? else {
            return Ok(None);
        };
        update.apply_to(&mut job);
        let collection = self.database.collection::<Document>(JOBS);
        let replace = collection.update_one(
            doc! { "_id": job_id.to_string() },
            doc! { "$set": fields_of(&job)? },
        );
        within(self.config.operation_timeout, replace).await?;
        Ok(Some(job))
    }

    async fn unfinished(&self, kind: JobKind) -> Result<Vec<Job>, PortError> {
        let filter = doc! { "kind": kind.as_str(), "state": JobState::Running.as_str() };
        let found = self
            .find_sorted(JOBS, filter, doc! { "job": 1 }, None, None)
            .await?;
        let mut unfinished = found.iter().map(job_of).collect::<Result<Vec<_>, _>>()?;
        unfinished.sort_by_key(|job| (job.created_at, job.job_id));
        Ok(unfinished)
    }
}
