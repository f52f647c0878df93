//! The overlay's graphics setting: automatic (light on a software renderer), full or
//! light, and what is drawn now. Its own section in the lobby; in a call, the end of
//! the Devices section.

use bevy_egui::egui;
use clap::ValueEnum;

use crate::space::{Graphics, GraphicsChoice};

/// The "Graphics" section (the lobby's; in a call the Devices section ends with
/// [`graphics_rows`]). Returns the choice the person just made, if they made one.
pub(super) fn graphics_setting(ui: &mut egui::Ui, graphics: &Graphics) -> Option<GraphicsChoice> {
    egui::CollapsingHeader::new("Graphics")
        .show(ui, |ui| graphics_rows(ui, graphics))
        .body_returned
        .flatten()
}

/// The choice and what it means on this machine. Returns the choice the person just
/// made, if they made one (the caller sets it only then: the space re-applies the
/// setting whenever [`Graphics`] changes).
pub(super) fn graphics_rows(ui: &mut egui::Ui, graphics: &Graphics) -> Option<GraphicsChoice> {
    let mut choice = graphics.choice;
    ui.horizontal(|ui| {
        ui.label("Graphics:");
        for &option in GraphicsChoice::value_variants() {
            ui.radio_value(&mut choice, option, label(option));
        }
    });
    ui.label(format!("Drawn now: {}", graphics.describe()));
    (choice != graphics.choice).then_some(choice)
}

/// The overlay's word for `choice`.
fn label(choice: GraphicsChoice) -> &'static str {
    match choice {
        GraphicsChoice::Auto => "Automatic",
        GraphicsChoice::Full => "Full",
        GraphicsChoice::Light => "Light",
    }
}
