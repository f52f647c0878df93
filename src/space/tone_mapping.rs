//! The tone mapping's lookup table. The space is drawn with Bevy's default tone mapping,
//! Tony McMapface (by Tomasz Stachowiak, MIT OR Apache-2.0, as Bevy ships it), which
//! samples a 48x48x48 table. Bevy's `tonemapping_luts` feature would embed that table and
//! two the space never uses (Blender Filmic, AgX), each a zstd-compressed KTX2 file that
//! the browser bundle's brotli cannot shrink further, plus the KTX2 and zstd decoders:
//! 0.68 MB of the page's download. This embeds only Tony McMapface's table, as the raw
//! texels the GPU takes (`tony_mc_mapface.rgb9e5`, Bevy's KTX2 file decompressed), which
//! brotli sends in 0.23 MB, and gives it to Bevy before Bevy's tone mapping looks for
//! its tables.

use bevy::asset::{RenderAssetUsages, uuid_handle};
use bevy::core_pipeline::tonemapping::TonemappingLuts;
use bevy::image::{ImageAddressMode, ImageFilterMode, ImageSampler, ImageSamplerDescriptor};
use bevy::prelude::*;
use bevy::render::render_resource::{Extent3d, TextureDimension, TextureFormat};

/// The table's texels: 48³ of `Rgb9e5Ufloat`, red fastest, as in Bevy's KTX2 file.
const TONY_MC_MAPFACE_TEXELS: &[u8] = include_bytes!("tony_mc_mapface.rgb9e5");

/// The table's size along each axis.
const TABLE_SIZE: u32 = 48;

/// Where the table lives among the images.
const TONY_MC_MAPFACE: Handle<Image> = uuid_handle!("17e9da8f-9025-495e-b17a-17b83fd5605f");

/// Gives Bevy's tone mapping its table. Added before Bevy's plugins, which then keep
/// the tables they find instead of embedding their own.
pub struct ToneMappingTablePlugin;

impl Plugin for ToneMappingTablePlugin {
    fn build(&self, app: &mut App) {
        // The methods the space does not use get the same table: Bevy binds one for
        // every method, and without its feature would bind a placeholder.
        app.insert_resource(TonemappingLuts {
            blender_filmic: TONY_MC_MAPFACE,
            agx: TONY_MC_MAPFACE,
            tony_mc_mapface: TONY_MC_MAPFACE,
        });
    }

    fn finish(&self, app: &mut App) {
        // Bevy's image plugin, built after this one, holds the images by now.
        if let Some(mut images) = app.world_mut().get_resource_mut::<Assets<Image>>()
            && let Err(error) = images.insert(&TONY_MC_MAPFACE, tony_mc_mapface_table())
        {
            warn!("tone mapping: the table could not be stored: {error}");
        }
    }
}

/// Tony McMapface's table as a 3D image, sampled as Bevy samples its own tables
/// (filtered, clamped at the edges).
fn tony_mc_mapface_table() -> Image {
    let mut image = Image::new(
        Extent3d {
            width: TABLE_SIZE,
            height: TABLE_SIZE,
            depth_or_array_layers: TABLE_SIZE,
        },
        TextureDimension::D3,
        TONY_MC_MAPFACE_TEXELS.to_vec(),
        TextureFormat::Rgb9e5Ufloat,
        // Kept in the main world too, as Bevy keeps its tables, for a renderer that
        // has to be set up again.
        RenderAssetUsages::default(),
    );
    image.sampler = ImageSampler::Descriptor(ImageSamplerDescriptor {
        label: Some("tone mapping table".to_owned()),
        address_mode_u: ImageAddressMode::ClampToEdge,
        address_mode_v: ImageAddressMode::ClampToEdge,
        address_mode_w: ImageAddressMode::ClampToEdge,
        mag_filter: ImageFilterMode::Linear,
        min_filter: ImageFilterMode::Linear,
        mipmap_filter: ImageFilterMode::Linear,
        ..default()
    });
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `Rgb9e5Ufloat` texel as linear red, green and blue.
    fn decode(texel: u32) -> [f32; 3] {
        let scale = 2f32.powi((texel >> 27) as i32 - 15 - 9);
        [0, 9, 18].map(|shift| ((texel >> shift) & 0x1ff) as f32 * scale)
    }

    /// The table's texel for stimulus cell (red, green, blue).
    fn texel(red: u32, green: u32, blue: u32) -> [f32; 3] {
        let index = ((blue * TABLE_SIZE + green) * TABLE_SIZE + red) as usize * 4;
        let bytes = &TONY_MC_MAPFACE_TEXELS[index..index + 4];
        decode(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
    }

    #[test]
    fn the_table_fills_a_48_cube_and_maps_greys_to_rising_greys() {
        let image = tony_mc_mapface_table();
        assert_eq!(image.texture_descriptor.dimension, TextureDimension::D3);
        assert_eq!(
            image.data.as_ref().map(Vec::len),
            Some((TABLE_SIZE * TABLE_SIZE * TABLE_SIZE * 4) as usize)
        );

        let mut previous = texel(0, 0, 0)[0];
        assert!(previous < 0.001, "no light stays black");
        for cell in 1..TABLE_SIZE {
            let [red, green, blue] = texel(cell, cell, cell);
            assert!(red > previous, "grey {cell} is brighter than the one below");
            assert!(red <= 1.0, "grey {cell} is within the display's range");
            for channel in [green, blue] {
                assert!((channel - red).abs() < 0.02, "grey {cell} stays grey");
            }
            previous = red;
        }
        // The first axis is red: a middling red stays red, and Tony McMapface turns the
        // brightest to white.
        let [red, green, blue] = texel(TABLE_SIZE / 2, 0, 0);
        assert!(red > 0.5 && red > 10.0 * green.max(blue), "a red stays red");
        let [red, green, blue] = texel(TABLE_SIZE - 1, 0, 0);
        assert!(green.min(blue) > 0.9 * red, "the brightest red turns white");
    }
}
