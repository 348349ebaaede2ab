//! `flk top` as a person uses it: in a terminal (tmux), watching a running `flk serve` through the
//! gateway and a metrics listener, showing the gateway's rates and every role's row while records
//! arrive, and quitting on Ctrl-C.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use chaos::deployment::{Deployment, TestTenant};
use chaos::http::submit_json;
use chaos::process::{FlkProcess, flk_binary};
use chaos::records::signed_record;
use chaos::wait_until;

const SECRET: &str = "testsecret";

fn tmux(args: &[&str]) -> (bool, String) {
    let output = Command::new("tmux")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run tmux ({error}): install it (Debian package tmux)")
        });
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Kills the tmux session when the test ends, however it ends.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flk_top_shows_every_role_in_a_terminal_and_quits_on_ctrl_c() {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.extra_toml = "[telemetry]\nmetrics_listen_opt = \"127.0.0.1:0\"\n".to_owned();
    let gateway = FlkProcess::start(&deployment, "gateway", "gateway").unwrap();
    let workers = FlkProcess::start(&deployment, "shard,projector", "workers").unwrap();
    let workers_url = workers.metrics_url().unwrap();
    let session = Session(format!("flktop-{}", deployment.id));
    let command = format!(
        "{} top --url {} --url {workers_url} --interval 1",
        flk_binary().unwrap().display(),
        gateway.url()
    );
    let (started, _) = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "160",
        "-y",
        "40",
        &command,
    ]);
    assert!(started, "tmux new-session failed");

    let client = reqwest::Client::new();
    let screen = wait_until(
        "flk top to show the load",
        Duration::from_secs(60),
        || async {
            for seed in 0..5 {
                let record = signed_record(99_000 + seed + rand_seed(), SECRET);
                let _ = submit_json(&client, gateway.url(), Some("default"), &record).await;
            }
            let (_, screen) = tmux(&["capture-pane", "-p", "-t", &session.0]);
            let busy_gateway = screen.lines().any(|line| {
                line.starts_with(gateway.url())
                    && line
                        .split_whitespace()
                        .nth(1)
                        .and_then(|rate| rate.parse::<f64>().ok())
                        .is_some_and(|rate| rate > 0.0)
            });
            let roles = ["shard", "projector"].iter().all(|role| {
                screen
                    .lines()
                    .any(|line| line.starts_with(&workers_url) && line.contains(role))
            });
            (busy_gateway && roles).then_some(screen)
        },
    )
    .await
    .unwrap_or_else(|error| {
        let (_, screen) = tmux(&["capture-pane", "-p", "-t", &session.0]);
        panic!("{error}; the screen:\n{screen}")
    });
    assert!(screen.contains("flk top: every 1 s"), "{screen}");
    assert!(screen.contains("records/s"), "{screen}");

    // Ctrl-C quits, as in top(1): the session's only program ends, and the session with it.
    tmux(&["send-keys", "-t", &session.0, "C-c"]);
    wait_until(
        "flk top to quit on Ctrl-C",
        Duration::from_secs(10),
        || async {
            let (alive, _) = tmux(&["has-session", "-t", &session.0]);
            (!alive).then_some(())
        },
    )
    .await
    .unwrap();
    drop((gateway, workers));
    deployment.cleanup().await;
}

/// Seeds differ per run, so reruns against the same stack are new records.
fn rand_seed() -> u64 {
    u64::from(std::process::id()) * 1_000
}
