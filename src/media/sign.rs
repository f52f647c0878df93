//! Text on signs: lines of text rasterized on the CPU (with `ab_glyph` and egui's
//! built-in Hack font) into an RGBA image that a quad in the scene shows. The app
//! builds without Bevy's text layout, and a texture is all a sign needs. The same
//! pixels make the placeholder video ([`super::placeholder`]).

use ab_glyph::{Font, FontRef, InvalidFont, PxScale, ScaleFont, point};
use bevy::prelude::*;
use thiserror::Error;

use super::convert::rgba_image;

/// Why the sign painter could not be made.
#[derive(Debug, Error)]
pub enum LabelError {
    /// The built-in font did not parse.
    #[error("the built-in font is unreadable: {0}")]
    Font(#[from] InvalidFont),
}

/// Colours of a sign, RGBA, sRGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignStyle {
    /// Fill behind the text.
    pub background: [u8; 4],
    /// The text.
    pub text: [u8; 4],
}

/// Paints text into images; a resource, made once from the built-in font.
#[derive(Resource, Debug, Clone)]
pub struct SignPainter {
    font: FontRef<'static>,
}

impl SignPainter {
    /// A painter using the built-in font.
    pub fn new() -> Result<Self, LabelError> {
        Ok(Self {
            font: FontRef::try_from_slice(epaint_default_fonts::HACK_REGULAR)?,
        })
    }

    /// `lines` centred in a `width` x `height` image, each line as large as fits.
    pub fn image(&self, lines: &[&str], width: u32, height: u32, style: SignStyle) -> Image {
        rgba_image(width, height, self.rgba(lines, width, height, style))
    }

    /// The pixels of [`SignPainter::image`], row by row, 4 bytes each.
    pub fn rgba(&self, lines: &[&str], width: u32, height: u32, style: SignStyle) -> Vec<u8> {
        let mut pixels: Vec<u8> = style
            .background
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * 4)
            .collect();
        if lines.is_empty() || width == 0 || height == 0 {
            return pixels;
        }
        let line_height = height as f32 / lines.len() as f32;
        let widest = lines
            .iter()
            .map(|line| self.line_width(line, 1.0))
            .fold(0.0_f32, f32::max);
        let by_height = line_height * 0.72;
        let by_width = if widest > 0.0 {
            width as f32 * 0.92 / widest
        } else {
            by_height
        };
        let scale = PxScale::from(by_height.min(by_width));
        let font = self.font.as_scaled(scale);
        let glyph_height = font.ascent() - font.descent();
        for (row, line) in lines.iter().enumerate() {
            let line_width = self.line_width(line, scale.x);
            let mut x = (width as f32 - line_width) / 2.0;
            let baseline =
                row as f32 * line_height + (line_height - glyph_height) / 2.0 + font.ascent();
            let mut previous = None;
            for character in line.chars() {
                let id = font.glyph_id(character);
                if let Some(previous) = previous {
                    x += font.kern(previous, id);
                }
                previous = Some(id);
                let glyph = id.with_scale_and_position(scale, point(x, baseline));
                x += font.h_advance(id);
                let Some(outline) = self.font.outline_glyph(glyph) else {
                    continue;
                };
                let bounds = outline.px_bounds();
                outline.draw(|gx, gy, coverage| {
                    let px = bounds.min.x as i64 + i64::from(gx);
                    let py = bounds.min.y as i64 + i64::from(gy);
                    if px < 0 || py < 0 || px >= i64::from(width) || py >= i64::from(height) {
                        return;
                    }
                    let at = (py as usize * width as usize + px as usize) * 4;
                    for channel in 0..4 {
                        let under = f32::from(pixels[at + channel]);
                        let over = f32::from(style.text[channel]);
                        pixels[at + channel] =
                            (under + (over - under) * coverage.clamp(0.0, 1.0)).round() as u8;
                    }
                });
            }
        }
        pixels
    }

    /// Width of `line` in pixels at `scale`, kerning included.
    fn line_width(&self, line: &str, scale: f32) -> f32 {
        let font = self.font.as_scaled(PxScale::from(scale));
        let mut width = 0.0;
        let mut previous = None;
        for character in line.chars() {
            let id = font.glyph_id(character);
            if let Some(previous) = previous {
                width += font.kern(previous, id);
            }
            width += font.h_advance(id);
            previous = Some(id);
        }
        width
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STYLE: SignStyle = SignStyle {
        background: [10, 20, 30, 255],
        text: [250, 250, 250, 255],
    };

    fn inked(pixels: &[u8]) -> Vec<(usize, usize)> {
        pixels
            .chunks_exact(4)
            .enumerate()
            .filter(|(_, pixel)| pixel[0] > 128)
            .map(|(index, _)| (index % 256, index / 256))
            .collect()
    }

    #[test]
    fn text_is_painted_inside_the_image_and_centred() {
        let painter = SignPainter::new().unwrap();
        let pixels = painter.rgba(&["Demo", "2/8 people"], 256, 64, STYLE);
        assert_eq!(pixels.len(), 256 * 64 * 4);
        let ink = inked(&pixels);
        assert!(ink.len() > 300, "too little ink: {}", ink.len());
        // Both lines are drawn: ink in the top and the bottom half.
        assert!(ink.iter().any(|&(_, y)| y < 32));
        assert!(ink.iter().any(|&(_, y)| y >= 32));
        // Roughly centred horizontally.
        let mean_x = ink.iter().map(|&(x, _)| x as f32).sum::<f32>() / ink.len() as f32;
        assert!((mean_x - 128.0).abs() < 24.0, "{mean_x}");
    }

    #[test]
    fn long_text_shrinks_to_fit() {
        let painter = SignPainter::new().unwrap();
        let long = "a rather long room title that would never fit at full size";
        let ink = inked(&painter.rgba(&[long], 256, 64, STYLE));
        assert!(!ink.is_empty());
        assert!(ink.iter().all(|&(x, _)| x > 2 && x < 254));
    }

    #[test]
    fn nothing_to_write_leaves_the_background() {
        let painter = SignPainter::new().unwrap();
        let pixels = painter.rgba(&[], 8, 8, STYLE);
        assert!(pixels.chunks_exact(4).all(|p| p == STYLE.background));
        let image = painter.image(&["x"], 16, 8, STYLE);
        assert_eq!((image.width(), image.height()), (16, 8));
    }
}
