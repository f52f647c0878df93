//! One remote peer of a call: its peer connection, its receive path (video decoder
//! thread, Opus decoder, statistics) and the task that routes its events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::poses::SEND_EVERY;
use super::room::Route;
use super::{CallError, CallEvent};
use crate::media::receive::lock_stats;
use crate::media::{
    CallStats, FrameSender, JoinStep, LocalSender, LossBasedController, Mixer, OpusDecoder,
    PeerBitrateTarget, ReceiveStats, RemoteVideoDecoder, ScreenStats, frame_channel,
};
use crate::rtc::{LocalMedia, PeerSession};
use crate::rtc::{PeerConnectionState, PeerEvent, Role, RtcConfig, RtcError};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{ClientMessage, PeerId, Pose};

/// What every peer of the call shares.
#[derive(Clone)]
pub(super) struct PeerContext {
    /// Signaling messages to send.
    pub outgoing: mpsc::UnboundedSender<ClientMessage>,
    /// Events for the ECS.
    pub events: Sender<CallEvent>,
    /// Tells the driver how each peer connection stands.
    pub states: mpsc::UnboundedSender<PeerStateChange>,
    /// Tells the driver where the peer stands (its pose data channel).
    pub poses: mpsc::UnboundedSender<(PeerId, Pose)>,
    /// Our own pose, for the peer's pose data channel.
    pub own_pose: watch::Receiver<Option<Pose>>,
    /// Which of the successive connections to this peer this one is.
    pub epoch: u64,
    /// Where what we send comes from.
    pub outbound: Outbound,
    /// Where decoded audio goes (playback and levels).
    pub mixer: Arc<Mixer>,
    /// Decode the peer's video (otherwise it is counted and dropped).
    pub decode_video: bool,
    /// Set when a peer asks for a key frame of the screen we share.
    pub screen_keyframe: Arc<AtomicBool>,
    /// Which of the call's connections this is (where its signals go).
    pub route: Route,
}

/// A peer connection changed state; `epoch` tells a replaced connection's last words
/// from the current one's.
#[derive(Debug, Clone)]
pub(super) struct PeerStateChange {
    /// The peer.
    pub peer_id: PeerId,
    /// Which connection to it.
    pub epoch: u64,
    /// Its new state.
    pub state: PeerConnectionState,
    /// Which of the call's connections it is.
    pub route: Route,
}

/// Where the media we send comes from.
#[derive(Clone)]
pub(super) enum Outbound {
    /// Our own sources through our own encoders (keyframes on request).
    Encoded(Arc<LocalSender>),
    /// Echo mode: what one peer sends us goes back out unchanged.
    Echo(Arc<Echo>),
}

/// Echo mode (`meetspace bot --echo`): the first peer whose media arrives is the
/// source, and its encoded frames and packets are sent to every peer as they came, so
/// a sender sees its own stamped video back and can measure the round trip.
pub(super) struct Echo {
    local: LocalMedia,
    source: Mutex<Option<(PeerId, Weak<PeerSession>)>>,
}

impl Echo {
    /// Echoes through `local`, our outgoing tracks.
    pub fn new(local: LocalMedia) -> Self {
        Self {
            local,
            source: Mutex::new(None),
        }
    }

    /// The current source; a panicked holder leaves it usable.
    fn source(&self) -> MutexGuard<'_, Option<(PeerId, Weak<PeerSession>)>> {
        self.source.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `peer_id` is the echo source, making it the source if there is none.
    fn claims(&self, peer_id: &PeerId, session: &Arc<PeerSession>) -> bool {
        let mut source = self.source();
        let alive = source
            .as_ref()
            .is_some_and(|(_, session)| session.strong_count() > 0);
        if !alive {
            *source = Some((peer_id.clone(), Arc::downgrade(session)));
        }
        source.as_ref().is_some_and(|(id, _)| id == peer_id)
    }

    /// Passes a peer's keyframe request on to the source.
    async fn request_keyframe(&self) {
        let source = self
            .source()
            .as_ref()
            .and_then(|(_, session)| session.upgrade());
        if let Some(session) = source {
            session.request_keyframe().await;
        }
    }
}

impl PeerContext {
    /// Sends `data` about the connection to `to` through signaling: to the peer, or
    /// to the SFU.
    pub fn signal(&self, to: &PeerId, data: serde_json::Value) {
        let message = match self.route {
            Route::Mesh => ClientMessage::Signal {
                to: to.clone(),
                data,
            },
            Route::SfuUp => ClientMessage::SfuSignal { feed: None, data },
            Route::SfuDown => ClientMessage::SfuSignal {
                feed: Some(to.clone()),
                data,
            },
        };
        let _ = self.outgoing.send(message);
    }
}

/// A connected (or connecting) remote peer. Dropping it stops its task and decoder.
pub(super) struct RemotePeer {
    /// The peer connection.
    pub session: Arc<PeerSession>,
    stats: Arc<Mutex<ReceiveStats>>,
    /// The figures of the screen the peer shares, while it does.
    screen_stats: Arc<Mutex<Option<SharedStats>>>,
    task: JoinHandle<()>,
}

impl RemotePeer {
    /// Opens the connection to `peer_id` in `role`, decoding its video into `frames`.
    pub async fn connect(
        peer_id: PeerId,
        role: Role,
        rtc: &RtcConfig,
        local: &LocalMedia,
        frames: FrameSender,
        context: PeerContext,
    ) -> Result<Self, CallError> {
        let media_error = |error: &dyn std::fmt::Display| CallError::Media(error.to_string());
        let stats = Arc::new(Mutex::new(ReceiveStats::new(Instant::now())));
        let (keyframe_tx, keyframe_rx) = mpsc::unbounded_channel();
        let decoder = RemoteVideoDecoder::start(frames, stats.clone(), move || {
            let _ = keyframe_tx.send(());
        })
        .map_err(|e| media_error(&e))?;
        let opus = OpusDecoder::new().map_err(|e| media_error(&e))?;
        let (peer_events_tx, peer_events) = mpsc::unbounded_channel();
        let session = Arc::new(
            PeerSession::new(rtc, local, role, peer_events_tx)
                .await
                .map_err(|e| media_error(&e))?,
        );
        lock_stats(&stats).reached(JoinStep::Session);
        let send_rate = match &context.outbound {
            Outbound::Encoded(sender) => Some(SendRate::new(sender)),
            Outbound::Echo(_) => None,
        };
        let screen_stats = Arc::new(Mutex::new(None));
        let router = PeerRouter {
            peer_id,
            send_rate,
            last_video_timestamp: None,
            session: session.clone(),
            stats: stats.clone(),
            decoder,
            screen: None,
            screen_stats: screen_stats.clone(),
            opus,
            context,
        };
        let task = tokio::spawn(router.run(peer_events, keyframe_rx));
        Ok(Self {
            session,
            stats,
            screen_stats,
            task,
        })
    }

    /// Applies one signaling message from the peer (see [`PeerSession::handle_signal`]).
    pub async fn handle_signal(&self, payload: SignalPayload) -> Result<(), RtcError> {
        let description = payload.is_description();
        self.session.handle_signal(payload).await?;
        if description {
            lock_stats(&self.stats).reached(JoinStep::DescriptionReceived);
        }
        Ok(())
    }

    /// The receive figures now.
    pub fn stats(&self) -> CallStats {
        let mut stats = lock_stats(&self.stats).snapshot();
        let screen = lock_screen_stats(&self.screen_stats).clone();
        stats.screen = screen.map(|screen| ScreenStats::of(&lock_stats(&screen).snapshot()));
        stats
    }

    /// Closes the connection (the peer sees it at once) and stops the receive path.
    pub async fn close(self) {
        self.session.close().await;
    }

    /// Stops the receive path at once (nothing more reaches the app) and closes the
    /// connection in the background: for a connection being replaced by a fresh one.
    pub fn retire(self) {
        let session = self.session.clone();
        drop(self);
        tokio::spawn(async move { session.close().await });
    }
}

impl Drop for RemotePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Receive figures that a decoder thread updates.
type SharedStats = Arc<Mutex<ReceiveStats>>;

/// Locks the place of a peer's screen figures; a panicked holder leaves it usable.
fn lock_screen_stats(stats: &Mutex<Option<SharedStats>>) -> MutexGuard<'_, Option<SharedStats>> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The peer's shared screen as we receive it: its decoder and the figures it keeps.
struct ScreenReceiver {
    decoder: RemoteVideoDecoder,
    stats: SharedStats,
}

/// How fast our shared video encoder may send as far as this peer is concerned.
struct SendRate {
    controller: LossBasedController,
    target: PeerBitrateTarget,
}

impl SendRate {
    fn new(sender: &LocalSender) -> Self {
        let bounds = sender.bitrate_bounds();
        Self {
            controller: LossBasedController::new(bounds),
            target: sender.bitrate_targets().register(bounds.max_kbps),
        }
    }
}

/// Routes one peer's events: signaling out, media into the decoders, state to the ECS.
struct PeerRouter {
    peer_id: PeerId,
    /// Congestion control of what we send this peer (not in echo mode: echoed frames
    /// keep the bitrate they came with).
    send_rate: Option<SendRate>,
    /// RTP timestamp of the last video frame, for echoing frames with their timing.
    last_video_timestamp: Option<u32>,
    session: Arc<PeerSession>,
    stats: Arc<Mutex<ReceiveStats>>,
    decoder: RemoteVideoDecoder,
    /// The peer's shared screen, while frames of it arrive.
    screen: Option<ScreenReceiver>,
    screen_stats: Arc<Mutex<Option<SharedStats>>>,
    opus: OpusDecoder,
    context: PeerContext,
}

impl Drop for PeerRouter {
    /// A connection that ends while the peer shares (replaced, closed) takes its screen
    /// with it; a fresh connection brings it back.
    fn drop(&mut self) {
        if self.screen.is_some() {
            let _ = self
                .context
                .events
                .send(CallEvent::PeerScreen(self.peer_id.clone(), None));
        }
    }
}

/// Length of the Opus packets meetspace and browsers send.
const OPUS_FRAME: Duration = Duration::from_millis(20);

impl PeerRouter {
    /// A frame of the peer's shared screen: decoded into the screen's own channel, which
    /// the app is handed with the first frame.
    fn on_screen_frame(&mut self, data: Vec<u8>, keyframe: bool) {
        if !self.context.decode_video {
            return;
        }
        if self.screen.is_none() {
            let (frames, video) = frame_channel();
            let stats = Arc::new(Mutex::new(ReceiveStats::new(Instant::now())));
            // The receive path already asks for a key frame after a loss; a frame that
            // fails to decode otherwise waits for the sender's periodic one.
            let decoder = match RemoteVideoDecoder::start(frames, stats.clone(), || {}) {
                Ok(decoder) => decoder,
                Err(error) => {
                    tracing::warn!(%error, "cannot decode the peer's screen");
                    return;
                }
            };
            *lock_screen_stats(&self.screen_stats) = Some(stats.clone());
            self.screen = Some(ScreenReceiver { decoder, stats });
            let _ = self
                .context
                .events
                .send(CallEvent::PeerScreen(self.peer_id.clone(), Some(video)));
        }
        if let Some(screen) = &mut self.screen {
            lock_stats(&screen.stats).on_video_received(data.len(), keyframe);
            if !screen.decoder.push(data) {
                tracing::debug!("the screen's decoder is behind; a frame was dropped");
            }
        }
    }

    /// The echo to feed, when we echo and this peer is the source.
    fn echo_source(&self) -> Option<Arc<Echo>> {
        match &self.context.outbound {
            Outbound::Echo(echo) if echo.claims(&self.peer_id, &self.session) => Some(echo.clone()),
            _ => None,
        }
    }

    async fn run(
        mut self,
        mut peer_events: mpsc::UnboundedReceiver<PeerEvent>,
        mut keyframe_wanted: mpsc::UnboundedReceiver<()>,
    ) {
        let mut own_pose = self.context.own_pose.clone();
        // Our pose goes out on each change and, changed or not, every SEND_EVERY: the
        // pose channel loses what it loses.
        let mut pose_again = tokio::time::interval(SEND_EVERY);
        loop {
            tokio::select! {
                event = peer_events.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    None => return,
                },
                Some(()) = keyframe_wanted.recv() => self.session.request_keyframe().await,
                Ok(()) = own_pose.changed() => {
                    let pose = *own_pose.borrow_and_update();
                    if let Some(pose) = pose {
                        self.session.send_pose(&pose).await;
                    }
                    pose_again.reset();
                }
                _ = pose_again.tick() => {
                    let pose = *own_pose.borrow();
                    if let Some(pose) = pose {
                        self.session.send_pose(&pose).await;
                    }
                }
            }
        }
    }

    async fn on_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Signal(payload) => {
                if payload.is_description() {
                    lock_stats(&self.stats).reached(JoinStep::DescriptionSent);
                }
                // Serializing our own enum of strings cannot fail.
                let data = serde_json::to_value(&payload).unwrap_or_default();
                self.context.signal(&self.peer_id, data);
            }
            PeerEvent::State(state) => {
                if state == PeerConnectionState::Connected {
                    lock_stats(&self.stats).reached(JoinStep::Connected);
                    // Start the peer's picture with a key frame right away, instead of
                    // delta frames it cannot decode and a request for one a round trip
                    // later.
                    if let Outbound::Encoded(sender) = &self.context.outbound {
                        sender.request_keyframe();
                    }
                }
                // Our upstream to the SFU is nobody's connection.
                if self.context.route != Route::SfuUp {
                    let _ = self
                        .context
                        .events
                        .send(CallEvent::PeerState(self.peer_id.clone(), state));
                }
                let _ = self.context.states.send(PeerStateChange {
                    peer_id: self.peer_id.clone(),
                    epoch: self.context.epoch,
                    state,
                    route: self.context.route,
                });
            }
            PeerEvent::VideoFrame {
                data,
                rtp_timestamp,
                keyframe,
            } => {
                lock_stats(&self.stats).on_video_received(data.len(), keyframe);
                let since_last = self
                    .last_video_timestamp
                    .replace(rtp_timestamp)
                    .map_or(0, |last| rtp_timestamp.wrapping_sub(last));
                if let Some(echo) = self.echo_source() {
                    let duration = Duration::from_micros(u64::from(since_last) * 1000 / 90)
                        .clamp(Duration::from_millis(1), Duration::from_millis(200));
                    let _ = echo.local.write_video(&data, duration).await;
                }
                if self.context.decode_video && !self.decoder.push(data) {
                    self.session.request_keyframe().await;
                }
            }
            PeerEvent::VideoFramesDropped { frames } => {
                lock_stats(&self.stats).on_video_dropped(frames);
            }
            PeerEvent::ScreenFrame { data, keyframe, .. } => self.on_screen_frame(data, keyframe),
            PeerEvent::ScreenEnded => {
                if self.screen.take().is_some() {
                    *lock_screen_stats(&self.screen_stats) = None;
                    let _ = self
                        .context
                        .events
                        .send(CallEvent::PeerScreen(self.peer_id.clone(), None));
                }
            }
            PeerEvent::ScreenKeyframeRequested => {
                self.context.screen_keyframe.store(true, Ordering::Relaxed);
            }
            PeerEvent::AudioPacket { data, .. } => {
                if let Some(echo) = self.echo_source() {
                    let _ = echo.local.write_audio(&data, OPUS_FRAME).await;
                }
                match self.opus.decode(&data) {
                    Ok(frame) => {
                        self.context.mixer.push(self.peer_id.as_str(), &frame);
                        lock_stats(&self.stats).on_audio(&frame);
                    }
                    Err(error) => tracing::debug!(%error, "dropping an audio packet"),
                }
            }
            PeerEvent::Pose(pose) => {
                let _ = self.context.poses.send((self.peer_id.clone(), pose));
            }
            PeerEvent::KeyframeRequested => match &self.context.outbound {
                Outbound::Encoded(sender) => sender.request_keyframe(),
                Outbound::Echo(echo) => echo.request_keyframe().await,
            },
            PeerEvent::ReceiverReport { fraction_lost } => {
                if let Some(rate) = &mut self.send_rate {
                    let kbps = rate
                        .controller
                        .on_receiver_report(fraction_lost, Instant::now());
                    rate.target.set(kbps);
                    tracing::debug!(peer = %self.peer_id, fraction_lost, kbps, "receiver report");
                }
            }
            PeerEvent::Stats {
                rtt_ms,
                candidate_pair,
                packets_lost,
                packets_received,
                feedback,
                ..
            } => lock_stats(&self.stats).on_transport(
                rtt_ms,
                candidate_pair,
                packets_lost,
                packets_received,
                feedback,
            ),
            PeerEvent::Error(message) => {
                let _ = self
                    .context
                    .events
                    .send(CallEvent::Failed(CallError::Media(message)));
            }
            // The native stack never reports these (the driver checks TURN servers).
            PeerEvent::Turn(problem) => {
                let _ = self
                    .context
                    .events
                    .send(CallEvent::Failed(CallError::Turn(problem)));
            }
        }
    }
}
