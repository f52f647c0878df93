//! The self-view: a small mirrored panel in the corner of the player's view showing
//! what our camera sends, while in a room with the camera on.

use bevy::mesh::VertexAttributeValues;
use bevy::prelude::*;

use super::Location;
use super::player::Player;
use crate::call::{OwnMediaState, SelfView, VideoFeed};

/// Size of the self-view in front of the camera (metres at [`DISTANCE`]).
pub(super) const SIZE: Vec2 = Vec2::new(0.24, 0.18);
/// How far in front of the eye the self-view floats.
const DISTANCE: f32 = 0.8;
/// Its centre, right and down from the middle of the view (fits a 16:9 window at the
/// default 45° field of view with a small margin).
const OFFSET: Vec2 = Vec2::new(0.44, -0.22);

/// The self-view's quad and its material.
#[derive(Component)]
pub(super) struct SelfViewScreen {
    material: Handle<StandardMaterial>,
}

/// Hangs a mirrored quad in front of each new player camera.
pub(super) fn spawn_self_view(
    players: Query<Entity, Added<Player>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut commands: Commands,
) {
    for player in &players {
        let mut mesh = Mesh::from(Rectangle::new(SIZE.x, SIZE.y));
        mirror_horizontally(&mut mesh);
        let material = materials.add(StandardMaterial {
            base_color: Color::WHITE,
            unlit: true,
            ..default()
        });
        commands.spawn((
            Mesh3d(meshes.add(mesh)),
            MeshMaterial3d(material.clone()),
            Transform::from_xyz(OFFSET.x, OFFSET.y, -DISTANCE),
            Visibility::Hidden,
            SelfViewScreen { material },
            ChildOf(player),
        ));
    }
}

/// Flips the texture left to right, as a mirror shows a face.
fn mirror_horizontally(mesh: &mut Mesh) {
    if let Some(VertexAttributeValues::Float32x2(uvs)) = mesh.attribute_mut(Mesh::ATTRIBUTE_UV_0) {
        for uv in uvs {
            uv[0] = 1.0 - uv[0];
        }
    }
}

/// Shows our newest captured frame while in a room with the camera on.
pub(super) fn show_self_view(
    location: Res<Location>,
    own_media: Res<OwnMediaState>,
    feeds: Query<&VideoFeed, With<SelfView>>,
    mut screens: Query<(&SelfViewScreen, &mut Visibility)>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let image = feeds.iter().find_map(|feed| feed.image.clone());
    for (screen, mut visibility) in &mut screens {
        let shown = *location == Location::Room && own_media.video && image.is_some();
        visibility.set_if_neq(if shown {
            Visibility::Inherited
        } else {
            Visibility::Hidden
        });
        let current = materials
            .get(&screen.material)
            .and_then(|material| material.base_color_texture.as_ref().map(Handle::id));
        if shown
            && current != image.as_ref().map(Handle::id)
            && let Some(mut material) = materials.get_mut(&screen.material)
        {
            material.base_color_texture = image.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_view_is_mirrored() {
        let mut mesh = Mesh::from(Rectangle::new(1.0, 1.0));
        let before = match mesh.attribute(Mesh::ATTRIBUTE_UV_0) {
            Some(VertexAttributeValues::Float32x2(uvs)) => uvs.clone(),
            other => panic!("unexpected UVs {other:?}"),
        };
        mirror_horizontally(&mut mesh);
        let Some(VertexAttributeValues::Float32x2(after)) = mesh.attribute(Mesh::ATTRIBUTE_UV_0)
        else {
            panic!("UVs vanished");
        };
        for (b, a) in before.iter().zip(after) {
            assert_eq!(a[0], 1.0 - b[0]);
            assert_eq!(a[1], b[1]);
        }
    }
}
