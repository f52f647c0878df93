//! Peer connections: one per remote participant.
//!
//! This module holds the backend-neutral types that the rest of the app sees. The native
//! backend (`native.rs`, webrtc-rs) and the browser backend (`web.rs`) both speak them; no
//! backend type leaks out of its file.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::Serialize;

use crate::signaling::ice_servers::IceServer;
use crate::signaling::payload::{SignalError, SignalPayload};
use crate::signaling::protocol::Pose;

pub use ice::{CandidatePair, IceTransportPolicy, TurnProblem};

pub mod ice;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::{LocalMedia, PeerSession};
#[cfg(target_arch = "wasm32")]
pub use web::{BrowserStats, LocalMedia, PeerSession};
#[cfg(not(target_arch = "wasm32"))]
pub mod turn_check;
pub mod vp8_depacketizer;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// ICE candidates a connection keeps before its remote description arrives; a peer
/// sends a few dozen at most.
pub const MAX_EARLY_CANDIDATES: usize = 128;
/// The id both sides give the pose data channel (negotiated out of band: no in-band
/// announcement, the same on every stack).
pub const POSE_CHANNEL_ID: u16 = 1;
/// The pose data channel's label.
pub const POSE_CHANNEL_LABEL: &str = "poses";

/// What went wrong in a peer connection operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcError {
    /// A signaling payload from the remote failed validation.
    #[error("invalid signaling payload: {0}")]
    Signal(#[from] SignalError),
    /// The remote's session description offers nothing we can send or decode.
    #[error("the peer offered no codec we support (VP8/Opus) for {media}; it offered: {offered}")]
    NoSupportedCodec {
        /// The media kind of the offending section (`audio` or `video`).
        media: String,
        /// The codec names the remote listed for it.
        offered: String,
    },
    /// A description that makes no sense for our role (an answer to an answerer, ...).
    #[error("unexpected {got} for a session in the {role:?} role")]
    UnexpectedSignal {
        /// Our role.
        role: Role,
        /// What arrived.
        got: &'static str,
    },
    /// The remote sent more early candidates than we keep before its description arrives.
    #[error("more than {0} ICE candidates arrived before the remote description")]
    TooManyCandidates(usize),
    /// The WebRTC stack refused an operation.
    #[error("{context}: {message}")]
    Stack {
        /// What we were doing.
        context: &'static str,
        /// The stack's own message.
        message: String,
    },
    /// The session was closed.
    #[error("the peer connection is closed")]
    Closed,
}

/// Which side of the offer/answer exchange a session plays. In our protocol the newcomer
/// offers to everyone already in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Creates the offer as soon as the session exists.
    Offerer,
    /// Waits for the remote offer and answers it.
    Answerer,
}

/// The state of one peer connection, as the W3C `RTCPeerConnectionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerConnectionState {
    /// Created, nothing negotiated yet.
    New,
    /// ICE/DTLS in progress.
    Connecting,
    /// Media can flow.
    Connected,
    /// Connectivity lost; may recover by itself.
    Disconnected,
    /// Connectivity lost for good (or the handshake failed).
    Failed,
    /// Closed by either side.
    Closed,
}

/// Something that happened on the connection to one remote peer.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A message to relay to that peer through signaling.
    Signal(SignalPayload),
    /// The connection state changed.
    State(PeerConnectionState),
    /// One complete, depacketized VP8 frame.
    VideoFrame {
        /// The VP8 frame, as the encoder produced it.
        data: Vec<u8>,
        /// The RTP timestamp (90 kHz) of the frame.
        rtp_timestamp: u32,
        /// Whether the frame is a key frame (decodable on its own).
        keyframe: bool,
    },
    /// One complete, depacketized VP8 frame of the screen the peer shares.
    ScreenFrame {
        /// The VP8 frame, as the encoder produced it.
        data: Vec<u8>,
        /// The RTP timestamp (90 kHz) of the frame.
        rtp_timestamp: u32,
        /// Whether the frame is a key frame (decodable on its own).
        keyframe: bool,
    },
    /// The peer stopped sharing its screen (its track left the negotiated session).
    ScreenEnded,
    /// Incomplete video frames were dropped because of packet loss. A keyframe has already
    /// been requested from the sender; the decoder should skip to it.
    VideoFramesDropped {
        /// How many frames were dropped.
        frames: u32,
    },
    /// One Opus packet.
    AudioPacket {
        /// The Opus payload.
        data: Vec<u8>,
        /// The RTP timestamp (48 kHz) of the packet.
        rtp_timestamp: u32,
    },
    /// Where the peer stands now, from the pose data channel.
    Pose(Pose),
    /// The remote asked for a key frame of our video (PLI or FIR).
    KeyframeRequested,
    /// The remote asked for a key frame of the screen we share.
    ScreenKeyframeRequested,
    /// The remote reported how much of our video it lost since its previous report
    /// (RTCP receiver report), for congestion control.
    ReceiverReport {
        /// Share of our video packets lost, 0 to 1.
        fraction_lost: f64,
    },
    /// Periodic connection statistics.
    Stats {
        /// Round-trip time of the selected ICE candidate pair, when measured.
        rtt_ms: Option<f64>,
        /// The candidate pair the media travels over, once one is selected.
        candidate_pair: Option<CandidatePair>,
        /// RTP packets lost in what we receive, all streams.
        packets_lost: u64,
        /// RTP packets received, all streams.
        packets_received: u64,
        /// Bytes received in RTP payloads, all streams.
        bytes_received: u64,
        /// Bytes sent in RTP payloads, all streams.
        bytes_sent: u64,
        /// Loss-recovery requests both ways.
        feedback: FeedbackCounts,
    },
    /// A problem the user should hear about, such as no common codec.
    Error(String),
    /// A TURN server of the configuration could not be used.
    Turn(TurnProblem),
    /// The browser received a stream of the peer's (once per track); it plays it
    /// itself. The native backend reports depacketized media instead.
    #[cfg(target_arch = "wasm32")]
    RemoteStream(web_sys::MediaStream),
    /// The browser received the peer's shared screen (a stream with its one video
    /// track); it ends with [`PeerEvent::ScreenEnded`].
    #[cfg(target_arch = "wasm32")]
    RemoteScreen(web_sys::MediaStream),
}

/// Loss-recovery requests on one connection since it started, all streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FeedbackCounts {
    /// NACKs we sent (asking the peer to retransmit packets we missed).
    pub nacks_sent: u64,
    /// NACKs the peer sent us (we retransmitted from our send buffer).
    pub nacks_received: u64,
    /// Picture-loss indications we sent (asking for a keyframe).
    pub plis_sent: u64,
    /// Keyframe requests (PLI or FIR) the peer sent us.
    pub plis_received: u64,
}

/// What our side of a connection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// Our camera and microphone (a connection of the mesh).
    Media,
    /// Our camera as simulcast, the whole picture and two smaller layers the receivers
    /// choose from, and our microphone (the upstream to the SFU).
    Simulcast,
    /// Nothing: it only brings someone's media (a downstream from the SFU). Its
    /// description still has our tracks, but nothing is written to them.
    Nothing,
}

/// Settings for the peer connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcConfig {
    /// STUN/TURN servers, with the TURN servers' credentials.
    pub ice_servers: Vec<IceServer>,
    /// Whether ICE may use every candidate or only relayed ones.
    pub ice_transport_policy: IceTransportPolicy,
    /// Local UDP addresses to gather host candidates on. `0.0.0.0:0` means every non-loopback
    /// interface; loopback must be listed explicitly. Ignored by the browser backend.
    pub udp_bind: Vec<SocketAddr>,
    /// What our side of the connection sends.
    pub sending: Sending,
}

impl Default for RtcConfig {
    /// No ICE servers; every interface plus loopback, so two clients on one machine connect
    /// even when it has no network.
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            ice_transport_policy: IceTransportPolicy::All,
            udp_bind: vec![
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
            ],
            sending: Sending::Media,
        }
    }
}

impl RtcConfig {
    /// Whether a TURN server is configured.
    pub fn has_turn(&self) -> bool {
        self.ice_servers.iter().any(IceServer::has_turn)
    }

    /// The local addresses to gather on: [`RtcConfig::udp_bind`], less the loopback ones
    /// when a TURN server is configured. webrtc-rs asks the TURN server for an
    /// allocation from every bound address; one from 127.0.0.1 cannot reach a TURN server
    /// elsewhere, and its failed requests upset the allocation that works (seen with
    /// coturn: 438 Wrong nonce, then 400 Bad Request for every permission, and ICE
    /// fails between two peers behind NATs).
    pub fn gather_addresses(&self) -> Vec<SocketAddr> {
        if !self.has_turn() {
            return self.udp_bind.clone();
        }
        let without_loopback: Vec<SocketAddr> = self
            .udp_bind
            .iter()
            .copied()
            .filter(|address| !address.ip().is_loopback())
            .collect();
        if without_loopback.is_empty() {
            self.udp_bind.clone()
        } else {
            without_loopback
        }
    }

    /// Host candidates on 127.0.0.1 only: for tests and same-machine calls.
    pub fn loopback() -> Self {
        Self {
            udp_bind: vec![SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))],
            ..Self::default()
        }
    }
}
