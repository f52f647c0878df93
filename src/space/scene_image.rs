//! Drawing the space at a lower resolution. A software renderer's cost grows with the
//! pixels it fills, so in the light profile the player's camera renders into an image
//! of half the window's size, and a second camera, the [`WindowPresenter`], shows that
//! image stretched over the whole window. The presenter always draws last on the
//! window, over whatever the player's camera drew there (in the full profile, the space
//! itself), and the overlay is drawn with it, at the window's full resolution.
//!
//! The image counts as a target with half the window's scale factor, so its logical
//! size is the window's: cursor rays, projected panel corners and screenshots work in
//! the same coordinates either way.

use bevy::asset::embedded_asset;
use bevy::camera::visibility::RenderLayers;
use bevy::camera::{ImageRenderTarget, RenderTarget};
use bevy::core_pipeline::tonemapping::{DebandDither, Tonemapping};
use bevy::prelude::*;
use bevy::render::RenderPlugin;
use bevy::render::render_resource::{AsBindGroup, TextureFormat};
use bevy::shader::ShaderRef;
use bevy::window::{PrimaryWindow, WindowRef};

use super::graphics::Graphics;
use super::player::Player;

/// The share of the window's width and height the space is drawn at in the light
/// profile (a quarter of the pixels).
const LIGHT_RENDER_SCALE: f32 = 0.5;

/// The render layer only the presenter sees: its screen quad.
const PRESENTER_LAYER: usize = 1;

/// The camera that draws last on the window: the space's image when it is drawn at a
/// lower resolution, and the overlay.
#[derive(Component, Debug)]
pub struct WindowPresenter;

/// The quad that shows the space's image over the whole window.
#[derive(Component, Debug)]
pub(super) struct SceneQuad;

/// Shows an image as it is: the cheapest material to cover the window with (the lit
/// material's shader, even unlit, cost a software renderer 170 ms a frame at 1280x720).
#[derive(Asset, TypePath, AsBindGroup, Debug, Clone)]
pub(super) struct ScreenMaterial {
    #[texture(0)]
    #[sampler(1)]
    image: Handle<Image>,
}

impl Material for ScreenMaterial {
    fn fragment_shader() -> ShaderRef {
        "embedded://meetspace/space/screen.wgsl".into()
    }
}

/// Registers the presenter's material, in apps that render.
pub(super) fn add_screen_material(app: &mut App) {
    if app.is_plugin_added::<RenderPlugin>() {
        embedded_asset!(app, "screen.wgsl");
        app.add_plugins(MaterialPlugin::<ScreenMaterial>::default());
    }
}

/// The image the space is drawn into at a lower resolution.
#[derive(Resource, Debug, Clone)]
pub(super) struct SceneImage(Handle<Image>);

/// The image's size for a window of `physical` pixels.
fn scaled_size(physical: UVec2) -> UVec2 {
    (physical.as_vec2() * LIGHT_RENDER_SCALE)
        .round()
        .as_uvec2()
        .max(UVec2::ONE)
}

/// Spawns the presenter, the image and the quad showing it (apps with a window only).
pub(super) fn spawn_presenter(
    mut commands: Commands,
    window: Query<&Window, With<PrimaryWindow>>,
    images: Option<ResMut<Assets<Image>>>,
    meshes: Option<ResMut<Assets<Mesh>>>,
    materials: Option<ResMut<Assets<ScreenMaterial>>>,
) {
    let (Ok(window), Some(mut images), Some(mut meshes), Some(mut materials)) =
        (window.single(), images, meshes, materials)
    else {
        return;
    };
    let image = images.add(scene_image(scaled_size(window.physical_size())));
    commands.insert_resource(SceneImage(image.clone()));
    commands.spawn((
        WindowPresenter,
        Camera3d::default(),
        Camera {
            order: 1,
            clear_color: ClearColorConfig::None,
            ..default()
        },
        Projection::Orthographic(OrthographicProjection::default_3d()),
        // The image is tone-mapped already: shown as it is.
        Tonemapping::None,
        DebandDither::Disabled,
        RenderLayers::layer(PRESENTER_LAYER),
    ));
    commands.spawn((
        SceneQuad,
        Mesh3d(meshes.add(Rectangle::new(1.0, 1.0))),
        MeshMaterial3d(materials.add(ScreenMaterial { image })),
        Transform::from_xyz(0.0, 0.0, -1.0),
        Visibility::Hidden,
        RenderLayers::layer(PRESENTER_LAYER),
    ));
}

/// Points the player's camera at the window or at the image as the graphics setting
/// says, and keeps the image and the quad at the window's size.
pub(super) fn follow_window(
    graphics: Res<Graphics>,
    scene: Option<ResMut<SceneImage>>,
    window: Query<&Window, With<PrimaryWindow>>,
    images: Option<ResMut<Assets<Image>>>,
    materials: Option<ResMut<Assets<ScreenMaterial>>>,
    mut player: Query<&mut RenderTarget, With<Player>>,
    mut quad: Query<
        (
            &mut Transform,
            &mut Visibility,
            &mut MeshMaterial3d<ScreenMaterial>,
        ),
        With<SceneQuad>,
    >,
) {
    let (Some(mut scene), Ok(window), Some(mut images), Some(mut materials)) =
        (scene, window.single(), images, materials)
    else {
        return;
    };
    let scaled = graphics.light();
    let size = scaled_size(window.physical_size());
    if scaled
        && images
            .get(&scene.0)
            .is_none_or(|image| image.size() != size)
    {
        // A render target's texture, and the material that samples it, are made for
        // one size: a new size takes a new image (the old ones go with their handles).
        scene.0 = images.add(scene_image(size));
        for (_, _, mut material) in &mut quad {
            material.0 = materials.add(ScreenMaterial {
                image: scene.0.clone(),
            });
        }
    }
    let target = if scaled {
        RenderTarget::Image(ImageRenderTarget {
            handle: scene.0.clone(),
            scale_factor: image_scale_factor(window, size),
        })
    } else {
        RenderTarget::default()
    };
    for mut current in &mut player {
        if !same_target(&current, &target) {
            *current = target.clone();
        }
    }
    for (mut transform, mut visibility, _) in &mut quad {
        let scale = window.size().extend(1.0);
        if transform.scale != scale {
            transform.scale = scale;
        }
        visibility.set_if_neq(if scaled {
            Visibility::Visible
        } else {
            Visibility::Hidden
        });
    }
}

/// An image the player's camera can draw into.
fn scene_image(size: UVec2) -> Image {
    Image::new_target_texture(size.x, size.y, TextureFormat::Rgba8UnormSrgb, None)
}

/// The scale factor that gives an image of `size` the window's logical size.
fn image_scale_factor(window: &Window, size: UVec2) -> f32 {
    window.scale_factor() * size.x as f32 / window.physical_width().max(1) as f32
}

/// Whether two targets are both the primary window, or the same image at the same scale.
fn same_target(a: &RenderTarget, b: &RenderTarget) -> bool {
    match (a, b) {
        (RenderTarget::Window(WindowRef::Primary), RenderTarget::Window(WindowRef::Primary)) => {
            true
        }
        (RenderTarget::Image(a), RenderTarget::Image(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_is_half_the_window_and_never_empty() {
        assert_eq!(scaled_size(UVec2::new(1280, 720)), UVec2::new(640, 360));
        assert_eq!(scaled_size(UVec2::new(1, 1)), UVec2::new(1, 1));
        assert_eq!(scaled_size(UVec2::ZERO), UVec2::ONE);
    }

    #[test]
    fn the_image_has_the_window_s_logical_size_at_any_scale_factor() {
        for scale in [1.0, 1.5, 2.0] {
            let mut window = Window::default();
            window.resolution.set_scale_factor(scale);
            window.resolution.set_physical_resolution(2560, 1440);
            let size = scaled_size(window.physical_size());
            let logical_width = size.x as f32 / image_scale_factor(&window, size);
            assert!((logical_width - window.width()).abs() < 0.01, "at {scale}");
        }
    }
}
