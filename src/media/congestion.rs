//! Send-rate control: how fast our one shared video encoder may send.
//!
//! Each remote peer's receiver reports (RTCP RR) say what fraction of our video it lost
//! since the previous report. A [`LossBasedController`] per peer turns that into a target
//! bitrate with the bands of Google Congestion Control's loss-based rule
//! (draft-ietf-rmcat-gcc-02, section 6): more than 10 % loss cuts the rate, less than
//! 2 % lets it grow by about 8 % a second, and in between it holds. Two changes make it
//! settle faster on a narrow path:
//!
//! - A cut goes to the share that got through, `rate * (1 - loss)`, rather than GCC's
//!   `rate * (1 - 0.5 * loss)`: a call that starts at 800 kbit/s on a 150 kbit/s path
//!   comes down in two reports instead of ten seconds of frozen video.
//! - That share (or the floor, if it is below) is remembered as where the path
//!   congested, and growth above it is slow (2 % a second) until the rate is a quarter
//!   above it, where the path is taken to have more room again.
//!
//! The encoder is shared by every peer of the mesh, so it follows the lowest target of
//! all peers ([`VideoBitrateTargets::lowest_kbps`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Loss above this fraction is congestion: the rate is cut.
const DECREASE_ABOVE_LOSS: f64 = 0.10;
/// Loss below this fraction is noise: the rate grows.
const INCREASE_BELOW_LOSS: f64 = 0.02;
/// Growth per second of a loss-free path.
const INCREASE_PER_SECOND: f64 = 1.08;
/// Growth per second above the rate where the path last congested.
const CAREFUL_INCREASE_PER_SECOND: f64 = 1.02;
/// Above this multiple of the rate where the path last congested, that congestion is
/// forgotten and growth is fast again.
const FORGET_CONGESTION_ABOVE: f64 = 1.25;
/// Longest time credited to one growth step, so a late first report does not jump the rate.
const MAX_INCREASE_STEP: Duration = Duration::from_secs(1);

/// The range a video target bitrate is kept in, in kbit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitrateBounds {
    /// Never below this, however lossy the path.
    pub min_kbps: u32,
    /// Never above this (also where a call starts).
    pub max_kbps: u32,
}

impl BitrateBounds {
    /// Bounds from `min_kbps` to `max_kbps`; a minimum above the maximum is lowered to it.
    pub fn new(min_kbps: u32, max_kbps: u32) -> Self {
        Self {
            min_kbps: min_kbps.min(max_kbps),
            max_kbps,
        }
    }

    fn clamp(self, kbps: f64) -> f64 {
        kbps.clamp(f64::from(self.min_kbps), f64::from(self.max_kbps))
    }
}

/// The loss-based half of Google Congestion Control, for one remote peer.
#[derive(Debug, Clone)]
pub struct LossBasedController {
    bounds: BitrateBounds,
    target_kbps: f64,
    /// Where loss last cut the rate to (what got through, or the floor), while growth
    /// above it is careful.
    congested_kbps: Option<f64>,
    last_report: Option<Instant>,
}

impl LossBasedController {
    /// A controller starting at the top of `bounds`.
    pub fn new(bounds: BitrateBounds) -> Self {
        Self {
            bounds,
            target_kbps: f64::from(bounds.max_kbps),
            congested_kbps: None,
            last_report: None,
        }
    }

    /// Takes one receiver report that arrived at `now`: `fraction_lost` (0 to 1) is the
    /// share of our packets the peer lost since its previous report. Returns the new
    /// target.
    pub fn on_receiver_report(&mut self, fraction_lost: f64, now: Instant) -> u32 {
        let loss = if fraction_lost.is_finite() {
            fraction_lost.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let since_last = self
            .last_report
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last))
            .min(MAX_INCREASE_STEP);
        self.last_report = Some(now);
        if loss > DECREASE_ABOVE_LOSS {
            self.target_kbps = self.bounds.clamp(self.target_kbps * (1.0 - loss));
            self.congested_kbps = Some(self.target_kbps);
        } else if loss < INCREASE_BELOW_LOSS {
            let careful = self
                .congested_kbps
                .is_some_and(|congested| self.target_kbps >= congested);
            let growth = if careful {
                CAREFUL_INCREASE_PER_SECOND
            } else {
                INCREASE_PER_SECOND
            };
            self.target_kbps *= growth.powf(since_last.as_secs_f64());
            if self
                .congested_kbps
                .is_some_and(|congested| self.target_kbps > congested * FORGET_CONGESTION_ABOVE)
            {
                self.congested_kbps = None;
            }
        }
        self.target_kbps = self.bounds.clamp(self.target_kbps);
        self.target_kbps()
    }

    /// The current target in kbit/s.
    pub fn target_kbps(&self) -> u32 {
        self.target_kbps.round() as u32
    }
}

/// The targets of every peer the shared encoder sends to; the encoder follows the lowest.
///
/// Each peer registers a [`PeerBitrateTarget`] and drops it when it leaves.
#[derive(Debug, Default)]
pub struct VideoBitrateTargets {
    by_peer: Mutex<BTreeMap<u64, u32>>,
    next_id: AtomicU64,
}

impl VideoBitrateTargets {
    /// A place for one more peer's target, starting at `kbps`.
    pub fn register(self: &Arc<Self>, kbps: u32) -> PeerBitrateTarget {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, kbps);
        PeerBitrateTarget {
            targets: Arc::clone(self),
            id,
        }
    }

    /// The lowest target of all peers, `None` when nobody is registered.
    pub fn lowest_kbps(&self) -> Option<u32> {
        self.lock().values().copied().min()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, u32>> {
        self.by_peer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One peer's entry in [`VideoBitrateTargets`]; removed when dropped.
#[derive(Debug)]
pub struct PeerBitrateTarget {
    targets: Arc<VideoBitrateTargets>,
    id: u64,
}

impl PeerBitrateTarget {
    /// Sets this peer's target.
    pub fn set(&self, kbps: u32) {
        self.targets.lock().insert(self.id, kbps);
    }
}

impl Drop for PeerBitrateTarget {
    fn drop(&mut self) {
        self.targets.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: BitrateBounds = BitrateBounds {
        min_kbps: 100,
        max_kbps: 800,
    };

    /// Feeds one report a second with the given loss fractions; returns each new target.
    fn run(controller: &mut LossBasedController, start: Instant, losses: &[f64]) -> Vec<u32> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &loss)| {
                controller.on_receiver_report(loss, start + Duration::from_secs(i as u64))
            })
            .collect()
    }

    #[test]
    fn heavy_loss_cuts_to_what_got_through() {
        let mut controller = LossBasedController::new(BOUNDS);
        // 20 % loss: x0.8 each report; 50 %: x0.5.
        let targets = run(&mut controller, Instant::now(), &[0.2, 0.2, 0.5]);
        assert_eq!(targets, vec![640, 512, 256]);
    }

    #[test]
    fn moderate_loss_holds() {
        let mut controller = LossBasedController::new(BOUNDS);
        let targets = run(&mut controller, Instant::now(), &[0.5, 0.05, 0.09, 0.1]);
        assert_eq!(targets, vec![400, 400, 400, 400]);
    }

    #[test]
    fn growth_is_careful_above_the_last_congestion_then_fast_again() {
        let mut controller = LossBasedController::new(BitrateBounds::new(100, 1000));
        let start = Instant::now();
        let mut losses = vec![0.6];
        losses.extend([0.0; 16]);
        let targets = run(&mut controller, start, &losses);
        // Congested at 400: 2 % a second up to 500 (12 reports), then 8 % a second.
        let careful: Vec<u32> = (0..=12)
            .map(|s| (400.0 * 1.02f64.powi(s)).round() as u32)
            .collect();
        assert_eq!(targets[..13], careful[..]);
        let past = 400.0 * 1.02f64.powi(12);
        assert_eq!(targets[13], (past * 1.08).round() as u32, "{targets:?}");
        assert_eq!(targets[16], (past * 1.08f64.powi(4)).round() as u32);
    }

    #[test]
    fn growth_counts_at_most_one_second_per_report() {
        let mut controller = LossBasedController::new(BOUNDS);
        let start = Instant::now();
        controller.on_receiver_report(0.5, start);
        let after_a_pause = controller.on_receiver_report(0.0, start + Duration::from_secs(30));
        assert_eq!(after_a_pause, 408, "400 x 1.02, not x1.02^30");
        let half_second = controller.on_receiver_report(0.0, start + Duration::from_millis(30_500));
        assert_eq!(half_second, (400.0 * 1.02 * 1.02f64.sqrt()).round() as u32);
    }

    #[test]
    fn stays_within_bounds_and_ignores_nonsense() {
        let mut controller = LossBasedController::new(BOUNDS);
        let start = Instant::now();
        let total_loss = run(&mut controller, start, &[1.0; 20]);
        assert_eq!(total_loss.last(), Some(&100));
        let mut controller = LossBasedController::new(BOUNDS);
        let clean = run(&mut controller, start, &[0.0; 20]);
        assert!(clean.iter().all(|&t| t == 800), "{clean:?}");
        assert_eq!(controller.on_receiver_report(f64::NAN, start), 800);
        assert_eq!(controller.on_receiver_report(-3.0, start), 800);
        assert_eq!(BitrateBounds::new(900, 300).min_kbps, 300);
    }

    #[test]
    fn a_capped_path_settles_below_the_cap() {
        // A 300 kbit/s bottleneck: what exceeds it is lost.
        let mut controller = LossBasedController::new(BOUNDS);
        let start = Instant::now();
        let mut target = controller.target_kbps();
        let mut history = Vec::new();
        for second in 0..60 {
            let loss = (1.0 - 300.0 / f64::from(target)).max(0.0);
            target =
                controller.on_receiver_report(loss, start + Duration::from_secs(second as u64));
            history.push(target);
        }
        let settled = &history[20..];
        assert!(settled.iter().all(|&t| t <= 340), "{history:?}");
        assert!(settled.iter().all(|&t| t >= 200), "{history:?}");
    }

    #[test]
    fn the_encoder_follows_the_slowest_peer_still_here() {
        let targets = Arc::new(VideoBitrateTargets::default());
        assert_eq!(targets.lowest_kbps(), None);
        let fast = targets.register(800);
        let slow = targets.register(800);
        slow.set(250);
        assert_eq!(targets.lowest_kbps(), Some(250));
        fast.set(700);
        drop(slow);
        assert_eq!(targets.lowest_kbps(), Some(700));
        drop(fast);
        assert_eq!(targets.lowest_kbps(), None);
    }
}
