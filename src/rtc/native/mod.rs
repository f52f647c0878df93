//! Native peer connections, on webrtc-rs 0.21 (`webrtc` over the sans-IO `rtc` core) and tokio.
//!
//! * [`LocalMedia`] owns our outgoing video (VP8) and audio (Opus) streams. Each encoded
//!   frame is packetized once and the same RTP packets go to every peer of the mesh.
//! * [`PeerSession`] is one `RTCPeerConnection` to one remote peer; everything it learns is
//!   reported as [`PeerEvent`]s on the channel given to [`PeerSession::new`].
//!
//! No webrtc-rs type appears in this file's public API.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ::rtc::ice::mdns::MulticastDnsMode;
use ::rtc::interceptor::{
    Attribute, Interceptor, NackGeneratorBuilder, NackResponderBuilder, Packet as ChainPacket,
    Slot, StreamInfo, TaggedPacket,
};
use ::rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use ::rtc::peer_connection::transport::{RTCDtlsTransportState, RTCIceServerTransportProtocol};
use ::rtc::rtcp;
use ::rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use ::rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use ::rtc::rtcp::receiver_report::ReceiverReport;
use ::rtc::rtcp::reception_report::ReceptionReport;
use ::rtc::rtcp::sender_report::SenderReport;
use ::rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use ::rtc::rtp;
use ::rtc::rtp::packetizer::{Packetizer, new_packetizer};
use ::rtc::rtp::sequence::new_random_sequencer;
use ::rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use ::rtc::sansio::Protocol;
use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceCandidateType, RTCIceServer,
    RTCIceTransportPolicy, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, RTCStatsReport, RTCStatsReportEntry, Registry, SettingEngineBuilder,
    StatsSelector,
};
use webrtc::rtp_transceiver::RtpSender;

use super::ice::{CandidateKind, CandidatePair, IceServer, IceTransportPolicy, PairProtocol};
use super::{
    FeedbackCounts, PeerConnectionState, PeerEvent, Role, RtcConfig, RtcError, SignalPayload,
};

/// Payload type we offer for VP8 (the remote's choice wins when it offers).
const VP8_PAYLOAD_TYPE: u8 = 96;
/// Payload type we offer for Opus (the remote's choice wins when it offers).
const OPUS_PAYLOAD_TYPE: u8 = 111;
const VIDEO_CLOCK_RATE: u32 = 90_000;
const AUDIO_CLOCK_RATE: u32 = 48_000;
/// Largest RTP packet we send, headers included; leaves room for SRTP, UDP, IP and TURN.
const RTP_MTU: usize = 1200;
/// How long without traffic before ICE reports `Disconnected`.
const ICE_DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(2);
/// How much longer after that before ICE reports `Failed` (so failed = 4 s of silence; the
/// same total bounds connectivity checks of a new connection).
const ICE_FAILED_TIMEOUT: Duration = Duration::from_secs(2);
/// How often ICE sends consent/keepalive checks on an idle pair.
const ICE_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
/// How often a connected session reports [`PeerEvent::Stats`].
const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// How often a connected session checks whether the remote hung up.
const MONITOR_INTERVAL: Duration = Duration::from_millis(100);
/// Remote candidates kept while waiting for the remote description.
const MAX_EARLY_CANDIDATES: usize = 128;
/// Shortest time between two keyframe requests we send on our own after frame loss.
const AUTO_KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// A write this much later than the previous frame's end is a pause (camera off, mic muted):
/// the RTP clock is advanced over the gap so receivers see real time pass.
const PAUSE_THRESHOLD: Duration = Duration::from_millis(250);
/// Where our RTCP feedback interceptor sits: application-most, after every stock one.
const FEEDBACK_TAP_SLOT: usize = 14_000;

fn stack_error(context: &'static str) -> impl FnOnce(webrtc::error::Error) -> RtcError {
    move |e| RtcError::Stack {
        context,
        message: e.to_string(),
    }
}

fn random_u32() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish() as u32
}

/// How often the receiver asks for packets still missing. webrtc-rs's default, 100 ms,
/// adds up to a tenth of a second to every repair; at 10 ms a lost packet is asked for as
/// soon as the next packet shows the gap, so a repair costs about one round trip (with 5 %
/// loss and 50 ms each way: about 1 s frozen per minute instead of 13 s;
/// docs/impaired-network.md).
const NACK_INTERVAL: Duration = Duration::from_millis(10);

/// How many times one missing packet is asked for. Without a bound, a fast NACK cycle
/// over a long round trip (a congested link: 1 s and more) asks for each packet a hundred
/// times and the resends choke the link further; six requests 10 ms apart survive the
/// loss of a request or of a resend.
const NACKS_PER_PACKET: u16 = 6;

/// webrtc-rs's default interceptors (NACK, TWCC receiver side, RTCP reports), with the NACK
/// generator asking every [`NACK_INTERVAL`]. The codecs carry the `nack` feedback themselves.
fn register_interceptors(media_engine: &mut MediaEngine) -> Result<Registry, RtcError> {
    configure_simulcast_extension_headers(media_engine)
        .map_err(stack_error("registering header extensions"))?;
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_interval(NACK_INTERVAL)
                .with_max_nacks_per_packet(NACKS_PER_PACKET)
                .build(),
        );
    let registry = configure_twcc_receiver_only(registry, media_engine)
        .map_err(stack_error("registering interceptors"))?;
    Ok(configure_rtcp_reports(registry))
}

fn vp8_codec() -> RTCRtpCodec {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: "video/VP8".to_owned(),
        clock_rate: VIDEO_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            feedback("ccm", "fir"),
            feedback("nack", ""),
            feedback("nack", "pli"),
        ],
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: AUDIO_CLOCK_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

// ---------------------------------------------------------------------------------------------
// Local media: one packetizer per stream, fanned out to every peer connection.
// ---------------------------------------------------------------------------------------------

/// Our outgoing media, shared by every [`PeerSession`] of a mesh.
///
/// webrtc-rs 0.21 binds a local track object to exactly one peer connection (the track keeps a
/// single driver context), so each session gets its own track object carrying the same SSRC and
/// codec. Frames are packetized once here and the resulting RTP packets are handed to every
/// session's track, so nothing is encoded or packetized twice.
///
/// Pausing (camera off, mic muted) is simply not writing, or [`LocalMedia::set_video_enabled`]
/// / [`LocalMedia::set_audio_enabled`] to make the writes no-ops; the RTP clock is advanced over
/// the pause when writing resumes.
#[derive(Clone)]
pub struct LocalMedia {
    video: Arc<OutboundStream>,
    audio: Arc<OutboundStream>,
}

impl LocalMedia {
    /// Creates the VP8 (90 kHz) and Opus (48 kHz, 2 channels) streams with fresh SSRCs.
    pub fn new() -> Result<Self, RtcError> {
        let stream_id = format!("meetspace-{:08x}", random_u32());
        Ok(Self {
            video: Arc::new(OutboundStream::new(
                &stream_id,
                RtpCodecKind::Video,
                vp8_codec(),
            )?),
            audio: Arc::new(OutboundStream::new(
                &stream_id,
                RtpCodecKind::Audio,
                opus_codec(),
            )?),
        })
    }

    /// Sends one encoded VP8 frame to every connected peer. `duration` is the time until the
    /// next frame (1/fps) and advances the RTP clock.
    pub async fn write_video(&self, frame: &[u8], duration: Duration) -> Result<(), RtcError> {
        self.video.write(frame, duration).await
    }

    /// Sends one Opus packet to every connected peer. `duration` is the audio it holds
    /// (usually 20 ms).
    pub async fn write_audio(&self, packet: &[u8], duration: Duration) -> Result<(), RtcError> {
        self.audio.write(packet, duration).await
    }

    /// Camera on/off: while off, [`LocalMedia::write_video`] sends nothing.
    pub fn set_video_enabled(&self, enabled: bool) {
        self.video.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Mic unmute/mute: while muted, [`LocalMedia::write_audio`] sends nothing.
    pub fn set_audio_enabled(&self, enabled: bool) {
        self.audio.enabled.store(enabled, Ordering::Relaxed);
    }
}

/// One outgoing stream: its description, its packetizer and the peers it goes to.
struct OutboundStream {
    ssrc: u32,
    clock_rate: u32,
    /// Stream/track ids, kind, SSRC and codec, cloned into each peer connection's track.
    template: MediaStreamTrack,
    enabled: AtomicBool,
    packetizer: tokio::sync::Mutex<PacketizerState>,
    sinks: Mutex<Vec<Arc<Sink>>>,
    next_sink_id: AtomicU64,
}

struct PacketizerState {
    packetizer: Box<dyn Packetizer>,
    /// When the next write is due if the stream runs continuously.
    next_due: Option<Instant>,
}

/// One peer connection's copy of an outgoing stream.
struct Sink {
    id: u64,
    track: Arc<TrackLocalStaticRTP>,
    /// The payload type negotiated with this peer; nothing is sent before it is known.
    payload_type: OnceLock<u8>,
    /// Whether the connection is up; packets written before that would be dropped anyway.
    connected: AtomicBool,
}

impl OutboundStream {
    fn new(stream_id: &str, kind: RtpCodecKind, codec: RTCRtpCodec) -> Result<Self, RtcError> {
        let ssrc = random_u32();
        let payloader = codec
            .payloader()
            .map_err(stack_error("creating the payloader"))?;
        let packetizer = new_packetizer(
            Instant::now(),
            RTP_MTU,
            0, // set per peer: the negotiated payload type can differ between peers
            ssrc,
            payloader,
            Box::new(new_random_sequencer()),
            codec.clock_rate,
        );
        let clock_rate = codec.clock_rate;
        let template = MediaStreamTrack::new(
            stream_id.to_owned(),
            format!("{stream_id}-{kind}"),
            format!("{kind}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        Ok(Self {
            ssrc,
            clock_rate,
            template,
            enabled: AtomicBool::new(true),
            packetizer: tokio::sync::Mutex::new(PacketizerState {
                packetizer: Box::new(packetizer),
                next_due: None,
            }),
            sinks: Mutex::new(Vec::new()),
            next_sink_id: AtomicU64::new(0),
        })
    }

    fn ticks(&self, duration: Duration) -> u32 {
        (duration.as_secs_f64() * f64::from(self.clock_rate)) as u32
    }

    fn add_sink(&self) -> Arc<Sink> {
        let sink = Arc::new(Sink {
            id: self.next_sink_id.fetch_add(1, Ordering::Relaxed),
            track: Arc::new(TrackLocalStaticRTP::new(self.template.clone())),
            payload_type: OnceLock::new(),
            connected: AtomicBool::new(false),
        });
        lock(&self.sinks).push(Arc::clone(&sink));
        sink
    }

    fn remove_sink(&self, id: u64) {
        lock(&self.sinks).retain(|sink| sink.id != id);
    }

    async fn write(&self, data: &[u8], duration: Duration) -> Result<(), RtcError> {
        if data.is_empty() || !self.enabled.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Held across the sends so that concurrent writers cannot interleave packets.
        let mut state = self.packetizer.lock().await;
        let now = Instant::now();
        if let Some(due) = state.next_due
            && now > due + PAUSE_THRESHOLD
        {
            let gap = self.ticks(now - due);
            state.packetizer.skip_samples(gap);
        }
        state.next_due = Some(now + duration);
        let samples = self.ticks(duration);
        let packets = state
            .packetizer
            .packetize(now, &Bytes::copy_from_slice(data), samples)
            .map_err(stack_error("packetizing"))?;

        let sinks: Vec<(Arc<Sink>, u8)> = lock(&self.sinks)
            .iter()
            .filter(|sink| sink.connected.load(Ordering::Relaxed))
            .filter_map(|sink| Some((Arc::clone(sink), *sink.payload_type.get()?)))
            .collect();
        for (sink, payload_type) in sinks {
            for packet in &packets {
                let mut packet = packet.clone();
                packet.header.payload_type = payload_type;
                if let Err(e) = sink.track.write_rtp(packet).await {
                    // That peer's connection is going away; its own events say so.
                    tracing::debug!("dropping RTP for one peer: {e}");
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// RTCP feedback: an interceptor that lets inbound PLI/FIR reach the application and reports
// the loss that receiver reports describe.
// ---------------------------------------------------------------------------------------------

/// Marks inbound PLI and FIR for delivery to the application, and turns each reception
/// report about our video into a [`PeerEvent::ReceiverReport`] (for congestion control).
/// webrtc-rs ends inbound RTCP at the end of the interceptor chain unless an interceptor
/// vouches for it; other RTCP passes through unmarked and stops there as usual.
struct FeedbackTap {
    /// Our video SSRC: the reports about it are the ones congestion control wants.
    video_ssrc: u32,
    events: UnboundedSender<PeerEvent>,
    /// NACKs and keyframe requests the peer sent us, counted here because webrtc-rs's
    /// statistics do not count inbound feedback.
    received: Arc<ReceivedFeedback>,
    read_queue: std::collections::VecDeque<TaggedPacket>,
    write_queue: std::collections::VecDeque<TaggedPacket>,
}

impl FeedbackTap {
    fn new(
        video_ssrc: u32,
        events: UnboundedSender<PeerEvent>,
        received: Arc<ReceivedFeedback>,
    ) -> Self {
        Self {
            video_ssrc,
            events,
            received,
            read_queue: std::collections::VecDeque::new(),
            write_queue: std::collections::VecDeque::new(),
        }
    }

    /// Reports the loss in each reception report about our video (a peer that also sends
    /// may put them in its sender reports).
    fn report_loss(&self, packet: &dyn rtcp::Packet) {
        let any = packet.as_any();
        let reports: &[ReceptionReport] = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            &rr.reports
        } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
            &sr.reports
        } else {
            return;
        };
        for report in reports.iter().filter(|r| r.ssrc == self.video_ssrc) {
            let _ = self.events.send(PeerEvent::ReceiverReport {
                fraction_lost: f64::from(report.fraction_lost) / 256.0,
            });
        }
    }
}

fn is_keyframe_request(packet: &dyn rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Loss-recovery requests a peer sent us.
#[derive(Default)]
struct ReceivedFeedback {
    nacks: AtomicU64,
    keyframe_requests: AtomicU64,
}

impl ReceivedFeedback {
    fn count(&self, packet: &dyn rtcp::Packet) {
        if packet.as_any().is::<TransportLayerNack>() {
            self.nacks.fetch_add(1, Ordering::Relaxed);
        } else if is_keyframe_request(packet) {
            self.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let ChainPacket::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                self.report_loss(packet.as_ref());
                self.received.count(packet.as_ref());
            }
            let requests: Vec<Box<dyn rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_keyframe_request(p.as_ref()))
                .cloned()
                .collect();
            if !requests.is_empty() {
                msg.message.packet = ChainPacket::Rtcp(requests);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for FeedbackTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

// ---------------------------------------------------------------------------------------------
// VP8 depacketization (RFC 7741).
// ---------------------------------------------------------------------------------------------

/// Parses the VP8 payload descriptor. Returns whether the packet starts a frame (S=1 and
/// partition index 0) and where the VP8 data begins, or `None` for a packet without data.
fn parse_vp8_descriptor(payload: &[u8]) -> Option<(bool, usize)> {
    let first = *payload.first()?;
    let start_of_frame = first & 0x10 != 0 && first & 0x07 == 0;
    let mut len = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(1)?;
        len = 2;
        if ext & 0x80 != 0 {
            // PictureID, 7 or 15 bits.
            len += if payload.get(len)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            len += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            len += 1; // TID/Y/KEYIDX
        }
    }
    (len < payload.len()).then_some((start_of_frame, len))
}

/// One buffered RTP packet of a VP8 stream.
struct Fragment {
    timestamp: u32,
    marker: bool,
    start: bool,
    data: Bytes,
}

/// A reassembled frame.
#[derive(Debug, PartialEq, Eq)]
struct AssembledFrame {
    data: Vec<u8>,
    timestamp: u32,
    keyframe: bool,
}

/// Reassembles VP8 frames from RTP packets.
///
/// A frame is complete when its packets are contiguous in sequence number, share a timestamp,
/// the first starts the frame and the last carries the marker bit. Packets may arrive out of
/// order (NACK retransmissions do); a frame with a gap is kept until the stream has moved
/// [`Vp8Assembler::MAX_WAIT_TICKS`] past it or the buffer is full, then dropped and counted.
#[derive(Default)]
struct Vp8Assembler {
    /// Buffered packets by extended (unwrapped) sequence number.
    fragments: BTreeMap<u64, Fragment>,
    /// Highest extended sequence number seen, for unwrapping.
    highest: Option<u64>,
    /// The first sequence number not yet consumed; `None` until the first frame start.
    next: Option<u64>,
}

/// What one pushed packet released.
#[derive(Debug, Default, PartialEq, Eq)]
struct AssemblerOutput {
    frames: Vec<AssembledFrame>,
    dropped_frames: u32,
}

enum FrameStatus {
    Complete(u64),
    Waiting,
    Broken,
}

impl Vp8Assembler {
    /// How far (in 90 kHz ticks) the stream may move past an incomplete frame before it is
    /// given up: 400 ms, room for two NACK attempts (the generator runs every 100 ms) over
    /// a 100 ms round trip. Giving up costs a keyframe round trip and a longer freeze.
    const MAX_WAIT_TICKS: u32 = VIDEO_CLOCK_RATE * 2 / 5;
    /// Most packets held while waiting for a missing one.
    const MAX_BUFFERED: usize = 1024;
    /// Extended sequence numbers start here so that unwrapping never goes below zero.
    const BASE: u64 = 1 << 32;
    /// A packet this far behind the consumed point is not a late retransmission: the sender
    /// restarted its sequence numbers, so the assembler starts over.
    const RESTART_DISTANCE: u64 = 3000;

    fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            None => Self::BASE + u64::from(seq),
            Some(highest) => {
                let delta = seq.wrapping_sub(highest as u16) as i16;
                highest.saturating_add_signed(i64::from(delta))
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    fn push(&mut self, header: &rtp::header::Header, payload: &Bytes) -> AssemblerOutput {
        let mut out = AssemblerOutput::default();
        let Some((start, offset)) = parse_vp8_descriptor(payload) else {
            // Malformed or empty: behaves like a lost packet.
            return out;
        };
        let mut ext = self.extend(header.sequence_number);
        if let Some(next) = self.next
            && ext < next
        {
            if ext + Self::RESTART_DISTANCE >= next {
                return out; // late duplicate or retransmission of something already consumed
            }
            *self = Self::default();
            ext = self.extend(header.sequence_number);
        }
        self.fragments.entry(ext).or_insert(Fragment {
            timestamp: header.timestamp,
            marker: header.marker,
            start,
            data: payload.slice(offset..),
        });
        self.drain(&mut out);
        out
    }

    fn status_at(&self, next: u64) -> FrameStatus {
        let Some(first) = self.fragments.get(&next) else {
            return FrameStatus::Waiting;
        };
        if !first.start {
            return FrameStatus::Broken;
        }
        let mut seq = next;
        loop {
            let Some(fragment) = self.fragments.get(&seq) else {
                return FrameStatus::Waiting;
            };
            if fragment.timestamp != first.timestamp {
                // The previous packet ended the frame without a marker: accept it if this one
                // begins the next frame, otherwise something is wrong with the stream.
                return if fragment.start {
                    FrameStatus::Complete(seq - 1)
                } else {
                    FrameStatus::Broken
                };
            }
            if fragment.marker {
                return FrameStatus::Complete(seq);
            }
            seq += 1;
        }
    }

    /// Whether an incomplete frame at `next` has been waited for long enough.
    fn waited_too_long(&self) -> bool {
        if self.fragments.len() >= Self::MAX_BUFFERED {
            return true;
        }
        match (
            self.fragments.first_key_value(),
            self.fragments.last_key_value(),
        ) {
            (Some((_, oldest)), Some((_, newest))) => {
                newest.timestamp.wrapping_sub(oldest.timestamp) as i32 > Self::MAX_WAIT_TICKS as i32
            }
            _ => false,
        }
    }

    /// Drops everything before the first frame start after `after`, returning how many
    /// frames (distinct timestamps) that discarded.
    fn skip_to_next_start(&mut self, after: u64) -> u32 {
        let resume = self
            .fragments
            .range(after + 1..)
            .find(|(_, f)| f.start)
            .map(|(seq, _)| *seq);
        let kept = match resume {
            Some(seq) => self.fragments.split_off(&seq),
            None => BTreeMap::new(),
        };
        let discarded = std::mem::replace(&mut self.fragments, kept);
        let mut timestamps: Vec<u32> = discarded.values().map(|f| f.timestamp).collect();
        timestamps.dedup();
        self.next = Some(resume.unwrap_or_else(|| self.highest.map_or(after, |h| h + 1)));
        timestamps.len().max(1) as u32
    }

    fn drain(&mut self, out: &mut AssemblerOutput) {
        loop {
            let Some(next) = self.next else {
                // Not anchored yet: start at the first frame start seen.
                match self
                    .fragments
                    .iter()
                    .find(|(_, f)| f.start)
                    .map(|(s, _)| *s)
                {
                    Some(seq) => {
                        self.fragments = self.fragments.split_off(&seq);
                        self.next = Some(seq);
                        continue;
                    }
                    None => {
                        if self.fragments.len() >= Self::MAX_BUFFERED {
                            self.fragments.clear();
                        }
                        return;
                    }
                }
            };
            match self.status_at(next) {
                FrameStatus::Complete(end) => {
                    let rest = self.fragments.split_off(&(end + 1));
                    let parts = std::mem::replace(&mut self.fragments, rest);
                    let timestamp = parts.values().next().map_or(0, |f| f.timestamp);
                    let data: Vec<u8> = parts
                        .values()
                        .flat_map(|f| f.data.iter().copied())
                        .collect();
                    // VP8 frame tag: the P bit (bit 0 of the first byte) is 0 on key frames.
                    let keyframe = data.first().is_some_and(|b| b & 0x01 == 0);
                    out.frames.push(AssembledFrame {
                        data,
                        timestamp,
                        keyframe,
                    });
                    self.next = Some(end + 1);
                }
                FrameStatus::Broken => out.dropped_frames += self.skip_to_next_start(next),
                FrameStatus::Waiting if self.waited_too_long() => {
                    out.dropped_frames += self.skip_to_next_start(next);
                }
                FrameStatus::Waiting => return,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Peer sessions.
// ---------------------------------------------------------------------------------------------

/// State shared between a [`PeerSession`], its event handler and its tasks.
struct Shared {
    events: UnboundedSender<PeerEvent>,
    last_state: Mutex<Option<PeerConnectionState>>,
    local_signal: Mutex<LocalSignal>,
    /// The remote's video track and SSRC, for keyframe requests.
    remote_video: Mutex<Option<(Arc<dyn TrackRemote>, u32)>>,
    /// Our video SSRC, named as the sender of our keyframe requests.
    local_video_ssrc: u32,
    last_auto_keyframe_request: Mutex<Option<Instant>>,
    /// What the peer asked of our video, counted by the [`FeedbackTap`].
    received_feedback: Arc<ReceivedFeedback>,
    /// Our copies of the outgoing streams, video then audio; sending starts once connected.
    sinks: [Arc<Sink>; 2],
    connected: AtomicBool,
}

/// Local candidates are held back until our description has been emitted, so the remote never
/// sees a candidate before the offer/answer it belongs to.
#[derive(Default)]
struct LocalSignal {
    description_sent: bool,
    held_candidates: Vec<SignalPayload>,
    /// The first media section's mid, which trickled candidates are attributed to (all media
    /// is bundled on one transport).
    first_mid: Option<String>,
}

impl Shared {
    fn emit(&self, event: PeerEvent) {
        // The receiver is gone only when the app no longer cares about this peer.
        let _ = self.events.send(event);
    }

    /// Emits a state change. `Closed` is final: ICE noticing the silence afterwards is not news.
    fn emit_state(&self, state: PeerConnectionState) {
        let mut last = lock(&self.last_state);
        if *last != Some(state) && *last != Some(PeerConnectionState::Closed) {
            *last = Some(state);
            self.emit(PeerEvent::State(state));
        }
    }

    fn is_closed(&self) -> bool {
        *lock(&self.last_state) == Some(PeerConnectionState::Closed)
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        for sink in &self.sinks {
            sink.connected.store(connected, Ordering::Relaxed);
        }
    }

    /// Emits our offer or answer, then the candidates gathered meanwhile.
    fn send_description(&self, payload: SignalPayload) {
        // Emitted under the lock so that no new candidate can overtake the description.
        let mut signal = lock(&self.local_signal);
        signal.description_sent = true;
        self.emit(PeerEvent::Signal(payload));
        for candidate in std::mem::take(&mut signal.held_candidates) {
            self.emit(PeerEvent::Signal(candidate));
        }
    }

    async fn send_keyframe_request(&self) {
        let Some((track, media_ssrc)) = lock(&self.remote_video).clone() else {
            return;
        };
        let pli = PictureLossIndication {
            sender_ssrc: self.local_video_ssrc,
            media_ssrc,
        };
        if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
            tracing::debug!("keyframe request not sent: {e}");
        }
    }

    /// Requests a keyframe on our own (after frame loss, or when a stream starts with a delta
    /// frame), at most once per [`AUTO_KEYFRAME_REQUEST_INTERVAL`].
    async fn request_keyframe_throttled(&self) {
        let due = {
            let mut last = lock(&self.last_auto_keyframe_request);
            let now = Instant::now();
            let due = last.is_none_or(|t| now.duration_since(t) >= AUTO_KEYFRAME_REQUEST_INTERVAL);
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            self.send_keyframe_request().await;
        }
    }
}

fn map_state(state: RTCPeerConnectionState) -> Option<PeerConnectionState> {
    Some(match state {
        RTCPeerConnectionState::New => PeerConnectionState::New,
        RTCPeerConnectionState::Connecting => PeerConnectionState::Connecting,
        RTCPeerConnectionState::Connected => PeerConnectionState::Connected,
        RTCPeerConnectionState::Disconnected => PeerConnectionState::Disconnected,
        RTCPeerConnectionState::Failed => PeerConnectionState::Failed,
        RTCPeerConnectionState::Closed => PeerConnectionState::Closed,
        _ => return None,
    })
}

/// Receives the stack's callbacks. They run on the connection's driver task, so nothing here
/// waits on the connection itself: longer work is spawned.
struct Handler {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let init = match event.candidate.to_json() {
            Ok(init) => init,
            Err(e) => {
                tracing::warn!("cannot serialize a local ICE candidate: {e}");
                return;
            }
        };
        let mut signal = lock(&self.shared.local_signal);
        let payload = SignalPayload::Candidate {
            candidate: init.candidate,
            sdp_mid: signal.first_mid.clone().or(init.sdp_mid),
            sdp_mline_index: Some(0),
        };
        if signal.description_sent {
            self.shared.emit(PeerEvent::Signal(payload));
        } else {
            signal.held_candidates.push(payload);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let Some(state) = map_state(state) else {
            return;
        };
        if self.shared.is_closed() {
            return;
        }
        // Flags first, so that writes made on seeing `Connected` go out.
        match state {
            PeerConnectionState::Connected => self.shared.set_connected(true),
            PeerConnectionState::Failed | PeerConnectionState::Closed => {
                self.shared.set_connected(false);
            }
            _ => {}
        }
        self.shared.emit_state(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = Arc::clone(&self.shared);
        tokio::spawn(receive_track(shared, track));
    }
}

/// Reads one remote track until it ends, turning RTP into [`PeerEvent`]s.
async fn receive_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let kind = track.kind().await;
    let signalled_ssrc = track.ssrcs().await.first().copied();
    let mut assembler = Vp8Assembler::default();
    let mut video_ssrc = None;
    let mut seen_keyframe = false;
    if kind == RtpCodecKind::Video
        && let Some(ssrc) = signalled_ssrc
    {
        *lock(&shared.remote_video) = Some((Arc::clone(&track), ssrc));
    }
    while let Some(event) = track.poll().await {
        let packet = match event {
            TrackRemoteEvent::OnRtpPacket(packet) => packet,
            TrackRemoteEvent::OnEnded => break,
            _ => continue,
        };
        match kind {
            RtpCodecKind::Audio if !packet.payload.is_empty() => {
                shared.emit(PeerEvent::AudioPacket {
                    data: packet.payload.to_vec(),
                    rtp_timestamp: packet.header.timestamp,
                });
            }
            RtpCodecKind::Video => {
                if video_ssrc != Some(packet.header.ssrc) {
                    // First packet, or the remote switched streams: new sequence space.
                    video_ssrc = Some(packet.header.ssrc);
                    assembler = Vp8Assembler::default();
                    seen_keyframe = false;
                    *lock(&shared.remote_video) = Some((Arc::clone(&track), packet.header.ssrc));
                }
                let out = assembler.push(&packet.header, &packet.payload);
                let mut undecodable = false;
                for frame in out.frames {
                    // Until the first key frame, nothing can be decoded: ask for one.
                    seen_keyframe |= frame.keyframe;
                    undecodable |= !seen_keyframe;
                    shared.emit(PeerEvent::VideoFrame {
                        data: frame.data,
                        rtp_timestamp: frame.timestamp,
                        keyframe: frame.keyframe,
                    });
                }
                if out.dropped_frames > 0 {
                    // Later frames referenced the lost ones: undecodable until a key frame.
                    seen_keyframe = false;
                    shared.emit(PeerEvent::VideoFramesDropped {
                        frames: out.dropped_frames,
                    });
                }
                if out.dropped_frames > 0 || undecodable {
                    shared.request_keyframe_throttled().await;
                }
            }
            _ => {}
        }
    }
}

/// Turns inbound PLI/FIR about our video into [`PeerEvent::KeyframeRequested`].
async fn watch_keyframe_requests(shared: Arc<Shared>, track: Arc<TrackLocalStaticRTP>) {
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
            shared.emit(PeerEvent::KeyframeRequested);
        }
    }
}

/// Whether the remote closed the DTLS transport (it called `close()`: a `close_notify`).
async fn remote_closed(sender: &Arc<dyn RtpSender>) -> bool {
    let Ok(Some(transport)) = sender.transport().await else {
        return false;
    };
    matches!(transport.state().await, Ok(RTCDtlsTransportState::Closed))
}

/// Watches a live connection: reports a remote hang-up as [`PeerConnectionState::Closed`]
/// within [`MONITOR_INTERVAL`] (ICE alone would only notice after its timeouts), and reports
/// [`PeerEvent::Stats`] every [`STATS_INTERVAL`].
async fn monitor(shared: Arc<Shared>, pc: Arc<dyn PeerConnection>, sender: Arc<dyn RtpSender>) {
    let mut ticker = tokio::time::interval(MONITOR_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_stats = Instant::now();
    loop {
        ticker.tick().await;
        if !shared.connected.load(Ordering::Relaxed) {
            continue;
        }
        if remote_closed(&sender).await {
            shared.set_connected(false);
            shared.emit_state(PeerConnectionState::Closed);
            return;
        }
        if last_stats.elapsed() < STATS_INTERVAL {
            continue;
        }
        last_stats = Instant::now();
        let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
        let mut rtt_ms = None;
        let (mut packets_lost, mut packets_received, mut bytes_received, mut bytes_sent) =
            (0u64, 0u64, 0u64, 0u64);
        let mut feedback = FeedbackCounts {
            nacks_received: shared.received_feedback.nacks.load(Ordering::Relaxed),
            plis_received: shared
                .received_feedback
                .keyframe_requests
                .load(Ordering::Relaxed),
            ..FeedbackCounts::default()
        };
        let candidate_pair = selected_pair(&report);
        for entry in report.iter() {
            match entry {
                RTCStatsReportEntry::IceCandidatePair(pair)
                    if pair.nominated && pair.current_round_trip_time > 0.0 =>
                {
                    rtt_ms = Some(pair.current_round_trip_time * 1000.0);
                }
                RTCStatsReportEntry::InboundRtp(inbound) => {
                    let received = &inbound.received_rtp_stream_stats;
                    packets_lost += received.packets_lost.max(0).unsigned_abs();
                    packets_received += received.packets_received;
                    bytes_received += inbound.bytes_received;
                    feedback.nacks_sent += u64::from(inbound.nack_count);
                    feedback.plis_sent += u64::from(inbound.pli_count);
                }
                RTCStatsReportEntry::OutboundRtp(outbound) => {
                    bytes_sent += outbound.sent_rtp_stream_stats.bytes_sent;
                }
                _ => {}
            }
        }
        shared.emit(PeerEvent::Stats {
            rtt_ms,
            candidate_pair,
            packets_lost,
            packets_received,
            bytes_received,
            bytes_sent,
            feedback,
        });
    }
}

/// The ICE server as webrtc-rs takes it.
fn ice_server(server: &IceServer) -> RTCIceServer {
    RTCIceServer {
        urls: server.urls.iter().map(ToString::to_string).collect(),
        username: server.username.clone().unwrap_or_default(),
        credential: server.credential.clone().unwrap_or_default(),
    }
}

/// The candidate pair the transport selected (else the nominated one that succeeded),
/// from a stats report.
fn selected_pair(report: &RTCStatsReport) -> Option<CandidatePair> {
    let selected_id = report
        .transport()
        .map(|transport| transport.selected_candidate_pair_id.as_str())
        .filter(|id| !id.is_empty());
    let pair = report.candidate_pairs().find(|pair| match selected_id {
        Some(id) => pair.stats.id == id,
        None => pair.nominated,
    })?;
    // webrtc-rs names a pair's candidates by their bare ids but files their stats
    // under a prefixed one.
    let candidate = |id: &str, prefix: &str| match report
        .get(id)
        .or_else(|| report.get(&format!("{prefix}{id}")))
    {
        Some(RTCStatsReportEntry::LocalCandidate(c) | RTCStatsReportEntry::RemoteCandidate(c)) => {
            Some(c)
        }
        _ => None,
    };
    let kind = |typ: RTCIceCandidateType| match typ {
        RTCIceCandidateType::Host => Some(CandidateKind::Host),
        RTCIceCandidateType::Srflx => Some(CandidateKind::Srflx),
        RTCIceCandidateType::Prflx => Some(CandidateKind::Prflx),
        RTCIceCandidateType::Relay => Some(CandidateKind::Relay),
        _ => None,
    };
    let local = candidate(&pair.local_candidate_id, "RTCLocalIceCandidate_")?;
    let local_kind = kind(local.candidate_type)?;
    // A remote candidate learnt from the checks (peer-reflexive) was never signaled.
    let remote_kind = candidate(&pair.remote_candidate_id, "RTCRemoteIceCandidate_")
        .map_or(Some(CandidateKind::Prflx), |remote| {
            kind(remote.candidate_type)
        })?;
    // For a relayed candidate, how we reach the TURN server (webrtc-rs: always UDP).
    let protocol = match local_kind {
        CandidateKind::Relay => match local.relay_protocol {
            RTCIceServerTransportProtocol::Tcp => PairProtocol::Tcp,
            RTCIceServerTransportProtocol::Tls => PairProtocol::Tls,
            _ => PairProtocol::Udp,
        },
        _ => PairProtocol::parse(&local.protocol)?,
    };
    Some(CandidatePair {
        local: local_kind,
        remote: remote_kind,
        protocol,
    })
}

/// The offer/answer state, serialized by its lock.
#[derive(Default)]
struct RemoteSignal {
    remote_description_set: bool,
    early_candidates: Vec<RTCIceCandidateInit>,
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
    remote_signal: tokio::sync::Mutex<RemoteSignal>,
    /// Video then audio, like `Shared::sinks`.
    senders: [Arc<dyn RtpSender>; 2],
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
        let video_sink = local.video.add_sink();
        let audio_sink = local.audio.add_sink();
        let shared = Arc::new(Shared {
            events,
            last_state: Mutex::new(None),
            local_signal: Mutex::new(LocalSignal::default()),
            remote_video: Mutex::new(None),
            local_video_ssrc: local.video.ssrc,
            last_auto_keyframe_request: Mutex::new(None),
            received_feedback: Arc::default(),
            sinks: [Arc::clone(&video_sink), Arc::clone(&audio_sink)],
            connected: AtomicBool::new(false),
        });
        let built = Self::build(config, local, role, &shared, &video_sink, &audio_sink).await;
        match built {
            Ok(session) => Ok(session),
            Err(e) => {
                local.video.remove_sink(video_sink.id);
                local.audio.remove_sink(audio_sink.id);
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
        let mut media_engine = MediaEngine::default();
        for (codec, payload_type, kind) in [
            (vp8_codec(), VP8_PAYLOAD_TYPE, RtpCodecKind::Video),
            (opus_codec(), OPUS_PAYLOAD_TYPE, RtpCodecKind::Audio),
        ] {
            media_engine
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec: codec,
                        payload_type,
                    },
                    kind,
                )
                .map_err(stack_error("registering codecs"))?;
        }
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
            .with_multicast_dns_mode(MulticastDnsMode::Disabled);
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

        let senders = match add_tracks(&pc, video_sink, audio_sink).await {
            Ok(senders) => senders,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };

        let tasks = vec![
            tokio::spawn(watch_keyframe_requests(
                Arc::clone(shared),
                Arc::clone(&video_sink.track),
            )),
            tokio::spawn(monitor(
                Arc::clone(shared),
                Arc::clone(&pc),
                Arc::clone(&senders[0]),
            )),
        ];
        let session = Self {
            pc,
            role,
            shared: Arc::clone(shared),
            local: local.clone(),
            remote_signal: tokio::sync::Mutex::new(RemoteSignal::default()),
            senders,
            tasks,
            closed: AtomicBool::new(false),
        };
        if role == Role::Offerer {
            let offer = session
                .pc
                .create_offer(None)
                .await
                .map_err(stack_error("creating the offer"))?;
            let sdp = offer.sdp.clone();
            session.set_local(offer).await?;
            session
                .shared
                .send_description(SignalPayload::Offer { sdp });
        }
        Ok(session)
    }

    /// Applies one signaling message from the remote peer: an offer (answered with a
    /// [`PeerEvent::Signal`]), an answer, or a trickled candidate (queued until the remote
    /// description is known).
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
        let mut remote = self.remote_signal.lock().await;
        match payload {
            SignalPayload::Offer { sdp } => {
                if self.role != Role::Answerer || remote.remote_description_set {
                    return Err(RtcError::UnexpectedSignal {
                        role: self.role,
                        got: "offer",
                    });
                }
                let offer = RTCSessionDescription::offer(sdp)
                    .map_err(stack_error("parsing the remote offer"))?;
                self.check_codecs(&offer)?;
                self.pc
                    .set_remote_description(offer)
                    .await
                    .map_err(stack_error("applying the remote offer"))?;
                self.remote_description_applied(&mut remote).await;
                let answer = self
                    .pc
                    .create_answer(None)
                    .await
                    .map_err(stack_error("creating the answer"))?;
                let sdp = answer.sdp.clone();
                self.set_local(answer).await?;
                self.resolve_payload_types().await;
                self.shared.send_description(SignalPayload::Answer { sdp });
            }
            SignalPayload::Answer { sdp } => {
                if self.role != Role::Offerer || remote.remote_description_set {
                    return Err(RtcError::UnexpectedSignal {
                        role: self.role,
                        got: "answer",
                    });
                }
                let answer = RTCSessionDescription::answer(sdp)
                    .map_err(stack_error("parsing the remote answer"))?;
                self.check_codecs(&answer)?;
                self.pc
                    .set_remote_description(answer)
                    .await
                    .map_err(stack_error("applying the remote answer"))?;
                self.remote_description_applied(&mut remote).await;
                self.resolve_payload_types().await;
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
                if remote.remote_description_set {
                    self.pc
                        .add_ice_candidate(init)
                        .await
                        .map_err(stack_error("adding a remote ICE candidate"))?;
                } else if remote.early_candidates.len() < MAX_EARLY_CANDIDATES {
                    remote.early_candidates.push(init);
                } else {
                    return Err(RtcError::TooManyCandidates(MAX_EARLY_CANDIDATES));
                }
            }
        }
        Ok(())
    }

    /// Asks the remote for a key frame of its video (RTCP PLI). Does nothing until the
    /// remote's video track is known.
    pub async fn request_keyframe(&self) {
        self.shared.send_keyframe_request().await;
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
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Applies our offer/answer. What we send is the description as created, without the
    /// candidates gathered meanwhile: those are trickled.
    async fn set_local(&self, description: RTCSessionDescription) -> Result<(), RtcError> {
        lock(&self.shared.local_signal).first_mid = first_mid(&description);
        self.pc
            .set_local_description(description)
            .await
            .map_err(stack_error("applying the local description"))
    }

    async fn remote_description_applied(&self, remote: &mut RemoteSignal) {
        remote.remote_description_set = true;
        for candidate in std::mem::take(&mut remote.early_candidates) {
            if let Err(e) = self.pc.add_ice_candidate(candidate).await {
                tracing::warn!("ignoring an early remote ICE candidate: {e}");
            }
        }
    }

    /// Learns the payload types negotiated with this peer, which our packets must carry.
    async fn resolve_payload_types(&self) {
        for (sender, sink) in self.senders.iter().zip(&self.shared.sinks) {
            match sender.get_parameters().await {
                Ok(parameters) => {
                    if let Some(codec) = parameters.rtp_parameters.codecs.first() {
                        let _ = sink.payload_type.set(codec.payload_type);
                    }
                }
                Err(e) => tracing::warn!("no negotiated payload type: {e}"),
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

/// The mid of the first media section of a description.
fn first_mid(description: &RTCSessionDescription) -> Option<String> {
    let parsed = description.unmarshal().ok()?;
    parsed
        .media_descriptions
        .iter()
        .find_map(|m| m.attribute("mid").flatten().map(str::to_owned))
}

/// Checks that every active audio/video section of a remote description offers Opus/VP8.
fn supported_codecs(description: &RTCSessionDescription) -> Result<(), RtcError> {
    let parsed = description
        .unmarshal()
        .map_err(stack_error("parsing SDP"))?;
    for media in &parsed.media_descriptions {
        let kind = media.media_name.media.as_str();
        let wanted = match kind {
            "video" => "VP8",
            "audio" => "opus",
            _ => continue,
        };
        if media.media_name.port.value == 0 {
            continue; // rejected or stopped section
        }
        let codecs = media.codecs();
        if !codecs.values().any(|c| c.name.eq_ignore_ascii_case(wanted)) {
            let mut offered: Vec<&str> = codecs.values().map(|c| c.name.as_str()).collect();
            offered.sort_unstable();
            offered.dedup();
            return Err(RtcError::NoSupportedCodec {
                media: kind.to_owned(),
                offered: if offered.is_empty() {
                    "nothing".to_owned()
                } else {
                    offered.join(", ")
                },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, ts: u32, marker: bool) -> rtp::header::Header {
        rtp::header::Header {
            sequence_number: seq,
            timestamp: ts,
            marker,
            ..Default::default()
        }
    }

    /// Splits `frame` into packets the way our payloader does (with a picture id).
    fn packetize(frame: &[u8], chunk: usize) -> Vec<Bytes> {
        frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| {
                let first = if i == 0 { 0x90 } else { 0x80 };
                let mut p = vec![first, 0x80, 0x85, 0x01];
                p.extend_from_slice(c);
                Bytes::from(p)
            })
            .collect()
    }

    fn frame(n: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(n) | 1).collect()
    }

    #[test]
    fn descriptor_parsing() {
        assert_eq!(parse_vp8_descriptor(&[0x10, 0xAA]), Some((true, 1)));
        assert_eq!(parse_vp8_descriptor(&[0x00, 0xAA]), Some((false, 1)));
        assert_eq!(parse_vp8_descriptor(&[0x11, 0xAA]), Some((false, 1))); // PID 1
        assert_eq!(
            parse_vp8_descriptor(&[0x90, 0x80, 0x85, 0x01, 0xAA]),
            Some((true, 4))
        );
        assert_eq!(
            parse_vp8_descriptor(&[0x90, 0xF0, 0x05, 0x01, 0x02, 0xAA]),
            Some((true, 5))
        );
        assert_eq!(parse_vp8_descriptor(&[0x90, 0x80, 0x85, 0x01]), None);
        assert_eq!(parse_vp8_descriptor(&[0x90, 0x80]), None);
        assert_eq!(parse_vp8_descriptor(&[]), None);
    }

    #[test]
    fn reassembles_in_order_and_reordered() {
        let mut asm = Vp8Assembler::default();
        let a = frame(3, 2500);
        let b = frame(5, 700);
        let mut got = Vec::new();
        let pa = packetize(&a, 1000);
        let pb = packetize(&b, 1000);
        // Frame A in reverse order, then B.
        for (i, p) in pa.iter().enumerate().rev() {
            let seq = 65534u16.wrapping_add(i as u16); // crosses the wrap
            got.extend(asm.push(&header(seq, 1000, i == pa.len() - 1), p).frames);
        }
        let seq_b = 65534u16.wrapping_add(pa.len() as u16);
        got.extend(asm.push(&header(seq_b, 4000, true), &pb[0]).frames);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].data, a);
        assert_eq!(got[0].timestamp, 1000);
        assert!(!got[0].keyframe);
        assert_eq!(got[1].data, b);
    }

    #[test]
    fn drops_incomplete_frames_and_resumes() {
        let mut asm = Vp8Assembler::default();
        let mut dropped = 0;
        let mut frames = Vec::new();
        let mut seq = 100u16;
        // 20 frames of 3 packets, 30 fps; the middle packet of frame 2 is lost.
        for n in 0..20u32 {
            let data = frame(n as u8 + 1, 2400);
            let packets = packetize(&data, 800);
            for (i, p) in packets.iter().enumerate() {
                let lost = n == 2 && i == 1;
                if !lost {
                    let out = asm.push(&header(seq, n * 3000, i == packets.len() - 1), p);
                    dropped += out.dropped_frames;
                    frames.extend(out.frames);
                }
                seq = seq.wrapping_add(1);
            }
        }
        assert_eq!(dropped, 1);
        // Frames after the loss are held at most 400 ms, then released in order.
        let timestamps: Vec<u32> = frames.iter().map(|f| f.timestamp).collect();
        let expected: Vec<u32> = (0..20).filter(|n| *n != 2).map(|n| n * 3000).collect();
        assert_eq!(&timestamps[..], &expected[..timestamps.len()]);
        assert!(timestamps.len() >= 19 - 13, "{timestamps:?}");
    }

    #[test]
    fn restarts_when_the_sender_restarts_its_sequence() {
        let mut asm = Vp8Assembler::default();
        let p = Bytes::from_static(&[0x10, 0x01, 0x02]);
        assert_eq!(asm.push(&header(40_000, 0, true), &p).frames.len(), 1);
        assert_eq!(asm.push(&header(40_001, 3000, true), &p).frames.len(), 1);
        // A retransmission of something consumed is ignored...
        assert_eq!(asm.push(&header(40_000, 0, true), &p).frames.len(), 0);
        // ...but a stream that jumped far back starts over instead of being ignored forever.
        assert_eq!(asm.push(&header(10_000, 9000, true), &p).frames.len(), 1);
        assert_eq!(asm.push(&header(10_001, 12000, true), &p).frames.len(), 1);
    }

    #[test]
    fn ignores_stream_until_first_frame_start_and_keyframe_flag() {
        let mut asm = Vp8Assembler::default();
        let key = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        let mut tail = vec![0x00, 0x00, 0x00];
        tail.extend_from_slice(&[0xAA, 0xBB]);
        // A continuation packet of a frame we joined in the middle of.
        assert_eq!(
            asm.push(&header(7, 10, true), &Bytes::from(tail)),
            AssemblerOutput::default()
        );
        let mut p = vec![0x10];
        p.extend_from_slice(&key);
        let out = asm.push(&header(8, 20, true), &Bytes::from(p));
        assert_eq!(out.frames.len(), 1);
        assert!(out.frames[0].keyframe);
        assert_eq!(out.frames[0].data, key);
        // Garbage never panics.
        for junk in [&[][..], &[0xFF][..], &[0x80, 0xFF, 0xFF][..]] {
            let _ = asm.push(&header(9, 30, true), &Bytes::copy_from_slice(junk));
        }
    }

    #[test]
    fn codec_check() {
        let good = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n";
        let offer = RTCSessionDescription::offer(good.to_owned()).expect("valid sdp");
        assert_eq!(supported_codecs(&offer), Ok(()));
        let bad = good
            .replace("VP8/90000", "H265/90000")
            .replace(
                "m=video 9 UDP/TLS/RTP/SAVPF 96",
                "m=video 9 UDP/TLS/RTP/SAVPF 96 45",
            )
            .replace(
                "a=rtpmap:96 H265/90000",
                "a=rtpmap:96 H265/90000\r\na=rtpmap:45 AV1/90000",
            );
        let offer = RTCSessionDescription::offer(bad).expect("valid sdp");
        let err = supported_codecs(&offer).expect_err("no VP8");
        assert_eq!(
            err,
            RtcError::NoSupportedCodec {
                media: "video".into(),
                offered: "AV1, H265".into()
            }
        );
    }
}
