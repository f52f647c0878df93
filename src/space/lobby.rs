//! The lobby and the room as places: tiled floors, walls, lamps, the lobby's sky,
//! daylight and welcome sign, the room's ceiling, and doors with signs. A
//! door does its thing when the player walks into it: a public room's door joins that
//! room, "New room" creates a public room, "Join by id" asks the overlay for an id,
//! and the room's exit hangs up.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use super::graphics::Lamp;
use super::layout::{Area, DoorPlacement, back_wall_doors, wall_door};
use super::player::{Player, WALL_MARGIN, floor_of};
use super::scenery;
use super::sign_material::sign_material;
use super::{JoinByIdRequested, LOBBY, Location, ROOM};
use crate::call::{CallCommand, CallState, PublicRooms, SpacePeople};
use crate::config::ClientConfig;
use crate::media::{SignPainter, SignStyle};
use crate::signaling::protocol::{DisplayName, MAX_NAME_CHARS, RoomId, RoomSummary};

/// Daylight over the lobby, lux.
const SUNLIGHT_LUX: f32 = 2500.0;
/// Height of the walls.
const WALL_HEIGHT: f32 = 3.2;
/// Height of the darker band along the foot of the walls.
const WALL_BAND: f32 = 0.9;
/// How far that band stands out of the wall, on each side.
const BAND_DEPTH: f32 = 0.04;
/// Side of a floor tile, metres.
const FLOOR_TILE: f32 = 2.0;
/// Thickness of the walls.
const WALL_THICKNESS: f32 = 0.2;
/// How close to a door's wall the player must come to go through it; more than
/// [`WALL_MARGIN`], so walking into the door is enough.
const DOOR_REACH: f32 = 0.6;
/// Where a door that did not take the player away (join by id, a refused join) leaves
/// them: this far in front of it, out of its reach.
const STEP_BACK: f32 = 1.4;
/// Names a public room's door shows of who is inside.
const NAMES_ON_A_DOOR: usize = 3;
/// Size of a door's sign in the scene, metres.
const SIGN_SIZE: Vec2 = Vec2::new(1.9, 0.55);
/// Size of a door's sign texture, pixels.
const SIGN_PIXELS: UVec2 = UVec2::new(416, 120);
/// Where the welcome sign stands in the lobby: to the right of the view from the
/// arrival spot, off the way to the doors, below eye height (it hides no face), how
/// high its middle is, and its size in metres and pixels.
const WELCOME_SPOT: Vec2 = Vec2::new(2.6, -1.4);
const WELCOME_HEIGHT: f32 = 0.95;
const WELCOME_SIZE: Vec2 = Vec2::new(1.3, 0.6);
const WELCOME_PIXELS: UVec2 = UVec2::new(416, 192);

/// What a door does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorKind {
    /// Joins this public room.
    Public(RoomId),
    /// Creates a public room titled after the player.
    NewRoom,
    /// Asks the overlay for a room id ([`JoinByIdRequested`]).
    JoinById,
    /// Leaves the room for the lobby.
    Exit,
}

/// A door in a wall of the lobby or the room.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct Door {
    /// What walking through it does.
    pub kind: DoorKind,
    /// Where it is.
    pub placement: DoorPlacement,
}

/// The title of the public room a player creates: "<name>'s room", the name shortened
/// if the title would be too long.
pub fn room_title(name: &DisplayName) -> DisplayName {
    const SUFFIX: &str = "'s room";
    let keep = MAX_NAME_CHARS - SUFFIX.chars().count();
    let short: String = name.as_str().chars().take(keep).collect();
    DisplayName::parse(&format!("{short}{SUFFIX}")).unwrap_or_default()
}

/// What building walls, lamps and doors takes.
#[derive(SystemParam)]
pub(super) struct Builder<'w, 's> {
    pub(super) commands: Commands<'w, 's>,
    pub(super) meshes: ResMut<'w, Assets<Mesh>>,
    pub(super) materials: ResMut<'w, Assets<StandardMaterial>>,
    pub(super) images: ResMut<'w, Assets<Image>>,
    pub(super) painter: Option<Res<'w, SignPainter>>,
}

impl Builder<'_, '_> {
    fn solid(&mut self, mesh: impl Into<Mesh>, color: Color, at: Transform) -> Entity {
        let mesh = self.meshes.add(mesh);
        let material = self.materials.add(StandardMaterial {
            base_color: color,
            perceptual_roughness: 0.8,
            ..default()
        });
        self.commands
            .spawn((Mesh3d(mesh), MeshMaterial3d(material), at))
            .id()
    }

    /// A tiled floor in `floor` (sRGB) and four walls in `wall` around `area`, each wall
    /// with a darker band along its foot.
    fn enclosure(&mut self, area: Area, floor: [u8; 3], wall: Color) {
        let size = area.half_extents * 2.0;
        let (c, h, t) = (area.center, area.half_extents, WALL_THICKNESS);
        let tiles = self.images.add(scenery::tile_texture(floor));
        let floor = self.materials.add(StandardMaterial {
            base_color_texture: Some(tiles),
            perceptual_roughness: 0.9,
            ..default()
        });
        self.commands.spawn((
            Mesh3d(self.meshes.add(scenery::tiled_floor(size, FLOOR_TILE))),
            MeshMaterial3d(floor),
            Transform::from_xyz(c.x, 0.0, c.y),
        ));
        let band = wall.darker(0.25);
        for side in [-1.0, 1.0] {
            let (along_x, along_z) = (size.x + 2.0 * t, size.y);
            let z = c.y + side * (h.y + t / 2.0);
            let x = c.x + side * (h.x + t / 2.0);
            for (height, thickness, colour) in
                [(WALL_HEIGHT, t, wall), (WALL_BAND, t + BAND_DEPTH, band)]
            {
                let y = height / 2.0;
                self.solid(
                    Cuboid::new(along_x, height, thickness),
                    colour,
                    Transform::from_xyz(c.x, y, z),
                );
                self.solid(
                    Cuboid::new(thickness, height, along_z),
                    colour,
                    Transform::from_xyz(x, y, c.y),
                );
            }
        }
    }

    /// A standing lamp with a glowing bulb and a point light at `spot` (the light is a
    /// [`Lamp`], off when the space is drawn light; the bulb glows either way).
    fn lamp(&mut self, spot: Vec2) {
        self.solid(
            Cylinder::new(0.04, 2.2),
            Color::srgb(0.15, 0.15, 0.17),
            Transform::from_xyz(spot.x, 1.1, spot.y),
        );
        // A few hundred triangles: Bevy's default sphere has 20 480, which a software
        // renderer sets up one by one however few pixels they cover.
        let bulb = self.meshes.add(Sphere::new(0.16).mesh().uv(16, 8));
        let glow = self.materials.add(StandardMaterial {
            base_color: Color::srgb(1.0, 0.9, 0.7),
            emissive: LinearRgba::new(4.0, 3.2, 2.0, 0.0),
            ..default()
        });
        let at = Transform::from_xyz(spot.x, 2.3, spot.y);
        self.commands
            .spawn((Mesh3d(bulb), MeshMaterial3d(glow), at));
        self.commands.spawn((
            Lamp,
            at,
            PointLight {
                color: Color::srgb(1.0, 0.92, 0.8),
                intensity: 250_000.0,
                range: 16.0,
                ..default()
            },
        ));
    }

    /// A door with its sign; returns the door's entity (its parts are children).
    fn door(&mut self, kind: DoorKind, placement: DoorPlacement, lines: &[&str]) -> Entity {
        let leaf_color = match kind {
            DoorKind::Public(_) => Color::srgb(0.15, 0.45, 0.55),
            DoorKind::NewRoom => Color::srgb(0.2, 0.55, 0.25),
            DoorKind::JoinById => Color::srgb(0.7, 0.5, 0.15),
            DoorKind::Exit => Color::srgb(0.6, 0.2, 0.18),
        };
        let root = self
            .commands
            .spawn((
                Door { kind, placement },
                Transform::from_xyz(placement.center.x, 0.0, placement.center.y)
                    .with_rotation(Quat::from_rotation_y(placement.yaw())),
                Visibility::default(),
            ))
            .id();
        let parts = [
            self.solid(
                Cuboid::new(1.5, 2.45, 0.08),
                Color::srgb(0.12, 0.1, 0.09),
                Transform::from_xyz(0.0, 1.225, 0.04),
            ),
            self.solid(
                Cuboid::new(1.2, 2.2, 0.06),
                leaf_color,
                Transform::from_xyz(0.0, 1.1, 0.09),
            ),
            // A mat in front: where to walk (or click) to go through.
            self.solid(
                Cuboid::new(1.2, 0.01, 0.5),
                leaf_color.darker(0.1),
                Transform::from_xyz(0.0, 0.005, 0.35),
            ),
        ];
        let style = SignStyle {
            background: [24, 26, 32, 255],
            text: [240, 236, 220, 255],
        };
        let material = sign_material(
            self.painter.as_deref(),
            &mut self.images,
            lines,
            SIGN_PIXELS,
            style,
        );
        let sign = self.commands.spawn((
            Mesh3d(self.meshes.add(Rectangle::from_size(SIGN_SIZE))),
            MeshMaterial3d(self.materials.add(material)),
            Transform::from_xyz(0.0, 2.75, 0.015),
        ));
        let sign = sign.id();
        self.commands
            .entity(root)
            .add_children(&parts)
            .add_child(sign);
        root
    }

    /// A sign on a post near the lobby's arrival spot, turned to it, saying what to do.
    fn welcome_sign(&mut self) {
        let (arrival, _) = Location::Lobby.arrival();
        let facing = arrival - WELCOME_SPOT;
        let turned = Quat::from_rotation_y(facing.x.atan2(facing.y));
        // The post stands just behind the sign.
        let post = WELCOME_SPOT - facing.normalize() * 0.08;
        self.solid(
            Cylinder::new(0.05, WELCOME_HEIGHT),
            Color::srgb(0.2, 0.18, 0.16),
            Transform::from_xyz(post.x, WELCOME_HEIGHT / 2.0, post.y),
        );
        let style = SignStyle {
            background: [32, 72, 92, 255],
            text: [250, 246, 232, 255],
        };
        let lines = [
            "Welcome to meetspace",
            "Walk up to someone to talk",
            "Doors lead to rooms",
        ];
        let material = sign_material(
            self.painter.as_deref(),
            &mut self.images,
            &lines,
            WELCOME_PIXELS,
            style,
        );
        self.commands.spawn((
            Mesh3d(self.meshes.add(Rectangle::from_size(WELCOME_SIZE))),
            MeshMaterial3d(self.materials.add(material)),
            Transform::from_xyz(WELCOME_SPOT.x, WELCOME_HEIGHT, WELCOME_SPOT.y)
                .with_rotation(turned),
        ));
    }
}

/// Builds the lobby: floor, walls, the sky and daylight, lamps, the welcome sign, and
/// the "New room" and "Join by id" doors on the side walls (public rooms' doors come
/// and go on the back wall).
pub(super) fn build_lobby(mut builder: Builder) {
    builder.enclosure(LOBBY, [150, 128, 104], Color::srgb(0.78, 0.74, 0.66));
    let sky = scenery::sky(
        &mut builder.meshes,
        &mut builder.materials,
        &mut builder.images,
    );
    builder.commands.spawn(sky);
    // Daylight from the open sky, without shadows (the software renderer's budget).
    builder.commands.spawn((
        DirectionalLight {
            illuminance: SUNLIGHT_LUX,
            shadow_maps_enabled: false,
            ..default()
        },
        Transform::from_xyz(4.0, 10.0, 6.0).looking_at(Vec3::ZERO, Vec3::Y),
    ));
    for corner in [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)] {
        builder
            .lamp(LOBBY.center + Vec2::from(corner) * (LOBBY.half_extents - Vec2::new(5.0, 2.5)));
    }
    builder.door(
        DoorKind::NewRoom,
        wall_door(LOBBY, Vec2::X),
        &["New room", "walk in to create"],
    );
    builder.door(
        DoorKind::JoinById,
        wall_door(LOBBY, -Vec2::X),
        &["Join by id", "enter a room id"],
    );
    builder.welcome_sign();
}

/// Builds the room: floor with a rug where the panels stand, walls, a ceiling, lamps,
/// and the exit door behind the arrival spot.
pub(super) fn build_room(mut builder: Builder) {
    builder.enclosure(ROOM, [70, 76, 96], Color::srgb(0.6, 0.62, 0.68));
    // A ceiling: a room is indoors.
    let size = ROOM.half_extents * 2.0 + Vec2::splat(2.0 * WALL_THICKNESS);
    builder.solid(
        Cuboid::new(size.x, 0.1, size.y),
        Color::srgb(0.86, 0.86, 0.84),
        Transform::from_xyz(ROOM.center.x, WALL_HEIGHT + 0.05, ROOM.center.y),
    );
    builder.solid(
        Cylinder::new(super::panels::PANEL_RADIUS + 1.0, 0.01),
        Color::srgb(0.3, 0.2, 0.2),
        Transform::from_xyz(ROOM.center.x, 0.005, ROOM.center.y),
    );
    for corner in [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)] {
        builder.lamp(ROOM.center + Vec2::from(corner) * (ROOM.half_extents - Vec2::splat(1.2)));
    }
    builder.door(
        DoorKind::Exit,
        wall_door(ROOM, -Vec2::Y),
        &["Exit", "back to the lobby"],
    );
}

/// Puts a door on the lobby's back wall for each public room, its sign naming who is
/// inside; relabelled when the list, a room's head count or who is inside changes.
pub(super) fn show_public_rooms(
    rooms: Res<PublicRooms>,
    space: Res<SpacePeople>,
    mut shown: Local<Vec<(RoomSummary, String)>>,
    doors: Query<(Entity, &Door)>,
    mut builder: Builder,
) {
    // Doors change only when the list or who is where does: not rebuilt every frame.
    if !rooms.is_changed() && !space.is_changed() {
        return;
    }
    let signs: Vec<(RoomSummary, String)> = rooms
        .0
        .iter()
        .map(|room| (room.clone(), inside(&space.in_room(&room.room))))
        .collect();
    if signs == *shown {
        return;
    }
    for (entity, door) in &doors {
        if matches!(door.kind, DoorKind::Public(_)) {
            builder.commands.entity(entity).despawn();
        }
    }
    let places = back_wall_doors(LOBBY, signs.len());
    if places.len() < signs.len() {
        info!(
            "{} public rooms, doors for the first {}",
            signs.len(),
            places.len()
        );
    }
    for ((room, names), placement) in signs.iter().zip(places) {
        let count = format!("{}/{} people", room.participants, room.capacity);
        let mut lines = vec![room.title.as_str(), &count];
        if !names.is_empty() {
            lines.push(names);
        }
        builder.door(DoorKind::Public(room.room.clone()), placement, &lines);
    }
    *shown = signs;
}

/// Who is inside a room, for its door's sign: the first [`NAMES_ON_A_DOOR`] names and
/// how many more.
fn inside(names: &[&DisplayName]) -> String {
    let mut line = names
        .iter()
        .take(NAMES_ON_A_DOOR)
        .map(|name| name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_ON_A_DOOR {
        line.push_str(&format!(" +{}", names.len() - NAMES_ON_A_DOOR));
    }
    line
}

/// Does what the door the player walked into does.
pub(super) fn enter_doors(
    doors: Query<&Door>,
    mut players: Query<(&mut Player, &mut Transform)>,
    state: Res<CallState>,
    config: Res<ClientConfig>,
    mut location: ResMut<Location>,
    mut join_by_id: ResMut<JoinByIdRequested>,
    mut commands: MessageWriter<CallCommand>,
) {
    let area = location.area();
    for (mut player, mut transform) in &mut players {
        let here = floor_of(&transform);
        let Some(door) = doors.iter().find(|door| {
            area.contains(door.placement.center) && door.placement.hit(here, DOOR_REACH)
        }) else {
            continue;
        };
        // Out of any room: idle, or in the lobby (which the room steps out of).
        let idle = *state == CallState::Idle || state.in_lobby();
        match &door.kind {
            DoorKind::Exit => {
                if matches!(*state, CallState::Joining | CallState::InCall { .. }) {
                    commands.write(CallCommand::Leave);
                }
                *location = Location::Lobby;
                continue;
            }
            DoorKind::Public(room) if idle => {
                commands.write(CallCommand::JoinRoom {
                    room: room.clone(),
                    name: config.name.clone(),
                });
            }
            DoorKind::NewRoom if idle => {
                commands.write(CallCommand::CreateRoom {
                    name: config.name.clone(),
                    public_title: Some(room_title(&config.name)),
                });
            }
            DoorKind::JoinById => join_by_id.0 = true,
            _ => {}
        }
        // Out of the doorway, facing it: a join moves the player on once it starts,
        // and a refused one leaves them where they can try again.
        let yaw = player.yaw;
        let spot = area.clamp(door.placement.in_front(STEP_BACK), WALL_MARGIN);
        player.place(&mut transform, spot, yaw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_title_is_named_after_the_player() {
        let name = DisplayName::parse("Ada").unwrap();
        assert_eq!(room_title(&name).as_str(), "Ada's room");
    }

    #[test]
    fn room_title_of_a_long_name_still_fits() {
        let long = "x".repeat(MAX_NAME_CHARS);
        let title = room_title(&DisplayName::parse(&long).unwrap());
        assert_eq!(title.as_str().chars().count(), MAX_NAME_CHARS);
        assert!(title.as_str().ends_with("'s room"));
    }
}
