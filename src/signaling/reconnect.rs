//! How long to wait between attempts to get a signaling connection back after it
//! dropped: exponential backoff with jitter. The call's room state machine asks for
//! the attempts (`call::room`); each driver waits with its own timer.

use std::time::Duration;

/// The first wait before reconnecting, before jitter.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two attempts, before jitter.
const MAX_DELAY: Duration = Duration::from_secs(4);

/// Waits that double from [`FIRST_DELAY`] up to [`MAX_DELAY`], each drawn at random
/// from its upper half ("equal jitter"), so that the clients of a server that just
/// restarted do not all come back at the same instant.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = FIRST_DELAY
            .saturating_mul(1 << self.attempts.min(16))
            .min(MAX_DELAY);
        self.attempts = self.attempts.saturating_add(1);
        let mut random = [0u8; 4];
        // Without randomness the waits are still bounded; only the spread is lost.
        let _ = getrandom::fill(&mut random);
        let fraction = f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX);
        ceiling.mul_f64(0.5 + 0.5 * fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_stay_in_the_upper_half() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        for (attempt, wait) in waits.iter().enumerate() {
            let ceiling = FIRST_DELAY.saturating_mul(1 << attempt).min(MAX_DELAY);
            assert!(
                *wait >= ceiling / 2 && *wait <= ceiling,
                "attempt {attempt}: {wait:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        assert!(waits[7] >= MAX_DELAY / 2);
    }
}
