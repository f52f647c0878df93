//! People as avatars (in the lobby, and in a room in [`RoomView::Avatars`]): each
//! one's panel becomes an avatar's face. The panel shrinks to a face at eye level,
//! turned towards the viewer, above a body in the person's own colour whose nose points
//! where they head; it stands where they stand, drawn a little in the past between the
//! poses that came ([`PoseTrack::at`]), and bobs while they walk. Someone who never said
//! where they stand (a peer without the pose channel, such as the Flutter app) waits on
//! a circle in the middle of the floor.

use std::f32::consts::TAU;

use bevy::platform::time::Instant;
use bevy::prelude::*;

use super::layout::panel_slots;
use super::panels::{Panel, PanelParts, SCREEN_Y};
use super::player::{Player, floor_of};
use super::{LOBBY, ROOM, RoomView, shows_avatars};
use crate::call::{CallState, Participant, PoseTrack};

/// How big a panel is as an avatar's face.
pub const AVATAR_SCALE: f32 = 0.45;
/// How high the panel's root stands so that its screen stays at eye level.
const AVATAR_LIFT: f32 = SCREEN_Y * (1.0 - AVATAR_SCALE);
/// How far an avatar bobs while walking, metres.
const BOB_HEIGHT: f32 = 0.04;
/// Steps a second while walking.
const STEPS_PER_SEC: f32 = 2.0;
/// Radius of the circle where people without a pose wait, metres.
const WAITING_RADIUS: f32 = 3.0;

/// The body's size in metres: from the floor to under the face, and its radius.
pub(super) const BODY_HEIGHT: f32 = 1.25;
/// The body's radius, metres.
pub(super) const BODY_RADIUS: f32 = 0.2;

/// Where the body sits under the panel's root, in the root's (scaled) units.
pub(super) fn body_offset() -> Vec3 {
    Vec3::new(0.0, (BODY_HEIGHT / 2.0 - AVATAR_LIFT) / AVATAR_SCALE, 0.0)
}

/// The capsule of a body, in the root's (scaled) units.
pub(super) fn body_capsule() -> Capsule3d {
    let radius = BODY_RADIUS / AVATAR_SCALE;
    Capsule3d::new(radius, BODY_HEIGHT / AVATAR_SCALE - 2.0 * radius)
}

/// Stands each person's avatar where they are, face to the viewer (unless the room is
/// in the gallery view: then the panels stand on their circle).
pub(super) fn place_avatars(
    state: Res<CallState>,
    view: Res<RoomView>,
    time: Res<Time>,
    viewers: Query<&Transform, (With<Player>, Without<Panel>)>,
    people: Query<(Entity, &Participant, &PoseTrack)>,
    mut avatars: Query<(&Panel, &PanelParts, &mut Transform), Without<Player>>,
    mut bodies: Query<&mut Transform, (Without<Panel>, Without<Player>)>,
) {
    if !shows_avatars(&state, *view) {
        return;
    }
    let now = Instant::now();
    let middle = if state.in_lobby() { LOBBY } else { ROOM }.center;
    let viewer = viewers.single().map(floor_of).unwrap_or(middle);
    let mut waiting: Vec<(Entity, &Participant)> = people
        .iter()
        .filter(|(_, _, track)| track.latest().is_none())
        .map(|(entity, participant, _)| (entity, participant))
        .collect();
    waiting.sort_by(|a, b| a.1.peer_id.cmp(&b.1.peer_id));
    let spots = panel_slots(waiting.len(), middle, WAITING_RADIUS);
    for (panel, parts, mut transform) in &mut avatars {
        let Ok((entity, _, track)) = people.get(panel.participant) else {
            continue;
        };
        let (spot, heading, moving) = match track.at(now) {
            Some(pose) => (Vec2::new(pose.x, pose.z), pose.yaw, pose.moving),
            None => {
                let slot = waiting
                    .iter()
                    .position(|(waiting, _)| *waiting == entity)
                    .and_then(|index| spots.get(index).copied());
                let Some(slot) = slot else { continue };
                // Facing the middle, where a newcomer arrives.
                (slot.position, slot.yaw + TAU / 2.0, false)
            }
        };
        let to_viewer = viewer - spot;
        let face_yaw = if to_viewer.length() > 1e-3 {
            to_viewer.x.atan2(to_viewer.y)
        } else {
            heading
        };
        let bob = if moving {
            BOB_HEIGHT
                * (time.elapsed_secs() * STEPS_PER_SEC * TAU / 2.0)
                    .sin()
                    .abs()
        } else {
            0.0
        };
        *transform = Transform::from_xyz(spot.x, AVATAR_LIFT + bob, spot.y)
            .with_rotation(Quat::from_rotation_y(face_yaw))
            .with_scale(Vec3::splat(AVATAR_SCALE));
        if let Ok(mut body) = bodies.get_mut(parts.body()) {
            // The body turns to the heading (yaw 0 faces -z; the nose is on local -z).
            body.rotation = Quat::from_rotation_y(heading - face_yaw);
        }
    }
}

/// Shows the bodies while people are avatars, and hides them in the gallery view,
/// where panels stand on their circle at full size.
pub(super) fn show_bodies(
    state: Res<CallState>,
    view: Res<RoomView>,
    panels: Query<&PanelParts>,
    mut visibility: Query<&mut Visibility>,
) {
    let shown = if shows_avatars(&state, *view) {
        Visibility::Inherited
    } else {
        Visibility::Hidden
    };
    for parts in &panels {
        if let Ok(mut body) = visibility.get_mut(parts.body()) {
            body.set_if_neq(shown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_face_stays_at_eye_level_and_the_body_reaches_the_floor() {
        let face = AVATAR_LIFT + SCREEN_Y * AVATAR_SCALE;
        assert!((face - SCREEN_Y).abs() < 1e-5);
        let body = body_capsule();
        let bottom =
            AVATAR_LIFT + AVATAR_SCALE * (body_offset().y - body.half_length - body.radius);
        assert!(bottom.abs() < 1e-4, "the body floats at {bottom} m");
    }
}
