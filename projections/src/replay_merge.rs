//! The order in which a replay folds the events of several decisions partitions (pure; no I/O).
//!
//! Within a partition the order is the log's: offsets ascending. Across partitions the log records
//! none: the live projector applied partitions as their records arrived, and its result depends on
//! that interleaving only when two partitions share a dedup key or a source (I6 assumes they do
//! not: the topic key is `<tenant>/<pcs_id>`, so it matters after a change of the partition count
//! or for a record produced under another key). A replay must still be a function of the log, so
//! it fixes one interleaving: the next event is the partition head with the smallest
//! `(decided_at_ms, partition)`. That is the order the live projector most likely saw (a shard
//! produces each decision right after deciding it), and it does not depend on the order in which
//! the reader happens to receive the partitions.
//!
//! A head can only be chosen once every partition still being read has one, so
//! [`PartitionMerge::pop`] answers `None` until then. Memory: the events the reader is ahead by on
//! some partitions; typically a few fetches, at worst the whole topic (a broker that sends one
//! partition after the other).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use events::DecisionEvent;

/// Events of several partitions, handed out in the replay's order.
#[derive(Debug, Default)]
pub struct PartitionMerge {
    /// Events received and not yet handed out, `(offset, event)` in offset order, by partition.
    queues: BTreeMap<i32, VecDeque<(i64, DecisionEvent)>>,
    /// Partitions that may still receive events: none of them may be passed over while empty.
    open: BTreeSet<i32>,
    /// Events in `queues`.
    buffered: usize,
}

impl PartitionMerge {
    /// A merge that waits for each of `partitions` (every partition that has events to read)
    /// until it is [closed](Self::close).
    pub fn new(partitions: impl IntoIterator<Item = i32>) -> Self {
        PartitionMerge {
            open: partitions.into_iter().collect(),
            ..PartitionMerge::default()
        }
    }

    /// Adds the next event of `partition` (offsets ascending within a partition).
    pub fn push(&mut self, partition: i32, offset: i64, event: DecisionEvent) {
        let queue = self.queues.entry(partition).or_default();
        debug_assert!(queue.back().is_none_or(|(last, _)| *last < offset));
        queue.push_back((offset, event));
        self.buffered += 1;
    }

    /// `partition` receives no more events.
    pub fn close(&mut self, partition: i32) {
        self.open.remove(&partition);
    }

    /// The next event in replay order as `(partition, offset, event)`, or `None` while a
    /// partition still being read has nothing buffered (or nothing is left).
    pub fn pop(&mut self) -> Option<(i32, i64, DecisionEvent)> {
        let waiting = self
            .open
            .iter()
            .any(|partition| self.queues.get(partition).is_none_or(VecDeque::is_empty));
        if waiting {
            return None;
        }
        let partition = self
            .queues
            .iter()
            .filter_map(|(partition, queue)| {
                queue
                    .front()
                    .map(|(_, event)| (event.decided_at_ms, *partition))
            })
            .min()?
            .1;
        let queue = self.queues.get_mut(&partition)?;
        let (offset, event) = queue.pop_front()?;
        if queue.is_empty() && !self.open.contains(&partition) {
            self.queues.remove(&partition);
        }
        self.buffered -= 1;
        Some((partition, offset, event))
    }

    /// Events received and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buffered
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use events::{SourceCoordinates, SubmissionSource, Verdict};
    use proptest::prelude::*;

    fn event(decided_at_ms: i64) -> DecisionEvent {
        DecisionEvent {
            source: SourceCoordinates {
                topic: "s".into(),
                partition: 0,
                offset: 0,
            },
            submission_source: SubmissionSource::Gateway,
            tenant: "t".into(),
            pcs_id_opt: None,
            signed_digest_opt: None,
            verdict: Verdict::Malformed { error: "e".into() },
            params_version: 1,
            key_id_opt: None,
            region: "r".into(),
            received_at_ms: decided_at_ms,
            decided_at_ms,
            traceparent_opt: None,
        }
    }

    fn drain(merge: &mut PartitionMerge) -> Vec<(i32, i64)> {
        std::iter::from_fn(|| merge.pop())
            .map(|(partition, offset, _)| (partition, offset))
            .collect()
    }

    #[test]
    fn waits_for_every_open_partition_then_takes_the_earliest_decision() {
        let mut merge = PartitionMerge::new([0, 1]);
        merge.push(0, 0, event(20));
        merge.push(0, 1, event(10));
        assert!(
            merge.pop().is_none(),
            "partition 1 may still bring an earlier one"
        );
        merge.push(1, 0, event(15));
        // Partition 0's offset 1 was decided earlier, but comes after its offset 0.
        assert_eq!(drain(&mut merge), vec![(1, 0)]);
        merge.close(1);
        assert_eq!(drain(&mut merge), vec![(0, 0), (0, 1)]);
        assert_eq!(merge.buffered(), 0);
    }

    #[test]
    fn ties_go_to_the_lower_partition() {
        let mut merge = PartitionMerge::new([3, 1]);
        merge.push(3, 7, event(5));
        merge.push(1, 9, event(5));
        merge.close(3);
        merge.close(1);
        assert_eq!(drain(&mut merge), vec![(1, 9), (3, 7)]);
    }

    /// Per partition, the `decided_at_ms` of each event (offsets 0, 1, ...).
    fn partitions() -> impl Strategy<Value = Vec<Vec<i64>>> {
        prop::collection::vec(prop::collection::vec(0i64..50, 0..12), 1..5)
    }

    proptest! {
        /// However the reader interleaves the partitions (and whenever it pops), the order is the
        /// one of reading everything first, and each partition keeps its offset order.
        #[test]
        fn the_order_does_not_depend_on_arrival(
            times in partitions(),
            arrival in prop::collection::vec(any::<prop::sample::Index>(), 0..80),
            pop_every in 1usize..5,
        ) {
            let all: Vec<i32> = (0..times.len() as i32).collect();
            let mut reference = PartitionMerge::new(all.clone());
            for (partition, decided) in times.iter().enumerate() {
                for (offset, at) in decided.iter().enumerate() {
                    reference.push(partition as i32, offset as i64, event(*at));
                }
                reference.close(partition as i32);
            }
            let expected = drain(&mut reference);

            let mut merge = PartitionMerge::new(all.clone());
            let mut next = vec![0usize; times.len()];
            let mut got = Vec::new();
            let mut choices = arrival.into_iter();
            let mut step = 0;
            loop {
                let pending: Vec<usize> =
                    (0..times.len()).filter(|p| next[*p] < times[*p].len()).collect();
                if pending.is_empty() {
                    break;
                }
                let partition = match choices.next() {
                    Some(index) => *index.get(&pending),
                    None => pending[0],
                };
                merge.push(partition as i32, next[partition] as i64, event(times[partition][next[partition]]));
                next[partition] += 1;
                if next[partition] == times[partition].len() {
                    merge.close(partition as i32);
                }
                step += 1;
                if step % pop_every == 0 {
                    got.extend(drain(&mut merge));
                }
            }
            for (partition, decided) in times.iter().enumerate() {
                if decided.is_empty() {
                    merge.close(partition as i32);
                }
            }
            got.extend(drain(&mut merge));
            prop_assert_eq!(&got, &expected);
            let total: usize = times.iter().map(Vec::len).sum();
            prop_assert_eq!(got.len(), total);
            for partition in all {
                let offsets: Vec<i64> =
                    got.iter().filter(|(p, _)| *p == partition).map(|(_, o)| *o).collect();
                prop_assert!(offsets.windows(2).all(|pair| pair[0] < pair[1]));
            }
        }
    }
}
