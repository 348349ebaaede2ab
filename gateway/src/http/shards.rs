//! The cross-shard operations API (docs/api.md, "Cross-shard operations API"): how this
//! deployment's hot-tier keys spread over the Redis nodes, whether each node answers, a few key
//! names per node, where one key is, and a summary. The counting lives in
//! [`projections::shard_stats`], shared with `flk shards`.
//!
//! Behind the same Basic Auth as `/metrics` (`[gateway] metrics_basic_auth_opt`): key names carry
//! tenants and ids. A node that fails is reported in its own entry (`"error"`) of a 200; only a
//! request the routes cannot answer as asked (an unknown parameter, a bad sample size, a missing
//! key part) is an error, 400 `bad_query`.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use flk_http_head::query;
use projections::shard_stats::{self, DEFAULT_SAMPLE_PER_NODE, MAX_SAMPLE_PER_NODE};

use super::AppState;
use super::ops::refuse_without;
use super::status::{ApiError, ok};

/// The query parameters of `request` when the caller is authorized and names only `allowed`
/// ones; otherwise the answer to send (401, or 400 naming the parameter).
fn admit(
    state: &AppState,
    request: &HttpRequest,
    allowed: &[&str],
) -> Result<HashMap<String, String>, HttpResponse> {
    if let Some(refusal) = refuse_without(state.config.metrics_basic_auth_opt.as_deref(), request) {
        return Err(refusal);
    }
    // Never fails (neither did actix's `web::Query` of a map, which reads the same way).
    let params = query::parameters(request.query_string());
    if let Some(unknown) = query::unknown_parameter(params.keys(), allowed) {
        let expected = if allowed.is_empty() {
            "this route takes none".to_owned()
        } else {
            format!("expected {}", allowed.join(", "))
        };
        return Err(
            ApiError::BadQuery(format!("unknown parameter {unknown:?}; {expected}")).to_response(),
        );
    }
    Ok(params)
}

/// `GET /api/shards/distribution`: keys and bytes of this deployment's prefix per node of the
/// placement, their total, and the balance (max over mean keys).
pub async fn distribution(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(refusal) = admit(&state, &request, &[]) {
        return refusal;
    }
    ok().json(shard_stats::distribution(&state.hot_cache).await)
}

/// `GET /api/shards/health`: PING latency or error per node, and the rings in use.
pub async fn health(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(refusal) = admit(&state, &request, &[]) {
        return refusal;
    }
    ok().json(shard_stats::health(&state.hot_cache).await)
}

/// `GET /api/shards/sample?per_node=N`: up to N key names per node (1 to 100, 5 by default);
/// names only, never values.
pub async fn sample(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let params = match admit(&state, &request, &["per_node"]) {
        Ok(params) => params,
        Err(refusal) => return refusal,
    };
    let per_node = match params.get("per_node") {
        None => DEFAULT_SAMPLE_PER_NODE,
        Some(text) => match text.parse::<u64>() {
            Ok(per_node) => per_node,
            Err(_) => {
                return ApiError::BadQuery(format!(
                    "per_node must be an integer between 1 and {MAX_SAMPLE_PER_NODE}, got {text:?}"
                ))
                .to_response();
            }
        },
    };
    match shard_stats::sample(&state.hot_cache, per_node).await {
        Ok(sample) => ok().json(sample),
        Err(error) => ApiError::BadQuery(error.to_string()).to_response(),
    }
}

/// `GET /api/shards/find?tenant=T&pcs_id=P`: the node the read ring names for the key, the nodes
/// the write rings name, and the nodes that hold it (EXISTS on every node of the placement).
pub async fn find(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let params = match admit(&state, &request, &["tenant", "pcs_id"]) {
        Ok(params) => params,
        Err(refusal) => return refusal,
    };
    let (Some(tenant), Some(pcs_id)) = (params.get("tenant"), params.get("pcs_id")) else {
        let missing: Vec<&str> = ["tenant", "pcs_id"]
            .into_iter()
            .filter(|name| !params.contains_key(*name))
            .collect();
        let verb = if missing.len() == 1 { "is" } else { "are" };
        return ApiError::BadQuery(format!("{} {verb} required", missing.join(" and ")))
            .to_response();
    };
    match shard_stats::find(&state.hot_cache, tenant, pcs_id).await {
        Ok(location) => ok().json(location),
        Err(error) => ApiError::BadQuery(error.to_string()).to_response(),
    }
}

/// `GET /api/shards/stats`: node count, the rings in use, total keys and bytes, the balance, and
/// the nodes that failed.
pub async fn stats(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(refusal) = admit(&state, &request, &[]) {
        return refusal;
    }
    ok().json(shard_stats::stats(&state.hot_cache).await)
}
