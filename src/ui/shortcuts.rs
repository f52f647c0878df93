//! Keyboard shortcuts and the help panel that lists them.

use bevy::prelude::*;
use bevy_egui::{EguiContexts, egui};

use super::OverlayToggles;
use crate::call::{CallCommand, CallState, OwnHand, OwnMediaState};
use crate::space::RoomView;

/// Every shortcut with what it does, as the help panel shows them.
pub(super) const SHORTCUTS: [(&str, &str); 11] = [
    ("W A S D / arrows", "walk"),
    ("Q / E, right mouse", "turn"),
    ("left click on the floor", "walk there"),
    ("M", "mute or unmute the microphone"),
    ("V", "turn the camera off or on"),
    ("R", "raise or lower your hand"),
    ("G", "in a room: everyone on a gallery circle, or avatars"),
    ("I", "show or hide call statistics"),
    (
        "F",
        "a shared screen over the whole window, or back on the wall",
    ),
    ("H", "show or hide this help"),
    ("Esc", "show or hide the menu"),
];

/// Applies shortcuts, unless egui is taking the keyboard (typing in a text field).
pub(super) fn handle_shortcuts(
    mut contexts: EguiContexts,
    keys: Res<ButtonInput<KeyCode>>,
    state: Res<CallState>,
    (own_media, own_hand): (Res<OwnMediaState>, Res<OwnHand>),
    mut toggles: ResMut<OverlayToggles>,
    mut view: ResMut<RoomView>,
    mut commands: MessageWriter<CallCommand>,
) -> Result {
    if contexts.ctx_mut()?.egui_wants_keyboard_input() {
        return Ok(());
    }
    let in_call = matches!(*state, CallState::InCall { .. });
    if keys.just_pressed(KeyCode::KeyM) && in_call {
        commands.write(CallCommand::SetMicrophone(!own_media.audio));
    }
    if keys.just_pressed(KeyCode::KeyV) && in_call {
        commands.write(CallCommand::SetCamera(!own_media.video));
    }
    if keys.just_pressed(KeyCode::KeyR) && in_call {
        commands.write(CallCommand::RaiseHand(!own_hand.0));
    }
    if keys.just_pressed(KeyCode::KeyG) {
        *view = match *view {
            RoomView::Avatars => RoomView::Gallery,
            RoomView::Gallery => RoomView::Avatars,
        };
    }
    if keys.just_pressed(KeyCode::KeyI) {
        toggles.stats = !toggles.stats;
    }
    if keys.just_pressed(KeyCode::KeyH) {
        toggles.help = !toggles.help;
    }
    if keys.just_pressed(KeyCode::KeyF) {
        toggles.screen = !toggles.screen;
    }
    if keys.just_pressed(KeyCode::Escape) {
        toggles.menu = !toggles.menu;
    }
    Ok(())
}

/// The help panel.
pub(super) fn help_window(
    mut contexts: EguiContexts,
    mut toggles: ResMut<OverlayToggles>,
) -> Result {
    if !toggles.help {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    egui::Window::new("Keyboard shortcuts")
        .open(&mut toggles.help)
        .anchor(egui::Align2::RIGHT_TOP, [-12.0, 12.0])
        .show(ctx, |ui| {
            egui::Grid::new("shortcuts").num_columns(2).show(ui, |ui| {
                for (key, action) in SHORTCUTS {
                    ui.monospace(key);
                    ui.label(action);
                    ui.end_row();
                }
            });
        });
    Ok(())
}
