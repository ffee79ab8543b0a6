//! [`StallWatch`]: tells a consumer-group member that its group has stopped making progress.
//!
//! After a broker crash during a rebalance a group can be left "formed" with an empty
//! assignment: its member is healthy, polls return nothing, and records pile up that nobody
//! consumes (issue #20). librdkafka does not notice (it has no partitions to fetch), so the
//! member watches the group itself: every check (`stall_timeout / 3`) measures the group's
//! standing on every partition of its topics. The group makes progress when nothing is left to
//! consume or when its committed offsets moved since the previous check. When records are left
//! and the offsets have not moved for `stall_timeout`, the member is stalled: the consumer
//! reports it (`Unavailable`, naming the partitions and whether it has any assigned), and its
//! owner re-joins the group with a new consumer and reports not ready meanwhile.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::lag::GroupStanding;

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Nothing left to consume, or the committed offsets moved, or not stalled for long enough.
    Healthy,
    /// Records left and no committed offset moved for `stall_timeout`: why, for logs and
    /// `/readyz`.
    Stalled { reason: String },
}

#[derive(Debug)]
pub struct StallWatch {
    stall_timeout: Duration,
    check_every: Duration,
    last_check: Option<Instant>,
    /// The last time the group was seen making progress (or the watch started).
    progress_at: Instant,
    /// Committed offsets at the last check, per (topic, partition); `None` before the first.
    committed: Option<BTreeMap<(String, i32), Option<i64>>>,
}

impl StallWatch {
    pub fn new(stall_timeout: Duration, now: Instant) -> Self {
        Self {
            stall_timeout,
            check_every: (stall_timeout / 3).max(Duration::from_millis(100)),
            last_check: None,
            progress_at: now,
            committed: None,
        }
    }

    /// Whether a check is due (the first one after `stall_timeout / 3`).
    pub fn is_due(&self, now: Instant) -> bool {
        let since = self.last_check.unwrap_or(self.progress_at);
        now.saturating_duration_since(since) >= self.check_every
    }

    /// A check could not measure the group (the broker did not answer): no verdict, the next
    /// check comes after another interval. The broker being down is readiness's business.
    pub fn unmeasured(&mut self, now: Instant) {
        self.last_check = Some(now);
    }

    /// Records one measurement and judges it.
    pub fn observe(&mut self, now: Instant, standing: &GroupStanding) -> Progress {
        self.last_check = Some(now);
        let committed: BTreeMap<(String, i32), Option<i64>> = standing
            .partitions
            .iter()
            .map(|partition| {
                (
                    (partition.topic.clone(), partition.partition),
                    partition.committed,
                )
            })
            .collect();
        // The first measurement has nothing to compare with: the stall counts from the start.
        let moved = self
            .committed
            .as_ref()
            .is_some_and(|previous| *previous != committed);
        self.committed = Some(committed);
        let lag = standing.total_lag();
        if lag == 0 || moved {
            self.progress_at = now;
            return Progress::Healthy;
        }
        let stalled_for = now.saturating_duration_since(self.progress_at);
        if stalled_for < self.stall_timeout {
            return Progress::Healthy;
        }
        let behind: Vec<String> = standing
            .partitions
            .iter()
            .filter(|partition| partition.lag > 0)
            .map(|partition| format!("{}/{}", partition.topic, partition.partition))
            .collect();
        let assignment = match standing.assigned_partitions {
            0 => "no partitions assigned to this member".to_owned(),
            count => format!("{count} partitions assigned to this member"),
        };
        Progress::Stalled {
            reason: format!(
                "consumer group stalled: {lag} records behind on {} with no commit for {}s \
                 ({assignment})",
                behind.join(", "),
                stalled_for.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::lag::PartitionStanding;

    fn standing(assigned_partitions: usize, committed: i64, lag: u64) -> GroupStanding {
        GroupStanding {
            assigned_partitions,
            partitions: vec![
                PartitionStanding {
                    topic: "message.sent".to_owned(),
                    partition: 0,
                    committed: Some(committed),
                    lag,
                },
                PartitionStanding {
                    topic: "message.sent".to_owned(),
                    partition: 1,
                    committed: None,
                    lag: 0,
                },
            ],
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[test]
    fn a_member_without_partitions_while_the_group_lags_is_stalled_after_the_timeout() {
        let start = Instant::now();
        let mut watch = StallWatch::new(TIMEOUT, start);
        assert!(!watch.is_due(start + Duration::from_secs(9)));
        assert!(watch.is_due(start + Duration::from_secs(10)));
        // The group's offsets stay at 990 while 1 066 records wait: the state.
        let stuck = standing(0, 990, 1066);
        assert_eq!(
            watch.observe(start + Duration::from_secs(10), &stuck),
            Progress::Healthy
        );
        assert_eq!(
            watch.observe(start + Duration::from_secs(20), &stuck),
            Progress::Healthy
        );
        match watch.observe(start + Duration::from_secs(30), &stuck) {
            Progress::Stalled { reason } => {
                assert!(reason.contains("1066 records behind"), "{reason}");
                assert!(reason.contains("message.sent/0"), "{reason}");
                assert!(!reason.contains("message.sent/1"), "{reason}");
                assert!(reason.contains("no partitions assigned"), "{reason}");
            }
            Progress::Healthy => panic!("a group with lag and no commit for 30 s is stalled"),
        }
    }

    #[test]
    fn moving_offsets_or_no_lag_is_progress() {
        let start = Instant::now();
        let mut watch = StallWatch::new(TIMEOUT, start);
        let mut now = start;
        for step in 0..10_i64 {
            now += Duration::from_secs(10);
            // Another member consumes: the offsets move, the lag stays (traffic keeps coming).
            assert_eq!(
                watch.observe(now, &standing(0, 990 + step, 50)),
                Progress::Healthy
            );
        }
        for _ in 0..10 {
            now += Duration::from_secs(10);
            // Idle: nothing to consume, nothing committed.
            assert_eq!(watch.observe(now, &standing(1, 2000, 0)), Progress::Healthy);
        }
        watch.unmeasured(now + Duration::from_secs(10));
        assert!(!watch.is_due(now + Duration::from_secs(19)));
        assert!(matches!(
            watch.observe(now + Duration::from_secs(40), &standing(1, 2000, 5)),
            Progress::Stalled { .. }
        ));
    }
}
