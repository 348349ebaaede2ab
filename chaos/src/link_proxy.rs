//! The link between two regions, made cuttable: a TCP proxy of our own in front of a Kafka
//! listener that advertises the proxy's address (the stack's `LINK` listeners, see
//! `infra/scripts/lib/kafka.sh`), so every connection a remote region's replicator makes to that
//! cluster goes through it.
//!
//! [`LinkProxy::cut`] drops every open connection and holds new ones unanswered (what a
//! partition looks like from the client: silence, not a refusal); [`LinkProxy::heal`] closes the
//! held ones, so clients reconnect, and forwards again. [`LinkProxy::set_latency`] delays every
//! chunk in both directions (a slow link or a slow dependency: the proxy works in front of any
//! TCP service, Postgres and Redis included).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct LinkProxy {
    /// `true` while the link is cut.
    cut: Arc<watch::Sender<bool>>,
    /// Delay added to every chunk, in milliseconds (0: none).
    latency_ms: Arc<AtomicU64>,
    /// The accept loop.
    accept: JoinHandle<()>,
}

impl LinkProxy {
    /// Listens on `listen` and forwards each connection to `upstream`.
    pub async fn start(listen: &str, upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("link proxy: listening on {listen}"))?;
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let upstream = upstream.to_owned();
        let accept_cut = cut.clone();
        let latency_ms = Arc::new(AtomicU64::new(0));
        let accept_latency = latency_ms.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = accept_cut.subscribe();
                tokio::spawn(serve(
                    client,
                    upstream.clone(),
                    state,
                    accept_latency.clone(),
                ));
            }
        });
        Ok(LinkProxy {
            cut,
            latency_ms,
            accept,
        })
    }

    /// Cuts the link: open connections drop, new ones hang.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Heals the link: held connections close (clients reconnect), new ones are forwarded.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// Delays every chunk forwarded from now on by `latency`, each way (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Open connections end when their cut watch closes.
    }
}

/// One client connection: forwarded while the link is up, dropped when it is cut; a connection
/// made while cut is held silent until the link heals, then closed.
async fn serve(
    client: TcpStream,
    upstream: String,
    mut state: watch::Receiver<bool>,
    latency_ms: Arc<AtomicU64>,
) {
    if *state.borrow_and_update() {
        // Partitioned: say nothing until healed (or the proxy goes away), then hang up.
        while *state.borrow_and_update() {
            if state.changed().await.is_err() {
                return;
            }
        }
        return;
    }
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (client_in, client_out) = client.into_split();
    let (server_in, server_out) = server.into_split();
    tokio::select! {
        _ = pump(client_in, server_out, latency_ms.clone()) => {}
        _ = pump(server_in, client_out, latency_ms) => {}
        _ = async {
            loop {
                if state.changed().await.is_err() || *state.borrow_and_update() {
                    return;
                }
            }
        } => {}
    }
}

/// Forwards one direction chunk by chunk, each after the current latency, until either side
/// closes.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, latency_ms: Arc<AtomicU64>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let delay = latency_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use super::*;

    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 64];
                    while let Ok(read) = socket.read(&mut buffer).await {
                        if read == 0 || socket.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(address: &str) -> Option<Vec<u8>> {
        let mut socket = TcpStream::connect(address).await.ok()?;
        socket.write_all(b"ping").await.ok()?;
        let mut buffer = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(300), socket.read_exact(&mut buffer))
            .await
            .ok()?
            .ok()?;
        Some(buffer.to_vec())
    }

    #[tokio::test]
    async fn forwards_until_cut_and_again_once_healed() {
        let upstream = echo_server().await;
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = probe.local_addr().unwrap().to_string();
        drop(probe);
        let proxy = LinkProxy::start(&listen, &upstream).await.unwrap();
        assert_eq!(round_trip(&listen).await, Some(b"ping".to_vec()));
        // An open connection drops when the link is cut.
        let mut open = TcpStream::connect(&listen).await.unwrap();
        open.write_all(b"ping").await.unwrap();
        let mut buffer = [0u8; 4];
        open.read_exact(&mut buffer).await.unwrap();
        proxy.cut();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(
            read.is_err() || rest.is_empty(),
            "the open connection ended"
        );
        assert_eq!(round_trip(&listen).await, None, "silence while cut");
        proxy.heal();
        assert_eq!(round_trip(&listen).await, Some(b"ping".to_vec()));
    }

    #[tokio::test]
    async fn a_latency_delays_each_way_and_can_be_taken_back() {
        let upstream = echo_server().await;
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = probe.local_addr().unwrap().to_string();
        drop(probe);
        let proxy = LinkProxy::start(&listen, &upstream).await.unwrap();
        proxy.set_latency(Duration::from_millis(150));
        let mut socket = TcpStream::connect(&listen).await.unwrap();
        let sent = std::time::Instant::now();
        socket.write_all(b"ping").await.unwrap();
        let mut buffer = [0u8; 4];
        socket.read_exact(&mut buffer).await.unwrap();
        assert_eq!(&buffer, b"ping");
        // Once on the way in, once on the way back.
        assert!(
            sent.elapsed() >= Duration::from_millis(300),
            "{:?}",
            sent.elapsed()
        );
        proxy.set_latency(Duration::ZERO);
        assert_eq!(round_trip(&listen).await, Some(b"ping".to_vec()));
    }
}
