//! Every status of CONTRACT section 4 through the in-process actix stack, without Kafka, Postgres
//! or Redis: the routes that answer before any dependency (413, 429), the routes whose
//! dependency is down (503, with `Retry-After`), `/metrics` without credentials (401), and the
//! decision answers (200, 202, 400, 401, 403, 409) and lookup errors (404, 503) through the one
//! mapping module served by an actix app. The same statuses against a real stack:
//! `chaos/tests/gateway_contract.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web;
use actix_web::{App, HttpResponse, test};
use actors::contract::{ActorStatus, PartitionStatus, StatusBoard};
use actors::decision_bus::DecisionBus;
use events::{OutcomeClass, SourceCoordinates};
use gateway::http::status::{ApiError, IDEMPOTENT_REPLAYED, applied_response};
use gateway::http::{AppState, configure};
use gateway::rate_limit::{AddressLimiter, RateLimiter};
use infra::config::GatewayConfig;
use infra::metrics::Metrics;
use projections::{Applied, DedupResult, HotCache, HotCacheConfig, ProjectionStore, StoreOptions};
use rdkafka::ClientConfig;
use serde_json::{Value, json};

/// Nothing listens here: every dependency is down.
const DEAD: &str = "127.0.0.1:1";
const LIMIT: usize = 64;
const RETRY_AFTER: u64 = 3;

fn state() -> AppState {
    let producer = ClientConfig::new()
        .set("bootstrap.servers", DEAD)
        .set("message.timeout.ms", "300")
        .create_with_context(infra::kafka::CountingContext::default())
        .unwrap();
    let options = StoreOptions {
        wait_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..StoreOptions::default()
    };
    let store =
        ProjectionStore::connect_lazy(&format!("postgres://flk@{DEAD}/flk"), "flk_gw", options)
            .unwrap();
    let mut cache_config = HotCacheConfig::new(vec![format!("redis://{DEAD}")], "flktest");
    cache_config.op_timeout = Duration::from_millis(100);
    AppState {
        producer,
        submissions_topic: "test.flk.submissions".into(),
        bus: DecisionBus::default(),
        store,
        hot_cache: HotCache::new(cache_config).unwrap(),
        // `limited` never has a whole token: every submit is refused, Retry-After 5 s.
        limiter: Arc::new(RateLimiter::new([("limited".to_owned(), 0.1, 0.5)])),
        address_limiter: Arc::new(AddressLimiter::new(0.0, 0.0)),
        tenant_names: Arc::new(HashSet::from([
            "default".to_owned(),
            "limited".to_owned(),
            "frozen".to_owned(),
        ])),
        disabled_tenants: Arc::new(HashSet::from(["frozen".to_owned()])),
        cold: projections::cold_objects::ColdReader::new(infra::objects::in_memory(), 1),
        metrics: Metrics::new(),
        board: StatusBoard::default(),
        config: GatewayConfig {
            max_body_bytes: LIMIT,
            decision_timeout_ms: 300,
            retry_after_secs: RETRY_AFTER,
            metrics_basic_auth_opt: Some("user:pass".into()),
            ..GatewayConfig::default()
        },
    }
}

fn header(response: &actix_web::dev::ServiceResponse, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn json_body(response: actix_web::dev::ServiceResponse) -> Value {
    let bytes = test::read_body(response).await;
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[actix_web::test]
async fn routes_that_answer_before_or_without_their_dependencies() {
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state()))
            .configure(configure),
    )
    .await;

    // 413: declared too large, nothing read, the connection closes.
    let response = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/v1/pcs/submit")
            .set_payload(vec![b' '; LIMIT + 1])
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The dispatcher writes `Connection: close` from the response head.
    assert_eq!(
        response.response().head().connection_type(),
        actix_web::http::ConnectionType::Close
    );
    assert_eq!(
        json_body(response).await["error"],
        json!("payload_too_large")
    );

    // 429: the tenant's bucket is empty; Retry-After from the limiter.
    let response = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/v1/pcs/submit")
            .insert_header(("X-Tenant-Id", "limited"))
            .set_payload("{}")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("5"));
    assert_eq!(json_body(response).await["error"], json!("rate_limited"));

    // 403 before the log: an unknown tenant (the name is not echoed back) and a disabled one.
    for (tenant, message) in [
        (
            "nobody",
            "unknown tenant: X-Tenant-Id names no configured tenant",
        ),
        ("frozen", "tenant is disabled"),
    ] {
        let response = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/v1/pcs/submit")
                .insert_header(("X-Tenant-Id", tenant))
                .set_payload("{\"pcs_id\": \"p1\"}")
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{tenant}");
        assert_eq!(header(&response, "retry-after"), None);
        let body = json_body(response).await;
        assert_eq!(body["error"], json!("tenant_refused"), "{tenant}");
        assert_eq!(body["message"], json!(message), "{tenant}");
    }

    // 429 for a client address past its rate, checked before the tenant: a stranger trying
    // tenant names is slowed down like anyone else. Other addresses are not affected.
    let limited_state = AppState {
        address_limiter: Arc::new(AddressLimiter::new(0.5, 1.0)),
        ..state()
    };
    let limited_app = test::init_service(
        App::new()
            .app_data(web::Data::new(limited_state))
            .configure(configure),
    )
    .await;
    let from = |address: &str| {
        test::TestRequest::post()
            .uri("/v1/pcs/submit")
            .peer_addr(address.parse().unwrap())
            .insert_header(("X-Tenant-Id", "nobody"))
            .set_payload("{}")
            .to_request()
    };
    let first = test::call_service(&limited_app, from("10.1.1.1:5000")).await;
    assert_eq!(first.status(), StatusCode::FORBIDDEN);
    let second = test::call_service(&limited_app, from("10.1.1.1:5001")).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&second, "retry-after").as_deref(), Some("2"));
    let body = json_body(second).await;
    assert_eq!(body["error"], json!("rate_limited"));
    assert!(
        body["message"].as_str().unwrap().contains("client address"),
        "{body}"
    );
    let elsewhere = test::call_service(&limited_app, from("10.1.1.2:5000")).await;
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);

    // 503: Kafka does not acknowledge before the deadline; Retry-After from the config.
    let response = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/v1/pcs/submit")
            .set_payload("{\"pcs_id\": \"p1\"}")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        header(&response, "retry-after"),
        Some(RETRY_AFTER.to_string())
    );
    assert_eq!(json_body(response).await["error"], json!("log_unavailable"));

    // 503: a lookup with Redis and Postgres down.
    let response = test::call_service(
        &app,
        test::TestRequest::get().uri("/v1/pcs/p1").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        header(&response, "retry-after"),
        Some(RETRY_AFTER.to_string())
    );
    assert_eq!(
        json_body(response).await["error"],
        json!("store_unavailable")
    );

    // 401 on /metrics without the configured credentials.
    let response =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&response, "www-authenticate").is_some());

    // The responses above were counted by status, from the responses themselves.
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/metrics")
            .insert_header(("Authorization", "Basic dXNlcjpwYXNz"))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = String::from_utf8_lossy(&test::read_body(response).await).into_owned();
    for status in ["413", "429", "503"] {
        assert!(
            metrics.contains(&format!("status=\"{status}\"")),
            "{status} not counted"
        );
    }
}

/// `/debug/actors` shows what the actors published, behind the metrics' credentials.
#[actix_web::test]
async fn debug_actors_shows_the_status_board() {
    let state = state();
    let board = state.board.clone();
    let metrics = state.metrics.clone();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(configure),
    )
    .await;
    let mut status = ActorStatus::new(
        "shard",
        "running",
        vec![PartitionStatus {
            partition: 3,
            position_opt: Some(41),
            lag_opt: Some(7),
            in_flight: 2,
            ..PartitionStatus::default()
        }],
    );
    status.restarts = 1;
    board.publish(status, &metrics);

    let response = test::call_service(
        &app,
        test::TestRequest::get().uri("/debug/actors").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/debug/actors")
            .insert_header(("Authorization", "Basic dXNlcjpwYXNz"))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    let shard = &body["actors"][0];
    assert_eq!(shard["role"], "shard");
    assert_eq!(shard["restarts"], 1);
    assert_eq!(shard["in_flight"], 2);
    assert_eq!(shard["partitions"][0]["partition"], 3);
    assert_eq!(shard["partitions"][0]["position_opt"], 41);
    assert_eq!(shard["partitions"][0]["lag_opt"], 7);
    assert!(
        metrics
            .render()
            .contains("flk_actor_lag_records{role=\"shard\"} 7"),
        "the gauges mirror the board"
    );
}

fn applied(outcome_class: OutcomeClass, dedup_result: DedupResult) -> Applied {
    let body = if outcome_class.is_verified() {
        json!({
            "accepted": outcome_class != OutcomeClass::Rejected,
            "escalated": outcome_class != OutcomeClass::Accepted,
        })
    } else {
        json!({"error": outcome_class.as_str(), "message": "why"})
    };
    Applied {
        source: SourceCoordinates {
            topic: "t".into(),
            partition: 0,
            offset: 7,
        },
        decisions_offset: 7,
        tenant: "acme".into(),
        pcs_id_opt: Some("p1".into()),
        signed_digest_opt: Some([1; 32]),
        outcome_class,
        dedup_result,
        body,
        replayed: dedup_result == DedupResult::Duplicate,
        dedup_expires_at_ms_opt: None,
    }
}

/// Serves one committed decision or lookup error per path, through the mapping module.
async fn decision(path: web::Path<String>) -> HttpResponse {
    let (class, dedup) = match path.as_str() {
        "accepted" => (OutcomeClass::Accepted, DedupResult::First),
        "duplicate" => (OutcomeClass::Accepted, DedupResult::Duplicate),
        "escalated" => (OutcomeClass::Escalated, DedupResult::First),
        "rejected" => (OutcomeClass::Rejected, DedupResult::First),
        "conflict" => (OutcomeClass::Accepted, DedupResult::Conflict),
        "malformed" => (OutcomeClass::Malformed, DedupResult::NotDeduplicated),
        "signature" => (
            OutcomeClass::SignatureRejected,
            DedupResult::NotDeduplicated,
        ),
        "tenant" => (OutcomeClass::TenantRefused, DedupResult::NotDeduplicated),
        "not_found" => return ApiError::NotFound.to_response(),
        "timeout" => {
            return ApiError::DecisionTimeout {
                retry_after_secs: 1,
            }
            .to_response();
        }
        _ => return HttpResponse::NotImplemented().finish(),
    };
    applied_response(&applied(class, dedup))
}

#[actix_web::test]
async fn every_decision_status_through_the_http_stack() {
    let app =
        test::init_service(App::new().route("/decision/{name}", web::get().to(decision))).await;
    let cases = [
        ("accepted", 200, None, false),
        ("duplicate", 200, None, true),
        ("escalated", 202, None, false),
        ("rejected", 202, None, false),
        ("malformed", 400, Some("malformed"), false),
        ("signature", 401, Some("signature_invalid"), false),
        ("tenant", 403, Some("tenant_refused"), false),
        ("conflict", 409, Some("conflict"), false),
        ("not_found", 404, Some("not_found"), false),
        ("timeout", 503, Some("decision_timeout"), false),
    ];
    for (name, status, error_opt, replayed) in cases {
        let response = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&format!("/decision/{name}"))
                .to_request(),
        )
        .await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        assert_eq!(
            header(&response, IDEMPOTENT_REPLAYED).is_some(),
            replayed,
            "{name}"
        );
        let body = json_body(response).await;
        match error_opt {
            Some(code) => assert_eq!(body["error"], json!(code), "{name}: {body}"),
            None => {
                assert_eq!(body["pcs_id"], json!("p1"), "{name}: {body}");
                assert!(body["accepted"].is_boolean(), "{name}: {body}");
            }
        }
    }
}
