//! The link between two regions, made cuttable: a TCP proxy of our own in front of a Kafka
//! listener that advertises the proxy's address (the stack's `LINK` listeners, see
//! `infra/scripts/lib/kafka.sh`), so every connection a remote region's replicator makes to that
//! cluster goes through it.
//!
//! [`LinkProxy::cut`] drops every open connection and holds new ones unanswered (what a
//! partition looks like from the client: silence, not a refusal); [`LinkProxy::heal`] closes the
//! held ones, so clients reconnect, and forwards again.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct LinkProxy {
    /// `true` while the link is cut.
    cut: Arc<watch::Sender<bool>>,
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
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = accept_cut.subscribe();
                tokio::spawn(serve(client, upstream.clone(), state));
            }
        });
        Ok(LinkProxy { cut, accept })
    }

    /// Cuts the link: open connections drop, new ones hang.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Heals the link: held connections close (clients reconnect), new ones are forwarded.
    pub fn heal(&self) {
        self.cut.send_replace(false);
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
async fn serve(mut client: TcpStream, upstream: String, mut state: watch::Receiver<bool>) {
    if *state.borrow_and_update() {
        // Partitioned: say nothing until healed (or the proxy goes away), then hang up.
        while *state.borrow_and_update() {
            if state.changed().await.is_err() {
                return;
            }
        }
        return;
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = async {
            loop {
                if state.changed().await.is_err() || *state.borrow_and_update() {
                    return;
                }
            }
        } => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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
}
