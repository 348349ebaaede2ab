//! The HTTP gateway and the `flk` command line: the composition root that wires config, actors and
//! routes. Also home of the one mapping from outcomes and errors to HTTP statuses
//! ([`http::status`]).

pub mod cli;
pub mod hot_tier;
pub mod http;
pub mod rate_limit;
pub mod replay;
pub mod serve;
