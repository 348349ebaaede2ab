//! Per-partition bookkeeping for actors that finish records out of order but must store their
//! positions in order: the shard (a decision is finished when the log acks it) and the audit
//! worker (a task is finished when it is done or dead).
//!
//! A record's position is stored only once it and every record before it in its partition are
//! finished, so a crash redoes exactly the unfinished ones. A revoked partition with unfinished
//! records keeps a share of the revocation's [`Release`] until they finish; the log moves the
//! partition only when every share is dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use infra::log::{LogError, Positions, Release};

use crate::contract::PartitionStatus;

/// One assigned partition.
#[derive(Debug, Default)]
struct Lane {
    /// Offsets taken and not yet stored, in order, with whether each is finished.
    unfinished: VecDeque<(i64, bool)>,
    /// Last stored position in this run.
    position_opt: Option<i64>,
    /// Held while revoking; dropped (released) when the lane's records finish.
    revoking_opt: Option<Rc<Release>>,
}

/// The lanes of an actor's assigned partitions.
#[derive(Debug, Default)]
pub struct Lanes {
    lanes: BTreeMap<i32, Lane>,
    /// Positions stored since the last [`Lanes::take_stored`], kept after their lane goes, so
    /// a revoked partition's last position still reaches whoever reports positions elsewhere
    /// (the replicator's checkpoints). At most one entry per partition.
    stored: BTreeMap<i32, i64>,
}

impl Lanes {
    /// Adds lanes for newly assigned partitions.
    pub fn assign(&mut self, partitions: Vec<i32>) {
        for partition in partitions {
            self.lanes.entry(partition).or_default();
        }
    }

    /// Takes partitions away: idle lanes go at once, busy ones keep a share of `release` until
    /// their records finish.
    pub fn revoke(&mut self, partitions: Vec<i32>, release: Release) {
        let release = Rc::new(release);
        for partition in partitions {
            let busy = self
                .lanes
                .get(&partition)
                .is_some_and(|lane| !lane.unfinished.is_empty());
            if busy {
                if let Some(lane) = self.lanes.get_mut(&partition) {
                    lane.revoking_opt = Some(release.clone());
                }
            } else {
                self.lanes.remove(&partition);
            }
        }
        // Lanes still busy hold a share; with none, this drop releases at once.
    }

    /// True when `partition` is being handed over (its next owner handles new records).
    pub fn is_revoking(&self, partition: i32) -> bool {
        self.lanes
            .get(&partition)
            .is_some_and(|lane| lane.revoking_opt.is_some())
    }

    /// True when `partition` is assigned.
    pub fn contains(&self, partition: i32) -> bool {
        self.lanes.contains_key(&partition)
    }

    /// Records that `offset` of `partition` was taken.
    pub fn start(&mut self, partition: i32, offset: i64) {
        self.lanes
            .entry(partition)
            .or_default()
            .unfinished
            .push_back((offset, false));
    }

    /// Records that `offset` finished and stores the position of the finished prefix. Returns
    /// whether a revoked lane thereby finished (and was released). A position refused because
    /// the partition is no longer ours is logged, not an error: its next owner redoes the
    /// records, which every consumer here tolerates.
    pub fn finish(
        &mut self,
        partition: i32,
        offset: i64,
        positions_opt: Option<&Arc<dyn Positions>>,
    ) -> Result<bool, LogError> {
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return Ok(false);
        };
        if let Some(entry) = lane.unfinished.iter_mut().find(|(o, _)| *o == offset) {
            entry.1 = true;
        }
        let mut done_opt = None;
        while let Some(&(offset, true)) = lane.unfinished.front() {
            done_opt = Some(offset);
            lane.unfinished.pop_front();
        }
        if let Some(done) = done_opt {
            let stored = match positions_opt {
                Some(positions) => positions.store(partition, done),
                None => Err(LogError::NotAssigned(partition)),
            };
            match stored {
                Ok(()) => {
                    lane.position_opt = Some(done);
                    self.stored.insert(partition, done);
                }
                Err(LogError::NotAssigned(partition)) => {
                    tracing::warn!(partition, "position not stored: partition no longer ours");
                }
                Err(error) => return Err(error),
            }
        }
        let released = lane.revoking_opt.is_some() && lane.unfinished.is_empty();
        if released {
            self.lanes.remove(&partition);
        }
        Ok(released)
    }

    /// Drops every lane (and with them their revocation shares).
    pub fn clear(&mut self) {
        self.lanes.clear();
        self.stored.clear();
    }

    /// The positions stored since the last call (partition -> last finished offset).
    pub fn take_stored(&mut self) -> BTreeMap<i32, i64> {
        std::mem::take(&mut self.stored)
    }

    /// Each lane's status, with the log's lag per partition.
    pub fn statuses(&self, lag: &HashMap<i32, i64>) -> Vec<PartitionStatus> {
        self.lanes
            .iter()
            .map(|(partition, lane)| PartitionStatus {
                partition: *partition,
                position_opt: lane.position_opt,
                lag_opt: lag.get(partition).copied(),
                in_flight: lane.unfinished.len(),
                buffered: 0,
                revoking: lane.revoking_opt.is_some(),
            })
            .collect()
    }
}
