//! The overlay's chat: the messages of this session, and a line to write one to the
//! room, to the people near us, or to the whole space (sent through the server, so it
//! reaches people we have no connection with).

use bevy::prelude::*;
use bevy_egui::{EguiContexts, egui};

use crate::call::{CallCommand, CallState, ChatLine, ChatLog};
use crate::signaling::protocol::{ChatScope, ChatText, DisplayName, MAX_CHAT_CHARS};

/// Lines shown in the window (the log keeps more).
const SHOWN_LINES: usize = 50;

/// What is being written, to whom, and why it was refused.
#[derive(Resource, Debug)]
pub(super) struct ChatDraft {
    text: String,
    scope: ChatScope,
    problem: Option<String>,
}

impl Default for ChatDraft {
    fn default() -> Self {
        Self {
            text: String::new(),
            scope: ChatScope::Room,
            problem: None,
        }
    }
}

impl ChatDraft {
    /// The message to send, if the text is one; otherwise why not (kept for showing).
    fn take_message(&mut self) -> Option<ChatText> {
        match ChatText::parse(self.text.trim()) {
            Ok(text) => {
                self.text.clear();
                self.problem = None;
                Some(text)
            }
            Err(error) => {
                self.problem = Some(error.to_string());
                None
            }
        }
    }
}

/// The words for a scope.
fn scope_name(scope: ChatScope) -> &'static str {
    match scope {
        ChatScope::Room => "room",
        ChatScope::Near => "near",
        ChatScope::Space => "everyone",
    }
}

/// The chat window, while in a call (or the lobby): folded to its title at first.
pub(super) fn chat_window(
    mut contexts: EguiContexts,
    state: Res<CallState>,
    mut log: ResMut<ChatLog>,
    mut draft: ResMut<ChatDraft>,
    mut commands: MessageWriter<CallCommand>,
) -> Result {
    let CallState::InCall { self_id, .. } = &*state else {
        return Ok(());
    };
    let ctx = contexts.ctx_mut()?;
    egui::Window::new("Chat")
        .anchor(egui::Align2::LEFT_BOTTOM, [8.0, -8.0])
        .default_width(320.0)
        .default_open(false)
        .resizable(false)
        .show(ctx, |ui| {
            egui::ScrollArea::vertical()
                .max_height(160.0)
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    let skip = log.lines.len().saturating_sub(SHOWN_LINES);
                    for (_, line) in log.lines.iter().skip(skip) {
                        ui.label(format!(
                            "[{}] {}: {}",
                            scope_name(line.scope),
                            line.name,
                            line.text.as_str()
                        ));
                    }
                });
            ui.horizontal(|ui| {
                for scope in [ChatScope::Room, ChatScope::Near, ChatScope::Space] {
                    ui.selectable_value(&mut draft.scope, scope, scope_name(scope));
                }
            });
            let field = ui.add(
                egui::TextEdit::singleline(&mut draft.text)
                    .char_limit(MAX_CHAT_CHARS)
                    .hint_text("Say something (Enter sends)"),
            );
            let entered =
                field.lost_focus() && ui.input(|input| input.key_pressed(egui::Key::Enter));
            if (entered || ui.button("Send").clicked())
                && let Some(text) = draft.take_message()
            {
                let scope = draft.scope;
                log.push(ChatLine {
                    from: self_id.clone(),
                    name: DisplayName::parse("You").unwrap_or_default(),
                    scope,
                    text: text.clone(),
                });
                commands.write(CallCommand::SendChat { scope, text });
            }
            if let Some(problem) = &draft.problem {
                ui.colored_label(egui::Color32::LIGHT_RED, problem);
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_hostile_draft_is_kept_with_the_reason() {
        let mut draft = ChatDraft {
            text: "   ".to_owned(),
            ..ChatDraft::default()
        };
        assert_eq!(draft.take_message(), None);
        assert!(draft.problem.is_some());
        draft.text = "a\u{7}b".to_owned();
        assert_eq!(draft.take_message(), None);
        assert_eq!(draft.text, "a\u{7}b", "kept to be corrected");
        draft.text = " hello ".to_owned();
        assert_eq!(
            draft.take_message().map(|t| t.as_str().to_owned()),
            Some("hello".to_owned())
        );
        assert!(draft.text.is_empty() && draft.problem.is_none());
    }
}
