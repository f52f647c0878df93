//! The call driver of the browser build: the same [`CallCommand`]s in and
//! [`CallEvent`]s out as the native `driver.rs`, on the browser's event loop.
//!
//! It is a driver of its own rather than the native one behind traits because most of
//! the native driver is media plumbing that the browser does itself: encoder threads
//! fanned out to every peer, decoder threads, Opus, echo mode. What is left here is the
//! room protocol (the same messages and order: the newcomer offers) and handing each
//! peer's streams to the page's video taps and voices.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde::Deserialize;
use tokio::sync::mpsc;
use web_sys::MediaStream;

use super::link::Link;
use super::{
    AvailableDevices, CallCommand, CallError, CallEvent, JoiningPeer, MediaState, PeerControl,
};
use crate::config::ClientConfig;
use crate::media::web::{
    MediaAccessError, VideoTap, Voice, open_camera_and_microphone, set_tracks_enabled, stop_tracks,
};
use crate::media::{FrameSender, frame_channel};
use crate::rtc::web::PeerSession;
use crate::rtc::{PeerConnectionState, PeerEvent, Role, RtcConfig, SignalPayload};
use crate::signaling::protocol::{
    ClientMessage, ErrorCode, PeerId, PeerInfo, RoomId, ServerMessage,
};
use crate::signaling::{self, LinkEvent};
use crate::web::{describe, sleep};

/// How long listing the public rooms may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs until the ECS side drops its command sender.
pub(super) async fn run(
    config: ClientConfig,
    preview: FrameSender,
    mut commands: mpsc::UnboundedReceiver<CallCommand>,
    events: Sender<CallEvent>,
) {
    let (lost_tx, mut lost) = mpsc::unbounded_channel();
    let mut driver = Driver {
        rtc: RtcConfig {
            ice_servers: config.ice_servers.clone(),
            ice_transport_policy: config.ice_transport_policy,
            ..RtcConfig::default()
        },
        config,
        preview,
        events,
        lost_tx,
        media_state: MediaState::default(),
        link: None,
        call: None,
    };
    loop {
        tokio::select! {
            // Without a runtime there is no random start; the order does not matter.
            biased;
            command = commands.recv() => match command {
                Some(command) => driver.on_command(command).await,
                None => break,
            },
            Some(event) = next_link_event(&mut driver.link) => driver.on_link_event(event).await,
            Some(peer_id) = lost.recv() => driver.on_peer_lost(peer_id),
        }
    }
    driver.end_call();
}

async fn next_link_event(link: &mut Option<Link>) -> Option<LinkEvent> {
    match link {
        Some(link) => link.signaling.incoming.recv().await,
        None => std::future::pending().await,
    }
}

/// The media of the call in progress: our camera and microphone (none when they could
/// not be opened: we watch and listen only) and one connection per peer.
struct ActiveCall {
    local: Option<MediaStream>,
    /// Our camera in the self-view.
    _self_view: Option<VideoTap>,
    peers: HashMap<PeerId, RemotePeer>,
}

/// One remote peer: the connection and what plays its streams.
struct RemotePeer {
    session: Rc<PeerSession>,
    /// Stops with the peer.
    _playback: Rc<RefCell<Playback>>,
}

/// A remote peer's video (copied into its panel) and voice (placed at its panel).
#[derive(Default)]
struct Playback {
    video: Option<VideoTap>,
    voice: Option<Voice>,
}

struct Driver {
    config: ClientConfig,
    rtc: RtcConfig,
    /// Where our own camera's frames go (the self-view).
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
        let passcode = self.config.passcode.clone();
        let request = match command {
            CallCommand::CreateRoom { name, public_title } => ClientMessage::CreateRoom {
                name,
                public_title,
                passcode,
            },
            CallCommand::ListRooms => {
                self.list_rooms();
                return;
            }
            CallCommand::JoinRoom { room, name } => ClientMessage::JoinRoom {
                room,
                name,
                passcode,
            },
            CallCommand::Leave => {
                self.end_call();
                if let Some(link) = self.link.take() {
                    let _ = link.signaling.outgoing.send(ClientMessage::Leave);
                }
                self.emit(CallEvent::Left);
                return;
            }
            CallCommand::SetMicrophone(on) => {
                self.media_state.audio = on;
                self.apply_media_state();
                return;
            }
            CallCommand::SetCamera(on) => {
                self.media_state.video = on;
                self.apply_media_state();
                return;
            }
            CallCommand::SwitchVideo(_)
            | CallCommand::SwitchMicrophone(_)
            | CallCommand::SwitchSpeaker(_) => {
                // The page's devices are the ones the browser's permission prompt gave.
                tracing::warn!(
                    ?command,
                    "the browser build uses the devices the page was given"
                );
                return;
            }
            CallCommand::ListDevices => {
                self.emit(CallEvent::Devices(AvailableDevices::default()));
                return;
            }
        };
        if self.link.is_some() {
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
                resume_token: _,
                ice_servers,
            }) => {
                // The server's TURN credentials, unless the page named its own.
                if self.config.ice_servers.is_empty() {
                    self.rtc.ice_servers = ice_servers;
                }
                self.start_call(room, peer_id, peers).await;
            }
            LinkEvent::Message(ServerMessage::PeerJoined { peer }) => {
                self.await_offer_from(peer).await;
            }
            LinkEvent::Message(ServerMessage::PeerLeft { peer_id }) => {
                self.drop_peer(&peer_id);
                self.emit(CallEvent::PeerLeft(peer_id));
            }
            // The browser's connection state already shows a peer whose media stopped;
            // its place is kept until it is back or `peer_left` comes.
            LinkEvent::Message(ServerMessage::PeerAway { peer_id }) => {
                tracing::info!(%peer_id, "peer's signaling dropped; waiting for it");
            }
            // A peer that resumed offers afresh, as a newcomer does: it gets a fresh
            // connection (and panel), the old one is closed.
            LinkEvent::Message(ServerMessage::PeerBack { peer }) => {
                self.drop_peer(&peer.peer_id);
                self.emit(CallEvent::PeerLeft(peer.peer_id.clone()));
                self.await_offer_from(peer).await;
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
                    self.end_call();
                    self.link = None;
                    self.emit(CallEvent::Left);
                }
            }
            LinkEvent::Closed { reason } => {
                self.end_call();
                self.link = None;
                self.emit(CallEvent::Failed(CallError::ConnectionLost(reason)));
                self.emit(CallEvent::Left);
            }
        }
    }

    /// A newcomer (or a peer back after a drop) is shown and will offer; we answer.
    async fn await_offer_from(&mut self, peer: PeerInfo) {
        let (frames, video) = frame_channel();
        let peer_id = peer.peer_id.clone();
        self.emit(CallEvent::PeerJoined(JoiningPeer { info: peer, video }));
        self.connect_peer(peer_id, Role::Answerer, frames).await;
    }

    /// We are in the room: open the camera and microphone (a refusal leaves us
    /// watching) and offer to everyone already there.
    async fn start_call(&mut self, room: RoomId, self_id: PeerId, peers: Vec<PeerInfo>) {
        if let Some(link) = &mut self.link {
            link.welcomed = true;
        }
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
        let local = match open_camera_and_microphone().await {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::warn!(%error, "joining without camera and microphone");
                self.emit(CallEvent::Failed(CallError::DevicesUnavailable(
                    devices_message(&error),
                )));
                None
            }
        };
        let self_view = local.as_ref().and_then(|stream| {
            VideoTap::start(stream, self.preview.clone())
                .inspect_err(|error| tracing::warn!("no self-view: {}", describe(error)))
                .ok()
        });
        if self.link.is_none() {
            // Left while the permission prompt was open.
            if let Some(stream) = &local {
                stop_tracks(stream);
            }
            return;
        }
        self.call = Some(ActiveCall {
            local,
            _self_view: self_view,
            peers: HashMap::new(),
        });
        self.apply_media_state();
        for (peer_id, frames) in outputs {
            self.connect_peer(peer_id, Role::Offerer, frames).await;
        }
    }

    async fn connect_peer(&mut self, peer_id: PeerId, role: Role, frames: FrameSender) {
        let (Some(call), Some(link)) = (&mut self.call, &self.link) else {
            return;
        };
        let playback = Rc::new(RefCell::new(Playback::default()));
        let on_stream = {
            let playback = playback.clone();
            let peer_id = peer_id.clone();
            move |stream: MediaStream| play(&playback, &peer_id, &stream, &frames)
        };
        let (peer_events_tx, peer_events) = mpsc::unbounded_channel();
        let session = match PeerSession::new(
            &self.rtc,
            call.local.as_ref(),
            role,
            peer_events_tx,
            on_stream,
        )
        .await
        {
            Ok(session) => Rc::new(session),
            Err(error) => {
                tracing::warn!(peer = %peer_id, %error, "cannot connect to a peer");
                self.emit(CallEvent::Failed(CallError::Media(error.to_string())));
                return;
            }
        };
        let outgoing = link.signaling.outgoing.clone();
        let _ = outgoing.send(ClientMessage::Signal {
            to: peer_id.clone(),
            data: PeerControl::MediaState(self.media_state).to_json(),
        });
        wasm_bindgen_futures::spawn_local(route_peer_events(
            peer_id.clone(),
            peer_events,
            outgoing,
            self.events.clone(),
            self.lost_tx.clone(),
        ));
        call.peers.insert(
            peer_id,
            RemotePeer {
                session,
                _playback: playback,
            },
        );
    }

    async fn on_signal(&mut self, from: PeerId, data: serde_json::Value) {
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
        let Some(session) = self
            .call
            .as_ref()
            .and_then(|call| call.peers.get(&from))
            .map(|peer| peer.session.clone())
        else {
            tracing::debug!(peer = %from, "signal from a peer we have no connection with");
            return;
        };
        if let Err(error) = session.handle_signal(payload).await {
            tracing::warn!(peer = %from, %error, "a signal from a peer was refused");
        }
    }

    /// The connection to a peer failed or closed: it is gone from the call.
    fn on_peer_lost(&mut self, peer_id: PeerId) {
        let known = self
            .call
            .as_ref()
            .is_some_and(|call| call.peers.contains_key(&peer_id));
        if known {
            self.drop_peer(&peer_id);
            self.emit(CallEvent::PeerLeft(peer_id));
        }
    }

    fn drop_peer(&mut self, peer_id: &PeerId) {
        if let Some(peer) = self
            .call
            .as_mut()
            .and_then(|call| call.peers.remove(peer_id))
        {
            peer.session.close();
        }
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
        wasm_bindgen_futures::spawn_local(async move {
            let listing = async {
                let mut link = signaling::connect(&signal, None).await.ok()?;
                link.outgoing.send(ClientMessage::ListRooms).ok()?;
                while let Some(event) = link.incoming.recv().await {
                    if let LinkEvent::Message(ServerMessage::RoomList { rooms }) = event {
                        return Some(rooms);
                    }
                }
                None
            };
            let listed = tokio::select! {
                biased;
                listed = listing => listed,
                () = sleep(LIST_TIMEOUT) => None,
            };
            match listed {
                Some(rooms) => {
                    let _ = events.send(CallEvent::RoomList(rooms));
                }
                None => tracing::debug!("the public rooms could not be listed"),
            }
        });
    }

    /// Applies our switches to our tracks and tells every peer.
    fn apply_media_state(&self) {
        let (Some(call), Some(link)) = (&self.call, &self.link) else {
            return;
        };
        if let Some(stream) = &call.local {
            set_tracks_enabled(stream, false, self.media_state.audio);
            set_tracks_enabled(stream, true, self.media_state.video);
        }
        let data = PeerControl::MediaState(self.media_state).to_json();
        for peer_id in call.peers.keys() {
            let _ = link.signaling.outgoing.send(ClientMessage::Signal {
                to: peer_id.clone(),
                data: data.clone(),
            });
        }
    }

    /// Closes every peer connection and releases the camera and microphone.
    fn end_call(&mut self) {
        let Some(call) = self.call.take() else { return };
        for peer in call.peers.values() {
            peer.session.close();
        }
        if let Some(stream) = &call.local {
            stop_tracks(stream);
        }
    }
}

/// Starts playing a stream a peer sent: its video into the panel's frame channel, its
/// audio into a voice of its own. A stream is announced once per track, so each part
/// starts once.
fn play(
    playback: &RefCell<Playback>,
    peer_id: &PeerId,
    stream: &MediaStream,
    frames: &FrameSender,
) {
    let mut playback = playback.borrow_mut();
    if playback.video.is_none() && stream.get_video_tracks().length() > 0 {
        match VideoTap::start(stream, frames.clone()) {
            Ok(tap) => playback.video = Some(tap),
            Err(error) => tracing::warn!(peer = %peer_id, "no video: {}", describe(&error)),
        }
    }
    if playback.voice.is_none() && stream.get_audio_tracks().length() > 0 {
        match Voice::start(peer_id.clone(), stream) {
            Ok(voice) => playback.voice = Some(voice),
            Err(error) => tracing::warn!(peer = %peer_id, "no audio: {}", describe(&error)),
        }
    }
}

/// Routes one peer's connection events: signaling out, state to the ECS.
async fn route_peer_events(
    peer_id: PeerId,
    mut peer_events: mpsc::UnboundedReceiver<PeerEvent>,
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    events: Sender<CallEvent>,
    lost: mpsc::UnboundedSender<PeerId>,
) {
    while let Some(event) = peer_events.recv().await {
        match event {
            PeerEvent::Signal(payload) => {
                // Serializing our own enum of strings cannot fail.
                let data = serde_json::to_value(&payload).unwrap_or_default();
                let _ = outgoing.send(ClientMessage::Signal {
                    to: peer_id.clone(),
                    data,
                });
            }
            PeerEvent::State(state) => {
                let _ = events.send(CallEvent::PeerState(peer_id.clone(), state));
                if matches!(
                    state,
                    PeerConnectionState::Failed | PeerConnectionState::Closed
                ) {
                    let _ = lost.send(peer_id.clone());
                }
            }
            PeerEvent::Error(message) => {
                let _ = events.send(CallEvent::Failed(CallError::Media(message)));
            }
            PeerEvent::Turn(problem) => {
                let _ = events.send(CallEvent::Failed(CallError::Turn(problem)));
            }
            // The browser decodes and measures media itself.
            _ => {}
        }
    }
}

/// What the overlay says when the camera and microphone stay closed.
fn devices_message(error: &MediaAccessError) -> String {
    format!("{error}: others cannot see or hear you")
}
