//! The browser build's entry and page glue: settings from the page address, the
//! spatial-audio system that follows the panels, the read-only test hooks on
//! `window.__meetspace` and the one control tests have, `window.__meetspaceSetVolume`
//! (the helpers for JavaScript values are in `browser.rs`).
//!
//! The page address picks the room and server: `http://HOST:PORT/#room=ID` joins room
//! ID through `ws://HOST:PORT/ws` (the server that served the page); `&name=NAME` sets
//! the display name and `&signal=ws://...` another server.

use std::cell::RefCell;

use anyhow::Context;
use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use clap::{Parser, ValueEnum};
use js_sys::{JSON, Object, Reflect};
use serde::Serialize;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::app::add_client;
use crate::browser::{describe, document};
use crate::call::{
    CallNotice, CallState, ConnectionState, HandRaised, MediaState, MutedSpeakingLevel, OwnScreen,
    OwnSpeakingLevel, Participant, PoseTrack, SelfView, SharedScreen, SpacePeople, SpeakingLevel,
    VideoFeed, Volumes,
};
use crate::config::{CallArgs, ClientConfig};
use crate::media::web::{
    ReportedProcessing, VoiceFade, microphone_processing, place_listener, place_voice, voice_fade,
};
use crate::media::web_playback::{OutputState, output_state};
use crate::media::{CallStats, ShareTarget};
use crate::signaling::protocol::{DisplayName, RoomId, SpaceArea};
use crate::signaling::{SignalUrl, WS_PATH, took_page_socket};
use crate::space::{
    Graphics, GraphicsChoice, Location, Panel, PanelRect, PanelView, Player, SpatialAudio,
    roll_off_in,
};
use crate::ui::fonts::OverlayFonts;

/// The id of the `<canvas>` in index.html that Bevy draws into.
const CANVAS_SELECTOR: &str = "#meetspace";
/// The errors [`TestHooks`] keep, newest last.
const KEPT_ERRORS: usize = 16;

/// Starts the client in the page: panics go to the console, settings come from the
/// address, and the app runs on the browser's event loop (this returns at once).
pub fn run() {
    console_error_panic_hook::set_once();
    let PageSettings {
        config,
        room,
        graphics,
    } = match settings_from_address() {
        Ok(settings) => settings,
        Err(error) => {
            show_fatal(&format!("meetspace cannot start: {error:#}"));
            return;
        }
    };
    let mut app = App::new();
    add_client(
        &mut app,
        config,
        room,
        graphics,
        Window {
            title: "meetspace".into(),
            canvas: Some(CANVAS_SELECTOR.into()),
            fit_canvas_to_parent: true,
            ..default()
        },
    );
    app.add_plugins(BrowserPlugin);
    app.run();
}

/// What the page address asks for.
struct PageSettings {
    /// The signaling server, display name and ICE settings.
    config: ClientConfig,
    /// The room to join at once.
    room: Option<RoomId>,
    /// `graphics=auto|full|light`.
    graphics: GraphicsChoice,
}

/// The signaling server, display name, room and graphics that the page address asks
/// for.
fn settings_from_address() -> anyhow::Result<PageSettings> {
    let location = web_sys::window().context("no window")?.location();
    let describe_js = |error: JsValue| anyhow::anyhow!(describe(&error));
    let host = location.host().map_err(describe_js)?;
    let secure = location.protocol().map_err(describe_js)? == "https:";
    let hash = location.hash().map_err(describe_js)?;
    let mut signal = format!("{}://{host}{WS_PATH}", if secure { "wss" } else { "ws" });
    let mut room = None;
    let mut name = None;
    let mut graphics = GraphicsChoice::Auto;
    let mut share = None;
    // ICE settings go through the native client's flags (and their checks).
    let mut flags = vec!["meetspace".to_owned()];
    for (key, value) in url::form_urlencoded::parse(hash.trim_start_matches('#').as_bytes()) {
        match &*key {
            "room" => room = Some(RoomId::parse(&value).context("the address's room id")?),
            "name" => name = Some(DisplayName::parse(&value).context("the address's name")?),
            "signal" => signal = value.into_owned(),
            "graphics" => {
                graphics = GraphicsChoice::from_str(&value, false)
                    .ok()
                    .with_context(|| {
                        format!("the address's graphics {value:?} (auto, full or light)")
                    })?;
            }
            // What to share from the start of each call; the browser's picker chooses
            // which screen, so only `screen` means anything here.
            "share" if value == "screen" => share = Some(ShareTarget::Screen(None)),
            "share" => anyhow::bail!("the address's share {value:?} (only `screen`)"),
            "ice" | "ice_username" | "ice_credential" | "ice_transport_policy" => {
                flags.push(format!("--{}", key.replace('_', "-")));
                flags.push(value.into_owned());
            }
            _ => {}
        }
    }
    let signal: SignalUrl = signal.parse().context("the signaling server's address")?;
    // The same defaults as the native client's flags.
    let defaults = DefaultCallArgs::try_parse_from(flags)
        .context("the address's ICE settings")?
        .call;
    // Sound devices are the browser's (getUserMedia, WebAudio), not cpal's.
    let mut config = ClientConfig::new(signal, defaults, false);
    if let Some(name) = name {
        config.name = name;
    }
    config.share = share;
    Ok(PageSettings {
        config,
        room,
        graphics,
    })
}

/// The call flags with nothing given: their defaults.
#[derive(Parser)]
struct DefaultCallArgs {
    #[command(flatten)]
    call: CallArgs,
}

/// Puts a message where the app would be (for failures before the app runs).
fn show_fatal(message: &str) {
    tracing::error!("{message}");
    if let Ok(document) = document()
        && let Some(status) = document.get_element_by_id("status")
    {
        status.set_text_content(Some(message));
    }
}

/// What only the browser build adds to the app: spatial audio placement and the test
/// hooks.
struct BrowserPlugin;

impl Plugin for BrowserPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(PostUpdate, place_voices)
            .add_systems(PreUpdate, take_volume_requests)
            .add_systems(Last, (collect_errors, publish_test_hooks).chain());
        app.init_resource::<RecentErrors>();
    }
}

/// Moves the audio listener with the player and each voice to its panel, fading as
/// the native mixer does ([`roll_off_in`]); with spatial audio off, every voice sits at
/// the listener (full level, no panning).
fn place_voices(
    spatial: Res<SpatialAudio>,
    location: Res<Location>,
    config: Res<ClientConfig>,
    player: Query<&GlobalTransform, With<Player>>,
    panels: Query<(&Panel, &GlobalTransform)>,
    participants: Query<&Participant>,
) {
    let Ok(listener) = player.single() else {
        return;
    };
    place_listener(listener.translation(), *listener.forward(), *listener.up());
    let roll_off = roll_off_in(*location, &spatial, config.nearby.earshot);
    for (panel, transform) in &panels {
        if let Ok(participant) = participants.get(panel.participant) {
            let at = if spatial.enabled {
                transform.translation()
            } else {
                listener.translation()
            };
            place_voice(&participant.peer_id, at, roll_off);
        }
    }
}

/// The latest call errors, for the test hooks.
#[derive(Resource, Default)]
struct RecentErrors(Vec<ErrorHook>);

fn collect_errors(mut notices: MessageReader<CallNotice>, mut recent: ResMut<RecentErrors>) {
    for notice in notices.read() {
        if let CallNotice::Failed(error) = notice {
            if recent.0.len() == KEPT_ERRORS {
                recent.0.remove(0);
            }
            recent.0.push(ErrorHook {
                kind: error.kind(),
                message: error.to_string(),
            });
        }
    }
}

/// `window.__meetspace`: a frozen snapshot, replaced every frame.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TestHooks {
    /// `idle`, `joining`, `in_call` or `leaving`.
    state: &'static str,
    room: Option<String>,
    self_id: Option<String>,
    /// Frames of our own camera shown in the self-view.
    self_frames_drawn: u64,
    /// How loud our microphone is (RMS, 0 to 1; 0 while muted).
    own_level: f32,
    /// How loud our microphone hears us while we are muted (0 while not muted).
    muted_level: f32,
    /// The sound output: the `<audio>` element that plays every voice.
    audio_output: AudioOutputHook,
    /// Our microphone's voice processing as the browser reports it (`getSettings`);
    /// `null` without a microphone.
    microphone: Option<MicrophoneHook>,
    participants: Vec<ParticipantHook>,
    /// Who else is where in the space, area by area.
    space: Vec<AreaHook>,
    /// Every panel's screen in canvas pixels, with the frames drawn on it.
    panels: Vec<PanelRect>,
    /// Whether we share a screen.
    sharing: bool,
    /// The screens others share, as they arrive.
    screens: Vec<ScreenHook>,
    /// The corners of the shared screen on the room's wall in canvas pixels, while one
    /// hangs there in view (top-left, top-right, bottom-right, bottom-left).
    wall: Option<[[f32; 2]; 4]>,
    errors: Vec<ErrorHook>,
    /// What the space draws and why, e.g. `light (software renderer: …)`.
    graphics: String,
    /// The overlay has its emoji fonts (fetched as the app starts).
    emoji_fonts: bool,
    /// The first signaling connection was the one the page opened while the wasm
    /// downloaded.
    signaling_from_page: bool,
}

/// What the hooks read of shared screens: ours, and those others share.
#[derive(SystemParam)]
struct ScreenParts<'w, 's> {
    own: Res<'w, OwnScreen>,
    shared: Query<'w, 's, (&'static SharedScreen, &'static VideoFeed)>,
}

/// A screen someone shares, as this page receives it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScreenHook {
    /// The sharer's peer id.
    peer_id: String,
    /// Frames of it drawn.
    frames_drawn: u64,
    /// The size of its newest frame.
    size: Option<[u32; 2]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AudioOutputHook {
    /// The element exists (during a call).
    element: bool,
    /// It plays.
    playing: bool,
    /// It plays the loopback connection's received stream, which the echo canceller
    /// hears (false: the mix directly, or nothing).
    loopback: bool,
    /// How loud what it plays is (RMS, 0 to 1), measured on the received stream.
    level: f32,
}

impl From<OutputState> for AudioOutputHook {
    fn from(state: OutputState) -> Self {
        Self {
            element: state.element,
            playing: state.playing,
            loopback: state.loopback,
            level: state.level,
        }
    }
}

/// `null` for a part the browser does not report.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MicrophoneHook {
    echo_cancellation: Option<bool>,
    noise_suppression: Option<bool>,
    auto_gain_control: Option<bool>,
}

impl From<ReportedProcessing> for MicrophoneHook {
    fn from(reported: ReportedProcessing) -> Self {
        Self {
            echo_cancellation: reported.echo_cancellation,
            noise_suppression: reported.noise_suppression,
            auto_gain_control: reported.auto_gain,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantHook {
    peer_id: String,
    name: String,
    connection: String,
    frames_drawn: u64,
    media: MediaState,
    /// How loud they sound (RMS, 0 to 1): what the speaking ring shows.
    level: f32,
    /// Their connection's figures (from `getStats`), once read.
    stats: Option<CallStats>,
    /// Where they stand in the lobby (x, z in metres), as last told.
    position: Option<[f32; 2]>,
    /// Poses received from them (the server's and their data channel's).
    poses_received: u64,
    /// How their voice fades with distance, while it plays.
    voice_fade: Option<VoiceFade>,
    /// Their hand is raised.
    hand_raised: bool,
}

/// An area of the space and who is in it.
#[derive(Serialize)]
struct AreaHook {
    /// `lobby`, a public room's title, or `private` (private rooms together).
    area: String,
    names: Vec<String>,
}

/// What the test hooks read of a participant.
type ParticipantParts = (
    &'static Participant,
    &'static ConnectionState,
    &'static MediaState,
    &'static VideoFeed,
    &'static SpeakingLevel,
    Option<&'static CallStats>,
    &'static PoseTrack,
    &'static HandRaised,
);

#[derive(Serialize, Clone)]
struct ErrorHook {
    kind: &'static str,
    message: String,
}

thread_local! {
    /// The snapshot the `window.__meetspace` getter returns.
    static HOOKS: RefCell<JsValue> = const { RefCell::new(JsValue::UNDEFINED) };
}

/// Installs the read-only `window.__meetspace` property (a getter, no setter).
fn install_hooks_getter() -> Result<(), JsValue> {
    let window = web_sys::window().ok_or_else(|| JsValue::from_str("no window"))?;
    let getter = Closure::<dyn Fn() -> JsValue>::new(|| HOOKS.with(|hooks| hooks.borrow().clone()));
    let descriptor = Object::new();
    Reflect::set(&descriptor, &"get".into(), getter.as_ref())?;
    Object::define_property(&window, &"__meetspace".into(), &descriptor);
    // The getter lives as long as the page.
    getter.forget();
    Ok(())
}

/// A volume a test asked for through `window.__meetspaceSetVolume(peerId, volume)`:
/// one person's (by peer id) or, with `peerId` null, the master volume.
struct VolumeRequest {
    peer_id: Option<String>,
    volume: f32,
}

thread_local! {
    /// Volumes asked for since the last frame.
    static VOLUME_REQUESTS: RefCell<Vec<VolumeRequest>> = const { RefCell::new(Vec::new()) };
}

/// Installs `window.__meetspaceSetVolume(peerId, volume)`: sets [`Volumes`] as the
/// overlay's sliders do (volume 0 to 1; `peerId` null for the master volume).
fn install_volume_control() -> Result<(), JsValue> {
    let window = web_sys::window().ok_or_else(|| JsValue::from_str("no window"))?;
    let control = Closure::<dyn Fn(JsValue, f64)>::new(|peer_id: JsValue, volume: f64| {
        let request = VolumeRequest {
            peer_id: peer_id.as_string(),
            volume: volume as f32,
        };
        VOLUME_REQUESTS.with(|requests| requests.borrow_mut().push(request));
    });
    Reflect::set(&window, &"__meetspaceSetVolume".into(), control.as_ref())?;
    // The control lives as long as the page.
    control.forget();
    Ok(())
}

/// Applies the volumes asked for through `window.__meetspaceSetVolume`.
fn take_volume_requests(
    mut volumes: ResMut<Volumes>,
    participants: Query<&Participant>,
    mut installed: Local<bool>,
) {
    if !*installed {
        if let Err(error) = install_volume_control() {
            tracing::error!("the volume control is missing: {}", describe(&error));
        }
        *installed = true;
    }
    for request in VOLUME_REQUESTS.with(|requests| std::mem::take(&mut *requests.borrow_mut())) {
        let volume = request.volume.clamp(0.0, 1.0);
        match request.peer_id {
            None => volumes.master = volume,
            Some(peer_id) => match participants.iter().find(|p| p.peer_id.as_str() == peer_id) {
                Some(participant) => {
                    volumes.people.insert(participant.peer_id.clone(), volume);
                }
                None => tracing::warn!(%peer_id, "no such participant to set the volume of"),
            },
        }
    }
}

fn publish_test_hooks(
    state: Res<CallState>,
    participants: Query<ParticipantParts>,
    levels: (Res<OwnSpeakingLevel>, Res<MutedSpeakingLevel>),
    self_view: Query<&VideoFeed, With<SelfView>>,
    panels: PanelView,
    (errors, space, graphics, screens, fonts): (
        Res<RecentErrors>,
        Res<SpacePeople>,
        Res<Graphics>,
        ScreenParts,
        Res<OverlayFonts>,
    ),
    mut installed: Local<bool>,
) {
    if !*installed {
        if let Err(error) = install_hooks_getter() {
            tracing::error!("the test hooks are missing: {}", describe(&error));
        }
        *installed = true;
    }
    let (state_name, room, self_id) = match &*state {
        CallState::Idle => ("idle", None, None),
        CallState::Joining => ("joining", None, None),
        CallState::InCall { room, self_id } => {
            ("in_call", Some(room.to_string()), Some(self_id.to_string()))
        }
        CallState::Leaving => ("leaving", None, None),
    };
    let hooks = TestHooks {
        state: state_name,
        room,
        self_id,
        self_frames_drawn: self_view.iter().map(|feed| feed.frames_shown).sum(),
        own_level: levels.0.0,
        muted_level: levels.1.0,
        audio_output: output_state().into(),
        microphone: microphone_processing().map(MicrophoneHook::from),
        participants: participants
            .iter()
            .map(
                |(participant, connection, media, feed, speaking, stats, track, hand)| {
                    ParticipantHook {
                        peer_id: participant.peer_id.to_string(),
                        name: participant.name.to_string(),
                        connection: format!("{:?}", connection.0).to_lowercase(),
                        frames_drawn: feed.frames_shown,
                        media: *media,
                        level: speaking.0,
                        stats: stats.cloned(),
                        position: track.latest().map(|pose| [pose.x, pose.z]),
                        poses_received: track.received,
                        voice_fade: voice_fade(&participant.peer_id),
                        hand_raised: hand.0,
                    }
                },
            )
            .collect(),
        space: space
            .by_area()
            .into_iter()
            .map(|area| AreaHook {
                area: match area.area {
                    SpaceArea::Lobby => "lobby".to_owned(),
                    SpaceArea::Room { title, .. } => title.to_string(),
                    SpaceArea::Private => "private".to_owned(),
                },
                names: area.names.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        // In CSS pixels, as page screenshots measure.
        panels: panels.rects(1.0),
        sharing: screens.own.0.is_some(),
        screens: screens
            .shared
            .iter()
            .map(|(screen, feed)| ScreenHook {
                peer_id: screen.peer_id.to_string(),
                frames_drawn: feed.frames_shown,
                size: feed.size.map(|size| [size.x, size.y]),
            })
            .collect(),
        wall: panels.wall_corners(1.0),
        errors: errors.0.clone(),
        graphics: graphics.describe(),
        emoji_fonts: fonts.has_emoji(),
        signaling_from_page: took_page_socket(),
    };
    let Ok(json) = serde_json::to_string(&hooks) else {
        return;
    };
    if let Ok(snapshot) = JSON::parse(&json) {
        let snapshot = Object::freeze(snapshot.unchecked_ref::<Object>());
        HOOKS.with(|hooks| *hooks.borrow_mut() = snapshot.into());
    }
}
