//! The browser call driver: carries out what the room state machine ([`super::room`])
//! decides, on the browser's event loop, through the shared [`CallCore`], as
//! `driver.rs` does natively. The browser captures, encodes, decodes and plays; the
//! media side here ([`BrowserMedia`]) opens the camera and microphone, one
//! `RTCPeerConnection` per peer, hands each peer's streams to the page's video taps and
//! voices, plays the voices so that the echo canceller hears them (`media::web_playback`),
//! switches the microphone's voice processing, shares a screen the user picks in the
//! browser's own picker, shows the screens peers share, and reads their statistics.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bevy::platform::time::Instant;
use crossbeam_channel::Sender;
use tokio::sync::{mpsc, oneshot};
use web_sys::MediaStream;

use super::executor::{CallCore, CallMedia, MediaStart, Opening, SfuOpening, report_rooms};
use super::poses::SEND_EVERY;
use super::room::Route;
use super::roster::Roster;
use super::{AvailableDevices, CallCommand, CallError, CallEvent, MediaState};
use crate::browser::{describe, sleep};
use crate::config::ClientConfig;
use crate::media::web::{
    CAMERA_COPY_SIDE, LevelMeter, MediaAccessError, SCREEN_COPY_SIDE, ScreenShare, VideoTap, Voice,
    apply_voice_processing, open_camera_and_microphone, set_tracks_enabled, stop_tracks,
};
use crate::media::web_playback::Playback;
use crate::media::{CallStats, FrameSender, ShareTarget, frame_channel};
use crate::rtc::{BrowserStats, LocalMedia, PeerEvent, PeerSession, Role, RtcConfig};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{ClientMessage, PeerId, Pose};
use crate::signaling::{self, SignalingError, SignalingLink};

/// How long listing the public rooms may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the statistics of each connection are read.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// A reconnection attempt in flight: wait, then connect.
type Attempt = Pin<Box<dyn Future<Output = Result<SignalingLink, SignalingError>>>>;

/// The signaling connection opened as the page starts, before the room asks for one.
type EarlyLink = oneshot::Receiver<Result<SignalingLink, SignalingError>>;

/// Opens the signaling connection at once (or takes the one the page opened while the
/// wasm downloaded, see `signaling::ws_web`). Every page joins the lobby (or the room its
/// address names) in its first frame, and a software renderer takes most of a second
/// over each of the first frames, during which the page's event loop does nothing
/// else: opened when asked for, the connection's handshakes (TCP, TLS, WebSocket) and
/// then the join each waited for the end of a frame, and the page was in the lobby
/// frames later.
fn open_early_link(config: &ClientConfig) -> EarlyLink {
    let (link_tx, link_rx) = oneshot::channel();
    let signal = config.signal.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let _ = link_tx.send(signaling::connect(&signal, None).await);
    });
    link_rx
}

/// Something one of the call's peer connections reported.
struct PeerReport {
    peer: PeerId,
    epoch: u64,
    /// Which of the call's connections it is.
    route: Route,
    event: PeerEvent,
}

/// Runs until the ECS side drops its command sender.
pub(super) async fn run(
    config: ClientConfig,
    preview: FrameSender,
    mut commands: mpsc::UnboundedReceiver<CallCommand>,
    events: Sender<CallEvent>,
) {
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let (share_ended_tx, mut share_ended) = mpsc::unbounded_channel();
    let mut media = BrowserMedia {
        // What we share waits for the room's wall: the room asks for it.
        config: ClientConfig {
            share: None,
            ..config.clone()
        },
        preview,
        reports_tx,
        events: events.clone(),
        share_ended_tx,
        shares_started: 0,
        own_pose: Cell::new(None),
        call: None,
        early_link: Some(open_early_link(&config)),
    };
    let mut core = CallCore::<Attempt>::new(&config, events);
    let mut stats_due = Instant::now();
    let mut pose_due = Instant::now();
    loop {
        let wake = core
            .room
            .next_deadline()
            .map_or(stats_due, |deadline| deadline.min(stats_due))
            .min(pose_due);
        // Not `biased`: the branch tried first is drawn each time, so that on a page too
        // busy to keep up, one that is often ready (the app's commands, every frame)
        // cannot starve the others.
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => {
                    if let Some(command) = core.room.command(command, Instant::now()) {
                        media.device_command(command, &core.roster).await;
                    }
                }
                None => break,
            },
            news = core.next_signaling() => core.on_signaling(news),
            Some(report) = reports.recv() => media.on_peer_report(report, &mut core),
            Some(share) = share_ended.recv() => {
                if media.share_ended(share) {
                    // Stopped here at once (as natively: also while signaling is
                    // down), then the room gives the wall back.
                    media.share_screen(None, &core.roster).await;
                    core.room.command(CallCommand::ShareScreen(None), Instant::now());
                }
            }
            () = sleep(wake.saturating_duration_since(Instant::now())) => {}
        }
        // All the connections said by now is heard before anything is judged late:
        // poses come 20 times a second from each peer, and taking one report per turn
        // of a loop that a busy page slows (statistics, descriptions) left a
        // connection's "connected" behind hundreds of them until the room gave the
        // connection up.
        while let Ok(report) = reports.try_recv() {
            media.on_peer_report(report, &mut core);
        }
        // So is all the server said: a negotiation is a dozen messages (descriptions and
        // candidates), and one per turn of a slow page's loop took longer than the
        // connect limit. Each is carried out before the next is heard, as when they come
        // one per turn.
        while let Some(news) = core.said_already() {
            core.on_signaling(news);
            core.carry_out(&mut media).await;
        }
        // What is due is done after whichever branch ran: on a page too busy to keep
        // up, the others are always ready and the timer's branch would wait for ever.
        let now = Instant::now();
        if core
            .room
            .next_deadline()
            .is_some_and(|deadline| now >= deadline)
        {
            core.room.tick(now);
        }
        if now >= pose_due {
            // Every 50 ms, changed or not: the channel loses what it loses.
            pose_due = now + SEND_EVERY;
            media.send_pose();
        }
        if now >= stats_due {
            media.read_stats(&core.roster).await;
            // From the end of the reading: on a slow page the reading itself takes
            // seconds, and the loop would read statistics and little else.
            stats_due = Instant::now() + STATS_INTERVAL;
        }
        core.carry_out(&mut media).await;
    }
    core.room.leave();
    core.carry_out(&mut media).await;
}

/// The media of the call in progress: our camera and microphone (none when they could
/// not be opened: we watch and listen only) and one connection per peer.
struct ActiveCall {
    local: LocalMedia,
    /// Our camera in the self-view.
    _self_view: Option<VideoTap>,
    /// How loud we are (the overlay's own level, the muted reminder).
    _own_level: Option<LevelMeter>,
    /// Where the voices play (none when the page cannot play sound).
    _playback: Option<Playback>,
    /// The screen we share, while we do, and which share it is (see
    /// [`BrowserMedia::share_ended`]).
    screen: Option<(u64, ScreenShare)>,
    peers: HashMap<PeerId, RemotePeer>,
    /// Our streams through the SFU: the upstream (`None`) and a downstream per member.
    sfu: HashMap<Option<PeerId>, RemotePeer>,
}

/// A peer's shared screen as the page shows it: copied into the frame channel the
/// wall shows. Dropping it (the share ended, the connection went) tells the app.
struct RemoteScreen {
    _tap: VideoTap,
    peer: PeerId,
    events: Sender<CallEvent>,
}

impl Drop for RemoteScreen {
    fn drop(&mut self) {
        let _ = self
            .events
            .send(CallEvent::PeerScreen(self.peer.clone(), None));
    }
}

/// One remote peer: the connection now, what plays its streams, and its figures.
struct RemotePeer {
    session: PeerSession,
    epoch: u64,
    frames: FrameSender,
    video: Option<VideoTap>,
    voice: Option<Voice>,
    /// The peer's shared screen, while it arrives.
    screen: Option<RemoteScreen>,
    stats: CallStats,
    /// When `stats` was last read.
    read_at: Option<Instant>,
    /// Bytes of the peer's screen received by then.
    screen_bytes: u64,
}

/// The browser's media side of calls.
struct BrowserMedia {
    config: ClientConfig,
    /// Where our own camera's frames go (the self-view).
    preview: FrameSender,
    /// Where the peer connections report.
    reports_tx: mpsc::UnboundedSender<PeerReport>,
    /// Where the app hears of the screens peers share.
    events: Sender<CallEvent>,
    /// Where a share the browser ended (its "stop sharing" bar) is reported, by number.
    share_ended_tx: mpsc::UnboundedSender<u64>,
    /// How many shares were started: the next one's number.
    shares_started: u64,
    /// Our pose as last told, for every connection's pose data channel.
    own_pose: Cell<Option<Pose>>,
    call: Option<ActiveCall>,
    /// The connection opened at start, until the first join takes it.
    early_link: Option<EarlyLink>,
}

impl BrowserMedia {
    /// Sends our pose on every connection's pose data channel (those open).
    fn send_pose(&self) {
        let (Some(pose), Some(call)) = (self.own_pose.get(), &self.call) else {
            return;
        };
        for remote in call.peers.values() {
            remote.session.send_pose(&pose);
        }
    }

    /// Connection `epoch` to `peer`, if it is the current one.
    fn remote(&mut self, route: Route, peer: &PeerId, epoch: u64) -> Option<&mut RemotePeer> {
        let call = self.call.as_mut()?;
        match route {
            Route::Mesh => call.peers.get_mut(peer),
            Route::SfuUp => call.sfu.get_mut(&None),
            Route::SfuDown => call.sfu.get_mut(&Some(peer.clone())),
        }
        .filter(|remote| remote.epoch == epoch)
    }

    /// Opens connection `epoch` on `route` to `peer` in `role`, its video into
    /// `frames`; it reports as `peer`.
    async fn open(
        &mut self,
        route: Route,
        peer: &PeerId,
        epoch: u64,
        role: Role,
        rtc: &RtcConfig,
        frames: FrameSender,
    ) -> Result<RemotePeer, CallError> {
        let Some(call) = &self.call else {
            return Err(CallError::Media(
                "the call's media is not running".to_owned(),
            ));
        };
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let session = PeerSession::new(rtc, &call.local, role, events_tx)
            .await
            .map_err(|error| CallError::Media(error.to_string()))?;
        // A mesh connection and our upstream to the SFU carry our screen.
        if route != Route::SfuDown
            && let Some((_, share)) = &call.screen
            && let Err(error) = session
                .set_screen_shared(Some(share.stream().clone()))
                .await
        {
            tracing::warn!(%peer, %error, "our screen cannot go on the new connection");
        }
        let reports = self.reports_tx.clone();
        let tagged = peer.clone();
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(event) = events.recv().await {
                let report = PeerReport {
                    peer: tagged.clone(),
                    epoch,
                    route,
                    event,
                };
                if reports.send(report).is_err() {
                    return;
                }
            }
        });
        Ok(RemotePeer {
            session,
            epoch,
            frames,
            video: None,
            voice: None,
            screen: None,
            stats: CallStats::default(),
            read_at: None,
            screen_bytes: 0,
        })
    }

    /// Switches the voice processing (on the microphone now, if the browser lets us,
    /// and for the next call) or lists devices. The browser keeps the devices its
    /// permission prompt gave: it lists none, and switching is refused with a word on
    /// where to change them.
    async fn device_command(&mut self, command: CallCommand, roster: &Roster) {
        match command {
            CallCommand::ListDevices => {
                roster.emit(CallEvent::Devices(AvailableDevices::default()));
            }
            CallCommand::SetVoiceProcessing(parts) => {
                self.config.media.voice_processing = parts;
                let Some(stream) = self.call.as_ref().and_then(|call| call.local.stream()) else {
                    return;
                };
                if let Err(error) = apply_voice_processing(stream, parts).await {
                    tracing::warn!(%error, ?parts, "the voice processing stays as it was");
                    roster.emit(CallEvent::Failed(CallError::Device(error.to_string())));
                }
            }
            command => {
                tracing::warn!(
                    ?command,
                    "the browser build uses the devices the page was given"
                );
                roster.emit(CallEvent::Failed(CallError::Device(
                    "the browser uses the camera and microphone it gave this page; change \
                     them in the browser's site settings"
                        .to_owned(),
                )));
            }
        }
    }

    /// Makes what we send match `config.share`: asks the browser for a screen (its own
    /// picker chooses which: the target is the native client's) or stops sharing, and
    /// renegotiates every connection. Outside a call it waits for the next. A share the
    /// browser refuses is reported and forgotten.
    async fn apply_share(&mut self, roster: &Roster) {
        let number = self.shares_started;
        let ended = self.share_ended_tx.clone();
        let Some(call) = &mut self.call else { return };
        if call.screen.is_some() == self.config.share.is_some() {
            return;
        }
        call.screen = None;
        if self.config.share.is_some() {
            self.shares_started += 1;
            match ScreenShare::open(move || {
                let _ = ended.send(number);
            })
            .await
            {
                Ok(share) => call.screen = Some((number, share)),
                Err(error) => {
                    tracing::warn!(%error, "cannot share");
                    roster.emit(CallEvent::Failed(CallError::Device(format!(
                        "cannot share: {error}"
                    ))));
                    self.config.share = None;
                }
            }
        }
        let stream = call
            .screen
            .as_ref()
            .map(|(_, share)| share.stream().clone());
        // Each mesh connection, and our upstream to the SFU (the SFU offers it to everyone).
        let upstream = call.sfu.get(&None).map(|remote| (None, remote));
        let meshed = call.peers.iter().map(|(peer, remote)| (Some(peer), remote));
        for (peer, remote) in meshed.chain(upstream) {
            if let Err(error) = remote.session.set_screen_shared(stream.clone()).await {
                tracing::warn!(?peer, %error, "the connection cannot carry the change of share");
            }
        }
        roster.emit(CallEvent::OwnScreen(
            stream.map(|_| ShareTarget::Screen(None)),
        ));
    }

    /// Whether share `number`, which ended from outside (the browser's "stop sharing"
    /// bar), is the running one: then we stop sharing.
    fn share_ended(&self, number: u64) -> bool {
        self.call
            .as_ref()
            .and_then(|call| call.screen.as_ref())
            .is_some_and(|(running, _)| *running == number)
    }

    fn on_peer_report(&mut self, report: PeerReport, core: &mut CallCore<Attempt>) {
        let PeerReport {
            peer,
            epoch,
            route,
            event,
        } = report;
        match event {
            PeerEvent::Signal(payload) => {
                // Serializing our own enum of strings cannot fail.
                let data = serde_json::to_value(&payload).unwrap_or_default();
                let message = match route {
                    Route::Mesh => ClientMessage::Signal { to: peer, data },
                    Route::SfuUp => ClientMessage::SfuSignal { feed: None, data },
                    Route::SfuDown => ClientMessage::SfuSignal {
                        feed: Some(peer),
                        data,
                    },
                };
                core.room.send_signal(message);
            }
            PeerEvent::State(state) => {
                let now = Instant::now();
                match route {
                    Route::Mesh => {
                        core.roster.emit(CallEvent::PeerState(peer.clone(), state));
                        core.room.peer_state(&peer, epoch, state, now);
                    }
                    Route::SfuUp => core.room.sfu_state(None, epoch, state, now),
                    Route::SfuDown => {
                        core.roster.emit(CallEvent::PeerState(peer.clone(), state));
                        core.room.sfu_state(Some(&peer), epoch, state, now);
                    }
                }
            }
            PeerEvent::RemoteStream(stream) => self.play(route, &peer, epoch, &stream),
            PeerEvent::RemoteScreen(stream) => self.show_screen(route, &peer, epoch, &stream),
            PeerEvent::ScreenEnded => {
                if let Some(remote) = self.remote(route, &peer, epoch) {
                    remote.screen = None;
                }
            }
            PeerEvent::Pose(pose) => core.room.peer_pose(&peer, pose, Instant::now()),
            PeerEvent::Error(message) => {
                core.roster
                    .emit(CallEvent::Failed(CallError::Media(message)));
            }
            PeerEvent::Turn(problem) => {
                core.roster
                    .emit(CallEvent::Failed(CallError::Turn(problem)));
            }
            // The browser decodes and measures media itself (see `read_stats`).
            _ => {}
        }
    }

    /// Starts playing a stream connection `epoch` to `peer` received: its video into
    /// the panel's frame channel, its audio into a voice of its own. A stream is
    /// announced once per track, so each part starts once.
    fn play(&mut self, route: Route, peer: &PeerId, epoch: u64, stream: &MediaStream) {
        let Some(remote) = self.remote(route, peer, epoch) else {
            return;
        };
        if remote.video.is_none() && stream.get_video_tracks().length() > 0 {
            match VideoTap::start(stream, remote.frames.clone(), CAMERA_COPY_SIDE) {
                Ok(tap) => remote.video = Some(tap),
                Err(error) => tracing::warn!(%peer, "no video: {}", describe(&error)),
            }
        }
        if remote.voice.is_none() && stream.get_audio_tracks().length() > 0 {
            match Voice::start(peer.clone(), stream) {
                Ok(voice) => remote.voice = Some(voice),
                Err(error) => tracing::warn!(%peer, "no audio: {}", describe(&error)),
            }
        }
    }

    /// Shows the screen connection `epoch` to `peer` brought: its frames go to a channel
    /// of their own, which the app puts on the wall.
    fn show_screen(&mut self, route: Route, peer: &PeerId, epoch: u64, stream: &MediaStream) {
        let events = self.events.clone();
        let Some(remote) = self.remote(route, peer, epoch) else {
            return;
        };
        // A new track of the same share replaces the old tap (and its wall) first.
        remote.screen = None;
        let (frames, video) = frame_channel();
        match VideoTap::start(stream, frames, SCREEN_COPY_SIDE) {
            Ok(tap) => {
                let _ = events.send(CallEvent::PeerScreen(peer.clone(), Some(video)));
                remote.screen = Some(RemoteScreen {
                    _tap: tap,
                    peer: peer.clone(),
                    events,
                });
            }
            Err(error) => tracing::warn!(%peer, "no shared screen: {}", describe(&error)),
        }
    }

    /// Reads every connection's statistics into its [`CallStats`] and reports them.
    async fn read_stats(&mut self, roster: &Roster) {
        let Some(call) = &mut self.call else { return };
        // A member the SFU brings has its figures from there (told last, they stand).
        let downstreams = call
            .sfu
            .iter_mut()
            .filter_map(|(feed, remote)| Some((feed.as_ref()?, remote)));
        let remotes: Vec<_> = call.peers.iter_mut().chain(downstreams).collect();
        // All at once: each reading waits for a turn of the page's event loop, which a
        // slow page spends drawing a frame.
        let readings = futures_util::future::join_all(
            remotes.iter().map(|(_, remote)| remote.session.stats()),
        )
        .await;
        for ((peer, remote), reading) in remotes.into_iter().zip(readings) {
            match reading {
                Ok(reading) => {
                    let now = Instant::now();
                    let interval = remote.read_at.map(|at| now.saturating_duration_since(at));
                    remote.read_at = Some(now);
                    update_stats(
                        &mut remote.stats,
                        &mut remote.screen_bytes,
                        &reading,
                        interval,
                    );
                    roster.emit(CallEvent::PeerStats(
                        peer.clone(),
                        Box::new(remote.stats.clone()),
                    ));
                }
                Err(error) => tracing::debug!(%peer, %error, "no statistics"),
            }
        }
    }
}

impl CallMedia for BrowserMedia {
    type Attempt = Attempt;

    async fn connect_signaling(&mut self) -> Result<SignalingLink, SignalingError> {
        // The connection opened at start serves the first join, and its failure is
        // the join's (a second attempt at once would fail alike). If the server said
        // something on it first (it had closed it, say), a new one is opened.
        if let Some(early) = self.early_link.take() {
            match early.await {
                Ok(Ok(link)) if link.incoming.is_empty() => return Ok(link),
                Ok(Err(error)) => return Err(error),
                Ok(Ok(_)) | Err(_) => {}
            }
        }
        signaling::connect(&self.config.signal, None).await
    }

    fn reconnect(&self, after: Duration) -> Attempt {
        let url = self.config.signal.clone();
        Box::pin(async move {
            sleep(after).await;
            signaling::connect(&url, None).await
        })
    }

    fn list_rooms_apart(&self, events: Sender<CallEvent>) {
        let signal = self.config.signal.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let listed = tokio::select! {
                biased;
                listed = signaling::list_public_rooms(&signal, None) => listed,
                () = sleep(LIST_TIMEOUT) => None,
            };
            report_rooms(&events, listed);
        });
    }

    /// Opens the camera and microphone (a refusal leaves us watching and listening)
    /// and the sound output.
    async fn start_media(&mut self, start: MediaStart<'_>) -> Result<bool, CallError> {
        let roster = start.roster;
        let stream = match open_camera_and_microphone(self.config.media.voice_processing).await {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::warn!(%error, "joining without camera and microphone");
                roster.emit(CallEvent::Failed(CallError::DevicesUnavailable(
                    devices_message(&error),
                )));
                None
            }
        };
        let self_view = stream.as_ref().and_then(|stream| {
            VideoTap::start(stream, self.preview.clone(), CAMERA_COPY_SIDE)
                .inspect_err(|error| tracing::warn!("no self-view: {}", describe(error)))
                .ok()
        });
        let own_level = stream.as_ref().and_then(|stream| {
            LevelMeter::own(stream)
                .inspect_err(|error| tracing::warn!("no own level: {}", describe(error)))
                .ok()
        });
        // After the camera prompt: with its permission, the loopback's candidates carry
        // addresses instead of mDNS names.
        let playback = match Playback::start().await {
            Ok(playback) => {
                if let Some(problem) = playback.problem() {
                    roster.emit(CallEvent::Failed(CallError::Device(problem.to_string())));
                }
                Some(playback)
            }
            Err(error) => {
                tracing::warn!(%error, "no sound");
                roster.emit(CallEvent::Failed(CallError::Device(error.to_string())));
                None
            }
        };
        let microphone_missing = stream
            .as_ref()
            .is_none_or(|stream| stream.get_audio_tracks().length() == 0);
        self.call = Some(ActiveCall {
            local: LocalMedia::new(stream),
            _self_view: self_view,
            _own_level: own_level,
            _playback: playback,
            screen: None,
            peers: HashMap::new(),
            sfu: HashMap::new(),
        });
        // What the page address asked to share from the start.
        self.apply_share(roster).await;
        Ok(microphone_missing)
    }

    fn share_pose(&self, pose: Pose) {
        self.own_pose.set(Some(pose));
        self.send_pose();
    }

    async fn share_screen(&mut self, target: Option<ShareTarget>, roster: &Roster) -> bool {
        let wanted = target.is_some();
        self.config.share = target;
        self.apply_share(roster).await;
        // A share that cannot start is forgotten.
        !wanted || self.config.share.is_some()
    }

    /// Applies our switches to our tracks.
    fn apply_media(&self, state: MediaState) {
        if let Some(stream) = self.call.as_ref().and_then(|call| call.local.stream()) {
            set_tracks_enabled(stream, false, state.audio);
            set_tracks_enabled(stream, true, state.video);
        }
    }

    /// Closes every peer connection and releases the camera, the microphone and the
    /// shared screen.
    async fn stop_media(&mut self, roster: &Roster) {
        let Some(call) = self.call.take() else { return };
        if call.screen.is_some() {
            // The capture ends with the call; the next call shares again (`config.share`).
            roster.emit(CallEvent::OwnScreen(None));
        }
        for (peer, remote) in call.peers {
            roster.emit(CallEvent::PeerStats(peer, Box::new(remote.stats.clone())));
            remote.session.close().await;
        }
        for remote in call.sfu.into_values() {
            remote.session.close().await;
        }
        if let Some(stream) = call.local.stream() {
            stop_tracks(stream);
        }
    }

    async fn connect(&mut self, opening: Opening<'_>) -> Result<(), CallError> {
        let Opening {
            peer,
            epoch,
            role,
            rtc,
            frames,
        } = opening;
        if self.call.is_none() {
            return Ok(());
        }
        let remote = self
            .open(Route::Mesh, peer, epoch, role, rtc, frames)
            .await?;
        let stale = self
            .call
            .as_mut()
            .and_then(|call| call.peers.insert(peer.clone(), remote));
        if let Some(stale) = stale {
            stale.session.close().await;
        }
        Ok(())
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
        if self.call.is_none() {
            return Ok(());
        }
        // The upstream brings no video: its frames go nowhere.
        let frames = frames.unwrap_or_else(|| frame_channel().0);
        let remote = self.open(route, peer, epoch, role, rtc, frames).await?;
        let stale = self
            .call
            .as_mut()
            .and_then(|call| call.sfu.insert(feed.cloned(), remote));
        if let Some(stale) = stale {
            stale.session.close().await;
        }
        Ok(())
    }

    async fn deliver_sfu(&mut self, feed: Option<&PeerId>, epoch: u64, payload: SignalPayload) {
        let remote = self
            .call
            .as_mut()
            .and_then(|call| call.sfu.get_mut(&feed.cloned()))
            .filter(|remote| remote.epoch == epoch);
        let Some(remote) = remote else { return };
        if let Err(error) = remote.session.handle_signal(payload).await {
            tracing::warn!(?feed, %error, "a signal from the SFU was refused");
        }
    }

    async fn close_sfu(&mut self, feed: Option<&PeerId>, roster: &Roster) {
        let Some(remote) = self
            .call
            .as_mut()
            .and_then(|call| call.sfu.remove(&feed.cloned()))
        else {
            return;
        };
        if let Some(owner) = feed {
            roster.emit(CallEvent::PeerStats(
                owner.clone(),
                Box::new(remote.stats.clone()),
            ));
        }
        remote.session.close().await;
    }

    async fn deliver(&mut self, peer: &PeerId, epoch: u64, payload: SignalPayload) {
        let Some(remote) = self.remote(Route::Mesh, peer, epoch) else {
            return;
        };
        if let Err(error) = remote.session.handle_signal(payload).await {
            tracing::warn!(%peer, %error, "a signal from a peer was refused");
        }
    }

    async fn retire(&mut self, peer: &PeerId, epoch: u64) {
        if let Some(call) = &mut self.call
            && call
                .peers
                .get(peer)
                .is_some_and(|remote| remote.epoch == epoch)
            && let Some(remote) = call.peers.remove(peer)
        {
            remote.session.close().await;
        }
    }

    /// Closes the connection to a peer that is gone, with its last figures.
    async fn close_peer(&mut self, peer: &PeerId, roster: &Roster) {
        let Some(remote) = self.call.as_mut().and_then(|call| call.peers.remove(peer)) else {
            return;
        };
        roster.emit(CallEvent::PeerStats(
            peer.clone(),
            Box::new(remote.stats.clone()),
        ));
        remote.session.close().await;
    }
}

/// Folds a reading of the browser's statistics into `stats`; `interval` since the
/// previous reading (rates need one), which counted `screen_bytes` of the peer's
/// screen (updated here).
fn update_stats(
    stats: &mut CallStats,
    screen_bytes: &mut u64,
    reading: &BrowserStats,
    interval: Option<Duration>,
) {
    if let Some(interval) = interval.filter(|interval| !interval.is_zero()) {
        let bytes = reading
            .video_bytes_received
            .saturating_sub(stats.video_bytes_received);
        stats.video_kbps = bytes as f64 * 8.0 / 1000.0 / interval.as_secs_f64();
    }
    stats.video_codec = reading.video_codec;
    stats.width = reading.width;
    stats.height = reading.height;
    stats.frames_decoded = reading.frames_decoded;
    stats.fps = reading.fps;
    stats.video_bytes_received = reading.video_bytes_received;
    stats.audio_packets = reading.audio_packets;
    stats.audio_level = reading.audio_level;
    stats.rtt_ms = reading.rtt_ms;
    stats.candidate_pair = reading.candidate_pair;
    stats.packets_lost = reading.packets_lost;
    stats.packets_received = reading.packets_received;
    stats.freezes = reading.freezes;
    stats.frozen_ms = reading.frozen_ms;
    stats.feedback = reading.feedback;
    stats.screen = reading.screen.map(|mut screen| {
        if let Some(interval) = interval.filter(|interval| !interval.is_zero()) {
            let bytes = reading.screen_bytes_received.saturating_sub(*screen_bytes);
            screen.kbps = bytes as f64 * 8.0 / 1000.0 / interval.as_secs_f64();
        }
        screen
    });
    *screen_bytes = reading.screen_bytes_received;
}

/// What the overlay says when the camera and microphone stay closed.
fn devices_message(error: &MediaAccessError) -> String {
    format!("{error}: others cannot see or hear you")
}
