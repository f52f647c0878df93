//! The native call driver: the async task that carries out what the room state machine
//! ([`super::room`]) decides, on tokio. It owns the signaling connection, our encoders
//! and speaker, and one webrtc-rs connection per peer with its receive path; it feeds
//! the room what happens to them. One encoder set serves every peer of a call.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bevy::platform::time::Instant;
use crossbeam_channel::Sender;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::peer::{Echo, Outbound, PeerContext, PeerStateChange, RemotePeer};
use super::room::{Room, RoomAction, RoomSettings};
use super::roster::Roster;
use super::{AvailableDevices, CallCommand, CallError, CallEvent, MediaState};
use crate::config::ClientConfig;
use crate::media::camera::camera_names;
use crate::media::{
    DeviceChoice, DeviceError, Direction, FrameSender, LocalSender, MediaSink, Mixer, SendCounters,
    SendSettings, Speaker, audio_devices,
};
use crate::rtc::turn_check::check_turn_servers;
use crate::rtc::{IceTransportPolicy, LocalMedia, Role, RtcConfig, SignalPayload};
use crate::signaling::protocol::{ClientMessage, PeerId};
use crate::signaling::{self, LinkEvent, SignalingError, SignalingLink};

/// How often receive statistics go to the ECS.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How long listing the public rooms may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long closing one peer connection may take when the call ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A reconnection attempt in flight: wait, then connect.
type Attempt = Pin<Box<dyn Future<Output = Result<SignalingLink, SignalingError>> + Send>>;

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
        room: Room::new(
            RoomSettings {
                name: config.name.clone(),
                passcode: config.passcode.clone(),
                ice_servers: config.ice_servers.clone(),
            },
            Instant::now(),
        ),
        rtc: RtcConfig {
            ice_servers: config.ice_servers.clone(),
            ice_transport_policy: config.ice_transport_policy,
            ..RtcConfig::default()
        },
        config,
        counters,
        mixer,
        preview,
        roster: Roster::new(events),
        states_tx,
        signal_tx,
        link: None,
        attempt: None,
        call: None,
    };
    let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        let deadline = driver.room.next_deadline();
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => driver.on_command(command),
                None => break,
            },
            Some(event) = next_link_event(&mut driver.link) => driver.on_link_event(event),
            attempt = next_attempt(&mut driver.attempt) => {
                driver.attempt = None;
                match attempt {
                    Ok(link) => {
                        driver.link = Some(link);
                        driver.room.link_opened();
                    }
                    Err(error) => {
                        tracing::debug!(%error, "signaling still unreachable");
                        driver.room.reconnect_failed();
                    }
                }
            }
            Some(change) = states.recv() => {
                driver.room.peer_state(&change.peer_id, change.epoch, change.state, Instant::now());
            }
            Some(message) = signals.recv() => driver.room.send_signal(message),
            () = sleep_until(deadline) => driver.room.tick(Instant::now()),
            _ = stats_tick.tick() => driver.publish_stats(),
        }
        driver.carry_out().await;
    }
    driver.room.leave();
    driver.carry_out().await;
}

async fn next_link_event(link: &mut Option<SignalingLink>) -> Option<LinkEvent> {
    match link {
        Some(link) => link.incoming.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_attempt(attempt: &mut Option<Attempt>) -> Result<SignalingLink, SignalingError> {
    match attempt {
        Some(attempt) => attempt.await,
        None => std::future::pending().await,
    }
}

/// Waits until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// One remote peer of the call and the connection to it now.
struct PeerSlot {
    remote: RemotePeer,
    /// Which of the successive connections to this peer `remote` is.
    epoch: u64,
}

/// The media side of the call in progress: our encoders, the speaker, and one
/// connection per peer.
struct ActiveCall {
    local: LocalMedia,
    outbound: Outbound,
    /// Plays the mixer while the call lasts (`None`: no speaker).
    speaker: Option<Speaker>,
    peers: HashMap<PeerId, PeerSlot>,
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
    room: Room,
    config: ClientConfig,
    rtc: RtcConfig,
    counters: Arc<SendCounters>,
    /// The others' voices, for the speaker and the speaking indicator.
    mixer: Arc<Mixer>,
    /// Where our own captured frames go (the self-view).
    preview: FrameSender,
    roster: Roster,
    /// Where peer connections report their state.
    states_tx: mpsc::UnboundedSender<PeerStateChange>,
    /// Where peer connections put what they send through signaling (the room sends or
    /// queues it).
    signal_tx: mpsc::UnboundedSender<ClientMessage>,
    link: Option<SignalingLink>,
    attempt: Option<Attempt>,
    call: Option<ActiveCall>,
}

impl Driver {
    fn emit(&self, event: CallEvent) {
        self.roster.emit(event);
    }

    fn on_command(&mut self, command: CallCommand) {
        let Some(command) = self.room.command(command) else {
            return;
        };
        match command {
            CallCommand::SwitchVideo(input) => {
                let mut media = self.config.media.clone();
                media.video_input = input;
                self.switch_source(media, "the video source", LocalSender::switch_video);
            }
            CallCommand::SwitchMicrophone(input) => {
                let mut media = self.config.media.clone();
                media.audio_input = input;
                self.switch_source(media, "the microphone", LocalSender::switch_audio);
            }
            CallCommand::SwitchSpeaker(choice) => self.switch_speaker(choice),
            CallCommand::ListDevices => {
                let events = self.roster.events();
                // Asking the sound and camera layers can take a while: off the runtime.
                tokio::task::spawn_blocking(move || {
                    let _ = events.send(CallEvent::Devices(AvailableDevices {
                        cameras: camera_names(),
                        microphones: audio_devices(Direction::Input),
                        speakers: audio_devices(Direction::Output),
                    }));
                });
            }
            _ => {}
        }
    }

    fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Message(message) => self.room.server_message(message, Instant::now()),
            LinkEvent::OfferAhead { peer } => self.room.offer_ahead(peer, Instant::now()),
            LinkEvent::Closed { reason } => {
                self.link = None;
                self.room.link_closed(reason, Instant::now());
            }
        }
    }

    /// Does what the room asked for, until it asks for nothing more.
    async fn carry_out(&mut self) {
        while let Some(action) = self.room.poll_action() {
            match action {
                RoomAction::OpenLink(request) => {
                    match signaling::connect(&self.config.signal, self.config.signal_ca.as_deref())
                        .await
                    {
                        Ok(link) => {
                            let _ = link.outgoing.send(request);
                            self.link = Some(link);
                            self.room.link_opened();
                        }
                        Err(error) => {
                            tracing::warn!(%error, "signaling connection failed");
                            self.room.link_failed(error.to_string());
                        }
                    }
                }
                RoomAction::Reconnect { after } => {
                    let url = self.config.signal.clone();
                    let ca = self.config.signal_ca.clone();
                    self.attempt = Some(Box::pin(async move {
                        tokio::time::sleep(after).await;
                        signaling::connect(&url, ca.as_deref()).await
                    }));
                }
                RoomAction::Send(message) => {
                    if let Some(link) = &self.link {
                        let _ = link.outgoing.send(message);
                    }
                }
                RoomAction::CloseLink => {
                    self.link = None;
                    self.attempt = None;
                }
                RoomAction::ListRoomsApart => self.list_rooms_apart(),
                RoomAction::UseIceServers(servers) => self.rtc.ice_servers = servers,
                RoomAction::StartMedia => self.start_media(),
                RoomAction::ApplyMedia(state) => self.apply_media(state),
                RoomAction::StopMedia => self.stop_media().await,
                RoomAction::Connect {
                    peer,
                    epoch,
                    role,
                    relay_only,
                } => self.connect(peer, epoch, role, relay_only).await,
                RoomAction::Deliver {
                    peer,
                    epoch,
                    payload,
                } => self.deliver(&peer, epoch, payload).await,
                RoomAction::Retire { peer, epoch } => {
                    if let Some(call) = &mut self.call
                        && call
                            .peers
                            .get(&peer)
                            .is_some_and(|slot| slot.epoch == epoch)
                        && let Some(slot) = call.peers.remove(&peer)
                    {
                        slot.remote.retire();
                    }
                }
                RoomAction::Close(peer) => self.close_peer(&peer).await,
                RoomAction::Joined {
                    room,
                    self_id,
                    peers,
                } => self.roster.joined(room, self_id, peers),
                RoomAction::PeerJoined(info) => self.roster.peer_joined(info),
                RoomAction::Emit(event) => self.roster.room_event(event),
            }
        }
    }

    /// Starts our encoders (or echo mode) and the speaker.
    fn start_media(&mut self) {
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
                    self.room.name().as_str(),
                    sink,
                    self.counters.clone(),
                    Some(self.preview.clone()),
                )
                .map_err(|error| CallError::Media(error.to_string()))?;
                Ok((local, Outbound::Encoded(Arc::new(sender))))
            });
        let (local, outbound) = match started {
            Ok(started) => started,
            Err(error) => {
                self.room.media_failed(error);
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
        if let Some(problem) = &audio_problem {
            // No microphone: we are muted, and everyone is told.
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
        });
        self.check_turn_servers();
        self.room
            .media_started(audio_problem.is_some(), Instant::now());
    }

    fn apply_media(&self, state: MediaState) {
        if let Some(sender) = self.call.as_ref().and_then(ActiveCall::sender) {
            sender.set_audio_enabled(state.audio);
            sender.set_video_enabled(state.video);
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
        let events = self.roster.events();
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

    /// Opens connection `epoch` to `peer`; a failure drops the peer.
    async fn connect(&mut self, peer: PeerId, epoch: u64, role: Role, relay_only: bool) {
        let frames = self.roster.frames(&peer);
        let Some(call) = &mut self.call else { return };
        let context = PeerContext {
            outgoing: self.signal_tx.clone(),
            events: self.roster.events(),
            states: self.states_tx.clone(),
            epoch,
            outbound: call.outbound.clone(),
            mixer: self.mixer.clone(),
            decode_video: self.config.decode_video,
        };
        let relayed;
        let rtc = if relay_only {
            relayed = RtcConfig {
                ice_transport_policy: IceTransportPolicy::Relay,
                ..self.rtc.clone()
            };
            &relayed
        } else {
            &self.rtc
        };
        match RemotePeer::connect(peer.clone(), role, rtc, &call.local, frames, context).await {
            Ok(remote) => {
                if let Some(stale) = call.peers.insert(peer, PeerSlot { remote, epoch }) {
                    stale.remote.retire();
                }
            }
            Err(error) => self.room.connect_failed(&peer, epoch, error),
        }
    }

    async fn deliver(&mut self, peer: &PeerId, epoch: u64, payload: SignalPayload) {
        let Some(slot) = self
            .call
            .as_ref()
            .and_then(|call| call.peers.get(peer))
            .filter(|slot| slot.epoch == epoch)
        else {
            return;
        };
        // Codec mismatches are also reported by the session as an event.
        if let Err(error) = slot.remote.session.handle_signal(payload).await {
            tracing::warn!(%peer, %error, "a signal from a peer was refused");
        }
    }

    /// Closes the connection to a peer that is gone, with its last figures.
    async fn close_peer(&mut self, peer: &PeerId) {
        let Some(slot) = self.call.as_mut().and_then(|call| call.peers.remove(peer)) else {
            return;
        };
        self.emit(CallEvent::PeerStats(peer.clone(), slot.remote.stats()));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, slot.remote.close()).await;
        self.mixer.remove(peer.as_str());
    }

    /// Asks for the public rooms over a short-lived connection of its own (in the
    /// background; a failure only logs).
    fn list_rooms_apart(&self) {
        let signal = self.config.signal.clone();
        let ca = self.config.signal_ca.clone();
        let events = self.roster.events();
        tokio::spawn(async move {
            let listing = signaling::list_public_rooms(&signal, ca.as_deref());
            match tokio::time::timeout(LIST_TIMEOUT, listing).await {
                Ok(Some(rooms)) => {
                    let _ = events.send(CallEvent::RoomList(rooms));
                }
                _ => tracing::debug!("the public rooms could not be listed"),
            }
        });
    }

    fn publish_stats(&self) {
        let Some(call) = &self.call else { return };
        for (peer_id, slot) in &call.peers {
            self.emit(CallEvent::PeerStats(peer_id.clone(), slot.remote.stats()));
        }
    }

    /// Closes every peer connection, stops the encoders and closes the speaker
    /// (releasing the devices).
    async fn stop_media(&mut self) {
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
