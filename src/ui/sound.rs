//! The overlay's sound controls: our microphone's level, the voice processing switches
//! (echo cancellation, noise suppression, gain), the master volume, one volume per
//! person, the spatial audio switch, and the "you are muted" reminder when we talk
//! into a muted microphone.

use std::time::Duration;

use bevy::platform::time::Instant;
use bevy::prelude::*;
use bevy_egui::egui;

use super::{Severity, Toasts};
use crate::call::{
    CallCommand, MutedSpeakingLevel, OwnMediaState, OwnVoiceProcessing, Participant, Volumes,
};
use crate::space::{SPEAKING_LEVEL, SpatialAudio};

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
    let mut volume = volumes.of(&participant.peer_id);
    if volume_slider(ui, &mut volume) {
        volumes.people.insert(participant.peer_id.clone(), volume);
    }
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
