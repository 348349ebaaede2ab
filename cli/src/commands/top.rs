//! `flk top`: a terminal view of running `flk serve` processes, from their `/metrics` (a gateway's
//! address or a metrics listener's): per process and role the records per second, lag, in-flight
//! work, restarts and the age of the last progress; per gateway the submissions per second, 5xx
//! per second and the p99 submit latency of the last interval. Refreshes in place until Ctrl-C.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use clap::Args;

use crate::top_view::{self, Sample};

/// `flk top` options.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Base URL of a process's metrics (a gateway, or a `[telemetry] metrics_listen_opt`
    /// listener); repeat for each process.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// Seconds between screens.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// Print one screen (after one interval) and exit.
    #[arg(long)]
    pub once: bool,
}

/// Runs `flk top`. Basic Auth comes from `FLK_METRICS_BASIC_AUTH` (`user:password`) when set.
pub fn run(args: TopArgs) -> anyhow::Result<u8> {
    if !(args.interval >= 0.2 && args.interval <= 3600.0) {
        anyhow::bail!("--interval must be between 0.2 and 3600 seconds");
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        tokio::select! {
            result = watch(&args) => result,
            _ = tokio::signal::ctrl_c() => Ok(0),
        }
    })
}

async fn watch(args: &TopArgs) -> anyhow::Result<u8> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let auth_opt = std::env::var("FLK_METRICS_BASIC_AUTH").ok().map(|pair| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    });
    let interval = Duration::from_secs_f64(args.interval);
    let mut before = scrape_all(&client, &args.urls, auth_opt.as_deref()).await;
    let mut taken = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        let after = scrape_all(&client, &args.urls, auth_opt.as_deref()).await;
        let seconds = taken.elapsed().as_secs_f64().max(1e-3);
        taken = Instant::now();
        let mut gateways = Vec::new();
        let mut roles = Vec::new();
        let mut problems = Vec::new();
        for ((url, old), (_, new)) in before.iter().zip(after.iter()) {
            match (old, new) {
                (Ok(old), Ok(new)) => {
                    gateways.extend(top_view::gateway_row(url, old, new, seconds));
                    roles.extend(top_view::role_rows(url, old, new, seconds));
                }
                (_, Err(error)) | (Err(error), _) => problems.push(format!("{url}: {error}")),
            }
        }
        let mut screen = top_view::render(&gateways, &roles, args.interval);
        for problem in problems {
            screen.push_str(&format!("unreachable {problem}\n"));
        }
        if args.once {
            print!("{screen}");
            return Ok(0);
        }
        // Clear the screen and draw from the top, like top(1).
        print!("\x1b[2J\x1b[H{screen}");
        before = after;
    }
}

type Scrape = (String, Result<Vec<Sample>, String>);

async fn scrape_all(
    client: &reqwest::Client,
    urls: &[String],
    auth_opt: Option<&str>,
) -> Vec<Scrape> {
    let mut scrapes = Vec::with_capacity(urls.len());
    for url in urls {
        let base = url.trim_end_matches('/').to_owned();
        let mut request = client.get(format!("{base}/metrics"));
        if let Some(auth) = auth_opt {
            request = request.header("Authorization", auth);
        }
        let result = match request.send().await {
            Ok(response) if response.status().is_success() => response
                .text()
                .await
                .map(|text| top_view::parse(&text))
                .map_err(|error| error.to_string()),
            Ok(response) => Err(format!("GET /metrics answered {}", response.status())),
            Err(error) => Err(error.to_string()),
        };
        scrapes.push((base, result));
    }
    scrapes
}
