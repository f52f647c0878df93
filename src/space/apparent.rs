//! How large people appear on our screen: through the SFU, the simulcast layer we
//! receive of each person's camera follows it ([`CallCommand::ShowSizes`]). The app
//! measures its panels through its camera; a bot, which has none, sees from its pose
//! with the same eye ([`seen_height`]).

use std::time::Duration;

use bevy::prelude::*;
use bevy::window::PrimaryWindow;

use super::panel_view::PanelView;
use super::panels::SCREEN_SIZE;
use crate::call::{CallCommand, CallState};
use crate::signaling::protocol::Pose;

/// How often the sizes are told while in a call.
pub const TELL_SIZES_EVERY: Duration = Duration::from_millis(250);

/// The player's camera's vertical field of view (Bevy's default perspective).
const VERTICAL_FOV: f32 = std::f32::consts::FRAC_PI_4;
/// The width of the view over its height for [`seen_height`] (a 16:9 window).
const ASPECT: f32 = 16.0 / 9.0;
/// Closer than this, a person fills the view whatever the distance.
const NEAREST: f32 = 0.1;

/// Tells the call how many pixels high each person's panel shows, every
/// [`TELL_SIZES_EVERY`] while in a call.
pub(super) fn tell_shown_sizes(
    state: Res<CallState>,
    time: Res<Time<Real>>,
    mut last: Local<Option<Duration>>,
    windows: Query<&Window, With<PrimaryWindow>>,
    panels: PanelView,
    mut commands: MessageWriter<CallCommand>,
) {
    if !matches!(*state, CallState::InCall { .. }) {
        return;
    }
    let now = time.elapsed();
    if last.is_some_and(|at| now < at + TELL_SIZES_EVERY) {
        return;
    }
    let Ok(window) = windows.single() else { return };
    *last = Some(now);
    let size = Vec2::new(
        window.resolution.physical_width() as f32,
        window.resolution.physical_height() as f32,
    );
    let heights = panels.shown_heights(size, window.scale_factor());
    if !heights.is_empty() {
        commands.write(CallCommand::ShowSizes(heights));
    }
}

/// How many pixels high a person standing at `person` appears to an eye at `eye`
/// (looking along its yaw, level, at eye height) on a view `viewport_height` pixels
/// high: the player's camera's geometry, for a bot. 0 when they are behind the eye or
/// out of its field of view.
pub fn seen_height(eye: &Pose, person: &Pose, viewport_height: f32) -> f32 {
    let forward = Vec2::new(-eye.yaw.sin(), -eye.yaw.cos());
    let offset = Vec2::new(person.x - eye.x, person.z - eye.z);
    let depth = offset.dot(forward);
    let half_height = (VERTICAL_FOV / 2.0).tan();
    let lateral = offset.perp_dot(forward).abs();
    if depth < NEAREST || lateral > depth * half_height * ASPECT {
        return 0.0;
    }
    (SCREEN_SIZE.y * viewport_height / (2.0 * depth * half_height)).min(viewport_height)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pose(x: f32, z: f32, yaw: f32) -> Pose {
        Pose::new(x, z, yaw, false).unwrap()
    }

    #[test]
    fn a_person_in_front_appears_smaller_with_distance_and_not_at_all_behind() {
        let eye = pose(0.0, 0.0, 0.0); // looking towards -z
        let near = seen_height(&eye, &pose(0.0, -2.0, 0.0), 720.0);
        let far = seen_height(&eye, &pose(0.0, -8.0, 0.0), 720.0);
        assert!((near / far - 4.0).abs() < 1e-3, "{near} {far}");
        // 1.2 m at 8 m on a 720-pixel view with a 45-degree field: about 130 pixels.
        assert!((far - 130.4).abs() < 1.0, "{far}");
        assert_eq!(seen_height(&eye, &pose(0.0, 3.0, 0.0), 720.0), 0.0);
        // Far off to the side: out of the field of view.
        assert_eq!(seen_height(&eye, &pose(9.0, -2.0, 0.0), 720.0), 0.0);
        // Turned towards them, they are in view again.
        let turned = pose(0.0, 0.0, -std::f32::consts::FRAC_PI_2);
        assert!(seen_height(&turned, &pose(9.0, 0.0, 0.0), 720.0) > 0.0);
    }
}
