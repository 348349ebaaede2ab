//! Fault scenarios (process kills, dependency outages at named places) and the history checker that
//! proves no acknowledged record was lost or applied twice.
