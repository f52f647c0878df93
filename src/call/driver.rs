//! The native call driver: the async task that carries out what the room state machine
//! ([`super::room`]) decides, on tokio, through the shared [`CallCore`]. Its media side
//! ([`NativeMedia`]) owns our encoders and speaker, and one webrtc-rs connection per
//! peer with its receive path. One encoder set serves every peer of a call.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bevy::platform::time::Instant;
use crossbeam_channel::Sender;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::executor::{CallCore, CallMedia, MediaStart, Opening, SfuOpening, report_rooms};
use super::peer::{Echo, Outbound, PeerContext, PeerStateChange, RemotePeer};
use super::room::Route;
use super::roster::Roster;
use super::{AvailableDevices, CallCommand, CallError, CallEvent, MediaState};
use crate::config::ClientConfig;
use crate::media::camera::camera_names;
use crate::media::congestion::{BitrateBounds, VideoBitrateTargets};
use crate::media::screen_capture::share_sources;
use crate::media::{
    DeviceChoice, DeviceError, Direction, FrameSender, LocalSender, MediaSink, Mixer, ReducedLayer,
    SCREEN_KBPS, ScreenSender, SendCounters, SendSettings, ShareTarget, Speaker, audio_devices,
    frame_channel,
};
use crate::rtc::turn_check::check_turn_servers;
use crate::rtc::{LocalMedia, RtcConfig};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{ClientMessage, PeerId, Pose};
use crate::signaling::{self, SignalingError, SignalingLink};

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
    let (poses_tx, mut poses) = mpsc::unbounded_channel();
    let (share_ended_tx, mut share_ended) = mpsc::unbounded_channel();
    let mut media = NativeMedia {
        // What we share waits for the room's wall: the room asks for it.
        config: ClientConfig {
            share: None,
            ..config.clone()
        },
        events: events.clone(),
        counters,
        mixer,
        preview,
        states_tx,
        signal_tx,
        poses_tx,
        own_pose: tokio::sync::watch::Sender::new(None),
        share_ended_tx,
        shares_started: 0,
        call: None,
    };
    let mut core = CallCore::<Attempt>::new(&config, events);
    let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        let deadline = core.room.next_deadline();
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => {
                    if let Some(command) = core.room.command(command, Instant::now()) {
                        media.on_device_command(command, &core.roster).await;
                    }
                }
                None => break,
            },
            news = core.next_signaling() => core.on_signaling(news),
            Some(change) = states.recv() => {
                let (peer, epoch, state, now) =
                    (&change.peer_id, change.epoch, change.state, Instant::now());
                match change.route {
                    Route::Mesh => core.room.peer_state(peer, epoch, state, now),
                    Route::SfuUp => core.room.sfu_state(None, epoch, state, now),
                    Route::SfuDown => core.room.sfu_state(Some(peer), epoch, state, now),
                }
            }
            Some(message) = signals.recv() => core.room.send_signal(message),
            Some((peer, pose)) = poses.recv() => core.room.peer_pose(&peer, pose, Instant::now()),
            Some((share, problem)) = share_ended.recv() => {
                if media.share_ended(share, &problem, &core.roster).await {
                    // The room gives the wall back.
                    core.room.command(CallCommand::ShareScreen(None), Instant::now());
                }
            }
            () = sleep_until(deadline) => core.room.tick(Instant::now()),
            _ = stats_tick.tick() => media.publish_stats(&core.roster),
        }
        core.carry_out(&mut media).await;
    }
    core.room.leave();
    core.carry_out(&mut media).await;
}

/// Starts share `number` of `target` in `call`, sending through its outgoing streams at
/// a bitrate that follows the camera's congestion control; a failed capture is
/// reported on `ended`.
fn start_screen(
    target: &ShareTarget,
    number: u64,
    call: &ActiveCall,
    counters: &Arc<SendCounters>,
    ended: &mpsc::UnboundedSender<(u64, DeviceError)>,
) -> Result<ScreenSender, DeviceError> {
    let sink = Arc::new(FanOut {
        local: call.local.clone(),
        runtime: Handle::current(),
    });
    let camera = match call.sender() {
        Some(sender) => (sender.bitrate_bounds(), sender.bitrate_targets().clone()),
        // Echo mode: no congestion control of our own.
        None => (
            BitrateBounds::new(SCREEN_KBPS, SCREEN_KBPS),
            Arc::new(VideoBitrateTargets::default()),
        ),
    };
    let ended = ended.clone();
    ScreenSender::start(
        target,
        sink,
        counters.clone(),
        camera,
        call.screen_keyframe.clone(),
        move |problem| {
            let _ = ended.send((number, problem));
        },
    )
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
    /// Our streams through the SFU: the upstream (`None`) and a downstream per member.
    sfu: HashMap<Option<PeerId>, PeerSlot>,
    /// Our shared screen, while we share, and which share it is (see
    /// [`NativeMedia::shares_started`]).
    screen: Option<(u64, ScreenSender)>,
    /// Set when a peer asks for a key frame of our screen.
    screen_keyframe: Arc<AtomicBool>,
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

    fn send_screen(&self, frame: &[u8], duration: Duration) {
        if let Err(error) = self
            .runtime
            .block_on(self.local.write_screen(frame, duration))
        {
            tracing::debug!(%error, "a frame of the shared screen was not sent");
        }
    }

    fn send_video_layer(&self, layer: ReducedLayer, frame: &[u8], duration: Duration) {
        if let Err(error) = self
            .runtime
            .block_on(self.local.write_video_layer(layer, frame, duration))
        {
            tracing::debug!(%error, "a frame of a simulcast layer was not sent");
        }
    }

    fn wants_reduced_layers(&self) -> bool {
        self.local.wants_reduced_layers()
    }
}

/// The native media side of calls.
struct NativeMedia {
    config: ClientConfig,
    /// Where the peer connections report to the app.
    events: Sender<CallEvent>,
    counters: Arc<SendCounters>,
    /// The others' voices, for the speaker and the speaking indicator.
    mixer: Arc<Mixer>,
    /// Where our own captured frames go (the self-view).
    preview: FrameSender,
    /// Where peer connections report their state.
    states_tx: mpsc::UnboundedSender<PeerStateChange>,
    /// Where peer connections put what they send through signaling (the room sends or
    /// queues it).
    signal_tx: mpsc::UnboundedSender<ClientMessage>,
    /// Where peer connections put the poses their data channel brings.
    poses_tx: mpsc::UnboundedSender<(PeerId, Pose)>,
    /// Our pose, for every peer connection's data channel.
    own_pose: tokio::sync::watch::Sender<Option<Pose>>,
    /// Where a share whose capture failed (its window closed) reports, with its number.
    share_ended_tx: mpsc::UnboundedSender<(u64, DeviceError)>,
    /// Shares started so far: the number of the next, so that a failure reported late
    /// is not taken for the current share's.
    shares_started: u64,
    call: Option<ActiveCall>,
}

impl NativeMedia {
    /// Switches or lists devices, or starts or stops sharing.
    async fn on_device_command(&mut self, command: CallCommand, roster: &Roster) {
        match command {
            CallCommand::SwitchVideo(input) => {
                let mut media = self.config.media.clone();
                media.video_input = input;
                self.switch_source(media, "the video source", LocalSender::switch_video, roster);
            }
            CallCommand::SwitchMicrophone(input) => {
                let mut media = self.config.media.clone();
                media.audio_input = input;
                self.switch_source(media, "the microphone", LocalSender::switch_audio, roster);
            }
            CallCommand::SwitchSpeaker(choice) => self.switch_speaker(choice, roster),
            CallCommand::SetVoiceProcessing(parts) => {
                self.config.media.voice_processing = parts;
                if let Some(sender) = self.call.as_ref().and_then(ActiveCall::sender) {
                    sender.set_voice_processing(parts);
                }
            }
            CallCommand::ListDevices => {
                let events = roster.events();
                // Asking the sound and camera layers can take a while: off the runtime.
                tokio::task::spawn_blocking(move || {
                    let shares = share_sources().unwrap_or_else(|problem| {
                        tracing::warn!(%problem, "nothing to share");
                        Vec::new()
                    });
                    let _ = events.send(CallEvent::Devices(AvailableDevices {
                        cameras: camera_names(),
                        microphones: audio_devices(Direction::Input),
                        speakers: audio_devices(Direction::Output),
                        shares,
                    }));
                });
            }
            _ => {}
        }
    }

    /// Asks each TURN server for an allocation in the background, so that refused
    /// credentials or an unreachable server are reported instead of a call that never
    /// connects.
    fn check_turn_servers(rtc: &RtcConfig, roster: &Roster) {
        if rtc.ice_servers.is_empty() {
            return;
        }
        let servers = rtc.ice_servers.clone();
        let events = roster.events();
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
        roster: &Roster,
    ) {
        let switched = match self.call.as_ref().and_then(ActiveCall::sender) {
            Some(sender) => switch(sender, &media),
            None => Ok(()),
        };
        match switched {
            Ok(()) => self.config.media = media,
            Err(problem) => roster.emit(CallEvent::Failed(CallError::Device(format!(
                "{what} stays as it was: {problem}"
            )))),
        }
    }

    /// The speaker `config.speaker` names, playing the mixer; `None` (and the user is
    /// told) when it cannot be opened.
    fn open_speaker(&self, roster: &Roster) -> Option<Speaker> {
        let choice = self.config.speaker.as_ref()?;
        Speaker::open(choice, self.mixer.clone())
            .inspect_err(|problem| {
                roster.emit(CallEvent::Failed(CallError::Device(format!(
                    "you cannot hear the others: {problem}"
                ))));
            })
            .ok()
    }

    /// Plays the others on `choice` from now on (`None`: nowhere); in a call, the old
    /// speaker closes before the new one opens.
    fn switch_speaker(&mut self, choice: Option<DeviceChoice>, roster: &Roster) {
        self.config.speaker = choice;
        let Some(call) = &mut self.call else { return };
        call.speaker = None;
        let speaker = self.open_speaker(roster);
        if let Some(call) = &mut self.call {
            call.speaker = speaker;
        }
    }

    /// Makes what we send match `config.share`: starts, replaces or stops the share in the
    /// running call and renegotiates every connection. Outside a call it waits for the
    /// next. A share that cannot start is reported and forgotten.
    async fn apply_share(&mut self, roster: &Roster) {
        let Some(call) = &mut self.call else { return };
        let wanted = self.config.share.clone();
        if call.screen.as_ref().map(|(_, screen)| screen.target()) == wanted.as_ref() {
            return;
        }
        call.screen = None;
        if let Some(target) = &wanted {
            let number = self.shares_started;
            self.shares_started += 1;
            match start_screen(target, number, call, &self.counters, &self.share_ended_tx) {
                Ok(screen) => call.screen = Some((number, screen)),
                Err(problem) => {
                    tracing::warn!(%problem, %target, "cannot share");
                    roster.emit(CallEvent::Failed(CallError::Device(format!(
                        "cannot share {target}: {problem}"
                    ))));
                    self.config.share = None;
                }
            }
        }
        let sharing = call.screen.is_some();
        // Each mesh connection, and our upstream to the SFU (the SFU offers it to everyone).
        let upstream = call.sfu.get(&None).map(|slot| (None, slot));
        let meshed = call.peers.iter().map(|(peer, slot)| (Some(peer), slot));
        for (peer, slot) in meshed.chain(upstream) {
            if let Err(error) = slot.remote.session.set_screen_shared(sharing).await {
                tracing::warn!(?peer, %error, "the connection cannot carry the change of share");
            }
        }
        roster.emit(CallEvent::OwnScreen(
            call.screen
                .as_ref()
                .map(|(_, screen)| screen.target().clone()),
        ));
    }

    /// The capture of share `number` failed (its window was closed): the share stops,
    /// and the user is told why. False when that share was over already.
    async fn share_ended(&mut self, number: u64, problem: &DeviceError, roster: &Roster) -> bool {
        let current = self
            .call
            .as_ref()
            .and_then(|call| call.screen.as_ref())
            .is_some_and(|(running, _)| *running == number);
        if !current {
            return false;
        }
        tracing::warn!(%problem, "sharing stopped");
        roster.emit(CallEvent::Failed(CallError::Device(format!(
            "sharing stopped: {problem}"
        ))));
        self.config.share = None;
        self.apply_share(roster).await;
        true
    }

    /// What a connection of `call` reports to, as connection `epoch` on `route`.
    fn peer_context(&self, call: &ActiveCall, epoch: u64, route: Route) -> PeerContext {
        PeerContext {
            outgoing: self.signal_tx.clone(),
            events: self.events.clone(),
            states: self.states_tx.clone(),
            poses: self.poses_tx.clone(),
            own_pose: self.own_pose.subscribe(),
            epoch,
            outbound: call.outbound.clone(),
            mixer: self.mixer.clone(),
            decode_video: self.config.decode_video,
            screen_keyframe: call.screen_keyframe.clone(),
            route,
        }
    }

    /// Everyone's receive figures, to the app.
    fn publish_stats(&self, roster: &Roster) {
        let Some(call) = &self.call else { return };
        // A member the SFU brings has its figures from there (told last, they stand).
        let downstreams = call
            .sfu
            .iter()
            .filter_map(|(feed, slot)| Some((feed.as_ref()?, slot)));
        for (peer_id, slot) in call.peers.iter().chain(downstreams) {
            roster.emit(CallEvent::PeerStats(
                peer_id.clone(),
                Box::new(slot.remote.stats()),
            ));
        }
    }
}

impl CallMedia for NativeMedia {
    type Attempt = Attempt;

    async fn connect_signaling(&mut self) -> Result<SignalingLink, SignalingError> {
        signaling::connect(&self.config.signal, self.config.signal_ca.as_deref()).await
    }

    fn reconnect(&self, after: Duration) -> Attempt {
        let url = self.config.signal.clone();
        let ca = self.config.signal_ca.clone();
        Box::pin(async move {
            tokio::time::sleep(after).await;
            signaling::connect(&url, ca.as_deref()).await
        })
    }

    fn list_rooms_apart(&self, events: Sender<CallEvent>) {
        let signal = self.config.signal.clone();
        let ca = self.config.signal_ca.clone();
        tokio::spawn(async move {
            let listing = signaling::list_public_rooms(&signal, ca.as_deref());
            let listed = tokio::time::timeout(LIST_TIMEOUT, listing).await;
            report_rooms(&events, listed.ok().flatten());
        });
    }

    /// Starts our encoders (or echo mode) and the speaker.
    async fn start_media(&mut self, start: MediaStart<'_>) -> Result<bool, CallError> {
        let MediaStart { name, roster, rtc } = start;
        let local = LocalMedia::new().map_err(|error| CallError::Media(error.to_string()))?;
        let outbound = if self.config.echo {
            Outbound::Echo(Arc::new(Echo::new(local.clone())))
        } else {
            let sink = Arc::new(FanOut {
                local: local.clone(),
                runtime: Handle::current(),
            });
            let sender = LocalSender::start(
                &self.config.media,
                name.as_str(),
                sink,
                self.counters.clone(),
                Some(self.preview.clone()),
                self.mixer.echo_reference().clone(),
            )
            .map_err(|error| CallError::Media(error.to_string()))?;
            Outbound::Encoded(Arc::new(sender))
        };
        let (audio_problem, video_problem) = match &outbound {
            Outbound::Encoded(sender) => (
                sender.audio_problem().cloned(),
                sender.video_problem().cloned(),
            ),
            Outbound::Echo(_) => (None, None),
        };
        if let Some(problem) = video_problem {
            roster.emit(CallEvent::Failed(CallError::Device(format!(
                "others see your name instead: {problem}"
            ))));
        }
        if let Some(problem) = &audio_problem {
            // No microphone: we are muted, and everyone is told.
            roster.emit(CallEvent::Failed(CallError::Device(format!(
                "you are muted: {problem}"
            ))));
        }
        let speaker = self.open_speaker(roster);
        self.call = Some(ActiveCall {
            local,
            outbound,
            speaker,
            peers: HashMap::new(),
            sfu: HashMap::new(),
            screen: None,
            screen_keyframe: Arc::default(),
        });
        self.apply_share(roster).await;
        Self::check_turn_servers(rtc, roster);
        Ok(audio_problem.is_some())
    }

    fn apply_media(&self, state: MediaState) {
        if let Some(sender) = self.call.as_ref().and_then(ActiveCall::sender) {
            sender.set_audio_enabled(state.audio);
            sender.set_video_enabled(state.video);
        }
    }

    fn share_pose(&self, pose: Pose) {
        self.own_pose.send_replace(Some(pose));
    }

    async fn share_screen(&mut self, target: Option<ShareTarget>, roster: &Roster) -> bool {
        let wanted = target.is_some();
        self.config.share = target;
        self.apply_share(roster).await;
        // A share that cannot start is forgotten.
        !wanted || self.config.share.is_some()
    }

    /// Closes every peer connection, stops the encoders and the screen capture, and closes
    /// the speaker (releasing the devices).
    async fn stop_media(&mut self, roster: &Roster) {
        self.publish_stats(roster);
        let Some(call) = self.call.take() else { return };
        if let Some(sender) = call.sender() {
            sender.stop();
        }
        if call.screen.is_some() {
            // The capture ends with the call; the next call shares again (`config.share`).
            roster.emit(CallEvent::OwnScreen(None));
        }
        let closing = call
            .peers
            .into_values()
            .chain(call.sfu.into_values())
            .map(|slot| slot.remote.close());
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, futures_util::future::join_all(closing)).await;
        drop(call.speaker);
        drop(call.screen);
        self.mixer.clear();
    }

    async fn connect(&mut self, opening: Opening<'_>) -> Result<(), CallError> {
        let Opening {
            peer,
            epoch,
            role,
            rtc,
            frames,
        } = opening;
        let Some(call) = &self.call else {
            return Ok(());
        };
        let context = self.peer_context(call, epoch, Route::Mesh);
        let remote =
            RemotePeer::connect(peer.clone(), role, rtc, &call.local, frames, context).await?;
        let Some(call) = &mut self.call else {
            return Ok(());
        };
        if call.screen.is_some()
            && let Err(error) = remote.session.set_screen_shared(true).await
        {
            tracing::warn!(%peer, %error, "our screen cannot go on the new connection");
        }
        if let Some(stale) = call.peers.insert(peer.clone(), PeerSlot { remote, epoch }) {
            stale.remote.retire();
        }
        Ok(())
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
        if let Err(error) = slot.remote.handle_signal(payload).await {
            tracing::warn!(%peer, %error, "a signal from a peer was refused");
        }
    }

    async fn retire(&mut self, peer: &PeerId, epoch: u64) {
        if let Some(call) = &mut self.call
            && call.peers.get(peer).is_some_and(|slot| slot.epoch == epoch)
            && let Some(slot) = call.peers.remove(peer)
        {
            slot.remote.retire();
        }
    }

    async fn open_sfu(&mut self, opening: SfuOpening<'_>) -> Result<(), CallError> {
        let (peer, role, route) = opening.side();
        let SfuOpening {
            feed,
            epoch,
            rtc,
            frames,
            ..
        } = opening;
        let Some(call) = &self.call else {
            return Ok(());
        };
        let context = self.peer_context(call, epoch, route);
        // The upstream brings no video: its frames go nowhere.
        let frames = frames.unwrap_or_else(|| frame_channel().0);
        let remote =
            RemotePeer::connect(peer.clone(), role, rtc, &call.local, frames, context).await?;
        let Some(call) = &mut self.call else {
            return Ok(());
        };
        if feed.is_none()
            && call.screen.is_some()
            && let Err(error) = remote.session.set_screen_shared(true).await
        {
            tracing::warn!(%error, "our screen cannot go on the new upstream");
        }
        if let Some(stale) = call.sfu.insert(feed.cloned(), PeerSlot { remote, epoch }) {
            stale.remote.retire();
        }
        Ok(())
    }

    async fn deliver_sfu(&mut self, feed: Option<&PeerId>, epoch: u64, payload: SignalPayload) {
        let Some(slot) = self
            .call
            .as_ref()
            .and_then(|call| call.sfu.get(&feed.cloned()))
            .filter(|slot| slot.epoch == epoch)
        else {
            return;
        };
        if let Err(error) = slot.remote.handle_signal(payload).await {
            tracing::warn!(?feed, %error, "a signal from the SFU was refused");
        }
    }

    async fn close_sfu(&mut self, feed: Option<&PeerId>, roster: &Roster) {
        let Some(slot) = self
            .call
            .as_mut()
            .and_then(|call| call.sfu.remove(&feed.cloned()))
        else {
            return;
        };
        if let Some(owner) = feed {
            roster.emit(CallEvent::PeerStats(
                owner.clone(),
                Box::new(slot.remote.stats()),
            ));
            self.mixer.remove(owner.as_str());
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, slot.remote.close()).await;
    }

    /// Closes the connection to a peer that is gone, with its last figures.
    async fn close_peer(&mut self, peer: &PeerId, roster: &Roster) {
        let Some(slot) = self.call.as_mut().and_then(|call| call.peers.remove(peer)) else {
            return;
        };
        roster.emit(CallEvent::PeerStats(
            peer.clone(),
            Box::new(slot.remote.stats()),
        ));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, slot.remote.close()).await;
        self.mixer.remove(peer.as_str());
    }
}
