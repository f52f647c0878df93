//! Local media: one packetizer per stream, fanned out to every peer connection.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ::rtc::rtp::packetizer::{Packetizer, new_packetizer};
use ::rtc::rtp::sequence::new_random_sequencer;
use ::rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use bytes::Bytes;
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

use super::codecs::{opus_codec, vp8_codec};
use super::{lock, stack_error};
use crate::media::ReducedLayer;
use crate::rtc::RtcError;

/// Largest RTP packet we send, headers included; leaves room for SRTP, UDP, IP and TURN.
const RTP_MTU: usize = 1200;
/// A write this much later than the previous frame's end is a pause (camera off, mic muted):
/// the RTP clock is advanced over the gap so receivers see real time pass.
const PAUSE_THRESHOLD: Duration = Duration::from_millis(250);

/// A random number for SSRCs and stream ids.
fn random_u32() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish() as u32
}

/// Our outgoing media, shared by every [`PeerSession`] of a mesh.
///
/// webrtc-rs 0.21 binds a local track object to exactly one peer connection (the track keeps a
/// single driver context), so each session gets its own track object carrying the same SSRC and
/// codec. Frames are packetized once here and the resulting RTP packets are handed to every
/// session's track, so nothing is encoded or packetized twice.
///
/// An upstream to the SFU carries the camera as simulcast: besides the full picture, two
/// smaller layers of their own (see [`LocalMedia::write_video_layer`]), on the same track.
///
/// Pausing (camera off, mic muted) is simply not writing, or [`LocalMedia::set_video_enabled`]
/// / [`LocalMedia::set_audio_enabled`] to make the writes no-ops; the RTP clock is advanced over
/// the pause when writing resumes.
#[derive(Clone)]
pub struct LocalMedia {
    pub(super) video: Arc<OutboundStream>,
    pub(super) audio: Arc<OutboundStream>,
    /// Our shared screen: a media stream of its own, added to a connection only while
    /// we share ([`PeerSession::set_screen_shared`]).
    pub(super) screen: Arc<OutboundStream>,
    /// The camera's smaller simulcast layers, smallest first ([`ReducedLayer`]), sent
    /// only on connections that carry simulcast (the SFU upstream).
    pub(super) reduced: [Arc<OutboundStream>; 2],
}

/// A layer's RTP stream id (`a=rid`), as webrtc-rs names the encodings.
fn rid(layer: ReducedLayer) -> &'static str {
    match layer {
        ReducedLayer::Quarter => "q",
        ReducedLayer::Half => "h",
    }
}

/// The RTP stream id of the full picture when it is sent as simulcast.
const FULL_LAYER_RID: &str = "f";

impl LocalMedia {
    /// Creates the VP8 (90 kHz) camera and screen and the Opus (48 kHz, 2 channels)
    /// streams with fresh SSRCs.
    pub fn new() -> Result<Self, RtcError> {
        let stream_id = format!("meetspace-{:08x}", random_u32());
        let screen_id = format!("{stream_id}-screen");
        let reduced = |layer: ReducedLayer| -> Result<Arc<OutboundStream>, RtcError> {
            let id = format!("{stream_id}-video-{}", rid(layer));
            let stream = OutboundStream::new(&id, &id, RtpCodecKind::Video, vp8_codec(), false)?;
            Ok(Arc::new(stream))
        };
        Ok(Self {
            reduced: [
                reduced(ReducedLayer::Quarter)?,
                reduced(ReducedLayer::Half)?,
            ],
            video: Arc::new(OutboundStream::new(
                &stream_id,
                &format!("{stream_id}-video"),
                RtpCodecKind::Video,
                vp8_codec(),
                false,
            )?),
            audio: Arc::new(OutboundStream::new(
                &stream_id,
                &format!("{stream_id}-audio"),
                RtpCodecKind::Audio,
                opus_codec(),
                false,
            )?),
            screen: Arc::new(OutboundStream::new(
                &screen_id,
                &screen_id,
                RtpCodecKind::Video,
                vp8_codec(),
                true,
            )?),
        })
    }

    /// Sends one encoded VP8 frame to every connected peer. `duration` is the time until the
    /// next frame (1/fps) and advances the RTP clock.
    pub async fn write_video(&self, frame: &[u8], duration: Duration) -> Result<(), RtcError> {
        self.video.write(frame, duration).await
    }

    /// Sends one encoded VP8 frame of the smaller simulcast layer `layer` to every
    /// connection that carries simulcast. `duration` is the time until the next frame.
    pub async fn write_video_layer(
        &self,
        layer: ReducedLayer,
        frame: &[u8],
        duration: Duration,
    ) -> Result<(), RtcError> {
        self.reduced[layer as usize].write(frame, duration).await
    }

    /// Whether a connection carries simulcast now: only then are the smaller layers
    /// worth encoding.
    pub fn wants_reduced_layers(&self) -> bool {
        !lock(&self.reduced[0].sinks).is_empty()
    }

    /// Our camera as simulcast on one more connection: one track whose encodings are the
    /// layers smallest first, and a sink of each layer's stream writing to it (the full
    /// picture's first, then the smaller ones).
    pub(super) fn add_simulcast_sinks(&self) -> (Arc<Sink>, [Arc<Sink>; 2]) {
        let layers = [
            (&self.reduced[0], rid(ReducedLayer::Quarter)),
            (&self.reduced[1], rid(ReducedLayer::Half)),
            (&self.video, FULL_LAYER_RID),
        ];
        let codings = layers
            .iter()
            .flat_map(|(stream, rid)| {
                stream.template.codings().iter().map(|coding| {
                    let mut coding = coding.clone();
                    coding.rtp_coding_parameters.rid = (*rid).to_owned();
                    coding
                })
            })
            .collect();
        let template = &self.video.template;
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            template.stream_id().clone(),
            template.track_id().clone(),
            template.label().clone(),
            template.kind(),
            codings,
        )));
        let full = self.video.attach_sink(Arc::clone(&track), self.video.ssrc);
        let reduced = self
            .reduced
            .clone()
            .map(|stream| stream.attach_sink(Arc::clone(&track), stream.ssrc));
        (full, reduced)
    }

    /// Stops sending the smaller layers to the sinks `sinks` (of [`Self::add_simulcast_sinks`]).
    pub(super) fn remove_reduced_sinks(&self, sinks: &[Arc<Sink>; 2]) {
        for (stream, sink) in self.reduced.iter().zip(sinks) {
            stream.remove_sink(sink.id);
        }
    }

    /// The SSRCs of the simulcast layers, smallest first.
    pub(super) fn simulcast_ssrcs(&self) -> [u32; 3] {
        [self.reduced[0].ssrc, self.reduced[1].ssrc, self.video.ssrc]
    }

    /// Sends one encoded VP8 frame of our shared screen to every connected peer it is
    /// shared with. `duration` is the time until the next frame.
    pub async fn write_screen(&self, frame: &[u8], duration: Duration) -> Result<(), RtcError> {
        self.screen.write(frame, duration).await
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
pub(super) struct OutboundStream {
    /// The stream's SSRC.
    pub(super) ssrc: u32,
    clock_rate: u32,
    /// Stream/track ids, kind, SSRC and codec, cloned into each peer connection's track.
    template: MediaStreamTrack,
    /// Whether each peer connection's copy goes out under an SSRC of its own (the
    /// screen: a share that starts again is a new RTP stream, and Chromium does not take
    /// up again an SSRC whose stream it stopped).
    ssrc_per_sink: bool,
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
pub(super) struct Sink {
    /// Which of the stream's sinks this is.
    pub(super) id: u64,
    /// The track added to this peer's connection.
    pub(super) track: Arc<TrackLocalStaticRTP>,
    /// The SSRC this peer receives the stream under.
    ssrc: u32,
    /// The payload type negotiated with this peer; nothing is sent before it is known.
    pub(super) payload_type: OnceLock<u8>,
    /// Whether the connection is up; packets written before that would be dropped anyway.
    pub(super) connected: AtomicBool,
}

impl OutboundStream {
    fn new(
        stream_id: &str,
        track_id: &str,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        ssrc_per_sink: bool,
    ) -> Result<Self, RtcError> {
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
            track_id.to_owned(),
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
            ssrc_per_sink,
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

    /// A new copy of the stream for one more peer connection.
    pub(super) fn add_sink(&self) -> Arc<Sink> {
        let (track, ssrc) = if self.ssrc_per_sink {
            let ssrc = random_u32();
            let codings = self
                .template
                .codings()
                .iter()
                .map(|coding| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..coding.rtp_coding_parameters.clone()
                    },
                    ..coding.clone()
                })
                .collect();
            let track = MediaStreamTrack::new(
                self.template.stream_id().clone(),
                self.template.track_id().clone(),
                self.template.label().clone(),
                self.template.kind(),
                codings,
            );
            (track, ssrc)
        } else {
            (self.template.clone(), self.ssrc)
        };
        self.attach_sink(Arc::new(TrackLocalStaticRTP::new(track)), ssrc)
    }

    /// Sends the stream to `track` from now on, under `ssrc`.
    fn attach_sink(&self, track: Arc<TrackLocalStaticRTP>, ssrc: u32) -> Arc<Sink> {
        let sink = self.sink_on(track, ssrc);
        lock(&self.sinks).push(Arc::clone(&sink));
        sink
    }

    /// A copy of the stream for a connection that only receives: its track is
    /// described, but nothing is written to it.
    pub(super) fn unwritten_sink(&self) -> Arc<Sink> {
        let track = Arc::new(TrackLocalStaticRTP::new(self.template.clone()));
        self.sink_on(track, self.ssrc)
    }

    /// A sink writing to `track` under `ssrc`, not yet sent to.
    fn sink_on(&self, track: Arc<TrackLocalStaticRTP>, ssrc: u32) -> Arc<Sink> {
        Arc::new(Sink {
            id: self.next_sink_id.fetch_add(1, Ordering::Relaxed),
            track,
            ssrc,
            payload_type: OnceLock::new(),
            connected: AtomicBool::new(false),
        })
    }

    /// Stops sending to the sink `id`.
    pub(super) fn remove_sink(&self, id: u64) {
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
                packet.header.ssrc = sink.ssrc;
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
