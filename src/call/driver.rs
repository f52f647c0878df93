//! The call driver: the async task that owns the signaling connection and the media of
//! the current call. It turns [`CallCommand`]s into protocol messages, server messages
//! into peer connections and [`CallEvent`]s, and tears everything down when the call
//! ends. One encoder set and fresh peer connections per call.
//!
//! A call outlives its signaling connection: when that drops, the driver reconnects
//! with backoff and takes its place in the room back (`resume`, docs/signaling.md)
//! while media keeps flowing peer to peer. A peer connection that fails while both
//! sides are in the room is replaced by a fresh one (its offerer offers again); one
//! that does not recover within [`PEER_RECONNECT_LIMIT`] is dropped.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::Deserialize;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::link::Link;
use super::peer::{Echo, Outbound, PeerContext, PeerStateChange, RemotePeer};
use super::{
    AvailableDevices, CallCommand, CallError, CallEvent, JoiningPeer, MediaState, PeerControl,
};
use crate::config::ClientConfig;
use crate::media::camera::camera_names;
use crate::media::{
    DeviceChoice, DeviceError, Direction, FrameReceiver, FrameSender, LocalSender, MediaSink,
    Mixer, SendCounters, SendSettings, Speaker, audio_devices, frame_channel,
};
use crate::rtc::native::LocalMedia;
use crate::rtc::turn_check::check_turn_servers;
use crate::rtc::{IceTransportPolicy, PeerConnectionState, Role, RtcConfig, SignalPayload};
use crate::signaling::protocol::{
    ClientMessage, DisplayName, ErrorCode, PeerId, PeerInfo, ResumeToken, RoomId, ServerMessage,
};
use crate::signaling::{self, LinkEvent, SignalingLink};

/// How often receive statistics go to the ECS (and deadlines are checked).
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How long listing the public rooms may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long closing one peer connection may take when the call ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a peer whose connection failed may take to connect again before it is
/// dropped from the call.
pub const PEER_RECONNECT_LIMIT: Duration = Duration::from_secs(10);
/// How long the signaling connection may stay lost before the call ends.
pub const RESUME_LIMIT: Duration = Duration::from_secs(60);
/// Signaling messages kept for sending while the connection is down (the oldest go).
const MAX_QUEUED_SIGNALS: usize = 1024;

/// Runs until the ECS side drops its command sender.
pub(super) async fn run(
    config: ClientConfig,
    counters: Arc<SendCounters>,
    mixer: Arc<Mixer>,
    preview: FrameSender,
    mut commands: mpsc::UnboundedReceiver<CallCommand>,
    events: Sender<CallEvent>,
) {
    let (states_tx, mut states) = mpsc::unbounded_channel();
    let (signal_tx, mut signals) = mpsc::unbounded_channel();
    let mut driver = Driver {
        rtc: RtcConfig {
            ice_servers: config.ice_servers.clone(),
            ice_transport_policy: config.ice_transport_policy,
            ..RtcConfig::default()
        },
        config,
        counters,
        mixer,
        preview,
        events,
        states_tx,
        signal_tx,
        queued: VecDeque::new(),
        media_state: MediaState::default(),
        link: None,
        reconnect: None,
        asked_title: None,
        place: None,
        call: None,
        next_epoch: 0,
    };
    let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => driver.on_command(command).await,
                None => break,
            },
            Some(event) = next_link_event(&mut driver.link) => driver.on_link_event(event).await,
            link = next_reconnection(&mut driver.reconnect) => driver.on_reconnected(link),
            Some(change) = states.recv() => driver.on_peer_state(change).await,
            Some(message) = signals.recv() => driver.send_signal(message),
            _ = stats_tick.tick() => {
                driver.publish_stats();
                driver.enforce_deadlines().await;
            }
        }
    }
    driver.end_call().await;
}

async fn next_link_event(link: &mut Option<Link>) -> Option<LinkEvent> {
    match link {
        Some(link) => link.signaling.incoming.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_reconnection(reconnect: &mut Option<Reconnect>) -> SignalingLink {
    match reconnect {
        Some(reconnect) => (&mut reconnect.attempt).await,
        None => std::future::pending().await,
    }
}

/// Getting the signaling connection back after it dropped during a call.
struct Reconnect {
    /// When it dropped.
    since: Instant,
    /// Connects with backoff; yields the new connection.
    attempt: Pin<Box<dyn Future<Output = SignalingLink> + Send>>,
}

/// Our place in a room: what `resume` needs to take it back.
struct Place {
    room: RoomId,
    self_id: PeerId,
    resume_token: ResumeToken,
    public_title: Option<DisplayName>,
}

/// One remote peer of the call and the connection to it now.
struct PeerSlot {
    remote: RemotePeer,
    /// Which of the successive connections to this peer `remote` is.
    epoch: u64,
    /// Our side of that connection's offer/answer.
    role: Role,
    /// Where the peer's decoded video goes (its panel keeps the receiving end).
    frames: FrameSender,
    /// The connection's state as last reported.
    state: PeerConnectionState,
    /// Whether signaling says the peer's own connection to the server dropped.
    away: bool,
    /// When the connection failed, until it connects again.
    failed_at: Option<Instant>,
    /// Whether the remote's offer or answer has been applied.
    described: bool,
    /// Whether any connection to this peer ever connected (a peer never reached
    /// means no route between us).
    ever_connected: bool,
}

/// The media side of the call in progress: our encoders, the speaker, and one
/// connection per peer.
struct ActiveCall {
    local: LocalMedia,
    outbound: Outbound,
    /// Plays the mixer while the call lasts (`None`: no speaker).
    speaker: Option<Speaker>,
    peers: HashMap<PeerId, PeerSlot>,
    /// Peers we offered to ahead of their arrival ([`LinkEvent::OfferAhead`]), with the
    /// channel their video will arrive on once they are announced.
    awaited: HashMap<PeerId, FrameReceiver>,
    /// The names of the peers, for messages about them.
    names: HashMap<PeerId, DisplayName>,
}

impl ActiveCall {
    fn sender(&self) -> Option<&LocalSender> {
        match &self.outbound {
            Outbound::Encoded(sender) => Some(sender),
            Outbound::Echo(_) => None,
        }
    }
}

/// Hands encoded frames from the encoder threads to every peer connection.
struct FanOut {
    local: LocalMedia,
    runtime: Handle,
}

impl MediaSink for FanOut {
    fn send_video(&self, frame: &[u8], duration: Duration) {
        if let Err(error) = self
            .runtime
            .block_on(self.local.write_video(frame, duration))
        {
            tracing::debug!(%error, "a video frame was not sent");
        }
    }

    fn send_audio(&self, packet: &[u8], duration: Duration) {
        if let Err(error) = self
            .runtime
            .block_on(self.local.write_audio(packet, duration))
        {
            tracing::debug!(%error, "an audio packet was not sent");
        }
    }
}

struct Driver {
    config: ClientConfig,
    rtc: RtcConfig,
    counters: Arc<SendCounters>,
    /// The others' voices, for the speaker and the speaking indicator.
    mixer: Arc<Mixer>,
    /// Where our own captured frames go (the self-view).
    preview: FrameSender,
    events: Sender<CallEvent>,
    /// Where peer connections report their state.
    states_tx: mpsc::UnboundedSender<PeerStateChange>,
    /// Where peer connections put what they send through signaling: it outlives any
    /// one signaling connection.
    signal_tx: mpsc::UnboundedSender<ClientMessage>,
    /// Signaling messages waiting for the connection to come back.
    queued: VecDeque<ClientMessage>,
    /// Our microphone and camera switches; they outlast calls.
    media_state: MediaState,
    link: Option<Link>,
    /// Set while the signaling connection of a call is being restored.
    reconnect: Option<Reconnect>,
    /// The lobby title asked for with the room being created.
    asked_title: Option<DisplayName>,
    /// Our place in the room, once welcomed.
    place: Option<Place>,
    call: Option<ActiveCall>,
    /// The epoch the next peer connection gets.
    next_epoch: u64,
}

impl Driver {
    fn emit(&self, event: CallEvent) {
        let _ = self.events.send(event);
    }

    /// Whether the server has us in the room over a live connection.
    fn signaling_up(&self) -> bool {
        self.link.as_ref().is_some_and(|link| link.welcomed)
    }

    async fn on_command(&mut self, command: CallCommand) {
        let passcode = self.config.passcode.clone();
        let request = match command {
            CallCommand::CreateRoom { name, public_title } => {
                self.asked_title.clone_from(&public_title);
                self.config.name = name.clone();
                ClientMessage::CreateRoom {
                    name,
                    public_title,
                    passcode,
                }
            }
            CallCommand::ListRooms => {
                self.list_rooms();
                return;
            }
            CallCommand::JoinRoom { room, name } => {
                self.asked_title = None;
                self.config.name = name.clone();
                ClientMessage::JoinRoom {
                    room,
                    name,
                    passcode,
                }
            }
            CallCommand::Leave => {
                let link = self.link.take();
                self.finish_call().await;
                if let Some(link) = link {
                    let _ = link.signaling.outgoing.send(ClientMessage::Leave);
                }
                return;
            }
            CallCommand::SetMicrophone(on) => {
                self.media_state.audio = on;
                if let Some(sender) = self.call.as_ref().and_then(ActiveCall::sender) {
                    sender.set_audio_enabled(on);
                }
                self.announce_media_state();
                return;
            }
            CallCommand::SwitchVideo(input) => {
                let mut media = self.config.media.clone();
                media.video_input = input;
                self.switch_source(media, "the video source", LocalSender::switch_video);
                return;
            }
            CallCommand::SwitchMicrophone(input) => {
                let mut media = self.config.media.clone();
                media.audio_input = input;
                self.switch_source(media, "the microphone", LocalSender::switch_audio);
                return;
            }
            CallCommand::SwitchSpeaker(choice) => {
                self.switch_speaker(choice);
                return;
            }
            CallCommand::ListDevices => {
                let events = self.events.clone();
                // Asking the sound and camera layers can take a while: off the runtime.
                tokio::task::spawn_blocking(move || {
                    let _ = events.send(CallEvent::Devices(AvailableDevices {
                        cameras: camera_names(),
                        microphones: audio_devices(Direction::Input),
                        speakers: audio_devices(Direction::Output),
                    }));
                });
                return;
            }
            CallCommand::SetCamera(on) => {
                self.media_state.video = on;
                if let Some(sender) = self.call.as_ref().and_then(ActiveCall::sender) {
                    sender.set_video_enabled(on);
                }
                self.announce_media_state();
                return;
            }
        };
        if self.link.is_some() || self.call.is_some() {
            // The ECS state machine only forwards create/join when idle.
            self.emit(CallEvent::Failed(CallError::AlreadyInCall));
            return;
        }
        self.link = Link::open(&self.config, request, &self.events).await;
    }

    async fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Message(ServerMessage::Welcome {
                room,
                peer_id,
                peers,
                resume_token,
                ice_servers,
            }) => {
                if let Some(link) = &mut self.link {
                    link.welcomed = true;
                }
                // The server's TURN credentials (fresh ones on every resume), unless the
                // command line named ICE servers of its own.
                if self.config.ice_servers.is_empty() {
                    self.rtc.ice_servers = ice_servers;
                }
                let resumed = self.call.is_some();
                self.place = Some(Place {
                    room: room.clone(),
                    self_id: peer_id.clone(),
                    resume_token,
                    public_title: self
                        .place
                        .take()
                        .map_or_else(|| self.asked_title.clone(), |place| place.public_title),
                });
                if resumed {
                    self.resumed(peers).await;
                } else {
                    self.start_call(room, peer_id, peers).await;
                }
            }
            LinkEvent::OfferAhead { peer } => self.offer_ahead(peer).await,
            LinkEvent::Message(ServerMessage::PeerJoined { peer }) => {
                let awaited = self
                    .call
                    .as_mut()
                    .and_then(|call| call.awaited.remove(&peer.peer_id));
                if let Some(video) = awaited {
                    // We offered already (Firestore's 1:1 flow); now they are here.
                    self.remember_name(&peer);
                    self.emit(CallEvent::PeerJoined(JoiningPeer { info: peer, video }));
                    return;
                }
                self.add_peer(peer, Role::Answerer).await;
            }
            LinkEvent::Message(ServerMessage::PeerLeft { peer_id }) => {
                self.remove_peer(&peer_id).await;
            }
            LinkEvent::Message(ServerMessage::PeerAway { peer_id }) => {
                // Away with no media path either (never connected, or failed): gone.
                // Connected or disconnected ("reconnecting"): ICE decides.
                let gone = self.peer_mut(&peer_id).is_some_and(|slot| {
                    slot.away = true;
                    !matches!(
                        slot.state,
                        PeerConnectionState::Connected | PeerConnectionState::Disconnected
                    )
                });
                if gone {
                    self.remove_peer(&peer_id).await;
                }
            }
            LinkEvent::Message(ServerMessage::PeerBack { peer }) => {
                match self.peer_mut(&peer.peer_id) {
                    Some(slot) => slot.away = false,
                    // New to us (we had dropped it): it offers, as a newcomer does.
                    None => self.add_peer(peer, Role::Answerer).await,
                }
            }
            LinkEvent::Message(ServerMessage::Signal { from, data }) => {
                self.on_signal(from, data).await;
            }
            LinkEvent::Message(ServerMessage::RoomList { rooms }) => {
                self.emit(CallEvent::RoomList(rooms));
            }
            LinkEvent::Message(ServerMessage::Error { code, message }) => {
                let welcomed = self.signaling_up();
                self.emit(CallEvent::Failed(CallError::Refused { code, message }));
                if !welcomed || code == ErrorCode::MessageTooLarge {
                    self.link = None;
                    self.finish_call().await;
                }
            }
            LinkEvent::Closed { reason } => {
                self.link = None;
                if self.place.is_some() && self.call.is_some() {
                    tracing::info!(%reason, "signaling lost; reconnecting");
                    if self.reconnect.is_none() {
                        self.emit(CallEvent::Reconnecting(reason));
                    }
                    self.start_reconnecting();
                } else {
                    self.emit(CallEvent::Failed(CallError::ConnectionLost(reason)));
                    self.finish_call().await;
                }
            }
        }
    }

    /// Starts (or, after a failed resume attempt, restarts) getting the signaling
    /// connection back; the call ends if that takes longer than [`RESUME_LIMIT`].
    fn start_reconnecting(&mut self) {
        let since = self
            .reconnect
            .as_ref()
            .map_or_else(Instant::now, |reconnect| reconnect.since);
        let url = self.config.signal.clone();
        let ca = self.config.signal_ca.clone();
        self.reconnect = Some(Reconnect {
            since,
            attempt: Box::pin(
                async move { signaling::reconnect::reconnect(&url, ca.as_deref()).await },
            ),
        });
    }

    /// A new signaling connection is open: ask for our place back.
    fn on_reconnected(&mut self, signaling: SignalingLink) {
        let Some(place) = &self.place else { return };
        let _ = signaling.outgoing.send(ClientMessage::Resume {
            room: place.room.clone(),
            peer_id: place.self_id.clone(),
            resume_token: place.resume_token.clone(),
            name: self.config.name.clone(),
            public_title: place.public_title.clone(),
            passcode: self.config.passcode.clone(),
        });
        self.link = Some(Link {
            signaling,
            welcomed: false,
        });
        // `reconnect` stays set (its `since` counts) until `welcome` arrives.
        if let Some(reconnect) = &mut self.reconnect {
            reconnect.attempt = Box::pin(std::future::pending());
        }
    }

    /// We have our place back. `peers` are those in the room now: we connect afresh
    /// (as the newcomer, offering) to each one we have no working connection with.
    /// Peers not listed may simply not have resumed yet (after a server restart):
    /// they count as away, and are dropped if their connection is not working.
    async fn resumed(&mut self, peers: Vec<PeerInfo>) {
        self.reconnect = None;
        self.emit(CallEvent::Reconnected);
        self.flush_queued();
        let listed: Vec<PeerId> = peers.iter().map(|p| p.peer_id.clone()).collect();
        for info in peers {
            let stale = match self.peer_mut(&info.peer_id) {
                Some(slot) => {
                    slot.away = false;
                    (slot.state != PeerConnectionState::Connected).then(|| slot.frames.clone())
                }
                None => {
                    self.add_peer(info, Role::Offerer).await;
                    continue;
                }
            };
            if let Some(frames) = stale {
                self.connect_peer(info.peer_id, Role::Offerer, frames).await;
            }
        }
        let unlisted: Vec<(PeerId, bool)> = self
            .call
            .iter()
            .flat_map(|call| &call.peers)
            .filter(|(peer_id, _)| !listed.contains(peer_id))
            .map(|(peer_id, slot)| {
                (
                    peer_id.clone(),
                    slot.state == PeerConnectionState::Connected,
                )
            })
            .collect();
        for (peer_id, working) in unlisted {
            if working {
                if let Some(slot) = self.peer_mut(&peer_id) {
                    slot.away = true;
                }
            } else {
                self.remove_peer(&peer_id).await;
            }
        }
    }

    /// Sends a signaling message now, or keeps it for when the connection is back.
    fn send_signal(&mut self, message: ClientMessage) {
        if let Some(link) = self.link.as_ref().filter(|link| link.welcomed)
            && link.signaling.outgoing.send(message.clone()).is_ok()
        {
            return;
        }
        if self.call.is_none() {
            return;
        }
        if self.queued.len() >= MAX_QUEUED_SIGNALS {
            self.queued.pop_front();
        }
        self.queued.push_back(message);
    }

    fn flush_queued(&mut self) {
        for message in std::mem::take(&mut self.queued) {
            self.send_signal(message);
        }
    }

    fn peer_mut(&mut self, peer_id: &PeerId) -> Option<&mut PeerSlot> {
        self.call.as_mut()?.peers.get_mut(peer_id)
    }

    /// A peer to show and connect to: the newcomer offers, the others answer.
    async fn add_peer(&mut self, info: PeerInfo, role: Role) {
        self.remember_name(&info);
        let (frames, video) = frame_channel();
        let peer_id = info.peer_id.clone();
        self.emit(CallEvent::PeerJoined(JoiningPeer { info, video }));
        self.connect_peer(peer_id, role, frames).await;
    }

    fn remember_name(&mut self, info: &PeerInfo) {
        if let Some(call) = &mut self.call {
            call.names.insert(info.peer_id.clone(), info.name.clone());
        }
    }

    /// The peer is gone from the call: close its connection and take its panel away.
    async fn remove_peer(&mut self, peer_id: &PeerId) {
        self.drop_peer(peer_id).await;
        self.emit(CallEvent::PeerLeft(peer_id.clone()));
    }

    /// We are in the room: start our encoders and offer to everyone already there (the
    /// newcomer offers; see docs/signaling.md).
    async fn start_call(&mut self, room: RoomId, self_id: PeerId, peers: Vec<PeerInfo>) {
        let started = LocalMedia::new()
            .map_err(|error| CallError::Media(error.to_string()))
            .and_then(|local| {
                if self.config.echo {
                    let echo = Outbound::Echo(Arc::new(Echo::new(local.clone())));
                    return Ok((local, echo));
                }
                let sink = Arc::new(FanOut {
                    local: local.clone(),
                    runtime: Handle::current(),
                });
                let sender = LocalSender::start(
                    &self.config.media,
                    self.config.name.as_str(),
                    sink,
                    self.counters.clone(),
                    Some(self.preview.clone()),
                )
                .map_err(|error| CallError::Media(error.to_string()))?;
                sender.set_audio_enabled(self.media_state.audio);
                sender.set_video_enabled(self.media_state.video);
                Ok((local, Outbound::Encoded(Arc::new(sender))))
            });
        let (local, outbound) = match started {
            Ok(started) => started,
            Err(error) => {
                self.emit(CallEvent::Failed(error));
                if let Some(link) = self.link.take() {
                    let _ = link.signaling.outgoing.send(ClientMessage::Leave);
                }
                self.finish_call().await;
                return;
            }
        };
        let (audio_problem, video_problem) = match &outbound {
            Outbound::Encoded(sender) => (
                sender.audio_problem().cloned(),
                sender.video_problem().cloned(),
            ),
            Outbound::Echo(_) => (None, None),
        };
        if let Some(problem) = video_problem {
            self.emit(CallEvent::Failed(CallError::Device(format!(
                "others see your name instead: {problem}"
            ))));
        }
        if let Some(problem) = audio_problem {
            // No microphone: we are muted, and everyone is told.
            self.media_state.audio = false;
            self.emit(CallEvent::OwnMedia(self.media_state));
            self.emit(CallEvent::Failed(CallError::Device(format!(
                "you are muted: {problem}"
            ))));
        }
        let speaker = self.open_speaker();
        self.call = Some(ActiveCall {
            local,
            outbound,
            speaker,
            peers: HashMap::new(),
            awaited: HashMap::new(),
            names: HashMap::new(),
        });
        self.check_turn_servers();
        let mut joining = Vec::new();
        let mut outputs = Vec::new();
        for info in peers {
            self.remember_name(&info);
            let (frames, video) = frame_channel();
            outputs.push((info.peer_id.clone(), frames));
            joining.push(JoiningPeer { info, video });
        }
        self.emit(CallEvent::Joined {
            room,
            self_id,
            peers: joining,
        });
        for (peer_id, frames) in outputs {
            self.connect_peer(peer_id, Role::Offerer, frames).await;
        }
    }

    /// Asks each TURN server for an allocation in the background, so that refused
    /// credentials or an unreachable server are reported instead of a call that never
    /// connects.
    fn check_turn_servers(&self) {
        if self.rtc.ice_servers.is_empty() {
            return;
        }
        let servers = self.rtc.ice_servers.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            for problem in check_turn_servers(&servers).await {
                tracing::warn!(%problem, "a TURN server cannot be used");
                let _ = events.send(CallEvent::Failed(CallError::Turn(problem)));
            }
        });
    }

    /// Sends from the sources `media` names from now on: `switch` swaps one of them in
    /// the running call (if any); on failure the user is told `what` stays as it was.
    fn switch_source(
        &mut self,
        media: SendSettings,
        what: &str,
        switch: fn(&LocalSender, &SendSettings) -> Result<(), DeviceError>,
    ) {
        let switched = match self.call.as_ref().and_then(ActiveCall::sender) {
            Some(sender) => switch(sender, &media),
            None => Ok(()),
        };
        match switched {
            Ok(()) => self.config.media = media,
            Err(problem) => self.emit(CallEvent::Failed(CallError::Device(format!(
                "{what} stays as it was: {problem}"
            )))),
        }
    }

    /// The speaker `config.speaker` names, playing the mixer; `None` (and the user is
    /// told) when it cannot be opened.
    fn open_speaker(&self) -> Option<Speaker> {
        let choice = self.config.speaker.as_ref()?;
        Speaker::open(choice, self.mixer.clone())
            .inspect_err(|problem| {
                self.emit(CallEvent::Failed(CallError::Device(format!(
                    "you cannot hear the others: {problem}"
                ))));
            })
            .ok()
    }

    /// Plays the others on `choice` from now on (`None`: nowhere); in a call, the old
    /// speaker closes before the new one opens.
    fn switch_speaker(&mut self, choice: Option<DeviceChoice>) {
        self.config.speaker = choice;
        let Some(call) = &mut self.call else { return };
        call.speaker = None;
        let speaker = self.open_speaker();
        if let Some(call) = &mut self.call {
            call.speaker = speaker;
        }
    }

    /// Offers to a peer that has not arrived yet; it is shown when it does.
    async fn offer_ahead(&mut self, peer_id: PeerId) {
        let Some(call) = &mut self.call else { return };
        let (frames, video) = frame_channel();
        call.awaited.insert(peer_id.clone(), video);
        self.connect_peer(peer_id, Role::Offerer, frames).await;
    }

    /// Opens a fresh connection to `peer_id`, replacing the one it has (whose failure
    /// time and presence carry over).
    async fn connect_peer(&mut self, peer_id: PeerId, role: Role, frames: FrameSender) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let Some(call) = &mut self.call else { return };
        let context = PeerContext {
            outgoing: self.signal_tx.clone(),
            events: self.events.clone(),
            states: self.states_tx.clone(),
            epoch,
            outbound: call.outbound.clone(),
            mixer: self.mixer.clone(),
            decode_video: self.config.decode_video,
        };
        let previous = call.peers.remove(&peer_id);
        let (away, failed_at, ever_connected) =
            previous.as_ref().map_or((false, None, false), |slot| {
                (slot.away, slot.failed_at, slot.ever_connected)
            });
        // A connection that replaces one that never connected goes through the TURN
        // relay only, on both sides (the offerer after the failure, the answerer when
        // the fresh offer comes). webrtc-rs 0.21 relays to one remote address per
        // allocation well, but ICE between two peers behind NATs that also offer their
        // host candidates fails (see docs/signaling.md, TURN credentials).
        let relay_only = previous.is_some() && !ever_connected && self.rtc.has_turn();
        if let Some(previous) = previous {
            previous.remote.retire();
        }
        let relayed;
        let rtc = if relay_only {
            tracing::info!(peer = %peer_id, "no path so far; connecting through the TURN relay only");
            relayed = RtcConfig {
                ice_transport_policy: IceTransportPolicy::Relay,
                ..self.rtc.clone()
            };
            &relayed
        } else {
            &self.rtc
        };
        let connected = RemotePeer::connect(
            peer_id.clone(),
            role,
            rtc,
            &call.local,
            frames.clone(),
            self.media_state,
            context,
        )
        .await;
        match connected {
            Ok(remote) => {
                call.peers.insert(
                    peer_id,
                    PeerSlot {
                        remote,
                        epoch,
                        role,
                        frames,
                        state: PeerConnectionState::New,
                        away,
                        failed_at,
                        described: false,
                        ever_connected,
                    },
                );
            }
            Err(error) => {
                tracing::warn!(peer = %peer_id, %error, "cannot connect to a peer");
                self.emit(CallEvent::Failed(error));
                self.emit(CallEvent::PeerLeft(peer_id));
            }
        }
    }

    async fn on_signal(&mut self, from: PeerId, data: serde_json::Value) {
        // Deserializing from a reference: an SDP payload is not copied to be tried.
        if let Ok(PeerControl::MediaState(state)) = PeerControl::deserialize(&data) {
            self.emit(CallEvent::PeerMedia(from, state));
            return;
        }
        let payload = match serde_json::from_value::<SignalPayload>(data) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(peer = %from, %error, "ignoring a signal we do not understand");
                return;
            }
        };
        if let Err(error) = payload.validate() {
            tracing::warn!(peer = %from, %error, "ignoring an invalid signal");
            return;
        }
        if matches!(payload, SignalPayload::Offer { .. }) && !self.accept_offer(&from).await {
            return;
        }
        let describes = matches!(
            payload,
            SignalPayload::Offer { .. } | SignalPayload::Answer { .. }
        );
        let Some(slot) = self.peer_mut(&from) else {
            tracing::debug!(peer = %from, "signal from a peer we have no connection with");
            return;
        };
        match slot.remote.session.handle_signal(payload).await {
            Ok(()) => slot.described |= describes,
            // Codec mismatches are also reported by the session as an event.
            Err(error) => tracing::warn!(peer = %from, %error, "a signal from a peer was refused"),
        }
    }

    /// Decides what a new offer from `from` means. To a connection that has not been
    /// negotiated and waits for it: the offer. To one already negotiated: the peer
    /// starts over (its connection failed, or it came back), so a fresh connection
    /// answers it. When both sides offered at once, the peer with the smaller id keeps
    /// its own offer (false: ignore theirs) and the other answers.
    async fn accept_offer(&mut self, from: &PeerId) -> bool {
        let self_id = self.place.as_ref().map(|place| place.self_id.clone());
        let Some(slot) = self.peer_mut(from) else {
            return true;
        };
        let renegotiate = match slot.role {
            Role::Answerer => slot.described,
            Role::Offerer if slot.described => true,
            Role::Offerer => {
                if self_id.as_ref().is_some_and(|own| own < from) {
                    return false;
                }
                true
            }
        };
        if renegotiate {
            let frames = slot.frames.clone();
            tracing::info!(peer = %from, "the peer starts over; answering on a fresh connection");
            self.connect_peer(from.clone(), Role::Answerer, frames)
                .await;
        }
        true
    }

    /// A peer connection changed state: a failed one is replaced while the peer is in
    /// the room (its offerer offers again), dropped when signaling says the peer is
    /// away too; a closed one means the peer hung up.
    async fn on_peer_state(&mut self, change: PeerStateChange) {
        let signaling_up = self.signaling_up();
        let PeerStateChange {
            peer_id,
            epoch,
            state,
        } = change;
        let Some(slot) = self.peer_mut(&peer_id).filter(|slot| slot.epoch == epoch) else {
            return; // a replaced connection's last words
        };
        slot.state = state;
        match state {
            PeerConnectionState::Connected => {
                slot.failed_at = None;
                slot.ever_connected = true;
            }
            PeerConnectionState::Closed => self.remove_peer(&peer_id).await,
            PeerConnectionState::Failed => {
                slot.failed_at.get_or_insert_with(Instant::now);
                if slot.away {
                    self.remove_peer(&peer_id).await;
                } else if signaling_up && slot.role == Role::Offerer {
                    tracing::info!(peer = %peer_id, "connection failed; offering a fresh one");
                    let frames = slot.frames.clone();
                    self.connect_peer(peer_id, Role::Offerer, frames).await;
                }
                // Otherwise the peer offers again, or our resume will.
            }
            _ => {}
        }
    }

    /// Drops peers that did not reconnect in time, and ends the call when signaling
    /// stayed lost for too long.
    async fn enforce_deadlines(&mut self) {
        let overdue: Vec<(PeerId, bool)> = self
            .call
            .iter()
            .flat_map(|call| &call.peers)
            .filter(|(_, slot)| {
                slot.failed_at
                    .is_some_and(|at| at.elapsed() >= PEER_RECONNECT_LIMIT)
            })
            .map(|(peer_id, slot)| (peer_id.clone(), slot.ever_connected))
            .collect();
        for (peer_id, ever_connected) in overdue {
            tracing::info!(peer = %peer_id, "the peer did not reconnect in time");
            if !ever_connected {
                self.emit(CallEvent::Failed(CallError::NoRoute {
                    peer: self.name_of(&peer_id),
                    through_turn: self.rtc.has_turn(),
                }));
            }
            self.remove_peer(&peer_id).await;
        }
        if self
            .reconnect
            .as_ref()
            .is_some_and(|reconnect| reconnect.since.elapsed() >= RESUME_LIMIT)
        {
            self.emit(CallEvent::Failed(CallError::ConnectionLost(format!(
                "the signaling server stayed unreachable for {} s",
                RESUME_LIMIT.as_secs()
            ))));
            self.link = None;
            self.finish_call().await;
        }
    }

    /// The peer's name, or its id when we never learnt the name.
    fn name_of(&self, peer_id: &PeerId) -> String {
        self.call
            .as_ref()
            .and_then(|call| call.names.get(peer_id))
            .map_or_else(|| peer_id.to_string(), ToString::to_string)
    }

    async fn drop_peer(&mut self, peer_id: &PeerId) {
        if let Some(call) = &mut self.call {
            call.awaited.remove(peer_id);
            call.names.remove(peer_id);
        }
        let Some(slot) = self
            .call
            .as_mut()
            .and_then(|call| call.peers.remove(peer_id))
        else {
            return;
        };
        self.emit(CallEvent::PeerStats(peer_id.clone(), slot.remote.stats()));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, slot.remote.close()).await;
        self.mixer.remove(peer_id.as_str());
    }

    /// Asks for the public rooms: over the call's connection if there is one, else over
    /// a short-lived connection of its own (in the background; a failure only logs).
    fn list_rooms(&self) {
        if let Some(link) = &self.link {
            let _ = link.signaling.outgoing.send(ClientMessage::ListRooms);
            return;
        }
        let signal = self.config.signal.clone();
        let ca = self.config.signal_ca.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let listing = async {
                let mut link = signaling::connect(&signal, ca.as_deref()).await.ok()?;
                link.outgoing.send(ClientMessage::ListRooms).ok()?;
                while let Some(event) = link.incoming.recv().await {
                    if let LinkEvent::Message(ServerMessage::RoomList { rooms }) = event {
                        return Some(rooms);
                    }
                }
                None
            };
            match tokio::time::timeout(LIST_TIMEOUT, listing).await {
                Ok(Some(rooms)) => {
                    let _ = events.send(CallEvent::RoomList(rooms));
                }
                _ => tracing::debug!("the public rooms could not be listed"),
            }
        });
    }

    fn announce_media_state(&self) {
        let Some(call) = &self.call else { return };
        let data = PeerControl::MediaState(self.media_state).to_json();
        for peer_id in call.peers.keys() {
            let _ = self.signal_tx.send(ClientMessage::Signal {
                to: peer_id.clone(),
                data: data.clone(),
            });
        }
    }

    fn publish_stats(&self) {
        let Some(call) = &self.call else { return };
        for (peer_id, slot) in &call.peers {
            self.emit(CallEvent::PeerStats(peer_id.clone(), slot.remote.stats()));
        }
    }

    /// Ends the call: media stopped, our place forgotten, back to idle.
    async fn finish_call(&mut self) {
        self.end_call().await;
        self.place = None;
        self.reconnect = None;
        self.queued.clear();
        self.emit(CallEvent::Left);
    }

    /// Closes every peer connection, stops the encoders and closes the speaker
    /// (releasing the devices).
    async fn end_call(&mut self) {
        self.publish_stats();
        let Some(call) = self.call.take() else { return };
        if let Some(sender) = call.sender() {
            sender.stop();
        }
        let closing = call.peers.into_values().map(|slot| slot.remote.close());
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, futures_util::future::join_all(closing)).await;
        drop(call.speaker);
        self.mixer.clear();
    }
}
