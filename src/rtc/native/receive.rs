//! Receiving: remote tracks turned into audio packets and reassembled VP8 frames, and
//! the peer's keyframe requests about our video.

use std::sync::Arc;

use ::rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::feedback::is_keyframe_request;
use super::lock;
use super::shared::Shared;
use crate::rtc::PeerEvent;
use crate::rtc::vp8_depacketizer::{PacketHeader, Vp8Assembler};

/// Reads one remote track until it ends, turning RTP into [`PeerEvent`]s.
pub(super) async fn receive_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
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
                let header = PacketHeader {
                    sequence_number: packet.header.sequence_number,
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                };
                let out = assembler.push(&header, &packet.payload);
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
pub(super) async fn watch_keyframe_requests(shared: Arc<Shared>, track: Arc<TrackLocalStaticRTP>) {
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
            shared.emit(PeerEvent::KeyframeRequested);
        }
    }
}
