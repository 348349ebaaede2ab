//! Prometheus as the tests read it: instant queries against the local stack's server
//! (`FLK_PROMETHEUS_URL`), and registering a process as a scrape target the way an operator's
//! service discovery would (a file in `FLK_PROMETHEUS_TARGETS_DIR`).

use std::path::PathBuf;

use serde_json::{Value, json};

/// The values of an instant query's result (empty when it has no series); an error when
/// Prometheus does not answer or refuses the query.
pub async fn query(client: &reqwest::Client, base: &str, expr: &str) -> anyhow::Result<Vec<f64>> {
    let encoded: String = expr
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect();
    let answer: Value = client
        .get(format!("{base}/api/v1/query?query={encoded}"))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(answer["status"] == "success", "{expr}: {answer}");
    let series = answer["data"]["result"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{expr}: no result array in {answer}"))?;
    Ok(series
        .iter()
        .map(|series| {
            series["value"][1]
                .as_str()
                .and_then(|text| text.parse().ok())
                .unwrap_or(f64::NAN)
        })
        .collect())
}

/// A scrape target registered with the stack's Prometheus; unregistered when dropped.
#[derive(Debug)]
pub struct ScrapeTarget {
    /// The file-based discovery file.
    file: PathBuf,
}

impl ScrapeTarget {
    /// Registers `url` (a `flk serve` gateway or metrics listener) under `name`.
    pub fn register(targets_dir: &str, name: &str, url: &str) -> anyhow::Result<Self> {
        let file = std::path::Path::new(targets_dir).join(format!("{name}.json"));
        let target = url.trim_start_matches("http://").trim_end_matches('/');
        std::fs::write(
            &file,
            json!([{"targets": [target], "labels": {"deployment": name}}]).to_string(),
        )?;
        Ok(ScrapeTarget { file })
    }
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}
