//! The HTTP gateway and the `flk` command line: the composition root that wires config, actors and
//! routes. Also home of the one mapping from errors to HTTP statuses.

pub mod cli;
