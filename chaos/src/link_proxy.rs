//! The link between two regions, made cuttable: a TCP proxy of our own in front of a Kafka
//! listener that advertises the proxy's address (the stack's `LINK` listeners, see
//! `infra/scripts/lib/kafka.sh`), so every connection a remote region's replicator makes to that
//! cluster goes through it.
//!
//! [`LinkProxy::cut`] drops every open connection and holds new ones unanswered (what a
//! partition looks like from the client: silence, not a refusal); [`LinkProxy::heal`] closes the
//! held ones, so clients reconnect, and forwards again. [`LinkProxy::set_latency`] delays every
//! chunk in both directions and [`LinkProxy::set_bandwidth`] caps the bytes per second each way
//! (a slow link or a slow dependency: the proxy works in front of any TCP service, Postgres and
//! Redis included); [`LinkProxy::reset`] drops the open connections and lets new ones through.

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
    /// Whether the link is cut, and how many resets there were.
    cut: Arc<watch::Sender<LinkState>>,
    /// Latency and bandwidth applied to every chunk.
    shaping: Arc<Shaping>,
    /// The accept loop.
    accept: JoinHandle<()>,
}

impl LinkProxy {
    /// Listens on `listen` and forwards each connection to `upstream`.
    pub async fn start(listen: &str, upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("link proxy: listening on {listen}"))?;
        let (cut, _) = watch::channel(LinkState::default());
        let cut = Arc::new(cut);
        let upstream = upstream.to_owned();
        let accept_cut = cut.clone();
        let shaping = Arc::new(Shaping::default());
        let accept_shaping = shaping.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = accept_cut.subscribe();
                tokio::spawn(serve(
                    client,
                    upstream.clone(),
                    state,
                    accept_shaping.clone(),
                ));
            }
        });
        Ok(LinkProxy {
            cut,
            shaping,
            accept,
        })
    }

    /// Cuts the link: open connections drop, new ones hang.
    pub fn cut(&self) {
        self.cut.send_modify(|state| state.cut = true);
    }

    /// Heals the link: held connections close (clients reconnect), new ones are forwarded.
    pub fn heal(&self) {
        self.cut.send_modify(|state| state.cut = false);
    }

    /// Delays every chunk forwarded from now on by `latency`, each way (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        self.shaping
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Caps each direction of each connection at `bytes_per_second` from now on (0: no cap).
    pub fn set_bandwidth(&self, bytes_per_second: u64) {
        self.shaping
            .bytes_per_second
            .store(bytes_per_second, Ordering::SeqCst);
    }

    /// Drops every open connection (the peer sees a reset) and forwards new ones at once.
    pub fn reset(&self) {
        self.cut.send_modify(|state| state.resets += 1);
    }
}

/// What every connection of a proxy watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LinkState {
    /// `true` while the link is cut.
    cut: bool,
    /// Resets so far: a connection ends when the count moves past the one it started with
    /// (a counter, not a flag, so a reset is never missed between two looks).
    resets: u64,
}

/// How chunks are slowed, shared by every connection of a proxy.
#[derive(Debug, Default)]
struct Shaping {
    /// Delay added to every chunk, in milliseconds (0: none).
    latency_ms: AtomicU64,
    /// Bytes per second each way (0: no cap).
    bytes_per_second: AtomicU64,
}

impl Shaping {
    /// How long a chunk of `bytes` is held before it is forwarded.
    fn hold_for(&self, bytes: usize) -> Duration {
        let latency = Duration::from_millis(self.latency_ms.load(Ordering::SeqCst));
        let rate = self.bytes_per_second.load(Ordering::SeqCst);
        let transmit = if rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(bytes as f64 / rate as f64)
        };
        latency + transmit
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Open connections end when their cut watch closes.
    }
}

/// One client connection: forwarded while the link is up, dropped when it is cut or reset; a
/// connection made while cut is held silent until the link heals, then closed.
async fn serve(
    client: TcpStream,
    upstream: String,
    mut state: watch::Receiver<LinkState>,
    shaping: Arc<Shaping>,
) {
    if state.borrow_and_update().cut {
        // Partitioned: say nothing until healed (or the proxy goes away), then hang up.
        while state.borrow_and_update().cut {
            if state.changed().await.is_err() {
                return;
            }
        }
        return;
    }
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let resets_at_start = state.borrow_and_update().resets;
    let (client_in, client_out) = client.into_split();
    let (server_in, server_out) = server.into_split();
    // Both directions run to their end (a half-close is passed on, the other way goes on).
    let forward = async {
        tokio::join!(
            pump(client_in, server_out, shaping.clone()),
            pump(server_in, client_out, shaping)
        )
    };
    tokio::select! {
        _ = forward => {}
        _ = async {
            loop {
                if state.changed().await.is_err() {
                    return;
                }
                let now = *state.borrow_and_update();
                if now.cut || now.resets != resets_at_start {
                    return;
                }
            }
        } => {}
    }
}

/// Forwards one direction chunk by chunk, each held for the current latency plus its
/// transmission time at the current bandwidth, until either side closes.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shaping: Arc<Shaping>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) => {
                // The sender is done writing: tell the receiver the same way.
                let _ = to.shutdown().await;
                return;
            }
            Err(_) => return,
            Ok(read) => read,
        };
        let hold = shaping.hold_for(read);
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
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

    /// A proxy on a free local port in front of `upstream`, and its address.
    async fn proxy_to(upstream: &str) -> (String, LinkProxy) {
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = probe.local_addr().unwrap().to_string();
        drop(probe);
        let proxy = LinkProxy::start(&listen, upstream).await.unwrap();
        (listen, proxy)
    }

    /// A connection through the proxy that has carried one round trip.
    async fn open_connection(listen: &str) -> TcpStream {
        let mut open = TcpStream::connect(listen).await.unwrap();
        open.write_all(b"ping").await.unwrap();
        let mut buffer = [0u8; 4];
        open.read_exact(&mut buffer).await.unwrap();
        open
    }

    /// The connection ends (reset or closed) within 5 s, with nothing more on it.
    async fn assert_ends(open: &mut TcpStream) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(
            read.is_err() || rest.is_empty(),
            "the open connection ended"
        );
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
        let (listen, proxy) = proxy_to(&upstream).await;
        assert_eq!(round_trip(&listen).await, Some(b"ping".to_vec()));
        // An open connection drops when the link is cut.
        let mut open = open_connection(&listen).await;
        proxy.cut();
        assert_ends(&mut open).await;
        assert_eq!(round_trip(&listen).await, None, "silence while cut");
        proxy.heal();
        assert_eq!(round_trip(&listen).await, Some(b"ping".to_vec()));
    }

    #[tokio::test]
    async fn a_latency_delays_each_way_and_can_be_taken_back() {
        let upstream = echo_server().await;
        let (listen, proxy) = proxy_to(&upstream).await;
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

    #[tokio::test]
    async fn a_bandwidth_cap_slows_a_large_transfer() {
        let upstream = echo_server().await;
        let (listen, proxy) = proxy_to(&upstream).await;
        // 20 KiB at 40 KiB/s each way: at least half a second in, as long again back.
        proxy.set_bandwidth(40 * 1024);
        let socket = TcpStream::connect(&listen).await.unwrap();
        let (mut reader, mut writer) = socket.into_split();
        let sent = std::time::Instant::now();
        let writing = tokio::spawn(async move { writer.write_all(&[7u8; 20 * 1024]).await });
        let mut echoed = vec![0u8; 20 * 1024];
        reader.read_exact(&mut echoed).await.unwrap();
        writing.await.unwrap().unwrap();
        assert!(
            sent.elapsed() >= Duration::from_millis(500),
            "{:?}",
            sent.elapsed()
        );
        proxy.set_bandwidth(0);
        assert_eq!(round_trip(&listen).await, Some(b"ping".to_vec()));
    }

    #[tokio::test]
    async fn a_reset_drops_open_connections_and_lets_new_ones_through() {
        let upstream = echo_server().await;
        let (listen, proxy) = proxy_to(&upstream).await;
        let mut open = open_connection(&listen).await;
        proxy.reset();
        assert_ends(&mut open).await;
        assert_eq!(round_trip(&listen).await, Some(b"ping".to_vec()));
    }
}
