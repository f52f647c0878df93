//! Where other people stand: each participant's recent poses as they arrived, and
//! where to draw them now, a little in the past so that there is a pose on either side
//! to interpolate between.

use std::collections::VecDeque;
use std::time::Duration;

use bevy::platform::time::Instant;
use bevy::prelude::*;

use crate::signaling::protocol::Pose;

/// How often a walking person's pose is told, and how often our pose goes out on the
/// pose data channels, changed or not (20 a second).
pub const SEND_EVERY: Duration = Duration::from_millis(50);
/// How far in the past others are drawn at least: two of the data channel's pose
/// intervals, so a later pose is almost always there to move towards.
pub const MIN_DRAW_DELAY: Duration = Duration::from_millis(100);
/// How far in the past at most: two of the server's pose intervals (5 a second), for
/// peers whose poses come only through it.
pub const MAX_DRAW_DELAY: Duration = Duration::from_millis(400);
/// Longest a pose is carried on past the newest sample, at the walk it had.
pub const MAX_EXTRAPOLATION: Duration = Duration::from_millis(250);
/// Samples kept per person.
const KEPT_SAMPLES: usize = 16;

/// A participant's poses, newest last, with when each arrived.
#[derive(Component, Debug, Clone, Default)]
pub struct PoseTrack {
    samples: VecDeque<(Instant, Pose)>,
    /// Poses received so far.
    pub received: u64,
}

impl PoseTrack {
    /// A track starting with `pose`, if known.
    pub fn new(pose: Option<Pose>, now: Instant) -> Self {
        let mut track = Self::default();
        if let Some(pose) = pose {
            track.push(pose, now);
            track.received = 0;
        }
        track
    }

    /// A pose that arrived at `at`.
    pub fn push(&mut self, pose: Pose, at: Instant) {
        if self.samples.len() == KEPT_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((at, pose));
        self.received += 1;
    }

    /// The newest pose, if any.
    pub fn latest(&self) -> Option<Pose> {
        self.newest().map(|(_, pose)| pose)
    }

    /// The newest pose and when it arrived, if any.
    pub fn newest(&self) -> Option<(Instant, Pose)> {
        self.samples.back().copied()
    }

    /// How far in the past to draw: two of the recent intervals between poses (the
    /// median of the last few), within [`MIN_DRAW_DELAY`] and [`MAX_DRAW_DELAY`].
    pub fn draw_delay(&self) -> Duration {
        let mut intervals: Vec<Duration> = self
            .samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|((a, _), (b, _))| b.saturating_duration_since(*a))
            .collect();
        if intervals.is_empty() {
            return MAX_DRAW_DELAY;
        }
        let middle = intervals.len() / 2;
        let (_, median, _) = intervals.select_nth_unstable(middle);
        (*median * 2).clamp(MIN_DRAW_DELAY, MAX_DRAW_DELAY)
    }

    /// Where to draw the person at `now`: [`PoseTrack::draw_delay`] in the past,
    /// interpolated between the samples around that moment, or carried on from the
    /// newest one at its speed for at most [`MAX_EXTRAPOLATION`].
    pub fn at(&self, now: Instant) -> Option<Pose> {
        let shown = now.checked_sub(self.draw_delay())?;
        let (newest_at, newest) = *self.samples.back()?;
        let after = self.samples.iter().position(|(at, _)| *at > shown);
        match after {
            Some(0) => Some(self.samples[0].1),
            Some(index) => {
                let (a_at, a) = self.samples[index - 1];
                let (b_at, b) = self.samples[index];
                let span = (b_at - a_at).as_secs_f32();
                let t = if span > 0.0 {
                    (shown - a_at).as_secs_f32() / span
                } else {
                    1.0
                };
                Some(lerp(&a, &b, t))
            }
            None => {
                let Some(&(before_at, before)) = self.samples.iter().rev().nth(1) else {
                    return Some(newest);
                };
                let span = (newest_at - before_at).as_secs_f32();
                let beyond = (shown - newest_at).min(MAX_EXTRAPOLATION).as_secs_f32();
                if span <= 0.0 || !newest.moving {
                    return Some(newest);
                }
                Some(lerp(&before, &newest, 1.0 + beyond / span))
            }
        }
    }
}

/// The pose a fraction `t` of the way from `a` to `b` (beyond `b` for `t` > 1), the
/// heading turned the short way round.
fn lerp(a: &Pose, b: &Pose, t: f32) -> Pose {
    let mut turn = b.yaw - a.yaw;
    if turn > std::f32::consts::PI {
        turn -= std::f32::consts::TAU;
    } else if turn < -std::f32::consts::PI {
        turn += std::f32::consts::TAU;
    }
    let x = a.x + (b.x - a.x) * t;
    let z = a.z + (b.z - a.z) * t;
    Pose::new(x, z, a.yaw + turn * t, b.moving).unwrap_or(*b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pose(x: f32, yaw: f32) -> Pose {
        Pose::new(x, 0.0, yaw, true).expect("a valid pose")
    }

    #[test]
    fn drawn_in_the_past_between_samples_then_carried_on_a_little() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut track = PoseTrack::new(None, start);
        assert_eq!(track.at(ms(1000)), None);
        for (n, x) in [(0, 0.0), (200, 1.0), (400, 2.0)] {
            track.push(pose(x, 0.0), ms(n));
        }
        assert_eq!(track.received, 3);
        assert_eq!(
            track.draw_delay(),
            MAX_DRAW_DELAY,
            "5 a second: 400 ms behind"
        );
        // 500 ms: shown is 100 ms, half way between the first two.
        let shown = track.at(ms(500)).unwrap();
        assert!((shown.x - 0.5).abs() < 1e-4, "{shown:?}");
        // 1000 ms: shown is 600 ms, 200 ms past the newest: carried on at 5 m/s.
        let carried = track.at(ms(1000)).unwrap();
        assert!((carried.x - 3.0).abs() < 1e-3, "{carried:?}");
        // Much later: no further than the limit.
        let capped = track.at(ms(5000)).unwrap();
        assert!((capped.x - 3.25).abs() < 1e-3, "{capped:?}");
    }

    #[test]
    fn twenty_poses_a_second_are_drawn_100_ms_behind() {
        let start = Instant::now();
        let mut track = PoseTrack::new(None, start);
        for n in 0..10u64 {
            track.push(
                pose(n as f32 * 0.1, 0.0),
                start + Duration::from_millis(n * 50),
            );
        }
        assert_eq!(track.draw_delay(), MIN_DRAW_DELAY);
    }

    #[test]
    fn headings_turn_the_short_way() {
        let turned = lerp(&pose(0.0, 3.0), &pose(0.0, -3.0), 0.5);
        assert!(turned.yaw.abs() > 3.0, "{turned:?}");
    }
}
