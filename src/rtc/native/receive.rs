//! Receiving: remote tracks turned into audio packets and reassembled VP8 frames, and
//! the peer's keyframe requests about our video.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::rtc::rtp;
use ::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::feedback::is_keyframe_request;
use super::lock;
use super::shared::Shared;
use crate::rtc::PeerEvent;
use crate::rtc::vp8_depacketizer::{AssembledFrame, PacketHeader, Vp8Assembler};

/// Shortest time between two keyframe requests we send on our own about a screen.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// Reads one remote track until it ends, turning RTP into [`PeerEvent`]s: the voice, the
/// camera, or a shared screen (a video track the remote's description names as one).
pub(super) async fn receive_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let kind = track.kind().await;
    let track_id = track.track_id().await;
    let screen =
        kind == RtpCodecKind::Video && lock(&shared.remote_screen_tracks).contains(&track_id);
    let signalled_ssrc = track.ssrcs().await.first().copied();
    let mut video = VideoReceiver::default();
    if kind == RtpCodecKind::Video
        && !screen
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
            RtpCodecKind::Video if screen => {
                let wants_keyframe = video.push(&packet, |frame| {
                    shared.emit(PeerEvent::ScreenFrame {
                        data: frame.data,
                        rtp_timestamp: frame.timestamp,
                        keyframe: frame.keyframe,
                    });
                });
                if wants_keyframe && video.keyframe_request_due() {
                    shared
                        .send_keyframe_request_on(track.as_ref(), packet.header.ssrc)
                        .await;
                }
            }
            RtpCodecKind::Video => {
                if video.ssrc != Some(packet.header.ssrc) {
                    *lock(&shared.remote_video) = Some((Arc::clone(&track), packet.header.ssrc));
                }
                let mut dropped = 0;
                let wants_keyframe = video.push_counting_drops(&packet, &mut dropped, |frame| {
                    shared.emit(PeerEvent::VideoFrame {
                        data: frame.data,
                        rtp_timestamp: frame.timestamp,
                        keyframe: frame.keyframe,
                    });
                });
                if dropped > 0 {
                    shared.emit(PeerEvent::VideoFramesDropped { frames: dropped });
                }
                if wants_keyframe {
                    shared.request_keyframe_throttled().await;
                }
            }
            _ => {}
        }
    }
}

/// One remote video stream's reassembly: VP8 frames from RTP, and whether a key frame is
/// needed (nothing decodable since the start or since a loss).
#[derive(Default)]
struct VideoReceiver {
    assembler: Vp8Assembler,
    /// The SSRC being reassembled; another one starts a new sequence space.
    ssrc: Option<u32>,
    seen_keyframe: bool,
    /// When we last asked for a key frame on our own (the screen's requests).
    last_keyframe_request: Option<Instant>,
}

impl VideoReceiver {
    /// Takes one packet, hands each completed frame to `frame_done`, and says whether a
    /// key frame should be asked for.
    fn push(&mut self, packet: &rtp::Packet, frame_done: impl FnMut(AssembledFrame)) -> bool {
        let mut dropped = 0;
        self.push_counting_drops(packet, &mut dropped, frame_done)
    }

    /// [`Self::push`], adding the frames lost to packet loss to `dropped`.
    fn push_counting_drops(
        &mut self,
        packet: &rtp::Packet,
        dropped: &mut u32,
        mut frame_done: impl FnMut(AssembledFrame),
    ) -> bool {
        if self.ssrc != Some(packet.header.ssrc) {
            // First packet, or the remote switched streams: new sequence space.
            self.ssrc = Some(packet.header.ssrc);
            self.assembler = Vp8Assembler::default();
            self.seen_keyframe = false;
        }
        let header = PacketHeader {
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
        };
        let out = self.assembler.push(&header, &packet.payload);
        let mut undecodable = false;
        for frame in out.frames {
            // Until the first key frame, nothing can be decoded: ask for one.
            self.seen_keyframe |= frame.keyframe;
            undecodable |= !self.seen_keyframe;
            frame_done(frame);
        }
        if out.dropped_frames > 0 {
            // Later frames referenced the lost ones: undecodable until a key frame.
            self.seen_keyframe = false;
            *dropped += out.dropped_frames;
        }
        out.dropped_frames > 0 || undecodable
    }

    /// Whether a key frame request of our own may go now (at most every
    /// [`KEYFRAME_REQUEST_INTERVAL`]); notes it as sent.
    fn keyframe_request_due(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .last_keyframe_request
            .is_none_or(|last| now.duration_since(last) >= KEYFRAME_REQUEST_INTERVAL);
        if due {
            self.last_keyframe_request = Some(now);
        }
        due
    }
}

/// Turns inbound PLI/FIR about one of our video tracks into `request` (the camera's
/// [`PeerEvent::KeyframeRequested`], the screen's [`PeerEvent::ScreenKeyframeRequested`]).
pub(super) async fn watch_keyframe_requests(
    shared: Arc<Shared>,
    track: Arc<TrackLocalStaticRTP>,
    request: PeerEvent,
) {
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
            shared.emit(request.clone());
        }
    }
}
