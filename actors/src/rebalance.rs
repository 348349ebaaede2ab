//! Partition assignment changes, forwarded from librdkafka's rebalance callback (which runs inside
//! a consumer poll) to the owning loop as plain messages, so the loop reacts in its own task.

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;

/// A change of this consumer's partitions.
#[derive(Debug)]
pub enum PartitionChange {
    /// Partitions newly assigned.
    Assigned(Vec<i32>),
    /// Partitions about to be taken away.
    Revoked(Vec<i32>),
}

/// Consumer context that forwards rebalances.
#[derive(Debug)]
pub struct RebalanceForwarder {
    /// Where changes go; a closed receiver just drops them (the loop is gone anyway).
    pub changes: mpsc::UnboundedSender<PartitionChange>,
}

impl RebalanceForwarder {
    /// A forwarder and the receiving end of its changes.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<PartitionChange>) {
        let (changes, receiver) = mpsc::unbounded_channel();
        (RebalanceForwarder { changes }, receiver)
    }
}

impl ClientContext for RebalanceForwarder {}

impl ConsumerContext for RebalanceForwarder {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let _ = self
                .changes
                .send(PartitionChange::Revoked(partitions(list)));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let _ = self
                .changes
                .send(PartitionChange::Assigned(partitions(list)));
        }
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<i32> {
    list.elements()
        .iter()
        .map(|element| element.partition())
        .collect()
}
