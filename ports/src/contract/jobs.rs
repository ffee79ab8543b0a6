//! Contract of [`Jobs`].

use std::future::Future;

use wire::{ConversationId, NodeId, UserId};

use super::fixtures::unique;
use super::Fixture;
use crate::{Job, JobId, JobKind, JobOutcome, JobState, JobUpdate, Jobs};

/// Runs every jobs case, each on a fresh adapter from `make`.
pub async fn jobs_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn Jobs>>,
{
    jobs_are_created_read_and_updated(make().await).await;
    unfinished_lists_running_jobs_of_a_kind_oldest_first(make().await).await;
}

fn new_job(kind: JobKind) -> Job {
    Job::start(
        kind,
        UserId::new(unique("user")),
        NodeId::new(unique("node")),
    )
}

async fn stored(jobs: &dyn Jobs, job_id: &JobId) -> Job {
    jobs.get(job_id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("job {job_id} is stored"))
}

async fn jobs_are_created_read_and_updated(fixture: Fixture<dyn Jobs>) {
    let jobs = fixture.port;
    let job = new_job(JobKind::Erasure);
    jobs.create(&job).await.expect("create");
    assert_eq!(stored(jobs.as_ref(), &job.job_id).await, job);
    let mut again = job.clone();
    again.state = JobState::Failed;
    jobs.create(&again).await.expect("create again");
    assert_eq!(
        stored(jobs.as_ref(), &job.job_id).await,
        job,
        "creating an existing job changes nothing"
    );
    assert_eq!(jobs.get(&JobId::new()).await.expect("get unknown"), None);

    let so_far = JobOutcome {
        held_back: vec![ConversationId::new(unique("held"))],
        ..JobOutcome::default()
    };
    let progress = JobUpdate::progress(Some("conversation-7".to_owned()), so_far.clone());
    let updated = jobs
        .update(&job.job_id, progress)
        .await
        .expect("update")
        .expect("the job exists");
    assert_eq!(updated.state, JobState::Running);
    assert_eq!(updated.cursor.as_deref(), Some("conversation-7"));
    assert_eq!(updated.outcome, so_far);
    assert!(updated.updated_at >= job.updated_at, "updated_at moves on");
    assert_eq!(
        (
            updated.kind,
            &updated.user_id,
            &updated.owner,
            updated.created_at
        ),
        (job.kind, &job.user_id, &job.owner, job.created_at),
        "an update keeps what the job is"
    );
    assert_eq!(stored(jobs.as_ref(), &job.job_id).await, updated);

    let failed = jobs
        .update(&job.job_id, JobUpdate::failed("store unavailable"))
        .await
        .expect("fail")
        .expect("the job exists");
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.cursor, None);
    assert_eq!(failed.outcome.error.as_deref(), Some("store unavailable"));
    assert_eq!(stored(jobs.as_ref(), &job.job_id).await, failed);
    assert_eq!(
        jobs.update(&JobId::new(), JobUpdate::failed("nothing"))
            .await
            .expect("update unknown"),
        None,
        "updating an unknown job creates none"
    );
}

async fn unfinished_of(jobs: &dyn Jobs, kind: JobKind, ours: &[&Job]) -> Vec<JobId> {
    let unfinished = jobs.unfinished(kind).await.expect("unfinished");
    unfinished
        .iter()
        .map(|job| job.job_id)
        .filter(|job_id| ours.iter().any(|job| job.job_id == *job_id))
        .collect()
}

async fn unfinished_lists_running_jobs_of_a_kind_oldest_first(fixture: Fixture<dyn Jobs>) {
    let jobs = fixture.port;
    let first = new_job(JobKind::Export);
    let erasure = new_job(JobKind::Erasure);
    let second = new_job(JobKind::Export);
    let finished = new_job(JobKind::Export);
    // Created newest first: the order of `unfinished` is the jobs' own, not the writes'.
    for job in [&finished, &second, &erasure, &first] {
        jobs.create(job).await.expect("create");
    }
    let outcome = JobOutcome {
        blob_key: Some(unique("exports/file")),
        ..JobOutcome::default()
    };
    let done = jobs
        .update(&finished.job_id, JobUpdate::done(outcome.clone()))
        .await
        .expect("done")
        .expect("the job exists");
    assert_eq!((done.state, done.outcome), (JobState::Done, outcome));
    let file_expired = JobOutcome {
        file_expired_at: Some(chrono::Utc::now()),
        ..JobOutcome::default()
    };
    jobs.update(&finished.job_id, JobUpdate::done(file_expired.clone()))
        .await
        .expect("expire the file");
    assert_eq!(
        stored(jobs.as_ref(), &finished.job_id).await.outcome,
        file_expired,
        "an expired file's time is kept to the nanosecond"
    );
    let ours = [&first, &erasure, &second, &finished];
    assert_eq!(
        unfinished_of(jobs.as_ref(), JobKind::Export, &ours).await,
        vec![first.job_id, second.job_id],
        "running exports, oldest first; a done one is finished"
    );
    assert_eq!(
        unfinished_of(jobs.as_ref(), JobKind::Erasure, &ours).await,
        vec![erasure.job_id]
    );
}
