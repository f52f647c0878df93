//! The room's big wall: a screen someone shares, on the wall that faces the arrival
//! spot (the one opposite the exit), sized to the picture's aspect ratio and readable
//! from the middle of the room, with the sharer's name under it. One share is shown at
//! a time: the first that arrived.

use bevy::prelude::*;

use super::ROOM;
use super::lobby::Builder;
use super::sign_material::sign_material;
use crate::call::{Participant, SharedScreen, VideoFeed};
use crate::media::SignStyle;

/// The largest the picture gets on the wall, metres (the wall is 15 m wide, 3.2 m
/// high).
pub const WALL_SCREEN_MAX: Vec2 = Vec2::new(7.2, 2.5);
/// Height of the picture's centre above the floor.
pub const WALL_SCREEN_Y: f32 = 1.85;
/// How far in front of the wall the picture hangs.
const OFF_THE_WALL: f32 = 0.06;
/// The name sign under the picture, metres.
const NAME_SIGN: Vec2 = Vec2::new(2.4, 0.3);

/// The picture on the wall (its entity's scale is its size in metres), showing the
/// [`SharedScreen`] entity `shared`.
#[derive(Component, Debug)]
pub struct WallScreen {
    /// The shared screen shown.
    pub shared: Entity,
    material: Handle<StandardMaterial>,
    name_sign: Entity,
}

/// The middle of the wall the screen hangs on: the room's far wall (−z), facing +z.
pub fn wall_screen_center() -> Vec3 {
    Vec3::new(
        ROOM.center.x,
        WALL_SCREEN_Y,
        ROOM.center.y - ROOM.half_extents.y + OFF_THE_WALL,
    )
}

/// The size a `width` x `height` picture gets on the wall: as large as fits
/// [`WALL_SCREEN_MAX`], keeping its aspect ratio.
pub fn wall_screen_size(width: u32, height: u32) -> Vec2 {
    let aspect = width.max(1) as f32 / height.max(1) as f32;
    if aspect >= WALL_SCREEN_MAX.x / WALL_SCREEN_MAX.y {
        Vec2::new(WALL_SCREEN_MAX.x, WALL_SCREEN_MAX.x / aspect)
    } else {
        Vec2::new(WALL_SCREEN_MAX.y * aspect, WALL_SCREEN_MAX.y)
    }
}

/// Puts the first shared screen with a picture on the wall, keeps its picture and size
/// up to date, and takes it down when that share ends.
pub(super) fn show_shared_screen(
    shared: Query<(Entity, &SharedScreen, &VideoFeed)>,
    participants: Query<&Participant>,
    mut walls: Query<(Entity, &WallScreen, &mut Transform)>,
    mut builder: Builder,
) {
    let Builder {
        commands,
        meshes,
        materials,
        images,
        painter,
    } = &mut builder;
    let shown = shared
        .iter()
        .find_map(|(entity, screen, feed)| Some((entity, screen, feed.image.clone()?, feed.size?)));
    for (entity, wall, _) in &walls {
        if shown
            .as_ref()
            .is_none_or(|(shared, _, _, _)| *shared != wall.shared)
        {
            commands.entity(wall.name_sign).despawn();
            commands.entity(entity).despawn();
        }
    }
    let Some((entity, screen, image, picture)) = shown else {
        return;
    };
    let size = wall_screen_size(picture.x, picture.y);
    if let Some((_, wall, mut transform)) =
        walls.iter_mut().find(|(_, wall, _)| wall.shared == entity)
    {
        transform.scale = size.extend(1.0);
        let current = materials
            .get(&wall.material)
            .and_then(|material| material.base_color_texture.as_ref().map(Handle::id));
        if current != Some(image.id())
            && let Some(mut material) = materials.get_mut(&wall.material)
        {
            material.base_color_texture = Some(image);
        }
        return;
    }
    let name = participants
        .iter()
        .find(|participant| participant.peer_id == screen.peer_id)
        .map_or_else(String::new, |participant| participant.name.to_string());
    let material = materials.add(StandardMaterial {
        base_color_texture: Some(image),
        unlit: true,
        ..default()
    });
    let center = wall_screen_center();
    let sign = materials.add(sign_material(
        painter.as_deref(),
        images,
        &[&format!("{name} is sharing")],
        UVec2::new(640, 80),
        SignStyle {
            background: [20, 20, 24, 255],
            text: [255, 255, 255, 255],
        },
    ));
    let name_sign = commands
        .spawn((
            Mesh3d(meshes.add(Rectangle::from_size(NAME_SIGN))),
            MeshMaterial3d(sign),
            Transform::from_translation(center - Vec3::Y * (WALL_SCREEN_MAX.y / 2.0 + NAME_SIGN.y)),
        ))
        .id();
    commands.spawn((
        WallScreen {
            shared: entity,
            material: material.clone(),
            name_sign,
        },
        Mesh3d(meshes.add(Rectangle::new(1.0, 1.0))),
        MeshMaterial3d(material),
        Transform::from_translation(center).with_scale(size.extend(1.0)),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_screen_keeps_the_aspect_ratio_within_the_wall() {
        let wide = wall_screen_size(1920, 1080);
        assert!((wide.x / wide.y - 16.0 / 9.0).abs() < 1e-4);
        assert!(wide.x <= WALL_SCREEN_MAX.x && wide.y <= WALL_SCREEN_MAX.y);
        let square = wall_screen_size(800, 800);
        assert_eq!(square, Vec2::splat(WALL_SCREEN_MAX.y));
        let panorama = wall_screen_size(4000, 500);
        assert_eq!(panorama.x, WALL_SCREEN_MAX.x);
        // The far wall is inside the room, facing its middle.
        let center = wall_screen_center();
        assert!(ROOM.contains(Vec2::new(center.x, center.z)));
    }
}
