//! The HTTP gateway (actix-web): the routes, the state they share, the per-tenant rate limiter,
//! and the one mapping from outcomes and errors to HTTP statuses ([`http::status`]). `flk serve`
//! (the `flk` crate) builds an [`http::AppState`] and mounts [`http::configure`].

pub mod http;
pub mod metrics_server;
pub mod rate_limit;
