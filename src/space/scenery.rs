//! Scenery made in code (no downloaded assets) and light enough for a software
//! renderer: the lobby's sky, a dome coloured by height, and floor tiles, a small
//! texture repeated across a floor. Both are textures on Bevy's standard material, so
//! every surface of the space is drawn by one shader: a second one (vertex colours,
//! as the sky had) was composed and compiled before the browser's first picture.

use std::f32::consts::{FRAC_PI_2, PI};

use bevy::image::{ImageAddressMode, ImageSampler, ImageSamplerDescriptor};
use bevy::mesh::VertexAttributeValues;
use bevy::prelude::*;

use crate::media::convert::rgba_image;

/// Radius of the sky dome around the lobby, metres.
const SKY_RADIUS: f32 = 150.0;
/// The sky at the horizon, near white, as linear RGB.
const HORIZON: Vec3 = Vec3::new(0.80, 0.84, 0.88);
/// The sky straight up.
const ZENITH: Vec3 = Vec3::new(0.16, 0.36, 0.78);
/// Below the horizon (seen only past the lobby's walls' tops, never in practice).
const BELOW: Vec3 = Vec3::new(0.32, 0.30, 0.28);
/// Side of a floor texture, pixels: one tile of four squares.
const TILE_PIXELS: u32 = 64;
/// Width of the grout between squares, pixels.
const GROUT_PIXELS: u32 = 2;
/// Rows of the sky's texture, from straight up to straight down.
const SKY_ROWS: u32 = 64;

/// The sky's colour (linear RGBA) in a direction `height` up from the horizon (-1
/// straight down to 1 straight up).
fn sky_colour(height: f32) -> [f32; 4] {
    let colour = if height >= 0.0 {
        HORIZON.lerp(ZENITH, height.min(1.0).powf(0.5))
    } else {
        HORIZON.lerp(BELOW, (-height).min(1.0).powf(0.3))
    };
    [colour.x, colour.y, colour.z, 1.0]
}

/// The sky's texture: one column, its rows the sky's colour from straight up (the top
/// row) to straight down, as a UV sphere's texture coordinate runs from pole to pole.
fn sky_texture() -> Image {
    let data = (0..SKY_ROWS)
        .flat_map(|row| {
            let pole_to_pole = (row as f32 + 0.5) / SKY_ROWS as f32;
            let [r, g, b, a] = sky_colour((pole_to_pole * PI).cos());
            Color::linear_rgba(r, g, b, a).to_srgba().to_u8_array()
        })
        .collect();
    let mut image = rgba_image(1, SKY_ROWS, data);
    image.sampler = ImageSampler::linear();
    image
}

/// The lobby's sky: a sphere around it, seen from inside, coloured by height; drawn
/// unlit, both faces. Bevy's UV sphere has its poles on Z: it is turned to have them
/// on Y, up.
pub(super) fn sky(
    meshes: &mut Assets<Mesh>,
    materials: &mut Assets<StandardMaterial>,
    images: &mut Assets<Image>,
) -> (Mesh3d, MeshMaterial3d<StandardMaterial>, Transform) {
    let material = StandardMaterial {
        base_color: Color::WHITE,
        base_color_texture: Some(images.add(sky_texture())),
        unlit: true,
        cull_mode: None,
        fog_enabled: false,
        ..default()
    };
    (
        Mesh3d(meshes.add(Sphere::new(SKY_RADIUS).mesh().uv(32, 12))),
        MeshMaterial3d(materials.add(material)),
        Transform::from_rotation(Quat::from_rotation_x(-FRAC_PI_2)),
    )
}

/// A floor tile texture: four squares in two tones of `colour` (sRGB) with darker
/// grout between them, repeating (one tile is the whole texture).
pub(super) fn tile_texture(colour: [u8; 3]) -> Image {
    let shade = |factor: f32| colour.map(|c| (f32::from(c) * factor).round().min(255.0) as u8);
    let (light, dark, grout) = (shade(1.06), shade(0.9), shade(0.6));
    let half = TILE_PIXELS / 2;
    let mut data = Vec::with_capacity((TILE_PIXELS * TILE_PIXELS * 4) as usize);
    for y in 0..TILE_PIXELS {
        for x in 0..TILE_PIXELS {
            let in_grout = x % half < GROUT_PIXELS || y % half < GROUT_PIXELS;
            let [r, g, b] = match (in_grout, (x / half + y / half) % 2) {
                (true, _) => grout,
                (false, 0) => light,
                (false, _) => dark,
            };
            data.extend_from_slice(&[r, g, b, 255]);
        }
    }
    let mut image = rgba_image(TILE_PIXELS, TILE_PIXELS, data);
    image.sampler = ImageSampler::Descriptor(ImageSamplerDescriptor {
        address_mode_u: ImageAddressMode::Repeat,
        address_mode_v: ImageAddressMode::Repeat,
        ..ImageSamplerDescriptor::linear()
    });
    image
}

/// A floor of `size` metres (x, z) facing up, its texture repeating every `tile`
/// metres.
pub(super) fn tiled_floor(size: Vec2, tile: f32) -> Mesh {
    let mut mesh = Plane3d::new(Vec3::Y, size / 2.0).mesh().build();
    if let Some(VertexAttributeValues::Float32x2(uvs)) = mesh.attribute_mut(Mesh::ATTRIBUTE_UV_0) {
        for uv in uvs {
            uv[0] *= size.x / tile;
            uv[1] *= size.y / tile;
        }
    }
    mesh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sky_is_bluest_overhead_and_palest_at_the_horizon() {
        let blueness = |height: f32| {
            let [r, _, b, _] = sky_colour(height);
            b - r
        };
        assert!(blueness(1.0) > blueness(0.5));
        assert!(blueness(0.5) > blueness(0.0));
        assert_eq!(sky_colour(0.0), [HORIZON.x, HORIZON.y, HORIZON.z, 1.0]);
    }

    #[test]
    fn the_sky_texture_runs_from_zenith_to_below_and_the_dome_stands_upright() {
        let image = sky_texture();
        let row = |row: u32| {
            let at = (row * 4) as usize;
            image.data.as_ref().unwrap()[at..at + 4].to_vec()
        };
        let srgb = |colour: Vec3| {
            Color::linear_rgb(colour.x, colour.y, colour.z)
                .to_srgba()
                .to_u8_array()
        };
        let close = |a: Vec<u8>, b: [u8; 4]| a.iter().zip(b).all(|(a, b)| a.abs_diff(b) <= 6);
        assert!(close(row(0), srgb(ZENITH)), "top row {:?}", row(0));
        assert!(
            close(row(SKY_ROWS - 1), srgb(BELOW)),
            "bottom row {:?}",
            row(SKY_ROWS - 1)
        );
        let palest = (0..SKY_ROWS)
            .max_by_key(|&r| row(r)[..3].iter().map(|&c| u32::from(c)).sum::<u32>())
            .unwrap();
        assert!(
            (SKY_ROWS / 2 - 1..=SKY_ROWS / 2).contains(&palest),
            "the horizon is in the middle, not at row {palest}"
        );

        // The first row of the sphere's texture coordinates (v = 0) is its top.
        let mut meshes = Assets::<Mesh>::default();
        let mut materials = Assets::<StandardMaterial>::default();
        let mut images = Assets::<Image>::default();
        let (Mesh3d(mesh), _, transform) = sky(&mut meshes, &mut materials, &mut images);
        let mesh = meshes.get(&mesh).unwrap();
        let (
            Some(VertexAttributeValues::Float32x3(positions)),
            Some(VertexAttributeValues::Float32x2(uvs)),
        ) = (
            mesh.attribute(Mesh::ATTRIBUTE_POSITION),
            mesh.attribute(Mesh::ATTRIBUTE_UV_0),
        )
        else {
            panic!("a sky without positions or texture coordinates");
        };
        for (position, uv) in positions.iter().zip(uvs) {
            let height = transform.transform_point(Vec3::from(*position)).y / SKY_RADIUS;
            assert!(
                (height - (uv[1] * PI).cos()).abs() < 1e-4,
                "v {} at height {height}",
                uv[1]
            );
        }
    }

    #[test]
    fn a_floor_tile_has_two_tones_and_grout_and_repeats() {
        let image = tile_texture([100, 120, 140]);
        let pixel = |x: u32, y: u32| {
            let at = ((y * TILE_PIXELS + x) * 4) as usize;
            image.data.as_ref().unwrap()[at..at + 3].to_vec()
        };
        let half = TILE_PIXELS / 2;
        assert_eq!(pixel(0, 5), vec![60, 72, 84], "grout");
        assert_ne!(pixel(8, 8), pixel(half + 8, 8), "two tones side by side");
        assert_eq!(pixel(8, 8), pixel(half + 8, half + 8), "a checker");
        assert!(matches!(
            &image.sampler,
            ImageSampler::Descriptor(d) if d.address_mode_u == ImageAddressMode::Repeat
        ));
        let floor = tiled_floor(Vec2::new(20.0, 14.0), 2.0);
        let Some(VertexAttributeValues::Float32x2(uvs)) = floor.attribute(Mesh::ATTRIBUTE_UV_0)
        else {
            panic!("a floor without UVs");
        };
        let widest = uvs.iter().map(|uv| uv[0]).fold(0.0, f32::max);
        assert_eq!(widest, 10.0, "20 m of 2 m tiles");
    }
}
