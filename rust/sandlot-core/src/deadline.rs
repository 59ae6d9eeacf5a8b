//! Deadlines from durations users give: any `Duration`, however large, gives a
//! deadline (a wait "for ever" is a wait of decades), never an overflow panic.

use std::time::Duration;

use tokio::time::Instant;

/// The longest a deadline lies ahead: 30 years, as far as tokio's own timers look.
const FARTHEST: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// The instant `timeout` from now, or [`FARTHEST`] from now if `timeout` is longer.
pub fn deadline_after(timeout: Duration) -> Instant {
    Instant::now() + timeout.min(FARTHEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_duration_gives_a_deadline() {
        let now = Instant::now();
        assert!(deadline_after(Duration::from_secs(1)) >= now + Duration::from_secs(1));
        assert!(deadline_after(Duration::MAX) >= now + FARTHEST);
        assert!(deadline_after(Duration::from_secs_f64(1e19)) <= Instant::now() + FARTHEST);
    }
}
