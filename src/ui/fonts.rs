//! The overlay's fonts: egui's own four, which the app sets on each egui context
//! before its first pass (egui's `default_fonts` feature is off). Ubuntu Light draws
//! the text and Hack the figures; Noto Emoji and emoji-icon-font draw emoji.
//!
//! Natively all four are in the binary. The browser's wasm carries the two text fonts
//! only: the emoji fonts are 0.7 MB (0.4 MB sent with brotli, 8 % of what a new
//! visitor downloads), and the overlay's own text needs neither. They are files beside
//! the page (in `fonts/`, which `scripts/build-web.sh` fills), fetched as the
//! app starts and added when both have arrived; until then an emoji shows as a box.

use std::sync::Arc;

use bevy::prelude::*;
use bevy_egui::egui::{FontData, FontDefinitions, FontFamily, FontTweak};
use bevy_egui::{EguiContext, EguiPreUpdateSet};

/// Where the browser build's emoji fonts are, beside its page.
#[cfg(target_arch = "wasm32")]
const EMOJI_FONT_DIR: &str = "fonts";

/// egui's names for its fonts (the emoji fonts' names are also their files' names).
const TEXT: &str = "Ubuntu-Light";
const FIGURES: &str = "Hack";
const EMOJI: &str = "NotoEmoji-Regular";
const EMOJI_ICONS: &str = "emoji-icon-font";

/// The two emoji fonts' files.
struct EmojiFonts {
    /// Noto Emoji.
    emoji: FontData,
    /// emoji-icon-font.
    icons: FontData,
}

impl EmojiFonts {
    /// The copies in the binary.
    #[cfg(not(target_arch = "wasm32"))]
    fn embedded() -> Self {
        Self {
            emoji: FontData::from_static(epaint_default_fonts::NOTO_EMOJI_REGULAR),
            icons: FontData::from_static(epaint_default_fonts::EMOJI_ICON),
        }
    }
}

/// The fonts each egui context gets: changed once, in the browser, when the emoji
/// fonts arrive.
#[derive(Resource, Clone)]
pub struct OverlayFonts(FontDefinitions);

impl OverlayFonts {
    /// Whether they include the emoji fonts (for the browser's test hooks).
    #[cfg(target_arch = "wasm32")]
    pub fn has_emoji(&self) -> bool {
        self.0.font_data.contains_key(EMOJI)
    }
}

/// egui's default fonts, as its `default_fonts` feature sets them (the same order of
/// fallbacks and the same scales), with or without the emoji fonts.
fn overlay_fonts(emoji: Option<EmojiFonts>) -> FontDefinitions {
    let mut fonts = FontDefinitions::empty();
    let mut add = |name: &str, data: FontData| {
        fonts.font_data.insert(name.to_owned(), Arc::new(data));
    };
    add(
        TEXT,
        FontData::from_static(epaint_default_fonts::UBUNTU_LIGHT),
    );
    add(
        FIGURES,
        FontData::from_static(epaint_default_fonts::HACK_REGULAR),
    );
    // Ubuntu Light is the figures' fallback for the likes of √.
    let mut proportional = vec![TEXT];
    let mut monospace = vec![FIGURES, TEXT];
    if let Some(EmojiFonts { emoji, icons }) = emoji {
        add(
            EMOJI,
            emoji.tweak(FontTweak {
                scale: 0.81,
                ..default()
            }),
        );
        add(
            EMOJI_ICONS,
            icons.tweak(FontTweak {
                scale: 0.90,
                ..default()
            }),
        );
        proportional.extend([EMOJI, EMOJI_ICONS]);
        monospace.extend([EMOJI, EMOJI_ICONS]);
    }
    let names = |list: Vec<&str>| list.into_iter().map(str::to_owned).collect();
    fonts
        .families
        .insert(FontFamily::Proportional, names(proportional));
    fonts
        .families
        .insert(FontFamily::Monospace, names(monospace));
    fonts
}

/// Sets the overlay's fonts on every egui context as it is made, and, in the browser,
/// fetches the emoji fonts.
pub(super) struct FontsPlugin;

impl Plugin for FontsPlugin {
    fn build(&self, app: &mut App) {
        #[cfg(not(target_arch = "wasm32"))]
        let fonts = overlay_fonts(Some(EmojiFonts::embedded()));
        #[cfg(target_arch = "wasm32")]
        let fonts = {
            app.insert_resource(web::fetch_emoji_fonts()).add_systems(
                Update,
                web::add_emoji_fonts.run_if(resource_exists::<web::EmojiFontsComing>),
            );
            overlay_fonts(None)
        };
        app.insert_resource(OverlayFonts(fonts)).add_systems(
            PreUpdate,
            set_fonts_on_new_contexts
                .after(EguiPreUpdateSet::InitContexts)
                .before(EguiPreUpdateSet::BeginPass),
        );
    }
}

/// Gives a new egui context the overlay's fonts before its first pass (without any,
/// egui cannot lay out text).
fn set_fonts_on_new_contexts(
    fonts: Res<OverlayFonts>,
    mut contexts: Query<&mut EguiContext, Added<EguiContext>>,
) {
    for mut context in &mut contexts {
        context.get_mut().set_fonts(fonts.0.clone());
    }
}

/// Fetching the emoji fonts in the browser.
#[cfg(target_arch = "wasm32")]
mod web {
    use anyhow::{anyhow, bail};
    use bevy::prelude::*;
    use bevy_egui::EguiContext;
    use bevy_egui::egui::FontData;
    use crossbeam_channel::{Receiver, TryRecvError};
    use js_sys::Uint8Array;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::Response;

    use super::{EMOJI, EMOJI_FONT_DIR, EMOJI_ICONS, EmojiFonts, OverlayFonts, overlay_fonts};
    use crate::browser::describe;

    /// The emoji fonts on their way: both, or why not.
    #[derive(Resource)]
    pub(super) struct EmojiFontsComing(Receiver<anyhow::Result<EmojiFonts>>);

    /// Starts fetching both emoji fonts.
    pub(super) fn fetch_emoji_fonts() -> EmojiFontsComing {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        wasm_bindgen_futures::spawn_local(async move {
            let both = async {
                let (emoji, icons) = futures_util::future::join(
                    fetch_font(&format!("{EMOJI_FONT_DIR}/{EMOJI}.ttf")),
                    fetch_font(&format!("{EMOJI_FONT_DIR}/{EMOJI_ICONS}.ttf")),
                )
                .await;
                Ok(EmojiFonts {
                    emoji: emoji?,
                    icons: icons?,
                })
            };
            let _ = sender.send(both.await);
        });
        EmojiFontsComing(receiver)
    }

    /// The file at `url` (relative to the page), as a font.
    async fn fetch_font(url: &str) -> anyhow::Result<FontData> {
        let failed = |error: JsValue| anyhow!("{url}: {}", describe(&error));
        let window = web_sys::window().ok_or_else(|| anyhow!("no window"))?;
        // `fetch` resolves to a response, or fails.
        let response: Response = JsFuture::from(window.fetch_with_str(url))
            .await
            .map_err(failed)?
            .unchecked_into();
        if !response.ok() {
            bail!("{url}: HTTP {}", response.status());
        }
        let bytes = JsFuture::from(response.array_buffer().map_err(failed)?)
            .await
            .map_err(failed)?;
        Ok(FontData::from_owned(Uint8Array::new(&bytes).to_vec()))
    }

    /// Adds the emoji fonts to every egui context (and to those made later) once
    /// they are here; if they cannot come, says so once.
    pub(super) fn add_emoji_fonts(
        mut commands: Commands,
        coming: Res<EmojiFontsComing>,
        mut fonts: ResMut<OverlayFonts>,
        mut contexts: Query<&mut EguiContext>,
    ) {
        let arrived = match coming.0.try_recv() {
            Err(TryRecvError::Empty) => return,
            Ok(arrived) => arrived,
            Err(TryRecvError::Disconnected) => Err(anyhow!("the fetch was dropped")),
        };
        commands.remove_resource::<EmojiFontsComing>();
        match arrived {
            Ok(emoji) => {
                fonts.0 = overlay_fonts(Some(emoji));
                for mut context in &mut contexts {
                    context.get_mut().set_fonts(fonts.0.clone());
                }
            }
            Err(error) => tracing::warn!("emoji will show as boxes: {error:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use ab_glyph::{Font, FontRef};

    use super::*;

    /// Whether egui, with `fonts`, finds a glyph for every character of `text` in the
    /// fonts of `family` (the first, or a fallback).
    fn draws(fonts: &FontDefinitions, family: &FontFamily, text: &str) -> bool {
        let faces: Vec<FontRef> = fonts.families[family]
            .iter()
            .map(|name| FontRef::try_from_slice(&fonts.font_data[name].font).unwrap())
            .collect();
        text.chars()
            .filter(|c| !c.is_whitespace())
            .all(|c| faces.iter().any(|face| face.glyph_id(c).0 != 0))
    }

    #[test]
    fn the_text_fonts_draw_the_overlay_and_the_emoji_fonts_add_emoji() {
        // Every character outside ASCII that the overlay writes.
        let overlay = "Connecting… • — ± − °";
        let text_only = overlay_fonts(None);
        let all = overlay_fonts(Some(EmojiFonts::embedded()));
        for family in [FontFamily::Proportional, FontFamily::Monospace] {
            assert!(draws(&text_only, &family, overlay));
            assert!(!draws(&text_only, &family, "😀"));
            assert!(draws(&all, &family, &format!("{overlay} 😀 🎤 ✋")));
        }
    }
}
