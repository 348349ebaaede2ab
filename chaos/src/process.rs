//! `flk serve` as a child process that a test can kill with SIGKILL at any moment, or stop the way
//! an operator does (SIGINT: the process leaves its consumer groups before exiting).

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::deployment::Deployment;

/// The `flk` binary under test: `$FLK_BIN`, else `target/debug/flk` of this workspace.
pub fn flk_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var("FLK_BIN") {
        Ok(path) => PathBuf::from(path),
        Err(_) => {
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("debug/flk")
        }
    };
    anyhow::ensure!(
        path.exists(),
        "{} does not exist: build it with `cargo build -p flk --bin flk --features failpoints`",
        path.display()
    );
    Ok(path)
}

/// A running `flk serve`.
#[derive(Debug)]
pub struct FlkProcess {
    /// The child.
    child: Child,
    /// Base URL of its gateway, when it runs one.
    pub url_opt: Option<String>,
    /// Base URL of its metrics listener, once it printed one (`[telemetry] metrics_listen_opt`).
    metrics_url: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Its log file (stderr).
    pub log_path: PathBuf,
}

impl FlkProcess {
    /// Starts `flk serve --roles <roles>` for the deployment; waits for the gateway to listen when
    /// `gateway` is among the roles.
    pub fn start(deployment: &Deployment, roles: &str, name: &str) -> anyhow::Result<Self> {
        Self::start_with_env(deployment, roles, name, &[])
    }

    /// [`FlkProcess::start`] with extra environment variables (failpoints, overrides).
    pub fn start_with_env(
        deployment: &Deployment,
        roles: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let config = deployment.write_config()?;
        let log_path = deployment.dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut child = flk_command(deployment)?
            .args(["serve", "--roles", roles, "--log-format", "json", "-c"])
            .arg(&config)
            .env("RUST_LOG", "info,rdkafka=warn,actix_server=warn")
            // Trace export only for tests that ask (`env`), not from the stack's env lines.
            .env_remove("FLK_OTLP_ENDPOINT")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting flk serve")?;
        let mut url_opt = None;
        let metrics_url = std::sync::Arc::new(std::sync::Mutex::new(None));
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, receiver) = mpsc::channel();
        let metrics_slot = metrics_url.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("flk: listening on ") {
                    let _ = sender.send(url.to_owned());
                } else if let Some(url) = line.strip_prefix("flk: metrics on ") {
                    if let Ok(mut slot) = metrics_slot.lock() {
                        *slot = Some(url.to_owned());
                    }
                }
            }
        });
        if roles.split(',').any(|role| role == "gateway") {
            match receiver.recv_timeout(Duration::from_secs(60)) {
                Ok(url) => url_opt = Some(url),
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    anyhow::bail!("flk serve did not start listening within 60 s; log:\n{log}");
                }
            }
        }
        Ok(FlkProcess {
            child,
            url_opt,
            metrics_url,
            log_path,
        })
    }

    /// The gateway URL (panics in tests that did not start a gateway).
    pub fn url(&self) -> &str {
        self.url_opt
            .as_deref()
            .unwrap_or("http://gateway-not-started")
    }

    /// The metrics listener's base URL, waiting up to 60 s for the process to print it.
    pub fn metrics_url(&self) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(url) = self.metrics_url.lock().ok().and_then(|slot| slot.clone()) {
                return Ok(url);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no `flk: metrics on` line within 60 s (is [telemetry] metrics_listen_opt set?); log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown hooks, no flushing; the crash a real machine has.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process freezes mid-work (a long GC pause, a hung VM) while the world moves
    /// on; [`FlkProcess::resume`] wakes it with whatever it held.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// SIGCONT after [`FlkProcess::pause`].
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        // The `kill` command rather than a syscall: the workspace forbids `unsafe`.
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .with_context(|| format!("running kill {signal}"))?;
        anyhow::ensure!(sent.success(), "kill {signal} {} failed", self.child.id());
        Ok(())
    }

    /// SIGINT, then waits up to `timeout` for the process to exit: the graceful stop of an
    /// operator's ctrl-c (`flk serve` without a gateway waits for ctrl-c; the gateway stops on it
    /// too), which closes the Kafka consumers so they leave their groups at once. A process still
    /// running after `timeout` is killed and the stop reported as failed.
    pub async fn stop(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("flk serve had already exited ({status})");
        }
        self.signal("-INT")?;
        self.wait_for_exit(timeout)
            .await
            .context("flk serve did not stop after SIGINT")
    }

    /// Waits up to `timeout` for the process to exit on its own; kills it and fails past that.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill9();
                anyhow::bail!("flk serve still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for FlkProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `flk` with the deployment's stack addresses in its environment. The environment overrides the
/// config file, and the test's environment (the stack's env lines) names region a's services: a
/// process of a region b deployment would otherwise run on region a.
fn flk_command(deployment: &Deployment) -> anyhow::Result<Command> {
    let mut command = Command::new(flk_binary()?);
    command
        .env("FLK_KAFKA_BROKERS", deployment.flk_brokers())
        .env("FLK_POSTGRES_URL", deployment.flk_postgres_url())
        .env("FLK_REDIS_URLS", deployment.flk_redis_urls().join(","));
    Ok(command)
}

/// Runs `flk <args>` with the deployment's config to completion.
fn flk_output(deployment: &Deployment, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let config = deployment.write_config()?;
    flk_command(deployment)?
        .args(args)
        .arg("-c")
        .arg(&config)
        .output()
        .context("running flk")
}

/// Runs `flk <args>` with the deployment's config to completion; returns its exit code and
/// stdout, whatever the code (for commands whose failure is the point of the test).
pub fn run_flk_status(deployment: &Deployment, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let output = flk_output(deployment, args)?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// [`run_flk_status`] with stdout and stderr joined (for failure messages).
pub fn run_flk_output(deployment: &Deployment, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let output = flk_output(deployment, args)?;
    Ok((
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

/// Runs `flk <args>` with the deployment's config to completion; returns stdout.
pub fn run_flk(deployment: &Deployment, args: &[&str]) -> anyhow::Result<String> {
    let output = flk_output(deployment, args)?;
    anyhow::ensure!(
        output.status.success(),
        "flk {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `infra/scripts/stack.sh <args>` on the blocking pool (a Kafka restart takes tens of seconds):
/// how a scenario kills, pauses and restarts the stack's shared services.
pub async fn stack(args: &[&str]) -> anyhow::Result<()> {
    let script = format!("{}/../infra/scripts/stack.sh", env!("CARGO_MANIFEST_DIR"));
    let owned: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let status =
        tokio::task::spawn_blocking(move || Command::new("bash").arg(script).args(&owned).status())
            .await?
            .context("running stack.sh")?;
    anyhow::ensure!(status.success(), "stack.sh {args:?} failed ({status})");
    Ok(())
}
