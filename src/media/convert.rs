//! Colour conversion for display: I420 (what decoders produce) to RGBA (what a Bevy
//! `Image` holds), through the SIMD `yuv` crate.

use bevy::asset::RenderAssetUsages;
use bevy::image::Image;
use bevy::render::render_resource::{Extent3d, TextureDimension, TextureFormat};
use yuv::{YuvPlanarImage, YuvRange, YuvStandardMatrix};

use super::error::FrameError;
use super::frame::VideoFrame;

/// Bytes per RGBA pixel.
pub const RGBA_BYTES: usize = 4;

/// A Bevy image of `rgba` (`width` x `height` sRGB pixels, row by row), kept in the
/// render world only.
pub fn rgba_image(width: u32, height: u32, rgba: Vec<u8>) -> Image {
    Image::new(
        Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        TextureDimension::D2,
        rgba,
        TextureFormat::Rgba8UnormSrgb,
        RenderAssetUsages::RENDER_WORLD,
    )
}

/// Converts `frame` (BT.601, limited range, as VP8 codes it) into `rgba`, resizing the
/// buffer only when the frame size changed.
pub fn i420_to_rgba(frame: &VideoFrame, rgba: &mut Vec<u8>) -> Result<(), FrameError> {
    frame.validate()?;
    let chroma_stride = frame.chroma_width();
    let planes = YuvPlanarImage {
        y_plane: &frame.y,
        y_stride: frame.width,
        u_plane: &frame.u,
        u_stride: chroma_stride,
        v_plane: &frame.v,
        v_stride: chroma_stride,
        width: frame.width,
        height: frame.height,
    };
    rgba.resize(frame.width as usize * frame.height as usize * RGBA_BYTES, 0);
    yuv::yuv420_to_rgba(
        &planes,
        rgba,
        frame.width * RGBA_BYTES as u32,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
    )
    .map_err(|error| FrameError::Conversion(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_white_convert_to_grey_and_white() {
        let (w, h) = (4u32, 2u32);
        let chroma = (w / 2 * h / 2) as usize;
        let mut y = vec![16u8; (w * h) as usize];
        y[0] = 235;
        let frame = VideoFrame::new(w, h, y, vec![128; chroma], vec![128; chroma]).unwrap();
        let mut rgba = Vec::new();
        i420_to_rgba(&frame, &mut rgba).unwrap();
        assert_eq!(rgba.len(), (w * h) as usize * RGBA_BYTES);
        assert!(
            rgba[..3].iter().all(|&c| c >= 250),
            "white: {:?}",
            &rgba[..4]
        );
        assert!(
            rgba[4..7].iter().all(|&c| c <= 5),
            "black: {:?}",
            &rgba[4..8]
        );
        assert_eq!(rgba[3], 255);
    }
}
