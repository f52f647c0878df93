//! Spatial audio: each participant's voice comes from where their panel (in the lobby:
//! their avatar) stands, panned and attenuated for the listener (the player's camera)
//! every frame; voices from another room than the listener's are not heard. In the
//! lobby a voice is at full level within 2 m and fades to silence at the earshot edge.
//! [`SpatialAudio`] turns it off (every voice plain on both channels).

use bevy::prelude::*;

use super::Location;
use super::panels::Panel;
use super::player::{Player, floor_of};
use crate::call::{AudioMix, Participant};
use crate::config::ClientConfig;
use crate::media::{RollOff, StereoGain, spatial_gain};

/// Spatial audio on or off, and how voices fade with distance.
#[derive(Resource, Debug, Clone, Copy, PartialEq)]
pub struct SpatialAudio {
    /// On: voices placed at their panels. Off: a plain mix.
    pub enabled: bool,
    /// Fading with distance.
    pub roll_off: RollOff,
}

impl Default for SpatialAudio {
    fn default() -> Self {
        Self {
            enabled: true,
            roll_off: RollOff::default(),
        }
    }
}

/// How voices fade with distance at `location`: in the lobby to silence at the
/// `earshot` edge, in a room as `spatial` says. Both targets use it.
pub fn roll_off_in(location: Location, spatial: &SpatialAudio, earshot: f32) -> RollOff {
    match location {
        Location::Lobby => RollOff::fading_to(earshot),
        Location::Room => spatial.roll_off,
    }
}

/// The direction a player looks along on the floor plane (yaw 0 looks towards -Z).
fn looking(player: &Player) -> Vec2 {
    -Vec2::new(player.yaw.sin(), player.yaw.cos())
}

/// Sets every participant's gains in the mixer from their panel and the listener.
pub(super) fn place_voices(
    spatial: Res<SpatialAudio>,
    mix: Res<AudioMix>,
    config: Res<ClientConfig>,
    location: Res<Location>,
    players: Query<(&Player, &Transform)>,
    panels: Query<(&Panel, &Transform)>,
    participants: Query<&Participant>,
) {
    let Ok((player, listener)) = players.single() else {
        return;
    };
    let (here, forward) = (floor_of(listener), looking(player));
    let area = location.area();
    let roll_off = roll_off_in(*location, &spatial, config.nearby.earshot);
    for (panel, transform) in &panels {
        let Ok(participant) = participants.get(panel.participant) else {
            continue;
        };
        let source = floor_of(transform);
        let gain = if !spatial.enabled {
            StereoGain::PLAIN
        } else if *location == Location::Room && !area.contains(source) {
            StereoGain::SILENT
        } else {
            spatial_gain(here, forward, source, roll_off)
        };
        mix.set_gain(participant.peer_id.as_str(), gain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaw_zero_looks_down_minus_z_and_turns_left_with_positive_yaw() {
        let player = Player::default();
        assert!((looking(&player) - Vec2::new(0.0, -1.0)).length() < 1e-6);
        let turned = Player {
            yaw: std::f32::consts::FRAC_PI_2,
            ..Player::default()
        };
        // Q turns with positive yaw, to the left: from -Z towards -X.
        assert!((looking(&turned) - Vec2::new(-1.0, 0.0)).length() < 1e-6);
    }
}
