//! The overlay's sound controls: our microphone's level, the voice processing switches
//! (echo cancellation, noise suppression, gain), the master volume, one volume per
//! person (in the list, and on a right click on their panel), the spatial audio
//! switch, and the "you are muted" reminder when we talk into a muted microphone.

use std::time::Duration;

use bevy::platform::time::Instant;
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::{EguiContexts, egui};

use super::{Severity, Toasts};
use crate::call::{
    CallCommand, MutedSpeakingLevel, OwnMediaState, OwnVoiceProcessing, Participant, Volumes,
};
use crate::signaling::protocol::PeerId;
use crate::space::{PanelView, SPEAKING_LEVEL, SpatialAudio};

/// Talking into a muted microphone for this long brings the reminder.
const MUTED_TALK_BEFORE_REMINDER: Duration = Duration::from_secs(1);
/// The reminder comes back at most this often.
const MUTED_REMINDER_EVERY: Duration = Duration::from_secs(10);

/// What the sound controls change, besides sending commands.
pub(super) struct SoundControls<'a> {
    /// Our microphone's level now (0 to 1).
    pub own_level: f32,
    /// The voice processing running now.
    pub voice: OwnVoiceProcessing,
    /// The volumes the listener set.
    pub volumes: &'a mut Volumes,
    /// The spatial audio switch (only where the space runs).
    pub spatial: Option<&'a mut SpatialAudio>,
}

/// Our level, the voice processing switches, the master volume and the spatial switch.
pub(super) fn sound_controls(
    ui: &mut egui::Ui,
    controls: SoundControls,
    commands: &mut MessageWriter<CallCommand>,
) {
    ui.horizontal(|ui| {
        ui.label("Your mic:");
        let speaking = controls.own_level > SPEAKING_LEVEL;
        let bar = egui::ProgressBar::new((controls.own_level * 5.0).min(1.0))
            .desired_width(120.0)
            .fill(if speaking {
                egui::Color32::from_rgb(40, 200, 80)
            } else {
                egui::Color32::from_gray(90)
            });
        ui.add(bar);
        if speaking {
            ui.label("speaking");
        }
    });
    let mut parts = controls.voice.0;
    ui.horizontal(|ui| {
        ui.checkbox(&mut parts.echo_cancellation, "Echo cancellation");
        ui.checkbox(&mut parts.noise_suppression, "Noise suppression");
        ui.checkbox(&mut parts.auto_gain, "Auto gain");
    });
    if parts != controls.voice.0 {
        commands.write(CallCommand::SetVoiceProcessing(parts));
    }
    ui.horizontal(|ui| {
        ui.label("Volume:");
        volume_slider(ui, &mut controls.volumes.master);
    });
    if let Some(spatial) = controls.spatial {
        ui.checkbox(
            &mut spatial.enabled,
            "Spatial audio (voices come from their panels)",
        );
    }
}

/// A slider for `participant`'s volume, in percent.
pub(super) fn person_volume(ui: &mut egui::Ui, volumes: &mut Volumes, participant: &Participant) {
    person_volume_of(ui, volumes, &participant.peer_id);
}

fn person_volume_of(ui: &mut egui::Ui, volumes: &mut Volumes, peer_id: &PeerId) {
    let mut volume = volumes.of(peer_id);
    if volume_slider(ui, &mut volume) {
        volumes.people.insert(peer_id.clone(), volume);
    }
}

/// A right-click on someone's panel that did not turn the view by more than this many
/// pixels opens their volume.
const CLICK_SLOP_PX: f32 = 4.0;

/// The volume popup a right click on a panel opened: whose, and where.
#[derive(Default)]
pub(super) struct PanelVolumePopup {
    /// Where the right button went down, in logical window pixels.
    pressed_at: Option<Vec2>,
    /// The person (name, peer id) and where the popup shows.
    open: Option<(String, PeerId, Vec2)>,
}

/// Opens a person's volume where their panel was right-clicked (a right drag turns the
/// view, as before); the popup closes with its button or a click elsewhere.
pub(super) fn panel_volume_popup(
    mut contexts: EguiContexts,
    buttons: Res<ButtonInput<MouseButton>>,
    windows: Query<&Window, With<PrimaryWindow>>,
    panels: PanelView,
    mut popup: Local<PanelVolumePopup>,
    mut volumes: ResMut<Volumes>,
) -> Result {
    let Ok(window) = windows.single() else {
        return Ok(());
    };
    let cursor = window.cursor_position();
    if buttons.just_pressed(MouseButton::Right) {
        popup.pressed_at = cursor;
    }
    if buttons.just_released(MouseButton::Right)
        && let (Some(down), Some(up)) = (popup.pressed_at.take(), cursor)
        && down.distance(up) <= CLICK_SLOP_PX
    {
        let scale = window.scale_factor();
        let physical = up * scale;
        popup.open = panels
            .rects(scale)
            .into_iter()
            .find(|panel| {
                panel.rect.is_some_and(|[x0, y0, x1, y1]| {
                    (x0..=x1).contains(&physical.x) && (y0..=y1).contains(&physical.y)
                })
            })
            .and_then(|panel| {
                let peer_id = PeerId::parse(&panel.peer_id).ok()?;
                Some((panel.name, peer_id, up))
            });
    }
    let Some((name, peer_id, at)) = popup.open.clone() else {
        return Ok(());
    };
    let ctx = contexts.ctx_mut()?;
    let mut keep = true;
    let shown = egui::Window::new(format!("Volume of {name}"))
        .fixed_pos([at.x, at.y])
        .collapsible(false)
        .resizable(false)
        .show(ctx, |ui| {
            person_volume_of(ui, &mut volumes, &peer_id);
            if ui.button("Close").clicked() {
                keep = false;
            }
        });
    let clicked_elsewhere = buttons.just_pressed(MouseButton::Left)
        && shown.is_some_and(|shown| !shown.response.contains_pointer());
    if !keep || clicked_elsewhere {
        popup.open = None;
    }
    Ok(())
}

/// A 0-100 % slider over `volume` (0 to 1); true when it moved.
fn volume_slider(ui: &mut egui::Ui, volume: &mut f32) -> bool {
    let mut percent = *volume * 100.0;
    let moved = ui
        .add(
            egui::Slider::new(&mut percent, 0.0..=100.0)
                .suffix(" %")
                .fixed_decimals(0),
        )
        .changed();
    if moved {
        *volume = percent / 100.0;
    }
    moved
}

/// When we started talking into the muted microphone, and when we last said so.
#[derive(Default)]
pub(super) struct MutedTalk {
    since: Option<Instant>,
    reminded: Option<Instant>,
}

/// Shows "You are muted" when we talk for a second into a muted microphone.
pub(super) fn remind_muted(
    muted_level: Res<MutedSpeakingLevel>,
    own_media: Res<OwnMediaState>,
    mut talk: Local<MutedTalk>,
    mut toasts: ResMut<Toasts>,
) {
    let now = Instant::now();
    if own_media.audio || muted_level.0 <= SPEAKING_LEVEL {
        talk.since = None;
        return;
    }
    let since = *talk.since.get_or_insert(now);
    let recently = talk
        .reminded
        .is_some_and(|at| now.duration_since(at) < MUTED_REMINDER_EVERY);
    if now.duration_since(since) >= MUTED_TALK_BEFORE_REMINDER && !recently {
        talk.reminded = Some(now);
        toasts.push(
            Severity::Info,
            "You are muted: others do not hear you (M unmutes)".to_owned(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::MediaState;

    fn reminder_app(muted: bool, level: f32) -> App {
        let mut app = App::new();
        app.init_resource::<Toasts>()
            .insert_resource(MutedSpeakingLevel(level))
            .insert_resource(OwnMediaState(MediaState {
                audio: !muted,
                video: true,
            }))
            .add_systems(Update, remind_muted);
        app
    }

    /// The toasts `app` showed after talking for `talk` (updates every 50 ms).
    fn toasts_after(app: &mut App, talk: Duration) -> Vec<String> {
        let until = Instant::now() + talk;
        while Instant::now() < until {
            app.update();
            std::thread::sleep(Duration::from_millis(50));
        }
        app.update();
        app.world().resource::<Toasts>().history()
    }

    #[test]
    fn talking_into_a_muted_microphone_for_a_second_brings_one_reminder() {
        let mut muted = reminder_app(true, 0.2);
        assert!(toasts_after(&mut muted, Duration::from_millis(500)).is_empty());
        let shown = toasts_after(&mut muted, Duration::from_millis(700));
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].starts_with("You are muted"), "{shown:?}");
        // Not again at once while the talk goes on.
        assert_eq!(toasts_after(&mut muted, Duration::from_secs(1)).len(), 1);

        let mut quiet = reminder_app(true, 0.001);
        assert!(toasts_after(&mut quiet, Duration::from_millis(1200)).is_empty());
        let mut unmuted = reminder_app(false, 0.2);
        assert!(toasts_after(&mut unmuted, Duration::from_millis(1200)).is_empty());
    }
}
