//! One peer connection: building it, the offer/answer negotiation and trickled
//! candidates, keyframe requests, and closing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::rtc::ice::mdns::MulticastDnsMode;
use ::rtc::interceptor::Slot;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder, RTCIceCandidateInit,
    RTCIceServer, RTCIceTransportPolicy, RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use super::codecs::{media_engine, register_interceptors, supported_codecs};
use super::feedback::{FEEDBACK_TAP_SLOT, FeedbackTap};
use super::handler::Handler;
use super::monitor::monitor;
use super::outbound::{LocalMedia, Sink};
use super::poses::{open_pose_channel, receive_poses, send_pose};
use super::receive::watch_keyframe_requests;
use super::shared::{LocalSignal, Shared};
use super::{lock, stack_error};
use crate::rtc::ice::IceTransportPolicy;
use crate::rtc::{
    MAX_EARLY_CANDIDATES, PeerConnectionState, PeerEvent, Role, RtcConfig, RtcError, Sending,
};
use crate::signaling::ice_servers::IceServer;
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::Pose;

/// How long without traffic before ICE reports `Disconnected`.
const ICE_DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(2);
/// How much longer after that before ICE reports `Failed` (so failed = 4 s of silence; the
/// same total bounds connectivity checks of a new connection).
const ICE_FAILED_TIMEOUT: Duration = Duration::from_secs(2);
/// How often ICE sends consent/keepalive checks on an idle pair.
const ICE_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
/// How often ICE sends connectivity checks while connecting (the pacing browsers use). The
/// stack's default is 200 ms, and nominating a pair takes a tick after its check
/// succeeded: on a fast link those two ticks were most of the time from the answer to
/// `Connected`.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// How many checks a pair gets before it counts as failed: the stack's default of 7 at
/// 200 ms, kept as the same 1.4 s at [`ICE_CHECK_INTERVAL`], so slow links are not
/// given up on sooner.
const ICE_MAX_BINDING_REQUESTS: u16 = 28;
/// The ICE server as webrtc-rs takes it.
fn ice_server(server: &IceServer) -> RTCIceServer {
    RTCIceServer {
        urls: server.urls.iter().map(ToString::to_string).collect(),
        username: server.username.clone().unwrap_or_default(),
        credential: server.credential.clone().unwrap_or_default(),
    }
}

/// The offer/answer state and the tracks it negotiates, serialized by its lock.
#[derive(Default)]
struct Negotiation {
    remote_description_set: bool,
    early_candidates: Vec<RTCIceCandidateInit>,
    /// Our screen, while we send it to this peer.
    screen: Option<ScreenSending>,
    /// Our tracks changed while an exchange was in flight: offer again after it.
    reoffer_wanted: bool,
}

/// Our shared screen on this connection.
struct ScreenSending {
    sink: Arc<Sink>,
    sender: Arc<dyn RtpSender>,
    /// Turns the peer's keyframe requests about it into events.
    keyframe_requests: JoinHandle<()>,
}

/// One peer connection to one remote peer.
///
/// Created per remote participant with [`PeerSession::new`]; signaling from that peer goes to
/// [`PeerSession::handle_signal`], and everything the session has to say comes out as
/// [`PeerEvent`]s. Dropping the session closes the connection in the background; call
/// [`PeerSession::close`] to wait for it.
pub struct PeerSession {
    pc: Arc<dyn PeerConnection>,
    role: Role,
    shared: Arc<Shared>,
    local: LocalMedia,
    negotiation: tokio::sync::Mutex<Negotiation>,
    /// Video then audio, like `Shared::sinks`.
    senders: [Arc<dyn RtpSender>; 2],
    /// The pose data channel.
    poses: Arc<dyn webrtc::data_channel::DataChannel>,
    tasks: Vec<JoinHandle<()>>,
    closed: AtomicBool,
}

impl PeerSession {
    /// Creates the connection, adds our audio and video, and, for the [`Role::Offerer`],
    /// emits the offer right away (local candidates follow it as they are gathered).
    ///
    /// Must run inside a tokio runtime: the connection's driver and the session's tasks are
    /// spawned on it.
    pub async fn new(
        config: &RtcConfig,
        local: &LocalMedia,
        role: Role,
        events: UnboundedSender<PeerEvent>,
    ) -> Result<Self, RtcError> {
        let (video_sink, reduced_sinks, audio_sink) = match config.sending {
            Sending::Media => (local.video.add_sink(), None, local.audio.add_sink()),
            Sending::Simulcast => {
                let (full, reduced) = local.add_simulcast_sinks();
                (full, Some(reduced), local.audio.add_sink())
            }
            Sending::Nothing => (
                local.video.unwritten_sink(),
                None,
                local.audio.unwritten_sink(),
            ),
        };
        let shared = Arc::new(Shared {
            events,
            last_state: Mutex::new(None),
            local_signal: Mutex::new(LocalSignal::default()),
            remote_video: Mutex::new(None),
            local_video_ssrc: local.video.ssrc,
            screen_sink: Mutex::new(None),
            remote_screen_tracks: Mutex::new(Vec::new()),
            last_auto_keyframe_request: Mutex::new(None),
            received_feedback: Arc::default(),
            sinks: [Arc::clone(&video_sink), Arc::clone(&audio_sink)],
            reduced_sinks: reduced_sinks.clone(),
            connected: AtomicBool::new(false),
        });
        let built = Self::build(config, local, role, &shared, &video_sink, &audio_sink).await;
        match built {
            Ok(session) => Ok(session),
            Err(e) => {
                local.video.remove_sink(video_sink.id);
                local.audio.remove_sink(audio_sink.id);
                if let Some(reduced) = &reduced_sinks {
                    local.remove_reduced_sinks(reduced);
                }
                Err(e)
            }
        }
    }

    async fn build(
        config: &RtcConfig,
        local: &LocalMedia,
        role: Role,
        shared: &Arc<Shared>,
        video_sink: &Arc<Sink>,
        audio_sink: &Arc<Sink>,
    ) -> Result<Self, RtcError> {
        let mut media_engine = media_engine()?;
        let registry = register_interceptors(&mut media_engine)?.with(
            Slot::from(FEEDBACK_TAP_SLOT),
            FeedbackTap::new(
                local.video.ssrc,
                shared.events.clone(),
                Arc::clone(&shared.received_feedback),
            ),
        );
        let mut setting_engine = SettingEngineBuilder::new()
            .with_ice_timeouts(
                Some(ICE_DISCONNECTED_TIMEOUT),
                Some(ICE_FAILED_TIMEOUT),
                Some(ICE_KEEPALIVE_INTERVAL),
            )
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_BINDING_REQUESTS))
            // A peer's check that comes before its trickled candidate makes the address a
            // peer-reflexive candidate, and the stack files the answers to our checks of
            // that address under it: by default it would hold such a pair back for 1 s.
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            // Simulcast goes to Janus as an `ssrc-group:SIM` (see `simulcast_for_janus`),
            // which needs each layer's SSRC in the offer.
            .with_write_ssrc_attributes_for_simulcast(true);
        if config.ice_transport_policy == IceTransportPolicy::Relay {
            // Only relayed candidates: nothing better to wait for (ICE otherwise holds a
            // relayed pair back for 2 s in case a direct one succeeds).
            setting_engine = setting_engine.with_relay_acceptance_min_wait(Some(Duration::ZERO));
        }
        let setting_engine = setting_engine.build();
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(config.ice_servers.iter().map(ice_server).collect())
            .with_ice_transport_policy(match config.ice_transport_policy {
                IceTransportPolicy::All => RTCIceTransportPolicy::All,
                IceTransportPolicy::Relay => RTCIceTransportPolicy::Relay,
            })
            .build();

        // Boxed: the builder's future is ~20 KB.
        let pc = Box::pin(
            PeerConnectionBuilder::new()
                .with_configuration(configuration)
                .with_media_engine(media_engine)
                .with_setting_engine(setting_engine)
                .with_interceptor_registry(registry)
                .with_handler(Arc::new(Handler {
                    shared: Arc::clone(shared),
                }))
                .with_udp_addrs(config.gather_addresses())
                .build(),
        )
        .await
        .map_err(stack_error("creating the peer connection"))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let added = match add_tracks(&pc, video_sink, audio_sink).await {
            Ok(senders) => open_pose_channel(&pc).await.map(|poses| (senders, poses)),
            Err(e) => Err(e),
        };
        let (senders, poses) = match added {
            Ok(added) => added,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };

        let tasks = vec![
            tokio::spawn(watch_keyframe_requests(
                Arc::clone(shared),
                Arc::clone(&video_sink.track),
                PeerEvent::KeyframeRequested,
            )),
            tokio::spawn(monitor(
                Arc::clone(shared),
                Arc::clone(&pc),
                Arc::clone(&senders[0]),
            )),
            tokio::spawn(receive_poses(Arc::clone(shared), Arc::clone(&poses))),
        ];
        let session = Self {
            pc,
            role,
            shared: Arc::clone(shared),
            local: local.clone(),
            negotiation: tokio::sync::Mutex::new(Negotiation::default()),
            senders,
            poses,
            tasks,
            closed: AtomicBool::new(false),
        };
        if role == Role::Offerer {
            let sdp = session.make_offer().await?;
            session
                .shared
                .send_description(SignalPayload::Offer { sdp });
        }
        Ok(session)
    }

    /// Applies one signaling message from the remote peer: an offer or a reoffer
    /// (answered with a [`PeerEvent::Signal`]), an answer, or a trickled candidate
    /// (queued until the remote description is known).
    ///
    /// Reoffers follow "perfect negotiation": when both sides change their tracks at once,
    /// the answerer of the first exchange gives way (rolls its own reoffer back, answers,
    /// then offers again) and the offerer ignores the crossing reoffer.
    ///
    /// An error on an offer or answer means the call with this peer cannot proceed (it is
    /// also reported as [`PeerEvent::Error`] when the codecs are the cause). An error on a
    /// single candidate (one we cannot parse or use, such as an mDNS `.local` name) is not
    /// fatal: log it and carry on.
    pub async fn handle_signal(&self, payload: SignalPayload) -> Result<(), RtcError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(RtcError::Closed);
        }
        payload.validate()?;
        let mut negotiation = self.negotiation.lock().await;
        match payload {
            SignalPayload::Offer { sdp } => {
                if self.role != Role::Answerer || negotiation.remote_description_set {
                    return Err(RtcError::UnexpectedSignal {
                        role: self.role,
                        got: "offer",
                    });
                }
                self.answer(&mut negotiation, sdp).await?;
                self.remote_description_applied(&mut negotiation).await;
                if negotiation.reoffer_wanted {
                    self.reoffer(&mut negotiation).await?;
                }
            }
            SignalPayload::Reoffer { sdp } => {
                if !negotiation.remote_description_set {
                    return Err(RtcError::UnexpectedSignal {
                        role: self.role,
                        got: "reoffer",
                    });
                }
                if self.pc.pending_local_description().await.is_some() {
                    if self.role == Role::Offerer {
                        tracing::debug!("ignoring a reoffer that crossed ours");
                        return Ok(());
                    }
                    let rollback = RTCSessionDescription::rollback(None)
                        .map_err(stack_error("rolling our reoffer back"))?;
                    self.pc
                        .set_local_description(rollback)
                        .await
                        .map_err(stack_error("rolling our reoffer back"))?;
                    negotiation.reoffer_wanted = true;
                }
                self.answer(&mut negotiation, sdp).await?;
                if negotiation.reoffer_wanted {
                    self.reoffer(&mut negotiation).await?;
                }
            }
            SignalPayload::Answer { sdp } => {
                let renegotiating = negotiation.remote_description_set;
                let expected = if renegotiating {
                    self.pc.pending_local_description().await.is_some()
                } else {
                    self.role == Role::Offerer
                };
                if !expected {
                    return Err(RtcError::UnexpectedSignal {
                        role: self.role,
                        got: "answer",
                    });
                }
                let answer = RTCSessionDescription::answer(sdp)
                    .map_err(stack_error("parsing the remote answer"))?;
                self.check_codecs(&answer)?;
                self.note_remote_screen(&answer);
                self.pc
                    .set_remote_description(answer)
                    .await
                    .map_err(stack_error("applying the remote answer"))?;
                if !renegotiating {
                    self.remote_description_applied(&mut negotiation).await;
                }
                self.resolve_payload_types(&negotiation).await;
                self.screen_negotiated(&negotiation);
                if negotiation.reoffer_wanted {
                    self.reoffer(&mut negotiation).await?;
                }
            }
            SignalPayload::Candidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
            } => {
                if candidate.is_empty() {
                    return Ok(()); // end of candidates: nothing to do
                }
                let init = RTCIceCandidateInit {
                    candidate,
                    sdp_mid,
                    sdp_mline_index,
                    ..Default::default()
                };
                if negotiation.remote_description_set {
                    self.pc
                        .add_ice_candidate(init)
                        .await
                        .map_err(stack_error("adding a remote ICE candidate"))?;
                } else if negotiation.early_candidates.len() < MAX_EARLY_CANDIDATES {
                    negotiation.early_candidates.push(init);
                } else {
                    return Err(RtcError::TooManyCandidates(MAX_EARLY_CANDIDATES));
                }
            }
        }
        Ok(())
    }

    /// Starts or stops sending our shared screen (`LocalMedia`'s screen stream) to this
    /// peer: the track is added or removed and the connection renegotiated (a
    /// [`SignalPayload::Reoffer`], now or once the exchange in flight has ended).
    pub async fn set_screen_shared(&self, shared: bool) -> Result<(), RtcError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(RtcError::Closed);
        }
        let mut negotiation = self.negotiation.lock().await;
        match (shared, negotiation.screen.take()) {
            (true, Some(screen)) => {
                negotiation.screen = Some(screen);
                return Ok(());
            }
            (false, None) => return Ok(()),
            (true, None) => {
                let sink = self.local.screen.add_sink();
                let sender = self
                    .pc
                    .add_track(Arc::clone(&sink.track) as Arc<dyn TrackLocal>)
                    .await
                    .map_err(stack_error("adding the screen track"));
                let sender = match sender {
                    Ok(sender) => sender,
                    Err(e) => {
                        self.local.screen.remove_sink(sink.id);
                        return Err(e);
                    }
                };
                sink.connected.store(
                    self.shared.connected.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                *lock(&self.shared.screen_sink) = Some(Arc::clone(&sink));
                let keyframe_requests = tokio::spawn(watch_keyframe_requests(
                    Arc::clone(&self.shared),
                    Arc::clone(&sink.track),
                    PeerEvent::ScreenKeyframeRequested,
                ));
                negotiation.screen = Some(ScreenSending {
                    sink,
                    sender,
                    keyframe_requests,
                });
            }
            (false, Some(screen)) => {
                self.stop_screen(&screen);
                self.pc
                    .remove_track(&screen.sender)
                    .await
                    .map_err(stack_error("removing the screen track"))?;
            }
        }
        self.reoffer(&mut negotiation).await
    }

    /// Stops writing our screen to this peer.
    fn stop_screen(&self, screen: &ScreenSending) {
        screen.keyframe_requests.abort();
        self.local.screen.remove_sink(screen.sink.id);
        *lock(&self.shared.screen_sink) = None;
    }

    /// Offers the tracks we have now on the negotiated connection, or, while an exchange is
    /// in flight (or the first one has not happened), notes to do so after it.
    async fn reoffer(&self, negotiation: &mut Negotiation) -> Result<(), RtcError> {
        if !negotiation.remote_description_set
            || self.pc.pending_local_description().await.is_some()
        {
            negotiation.reoffer_wanted = true;
            return Ok(());
        }
        negotiation.reoffer_wanted = false;
        let sdp = self.make_offer().await?;
        self.shared
            .emit(PeerEvent::Signal(SignalPayload::Reoffer { sdp }));
        Ok(())
    }

    /// Creates an offer of the tracks we have now and applies it; its SDP.
    async fn make_offer(&self) -> Result<String, RtcError> {
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(stack_error("creating an offer"))?;
        let sdp = offer.sdp.clone();
        self.set_local(offer).await?;
        Ok(match &self.shared.reduced_sinks {
            Some(_) => simulcast_for_janus(&sdp, self.local.simulcast_ssrcs()),
            None => sdp,
        })
    }

    /// Applies a remote offer (the first or a reoffer) and sends our answer.
    async fn answer(&self, negotiation: &mut Negotiation, sdp: String) -> Result<(), RtcError> {
        let offer =
            RTCSessionDescription::offer(sdp).map_err(stack_error("parsing the remote offer"))?;
        self.check_codecs(&offer)?;
        self.note_remote_screen(&offer);
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(stack_error("applying the remote offer"))?;
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(stack_error("creating the answer"))?;
        let sdp = answer.sdp.clone();
        self.set_local(answer).await?;
        self.resolve_payload_types(negotiation).await;
        if negotiation.remote_description_set {
            self.shared
                .emit(PeerEvent::Signal(SignalPayload::Answer { sdp }));
        } else {
            self.shared.send_description(SignalPayload::Answer { sdp });
        }
        self.screen_negotiated(negotiation);
        Ok(())
    }

    /// After an exchange that carries our screen: its next frame is a key frame, so the
    /// peer's picture starts at once (its first frames would otherwise be deltas it
    /// cannot decode).
    fn screen_negotiated(&self, negotiation: &Negotiation) {
        if negotiation.screen.is_some() {
            self.shared.emit(PeerEvent::ScreenKeyframeRequested);
        }
    }

    /// Remembers which of the remote's video tracks are screens, before its description
    /// is applied (their packets can only come after), and says
    /// [`PeerEvent::ScreenEnded`] when a screen the remote shared is gone from it.
    fn note_remote_screen(&self, description: &RTCSessionDescription) {
        let now = screen_track_ids(description);
        let ended = {
            let mut known = lock(&self.shared.remote_screen_tracks);
            let ended = known.iter().any(|id| !now.contains(id));
            *known = now;
            ended
        };
        if ended {
            self.shared.emit(PeerEvent::ScreenEnded);
        }
    }

    /// Asks the remote for a key frame of its video (RTCP PLI). Does nothing until the
    /// remote's video track is known.
    pub async fn request_keyframe(&self) {
        self.shared.send_keyframe_request().await;
    }

    /// Sends our pose on the pose data channel, if it is open.
    pub async fn send_pose(&self, pose: &Pose) {
        send_pose(self.poses.as_ref(), pose).await;
    }

    /// Closes the connection and reports [`PeerConnectionState::Closed`]. The remote gets a
    /// DTLS close_notify; a `PeerSession` there reports `Closed` within about 0.1 s.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        self.detach();
        if let Err(e) = self.pc.close().await {
            tracing::debug!("closing the peer connection: {e}");
        }
        self.shared.emit_state(PeerConnectionState::Closed);
    }

    /// Stops sending to this peer and stops the session's own tasks.
    fn detach(&self) {
        self.shared.set_connected(false);
        self.local.video.remove_sink(self.shared.sinks[0].id);
        self.local.audio.remove_sink(self.shared.sinks[1].id);
        if let Some(reduced) = &self.shared.reduced_sinks {
            self.local.remove_reduced_sinks(reduced);
        }
        if let Some(sink) = lock(&self.shared.screen_sink).take() {
            self.local.screen.remove_sink(sink.id);
        }
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Applies our offer/answer. What we send is the description as created, without the
    /// candidates gathered meanwhile: those are trickled.
    async fn set_local(&self, description: RTCSessionDescription) -> Result<(), RtcError> {
        if let Some(mid) = first_mid(&description) {
            lock(&self.shared.local_signal).first_mid = Some(mid);
        }
        self.pc
            .set_local_description(description)
            .await
            .map_err(stack_error("applying the local description"))
    }

    async fn remote_description_applied(&self, negotiation: &mut Negotiation) {
        negotiation.remote_description_set = true;
        for candidate in std::mem::take(&mut negotiation.early_candidates) {
            if let Err(e) = self.pc.add_ice_candidate(candidate).await {
                tracing::warn!("ignoring an early remote ICE candidate: {e}");
            }
        }
    }

    /// Learns the payload types negotiated with this peer, which our packets must carry.
    async fn resolve_payload_types(&self, negotiation: &Negotiation) {
        let screen = negotiation
            .screen
            .as_ref()
            .map(|screen| (&screen.sender, &screen.sink));
        let camera_and_voice = self.senders.iter().zip(&self.shared.sinks);
        for (sender, sink) in camera_and_voice.chain(screen) {
            match sender.get_parameters().await {
                Ok(parameters) => {
                    if let Some(codec) = parameters.rtp_parameters.codecs.first() {
                        let _ = sink.payload_type.set(codec.payload_type);
                    }
                }
                Err(e) => tracing::warn!("no negotiated payload type: {e}"),
            }
        }
        // The smaller simulcast layers go on the camera's track, with its payload type.
        let camera = self.shared.sinks[0].payload_type.get();
        if let (Some(layers), Some(payload_type)) = (&self.shared.reduced_sinks, camera) {
            for layer in layers {
                let _ = layer.payload_type.set(*payload_type);
            }
        }
    }

    /// Refuses a description whose audio or video sections list no codec we support, with a
    /// [`PeerEvent::Error`] for the user as well as the returned error.
    fn check_codecs(&self, description: &RTCSessionDescription) -> Result<(), RtcError> {
        let result = supported_codecs(description);
        if let Err(e) = &result {
            self.shared.emit(PeerEvent::Error(e.to_string()));
        }
        result
    }
}

impl Drop for PeerSession {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        self.detach();
        let pc = Arc::clone(&self.pc);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Adds our video and audio tracks, returning their senders in that order.
async fn add_tracks(
    pc: &Arc<dyn PeerConnection>,
    video_sink: &Sink,
    audio_sink: &Sink,
) -> Result<[Arc<dyn RtpSender>; 2], RtcError> {
    let video = pc
        .add_track(Arc::clone(&video_sink.track) as Arc<dyn TrackLocal>)
        .await
        .map_err(stack_error("adding the video track"))?;
    let audio = pc
        .add_track(Arc::clone(&audio_sink.track) as Arc<dyn TrackLocal>)
        .await
        .map_err(stack_error("adding the audio track"))?;
    Ok([video, audio])
}

/// The ids (`a=msid`) of the screens among a description's video tracks: every video
/// track but the first section's, which is the camera (negotiated first, on every stack).
fn screen_track_ids(description: &RTCSessionDescription) -> Vec<String> {
    let Ok(parsed) = description.unmarshal() else {
        return Vec::new();
    };
    parsed
        .media_descriptions
        .iter()
        .filter(|media| media.media_name.media == "video")
        .skip(1)
        .filter_map(|media| {
            let msid = media.attribute("msid").flatten()?;
            msid.split_whitespace().nth(1).map(str::to_owned)
        })
        .collect()
}

/// Our offer with the camera's simulcast described as Janus takes it from a native
/// sender: the layers' SSRCs in an `a=ssrc-group:SIM`, smallest first (`ssrcs`), instead
/// of the `a=rid` / `a=simulcast` lines webrtc-rs writes (Janus would then wait for RTP
/// stream id header extensions, which webrtc-rs does not put on the packets we write).
fn simulcast_for_janus(sdp: &str, ssrcs: [u32; 3]) -> String {
    let group = format!("a=ssrc-group:SIM {} {} {}", ssrcs[0], ssrcs[1], ssrcs[2]);
    let mut out = String::with_capacity(sdp.len() + group.len() + 2);
    let mut in_video = false;
    let mut grouped = false;
    for line in sdp.split("\r\n").filter(|line| !line.is_empty()) {
        if line.starts_with("m=") {
            if in_video && !grouped {
                out.push_str(&group);
                out.push_str("\r\n");
                grouped = true;
            }
            in_video = line.starts_with("m=video") && !grouped;
        }
        if in_video && (line.starts_with("a=rid:") || line.starts_with("a=simulcast:")) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    if in_video && !grouped {
        out.push_str(&group);
        out.push_str("\r\n");
    }
    out
}

/// The mid of the first media section of a description.
fn first_mid(description: &RTCSessionDescription) -> Option<String> {
    let parsed = description.unmarshal().ok()?;
    parsed
        .media_descriptions
        .iter()
        .find_map(|m| m.attribute("mid").flatten().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn janus_gets_the_camera_s_layers_as_an_ssrc_group_in_its_section_only() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ssrc:1 cname:x\r\n\
            a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rid:x send\r\n";
        let sent = simulcast_for_janus(offer, [1, 2, 3]);
        assert_eq!(
            sent,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ssrc:1 cname:x\r\n\
             a=ssrc-group:SIM 1 2 3\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rid:x send\r\n"
        );
        // The camera's section last: the group goes at the end.
        let last = simulcast_for_janus("m=video 9 X 96\r\na=rid:q send\r\n", [4, 5, 6]);
        assert_eq!(last, "m=video 9 X 96\r\na=ssrc-group:SIM 4 5 6\r\n");
    }
}
