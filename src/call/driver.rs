//! The call driver: the async task that owns the signaling connection and the media of
//! the current call. It turns [`CallCommand`]s into protocol messages, server messages
//! into peer connections and [`CallEvent`]s, and tears everything down when the call
//! ends. One fresh signaling connection, encoder set and peer connection set per call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde::Deserialize;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::peer::{Echo, Outbound, PeerContext, RemotePeer};
use super::{CallCommand, CallError, CallEvent, JoiningPeer, MediaState, PeerControl};
use crate::config::ClientConfig;
use crate::media::{
    FrameSender, LocalSender, MediaSink, Mixer, SendCounters, Speaker, frame_channel,
};
use crate::rtc::native::LocalMedia;
use crate::rtc::{Role, RtcConfig, SignalPayload};
use crate::signaling::protocol::{
    ClientMessage, ErrorCode, PeerId, PeerInfo, RoomId, ServerMessage,
};
use crate::signaling::{self, LinkEvent, SignalingLink};

/// How often receive statistics go to the ECS.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How long listing the public rooms may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long closing one peer connection may take when the call ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs until the ECS side drops its command sender.
pub(super) async fn run(
    config: ClientConfig,
    counters: Arc<SendCounters>,
    mixer: Arc<Mixer>,
    preview: FrameSender,
    mut commands: mpsc::UnboundedReceiver<CallCommand>,
    events: Sender<CallEvent>,
) {
    let (lost_tx, mut lost) = mpsc::unbounded_channel();
    let mut driver = Driver {
        rtc: RtcConfig {
            ice_servers: config.ice_servers.iter().map(ToString::to_string).collect(),
            ..RtcConfig::default()
        },
        config,
        counters,
        mixer,
        preview,
        events,
        lost_tx,
        media_state: MediaState::default(),
        link: None,
        call: None,
    };
    let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => driver.on_command(command).await,
                None => break,
            },
            Some(event) = next_link_event(&mut driver.link) => driver.on_link_event(event).await,
            Some(peer_id) = lost.recv() => driver.on_peer_lost(peer_id).await,
            _ = stats_tick.tick() => driver.publish_stats(),
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

/// The signaling connection of the call in progress.
struct Link {
    signaling: SignalingLink,
    /// Whether the server has welcomed us into the room yet.
    welcomed: bool,
}

/// The media side of the call in progress: our encoders, the speaker, and one
/// connection per peer.
struct ActiveCall {
    local: LocalMedia,
    outbound: Outbound,
    /// Plays the mixer while the call lasts (`None`: no speaker).
    speaker: Option<Speaker>,
    peers: HashMap<PeerId, RemotePeer>,
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
    lost_tx: mpsc::UnboundedSender<PeerId>,
    /// Our microphone and camera switches; they outlast calls.
    media_state: MediaState,
    link: Option<Link>,
    call: Option<ActiveCall>,
}

impl Driver {
    fn emit(&self, event: CallEvent) {
        let _ = self.events.send(event);
    }

    async fn on_command(&mut self, command: CallCommand) {
        let request = match command {
            CallCommand::CreateRoom { name, public_title } => {
                ClientMessage::CreateRoom { name, public_title }
            }
            CallCommand::ListRooms => {
                self.list_rooms();
                return;
            }
            CallCommand::JoinRoom { room, name } => ClientMessage::JoinRoom { room, name },
            CallCommand::Leave => {
                self.end_call().await;
                if let Some(link) = self.link.take() {
                    let _ = link.signaling.outgoing.send(ClientMessage::Leave);
                }
                self.emit(CallEvent::Left);
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
                let switched = match self.call.as_ref().and_then(ActiveCall::sender) {
                    Some(sender) => sender.switch_video(&media),
                    None => Ok(()),
                };
                match switched {
                    Ok(()) => self.config.media = media,
                    Err(problem) => self.emit(CallEvent::Failed(CallError::Device(format!(
                        "the video source stays as it was: {problem}"
                    )))),
                }
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
        if self.link.is_some() {
            // The ECS state machine only forwards create/join when idle.
            self.emit(CallEvent::Failed(CallError::AlreadyInCall));
            return;
        }
        match signaling::connect(&self.config.signal).await {
            Ok(signaling) => {
                let _ = signaling.outgoing.send(request);
                self.link = Some(Link {
                    signaling,
                    welcomed: false,
                });
            }
            Err(error) => {
                tracing::warn!(%error, "signaling connection failed");
                self.emit(CallEvent::Failed(CallError::SignalingUnreachable(
                    error.to_string(),
                )));
                self.emit(CallEvent::Left);
            }
        }
    }

    async fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Message(ServerMessage::Welcome {
                room,
                peer_id,
                peers,
            }) => self.start_call(room, peer_id, peers).await,
            LinkEvent::Message(ServerMessage::PeerJoined { peer }) => {
                let (frames, video) = frame_channel();
                let peer_id = peer.peer_id.clone();
                self.emit(CallEvent::PeerJoined(JoiningPeer { info: peer, video }));
                self.connect_peer(peer_id, Role::Answerer, frames).await;
            }
            LinkEvent::Message(ServerMessage::PeerLeft { peer_id }) => {
                self.drop_peer(&peer_id).await;
                self.emit(CallEvent::PeerLeft(peer_id));
            }
            LinkEvent::Message(ServerMessage::Signal { from, data }) => {
                self.on_signal(from, data).await
            }
            LinkEvent::Message(ServerMessage::RoomList { rooms }) => {
                self.emit(CallEvent::RoomList(rooms));
            }
            LinkEvent::Message(ServerMessage::Error { code, message }) => {
                let welcomed = self.link.as_ref().is_some_and(|link| link.welcomed);
                self.emit(CallEvent::Failed(CallError::Refused { code, message }));
                if !welcomed || code == ErrorCode::MessageTooLarge {
                    self.end_call().await;
                    self.link = None;
                    self.emit(CallEvent::Left);
                }
            }
            LinkEvent::Closed { reason } => {
                self.end_call().await;
                self.link = None;
                self.emit(CallEvent::Failed(CallError::ConnectionLost(reason)));
                self.emit(CallEvent::Left);
            }
        }
    }

    /// We are in the room: start our encoders and offer to everyone already there (the
    /// newcomer offers; see docs/signaling.md).
    async fn start_call(&mut self, room: RoomId, self_id: PeerId, peers: Vec<PeerInfo>) {
        if let Some(link) = &mut self.link {
            link.welcomed = true;
        }
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
                self.emit(CallEvent::Left);
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
                "others see the test pattern: {problem}"
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
        let speaker = self.config.speaker.as_ref().and_then(|choice| {
            Speaker::open(choice, self.mixer.clone())
                .inspect_err(|problem| {
                    self.emit(CallEvent::Failed(CallError::Device(format!(
                        "you cannot hear the others: {problem}"
                    ))));
                })
                .ok()
        });
        self.call = Some(ActiveCall {
            local,
            outbound,
            speaker,
            peers: HashMap::new(),
        });
        let mut joining = Vec::new();
        let mut outputs = Vec::new();
        for info in peers {
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

    async fn connect_peer(
        &mut self,
        peer_id: PeerId,
        role: Role,
        frames: crate::media::FrameSender,
    ) {
        let (Some(call), Some(link)) = (&mut self.call, &self.link) else {
            return;
        };
        let context = PeerContext {
            outgoing: link.signaling.outgoing.clone(),
            events: self.events.clone(),
            lost: self.lost_tx.clone(),
            outbound: call.outbound.clone(),
            mixer: self.mixer.clone(),
            decode_video: self.config.decode_video,
        };
        let connected = RemotePeer::connect(
            peer_id.clone(),
            role,
            &self.rtc,
            &call.local,
            frames,
            self.media_state,
            context,
        )
        .await;
        match connected {
            Ok(peer) => {
                if let Some(stale) = call.peers.insert(peer_id, peer) {
                    stale.close().await;
                }
            }
            Err(error) => {
                tracing::warn!(peer = %peer_id, %error, "cannot connect to a peer");
                self.emit(CallEvent::Failed(error));
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
        let Some(peer) = self.call.as_ref().and_then(|call| call.peers.get(&from)) else {
            tracing::debug!(peer = %from, "signal from a peer we have no connection with");
            return;
        };
        if let Err(error) = peer.session.handle_signal(payload).await {
            // Codec mismatches are also reported by the session as an event.
            tracing::warn!(peer = %from, %error, "a signal from a peer was refused");
        }
    }

    /// The connection to a peer failed or closed: it is gone from the call.
    async fn on_peer_lost(&mut self, peer_id: PeerId) {
        let known = self
            .call
            .as_ref()
            .is_some_and(|call| call.peers.contains_key(&peer_id));
        if known {
            self.drop_peer(&peer_id).await;
            self.emit(CallEvent::PeerLeft(peer_id));
        }
    }

    async fn drop_peer(&mut self, peer_id: &PeerId) {
        let Some(peer) = self
            .call
            .as_mut()
            .and_then(|call| call.peers.remove(peer_id))
        else {
            return;
        };
        self.emit(CallEvent::PeerStats(peer_id.clone(), peer.stats()));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, peer.close()).await;
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
        let events = self.events.clone();
        tokio::spawn(async move {
            let listing = async {
                let mut link = signaling::connect(&signal).await.ok()?;
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
        let (Some(call), Some(link)) = (&self.call, &self.link) else {
            return;
        };
        let data = PeerControl::MediaState(self.media_state).to_json();
        for peer_id in call.peers.keys() {
            let _ = link.signaling.outgoing.send(ClientMessage::Signal {
                to: peer_id.clone(),
                data: data.clone(),
            });
        }
    }

    fn publish_stats(&self) {
        let Some(call) = &self.call else { return };
        for (peer_id, peer) in &call.peers {
            self.emit(CallEvent::PeerStats(peer_id.clone(), peer.stats()));
        }
    }

    /// Closes every peer connection, stops the encoders and closes the speaker
    /// (releasing the devices).
    async fn end_call(&mut self) {
        self.publish_stats();
        let Some(call) = self.call.take() else { return };
        if let Some(sender) = call.sender() {
            sender.stop();
        }
        let closing = call.peers.into_values().map(RemotePeer::close);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, futures_util::future::join_all(closing)).await;
        drop(call.speaker);
        self.mixer.clear();
    }
}
