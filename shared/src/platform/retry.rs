//! The one retry policy, for work that lost a race or was left partly undone by a busy
//! dependency: a transaction cancelled by a conflicting one, a conditional write of the
//! key set that another change beat, a counter restarted concurrently, a rotation whose
//! family moved, a batch write with unprocessed items.
//!
//! At most [`ATTEMPTS`] tries. Before try `n` (from 0) the caller waits [`backoff`]: nothing
//! before the first, then a time drawn uniformly from 0 to `10 ms · 2ⁿ` ("full jitter"), so
//! writers that collided spread out instead of colliding again in step. The SDK's own
//! retries (throttling, 5xx, timeouts) are separate: `platform::aws` sets them.

use std::time::Duration;

/// How many times a retried operation is tried in all.
pub const ATTEMPTS: u32 = 4;

/// The longest first wait, milliseconds; each later one may be twice as long.
const BASE_MS: u64 = 10;

/// The wait before try `attempt` (0-based): none before the first, then full jitter.
pub fn delay(attempt: u32) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let ceiling = BASE_MS << attempt.min(10);
    let draw = u64::from(u16::from_le_bytes(crate::rules::token::random_bytes::<2>()));
    Duration::from_millis(draw % (ceiling + 1))
}

/// Waits [`delay`]`(attempt)`.
pub async fn backoff(attempt: u32) {
    let wait = delay(attempt);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_try_waits_nothing_and_later_ones_at_most_the_doubling_ceiling() {
        assert_eq!(delay(0), Duration::ZERO);
        for attempt in 1..ATTEMPTS {
            let ceiling = Duration::from_millis(BASE_MS << attempt);
            assert!((0..200).all(|_| delay(attempt) <= ceiling), "attempt {attempt}");
        }
    }

    #[test]
    fn waits_are_spread_not_in_step() {
        let draws: std::collections::BTreeSet<Duration> = (0..200).map(|_| delay(3)).collect();
        assert!(draws.len() > 10, "{} distinct waits of 200", draws.len());
    }
}
