//! The HTTP gateway (actix-web): routes, shared state, and the one mapping from outcomes and
//! errors to HTTP statuses and bodies ([`status`]). Headers and query strings are parsed by the
//! actix-free `flk_http_head` (fuzzed); handlers hand it the raw values through [`header`].

mod audit;
mod cold_read;
pub mod ops;
mod shards;
pub mod status;
mod submit;

use std::collections::HashSet;
use std::sync::Arc;

use actix_web::{HttpRequest, web};
use actors::contract::StatusBoard;
use actors::decision_bus::DecisionBus;
use infra::config::GatewayConfig;
use infra::kafka::Producer;
use infra::metrics::Metrics;
use projections::{HotCache, ProjectionStore};

use crate::rate_limit::{AddressLimiter, RateLimiter};

pub use status::ApiError;

/// Everything a request handler needs (shared by all workers).
#[derive(Clone)]
pub struct AppState {
    /// Producer of the write-ahead log.
    pub producer: Producer,
    /// `flk.submissions` with prefix.
    pub submissions_topic: String,
    /// Where requests wait for their committed decision.
    pub bus: DecisionBus,
    /// Postgres projections (results, lookups, readiness).
    pub store: ProjectionStore,
    /// Redis hot tier, read before Postgres by lookups.
    pub hot_cache: HotCache,
    /// Per-tenant rate limits.
    pub limiter: Arc<RateLimiter>,
    /// Per-client-address rate limit.
    pub address_limiter: Arc<AddressLimiter>,
    /// Configured tenant names (admission, and bounded metric labels).
    pub tenant_names: Arc<HashSet<String>>,
    /// Configured tenants with `enabled = false` (refused at the door).
    pub disabled_tenants: Arc<HashSet<String>>,
    /// Reads entries from verified cold segments (lookups of demoted keys).
    pub cold: projections::cold_objects::ColdReader,
    /// Metrics.
    pub metrics: Metrics,
    /// The actors' statuses (`/debug/actors`).
    pub board: StatusBoard,
    /// Gateway settings.
    pub config: GatewayConfig,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("submissions_topic", &self.submissions_topic)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Whether `tenant` may append to the log: configured and enabled.
    pub fn admit(&self, tenant: &str) -> Result<(), status::Refusal> {
        if !self.tenant_names.contains(tenant) {
            Err(status::Refusal::Unknown)
        } else if self.disabled_tenants.contains(tenant) {
            Err(status::Refusal::Disabled)
        } else {
            Ok(())
        }
    }

    /// Metric label for a tenant: its name when configured, `unknown` otherwise (bounded).
    pub fn tenant_label<'a>(&self, tenant: &'a str) -> &'a str {
        if self.tenant_names.contains(tenant) {
            tenant
        } else {
            "unknown"
        }
    }
}

/// The raw value of the header `name` (the first, when repeated), `None` when absent: what the
/// parsers of `flk_http_head` take.
pub(crate) fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a [u8]> {
    request.headers().get(name).map(|value| value.as_bytes())
}

/// Registers every route.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/v1/pcs/submit", web::post().to(submit::submit))
        .route("/v1/pcs/{pcs_id}", web::get().to(submit::lookup))
        .route(
            "/v1/audit/checkpoint",
            web::get().to(audit::latest_checkpoint),
        )
        .route(
            "/v1/audit/checkpoint/{tree_size}",
            web::get().to(audit::checkpoint),
        )
        .route("/v1/audit/proof", web::get().to(audit::proof))
        .route("/v1/audit/consistency", web::get().to(audit::consistency))
        .route(
            "/v1/audit/entries/{leaf_index}",
            web::get().to(audit::entry),
        )
        .route("/health", web::get().to(ops::health))
        .route("/ready", web::get().to(ops::ready))
        .route("/metrics", web::get().to(ops::metrics))
        .route("/debug/actors", web::get().to(ops::actors))
        .route(
            "/api/shards/distribution",
            web::get().to(shards::distribution),
        )
        .route("/api/shards/health", web::get().to(shards::health))
        .route("/api/shards/sample", web::get().to(shards::sample))
        .route("/api/shards/find", web::get().to(shards::find))
        .route("/api/shards/stats", web::get().to(shards::stats));
}

/// The parsers moved to `flk_http_head` read exactly what actix read before: header text by
/// `HeaderValue::to_str`'s rule, query strings as `web::Query<HashMap<String, String>>` does.
#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use actix_web::http::header::HeaderValue;
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn header_text_is_actix_to_str() {
        let mut values: Vec<Vec<u8>> = (0..=u8::MAX).map(|byte| vec![b'a', byte, b'z']).collect();
        values.extend([
            b"".to_vec(),
            b"caf\xc3\xa9".to_vec(),
            b"Basic dXNlcjpwYXNz".to_vec(),
        ]);
        for value in values {
            // Bytes a header value cannot hold at all never reach a handler.
            let Ok(header_value) = HeaderValue::from_bytes(&value) else {
                continue;
            };
            assert_eq!(
                flk_http_head::header_text(&value),
                header_value.to_str().ok(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn query_parameters_are_actix_query() {
        let queries = [
            "",
            "&",
            "per_node=5",
            "per_node=5&per_node=7",
            "tenant=a+b&pcs_id=x%2Fy%3D",
            "flag&=v&a=1=2",
            "a=%zz%4&b=%",
            "a=caf%E9&caf%C3%A9=%00",
            "tenant=%FF%FE&&&pcs_id=+%2B+",
        ];
        for text in queries {
            let actix =
                web::Query::<HashMap<String, String>>::from_query(text).map(web::Query::into_inner);
            assert_eq!(
                actix.ok(),
                Some(flk_http_head::query::parameters(text)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn header_gives_the_first_raw_value() {
        let request = TestRequest::default()
            .append_header(("X-Tenant-Id", HeaderValue::from_bytes(b"caf\xe9").unwrap()))
            .append_header(("X-Tenant-Id", "second"))
            .to_http_request();
        assert_eq!(header(&request, "x-tenant-id"), Some(&b"caf\xe9"[..]));
        assert_eq!(submit::tenant_of(&request), "caf\u{fffd}");
        assert_eq!(header(&request, "Content-Encoding"), None);
        assert_eq!(
            submit::tenant_of(&TestRequest::default().to_http_request()),
            "default"
        );
    }
}
