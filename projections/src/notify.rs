//! Commit notifications: `pg_notify('<schema>_decided', payload)` inside the batch transaction, so
//! listeners in other processes hear about a decision only once it is committed.
//!
//! Payload: `topic:partition:offset` items joined by `,`, split into chunks below
//! [`MAX_PAYLOAD_BYTES`] (Postgres caps a payload at 8000 bytes). Kafka topic names never contain
//! `:` or `,`; parsing splits each item from the right anyway.
//!
//! A [`DecidedListener`] holds a dedicated connection (not pooled). When it ends (`next` returns
//! `None`) notifications may have been missed: the caller reconnects and checks its waiters with
//! `result_for_source`. The same applies to a waiter that registers after the commit: register
//! first, then check `result_for_source`, then wait.

use std::future::poll_fn;

use events::SourceCoordinates;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::error::{AttemptError, StoreError};

/// Largest payload chunk, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 7_900;

/// Splits coordinates into payload chunks of at most [`MAX_PAYLOAD_BYTES`].
pub fn encode_payloads<'a>(
    sources: impl IntoIterator<Item = &'a SourceCoordinates>,
) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for source in sources {
        let item = format!("{}:{}:{}", source.topic, source.partition, source.offset);
        let needed = if current.is_empty() {
            item.len()
        } else {
            item.len() + 1
        };
        if !current.is_empty() && current.len() + needed > MAX_PAYLOAD_BYTES {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&item);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Parses one payload; malformed items are skipped (and logged).
pub fn decode_payload(payload: &str) -> Vec<SourceCoordinates> {
    payload
        .split(',')
        .filter(|item| !item.is_empty())
        .filter_map(|item| {
            let mut parts = item.rsplitn(3, ':');
            let offset = parts.next()?.parse().ok();
            let partition = parts.next()?.parse().ok();
            let topic = parts.next();
            match (topic, partition, offset) {
                (Some(topic), Some(partition), Some(offset)) if !topic.is_empty() => {
                    Some(SourceCoordinates {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                    })
                }
                _ => {
                    tracing::warn!(item, "ignoring malformed decided notification item");
                    None
                }
            }
        })
        .collect()
}

/// Sends the notifications of a batch inside its transaction.
pub(crate) async fn send(
    transaction: &deadpool_postgres::Transaction<'_>,
    channel: &str,
    sources: impl IntoIterator<Item = &SourceCoordinates>,
) -> Result<(), AttemptError> {
    let payloads = encode_payloads(sources);
    if payloads.is_empty() {
        return Ok(());
    }
    let statement = transaction
        .prepare_cached("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .await?;
    transaction
        .execute(&statement, &[&channel, &payloads])
        .await?;
    Ok(())
}

/// Yields the source coordinates of committed decisions, from a dedicated LISTEN connection.
#[derive(Debug)]
pub struct DecidedListener {
    /// Coordinates parsed by the connection task.
    receiver: mpsc::Receiver<SourceCoordinates>,
    /// Keeps the connection open (dropping every client closes it).
    _client: tokio_postgres::Client,
    /// Drives the connection; aborted on drop.
    task: JoinHandle<()>,
    /// Channel listened on.
    channel: String,
}

impl DecidedListener {
    /// Next committed source; `None` once the connection is gone (reconnect, then re-check
    /// pending waiters with `result_for_source`).
    pub async fn next(&mut self) -> Option<SourceCoordinates> {
        self.receiver.recv().await
    }

    /// The channel listened on.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Drop for DecidedListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Wakes a ring follower when the ring state changes: `flk migrate` notifies inside the
/// transaction that bumps `ring_state`, so the wake-up comes only once the change is visible.
/// The payload (the new state version) is only informative; the follower reads the row.
#[derive(Debug)]
pub struct RingListener {
    /// One item per notification.
    receiver: mpsc::Receiver<()>,
    /// Keeps the connection open.
    _client: tokio_postgres::Client,
    /// Drives the connection; aborted on drop.
    task: JoinHandle<()>,
}

impl RingListener {
    /// Resolves at the next ring change; `None` once the connection is gone (changes may have
    /// been missed: poll, then reconnect).
    pub async fn changed(&mut self) -> Option<()> {
        self.receiver.recv().await
    }
}

impl Drop for RingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// LISTENs on a schema's ring channel.
pub(crate) async fn listen_ring(
    pg_config: &tokio_postgres::Config,
    channel: &str,
) -> Result<RingListener, StoreError> {
    // Notifications only wake the follower, so one pending wake-up is enough; a full queue
    // drops the rest (the follower reads the latest state anyway).
    let (client, receiver, task) = listen_with(pg_config, channel, 16, |_| vec![()]).await?;
    Ok(RingListener {
        receiver,
        _client: client,
        task,
    })
}

/// Opens the dedicated connection and LISTENs; returns once LISTEN is active, so every commit
/// after this call is delivered.
pub(crate) async fn listen(
    pg_config: &tokio_postgres::Config,
    channel: &str,
    capacity: usize,
) -> Result<DecidedListener, StoreError> {
    let (client, receiver, task) =
        listen_with(pg_config, channel, capacity, decode_payload).await?;
    Ok(DecidedListener {
        receiver,
        _client: client,
        task,
        channel: channel.to_owned(),
    })
}

/// The connection behind a listener: LISTENs on `channel` (returning once LISTEN is active) and
/// sends what `decode` makes of each payload into a queue of `capacity`. The task ends, closing
/// the queue, when the connection fails or every receiver is gone.
pub(crate) async fn listen_with<T: Send + 'static>(
    pg_config: &tokio_postgres::Config,
    channel: &str,
    capacity: usize,
    decode: fn(&str) -> Vec<T>,
) -> Result<(tokio_postgres::Client, mpsc::Receiver<T>, JoinHandle<()>), StoreError> {
    let (client, mut connection) = pg_config.connect(NoTls).await?;
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let task_channel = channel.to_owned();
    let task = tokio::spawn(async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    for item in decode(notification.payload()) {
                        if sender.send(item).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(channel = %task_channel, %error, "listener connection failed");
                    return;
                }
                None => return,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN \"{channel}\""))
        .await?;
    Ok((client, receiver, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(offset: i64) -> SourceCoordinates {
        SourceCoordinates {
            topic: "prefix.flk.submissions".into(),
            partition: 11,
            offset,
        }
    }

    #[test]
    fn round_trip_and_chunking() {
        let sources: Vec<_> = (0..2_000).map(|o| source(1_000_000_000 + o)).collect();
        let chunks = encode_payloads(&sources);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() <= MAX_PAYLOAD_BYTES));
        let decoded: Vec<_> = chunks.iter().flat_map(|c| decode_payload(c)).collect();
        assert_eq!(decoded, sources);
        assert!(encode_payloads(&[]).is_empty());
    }

    #[test]
    fn malformed_items_are_skipped() {
        assert_eq!(
            decode_payload("t:1:2,bad,t:x:3,:1:2,u:0:9"),
            vec![
                SourceCoordinates {
                    topic: "t".into(),
                    partition: 1,
                    offset: 2
                },
                SourceCoordinates {
                    topic: "u".into(),
                    partition: 0,
                    offset: 9
                },
            ]
        );
    }
}
