//! A small HTTP client for the gateway.

use serde_json::Value;

/// One gateway answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Idempotent-Replayed: true` was present.
    pub replayed: bool,
    /// `Retry-After`, when present.
    pub retry_after_opt: Option<String>,
    /// JSON body (`Null` when not JSON).
    pub body: Value,
}

/// POSTs `body` to `/v1/pcs/submit` as `tenant_opt`.
pub async fn submit(
    client: &reqwest::Client,
    url: &str,
    tenant_opt: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let mut request = client.post(format!("{url}/v1/pcs/submit")).body(body);
    if let Some(tenant) = tenant_opt {
        request = request.header("X-Tenant-Id", tenant);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let replayed = header("Idempotent-Replayed").as_deref() == Some("true");
    let retry_after_opt = header("Retry-After");
    let bytes = response.bytes().await?;
    Ok(Answer {
        status,
        replayed,
        retry_after_opt,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

/// POSTs a JSON record.
pub async fn submit_json(
    client: &reqwest::Client,
    url: &str,
    tenant_opt: Option<&str>,
    record: &Value,
) -> anyhow::Result<Answer> {
    submit(client, url, tenant_opt, serde_json::to_vec(record)?).await
}

/// `GET /v1/pcs/{pcs_id}` as `tenant`: `(status, body)`.
pub async fn lookup(
    client: &reqwest::Client,
    url: &str,
    tenant: &str,
    pcs_id: &str,
) -> anyhow::Result<(u16, Value)> {
    let response = client
        .get(format!("{url}/v1/pcs/{pcs_id}"))
        .header("X-Tenant-Id", tenant)
        .send()
        .await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Restarts of `role` as the process reports them at `GET /debug/actors` (`None`: no such actor).
pub async fn actor_restarts(
    client: &reqwest::Client,
    base: &str,
    role: &str,
) -> anyhow::Result<Option<u64>> {
    let board: serde_json::Value = client
        .get(format!("{base}/debug/actors"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(board["actors"].as_array().and_then(|actors| {
        actors
            .iter()
            .find(|actor| actor["role"] == role)
            .and_then(|actor| actor["restarts"].as_u64())
    }))
}

/// `GET /metrics`: the gateway process's Prometheus text.
pub async fn metrics(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = client.get(format!("{url}/metrics")).send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET /metrics answered {}",
        response.status()
    );
    Ok(response.text().await?)
}

/// Sum of the samples of metric `name` in Prometheus text whose labels contain every
/// `key="value"` of `labels` (all its series when `labels` is empty); 0 when none is exposed yet
/// (a counter vector shows no series before its first increment).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let label_text = match series.strip_prefix(name)? {
                "" => "",
                rest => rest.strip_prefix('{')?.strip_suffix('}')?,
            };
            let matches = labels.iter().all(|(key, wanted)| {
                label_text
                    .split(',')
                    .any(|pair| pair == format!("{key}=\"{wanted}\""))
            });
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    const TEXT: &str = "# HELP flk_actor_restarts_total actor restarts\n\
        # TYPE flk_actor_restarts_total counter\n\
        flk_actor_restarts_total{actor=\"projector\"} 2\n\
        flk_actor_restarts_total{actor=\"shard\"} 1\n\
        flk_actor_restarts_total_other 7\n\
        flk_partitions_owned{role=\"projector\"} 12\n";

    #[test]
    fn sums_the_series_whose_labels_match() {
        assert_eq!(metric_sum(TEXT, "flk_actor_restarts_total", &[]), 3.0);
        assert_eq!(
            metric_sum(TEXT, "flk_actor_restarts_total", &[("actor", "shard")]),
            1.0
        );
        assert_eq!(
            metric_sum(TEXT, "flk_partitions_owned", &[("role", "projector")]),
            12.0
        );
    }

    #[test]
    fn an_absent_metric_sums_to_zero() {
        assert_eq!(metric_sum(TEXT, "flk_missing", &[]), 0.0);
        assert_eq!(
            metric_sum(TEXT, "flk_partitions_owned", &[("role", "shard")]),
            0.0
        );
    }
}
