//! The overlay's device pickers: the camera (or the test pattern), the microphone (or
//! the test tone) and the speaker, switched mid-call without a new negotiation, and
//! the screen or window we share (added to the call by renegotiation). The lists come
//! from the call driver ([`CallCommand::ListDevices`]), asked for when the panel opens
//! and on "Refresh".

use bevy::prelude::*;
use bevy_egui::egui;

use super::graphics::graphics_rows;
use crate::call::{AvailableDevices, CallCommand, OwnScreen};
use crate::config::ClientConfig;
use crate::media::{AudioInput, DeviceChoice, ShareSource, ShareTarget, Thumbnail, VideoInput};
use crate::space::{Graphics, GraphicsChoice};

/// What the pickers show as chosen: the flags at start, then the user's picks.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct DevicePicks {
    /// The video we send.
    pub video: VideoInput,
    /// The audio we send.
    pub microphone: AudioInput,
    /// Where we play the others; `None`: nowhere.
    pub speaker: Option<DeviceChoice>,
}

impl DevicePicks {
    /// The devices `config` starts with.
    pub fn from_config(config: &ClientConfig) -> Self {
        Self {
            video: config.media.video_input.clone(),
            microphone: config.media.audio_input.clone(),
            speaker: config.speaker.clone(),
        }
    }
}

/// The "Share" picker: nothing, or one of `shares`, each with its thumbnail.
fn share_picker(
    ui: &mut egui::Ui,
    shares: &[ShareSource],
    own_screen: &OwnScreen,
    commands: &mut MessageWriter<CallCommand>,
) {
    let current = &own_screen.0;
    let shown = match current {
        None => "Nothing".to_owned(),
        Some(target) => shares
            .iter()
            .find(|source| &source.target == target)
            .map_or_else(|| target.to_string(), ToString::to_string),
    };
    let mut picked = None;
    egui::ComboBox::from_label("Share")
        .selected_text(shown)
        .show_ui(ui, |ui| {
            if ui.selectable_label(current.is_none(), "Nothing").clicked() && current.is_some() {
                picked = Some(None);
            }
            for source in shares {
                let chosen = current.as_ref() == Some(&source.target);
                let clicked = ui
                    .horizontal(|ui| {
                        if let Some(thumbnail) = &source.thumbnail {
                            ui.image(thumbnail_texture(ui.ctx(), source, thumbnail));
                        }
                        ui.selectable_label(chosen, source.to_string()).clicked()
                    })
                    .inner;
                if clicked && !chosen {
                    picked = Some(Some(source.target.clone()));
                }
            }
        });
    if let Some(share) = picked {
        commands.write(CallCommand::ShareScreen(share));
    }
}

/// The texture of `source`'s thumbnail, made once per picture and kept in egui's
/// memory under the source's label (a new picture of it replaces the old texture).
fn thumbnail_texture(
    ctx: &egui::Context,
    source: &ShareSource,
    thumbnail: &Thumbnail,
) -> egui::load::SizedTexture {
    let id = egui::Id::new(("share thumbnail", &source.label));
    let picture_id = egui::Id::new(&thumbnail.rgba);
    let kept = ctx.memory_mut(|memory| memory.data.get_temp::<(egui::Id, egui::TextureHandle)>(id));
    let texture = match kept {
        Some((kept_id, texture)) if kept_id == picture_id => texture,
        _ => {
            let picture = egui::ColorImage::from_rgba_unmultiplied(
                [thumbnail.width as usize, thumbnail.height as usize],
                &thumbnail.rgba,
            );
            let texture = ctx.load_texture(
                format!("share thumbnail {}", source.label),
                picture,
                egui::TextureOptions::LINEAR,
            );
            ctx.memory_mut(|memory| memory.data.insert_temp(id, (picture_id, texture.clone())));
            texture
        }
    };
    egui::load::SizedTexture::from_handle(&texture)
}

/// The "Devices" section: one picker per kind, each pick sent to the driver at once,
/// then the graphics setting (this machine's other setting; one section keeps the
/// overlay short). Returns the graphics choice just made, if any.
pub fn device_pickers(
    ui: &mut egui::Ui,
    devices: &AvailableDevices,
    picks: &mut DevicePicks,
    own_screen: &OwnScreen,
    graphics: &Graphics,
    commands: &mut MessageWriter<CallCommand>,
) -> Option<GraphicsChoice> {
    // The browser gives a page the devices its permission prompt picked; a page cannot
    // list or switch them.
    if cfg!(target_arch = "wasm32") {
        return egui::CollapsingHeader::new("Devices")
            .show(ui, |ui| {
                ui.label(
                    "The browser uses the camera and microphone it gave this page: change \
                     them in its site settings (the icon left of the address), then reload.",
                );
                // The browser's own picker chooses what is shared.
                let asked = ShareSource {
                    target: ShareTarget::Screen(None),
                    label: "A screen, window or tab (the browser asks)".to_owned(),
                    width: 0,
                    height: 0,
                    thumbnail: None,
                };
                share_picker(ui, &[asked], own_screen, commands);
                ui.separator();
                graphics_rows(ui, graphics)
            })
            .body_returned
            .flatten();
    }
    let section = egui::CollapsingHeader::new("Devices").show(ui, |ui| {
        let video_options = options(
            ("Test pattern", VideoInput::Synthetic),
            &devices.cameras,
            |name| VideoInput::Camera(DeviceChoice::Named(name)),
        );
        let video_now = picks.video.to_string();
        if let Some(video) = picker(ui, "Camera", &video_options, &picks.video, video_now) {
            picks.video = video.clone();
            commands.write(CallCommand::SwitchVideo(video));
        }
        let microphone_options = options(
            ("Test tone", AudioInput::Tone),
            &devices.microphones,
            |name| AudioInput::Microphone(DeviceChoice::Named(name)),
        );
        let microphone_now = picks.microphone.to_string();
        if let Some(microphone) = picker(
            ui,
            "Microphone",
            &microphone_options,
            &picks.microphone,
            microphone_now,
        ) {
            picks.microphone = microphone.clone();
            commands.write(CallCommand::SwitchMicrophone(microphone));
        }
        let speaker_options = options(("None", None), &devices.speakers, |name| {
            Some(DeviceChoice::Named(name))
        });
        let speaker_now = picks
            .speaker
            .as_ref()
            .map_or_else(|| "none".to_owned(), ToString::to_string);
        if let Some(speaker) = picker(ui, "Speaker", &speaker_options, &picks.speaker, speaker_now)
        {
            picks.speaker = speaker.clone();
            commands.write(CallCommand::SwitchSpeaker(speaker));
        }
        share_picker(ui, &devices.shares, own_screen, commands);
        if ui.button("Refresh").clicked() {
            commands.write(CallCommand::ListDevices);
        }
        ui.separator();
        graphics_rows(ui, graphics)
    });
    if section.header_response.clicked() {
        commands.write(CallCommand::ListDevices);
    }
    section.body_returned.flatten()
}

/// The synthetic choice first, then one per device name.
fn options<T>(
    synthetic: (&str, T),
    names: &[String],
    choice: impl Fn(String) -> T,
) -> Vec<(String, T)> {
    std::iter::once((synthetic.0.to_owned(), synthetic.1))
        .chain(
            names
                .iter()
                .map(|name| (name.clone(), choice(name.clone()))),
        )
        .collect()
}

/// A combo box of `options` showing `current` (as `current_words` when it is not one
/// of them: a file, the default device, an index from the command line); the option
/// picked this frame, if it differs from `current`.
fn picker<T: Clone + PartialEq>(
    ui: &mut egui::Ui,
    label: &str,
    options: &[(String, T)],
    current: &T,
    current_words: String,
) -> Option<T> {
    let shown = options
        .iter()
        .find(|(_, value)| value == current)
        .map_or(current_words, |(name, _)| name.clone());
    let mut picked = None;
    egui::ComboBox::from_label(label)
        .selected_text(shown)
        .show_ui(ui, |ui| {
            for (name, value) in options {
                if ui.selectable_label(value == current, name).clicked() && value != current {
                    picked = Some(value.clone());
                }
            }
        });
    picked
}
