//! Spatial audio as a pure function: the stereo gains of a voice from where its panel
//! stands relative to the listener, on the floor plane (`Vec2(x, z)` in metres).
//!
//! - Direction: equal-power panning from the angle between where the listener looks
//!   and where the voice is (straight ahead or behind: both sides at 1/√2; fully to
//!   one side: that side at 1, the other at 0). Left + right power stays constant.
//! - Distance: inverse-distance roll-off beyond a reference distance (full level
//!   within it), never below a floor, so everyone in the room stays audible.

use std::f32::consts::FRAC_PI_4;

use bevy::math::Vec2;

use super::mixer::StereoGain;

/// How a voice fades with distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollOff {
    /// Within this distance (metres) a voice is at full level.
    pub reference_distance: f32,
    /// The quietest a voice in the same room gets (fraction of full level).
    pub floor: f32,
    /// Where set, the voice fades instead in a straight line from full level at the
    /// reference distance to silence here (the lobby: silent at the earshot edge).
    pub silent_at: Option<f32>,
}

impl Default for RollOff {
    /// Full level within 2 m (about where one stands to talk to a panel), half at
    /// 4 m, never below a quarter.
    fn default() -> Self {
        Self {
            reference_distance: 2.0,
            floor: 0.25,
            silent_at: None,
        }
    }
}

impl RollOff {
    /// Full level within 2 m, fading to silence at `earshot` metres (the lobby, as
    /// Gather does: connected at 5 tiles, full volume at 2).
    pub fn fading_to(earshot: f32) -> Self {
        Self {
            silent_at: Some(earshot),
            ..Self::default()
        }
    }

    /// The level at `distance` metres.
    pub fn gain(&self, distance: f32) -> f32 {
        let reference = self.reference_distance.max(f32::EPSILON);
        match self.silent_at {
            Some(silent) if silent > reference => {
                (1.0 - (distance - reference) / (silent - reference)).clamp(0.0, 1.0)
            }
            Some(_) => f32::from(u8::from(distance <= reference)),
            None => (reference / distance.max(reference)).max(self.floor),
        }
    }
}

/// Pan position of a voice at `source` for a listener at `listener` looking along
/// `forward`: -1 fully left, 0 straight ahead (or behind, or on top of them), 1 fully
/// right.
pub fn pan(listener: Vec2, forward: Vec2, source: Vec2) -> f32 {
    let to_source = (source - listener).normalize_or_zero();
    let forward = forward.normalize_or_zero();
    // Floor coordinates are (x, z) with -z ahead at yaw 0 and +x to the right: the
    // listener's right is their forward turned a quarter clockwise seen from above.
    let right = Vec2::new(-forward.y, forward.x);
    to_source.dot(right).clamp(-1.0, 1.0)
}

/// Equal-power gains for a pan position (see [`pan`]).
pub fn equal_power(pan: f32) -> StereoGain {
    let angle = (pan.clamp(-1.0, 1.0) + 1.0) * FRAC_PI_4;
    StereoGain {
        left: angle.cos(),
        right: angle.sin(),
    }
}

/// Gains of a voice at `source` heard by a listener at `listener` looking along
/// `forward`: equal-power pan times the distance roll-off.
pub fn spatial_gain(listener: Vec2, forward: Vec2, source: Vec2, roll_off: RollOff) -> StereoGain {
    let level = roll_off.gain(listener.distance(source));
    let panned = equal_power(pan(listener, forward, source));
    StereoGain {
        left: panned.left * level,
        right: panned.right * level,
    }
}

#[cfg(test)]
mod tests {
    use std::f32::consts::FRAC_1_SQRT_2;

    #[test]
    fn in_the_lobby_a_voice_fades_to_silence_at_the_earshot_edge() {
        let lobby = super::RollOff::fading_to(5.0);
        assert_eq!(lobby.gain(1.0), 1.0);
        assert_eq!(lobby.gain(2.0), 1.0);
        assert!((lobby.gain(3.5) - 0.5).abs() < 1e-6);
        assert_eq!(lobby.gain(5.0), 0.0);
        assert_eq!(lobby.gain(9.0), 0.0);
    }

    use super::*;

    const AHEAD: Vec2 = Vec2::new(0.0, -1.0);
    const EPS: f32 = 1e-5;

    #[test]
    fn pan_follows_the_side_the_voice_is_on() {
        let here = Vec2::new(60.0, 2.0);
        assert!(pan(here, AHEAD, here + Vec2::new(0.0, -3.0)).abs() < EPS);
        assert!((pan(here, AHEAD, here + Vec2::new(3.0, 0.0)) - 1.0).abs() < EPS);
        assert!((pan(here, AHEAD, here + Vec2::new(-3.0, 0.0)) + 1.0).abs() < EPS);
        assert!((pan(here, AHEAD, here + Vec2::new(-1.0, -1.0)) + FRAC_1_SQRT_2).abs() < EPS);
        // Turned to face +x, a voice at -z is on the left.
        assert!((pan(here, Vec2::X, here + Vec2::new(0.0, -2.0)) + 1.0).abs() < EPS);
        assert_eq!(pan(here, AHEAD, here), 0.0);
    }

    #[test]
    fn equal_power_keeps_power_constant() {
        for step in -10..=10 {
            let gain = equal_power(step as f32 / 10.0);
            assert!((gain.left.powi(2) + gain.right.powi(2) - 1.0).abs() < EPS);
        }
        let centre = equal_power(0.0);
        assert!(
            (centre.left - FRAC_1_SQRT_2).abs() < EPS && (centre.right - centre.left).abs() < EPS
        );
        let left = equal_power(-1.0);
        assert!((left.left - 1.0).abs() < EPS && left.right.abs() < EPS);
    }

    #[test]
    fn distance_rolls_off_down_to_the_floor() {
        let roll_off = RollOff::default();
        assert_eq!(roll_off.gain(0.0), 1.0);
        assert_eq!(roll_off.gain(2.0), 1.0);
        assert!((roll_off.gain(4.0) - 0.5).abs() < EPS);
        assert_eq!(roll_off.gain(100.0), 0.25);
        assert!(roll_off.gain(3.0) > roll_off.gain(5.0));
    }

    #[test]
    fn a_voice_front_left_is_louder_left_by_the_pan_ratio() {
        let here = Vec2::ZERO;
        let source = Vec2::new(-3.0, -3.0);
        let gain = spatial_gain(here, AHEAD, source, RollOff::default());
        let expected = equal_power(-FRAC_1_SQRT_2);
        let level = RollOff::default().gain(source.length());
        assert!((gain.left - expected.left * level).abs() < EPS);
        assert!((gain.right - expected.right * level).abs() < EPS);
        // cot(π/4 · (1 - 1/√2)) ≈ 4.3
        assert!((gain.left / gain.right - 4.3).abs() < 0.05);
    }
}
