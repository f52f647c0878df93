//! The egui overlay. It only reads call state and sends [`CallCommand`]s.
//!
//! Home: display name, create a room, join one by id (validated before sending).
//! In a call: the room id with a copy button, who is there with their live video,
//! mic and camera switches, hang up. Every
//! [`CallNotice`] becomes a toast that fades after a few seconds.

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPlugin, EguiPrimaryContextPass, EguiTextureHandle, egui};

use crate::call::{
    CallCommand, CallNotice, CallState, ConnectionState, MediaState, OwnMediaState, Participant,
    VideoFeed,
};
use crate::config::ClientConfig;
use crate::rtc::PeerConnectionState;
use crate::signaling::protocol::{DisplayName, RoomId};

/// How long a toast stays on screen.
const TOAST_LIFETIME: Duration = Duration::from_secs(6);
/// Toasts shown at once; older ones make room.
const MAX_TOASTS: usize = 5;

/// The overlay: adds egui and the home / in-call panels and toasts.
pub struct UiPlugin;

impl Plugin for UiPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins(EguiPlugin::default())
            .init_resource::<Toasts>()
            .add_systems(Startup, init_form)
            .add_systems(Update, collect_toasts)
            .add_systems(EguiPrimaryContextPass, (call_panel, toast_stack));
    }
}

/// What the user is typing on the home panel.
#[derive(Resource, Default)]
struct HomeForm {
    name: String,
    room: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Severity {
    Info,
    Error,
}

struct Toast {
    text: String,
    severity: Severity,
    shown_at: Instant,
}

/// Messages waiting to fade.
#[derive(Resource, Default)]
struct Toasts(Vec<Toast>);

impl Toasts {
    fn push(&mut self, severity: Severity, text: String) {
        if self.0.len() == MAX_TOASTS {
            self.0.remove(0);
        }
        self.0.push(Toast {
            text,
            severity,
            shown_at: Instant::now(),
        });
    }
}

fn init_form(mut commands: Commands, config: Res<ClientConfig>) {
    commands.insert_resource(HomeForm {
        name: config.name.to_string(),
        room: String::new(),
    });
}

fn collect_toasts(mut notices: MessageReader<CallNotice>, mut toasts: ResMut<Toasts>) {
    for notice in notices.read() {
        let (severity, text) = match notice {
            CallNotice::Joined(room) => (Severity::Info, format!("You are in room {room}")),
            CallNotice::PeerJoined(name) => (Severity::Info, format!("{name} joined")),
            CallNotice::PeerLeft(name) => (Severity::Info, format!("{name} left")),
            CallNotice::Left => (Severity::Info, "Call ended".to_owned()),
            CallNotice::Failed(error) => (Severity::Error, format!("{error}. {}", error.hint())),
        };
        toasts.push(severity, text);
    }
}

fn call_panel(
    mut contexts: EguiContexts,
    state: Res<CallState>,
    config: Res<ClientConfig>,
    participants: Query<(&Participant, &ConnectionState, &MediaState, &VideoFeed)>,
    own_media: Res<OwnMediaState>,
    mut form: ResMut<HomeForm>,
    mut commands: MessageWriter<CallCommand>,
) -> Result {
    // Register each participant's video image with egui before borrowing its context.
    let tiles: Vec<Tile> = participants
        .iter()
        .map(|(participant, connection, media, feed)| Tile {
            name: participant.name.to_string(),
            status: describe(connection.0, *media),
            texture: feed
                .image
                .as_ref()
                .map(|image| contexts.add_image(EguiTextureHandle::Weak(image.id()))),
        })
        .collect();
    let ctx = contexts.ctx_mut()?;
    egui::Window::new("meetspace")
        .anchor(egui::Align2::LEFT_TOP, [12.0, 12.0])
        .resizable(false)
        .collapsible(false)
        .show(ctx, |ui| match &*state {
            CallState::Idle => home(ui, &config, &mut form, &mut commands),
            CallState::Joining => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Connecting to the room…");
                });
                if ui.button("Cancel").clicked() {
                    commands.write(CallCommand::Leave);
                }
            }
            CallState::InCall { room, .. } => {
                ui.horizontal(|ui| {
                    ui.label("Room id:");
                    ui.monospace(room.as_str());
                    if ui.button("Copy").clicked() {
                        ui.ctx().copy_text(room.to_string());
                    }
                });
                ui.label("Share this id; the other side joins with it.");
                ui.separator();
                if tiles.is_empty() {
                    ui.label("Waiting for others to join…");
                }
                for tile in &tiles {
                    show_tile(ui, tile);
                }
                ui.separator();
                ui.horizontal(|ui| {
                    let mic = if own_media.audio {
                        "Mute mic"
                    } else {
                        "Unmute mic"
                    };
                    if ui.button(mic).clicked() {
                        commands.write(CallCommand::SetMicrophone(!own_media.audio));
                    }
                    let camera = if own_media.video {
                        "Camera off"
                    } else {
                        "Camera on"
                    };
                    if ui.button(camera).clicked() {
                        commands.write(CallCommand::SetCamera(!own_media.video));
                    }
                    if ui.button("Hang up").clicked() {
                        commands.write(CallCommand::Leave);
                    }
                });
            }
            CallState::Leaving => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Hanging up…");
                });
            }
        });
    Ok(())
}

/// One participant as the overlay shows it.
struct Tile {
    name: String,
    status: String,
    texture: Option<egui::TextureId>,
}

/// Width of a participant's video in the overlay (the 3D panels replace this).
const TILE_WIDTH: f32 = 240.0;

fn show_tile(ui: &mut egui::Ui, tile: &Tile) {
    ui.label(format!("{} ({})", tile.name, tile.status));
    match tile.texture {
        Some(texture) => {
            let size = egui::vec2(TILE_WIDTH, TILE_WIDTH * 3.0 / 4.0);
            ui.add(egui::Image::new(egui::load::SizedTexture::new(
                texture, size,
            )));
        }
        None => {
            ui.label("waiting for video…");
        }
    }
}

/// Connection state and mute badges in words.
fn describe(connection: PeerConnectionState, media: MediaState) -> String {
    let mut words = vec![match connection {
        PeerConnectionState::New | PeerConnectionState::Connecting => "connecting",
        PeerConnectionState::Connected => "connected",
        PeerConnectionState::Disconnected => "reconnecting",
        PeerConnectionState::Failed => "connection failed",
        PeerConnectionState::Closed => "left",
    }];
    if !media.audio {
        words.push("mic muted");
    }
    if !media.video {
        words.push("camera off");
    }
    words.join(", ")
}

fn home(
    ui: &mut egui::Ui,
    config: &ClientConfig,
    form: &mut HomeForm,
    commands: &mut MessageWriter<CallCommand>,
) {
    ui.horizontal(|ui| {
        ui.label("Your name:");
        ui.text_edit_singleline(&mut form.name);
    });
    let name = DisplayName::parse(&form.name);
    if let Err(error) = &name {
        ui.colored_label(egui::Color32::LIGHT_RED, error.to_string());
    }
    ui.separator();
    if ui
        .add_enabled(name.is_ok(), egui::Button::new("Create room"))
        .clicked()
        && let Ok(name) = &name
    {
        commands.write(CallCommand::CreateRoom {
            name: name.clone(),
            public_title: None,
        });
    }
    ui.separator();
    ui.horizontal(|ui| {
        ui.label("Room id:");
        ui.text_edit_singleline(&mut form.room);
    });
    let room = RoomId::parse(&form.room);
    if let (Err(error), false) = (&room, form.room.is_empty()) {
        ui.colored_label(egui::Color32::LIGHT_RED, error.to_string());
    }
    if ui
        .add_enabled(name.is_ok() && room.is_ok(), egui::Button::new("Join room"))
        .clicked()
        && let (Ok(name), Ok(room)) = (name, room)
    {
        commands.write(CallCommand::JoinRoom { room, name });
    }
    ui.separator();
    ui.small(format!("Signaling: {}", config.signal));
}

fn toast_stack(mut contexts: EguiContexts, mut toasts: ResMut<Toasts>) -> Result {
    toasts
        .0
        .retain(|toast| toast.shown_at.elapsed() < TOAST_LIFETIME);
    if toasts.0.is_empty() {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    egui::Area::new(egui::Id::new("toasts"))
        .anchor(egui::Align2::RIGHT_BOTTOM, [-12.0, -12.0])
        .show(ctx, |ui| {
            for toast in &toasts.0 {
                let color = match toast.severity {
                    Severity::Info => egui::Color32::from_gray(40),
                    Severity::Error => egui::Color32::from_rgb(120, 30, 30),
                };
                egui::Frame::new()
                    .fill(color)
                    .corner_radius(6.0)
                    .inner_margin(8.0)
                    .show(ui, |ui| {
                        ui.set_max_width(360.0);
                        ui.colored_label(egui::Color32::WHITE, &toast.text);
                    });
            }
        });
    ctx.request_repaint_after(Duration::from_millis(250));
    Ok(())
}
