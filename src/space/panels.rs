//! A panel for every [`Participant`]: their live video on a screen (a placeholder with
//! their name until video arrives, or while their camera is off), their name above, a
//! ring that glows while they speak, badges for a muted mic (red capsule) and a camera
//! that is off (orange box), and a dot coloured by the connection's state. In a room,
//! panels stand on a circle facing its centre and glide to new places when people come
//! and go; in the lobby each panel is the face of the person's avatar (`avatars`), over
//! a body in their colour that is hidden in rooms.

use std::collections::HashMap;

use bevy::prelude::*;

use super::avatars::{body_capsule, body_offset};
use super::layout::{PanelSlot, approach_fraction, panel_slots, ring_glow};
use super::sign_material::sign_material;
use super::{ROOM, RoomView, shows_avatars};
use crate::call::{CallState, ConnectionState, MediaState, Participant, SpeakingLevel, VideoFeed};
use crate::media::{SignPainter, SignStyle};
use crate::rtc::PeerConnectionState;

/// Radius of the circle the panels stand on.
pub const PANEL_RADIUS: f32 = 4.5;
/// Half the width of a panel (its frame), for keeping the player clear of it.
pub const PANEL_HALF_WIDTH: f32 = 0.85;
/// Size of the video screen (4:3), metres.
pub(super) const SCREEN_SIZE: Vec2 = Vec2::new(1.6, 1.2);
/// Height of the screen's centre: eye level.
pub(super) const SCREEN_Y: f32 = 1.6;
/// The stand from the floor to the screen's lower edge, behind it.
const STAND_HEIGHT: f32 = SCREEN_Y - SCREEN_SIZE.y / 2.0;
/// How fast panels glide to their places, per second.
const GLIDE_RATE: f32 = 4.0;
/// Smallest glow change worth re-uploading the ring's material for.
const GLOW_STEP: f32 = 0.05;

/// A participant's panel; the entity stands on the floor, its parts are children.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub struct Panel {
    /// The [`Participant`] entity it shows.
    pub participant: Entity,
}

/// The video screen of a panel (a child of its [`Panel`]): a [`SCREEN_SIZE`] quad in
/// its local XY plane, centred on its origin.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanelScreen;

/// The parts of a panel that change.
#[derive(Component, Debug)]
pub struct PanelParts {
    screen: Handle<StandardMaterial>,
    placeholder: Option<Handle<Image>>,
    ring: Handle<StandardMaterial>,
    glow: f32,
    mic_badge: Entity,
    camera_badge: Entity,
    dot: Entity,
    body: Entity,
}

impl PanelParts {
    /// The avatar's body under the panel (shown in the lobby only).
    pub(super) fn body(&self) -> Entity {
        self.body
    }

    /// The image the screen shows now, if any.
    pub fn screen_image(&self, materials: &Assets<StandardMaterial>) -> Option<AssetId<Image>> {
        materials
            .get(&self.screen)
            .and_then(|material| material.base_color_texture.as_ref())
            .map(Handle::id)
    }
}

/// How the connection dot looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DotColor {
    /// Connected.
    Green,
    /// Connecting, or reconnecting.
    Yellow,
    /// Failed.
    Red,
    /// Closed.
    Grey,
}

impl DotColor {
    /// The dot for a connection state.
    pub fn of(state: PeerConnectionState) -> Self {
        match state {
            PeerConnectionState::Connected => Self::Green,
            PeerConnectionState::New
            | PeerConnectionState::Connecting
            | PeerConnectionState::Disconnected => Self::Yellow,
            PeerConnectionState::Failed => Self::Red,
            PeerConnectionState::Closed => Self::Grey,
        }
    }

    fn color(self) -> Color {
        match self {
            Self::Green => Color::srgb(0.1, 0.9, 0.2),
            Self::Yellow => Color::srgb(0.95, 0.8, 0.1),
            Self::Red => Color::srgb(0.95, 0.1, 0.1),
            Self::Grey => Color::srgb(0.5, 0.5, 0.5),
        }
    }
}

/// Meshes and materials every panel shares.
#[derive(Resource)]
pub(super) struct PanelKit {
    screen: Handle<Mesh>,
    frame: Handle<Mesh>,
    stand: Handle<Mesh>,
    name_sign: Handle<Mesh>,
    ring: Handle<Mesh>,
    mic_badge: Handle<Mesh>,
    camera_badge: Handle<Mesh>,
    dot: Handle<Mesh>,
    body: Handle<Mesh>,
    nose: Handle<Mesh>,
    dark: Handle<StandardMaterial>,
    mic_material: Handle<StandardMaterial>,
    camera_material: Handle<StandardMaterial>,
    dots: HashMap<DotColor, Handle<StandardMaterial>>,
}

fn unlit(color: Color) -> StandardMaterial {
    StandardMaterial {
        base_color: color,
        unlit: true,
        ..default()
    }
}

pub(super) fn init_panel_kit(
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let dots = [
        DotColor::Green,
        DotColor::Yellow,
        DotColor::Red,
        DotColor::Grey,
    ]
    .into_iter()
    .map(|dot| (dot, materials.add(unlit(dot.color()))))
    .collect();
    commands.insert_resource(PanelKit {
        screen: meshes.add(Rectangle::from_size(SCREEN_SIZE)),
        frame: meshes.add(Cuboid::new(
            2.0 * PANEL_HALF_WIDTH,
            SCREEN_SIZE.y + 0.1,
            0.05,
        )),
        stand: meshes.add(Cylinder::new(0.04, STAND_HEIGHT)),
        name_sign: meshes.add(Rectangle::new(SCREEN_SIZE.x, 0.3)),
        ring: meshes.add(Torus::new(0.85, 0.95)),
        mic_badge: meshes.add(Capsule3d::new(0.05, 0.1)),
        camera_badge: meshes.add(Cuboid::new(0.16, 0.11, 0.06)),
        // Not Bevy's default sphere, 20 480 triangles for a few pixels.
        dot: meshes.add(Sphere::new(0.06).mesh().uv(12, 6)),
        body: meshes.add(body_capsule()),
        nose: meshes.add(Cuboid::new(0.3, 0.2, 0.3)),
        dark: materials.add(StandardMaterial {
            base_color: Color::srgb(0.08, 0.08, 0.1),
            perceptual_roughness: 0.6,
            ..default()
        }),
        mic_material: materials.add(unlit(Color::srgb(0.9, 0.15, 0.15))),
        camera_material: materials.add(unlit(Color::srgb(0.95, 0.55, 0.1))),
        dots,
    });
}

/// Each participant's slot, in a stable order (by peer id).
fn slots_by_participant<'a>(
    participants: impl Iterator<Item = (Entity, &'a Participant)>,
) -> HashMap<Entity, PanelSlot> {
    let mut order: Vec<(Entity, &Participant)> = participants.collect();
    order.sort_by(|a, b| a.1.peer_id.as_str().cmp(b.1.peer_id.as_str()));
    let slots = panel_slots(order.len(), ROOM.center, PANEL_RADIUS);
    order
        .into_iter()
        .map(|(entity, _)| entity)
        .zip(slots)
        .collect()
}

fn slot_transform(slot: PanelSlot) -> Transform {
    Transform::from_xyz(slot.position.x, 0.0, slot.position.y)
        .with_rotation(Quat::from_rotation_y(slot.yaw))
}

/// A colour of its own for each peer, for the placeholder.
fn placeholder_background(peer: &str) -> [u8; 4] {
    let hash = peer.bytes().fold(2_166_136_261_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(16_777_619)
    });
    let hue = (hash % 360) as f32;
    Color::hsl(hue, 0.45, 0.3).to_srgba().to_u8_array()
}

/// Spawns a panel, at its slot, for each participant that has none.
pub(super) fn spawn_panels(
    participants: Query<(Entity, &Participant)>,
    panels: Query<&Panel>,
    kit: Option<Res<PanelKit>>,
    painter: Option<Res<SignPainter>>,
    mut images: ResMut<Assets<Image>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut commands: Commands,
) {
    let Some(kit) = kit else {
        return;
    };
    let shown: Vec<Entity> = panels.iter().map(|panel| panel.participant).collect();
    if participants
        .iter()
        .all(|(entity, _)| shown.contains(&entity))
    {
        return;
    }
    let slots = slots_by_participant(participants.iter());
    for (entity, participant) in &participants {
        if shown.contains(&entity) {
            continue;
        }
        let name = participant.name.as_str();
        let background = placeholder_background(participant.peer_id.as_str());
        let placeholder = painter.as_deref().map(|painter| {
            images.add(painter.image(
                &[name, "waiting for video"],
                320,
                240,
                SignStyle {
                    background,
                    text: [255, 255, 255, 255],
                },
            ))
        });
        let [r, g, b, a] = background;
        let screen = materials.add(StandardMaterial {
            base_color: if placeholder.is_some() {
                Color::WHITE
            } else {
                Color::srgba_u8(r, g, b, a)
            },
            base_color_texture: placeholder.clone(),
            unlit: true,
            ..default()
        });
        let name_sign = materials.add(sign_material(
            painter.as_deref(),
            &mut images,
            &[name],
            UVec2::new(400, 75),
            SignStyle {
                background: [20, 20, 24, 255],
                text: [255, 255, 255, 255],
            },
        ));
        let ring = materials.add(StandardMaterial {
            base_color: Color::srgb(0.05, 0.3, 0.1),
            emissive: LinearRgba::new(0.1, 1.0, 0.3, 0.0) * ring_glow(0.0),
            ..default()
        });
        let transform = slots
            .get(&entity)
            .copied()
            .map(slot_transform)
            .unwrap_or_default();
        let root = commands
            .spawn((
                Panel {
                    participant: entity,
                },
                transform,
                Visibility::default(),
            ))
            .id();
        let part = |mesh: &Handle<Mesh>, material: Handle<StandardMaterial>, at: Vec3| {
            (
                Mesh3d(mesh.clone()),
                MeshMaterial3d(material),
                Transform::from_translation(at),
                ChildOf(root),
            )
        };
        let badge_y = SCREEN_Y - SCREEN_SIZE.y / 2.0 - 0.14;
        commands.spawn((
            PanelScreen,
            part(&kit.screen, screen.clone(), Vec3::new(0.0, SCREEN_Y, 0.03)),
        ));
        commands.spawn(part(
            &kit.frame,
            kit.dark.clone(),
            Vec3::new(0.0, SCREEN_Y, 0.0),
        ));
        commands.spawn(part(
            &kit.stand,
            kit.dark.clone(),
            Vec3::new(0.0, STAND_HEIGHT / 2.0, -0.07),
        ));
        commands.spawn(part(
            &kit.name_sign,
            name_sign,
            Vec3::new(0.0, SCREEN_Y + SCREEN_SIZE.y / 2.0 + 0.25, 0.0),
        ));
        commands.spawn(part(&kit.ring, ring.clone(), Vec3::new(0.0, 0.02, 0.0)));
        let mic_badge = commands
            .spawn((
                part(
                    &kit.mic_badge,
                    kit.mic_material.clone(),
                    Vec3::new(-0.3, badge_y, 0.06),
                ),
                Visibility::Hidden,
            ))
            .id();
        let camera_badge = commands
            .spawn((
                part(
                    &kit.camera_badge,
                    kit.camera_material.clone(),
                    Vec3::new(0.0, badge_y, 0.06),
                ),
                Visibility::Hidden,
            ))
            .id();
        let dot = commands
            .spawn(part(
                &kit.dot,
                kit.dots[&DotColor::Yellow].clone(),
                Vec3::new(PANEL_HALF_WIDTH - 0.15, badge_y, 0.06),
            ))
            .id();
        let body = commands
            .spawn((
                part(
                    &kit.body,
                    materials.add(StandardMaterial {
                        base_color: Color::srgba_u8(r, g, b, a).lighter(0.15),
                        perceptual_roughness: 0.7,
                        ..default()
                    }),
                    body_offset(),
                ),
                Visibility::Hidden,
            ))
            .id();
        // The nose: on the body's front (-z), at chest height, to show the heading.
        let radius = body_capsule().radius;
        commands.spawn((
            Mesh3d(kit.nose.clone()),
            MeshMaterial3d(kit.dark.clone()),
            Transform::from_xyz(0.0, 0.6, -radius),
            ChildOf(body),
        ));
        commands.entity(root).insert(PanelParts {
            screen,
            placeholder,
            ring,
            glow: ring_glow(0.0),
            mic_badge,
            camera_badge,
            dot,
            body,
        });
    }
}

/// Removes the panels of participants who left.
pub(super) fn despawn_panels(
    panels: Query<(Entity, &Panel)>,
    participants: Query<(), With<Participant>>,
    mut commands: Commands,
) {
    for (entity, panel) in &panels {
        if !participants.contains(panel.participant) {
            commands.entity(entity).despawn();
        }
    }
}

/// Glides every panel towards its slot on the circle, in a room's gallery view
/// (otherwise the panels are the avatars' faces).
pub(super) fn arrange_panels(
    state: Res<CallState>,
    view: Res<RoomView>,
    participants: Query<(Entity, &Participant)>,
    mut panels: Query<(&Panel, &mut Transform)>,
    time: Res<Time>,
) {
    if shows_avatars(&state, *view) {
        return;
    }
    let slots = slots_by_participant(participants.iter());
    let step = approach_fraction(GLIDE_RATE, time.delta_secs());
    for (panel, mut transform) in &mut panels {
        let Some(slot) = slots.get(&panel.participant) else {
            continue;
        };
        let target = slot_transform(*slot);
        transform.scale = Vec3::ONE;
        if transform.translation.distance(target.translation) < 1e-3
            && transform.rotation.angle_between(target.rotation) < 1e-3
        {
            continue;
        }
        transform.translation = transform.translation.lerp(target.translation, step);
        transform.rotation = transform.rotation.slerp(target.rotation, step);
    }
}

/// Shows each participant's video on their screen once it arrives (and again when
/// its image is replaced); the placeholder before that and while their camera is off.
pub(super) fn show_video(
    panels: Query<(&Panel, &PanelParts)>,
    feeds: Query<(&VideoFeed, &MediaState)>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    for (panel, parts) in &panels {
        let Ok((feed, media)) = feeds.get(panel.participant) else {
            continue;
        };
        let wanted = match (&feed.image, media.video) {
            (Some(image), true) => Some(image),
            _ => parts.placeholder.as_ref(),
        };
        let Some(material) = materials.get(&parts.screen) else {
            continue;
        };
        if material.base_color_texture.as_ref().map(Handle::id) == wanted.map(Handle::id) {
            continue;
        }
        if let Some(mut material) = materials.get_mut(&parts.screen) {
            material.base_color = Color::WHITE;
            material.base_color_texture = wanted.cloned();
        }
    }
}

/// Badges, connection dot and speaking ring from the participant's state.
pub(super) fn show_status(
    mut panels: Query<(&Panel, &mut PanelParts)>,
    participants: Query<(&ConnectionState, &MediaState, &SpeakingLevel)>,
    kit: Option<Res<PanelKit>>,
    mut visibility: Query<&mut Visibility>,
    mut dots: Query<&mut MeshMaterial3d<StandardMaterial>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let Some(kit) = kit else {
        return;
    };
    for (panel, mut parts) in &mut panels {
        let Ok((connection, media, level)) = participants.get(panel.participant) else {
            continue;
        };
        for (badge, shown) in [
            (parts.mic_badge, !media.audio),
            (parts.camera_badge, !media.video),
        ] {
            if let Ok(mut visibility) = visibility.get_mut(badge) {
                visibility.set_if_neq(if shown {
                    Visibility::Inherited
                } else {
                    Visibility::Hidden
                });
            }
        }
        if let (Ok(mut dot), Some(material)) = (
            dots.get_mut(parts.dot),
            kit.dots.get(&DotColor::of(connection.0)),
        ) && dot.0 != *material
        {
            dot.0 = material.clone();
        }
        let glow = if media.audio {
            ring_glow(level.0)
        } else {
            ring_glow(0.0)
        };
        if (glow - parts.glow).abs() >= GLOW_STEP
            && let Some(mut ring) = materials.get_mut(&parts.ring)
        {
            ring.emissive = LinearRgba::new(0.1, 1.0, 0.3, 0.0) * glow;
            parts.glow = glow;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_colours_follow_the_connection() {
        assert_eq!(
            DotColor::of(PeerConnectionState::Connected),
            DotColor::Green
        );
        for state in [
            PeerConnectionState::New,
            PeerConnectionState::Connecting,
            PeerConnectionState::Disconnected,
        ] {
            assert_eq!(DotColor::of(state), DotColor::Yellow);
        }
        assert_eq!(DotColor::of(PeerConnectionState::Failed), DotColor::Red);
        assert_eq!(DotColor::of(PeerConnectionState::Closed), DotColor::Grey);
    }

    #[test]
    fn placeholder_colours_differ_between_peers_and_stay_put() {
        let a = placeholder_background("p7x2k9m3qa");
        assert_eq!(a, placeholder_background("p7x2k9m3qa"));
        assert_ne!(a, placeholder_background("q1w2e3r4t5"));
        assert_eq!(a[3], 255);
    }
}
