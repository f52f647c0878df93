//! The egui overlay. It only reads call state and sends [`CallCommand`]s.
//!
//! Home: display name, create a room, join one by id (validated before sending).
//! In a call: the room id with a copy button, who is there and how their connection
//! is (their video is on their panels in the space) with a volume each, mic and camera
//! switches, hang up, the sound controls, device pickers, statistics. Every
//! [`CallNotice`] becomes a toast that fades after a few seconds.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::platform::time::Instant;
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::{
    EguiContexts, EguiGlobalSettings, EguiPlugin, EguiPrimaryContextPass, PrimaryEguiContext, egui,
};

use crate::call::{
    AvailableDevices, CallCommand, CallError, CallNotice, CallState, ConnectionState, MediaState,
    OwnHand, OwnMediaState, OwnScreen, OwnSpeakingLevel, OwnVoiceProcessing, Participant,
    SpacePeople, VideoFeed, Volumes,
};
use crate::config::ClientConfig;
use crate::rtc::PeerConnectionState;
use crate::signaling::protocol::{DisplayName, RoomId};
use crate::space::{Graphics, JoinByIdRequested, Player, RoomView, SpatialAudio};

/// How long a toast stays on screen.
const TOAST_LIFETIME: Duration = Duration::from_secs(6);
/// Toasts shown at once; older ones make room.
const MAX_TOASTS: usize = 5;

mod chat;
mod devices;
pub(crate) mod fonts;
mod graphics;
mod screen;
mod shortcuts;
mod sound;
mod space;
mod stats;

/// Rooms remembered on the home panel.
const MAX_RECENT_ROOMS: usize = 5;

/// Gives the player's camera the overlay, in apps with a window.
fn draw_overlay_with_player(
    player: On<Add, Player>,
    window: Query<(), With<PrimaryWindow>>,
    mut commands: Commands,
) {
    if !window.is_empty() {
        commands.entity(player.entity).insert(PrimaryEguiContext);
    }
}

/// The overlay: adds egui and the home / in-call panels, statistics, help and toasts.
pub struct UiPlugin;

impl Plugin for UiPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins((EguiPlugin::default(), fonts::FontsPlugin))
            // The overlay is drawn by the player's camera, and only in apps with a window.
            .insert_resource(EguiGlobalSettings {
                auto_create_primary_context: false,
                ..default()
            })
            .add_observer(draw_overlay_with_player)
            .init_resource::<Toasts>()
            .init_resource::<OverlayToggles>()
            .init_resource::<chat::ChatDraft>()
            .add_systems(Startup, init_form)
            .add_systems(Update, (collect_toasts, sound::remind_muted))
            .add_systems(
                EguiPrimaryContextPass,
                (
                    shortcuts::handle_shortcuts,
                    call_panel,
                    sound::panel_volume_popup,
                    chat::chat_window,
                    stats::stats_window,
                    screen::screen_window,
                    screen::take_over_question,
                    shortcuts::help_window,
                    toast_stack,
                )
                    .chain(),
            );
    }
}

/// Which parts of the overlay are shown.
#[derive(Resource)]
pub(crate) struct OverlayToggles {
    /// The main panel (Esc).
    menu: bool,
    /// The statistics window (I).
    stats: bool,
    /// The shortcuts help (H).
    help: bool,
    /// A shared screen popped out over the whole window (F).
    screen: bool,
}

impl Default for OverlayToggles {
    fn default() -> Self {
        Self {
            menu: true,
            stats: false,
            help: false,
            screen: false,
        }
    }
}

/// What the user is typing on the home panel, and the rooms they were in lately.
#[derive(Resource, Default)]
struct HomeForm {
    name: String,
    room: String,
    recent: Vec<RoomId>,
    /// Put the keyboard focus on the room-id field on the next frame.
    focus_room_id: bool,
    /// Why the last "Join room" was refused, until the next try.
    join_error: Option<String>,
    /// Why our camera and microphone are not in the call (denied, missing), until
    /// the call ends.
    devices_problem: Option<String>,
}

impl HomeForm {
    /// The join command for what is typed, or `None` with [`Self::join_error`] saying
    /// what to fix: nothing reaches the network unless name and id are valid.
    fn submit_join(&mut self) -> Option<CallCommand> {
        let checked = DisplayName::parse(&self.name)
            .map_err(|error| format!("Your name: {error}"))
            .and_then(|name| {
                RoomId::parse(&self.room)
                    .map(|room| CallCommand::JoinRoom { room, name })
                    .map_err(|error| format!("Room id: {error}"))
            });
        match checked {
            Ok(join) => {
                self.join_error = None;
                Some(join)
            }
            Err(error) => {
                self.join_error = Some(error);
                None
            }
        }
    }
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

/// Messages waiting to fade, and the texts of the last [`TOAST_HISTORY`] shown.
#[derive(Resource, Default)]
pub struct Toasts {
    shown: Vec<Toast>,
    history: std::collections::VecDeque<String>,
}

/// Toast texts remembered after they fade (screenshots record them).
const TOAST_HISTORY: usize = 32;

impl Toasts {
    /// The texts of the last toasts, faded or not, oldest first.
    pub fn history(&self) -> Vec<String> {
        self.history.iter().cloned().collect()
    }

    fn push(&mut self, severity: Severity, text: String) {
        if self.shown.len() == MAX_TOASTS {
            self.shown.remove(0);
        }
        if self.history.len() == TOAST_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(text.clone());
        self.shown.push(Toast {
            text,
            severity,
            shown_at: Instant::now(),
        });
    }
}

/// Closes the main panel (Esc opens it again), where there is an overlay: screenshots
/// show the space, not the menu over it.
pub(crate) fn close_menu(toggles: Option<ResMut<OverlayToggles>>) {
    if let Some(mut toggles) = toggles {
        toggles.menu = false;
    }
}

fn init_form(mut commands: Commands, config: Res<ClientConfig>) {
    commands.insert_resource(HomeForm {
        name: config.name.to_string(),
        ..default()
    });
    commands.insert_resource(devices::DevicePicks::from_config(&config));
}

fn collect_toasts(
    mut notices: MessageReader<CallNotice>,
    mut toasts: ResMut<Toasts>,
    mut form: ResMut<HomeForm>,
) {
    for notice in notices.read() {
        let (severity, text) = match notice {
            CallNotice::Joined(room) if room.is_lobby() => {
                (Severity::Info, "You are in the lobby".to_owned())
            }
            CallNotice::Joined(room) => {
                form.recent.retain(|recent| recent != room);
                form.recent.insert(0, room.clone());
                form.recent.truncate(MAX_RECENT_ROOMS);
                (Severity::Info, format!("You are in room {room}"))
            }
            CallNotice::PeerJoined(name) => (Severity::Info, format!("{name} joined")),
            CallNotice::PeerLeft(name) => (Severity::Info, format!("{name} left")),
            // The space shows who is near; walking past people is no news.
            CallNotice::Nearby { .. } => continue,
            CallNotice::Reconnecting(reason) => (
                Severity::Error,
                format!("Lost the signaling server ({reason}); reconnecting, the call goes on"),
            ),
            CallNotice::ShareTakenOver(by) => (
                Severity::Info,
                format!(
                    "{} took over the wall; your share stopped",
                    by.as_ref().map_or("someone", DisplayName::as_str)
                ),
            ),
            CallNotice::Reconnected => {
                (Severity::Info, "Signaling server reached again".to_owned())
            }
            CallNotice::Left => {
                form.devices_problem = None;
                (Severity::Info, "Call ended".to_owned())
            }
            CallNotice::Failed(error @ CallError::DevicesUnavailable(_)) => {
                form.devices_problem = Some(format!("{error}. {}", error.hint()));
                (Severity::Error, format!("{error}"))
            }
            CallNotice::Failed(error) => (Severity::Error, format!("{error}. {}", error.hint())),
        };
        toasts.push(severity, text);
    }
}

/// What the main panel reads of the call, and the switches it flips (spatial audio,
/// the room's view).
#[derive(SystemParam)]
struct CallView<'w> {
    state: Res<'w, CallState>,
    config: Res<'w, ClientConfig>,
    own_media: Res<'w, OwnMediaState>,
    own_hand: Res<'w, OwnHand>,
    own_level: Res<'w, OwnSpeakingLevel>,
    voice: Res<'w, OwnVoiceProcessing>,
    volumes: ResMut<'w, Volumes>,
    spatial: Option<ResMut<'w, SpatialAudio>>,
    view: Option<ResMut<'w, RoomView>>,
    devices: Res<'w, AvailableDevices>,
    picks: ResMut<'w, devices::DevicePicks>,
    own_screen: Res<'w, OwnScreen>,
    space: Res<'w, SpacePeople>,
    graphics: ResMut<'w, Graphics>,
}

fn call_panel(
    mut contexts: EguiContexts,
    mut call: CallView,
    participants: Query<(
        &Participant,
        &ConnectionState,
        &MediaState,
        Option<&VideoFeed>,
    )>,
    mut join_by_id: ResMut<JoinByIdRequested>,
    mut toggles: ResMut<OverlayToggles>,
    mut form: ResMut<HomeForm>,
    mut commands: MessageWriter<CallCommand>,
) -> Result {
    if join_by_id.0 {
        // The lobby's "Join by id" door: open the menu (even if it was hidden) on the
        // room-id field.
        join_by_id.0 = false;
        toggles.menu = true;
        form.focus_room_id = true;
    }
    if !toggles.menu {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    egui::Window::new("meetspace")
        .anchor(egui::Align2::LEFT_TOP, [12.0, 12.0])
        .resizable(false)
        .collapsible(false)
        .show(ctx, |ui| match &*call.state {
            CallState::Idle => home(ui, &call.config, &mut form, &mut commands),
            CallState::InCall { .. } if call.state.in_lobby() => {
                // Folded in the lobby, so that the window hides little of the space;
                // the "Join by id" door opens it on the room-id field.
                let asked_for_id = form.focus_room_id;
                egui::CollapsingHeader::new("Create or join a room")
                    .id_salt("create_or_join")
                    .default_open(false)
                    .open(asked_for_id.then_some(true))
                    .show(ui, |ui| home(ui, &call.config, &mut form, &mut commands));
                if participants.is_empty() {
                    ui.label("Nobody else is in the lobby.");
                } else {
                    ui.label("In the lobby (walk up to someone to talk):");
                }
                for (participant, connection, _, _) in &participants {
                    ui.horizontal(|ui| {
                        ui.label(format!(
                            "• {} ({})",
                            participant.name,
                            describe_nearby(connection.0)
                        ));
                        sound::person_volume(ui, &mut call.volumes, participant);
                    });
                }
                hand_button(ui, call.own_hand.0, &mut commands);
                space::around_the_space(ui, &call.space, true);
                if let Some(choice) = graphics::graphics_setting(ui, &call.graphics) {
                    call.graphics.choice = choice;
                }
            }
            CallState::Joining => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Connecting…");
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
                if let Some(problem) = &form.devices_problem {
                    ui.colored_label(egui::Color32::LIGHT_RED, problem);
                }
                ui.separator();
                if participants.is_empty() {
                    ui.label("Waiting for others to join…");
                }
                for (participant, connection, media, feed) in &participants {
                    let video = match feed.map_or(0, |feed| feed.frames_shown) {
                        0 if media.video => ", waiting for video",
                        _ => "",
                    };
                    ui.horizontal(|ui| {
                        ui.label(format!(
                            "• {} ({}{video})",
                            participant.name,
                            describe(connection.0, *media)
                        ));
                        sound::person_volume(ui, &mut call.volumes, participant);
                    });
                }
                ui.separator();
                ui.horizontal(|ui| {
                    let own_media = *call.own_media;
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
                    hand_button(ui, call.own_hand.0, &mut commands);
                    if ui.button("Hang up").clicked() {
                        commands.write(CallCommand::Leave);
                    }
                });
                ui.horizontal(|ui| {
                    ui.toggle_value(&mut toggles.stats, "Statistics (I)");
                    ui.toggle_value(&mut toggles.help, "Shortcuts (H)");
                    if let Some(view) = call.view.as_deref_mut() {
                        let mut gallery = *view == RoomView::Gallery;
                        if ui.toggle_value(&mut gallery, "Gallery (G)").changed() {
                            *view = if gallery {
                                RoomView::Gallery
                            } else {
                                RoomView::Avatars
                            };
                        }
                    }
                });
                let controls = sound::SoundControls {
                    own_level: call.own_level.0,
                    voice: *call.voice,
                    volumes: &mut call.volumes,
                    spatial: call.spatial.as_deref_mut(),
                };
                sound::sound_controls(ui, controls, &mut commands);
                let chosen = devices::device_pickers(
                    ui,
                    &call.devices,
                    &mut call.picks,
                    &call.own_screen,
                    &call.graphics,
                    &mut commands,
                );
                if let Some(choice) = chosen {
                    call.graphics.choice = choice;
                }
                // Folded in a room, where the room's own people come first.
                space::around_the_space(ui, &call.space, false);
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

/// "Raise hand (R)", or "Lower hand (R)" while it is raised.
fn hand_button(ui: &mut egui::Ui, raised: bool, commands: &mut MessageWriter<CallCommand>) {
    let label = if raised {
        "Lower hand (R)"
    } else {
        "Raise hand (R)"
    };
    if ui.button(label).clicked() {
        commands.write(CallCommand::RaiseHand(!raised));
    }
}

/// Where someone in the lobby stands towards us, in words.
fn describe_nearby(connection: PeerConnectionState) -> &'static str {
    match connection {
        PeerConnectionState::Connected => "near: you see and hear each other",
        PeerConnectionState::Connecting | PeerConnectionState::Disconnected => "connecting",
        PeerConnectionState::Failed => "near, but no connection",
        PeerConnectionState::New | PeerConnectionState::Closed => "not near",
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
        let field = ui.text_edit_singleline(&mut form.room);
        if std::mem::take(&mut form.focus_room_id) {
            field.request_focus();
        }
    });
    if let Some(error) = &form.join_error {
        ui.colored_label(egui::Color32::LIGHT_RED, error);
    }
    if ui.button("Join room").clicked()
        && let Some(join) = form.submit_join()
    {
        commands.write(join);
    }
    if !form.recent.is_empty() {
        ui.label("Recent rooms:");
        let mut chosen = None;
        for room in &form.recent {
            if ui.link(room.as_str()).clicked() {
                chosen = Some(room.to_string());
            }
        }
        if let Some(room) = chosen {
            form.room = room;
        }
    }
    ui.separator();
    ui.small(format!("Signaling: {}", config.signal));
}

fn toast_stack(mut contexts: EguiContexts, mut toasts: ResMut<Toasts>) -> Result {
    toasts
        .shown
        .retain(|toast| toast.shown_at.elapsed() < TOAST_LIFETIME);
    if toasts.shown.is_empty() {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    egui::Area::new(egui::Id::new("toasts"))
        .anchor(egui::Align2::RIGHT_BOTTOM, [-12.0, -12.0])
        .show(ctx, |ui| {
            for toast in &toasts.shown {
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Instant;

    use super::*;
    use crate::headless::headless_app;
    use crate::rtc::turn_check::TURN_CHECK_TIMEOUT;
    use crate::runtime::AsyncRuntime;
    use crate::signaling::ice_servers::IceServer;
    use crate::signaling::server::{ServerLimits, SignalingServer};

    fn form(name: &str, room: &str) -> HomeForm {
        HomeForm {
            name: name.to_owned(),
            room: room.to_owned(),
            ..default()
        }
    }

    #[test]
    fn join_with_an_empty_or_malformed_id_sends_nothing_and_says_why() {
        for (room, expected) in [("", "empty"), ("   ", "empty"), ("bad id!", "letters")] {
            let mut form = form("Ada", room);
            assert_eq!(form.submit_join(), None, "{room:?}");
            let error = form.join_error.clone().unwrap();
            assert!(
                error.starts_with("Room id:") && error.contains(expected),
                "{error}"
            );
        }
        let mut bad_name = form("a\u{7}b", "k3m9px2q7rabcdefghjk");
        assert_eq!(bad_name.submit_join(), None);
        assert!(bad_name.join_error.unwrap().starts_with("Your name:"));

        let mut good = form("Ada", " k3m9px2q7rabcdefghjk ");
        good.join_error = Some("stale".into());
        assert!(matches!(
            good.submit_join(),
            Some(CallCommand::JoinRoom { room, .. }) if room.as_str() == "k3m9px2q7rabcdefghjk"
        ));
        assert_eq!(good.join_error, None);
    }

    /// A headless client with the toasts of the overlay, `configure`d, talking to a
    /// signaling server on 127.0.0.1 that runs on the returned runtime.
    fn client_with_toasts(
        configure: impl FnOnce(ClientConfig) -> ClientConfig,
    ) -> (AsyncRuntime, App) {
        let runtime = AsyncRuntime::new().unwrap();
        let server = runtime
            .handle()
            .block_on(SignalingServer::bind(
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                ServerLimits::default(),
            ))
            .unwrap();
        let config = configure(ClientConfig::synthetic(
            server.url().parse().unwrap(),
            DisplayName::parse("Ada").unwrap(),
        ));
        runtime.handle().spawn(server.run());
        let mut app = headless_app(config);
        app.init_resource::<Toasts>()
            .init_resource::<HomeForm>()
            .add_systems(Update, collect_toasts);
        app.finish();
        app.cleanup();
        (runtime, app)
    }

    /// Updates `app` until an error toast shows (failing after `limit`); its text.
    fn first_error_toast(app: &mut App, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            app.update();
            let toasts = &app.world().resource::<Toasts>().shown;
            if let Some(toast) = toasts.iter().find(|t| t.severity == Severity::Error) {
                return toast.text.clone();
            }
            assert!(Instant::now() < deadline, "no error toast");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_unknown_room_id_becomes_a_toast_and_the_call_returns_to_idle() {
        let (_runtime, mut app) = client_with_toasts(|config| config);
        let join = form("Ada", "nosuchroom2345678abc").submit_join().unwrap();
        app.world_mut().write_message(join);
        let toast = first_error_toast(&mut app, Duration::from_secs(5));
        assert!(
            toast.contains("no room with id nosuchroom2345678abc"),
            "{toast}"
        );
        assert!(
            toast.contains("check the room id"),
            "the toast says what to do: {toast}"
        );
        app.update();
        assert_eq!(*app.world().resource::<CallState>(), CallState::Idle);
    }

    #[test]
    fn a_turn_server_that_does_not_answer_becomes_a_toast_and_the_call_goes_on() {
        // A UDP port that takes the allocation requests and never answers.
        let silent = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let url = format!("turn:{}", silent.local_addr().unwrap());
        let (_runtime, mut app) = client_with_toasts(|config| ClientConfig {
            ice_servers: IceServer::from_flags(&[url.parse().unwrap()], Some("u"), Some("p")),
            ..config
        });
        app.world_mut().write_message(CallCommand::CreateRoom {
            name: DisplayName::parse("Ada").unwrap(),
            public_title: None,
        });
        let toast = first_error_toast(&mut app, TURN_CHECK_TIMEOUT + Duration::from_secs(10));
        assert!(
            toast.contains(&format!("cannot reach the TURN server {url}")),
            "{toast}"
        );
        assert!(toast.contains("check the TURN address"), "{toast}");
        assert!(
            matches!(
                app.world().resource::<CallState>(),
                CallState::InCall { .. }
            ),
            "the call goes on without the relay"
        );
    }
}
