//! The codecs we offer (VP8 and Opus), the interceptors that go with them, and the check
//! that a remote description offers them too.

use std::time::Duration;

use ::rtc::interceptor::{NackGeneratorBuilder, NackResponderBuilder, Slot};
use ::rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use ::rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use webrtc::peer_connection::{MediaEngine, RTCSessionDescription, Registry};

use super::stack_error;
use crate::rtc::RtcError;
use crate::rtc::vp8_depacketizer::VP8_CLOCK_RATE;

/// Payload type we offer for VP8 (the remote's choice wins when it offers).
const VP8_PAYLOAD_TYPE: u8 = 96;
/// Payload type we offer for Opus (the remote's choice wins when it offers).
const OPUS_PAYLOAD_TYPE: u8 = 111;
const AUDIO_CLOCK_RATE: u32 = 48_000;

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
pub(super) fn register_interceptors(media_engine: &mut MediaEngine) -> Result<Registry, RtcError> {
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

/// VP8, with the feedback we take: FIR, NACK and PLI.
pub(super) fn vp8_codec() -> RTCRtpCodec {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: "video/VP8".to_owned(),
        clock_rate: VP8_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            feedback("ccm", "fir"),
            feedback("nack", ""),
            feedback("nack", "pli"),
        ],
    }
}

/// Opus, stereo at 48 kHz, with in-band FEC.
pub(super) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: AUDIO_CLOCK_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A media engine that knows our two codecs, with the payload types we offer.
pub(super) fn media_engine() -> Result<MediaEngine, RtcError> {
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
    Ok(media_engine)
}

/// Checks that every active audio/video section of a remote description offers Opus/VP8.
pub(super) fn supported_codecs(description: &RTCSessionDescription) -> Result<(), RtcError> {
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
