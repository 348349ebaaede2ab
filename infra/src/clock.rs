//! Wall-clock time as the log and the stores record it.
//!
//! Every time the process writes (decision times, heartbeats, tier ages, task bookkeeping) comes
//! from [`now_ms`], so a fault test can shift one process's clock with [`set_offset_ms`]
//! (`clock_offset_ms` in the configuration) and see what a skewed host does. Leases that several
//! processes compare are judged by the database's clock instead, never this one.

use std::sync::atomic::{AtomicI64, Ordering};

/// The shift set at start, milliseconds (0 unless a fault test asked for one).
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Shifts every later [`now_ms`] of this process by `offset_ms`.
pub fn set_offset_ms(offset_ms: i64) {
    OFFSET_MS.store(offset_ms, Ordering::Relaxed);
}

/// Milliseconds since the Unix epoch (0 if the clock is before it), plus the process's shift.
pub fn now_ms() -> i64 {
    let system = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    system.saturating_add(OFFSET_MS.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_shifts_the_clock() {
        let before = now_ms();
        set_offset_ms(3_600_000);
        let shifted = now_ms();
        set_offset_ms(0);
        let after = now_ms();
        assert!(shifted >= before + 3_600_000 && shifted <= after + 3_600_000);
    }
}
