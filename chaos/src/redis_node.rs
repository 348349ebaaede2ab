//! An extra Redis node a test starts and owns (the stack runs three; migrations need a fourth):
//! a real `redis-server` child process on a free port, without persistence, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A running `redis-server` owned by the test.
#[derive(Debug)]
pub struct ExtraRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The process.
    child: Child,
    /// Its working directory (removed on drop).
    dir: std::path::PathBuf,
}

impl ExtraRedis {
    /// Starts a node on a free port and waits until it answers PING.
    pub fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("flk-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting redis-server (installed by infra/scripts/stack.sh up redis; \
                 Debian package redis-server)",
            )?;
        let node = ExtraRedis { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let client = redis::Client::open(node.url().as_str())?;
            let answered = client
                .get_connection()
                .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection));
            if answered.is_ok() {
                return Ok(node);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for ExtraRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
