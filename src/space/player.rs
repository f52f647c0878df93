//! The player: the one 3D camera, walked with WASD or the arrow keys, turned by
//! dragging with the right mouse button, or sent to a spot by a left click on the
//! floor. Input that egui takes (typing, clicks on the overlay) never moves it.

use std::f32::consts::FRAC_PI_2;

use bevy::input::mouse::AccumulatedMouseMotion;
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::input::EguiWantsInput;

use super::Location;
use super::layout::keep_clear;
use super::panels::{PANEL_HALF_WIDTH, Panel};

/// Height of the eyes above the floor.
pub const EYE_HEIGHT: f32 = 1.6;
/// Closest the player comes to a wall.
pub const WALL_MARGIN: f32 = 0.35;
/// Closest the player comes to a panel (well beyond the camera's near plane).
pub const PANEL_MARGIN: f32 = 0.6;
/// Walking speed, metres per second.
const WALK_SPEED: f32 = 3.0;
/// Turning per pixel of mouse motion while the right button is held, radians.
const LOOK_PER_PIXEL: f32 = 0.004;
/// Turning speed with Q/E, radians per second.
const TURN_SPEED: f32 = 1.8;
/// How far up or down the player can look.
const MAX_PITCH: f32 = FRAC_PI_2 - 0.1;
/// A click-to-walk target closer than this counts as reached.
const ARRIVED: f32 = 0.05;

/// The player, on the camera entity: where they look and where a click sent them.
#[derive(Component, Debug, Clone, Default, PartialEq)]
pub struct Player {
    /// Rotation about +Y; 0 looks towards -Z.
    pub yaw: f32,
    /// Rotation up (positive) or down.
    pub pitch: f32,
    /// Where a click on the floor sent them, until they arrive or take the keys.
    pub walk_to: Option<Vec2>,
}

impl Player {
    /// The camera transform for standing at `spot` (floor coordinates).
    pub fn transform_at(&self, spot: Vec2) -> Transform {
        Transform::from_xyz(spot.x, EYE_HEIGHT, spot.y).with_rotation(Quat::from_euler(
            EulerRot::YXZ,
            self.yaw,
            self.pitch,
            0.0,
        ))
    }

    /// Puts the player at `spot` facing `yaw`, forgetting any walk target.
    pub fn place(&mut self, transform: &mut Transform, spot: Vec2, yaw: f32) {
        self.yaw = yaw;
        self.pitch = 0.0;
        self.walk_to = None;
        *transform = self.transform_at(spot);
    }
}

/// Floor coordinates of a transform.
pub fn floor_of(transform: &Transform) -> Vec2 {
    Vec2::new(transform.translation.x, transform.translation.z)
}

pub(super) fn spawn_player(mut commands: Commands) {
    let (spot, yaw) = Location::Lobby.arrival();
    let mut player = Player::default();
    let mut transform = Transform::default();
    player.place(&mut transform, spot, yaw);
    commands.spawn((Camera3d::default(), player, transform));
}

/// Puts the player at the arrival spot of a place they were just sent to.
pub(super) fn arrive(location: Res<Location>, mut players: Query<(&mut Player, &mut Transform)>) {
    if !location.is_changed() {
        return;
    }
    let (spot, yaw) = location.arrival();
    for (mut player, mut transform) in &mut players {
        player.place(&mut transform, spot, yaw);
    }
}

/// Mouse look while the right button is held; a left click on the floor sets a walk
/// target. Skipped while the pointer is over egui.
pub(super) fn steer(
    buttons: Res<ButtonInput<MouseButton>>,
    motion: Res<AccumulatedMouseMotion>,
    egui: Option<Res<EguiWantsInput>>,
    location: Res<Location>,
    windows: Query<&Window, With<PrimaryWindow>>,
    mut players: Query<(&mut Player, &Camera, &GlobalTransform)>,
) {
    if egui.is_some_and(|egui| egui.wants_any_pointer_input()) {
        return;
    }
    for (mut player, camera, camera_transform) in &mut players {
        if buttons.pressed(MouseButton::Right) {
            player.yaw -= motion.delta.x * LOOK_PER_PIXEL;
            player.pitch =
                (player.pitch - motion.delta.y * LOOK_PER_PIXEL).clamp(-MAX_PITCH, MAX_PITCH);
        }
        if !buttons.just_pressed(MouseButton::Left) {
            continue;
        }
        let Some(cursor) = windows.single().ok().and_then(Window::cursor_position) else {
            continue;
        };
        let Ok(ray) = camera.viewport_to_world(camera_transform, cursor) else {
            continue;
        };
        let Some(distance) = ray.intersect_plane(Vec3::ZERO, InfinitePlane3d::new(Vec3::Y)) else {
            continue;
        };
        let hit = ray.get_point(distance);
        let spot = Vec2::new(hit.x, hit.z);
        if location.area().contains(spot) {
            player.walk_to = Some(spot);
        }
    }
}

/// Walks the player: keys first (they cancel a click target), else towards the click
/// target; then keeps them inside the walls and clear of panels.
pub(super) fn walk(
    keys: Res<ButtonInput<KeyCode>>,
    egui: Option<Res<EguiWantsInput>>,
    time: Res<Time>,
    location: Res<Location>,
    mut players: Query<(&mut Player, &mut Transform), Without<Panel>>,
    panels: Query<&Transform, With<Panel>>,
) {
    let typing = egui.is_some_and(|egui| egui.wants_any_keyboard_input());
    let dt = time.delta_secs();
    for (mut player, mut transform) in &mut players {
        let mut intent = Vec2::ZERO;
        let mut turn = 0.0;
        if !typing {
            let held = |codes: [KeyCode; 2]| keys.any_pressed(codes);
            if held([KeyCode::KeyW, KeyCode::ArrowUp]) {
                intent.y += 1.0;
            }
            if held([KeyCode::KeyS, KeyCode::ArrowDown]) {
                intent.y -= 1.0;
            }
            if keys.pressed(KeyCode::KeyA) {
                intent.x -= 1.0;
            }
            if keys.pressed(KeyCode::KeyD) {
                intent.x += 1.0;
            }
            if held([KeyCode::KeyQ, KeyCode::ArrowLeft]) {
                turn += 1.0;
            }
            if held([KeyCode::KeyE, KeyCode::ArrowRight]) {
                turn -= 1.0;
            }
        }
        player.yaw += turn * TURN_SPEED * dt;
        let here = floor_of(&transform);
        let step = if intent != Vec2::ZERO {
            player.walk_to = None;
            // Forward is -Z turned by yaw; right is +X turned by yaw.
            let forward = -Vec2::new(player.yaw.sin(), player.yaw.cos());
            let right = Vec2::new(player.yaw.cos(), -player.yaw.sin());
            (forward * intent.y + right * intent.x).normalize() * WALK_SPEED * dt
        } else if let Some(target) = player.walk_to {
            let to_go = target - here;
            if to_go.length() <= ARRIVED {
                player.walk_to = None;
            }
            to_go.clamp_length_max(WALK_SPEED * dt)
        } else {
            Vec2::ZERO
        };
        let mut spot = location.area().clamp(here + step, WALL_MARGIN);
        if *location == Location::Room {
            for panel in &panels {
                let yaw = panel.rotation.to_euler(EulerRot::YXZ).0;
                spot = keep_clear(spot, floor_of(panel), yaw, PANEL_HALF_WIDTH, PANEL_MARGIN);
            }
            spot = location.area().clamp(spot, WALL_MARGIN);
        }
        if player.walk_to.is_some() && spot.distance(here) < 1e-3 {
            // Blocked by a wall or a panel: give up on the target.
            player.walk_to = None;
        }
        *transform = player.transform_at(spot);
    }
}
