//! What cameras deliver (MJPEG, YUYV 4:2:2, NV12) converted to the encoder's I420
//! (BT.601, studio range), through maintained crates: `zune-jpeg` decodes MJPEG, the
//! SIMD `yuv` crate does every colour and layout conversion.

use yuv::{
    BufferStoreMut, YuvBiPlanarImage, YuvConversionMode, YuvPackedImage, YuvPlanarImageMut,
    YuvRange, YuvStandardMatrix,
};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::error::FrameError;
use super::frame::{VideoFrame, plane_lengths};

/// Largest side accepted from a camera's JPEG header.
const MAX_JPEG_SIDE: usize = 4096;

/// A pixel layout a camera can deliver and meetspace can convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraPixels {
    /// Motion JPEG: each frame a JPEG picture (full-range YCbCr, as JFIF says).
    Mjpeg,
    /// Packed 4:2:2, `Y0 U Y1 V` per pixel pair.
    Yuyv,
    /// A luma plane then one interleaved `U V` plane at 4:2:0.
    Nv12,
}

/// Converts one `width` x `height` camera frame in `pixels` layout to I420. A JPEG's
/// own size wins over `width` x `height`.
pub fn camera_frame_to_i420(
    pixels: CameraPixels,
    width: u32,
    height: u32,
    data: &[u8],
) -> Result<VideoFrame, FrameError> {
    match pixels {
        CameraPixels::Mjpeg => mjpeg_to_i420(data),
        CameraPixels::Yuyv => yuyv_to_i420(width, height, data),
        CameraPixels::Nv12 => nv12_to_i420(width, height, data),
    }
}

/// A JPEG picture to I420: decoded to RGB, then converted to studio-range YUV.
fn mjpeg_to_i420(data: &[u8]) -> Result<VideoFrame, FrameError> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(MAX_JPEG_SIDE)
        .set_max_height(MAX_JPEG_SIDE);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), options);
    let rgb = decoder
        .decode()
        .map_err(|error| FrameError::Conversion(format!("a camera JPEG frame: {error}")))?;
    let info = decoder
        .info()
        .ok_or_else(|| FrameError::Conversion("a camera JPEG frame has no size".to_owned()))?;
    rgb_to_i420(u32::from(info.width), u32::from(info.height), &rgb)
}

/// One of the `yuv` crate's packed-RGB-to-YUV 4:2:0 conversions.
type PackedToYuv420 = fn(
    &mut YuvPlanarImageMut<'_, u8>,
    &[u8],
    u32,
    YuvRange,
    YuvStandardMatrix,
    YuvConversionMode,
) -> Result<(), yuv::YuvError>;

/// Packed RGB or RGBA (`bytes_per_pixel` 3 or 4, full range) to I420 (studio range,
/// BT.601) through `convert`.
fn packed_to_i420(
    width: u32,
    height: u32,
    data: &[u8],
    bytes_per_pixel: u32,
    convert: PackedToYuv420,
) -> Result<VideoFrame, FrameError> {
    let mut frame = blank(width, height)?;
    expect_bytes(
        data,
        width as usize * height as usize * bytes_per_pixel as usize,
    )?;
    let mut planes = planes_of(&mut frame);
    convert(
        &mut planes,
        data,
        width * bytes_per_pixel,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
        YuvConversionMode::Balanced,
    )
    .map_err(conversion)?;
    Ok(frame)
}

/// RGB (full range) to I420 (studio range, BT.601).
fn rgb_to_i420(width: u32, height: u32, rgb: &[u8]) -> Result<VideoFrame, FrameError> {
    packed_to_i420(width, height, rgb, 3, yuv::rgb_to_yuv420)
}

/// RGBA (full range, alpha ignored) to I420 (studio range, BT.601): pictures drawn on
/// the CPU, such as the placeholder, for the encoder.
pub fn rgba_to_i420(width: u32, height: u32, rgba: &[u8]) -> Result<VideoFrame, FrameError> {
    packed_to_i420(width, height, rgba, 4, yuv::rgba_to_yuv420)
}

/// YUYV to I420: the chroma of each two rows is averaged into one.
fn yuyv_to_i420(width: u32, height: u32, data: &[u8]) -> Result<VideoFrame, FrameError> {
    let mut frame = blank(width, height)?;
    expect_bytes(data, width as usize * height as usize * 2)?;
    let packed = YuvPackedImage {
        yuy: &data[..width as usize * height as usize * 2],
        yuy_stride: width * 2,
        width,
        height,
    };
    yuv::yuyv422_to_yuv420(&mut planes_of(&mut frame), &packed).map_err(conversion)?;
    Ok(frame)
}

/// NV12 to I420. The `yuv` crate has no direct NV12 to I420 path, so this goes through
/// RGB (two SIMD passes, rounding error of one or two levels).
fn nv12_to_i420(width: u32, height: u32, data: &[u8]) -> Result<VideoFrame, FrameError> {
    let (luma, chroma) = plane_lengths(width, height)?;
    expect_bytes(data, luma + 2 * chroma)?;
    let bi_planar = YuvBiPlanarImage {
        y_plane: &data[..luma],
        y_stride: width,
        uv_plane: &data[luma..luma + 2 * chroma],
        uv_stride: width,
        width,
        height,
    };
    let mut rgb = vec![0; width as usize * height as usize * 3];
    yuv::yuv_nv12_to_rgb(
        &bi_planar,
        &mut rgb,
        width * 3,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
        YuvConversionMode::Balanced,
    )
    .map_err(conversion)?;
    rgb_to_i420(width, height, &rgb)
}

/// A black I420 frame of the given size, to be written over.
fn blank(width: u32, height: u32) -> Result<VideoFrame, FrameError> {
    let (luma, chroma) = plane_lengths(width, height)?;
    VideoFrame::new(
        width,
        height,
        vec![16; luma],
        vec![128; chroma],
        vec![128; chroma],
    )
}

/// The planes of `frame` as the `yuv` crate writes them.
fn planes_of(frame: &mut VideoFrame) -> YuvPlanarImageMut<'_, u8> {
    let chroma_stride = frame.chroma_width();
    YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(&mut frame.y),
        y_stride: frame.width,
        u_plane: BufferStoreMut::Borrowed(&mut frame.u),
        u_stride: chroma_stride,
        v_plane: BufferStoreMut::Borrowed(&mut frame.v),
        v_stride: chroma_stride,
        width: frame.width,
        height: frame.height,
    }
}

/// Fails unless `data` holds at least `expected` bytes.
fn expect_bytes(data: &[u8], expected: usize) -> Result<(), FrameError> {
    if data.len() < expected {
        return Err(FrameError::Conversion(format!(
            "a camera frame of {} bytes, expected {expected}",
            data.len()
        )));
    }
    Ok(())
}

fn conversion(error: yuv::YuvError) -> FrameError {
    FrameError::Conversion(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::synthetic::BARS;

    /// Width of one colour bar: two 8x8 JPEG blocks, so that chroma is flat inside.
    const BAR: usize = 32;
    const WIDTH: u32 = (BAR * 8) as u32;
    const HEIGHT: u32 = 32;

    /// 75% colour bars in RGB, the same bars `BARS` lists in studio-range YUV.
    const BARS_RGB: [[u8; 3]; 8] = [
        [191, 191, 191],
        [191, 191, 0],
        [0, 191, 191],
        [0, 191, 0],
        [191, 0, 191],
        [191, 0, 0],
        [0, 0, 191],
        [0, 0, 0],
    ];

    /// The bar under pixel column `x`.
    fn bar(x: usize) -> usize {
        x / BAR
    }

    /// Asserts that every bar of `frame`, away from its edges, has the YUV of `BARS`
    /// within `tolerance` levels on average.
    fn assert_bars(frame: &VideoFrame, tolerance: f64) {
        assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT));
        let (w, cw) = (WIDTH as usize, WIDTH as usize / 2);
        for (index, expected) in BARS.iter().enumerate() {
            let columns = index * BAR + 4..(index + 1) * BAR - 4;
            let mean = |plane: &[u8], stride: usize, rows: usize, scale: usize| {
                let picked: Vec<f64> = (0..rows)
                    .flat_map(|row| {
                        columns
                            .clone()
                            .step_by(scale)
                            .map(move |x| f64::from(plane[row * stride + x / scale]))
                    })
                    .collect();
                picked.iter().sum::<f64>() / picked.len() as f64
            };
            let got = [
                mean(&frame.y, w, HEIGHT as usize, 1),
                mean(&frame.u, cw, HEIGHT as usize / 2, 2),
                mean(&frame.v, cw, HEIGHT as usize / 2, 2),
            ];
            for (channel, (&got, &want)) in got.iter().zip(expected.iter()).enumerate() {
                assert!(
                    (got - f64::from(want)).abs() <= tolerance,
                    "bar {index} channel {channel}: got {got:.1}, expected {want}"
                );
            }
        }
    }

    fn rgb_bars() -> Vec<u8> {
        (0..HEIGHT as usize * WIDTH as usize)
            .flat_map(|pixel| BARS_RGB[bar(pixel % WIDTH as usize)])
            .collect()
    }

    #[test]
    fn yuyv_bars_convert_to_i420() {
        let yuyv: Vec<u8> = (0..HEIGHT as usize * WIDTH as usize / 2)
            .flat_map(|pair| {
                let [y, u, v] = BARS[bar(pair * 2 % WIDTH as usize)];
                [y, u, y, v]
            })
            .collect();
        let frame = camera_frame_to_i420(CameraPixels::Yuyv, WIDTH, HEIGHT, &yuyv).unwrap();
        assert_bars(&frame, 0.5);
    }

    #[test]
    fn nv12_bars_convert_to_i420() {
        let (w, h) = (WIDTH as usize, HEIGHT as usize);
        let mut nv12: Vec<u8> = (0..w * h).map(|pixel| BARS[bar(pixel % w)][0]).collect();
        nv12.extend((0..w * h / 4).flat_map(|pixel| {
            let [_, u, v] = BARS[bar(pixel % (w / 2) * 2)];
            [u, v]
        }));
        let frame = camera_frame_to_i420(CameraPixels::Nv12, WIDTH, HEIGHT, &nv12).unwrap();
        assert_bars(&frame, 2.5);
    }

    #[test]
    fn mjpeg_bars_convert_to_i420() {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode(&rgb_bars(), WIDTH, HEIGHT, image::ExtendedColorType::Rgb8)
            .unwrap();
        // The size comes from the JPEG, whatever the camera said.
        let frame = camera_frame_to_i420(CameraPixels::Mjpeg, 0, 0, &jpeg).unwrap();
        assert_bars(&frame, 4.0);
    }

    #[test]
    fn short_or_broken_frames_are_errors() {
        assert!(camera_frame_to_i420(CameraPixels::Yuyv, 64, 32, &[0; 100]).is_err());
        assert!(camera_frame_to_i420(CameraPixels::Nv12, 64, 32, &[0; 100]).is_err());
        assert!(camera_frame_to_i420(CameraPixels::Mjpeg, 64, 32, b"not a jpeg").is_err());
        assert!(camera_frame_to_i420(CameraPixels::Yuyv, 63, 32, &[0; 8192]).is_err());
    }
}
