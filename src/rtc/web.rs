//! The browser backend: the browser's own `RTCPeerConnection` through web-sys. The
//! browser captures, encodes, decodes and plays; this file only negotiates and
//! reports, speaking the same [`SignalPayload`]s and [`PeerEvent`]s as `native.rs`, with
//! the same [`PeerSession`] surface (`new`, `handle_signal`, `close`), and reads the
//! browser's statistics.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use js_sys::{Array, Map, Reflect, Uint8Array};
use tokio::sync::mpsc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MediaStream, MediaStreamTrack, MessageEvent, RtcConfiguration, RtcDataChannel,
    RtcDataChannelInit, RtcDataChannelState, RtcDataChannelType, RtcIceCandidateInit, RtcIceServer,
    RtcIceTransportPolicy, RtcPeerConnection, RtcPeerConnectionIceErrorEvent,
    RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcRtpEncodingParameters, RtcRtpTransceiver,
    RtcRtpTransceiverDirection, RtcRtpTransceiverInit, RtcSdpType, RtcSessionDescriptionInit,
    RtcSignalingState, RtcTrackEvent,
};

use super::ice::{CandidateKind, PairProtocol};
use super::{
    CandidatePair, FeedbackCounts, IceTransportPolicy, MAX_EARLY_CANDIDATES, POSE_CHANNEL_ID,
    POSE_CHANNEL_LABEL, PeerConnectionState, PeerEvent, Role, RtcConfig, RtcError, Sending,
    TurnProblem,
};
use crate::media::{ReducedLayer, ScreenStats};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::Pose;

/// What a browser connection sends: the page's camera and microphone, or nothing
/// (when they could not be opened: the connection only receives).
pub struct LocalMedia {
    stream: Option<MediaStream>,
}

impl LocalMedia {
    /// Sends the tracks of `stream`; `None`: receive only.
    pub fn new(stream: Option<MediaStream>) -> Self {
        Self { stream }
    }

    /// The stream sent, if any.
    pub fn stream(&self) -> Option<&MediaStream> {
        self.stream.as_ref()
    }
}

/// One reading of a connection's statistics (`RTCPeerConnection.getStats`), totals since
/// it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrowserStats {
    /// The received video's codec (`VP8`, ...), once known.
    pub video_codec: &'static str,
    /// Size of the last decoded frame.
    pub width: u32,
    /// Size of the last decoded frame.
    pub height: u32,
    /// Frames decoded.
    pub frames_decoded: u64,
    /// Decoded frames per second, as the browser measures it.
    pub fps: f64,
    /// Video bytes received.
    pub video_bytes_received: u64,
    /// Audio packets received.
    pub audio_packets: u64,
    /// The received audio's level, 0 to 1.
    pub audio_level: f32,
    /// Round-trip time of the selected candidate pair.
    pub rtt_ms: Option<f64>,
    /// The selected candidate pair.
    pub candidate_pair: Option<CandidatePair>,
    /// RTP packets lost, all received streams.
    pub packets_lost: u64,
    /// RTP packets received, all received streams.
    pub packets_received: u64,
    /// Video freezes, as the browser counts them.
    pub freezes: u64,
    /// Time spent in those freezes.
    pub frozen_ms: f64,
    /// Loss-recovery requests both ways.
    pub feedback: FeedbackCounts,
    /// The peer's shared screen, while we receive one (`kbps` is left to the reader,
    /// which knows the interval).
    pub screen: Option<ScreenStats>,
    /// Bytes received of the peer's shared screen.
    pub screen_bytes_received: u64,
}

/// One browser peer connection. Dropping it closes the connection.
pub struct PeerSession {
    connection: RtcPeerConnection,
    role: Role,
    /// Whether the remote description is set (candidates wait for it).
    described: Cell<bool>,
    early_candidates: RefCell<Vec<RtcIceCandidateInit>>,
    events: mpsc::UnboundedSender<PeerEvent>,
    /// The screen we want the peer to see (see [`Self::set_screen_shared`]).
    screen_wanted: RefCell<Option<MediaStream>>,
    /// The transceiver our screen goes out on, once we shared: kept between shares
    /// (receiving only), so that sharing again reuses its section of the description.
    screen_transceiver: RefCell<Option<RtcRtpTransceiver>>,
    /// Our tracks changed while an exchange was in flight: offer again after it.
    reoffer_wanted: Cell<bool>,
    /// Whether the peer's shared screen arrives (set by its track, cleared when an
    /// exchange ends it).
    receiving_screen: Rc<Cell<bool>>,
    /// The pose data channel (negotiated with the same id on both sides).
    poses: RtcDataChannel,
    /// The event handlers, alive as long as the connection.
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

fn stack_error(context: &'static str) -> impl FnOnce(JsValue) -> RtcError {
    move |error| RtcError::Stack {
        context,
        message: crate::browser::describe(&error),
    }
}

fn state_of(state: RtcPeerConnectionState) -> PeerConnectionState {
    match state {
        RtcPeerConnectionState::New => PeerConnectionState::New,
        RtcPeerConnectionState::Connecting => PeerConnectionState::Connecting,
        RtcPeerConnectionState::Connected => PeerConnectionState::Connected,
        RtcPeerConnectionState::Disconnected => PeerConnectionState::Disconnected,
        RtcPeerConnectionState::Failed => PeerConnectionState::Failed,
        _ => PeerConnectionState::Closed,
    }
}

impl PeerSession {
    /// Opens a connection that sends the tracks of `local` (or, without any, only
    /// receives audio and video) and reports to `events`, every remote stream included.
    /// As the offerer, the offer goes out through `events` at once.
    pub async fn new(
        config: &RtcConfig,
        local: &LocalMedia,
        role: Role,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<Self, RtcError> {
        let rtc_config = RtcConfiguration::new();
        if !config.ice_servers.is_empty() {
            let servers = Array::new();
            for entry in &config.ice_servers {
                let server = RtcIceServer::new();
                let urls: Array = entry
                    .urls
                    .iter()
                    .map(|url| JsValue::from_str(&url.to_string()))
                    .collect();
                server.set_urls(&urls);
                if let Some(username) = &entry.username {
                    server.set_username(username);
                }
                if let Some(credential) = &entry.credential {
                    server.set_credential(credential);
                }
                servers.push(&server);
            }
            rtc_config.set_ice_servers(&servers);
        }
        if config.ice_transport_policy == IceTransportPolicy::Relay {
            rtc_config.set_ice_transport_policy(RtcIceTransportPolicy::Relay);
        }
        let connection = RtcPeerConnection::new_with_configuration(&rtc_config)
            .map_err(stack_error("creating the peer connection"))?;

        // A downstream from the SFU only receives.
        let sent = local
            .stream()
            .filter(|_| config.sending != Sending::Nothing);
        match sent {
            Some(stream) => {
                for track in stream.get_tracks().iter() {
                    let track: MediaStreamTrack = track.unchecked_into();
                    if config.sending == Sending::Simulcast && track.kind() == "video" {
                        let init = simulcast_init(stream);
                        connection.add_transceiver_with_media_stream_track_and_init(&track, &init);
                    } else {
                        connection.add_track_0(&track, stream);
                    }
                }
            }
            None => {
                let receive_only = RtcRtpTransceiverInit::new();
                receive_only.set_direction(RtcRtpTransceiverDirection::Recvonly);
                for kind in ["audio", "video"] {
                    connection.add_transceiver_with_str_and_init(kind, &receive_only);
                }
            }
        }

        let on_candidate = {
            let events = events.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                let event: RtcPeerConnectionIceEvent = event.unchecked_into();
                // The end of candidates needs no message: the server does not relay it.
                if let Some(candidate) = event.candidate() {
                    let _ = events.send(PeerEvent::Signal(SignalPayload::Candidate {
                        candidate: candidate.candidate(),
                        sdp_mid: candidate.sdp_mid(),
                        sdp_mline_index: candidate.sdp_m_line_index(),
                    }));
                }
            })
        };
        let on_state = {
            let events = events.clone();
            let connection = connection.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |_| {
                let state = state_of(connection.connection_state());
                let _ = events.send(PeerEvent::State(state));
            })
        };
        let receiving_screen = Rc::new(Cell::new(false));
        let on_track = {
            let events = events.clone();
            let connection = connection.clone();
            let receiving_screen = receiving_screen.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                let event: RtcTrackEvent = event.unchecked_into();
                if is_screen(&connection, &event) {
                    // A stream of its own: the peer's screen stream loses the track when
                    // a share stops, and a share that starts again brings the same track.
                    let Ok(stream) = MediaStream::new() else {
                        return;
                    };
                    stream.add_track(&event.track());
                    receiving_screen.set(true);
                    let _ = events.send(PeerEvent::RemoteScreen(stream));
                } else if let Some(stream) = stream_of(&event) {
                    let _ = events.send(PeerEvent::RemoteStream(stream));
                }
            })
        };
        let on_candidate_error = {
            let events = events.clone();
            let reported = RefCell::new(HashSet::new());
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                let event: RtcPeerConnectionIceErrorEvent = event.unchecked_into();
                let url = event.url();
                // STUN errors (an unreachable STUN server) leave the call to ICE; one
                // message per TURN server is enough.
                if !url.starts_with("turn") || reported.borrow().contains(&url) {
                    return;
                }
                if let Some(problem) =
                    turn_problem(url.clone(), event.error_code(), event.error_text())
                {
                    reported.borrow_mut().insert(url);
                    let _ = events.send(PeerEvent::Turn(problem));
                }
            })
        };
        connection.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));
        set_on_candidate_error(&connection, on_candidate_error.as_ref())
            .map_err(stack_error("listening for ICE candidate errors"))?;
        connection.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        connection.set_ontrack(Some(on_track.as_ref().unchecked_ref()));
        let (poses, on_pose) = open_pose_channel(&connection, &events);

        let session = Self {
            connection,
            role,
            described: Cell::new(false),
            early_candidates: RefCell::new(Vec::new()),
            events,
            screen_wanted: RefCell::new(None),
            screen_transceiver: RefCell::new(None),
            reoffer_wanted: Cell::new(false),
            receiving_screen,
            poses,
            _handlers: vec![
                on_candidate,
                on_candidate_error,
                on_state,
                on_track,
                on_pose,
            ],
        };
        if role == Role::Offerer {
            let sdp = session.describe_local(RtcSdpType::Offer).await?;
            let _ = session
                .events
                .send(PeerEvent::Signal(SignalPayload::Offer { sdp }));
        }
        Ok(session)
    }

    /// Sends our pose on the pose data channel, if it is open.
    pub fn send_pose(&self, pose: &Pose) {
        if self.poses.ready_state() == RtcDataChannelState::Open
            && let Err(error) = self.poses.send_with_u8_array(&pose.to_wire())
        {
            tracing::trace!("a pose was not sent: {}", crate::browser::describe(&error));
        }
    }

    /// Creates our offer (or, with `Answer`, our answer), applies it and returns its SDP.
    async fn describe_local(&self, kind: RtcSdpType) -> Result<String, RtcError> {
        let created = if kind == RtcSdpType::Answer {
            self.connection.create_answer()
        } else {
            self.connection.create_offer()
        };
        let description = JsFuture::from(created)
            .await
            .map_err(stack_error("creating our session description"))?;
        let sdp = sdp_of(&description)?;
        self.set_local(kind, &sdp).await?;
        Ok(sdp)
    }

    async fn set_local(&self, kind: RtcSdpType, sdp: &str) -> Result<(), RtcError> {
        let description = session_description(kind, sdp);
        JsFuture::from(self.connection.set_local_description(&description))
            .await
            .map_err(stack_error("setting the local description"))?;
        Ok(())
    }

    async fn set_remote(&self, kind: RtcSdpType, sdp: &str) -> Result<(), RtcError> {
        let description = session_description(kind, sdp);
        JsFuture::from(self.connection.set_remote_description(&description))
            .await
            .map_err(stack_error("setting the remote description"))?;
        self.described.set(true);
        let early = std::mem::take(&mut *self.early_candidates.borrow_mut());
        for candidate in early {
            self.add_candidate_later(&candidate);
        }
        Ok(())
    }

    /// Hands a remote candidate to the connection without waiting for it to be taken:
    /// the browser applies it in order after the descriptions (the connection's
    /// operations chain), and each wait would cost a turn of the page's event loop,
    /// which on a slow page is a frame. A candidate refused is logged.
    fn add_candidate_later(&self, candidate: &RtcIceCandidateInit) {
        let added = JsFuture::from(
            self.connection
                .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(candidate)),
        );
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(error) = added.await {
                tracing::warn!(
                    "a remote ICE candidate was refused: {}",
                    crate::browser::describe(&error)
                );
            }
        });
    }

    /// Applies a payload from the remote peer: validated first, then handed to the
    /// browser; an offer, or a reoffer on the negotiated connection (a peer's screen
    /// coming or going), is answered (the answer goes out through the events).
    pub async fn handle_signal(&self, payload: SignalPayload) -> Result<(), RtcError> {
        payload.validate()?;
        let offer_out = self.connection.signaling_state() == RtcSignalingState::HaveLocalOffer;
        match (payload, self.role) {
            (SignalPayload::Offer { sdp }, Role::Answerer) if !self.described.get() => {
                self.answer(&sdp).await?;
                self.exchanged().await?;
            }
            (SignalPayload::Reoffer { sdp }, role) if self.described.get() => {
                // Perfect negotiation, as `native.rs` does it: when reoffers cross, the
                // first exchange's offerer ignores the other's, and its answerer rolls its
                // own back, answers, and offers again.
                if offer_out {
                    if role == Role::Offerer {
                        tracing::debug!("ignoring a reoffer that crossed ours");
                        return Ok(());
                    }
                    self.set_local(RtcSdpType::Rollback, "").await?;
                    self.reoffer_wanted.set(true);
                }
                self.answer(&sdp).await?;
                self.exchanged().await?;
            }
            (SignalPayload::Reoffer { .. }, role) => {
                return Err(RtcError::UnexpectedSignal {
                    role,
                    got: "reoffer",
                });
            }
            (SignalPayload::Answer { sdp }, _) if offer_out => {
                self.set_remote(RtcSdpType::Answer, &sdp).await?;
                self.exchanged().await?;
            }
            (SignalPayload::Offer { .. }, role) => {
                return Err(RtcError::UnexpectedSignal { role, got: "offer" });
            }
            (SignalPayload::Answer { .. }, role) => {
                return Err(RtcError::UnexpectedSignal {
                    role,
                    got: "answer",
                });
            }
            (
                SignalPayload::Candidate {
                    candidate,
                    sdp_mid,
                    sdp_mline_index,
                },
                _,
            ) => {
                let init = RtcIceCandidateInit::new(&candidate);
                init.set_sdp_mid(sdp_mid.as_deref());
                init.set_sdp_m_line_index(sdp_mline_index);
                if self.described.get() {
                    self.add_candidate_later(&init);
                } else {
                    let mut early = self.early_candidates.borrow_mut();
                    if early.len() == MAX_EARLY_CANDIDATES {
                        return Err(RtcError::TooManyCandidates(MAX_EARLY_CANDIDATES));
                    }
                    early.push(init);
                }
            }
        }
        Ok(())
    }

    /// Shows the peer `screen` (a `getDisplayMedia` stream) or stops showing it
    /// (`None`): a track on a transceiver of its own, added to the negotiated connection
    /// by a reoffer. Before the first exchange, or while one is in flight, the reoffer
    /// waits for its end.
    pub async fn set_screen_shared(&self, screen: Option<MediaStream>) -> Result<(), RtcError> {
        *self.screen_wanted.borrow_mut() = screen;
        if self.described.get() && self.connection.signaling_state() == RtcSignalingState::Stable {
            self.reoffer().await
        } else {
            self.reoffer_wanted.set(true);
            Ok(())
        }
    }

    /// An exchange of offer and answer ended: notes whether the peer's screen is still
    /// in the session, and offers again if our tracks changed meanwhile.
    async fn exchanged(&self) -> Result<(), RtcError> {
        if self.receiving_screen.get() && !self.screen_in_session() {
            self.receiving_screen.set(false);
            let _ = self.events.send(PeerEvent::ScreenEnded);
        }
        if self.reoffer_wanted.get() {
            self.reoffer().await?;
        }
        Ok(())
    }

    /// Whether the negotiated session carries a screen of the peer's: a video
    /// transceiver other than the camera's that receives.
    fn screen_in_session(&self) -> bool {
        let camera_mid = camera_mid(&self.connection);
        self.connection
            .get_transceivers()
            .iter()
            .map(JsCast::unchecked_into::<RtcRtpTransceiver>)
            .filter(|transceiver| transceiver.receiver().track().kind() == "video")
            .filter(|transceiver| transceiver.mid() != camera_mid)
            .any(|transceiver| {
                matches!(
                    transceiver.current_direction(),
                    Some(
                        RtcRtpTransceiverDirection::Sendrecv | RtcRtpTransceiverDirection::Recvonly
                    )
                )
            })
    }

    /// Puts the screen we want on its transceiver and offers the change.
    async fn reoffer(&self) -> Result<(), RtcError> {
        self.reoffer_wanted.set(false);
        self.apply_screen().await?;
        let sdp = self.describe_local(RtcSdpType::Offer).await?;
        let _ = self
            .events
            .send(PeerEvent::Signal(SignalPayload::Reoffer { sdp }));
        Ok(())
    }

    /// Sends the screen we want on the screen transceiver (made on the first share),
    /// or nothing on it. It keeps receiving either way: the peer may share on it too.
    async fn apply_screen(&self) -> Result<(), RtcError> {
        let wanted = self.screen_wanted.borrow().clone();
        let track: Option<MediaStreamTrack> = wanted.as_ref().and_then(|stream| {
            let track = stream.get_video_tracks().get(0);
            (!track.is_undefined()).then(|| track.unchecked_into())
        });
        let existing = self.screen_transceiver.borrow().clone();
        match (existing, track, wanted) {
            (None, Some(track), Some(stream)) => {
                let init = RtcRtpTransceiverInit::new();
                init.set_direction(RtcRtpTransceiverDirection::Sendrecv);
                init.set_streams(&Array::of1(&stream));
                let transceiver = self
                    .connection
                    .add_transceiver_with_media_stream_track_and_init(&track, &init);
                *self.screen_transceiver.borrow_mut() = Some(transceiver);
            }
            (Some(transceiver), track, _) => {
                let sending = track.is_some();
                JsFuture::from(transceiver.sender().replace_track(track.as_ref()))
                    .await
                    .map_err(stack_error("changing the shared screen's track"))?;
                transceiver.set_direction(if sending {
                    RtcRtpTransceiverDirection::Sendrecv
                } else {
                    RtcRtpTransceiverDirection::Recvonly
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies the remote's offer `sdp` and sends our answer.
    async fn answer(&self, sdp: &str) -> Result<(), RtcError> {
        self.set_remote(RtcSdpType::Offer, sdp).await?;
        let sdp = self.describe_local(RtcSdpType::Answer).await?;
        let _ = self
            .events
            .send(PeerEvent::Signal(SignalPayload::Answer { sdp }));
        Ok(())
    }

    /// Closes the connection; the peer sees it at once.
    pub async fn close(&self) {
        self.shut();
    }

    /// Closes the connection and lets go of its handlers first: events it had queued
    /// (a pose that arrived, a state change) would otherwise reach dropped closures.
    fn shut(&self) {
        self.connection.set_onconnectionstatechange(None);
        self.connection.set_onicecandidate(None);
        self.connection.set_ontrack(None);
        let _ = set_on_candidate_error(&self.connection, &JsValue::NULL);
        self.poses.set_onmessage(None);
        self.connection.close();
    }

    /// Reads the connection's statistics (the peer's screen's, while it shares).
    pub async fn stats(&self) -> Result<BrowserStats, RtcError> {
        let report = JsFuture::from(self.connection.get_stats())
            .await
            .map_err(stack_error("reading the statistics"))?;
        let mut entries = HashMap::new();
        report.unchecked_ref::<Map>().for_each(&mut |stat, id| {
            if let Some(id) = id.as_string() {
                entries.insert(id, stat);
            }
        });
        let screen_receiving = self.receiving_screen.get();
        Ok(read_stats(
            &entries,
            camera_mid(&self.connection),
            screen_receiving,
        ))
    }
}

impl Drop for PeerSession {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Sets the connection's `onicecandidateerror` handler (web-sys has no setter for it);
/// `null` removes it.
fn set_on_candidate_error(
    connection: &RtcPeerConnection,
    handler: &JsValue,
) -> Result<(), JsValue> {
    Reflect::set(
        connection,
        &JsValue::from_str("onicecandidateerror"),
        handler,
    )
    .map(|_| ())
}

/// A number field of a statistics entry (0 when absent).
fn number(stat: &JsValue, field: &str) -> f64 {
    optional_number(stat, field).unwrap_or(0.0)
}

/// A number field of a statistics entry, if the entry has it.
fn optional_number(stat: &JsValue, field: &str) -> Option<f64> {
    Reflect::get(stat, &JsValue::from_str(field))
        .ok()
        .and_then(|value| value.as_f64())
}

/// A text field of a statistics entry.
fn text(stat: &JsValue, field: &str) -> Option<String> {
    Reflect::get(stat, &JsValue::from_str(field))
        .ok()
        .and_then(|value| value.as_string())
}

/// A count field of a statistics entry.
fn count(stat: &JsValue, field: &str) -> u64 {
    number(stat, field) as u64
}

/// Adds the pose data channel to `connection` (before the offer or answer, so the
/// description carries it): unreliable, unordered, negotiated with id
/// [`POSE_CHANNEL_ID`] as the native side does. Each pose that arrives is reported.
fn open_pose_channel(
    connection: &RtcPeerConnection,
    events: &mpsc::UnboundedSender<PeerEvent>,
) -> (RtcDataChannel, Closure<dyn FnMut(JsValue)>) {
    let init = RtcDataChannelInit::new();
    init.set_negotiated(true);
    init.set_id(POSE_CHANNEL_ID);
    init.set_ordered(false);
    init.set_max_retransmits(0);
    let channel = connection.create_data_channel_with_data_channel_dict(POSE_CHANNEL_LABEL, &init);
    channel.set_binary_type(RtcDataChannelType::Arraybuffer);
    let events = events.clone();
    let on_pose = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        let data = event.unchecked_into::<MessageEvent>().data();
        match Pose::from_wire(&Uint8Array::new(&data).to_vec()) {
            Ok(pose) => {
                let _ = events.send(PeerEvent::Pose(pose));
            }
            Err(error) => tracing::debug!(%error, "ignoring a message on the pose channel"),
        }
    });
    channel.set_onmessage(Some(on_pose.as_ref().unchecked_ref()));
    (channel, on_pose)
}

/// Our figures from a statistics report, by entry id: the camera's video is the one on
/// `camera_mid`; any other video is the peer's screen, counted while `screen_receiving`.
fn read_stats(
    entries: &HashMap<String, JsValue>,
    camera_mid: Option<String>,
    screen_receiving: bool,
) -> BrowserStats {
    let mut stats = BrowserStats::default();
    for stat in entries.values() {
        let kind = text(stat, "kind");
        match (text(stat, "type").as_deref(), kind.as_deref()) {
            (Some("inbound-rtp"), Some("video")) if text(stat, "mid") != camera_mid => {
                stats.screen = screen_receiving.then(|| ScreenStats {
                    width: count(stat, "frameWidth") as u32,
                    height: count(stat, "frameHeight") as u32,
                    frames_decoded: count(stat, "framesDecoded"),
                    fps: number(stat, "framesPerSecond"),
                    ..ScreenStats::default()
                });
                stats.screen_bytes_received = count(stat, "bytesReceived");
            }
            (Some("inbound-rtp"), Some("video")) => {
                stats.frames_decoded = count(stat, "framesDecoded");
                stats.width = count(stat, "frameWidth") as u32;
                stats.height = count(stat, "frameHeight") as u32;
                stats.fps = number(stat, "framesPerSecond");
                stats.video_bytes_received = count(stat, "bytesReceived");
                stats.freezes = count(stat, "freezeCount");
                stats.frozen_ms = number(stat, "totalFreezesDuration") * 1000.0;
                stats.feedback.nacks_sent += count(stat, "nackCount");
                stats.feedback.plis_sent += count(stat, "pliCount") + count(stat, "firCount");
                let codec = text(stat, "codecId").and_then(|id| entries.get(&id));
                stats.video_codec = codec
                    .and_then(|codec| text(codec, "mimeType"))
                    .map_or("", |mime| codec_name(&mime));
                stats.packets_lost += count(stat, "packetsLost");
                stats.packets_received += count(stat, "packetsReceived");
            }
            (Some("inbound-rtp"), Some("audio")) => {
                stats.audio_packets = count(stat, "packetsReceived");
                stats.audio_level = number(stat, "audioLevel") as f32;
                stats.packets_lost += count(stat, "packetsLost");
                stats.packets_received += count(stat, "packetsReceived");
            }
            (Some("outbound-rtp"), Some("video")) => {
                stats.feedback.nacks_received += count(stat, "nackCount");
                stats.feedback.plis_received += count(stat, "pliCount") + count(stat, "firCount");
            }
            (Some("transport"), _) => {
                let pair = text(stat, "selectedCandidatePairId").and_then(|id| entries.get(&id));
                if let Some(pair) = pair {
                    // Chromium counts whole milliseconds: on loopback the round trip
                    // is 0, which is a measurement, not a missing one.
                    stats.rtt_ms =
                        optional_number(pair, "currentRoundTripTime").map(|rtt| rtt * 1000.0);
                    stats.candidate_pair = candidate_pair(entries, pair);
                }
            }
            _ => {}
        }
    }
    stats
}

/// The kinds of a selected candidate pair's two sides, and how ours travels.
fn candidate_pair(entries: &HashMap<String, JsValue>, pair: &JsValue) -> Option<CandidatePair> {
    let side = |field: &str| text(pair, field).and_then(|id| entries.get(&id));
    let (local, remote) = (side("localCandidateId")?, side("remoteCandidateId")?);
    let kind = |candidate: &JsValue| CandidateKind::parse(&text(candidate, "candidateType")?);
    // A relayed candidate travels to its TURN server over `relayProtocol`.
    let protocol = text(local, "relayProtocol").or_else(|| text(local, "protocol"))?;
    Some(CandidatePair {
        local: kind(local)?,
        remote: kind(remote)?,
        protocol: PairProtocol::parse(&protocol)?,
    })
}

/// The codec name of a `video/VP8`-style MIME type.
fn codec_name(mime: &str) -> &'static str {
    match mime
        .rsplit('/')
        .next()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("VP8") => "VP8",
        Some("VP9") => "VP9",
        Some("H264") => "H264",
        Some("AV1") => "AV1",
        _ => "other",
    }
}

/// What an `icecandidateerror` from a TURN server means: 401 is a refused credential,
/// another code the server's refusal. `None` for the browser's own 701 (no answer):
/// Chromium raises it for each local interface that cannot reach the server, also when
/// another one can, so it says nothing about the call.
fn turn_problem(url: String, code: u16, text: String) -> Option<TurnProblem> {
    match code {
        401 => Some(TurnProblem::unauthorized(url)),
        701 => None,
        code => Some(TurnProblem::Refused {
            url,
            reason: format!("{code} {text}"),
        }),
    }
}

/// The `sdp` field of a description the browser made.
fn sdp_of(description: &JsValue) -> Result<String, RtcError> {
    sdp_text(description).ok_or(RtcError::Stack {
        context: "reading the local description",
        message: "the browser gave no SDP".to_owned(),
    })
}

/// The SDP text of an offer or answer the browser made (`None`: it has none).
pub fn sdp_text(description: &JsValue) -> Option<String> {
    Reflect::get(description, &JsValue::from_str("sdp"))
        .ok()
        .and_then(|sdp| sdp.as_string())
}

/// A session description of `kind` holding `sdp`, to set on a connection.
pub fn session_description(kind: RtcSdpType, sdp: &str) -> RtcSessionDescriptionInit {
    let description = RtcSessionDescriptionInit::new(kind);
    description.set_sdp(sdp);
    description
}

/// The media id of the camera's transceiver: the first negotiated video one (first on
/// every stack). Our own tracks' transceivers stay unnegotiated, without a mid, on a
/// connection that only receives (an SFU's offer to send us someone's media).
fn camera_mid(connection: &RtcPeerConnection) -> Option<String> {
    connection
        .get_transceivers()
        .iter()
        .map(JsCast::unchecked_into::<RtcRtpTransceiver>)
        .filter(|transceiver| transceiver.receiver().track().kind() == "video")
        .find_map(|transceiver| transceiver.mid())
}

/// Whether `event` brings a shared screen: a video track on another transceiver than
/// the camera's.
fn is_screen(connection: &RtcPeerConnection, event: &RtcTrackEvent) -> bool {
    event.track().kind() == "video" && event.transceiver().mid() != camera_mid(connection)
}

/// How our camera goes on the SFU upstream: as simulcast, the whole picture and a half
/// and a quarter of it (rids `f`, `h`, `q`, largest first: the order Janus takes rids
/// in), sending with `stream`.
fn simulcast_init(stream: &MediaStream) -> RtcRtpTransceiverInit {
    let encodings = Array::new();
    let full = RtcRtpEncodingParameters::new();
    full.set_rid("f");
    encodings.push(&full);
    for layer in ReducedLayer::ALL.into_iter().rev() {
        let encoding = RtcRtpEncodingParameters::new();
        encoding.set_rid(match layer {
            ReducedLayer::Half => "h",
            ReducedLayer::Quarter => "q",
        });
        encoding.set_scale_resolution_down_by(layer.divisor() as f32);
        encodings.push(&encoding);
    }
    let init = RtcRtpTransceiverInit::new();
    init.set_direction(RtcRtpTransceiverDirection::Sendrecv);
    init.set_streams(&Array::of1(stream));
    init.set_send_encodings(&encodings);
    init
}

/// The stream a `track` event delivers: its first stream, or the track alone wrapped
/// in a new one (a track sent without a stream is allowed by the spec); `None` when no
/// stream can be made.
pub fn stream_of(event: &RtcTrackEvent) -> Option<MediaStream> {
    let stream = event.streams().get(0);
    if !stream.is_undefined() {
        return Some(stream.unchecked_into());
    }
    let stream = MediaStream::new().ok()?;
    stream.add_track(&event.track());
    Some(stream)
}
