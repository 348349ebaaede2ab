//! Where a gateway request waits for the committed decision of its own record.
//!
//! A request registers its WAL coordinates after Kafka acks the produce; the projector publishes
//! the applied result of every record that came through a gateway (no request waits for the
//! others). Either may come first (a fast projector can commit before the produce ack
//! reaches the gateway), so results with no waiter are kept for a short while, bounded in count.
//! Results from projectors in other processes arrive as coordinates only (Postgres NOTIFY); a
//! waiter woken that way reads its result from the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::SourceCoordinates;
use projections::Applied;
use tokio::sync::oneshot;

/// How long an unclaimed result is kept for a late waiter.
const KEEP_UNCLAIMED: Duration = Duration::from_secs(30);
/// Most unclaimed results kept (oldest dropped first).
const MAX_UNCLAIMED: usize = 100_000;

/// What a waiter receives.
#[derive(Debug, Clone)]
pub enum Wakeup {
    /// The projector in this process applied it: here is the answer.
    Applied(Box<Applied>),
    /// A projector elsewhere committed it: read it with `result_for_source`.
    Committed,
}

/// Shared registry of waiters and recent unclaimed results.
#[derive(Debug, Clone, Default)]
pub struct DecisionBus {
    inner: Arc<Mutex<BusState>>,
}

#[derive(Debug, Default)]
struct BusState {
    /// Requests waiting, by coordinates.
    waiters: HashMap<SourceCoordinates, oneshot::Sender<Wakeup>>,
    /// Results nobody waited for yet.
    unclaimed: HashMap<SourceCoordinates, Wakeup>,
    /// Arrival order of `unclaimed`, for expiry.
    unclaimed_order: VecDeque<(Instant, SourceCoordinates)>,
}

impl BusState {
    fn deliver(&mut self, source: SourceCoordinates, wakeup: Wakeup) {
        match self.waiters.remove(&source) {
            Some(sender) => {
                let _ = sender.send(wakeup);
            }
            None => {
                // A local `Applied` is better than a bare `Committed`; never downgrade.
                if matches!(wakeup, Wakeup::Committed) && self.unclaimed.contains_key(&source) {
                    return;
                }
                self.unclaimed_order
                    .push_back((Instant::now(), source.clone()));
                self.unclaimed.insert(source, wakeup);
                self.expire();
            }
        }
    }

    fn expire(&mut self) {
        while let Some((at, _)) = self.unclaimed_order.front() {
            let too_many = self.unclaimed_order.len() > MAX_UNCLAIMED;
            if !too_many && at.elapsed() < KEEP_UNCLAIMED {
                break;
            }
            if let Some((_, source)) = self.unclaimed_order.pop_front() {
                self.unclaimed.remove(&source);
            }
        }
    }
}

impl DecisionBus {
    /// Registers interest in `source`; resolves at once when the result already arrived.
    pub fn wait_for(&self, source: SourceCoordinates) -> oneshot::Receiver<Wakeup> {
        let (sender, receiver) = oneshot::channel();
        let mut state = self.lock();
        match state.unclaimed.remove(&source) {
            Some(wakeup) => {
                let _ = sender.send(wakeup);
            }
            None => {
                state.waiters.insert(source, sender);
            }
        }
        receiver
    }

    /// Forgets a waiter that gave up (deadline passed).
    pub fn cancel(&self, source: &SourceCoordinates) {
        self.lock().waiters.remove(source);
    }

    /// Publishes results applied by this process's projector.
    pub fn publish_applied(&self, applied: impl IntoIterator<Item = Applied>) {
        let mut state = self.lock();
        for result in applied {
            let source = result.source.clone();
            state.deliver(source, Wakeup::Applied(Box::new(result)));
        }
    }

    /// Publishes coordinates committed by any projector (from Postgres NOTIFY).
    pub fn publish_committed(&self, source: SourceCoordinates) {
        self.lock().deliver(source, Wakeup::Committed);
    }

    /// Requests currently waiting.
    pub fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BusState> {
        // A panic while holding this lock cannot leave the maps inconsistent; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords(offset: i64) -> SourceCoordinates {
        SourceCoordinates {
            topic: "t".into(),
            partition: 0,
            offset,
        }
    }

    #[tokio::test]
    async fn result_before_or_after_the_waiter() {
        let bus = DecisionBus::default();
        let early = bus.wait_for(coords(1));
        bus.publish_committed(coords(1));
        assert!(matches!(early.await.unwrap(), Wakeup::Committed));

        bus.publish_committed(coords(2));
        let late = bus.wait_for(coords(2));
        assert!(matches!(late.await.unwrap(), Wakeup::Committed));
        assert_eq!(bus.waiting(), 0);
    }
}
