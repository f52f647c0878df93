//! A shared screen popped out of the wall over the whole window (`F`), where small text
//! is readable: the picture fitted to the window, or at its own pixel size and
//! scrollable ("1:1"); and the question a second sharer gets when the wall is taken.

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiTextureHandle, egui};

use super::OverlayToggles;
use crate::call::{CallCommand, Participant, ShareQuestion, SharedScreen, VideoFeed};

/// The popped-out screen, while `F` has it shown and someone shares; the first share
/// (the one on the wall).
pub(super) fn screen_window(
    mut contexts: EguiContexts,
    mut toggles: ResMut<OverlayToggles>,
    shared: Query<(&SharedScreen, &VideoFeed)>,
    participants: Query<&Participant>,
    mut actual_size: Local<bool>,
) -> Result {
    if !toggles.screen {
        return Ok(());
    }
    let Some((screen, handle, picture)) = shared
        .iter()
        .find_map(|(screen, feed)| Some((screen, feed.image.clone()?, feed.size?)))
    else {
        return Ok(());
    };
    let size = egui::vec2(picture.x as f32, picture.y as f32);
    let name = participants
        .iter()
        .find(|participant| participant.peer_id == screen.peer_id)
        .map_or_else(String::new, |participant| participant.name.to_string());
    let texture = contexts.add_image(EguiTextureHandle::Weak(handle.id()));
    let ctx = contexts.ctx_mut()?;
    egui::Window::new(format!("{name}'s screen"))
        .open(&mut toggles.screen)
        .collapsible(false)
        .default_rect(ctx.content_rect().shrink(24.0))
        .show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.checkbox(&mut actual_size, "1:1");
                ui.label("F: back to the wall");
            });
            let image = egui::Image::from_texture((texture, size));
            if *actual_size {
                egui::ScrollArea::both().show(ui, |ui| ui.add(image));
            } else {
                ui.add(image.shrink_to_fit());
            }
        });
    Ok(())
}

/// Asks, while the room's wall shows someone else's screen and ours waits, whether to
/// show ours instead (take over) or keep theirs (our share is dropped).
pub(super) fn take_over_question(
    mut contexts: EguiContexts,
    mut question: ResMut<ShareQuestion>,
    mut commands: MessageWriter<CallCommand>,
) -> Result {
    let Some(sharers) = &question.0 else {
        return Ok(());
    };
    let names = if sharers.is_empty() {
        "Someone".to_owned()
    } else {
        sharers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut answer = None;
    egui::Window::new("The wall is taken")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_TOP, egui::vec2(0.0, 24.0))
        .show(contexts.ctx_mut()?, |ui| {
            ui.label(format!("{names} is sharing on the wall."));
            ui.horizontal(|ui| {
                if ui.button("Show mine instead").clicked() {
                    answer = Some(CallCommand::TakeOverScreen);
                }
                if ui.button("Keep theirs").clicked() {
                    answer = Some(CallCommand::ShareScreen(None));
                }
            });
        });
    if let Some(answer) = answer {
        question.0 = None;
        commands.write(answer);
    }
    Ok(())
}
