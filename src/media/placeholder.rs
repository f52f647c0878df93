//! The picture sent in place of video when there is no camera, the one asked for cannot
//! be opened, or it vanished mid-call: the user's name on a colour picked from the
//! name, so a person's placeholder looks the same on every screen and in the self-view.

use super::camera_format::rgba_to_i420;
use super::error::FrameError;
use super::frame::VideoFrame;
use super::sign::{SignPainter, SignStyle};

/// The placeholder's background for `name`: one of a few calm, dark colours (white text
/// reads on each), the same for the same name everywhere.
pub fn placeholder_colour(name: &str) -> [u8; 4] {
    const COLOURS: [[u8; 4]; 6] = [
        [46, 94, 170, 255],
        [142, 56, 120, 255],
        [32, 122, 98, 255],
        [170, 84, 30, 255],
        [92, 70, 160, 255],
        [150, 46, 52, 255],
    ];
    // FNV-1a: stable across builds and platforms, unlike the std hasher.
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    COLOURS[hash as usize % COLOURS.len()]
}

/// A still video source: `name` drawn once on its colour, handed out for every frame.
#[derive(Debug, Clone)]
pub struct PlaceholderVideo {
    frame: VideoFrame,
}

impl PlaceholderVideo {
    /// Draws `name` centred on a `width` x `height` picture.
    pub fn new(name: &str, width: u32, height: u32) -> Result<Self, FrameError> {
        let painter =
            SignPainter::new().map_err(|error| FrameError::Conversion(error.to_string()))?;
        let style = SignStyle {
            background: placeholder_colour(name),
            text: [255, 255, 255, 255],
        };
        // A margin of empty lines keeps a short name from filling the whole picture.
        let rgba = painter.rgba(&["", name, ""], width, height, style);
        Ok(Self {
            frame: rgba_to_i420(width, height, &rgba)?,
        })
    }

    /// The picture, as the next frame.
    pub fn next_frame(&self) -> VideoFrame {
        self.frame.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::convert::i420_to_rgba;

    #[test]
    fn the_colour_follows_the_name() {
        assert_eq!(placeholder_colour("Alice"), placeholder_colour("Alice"));
        let names = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace"];
        let distinct: std::collections::HashSet<_> =
            names.iter().map(|name| placeholder_colour(name)).collect();
        assert!(distinct.len() >= 3, "names should spread over the colours");
    }

    #[test]
    fn the_picture_is_the_colour_with_white_text_in_the_middle() {
        let placeholder = PlaceholderVideo::new("Alice", 320, 240).unwrap();
        let frame = placeholder.next_frame();
        let mut rgba = Vec::new();
        i420_to_rgba(&frame, &mut rgba).unwrap();
        let pixel = |x: usize, y: usize| &rgba[(y * 320 + x) * 4..(y * 320 + x) * 4 + 3];
        let colour = placeholder_colour("Alice");
        for (got, want) in pixel(4, 4).iter().zip(&colour) {
            assert!(
                got.abs_diff(*want) <= 6,
                "corner {:?} vs {colour:?}",
                pixel(4, 4)
            );
        }
        // The middle band holds the name: some pixels there are near white.
        let white = (0..320)
            .flat_map(|x| (100..140).map(move |y| (x, y)))
            .filter(|&(x, y)| pixel(x, y).iter().all(|&c| c > 220))
            .count();
        assert!(white > 200, "only {white} white pixels: no name drawn");
    }
}
