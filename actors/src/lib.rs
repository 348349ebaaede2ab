//! Supervised actix actors, one per file, and the wiring module that starts them.
//!
//! Each actor reloads its checkpoint when restarted; a stuck handler is detected by heartbeat.
