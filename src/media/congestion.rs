//! Send-rate control: how fast our one shared video encoder may send.
//!
//! Each remote peer's receiver reports (RTCP RR) say what fraction of our video it lost
//! since the previous report. A [`LossBasedController`] per peer turns that into a target
//! bitrate with the loss-based rule of Google Congestion Control
//! (draft-ietf-rmcat-gcc-02, section 6): more than 10 % loss cuts the rate by
//! `1 - 0.5 * loss`, less than 2 % lets it grow by about 8 % a second, and in between it
//! holds. The encoder is shared by every peer of the mesh, so it follows the lowest target
//! of all peers ([`VideoBitrateTargets::lowest_kbps`]).

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
    last_report: Option<Instant>,
}

impl LossBasedController {
    /// A controller starting at the top of `bounds`.
    pub fn new(bounds: BitrateBounds) -> Self {
        Self {
            bounds,
            target_kbps: f64::from(bounds.max_kbps),
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
            self.target_kbps *= 1.0 - 0.5 * loss;
        } else if loss < INCREASE_BELOW_LOSS {
            self.target_kbps *= INCREASE_PER_SECOND.powf(since_last.as_secs_f64());
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
    fn heavy_loss_cuts_by_half_the_loss() {
        let mut controller = LossBasedController::new(BOUNDS);
        // 20 % loss: x0.9 each report; 50 %: x0.75.
        let targets = run(&mut controller, Instant::now(), &[0.2, 0.2, 0.5]);
        assert_eq!(targets, vec![720, 648, 486]);
    }

    #[test]
    fn moderate_loss_holds_and_low_loss_grows_eight_percent_a_second() {
        let mut controller = LossBasedController::new(BitrateBounds::new(100, 1000));
        let start = Instant::now();
        let targets = run(&mut controller, start, &[0.5, 0.05, 0.09, 0.0, 0.01, 0.0]);
        // 1000 x 0.75 = 750; held at 5 % and 9 %; then x1.08 per second.
        assert_eq!(targets, vec![750, 750, 750, 810, 875, 945]);
    }

    #[test]
    fn growth_counts_at_most_one_second_per_report() {
        let mut controller = LossBasedController::new(BOUNDS);
        let start = Instant::now();
        controller.on_receiver_report(0.5, start);
        let after_a_pause = controller.on_receiver_report(0.0, start + Duration::from_secs(30));
        assert_eq!(after_a_pause, 648, "600 x 1.08, not x1.08^30");
        let half_second = controller.on_receiver_report(0.0, start + Duration::from_millis(30_500));
        assert_eq!(half_second, (600.0 * 1.08 * 1.08f64.sqrt()).round() as u32);
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
