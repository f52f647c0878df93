//! The material of a sign in the scene: the text painted by [`SignPainter`] on an unlit
//! quad.

use bevy::prelude::*;

use crate::media::{SignPainter, SignStyle};

/// An unlit material showing `lines` on a `size` sign; without a painter, just the
/// sign's background colour.
pub fn sign_material(
    painter: Option<&SignPainter>,
    images: &mut Assets<Image>,
    lines: &[&str],
    size: UVec2,
    style: SignStyle,
) -> StandardMaterial {
    let texture = painter.map(|painter| images.add(painter.image(lines, size.x, size.y, style)));
    let [r, g, b, a] = style.background;
    StandardMaterial {
        base_color: if texture.is_some() {
            Color::WHITE
        } else {
            Color::srgba_u8(r, g, b, a)
        },
        base_color_texture: texture,
        unlit: true,
        ..default()
    }
}
