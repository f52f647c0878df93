//! The call: its state machine (Idle, Joining, InCall, Leaving), one [`Participant`]
//! entity per remote peer, and the two channels across the async edge:
//! [`CallCommand`]s go from the ECS to the driver task, [`CallEvent`]s come back.
//!
//! Systems write [`CallCommand`] messages; [`CallNotice`] messages tell the UI (or a
//! bot) what happened. Nothing here touches the network.

#[cfg(not(target_arch = "wasm32"))]
mod driver;
mod executor;
#[cfg(not(target_arch = "wasm32"))]
mod peer;
pub mod poses;
pub mod room;
mod roster;
mod space_people;
#[cfg(target_arch = "wasm32")]
mod web;

pub use poses::PoseTrack;
pub use room::{PEER_RECONNECT_LIMIT, RESUME_LIMIT};
pub use space_people::{AreaPeople, SpaceNews, SpacePeople};

use std::collections::HashMap;
use std::sync::Arc;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::config::ClientConfig;
use crate::media::convert::rgba_image;
use crate::media::{
    AudioInput, CallStats, DeviceChoice, FrameReceiver, Mixer, SendCounters, ShareSource,
    ShareTarget, Stamp, VideoInput, VoiceProcessing, frame_channel,
};
use crate::rtc::{PeerConnectionState, TurnProblem};
#[cfg(not(target_arch = "wasm32"))]
use crate::runtime::AsyncRuntime;
use crate::signaling::protocol::{
    ChatScope, ChatText, DisplayName, ErrorCode, PeerId, PeerInfo, Pose, RoomId, RoomSummary,
};

/// What the app asks of the call.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum CallCommand {
    /// Make a new room and enter it.
    CreateRoom {
        /// The name others see.
        name: DisplayName,
        /// List the room in everyone's lobby under this title; `None`: private.
        public_title: Option<DisplayName>,
    },
    /// Enter a room by its id.
    JoinRoom {
        /// The room.
        room: RoomId,
        /// The name others see.
        name: DisplayName,
    },
    /// Hang up and go back to idle.
    Leave,
    /// Microphone on (true) or muted (false); peers are told.
    SetMicrophone(bool),
    /// Camera on (true) or off (false); peers are told.
    SetCamera(bool),
    /// Send video from another source from now on (this call and the next), without a
    /// new negotiation.
    SwitchVideo(VideoInput),
    /// Send audio from another source from now on (this call and the next), also after
    /// the microphone was lost.
    SwitchMicrophone(AudioInput),
    /// Play the others on another speaker from now on; `None`: nowhere.
    SwitchSpeaker(Option<DeviceChoice>),
    /// Switch parts of our microphone's voice processing (echo cancellation, noise
    /// suppression, gain) on or off, from now on.
    SetVoiceProcessing(VoiceProcessing),
    /// List the cameras, microphones and speakers; the answer fills [`AvailableDevices`].
    ListDevices,
    /// Show others a screen or window (`Some`) or stop sharing (`None`), in this call and
    /// the next; the running connections are renegotiated. The share starts once the
    /// room gives us its wall ([`CallEvent::ShareRefused`] when someone else has it).
    ShareScreen(Option<ShareTarget>),
    /// Show our share instead of the one on the wall (after
    /// [`CallEvent::ShareRefused`]).
    TakeOverScreen,
    /// Ask the server which public rooms exist; the answer fills [`PublicRooms`].
    ListRooms,
    /// Where we stand now (the space sends it as we walk); in the lobby it decides who
    /// is near.
    SetPose(Pose),
    /// How large each person's video appears on our screen now, in pixels high (0: out
    /// of view). Through the SFU we receive the simulcast layer of their camera that
    /// fits.
    ShowSizes(Vec<(PeerId, f32)>),
    /// Send a chat message to `scope`, through the server.
    SendChat {
        /// Whom it is for.
        scope: ChatScope,
        /// What it says.
        text: ChatText,
    },
    /// Raise (true) or lower our hand, for everyone in the room to see; it stays as
    /// it is from room to room.
    RaiseHand(bool),
}

/// A chat message as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// The sender's id in its room.
    pub from: PeerId,
    /// The sender's name.
    pub name: DisplayName,
    /// Whom it was for.
    pub scope: ChatScope,
    /// What it says.
    pub text: ChatText,
}

/// The chat messages of this session, oldest first (at most [`ChatLog::KEPT`]).
#[derive(Resource, Debug, Clone, Default)]
pub struct ChatLog {
    /// The messages, each with when it arrived.
    pub lines: std::collections::VecDeque<(bevy::platform::time::Instant, ChatLine)>,
}

impl ChatLog {
    /// Messages kept.
    pub const KEPT: usize = 200;

    /// Adds a message that arrived now.
    pub fn push(&mut self, line: ChatLine) {
        if self.lines.len() == Self::KEPT {
            self.lines.pop_front();
        }
        self.lines
            .push_back((bevy::platform::time::Instant::now(), line));
    }
}

/// The capture and playback devices there are, by name, in the order `--camera`,
/// `--mic` and `--speaker` indices count them (as listed last: [`CallCommand::ListDevices`]).
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct AvailableDevices {
    /// Cameras.
    pub cameras: Vec<String>,
    /// Microphones.
    pub microphones: Vec<String>,
    /// Speakers.
    pub speakers: Vec<String>,
    /// Screens and windows that can be shared.
    pub shares: Vec<ShareSource>,
}

/// The public rooms the server listed last (the lobby's doors).
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicRooms(pub Vec<RoomSummary>);

/// A remote peer entering the call, with the channel its decoded video arrives on.
#[derive(Debug, Clone)]
pub struct JoiningPeer {
    /// Who.
    pub info: PeerInfo,
    /// Their decoded frames, newest first.
    pub video: FrameReceiver,
}

/// What the async side reports back; turned into ECS changes by [`apply_call_events`].
#[derive(Debug, Clone)]
pub enum CallEvent {
    /// We are in `room` as `self_id`, with `peers` already there.
    Joined {
        /// The room.
        room: RoomId,
        /// Our id in it.
        self_id: PeerId,
        /// Who was there before us.
        peers: Vec<JoiningPeer>,
    },
    /// A peer entered the room.
    PeerJoined(JoiningPeer),
    /// A peer left the room, or its connection failed for good.
    PeerLeft(PeerId),
    /// The connection to a peer changed state.
    PeerState(PeerId, PeerConnectionState),
    /// Fresh receive figures for a peer (boxed: the largest event by far).
    PeerStats(PeerId, Box<CallStats>),
    /// A peer turned its microphone or camera on or off.
    PeerMedia(PeerId, MediaState),
    /// A peer's shared screen started to arrive (its decoded frames, newest first), or
    /// stopped (`None`).
    PeerScreen(PeerId, Option<FrameReceiver>),
    /// What we share now (`None`: nothing), after a [`CallCommand::ShareScreen`] or when
    /// the shared window went away.
    OwnScreen(Option<ShareTarget>),
    /// The room's wall shows these people's screens, as many as it allows: ours waits
    /// until we take over ([`CallCommand::TakeOverScreen`]) or give up.
    ShareRefused(Vec<DisplayName>),
    /// Someone (by name, when known) took the wall over: our share stopped.
    ShareTakenOver(Option<DisplayName>),
    /// Our own switches changed without being asked (no microphone: we are muted).
    OwnMedia(MediaState),
    /// Where a peer in the lobby stands now.
    PeerPose(PeerId, Pose),
    /// A peer raised (true) or lowered its hand.
    PeerHand(PeerId, bool),
    /// We hold this many peer connections now.
    MediaConnections(usize),
    /// Our camera goes out over this many connections (`via_sfu`: one, to the SFU);
    /// told when it changes, as long as it goes out at all.
    Upstreams {
        /// Whether it goes through the SFU.
        via_sfu: bool,
        /// Over how many connected connections.
        count: usize,
    },
    /// A chat message came.
    Chat(ChatLine),
    /// A peer in the lobby came within earshot (`near`) or went out of it.
    Nearby {
        /// Who.
        peer: PeerId,
        /// How far, in metres, when it crossed.
        distance_m: f32,
        /// Whether it is near now.
        near: bool,
    },
    /// The server's list of public rooms.
    RoomList(Vec<RoomSummary>),
    /// Who is where in the space.
    Space(SpaceNews),
    /// The devices there are.
    Devices(AvailableDevices),
    /// The signaling connection dropped during the call (why); media goes on while
    /// the driver reconnects.
    Reconnecting(String),
    /// The signaling connection is back and we have our place in the room again.
    Reconnected,
    /// The call is over (hung up, refused, or lost); back to idle.
    Left,
    /// Something went wrong; [`CallEvent::Left`] follows when the call cannot go on.
    Failed(CallError),
}

/// Why something in a call failed, in words a user understands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    /// The signaling server could not be reached.
    #[error("cannot reach the signaling server: {0}")]
    SignalingUnreachable(String),
    /// The server refused a request (wrong room id, room full, ...).
    #[error("{message}")]
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's words.
        message: String,
    },
    /// The signaling connection dropped during a call.
    #[error("lost the connection to the signaling server: {0}")]
    ConnectionLost(String),
    /// Create or join while a call is going on.
    #[error("already in a call; hang up first")]
    AlreadyInCall,
    /// Media could not be set up or negotiated with a peer (no common codec, ...).
    #[error("media problem: {0}")]
    Media(String),
    /// A camera, microphone or speaker cannot be used; the call goes on without it.
    #[error("{0}")]
    Device(String),
    /// Our camera and microphone could not be opened (denied, missing); the call goes
    /// on without sending.
    #[error("{0}")]
    DevicesUnavailable(String),
    /// A TURN server cannot be used (refused credentials, unreachable); the call goes
    /// on with whatever path ICE finds without it.
    #[error("{0}")]
    Turn(TurnProblem),
    /// ICE found no path to a peer: it is dropped from the call.
    #[error("no route between you and {peer} (ICE failed); {}", if *through_turn {
        "not even through the TURN server"
    } else {
        "a TURN server is needed (--ice turn:..., or the signaling server's --turn-url)"
    })]
    NoRoute {
        /// The peer's name.
        peer: String,
        /// Whether a TURN server was configured.
        through_turn: bool,
    },
}

impl CallError {
    /// The server's error code, when the server refused something.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A short machine-readable name: the server's code, or `signaling_unreachable`,
    /// `connection_lost`, `already_in_call`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SignalingUnreachable(_) => "signaling_unreachable",
            Self::Refused { code, .. } => code.as_str(),
            Self::ConnectionLost(_) => "connection_lost",
            Self::AlreadyInCall => "already_in_call",
            Self::Media(_) => "media",
            Self::Device(_) => "device",
            Self::DevicesUnavailable(_) => "devices_unavailable",
            Self::Turn(problem) => problem.kind(),
            Self::NoRoute { .. } => "ice_failed",
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::SignalingUnreachable(_) => {
                "check the --signal address, that the server runs, and your network"
            }
            Self::Refused {
                code: ErrorCode::RoomNotFound,
                ..
            } => "check the room id; a room closes when its last participant leaves",
            Self::Refused {
                code: ErrorCode::RoomFull,
                ..
            } => "the room has no free place; ask for a new room",
            Self::Refused {
                code: ErrorCode::WrongPasscode,
                ..
            } => "ask whoever made the room for its passcode (--passcode)",
            Self::Refused {
                code: ErrorCode::BadMessage,
                ..
            } => "that needs a meetspace signaling server and meetspace on the other side",
            Self::Refused { .. } => "try again; if it keeps happening, report it",
            Self::ConnectionLost(_) => "check your network, then join the room again",
            Self::AlreadyInCall => "hang up before creating or joining another room",
            Self::Media(_) => {
                "the other side may use a codec meetspace lacks (it needs VP8 and Opus)"
            }
            Self::Device(_) => {
                "check that it is plugged in and free; --video, --mic and --speaker pick \
                 another, --audio none uses no sound device"
            }
            Self::DevicesUnavailable(_) => {
                "you can still watch and listen; to be seen and heard, allow the camera \
                 and microphone for this page and join again"
            }
            Self::Turn(TurnProblem::Refused { .. }) => {
                "ask for fresh credentials (--ice-username/--ice-credential), or let the \
                 signaling server hand them out (serve --turn-secret)"
            }
            Self::Turn(TurnProblem::Unreachable { .. }) => {
                "check the TURN address and port, and that UDP to it is not blocked"
            }
            Self::Turn(TurnProblem::Unsupported { .. }) => {
                "give a turn: URL over UDP as well; browsers also take TCP and TLS"
            }
            Self::NoRoute { .. } => {
                "firewalls or NATs on both sides block a direct path: use a TURN server \
                 reachable from both"
            }
        }
    }
}

/// Where the call stands.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub enum CallState {
    /// No call.
    #[default]
    Idle,
    /// Asked to create or join; waiting for the server.
    Joining,
    /// In a room.
    InCall {
        /// The room's id (what to share).
        room: RoomId,
        /// Our id in the room.
        self_id: PeerId,
    },
    /// Hanging up.
    Leaving,
}

impl CallState {
    /// Whether we are in the space's lobby (not in a room of our own).
    pub fn in_lobby(&self) -> bool {
        matches!(self, Self::InCall { room, .. } if room.is_lobby())
    }
}

/// A remote person in the call; one entity each, spawned on join, despawned on leave,
/// with [`ConnectionState`], [`MediaState`], [`SpeakingLevel`], [`VideoFeed`] and (once
/// measured) [`CallStats`] beside it.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
#[require(ConnectionState, MediaState, SpeakingLevel)]
pub struct Participant {
    /// Their id in the room.
    pub peer_id: PeerId,
    /// Their display name.
    pub name: DisplayName,
}

/// Where the peer connection to a participant stands.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionState(pub PeerConnectionState);

impl Default for ConnectionState {
    fn default() -> Self {
        Self(PeerConnectionState::New)
    }
}

/// Microphone and camera switches; as a component on a [`Participant`], theirs (as
/// they told us).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaState {
    /// Microphone on.
    pub audio: bool,
    /// Camera on.
    pub video: bool,
}

impl Default for MediaState {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
        }
    }
}

/// Our own microphone and camera switches.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq, Deref, DerefMut)]
pub struct OwnMediaState(pub MediaState);

/// Whose screens hold the room's wall while ours waits ([`CallEvent::ShareRefused`]):
/// the overlay asks whether to take over. Cleared by the answer or when ours shows.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareQuestion(pub Option<Vec<DisplayName>>);

/// What we share now (`None`: nothing), as the driver last said.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq, Deref)]
pub struct OwnScreen(pub Option<ShareTarget>);

/// A screen a participant shares: a child of its [`Participant`], with the
/// [`VideoFeed`] its frames arrive in.
#[derive(Component, Debug, Clone)]
pub struct SharedScreen {
    /// Who shares it.
    pub peer_id: PeerId,
}

/// Whether our hand is raised.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnHand(pub bool);

/// Whether a participant's hand is raised (beside its [`Participant`]).
#[derive(Component, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandRaised(pub bool);

/// Call-level messages peers send each other through signaling, beside the WebRTC
/// offers, answers and candidates (see docs/signaling.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerControl {
    /// The sender's microphone and camera switches.
    MediaState(MediaState),
    /// In the lobby: the sender wants media with us and its media runs (`ready`), or
    /// no longer.
    Nearby {
        /// Ready or not.
        ready: bool,
        /// Where the sender stands as it says so: fresher than its last pose through
        /// the server, so the receiver need not wait for that one to want it back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pose: Option<Pose>,
    },
    /// In a room on the SFU: the SFU now brings the sender our media. The mesh
    /// connection between us goes once each side has said so (make before break on
    /// both ends: it carries media both ways).
    SfuCarries,
}

impl PeerControl {
    /// The message as a signaling payload.
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing two booleans and a tag cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Our own video as we capture it (the self-view): the one entity with this marker
/// has a [`VideoFeed`] fed by our send path while a call runs.
#[derive(Component, Debug)]
pub struct SelfView;

/// A participant's (or our own) live video: the channel decoded frames arrive on and
/// the image they are written into.
#[derive(Component, Debug)]
pub struct VideoFeed {
    frames: FrameReceiver,
    /// The image showing the newest frame, once one arrived. An app that renders hands
    /// its pixels to the render world, so read the picture's size from [`Self::size`].
    pub image: Option<Handle<Image>>,
    /// The size of the newest frame, once one arrived.
    pub size: Option<UVec2>,
    /// Frames written into the image so far.
    pub frames_shown: u64,
    /// The stamp of the frame now shown (synthetic senders stamp their frames).
    pub stamp: Option<Stamp>,
    /// When the newest frame was shown.
    shown_at: Option<bevy::platform::time::Instant>,
    /// The longest time between two frames shown, since the first (over connection
    /// changes too: a switch from the mesh to the SFU shows here).
    pub longest_gap: std::time::Duration,
}

impl VideoFeed {
    fn new(frames: FrameReceiver) -> Self {
        Self {
            frames,
            image: None,
            size: None,
            frames_shown: 0,
            stamp: None,
            shown_at: None,
            longest_gap: std::time::Duration::ZERO,
        }
    }
}

/// Everyone seen in the current (or last) call and their latest receive figures; kept
/// after they leave, cleared when the next call starts. Bots write it out at exit. A
/// connection that brought nothing does not replace the figures of one that did: when
/// a peer leaves, its connection can close before its goodbye arrives, and the fresh
/// connection offered meanwhile would otherwise stand as what the call received.
#[derive(Resource, Debug, Default, Clone)]
pub struct CallReport {
    /// Per peer: name and latest figures (default until the first measurement).
    pub peers: std::collections::BTreeMap<PeerId, (DisplayName, CallStats)>,
    /// Peer connections we hold now (in the lobby, those near).
    pub media_connections: usize,
    /// The most we held at once.
    pub most_media_connections: usize,
    /// Whether our camera goes out through the SFU now.
    pub via_sfu: bool,
    /// Over how many connections our camera goes out now.
    pub upstreams: usize,
}

/// What our send path has done; `video_encoders` shows that one encoder serves all.
#[derive(Resource, Debug, Clone, Deref)]
pub struct SendStats(pub Arc<SendCounters>);

/// The playback mixer of the call: the receive path feeds it, the speaker plays it,
/// spatial audio sets its gains (one voice per participant, named by peer id).
#[derive(Resource, Debug, Clone, Deref)]
pub struct AudioMix(pub Arc<Mixer>);

/// How loud a participant sounded over the last 50 ms: RMS, 0 to 1. Drives the
/// speaking ring on their panel.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq)]
pub struct SpeakingLevel(pub f32);

/// How loud we ourselves sounded over the last 60 ms (RMS, 0 to 1; 0 while muted).
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq)]
pub struct OwnSpeakingLevel(pub f32);

/// How loud our microphone hears us while we are muted (RMS, 0 to 1; 0 while not
/// muted): what the "you are muted" reminder listens to.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq)]
pub struct MutedSpeakingLevel(pub f32);

/// The parts of our microphone's voice processing that run now (as
/// [`CallCommand::SetVoiceProcessing`] last set them).
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq, Deref)]
pub struct OwnVoiceProcessing(pub VoiceProcessing);

/// How loud the listener wants each person and everyone together (0 to 1; people not
/// named here play at 1). Each target applies it to its playback.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct Volumes {
    /// Every voice together.
    pub master: f32,
    /// One person's voice, on top of the master volume.
    pub people: HashMap<PeerId, f32>,
}

impl Default for Volumes {
    fn default() -> Self {
        Self {
            master: 1.0,
            people: HashMap::new(),
        }
    }
}

impl Volumes {
    /// `peer`'s own volume (1 unless set).
    pub fn of(&self, peer: &PeerId) -> f32 {
        self.people.get(peer).copied().unwrap_or(1.0)
    }
}

/// What happened, for the UI's toasts and for bots.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum CallNotice {
    /// We entered a room.
    Joined(RoomId),
    /// Someone came in.
    PeerJoined(DisplayName),
    /// Someone left.
    PeerLeft(DisplayName),
    /// In the lobby, someone came within earshot (`near`: media with them opens) or
    /// went out of it.
    Nearby {
        /// Who.
        peer_id: PeerId,
        /// How far, in metres, when they crossed.
        distance_m: f32,
        /// Whether they are near now.
        near: bool,
    },
    /// The call ended.
    Left,
    /// The connection to the signaling server dropped (why); reconnecting, the call
    /// goes on.
    Reconnecting(String),
    /// The connection to the signaling server is back.
    Reconnected,
    /// Someone (by name, when known) took the room's wall over: our share stopped.
    ShareTakenOver(Option<DisplayName>),
    /// Something failed.
    Failed(CallError),
}

/// The ECS end of the async edge.
#[derive(Resource)]
pub struct CallLink {
    commands: mpsc::UnboundedSender<CallCommand>,
    events: crossbeam_channel::Receiver<CallEvent>,
}

/// Runs calls: adds [`CallState`], the messages, and the systems that bridge to the
/// driver task on the app's [`AsyncRuntime`] (made here if the app has none yet).
pub struct CallPlugin {
    config: ClientConfig,
}

impl CallPlugin {
    /// A call plugin that signals through `config.signal`.
    pub fn new(config: ClientConfig) -> Self {
        Self { config }
    }
}

impl Plugin for CallPlugin {
    fn build(&self, app: &mut App) {
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = crossbeam_channel::unbounded();
        let counters = Arc::new(SendCounters::default());
        let mixer = Arc::new(Mixer::new());
        let (preview_tx, preview_rx) = frame_channel();
        #[cfg(not(target_arch = "wasm32"))]
        {
            if !app.world().contains_resource::<AsyncRuntime>() {
                let runtime = AsyncRuntime::new().expect("cannot start the network runtime");
                app.insert_resource(runtime);
            }
            app.world()
                .resource::<AsyncRuntime>()
                .handle()
                .spawn(driver::run(
                    self.config.clone(),
                    counters.clone(),
                    mixer.clone(),
                    preview_tx,
                    command_rx,
                    event_tx,
                ));
        }
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_futures::spawn_local(web::run(
            self.config.clone(),
            preview_tx,
            command_rx,
            event_tx,
        ));
        app.world_mut()
            .spawn((SelfView, VideoFeed::new(preview_rx)));
        app.insert_resource(CallLink {
            commands: command_tx,
            events: event_rx,
        })
        .insert_resource(self.config.clone())
        .insert_resource(SendStats(counters))
        .insert_resource(AudioMix(mixer))
        .init_resource::<OwnSpeakingLevel>()
        .init_resource::<MutedSpeakingLevel>()
        .insert_resource(OwnVoiceProcessing(self.config.media.voice_processing))
        .init_resource::<Volumes>()
        .init_resource::<CallState>()
        .init_resource::<OwnMediaState>()
        .init_resource::<OwnScreen>()
        .init_resource::<ShareQuestion>()
        .init_resource::<OwnHand>()
        .init_resource::<CallReport>()
        .init_resource::<ChatLog>()
        .init_resource::<PublicRooms>()
        .init_resource::<SpacePeople>()
        .init_resource::<AvailableDevices>()
        .add_message::<CallCommand>()
        .add_message::<CallNotice>()
        .configure_sets(
            PreUpdate,
            (
                CallSystems::Commands,
                CallSystems::Events,
                CallSystems::Upload,
            )
                .chain(),
        )
        .add_systems(
            PreUpdate,
            (
                forward_call_commands.in_set(CallSystems::Commands),
                (
                    apply_call_events,
                    measure_speaking,
                    report_lost_devices,
                    apply_volumes,
                )
                    .chain()
                    .in_set(CallSystems::Events),
                show_newest_frames.in_set(CallSystems::Upload),
            ),
        );
    }
}

/// The call's systems, in the order they run each frame (in `PreUpdate`, so the
/// space and the overlay see this frame's call in `Update`).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallSystems {
    /// The app's [`CallCommand`]s go to the driver.
    Commands,
    /// The driver's [`CallEvent`]s become participants, states and notices; levels
    /// are measured and lost devices reported.
    Events,
    /// The newest decoded frames are written into the participants' images.
    Upload,
}

/// Sends commands that fit the current state to the driver and moves the state on.
pub fn forward_call_commands(
    mut commands: MessageReader<CallCommand>,
    mut state: ResMut<CallState>,
    mut media: ResMut<OwnMediaState>,
    mut voice: ResMut<OwnVoiceProcessing>,
    mut hand: ResMut<OwnHand>,
    link: Res<CallLink>,
    mut notices: MessageWriter<CallNotice>,
) {
    for command in commands.read() {
        let next = match (command, &*state) {
            (CallCommand::SetMicrophone(on), _) => {
                media.audio = *on;
                state.clone()
            }
            (CallCommand::SetCamera(on), _) => {
                media.video = *on;
                state.clone()
            }
            (CallCommand::SetVoiceProcessing(parts), _) => {
                voice.0 = *parts;
                state.clone()
            }
            (CallCommand::RaiseHand(raised), _) => {
                hand.0 = *raised;
                state.clone()
            }
            (
                CallCommand::ListRooms
                | CallCommand::SetPose(_)
                | CallCommand::ShowSizes(_)
                | CallCommand::SendChat { .. }
                | CallCommand::ListDevices
                | CallCommand::SwitchVideo(_)
                | CallCommand::SwitchMicrophone(_)
                | CallCommand::SwitchSpeaker(_)
                | CallCommand::ShareScreen(_)
                | CallCommand::TakeOverScreen,
                _,
            ) => state.clone(),
            // From the lobby too: the room steps out of it first.
            (CallCommand::CreateRoom { .. } | CallCommand::JoinRoom { .. }, current)
                if *current == CallState::Idle || current.in_lobby() =>
            {
                CallState::Joining
            }
            (CallCommand::CreateRoom { .. } | CallCommand::JoinRoom { .. }, _) => {
                notices.write(CallNotice::Failed(CallError::AlreadyInCall));
                continue;
            }
            (CallCommand::Leave, CallState::Joining | CallState::InCall { .. }) => {
                CallState::Leaving
            }
            (CallCommand::Leave, CallState::Idle | CallState::Leaving) => continue,
        };
        if link.commands.send(command.clone()).is_err() {
            error!("the call driver has stopped; commands are lost");
            continue;
        }
        // Only a real change counts as one (the space follows the state's changes).
        state.set_if_neq(next);
    }
}

/// The source failures [`report_lost_devices`] has told the user of so far.
#[derive(Default)]
pub struct ToldFailures {
    video: u64,
    audio: u64,
}

/// Tells the user when a capture device is lost mid-call, and the call goes on. The
/// video source (a camera unplugged, a file removed): the send path sends the
/// placeholder instead. The microphone: we are muted, so that the others see why they
/// hear nothing, and another microphone can be picked.
pub fn report_lost_devices(
    send: Res<SendStats>,
    mut told: Local<ToldFailures>,
    mut commands: MessageWriter<CallCommand>,
    mut notices: MessageWriter<CallNotice>,
) {
    let video = send
        .video_source_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    if video > told.video {
        told.video = video;
        notices.write(CallNotice::Failed(CallError::Device(
            "your camera or video file stopped; others see your name instead".to_owned(),
        )));
    }
    let audio = send
        .audio_source_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    if audio > told.audio {
        told.audio = audio;
        commands.write(CallCommand::SetMicrophone(false));
        notices.write(CallNotice::Failed(CallError::Device(
            "your microphone stopped; you are muted (pick another under Devices)".to_owned(),
        )));
    }
}

/// Reads everyone's level over the last 50 ms into [`SpeakingLevel`]s: ours from the
/// send path, theirs from the mixer.
#[cfg(not(target_arch = "wasm32"))]
pub fn measure_speaking(
    mix: Res<AudioMix>,
    send: Res<SendStats>,
    mut own: ResMut<OwnSpeakingLevel>,
    mut muted: ResMut<MutedSpeakingLevel>,
    mut participants: Query<(&Participant, &mut SpeakingLevel)>,
) {
    own.set_if_neq(OwnSpeakingLevel(send.own_level()));
    muted.set_if_neq(MutedSpeakingLevel(send.muted_level()));
    for (participant, mut level) in &mut participants {
        level.set_if_neq(SpeakingLevel(mix.level(participant.peer_id.as_str())));
    }
}

/// Reads everyone's level over the last 50 ms into [`SpeakingLevel`]s, from the page's
/// analysers (the browser plays and sends the audio itself). Ours is measured on a
/// clone of the microphone's track, which muting leaves on: it goes to
/// [`OwnSpeakingLevel`] while we are heard, to [`MutedSpeakingLevel`] while we are muted.
#[cfg(target_arch = "wasm32")]
pub fn measure_speaking(
    own_media: Res<OwnMediaState>,
    mut own: ResMut<OwnSpeakingLevel>,
    mut muted: ResMut<MutedSpeakingLevel>,
    mut participants: Query<(&Participant, &mut SpeakingLevel)>,
) {
    use crate::media::web::{own_level, voice_level};
    let level = own_level();
    let (heard, unheard) = if own_media.audio {
        (level, 0.0)
    } else {
        (0.0, level)
    };
    own.set_if_neq(OwnSpeakingLevel(heard));
    muted.set_if_neq(MutedSpeakingLevel(unheard));
    for (participant, mut level) in &mut participants {
        level.set_if_neq(SpeakingLevel(voice_level(&participant.peer_id)));
    }
}

/// Gives the mixer the listener's [`Volumes`] (every frame: a voice that came back
/// after a reconnection gets its volume again).
#[cfg(not(target_arch = "wasm32"))]
pub fn apply_volumes(volumes: Res<Volumes>, mix: Res<AudioMix>, participants: Query<&Participant>) {
    mix.set_master_volume(volumes.master);
    for participant in &participants {
        mix.set_volume(
            participant.peer_id.as_str(),
            volumes.of(&participant.peer_id),
        );
    }
}

/// Gives the page's gain nodes the listener's [`Volumes`]: one per voice, and the
/// master one all voices go through (every frame: a voice that came back after a
/// reconnection gets its volume again).
#[cfg(target_arch = "wasm32")]
pub fn apply_volumes(volumes: Res<Volumes>, participants: Query<&Participant>) {
    use crate::media::web::{set_master_volume, set_voice_volume};
    set_master_volume(volumes.master);
    for participant in &participants {
        set_voice_volume(&participant.peer_id, volumes.of(&participant.peer_id));
    }
}

/// What [`apply_call_events`] keeps up to date besides the call state and the
/// participants: resources, and the screens people share.
#[derive(SystemParam)]
pub struct CallRecords<'w, 's> {
    report: ResMut<'w, CallReport>,
    public_rooms: ResMut<'w, PublicRooms>,
    space: ResMut<'w, SpacePeople>,
    devices: ResMut<'w, AvailableDevices>,
    own_media: ResMut<'w, OwnMediaState>,
    own_screen: ResMut<'w, OwnScreen>,
    share_question: ResMut<'w, ShareQuestion>,
    chat: ResMut<'w, ChatLog>,
    screens: Query<'w, 's, (Entity, &'static SharedScreen)>,
}

/// Drains the driver's events and applies them: state, participants, notices.
///
/// `roster` maps peer ids to their entities at once, so a peer that joins and leaves
/// within one frame (before the spawn is applied) is still despawned.
pub fn apply_call_events(
    link: Res<CallLink>,
    mut state: ResMut<CallState>,
    mut roster: Local<HashMap<PeerId, (Entity, DisplayName)>>,
    mut records: CallRecords,
    mut tracks: Query<&mut PoseTrack>,
    mut commands: Commands,
    mut notices: MessageWriter<CallNotice>,
) {
    for event in link.events.try_iter() {
        match event {
            CallEvent::Joined {
                room,
                self_id,
                peers,
            } => {
                despawn_all(&mut roster, &mut commands);
                *records.report = CallReport::default();
                for peer in peers {
                    record(&mut records.report, &peer.info);
                    spawn_participant(&mut roster, &mut commands, peer);
                }
                notices.write(CallNotice::Joined(room.clone()));
                *state = CallState::InCall { room, self_id };
            }
            CallEvent::PeerJoined(peer) => {
                notices.write(CallNotice::PeerJoined(peer.info.name.clone()));
                record(&mut records.report, &peer.info);
                spawn_participant(&mut roster, &mut commands, peer);
            }
            CallEvent::PeerState(peer_id, connection) => {
                if let Some((entity, _)) = roster.get(&peer_id) {
                    commands.entity(*entity).insert(ConnectionState(connection));
                }
            }
            CallEvent::PeerStats(peer_id, stats) => {
                records.report.take_figures(&peer_id, &stats);
                if let Some((entity, _)) = roster.get(&peer_id) {
                    commands.entity(*entity).insert(*stats);
                }
            }
            CallEvent::RoomList(rooms) => records.public_rooms.0 = rooms,
            CallEvent::Space(news) => records.space.apply(news),
            CallEvent::Devices(devices) => *records.devices = devices,
            CallEvent::OwnMedia(media) => records.own_media.0 = media,
            CallEvent::OwnScreen(target) => {
                if target.is_some() {
                    records.share_question.0 = None;
                }
                records.own_screen.0 = target;
            }
            CallEvent::ShareRefused(sharers) => records.share_question.0 = Some(sharers),
            CallEvent::ShareTakenOver(by) => {
                notices.write(CallNotice::ShareTakenOver(by));
            }
            CallEvent::PeerScreen(peer_id, video) => {
                for (entity, screen) in &records.screens {
                    if screen.peer_id == peer_id {
                        // Gone already when its participant left in the same frame.
                        commands.entity(entity).try_despawn();
                    }
                }
                if let (Some(video), Some((entity, _))) = (video, roster.get(&peer_id)) {
                    commands.spawn((
                        SharedScreen { peer_id },
                        VideoFeed::new(video),
                        ChildOf(*entity),
                    ));
                }
            }
            CallEvent::PeerMedia(peer_id, media) => {
                if let Some((entity, _)) = roster.get(&peer_id) {
                    commands.entity(*entity).insert(media);
                }
            }
            CallEvent::PeerPose(peer_id, pose) => {
                if let Some((entity, _)) = roster.get(&peer_id)
                    && let Ok(mut track) = tracks.get_mut(*entity)
                {
                    track.push(pose, bevy::platform::time::Instant::now());
                }
            }
            CallEvent::PeerHand(peer_id, raised) => {
                if let Some((entity, _)) = roster.get(&peer_id) {
                    commands.entity(*entity).insert(HandRaised(raised));
                }
            }
            CallEvent::Chat(line) => records.chat.push(line),
            CallEvent::MediaConnections(count) => {
                let report = &mut records.report;
                report.media_connections = count;
                report.most_media_connections = report.most_media_connections.max(count);
            }
            CallEvent::Upstreams { via_sfu, count } => {
                records.report.via_sfu = via_sfu;
                records.report.upstreams = count;
            }
            CallEvent::Nearby {
                peer,
                distance_m,
                near,
            } => {
                notices.write(CallNotice::Nearby {
                    peer_id: peer,
                    distance_m,
                    near,
                });
            }
            CallEvent::PeerLeft(peer_id) => {
                if let Some((entity, name)) = roster.remove(&peer_id) {
                    commands.entity(entity).despawn();
                    notices.write(CallNotice::PeerLeft(name));
                }
            }
            CallEvent::Left => {
                despawn_all(&mut roster, &mut commands);
                records.space.clear();
                records.share_question.0 = None;
                notices.write(CallNotice::Left);
                *state = CallState::Idle;
            }
            CallEvent::Reconnecting(reason) => {
                notices.write(CallNotice::Reconnecting(reason));
            }
            CallEvent::Reconnected => {
                notices.write(CallNotice::Reconnected);
            }
            CallEvent::Failed(error) => {
                notices.write(CallNotice::Failed(error));
            }
        }
    }
}

impl CallReport {
    /// Keeps `stats` as the figures of `peer_id` (one we recorded), unless they brought
    /// nothing and the kept ones did.
    fn take_figures(&mut self, peer_id: &PeerId, stats: &CallStats) {
        if let Some((_, kept)) = self.peers.get_mut(peer_id)
            && (stats.received_any() || !kept.received_any())
        {
            kept.clone_from(stats);
        }
    }
}

fn record(report: &mut CallReport, peer: &PeerInfo) {
    report
        .peers
        .entry(peer.peer_id.clone())
        .or_insert_with(|| (peer.name.clone(), CallStats::default()));
}

fn spawn_participant(
    roster: &mut HashMap<PeerId, (Entity, DisplayName)>,
    commands: &mut Commands,
    peer: JoiningPeer,
) {
    let PeerInfo {
        peer_id,
        name,
        pose,
        hand_raised,
        // Their screen shows when its track arrives.
        sharing: _,
    } = peer.info;
    let entity = commands
        .spawn((
            Participant {
                peer_id: peer_id.clone(),
                name: name.clone(),
            },
            VideoFeed::new(peer.video),
            PoseTrack::new(pose, bevy::platform::time::Instant::now()),
            HandRaised(hand_raised),
        ))
        .id();
    if let Some((stale, _)) = roster.insert(peer_id, (entity, name)) {
        commands.entity(stale).despawn();
    }
}

fn despawn_all(roster: &mut HashMap<PeerId, (Entity, DisplayName)>, commands: &mut Commands) {
    for (_, (entity, _)) in roster.drain() {
        commands.entity(entity).despawn();
    }
}

/// Time spent in [`show_newest_frames`] since the resource was last reset; measured
/// only while this resource exists (`--frame-stats` inserts it).
#[derive(Resource, Debug, Clone, Copy, Default)]
pub struct VideoCopyTiming {
    /// Time spent putting frames into images.
    pub spent: std::time::Duration,
    /// Frames put into images.
    pub frames: u64,
}

/// Puts each participant's newest decoded frame into its image: the decoded pixels are
/// moved, not copied, and the image is kept in the render world only
/// ([`bevy::asset::RenderAssetUsages::RENDER_WORLD`]), so Bevy moves them on to it instead of
/// cloning them there (with many people that clone was a tenth of a software-rendered
/// frame). The render world writes them into the same texture while the size stays.
pub fn show_newest_frames(
    mut feeds: Query<&mut VideoFeed>,
    mut images: ResMut<Assets<Image>>,
    timing: Option<ResMut<VideoCopyTiming>>,
) {
    let started = timing
        .as_ref()
        .map(|_| bevy::platform::time::Instant::now());
    let mut copied = 0;
    for mut feed in &mut feeds {
        let Some(frame) = feed.frames.try_iter().last() else {
            continue;
        };
        feed.frames_shown += 1;
        let now = bevy::platform::time::Instant::now();
        if let Some(before) = feed.shown_at.replace(now) {
            feed.longest_gap = feed.longest_gap.max(now.saturating_duration_since(before));
        }
        feed.stamp = frame.stamp;
        feed.size = Some(UVec2::new(frame.width, frame.height));
        let image = rgba_image(frame.width, frame.height, frame.rgba);
        match &feed.image {
            Some(handle) => {
                if let Err(error) = images.insert(handle, image) {
                    warn!("a video frame was not shown: {error}");
                }
            }
            None => feed.image = Some(images.add(image)),
        }
        copied += 1;
    }
    if let (Some(mut timing), Some(started)) = (timing, started) {
        timing.spent += started.elapsed();
        timing.frames += copied;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_brought_nothing_does_not_replace_the_figures_of_one_that_did() {
        let peer = PeerId::parse("abcdefghij").expect("a peer id");
        let mut report = CallReport::default();
        record(
            &mut report,
            &PeerInfo::new(peer.clone(), DisplayName::parse("Host").expect("a name")),
        );
        let first = CallStats {
            frames_decoded: 300,
            packets_received: 900,
            ..CallStats::default()
        };
        report.take_figures(&peer, &first);
        assert_eq!(report.peers[&peer].1.frames_decoded, 300);
        // The fresh connection offered as the peer left: nothing came on it.
        report.take_figures(&peer, &CallStats::default());
        assert_eq!(report.peers[&peer].1.frames_decoded, 300);
        // One that brings something stands again.
        let next = CallStats {
            frames_decoded: 12,
            audio_packets: 40,
            ..CallStats::default()
        };
        report.take_figures(&peer, &next);
        assert_eq!(report.peers[&peer].1.frames_decoded, 12);
    }
}
