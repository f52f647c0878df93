//! Opus encoding and decoding (48 kHz mono, VoIP mode, 20 ms frames) through the
//! system libopus.

use ::opus::{Application, Bitrate, Channels};

use super::error::CodecError;
use super::frame::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, AudioFrame};

/// Room for the largest packet libopus may produce (its documented recommendation).
const MAX_PACKET_BYTES: usize = 4000;
/// Lowest bitrate libopus accepts, in bit/s.
const MIN_BITRATE_BPS: u32 = 6_000;
/// Highest bitrate libopus accepts, in bit/s.
const MAX_BITRATE_BPS: u32 = 510_000;

/// An Opus encoder for 20 ms mono frames at 48 kHz, tuned for speech (VoIP mode, VBR).
pub struct OpusEncoder {
    inner: ::opus::Encoder,
}

impl OpusEncoder {
    /// Creates an encoder targeting `bitrate_bps` (6 000 to 510 000 bit/s; 32 000 is a
    /// good voice default).
    pub fn new(bitrate_bps: u32) -> Result<Self, CodecError> {
        if !(MIN_BITRATE_BPS..=MAX_BITRATE_BPS).contains(&bitrate_bps) {
            return Err(CodecError::InvalidConfig {
                reason: format!(
                    "Opus bitrate {bitrate_bps} bit/s is outside {MIN_BITRATE_BPS}..={MAX_BITRATE_BPS}"
                ),
            });
        }
        let mut inner = ::opus::Encoder::new(AUDIO_SAMPLE_RATE, Channels::Mono, Application::Voip)
            .map_err(|source| CodecError::Opus {
                op: "create encoder",
                source,
            })?;
        // The range check above keeps the value within i32.
        inner
            .set_bitrate(Bitrate::Bits(bitrate_bps as i32))
            .map_err(|source| CodecError::Opus {
                op: "set bitrate",
                source,
            })?;
        Ok(Self { inner })
    }

    /// Encodes one 20 ms frame into one Opus packet.
    pub fn encode(&mut self, frame: &AudioFrame) -> Result<Vec<u8>, CodecError> {
        frame.validate()?;
        self.inner
            .encode_vec(&frame.samples, MAX_PACKET_BYTES)
            .map_err(|source| CodecError::Opus {
                op: "encode",
                source,
            })
    }
}

/// An Opus decoder producing 20 ms mono frames at 48 kHz (stereo streams are
/// down-mixed by libopus).
pub struct OpusDecoder {
    inner: ::opus::Decoder,
}

impl OpusDecoder {
    /// Creates a decoder.
    pub fn new() -> Result<Self, CodecError> {
        let inner = ::opus::Decoder::new(AUDIO_SAMPLE_RATE, Channels::Mono).map_err(|source| {
            CodecError::Opus {
                op: "create decoder",
                source,
            }
        })?;
        Ok(Self { inner })
    }

    /// Decodes one packet. Only 20 ms packets fit an [`AudioFrame`]; packets of another
    /// duration are rejected (without disturbing the decoder) with
    /// [`CodecError::OpusFrameDuration`].
    pub fn decode(&mut self, packet: &[u8]) -> Result<AudioFrame, CodecError> {
        if packet.is_empty() {
            return Err(CodecError::EmptyPacket { codec: "Opus" });
        }
        let samples =
            ::opus::packet::get_nb_samples(packet, AUDIO_SAMPLE_RATE).map_err(|source| {
                CodecError::Opus {
                    op: "parse packet",
                    source,
                }
            })?;
        if samples != AUDIO_FRAME_SAMPLES {
            return Err(CodecError::OpusFrameDuration {
                samples,
                expected: AUDIO_FRAME_SAMPLES,
            });
        }
        self.decode_into_frame(packet, "decode")
    }

    /// Synthesizes the next 20 ms for a packet that never arrived (libopus' packet loss
    /// concealment), keeping playback and decoder state continuous.
    pub fn decode_lost(&mut self) -> Result<AudioFrame, CodecError> {
        self.decode_into_frame(&[], "conceal lost packet")
    }

    /// Decodes `packet` (empty = conceal a loss) into exactly one frame.
    fn decode_into_frame(
        &mut self,
        packet: &[u8],
        op: &'static str,
    ) -> Result<AudioFrame, CodecError> {
        let mut samples = vec![0i16; AUDIO_FRAME_SAMPLES];
        let decoded = self
            .inner
            .decode(packet, &mut samples, false)
            .map_err(|source| CodecError::Opus { op, source })?;
        if decoded != AUDIO_FRAME_SAMPLES {
            return Err(CodecError::OpusFrameDuration {
                samples: decoded,
                expected: AUDIO_FRAME_SAMPLES,
            });
        }
        Ok(AudioFrame { samples })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::{dominant_frequency, rms_level};
    use crate::media::error::FrameError;
    use crate::media::synthetic::SyntheticAudio;

    #[test]
    fn tone_survives_opus() {
        let mut tone = SyntheticAudio::new(440.0);
        let mut encoder = OpusEncoder::new(32_000).expect("encoder");
        let mut decoder = OpusDecoder::new().expect("decoder");
        let mut received = Vec::new();
        let mut bytes = 0;
        for _ in 0..50 {
            let packet = encoder.encode(&tone.next_frame()).expect("encode");
            bytes += packet.len();
            received.extend(decoder.decode(&packet).expect("decode").samples);
        }
        // 1 s at 32 kbit/s is about 4 000 bytes (VBR, so allow a wide margin).
        assert!((1_500..=6_000).contains(&bytes), "{bytes} bytes");
        // Skip the codec's start-up (look-ahead and ramp-up).
        let steady = &received[10 * AUDIO_FRAME_SAMPLES..];
        let frequency = dominant_frequency(steady, AUDIO_SAMPLE_RATE).expect("a tone");
        assert!(
            (frequency - 440.0).abs() <= 440.0 * 0.05,
            "heard {frequency} Hz"
        );
        let level = rms_level(steady);
        assert!((0.15..=0.26).contains(&level), "level {level}");
    }

    #[test]
    fn lost_packets_are_concealed() {
        let mut tone = SyntheticAudio::new(440.0);
        let mut encoder = OpusEncoder::new(32_000).expect("encoder");
        let mut decoder = OpusDecoder::new().expect("decoder");
        for _ in 0..20 {
            let packet = encoder.encode(&tone.next_frame()).expect("encode");
            decoder.decode(&packet).expect("decode");
        }
        let concealed = decoder.decode_lost().expect("concealment");
        assert_eq!(concealed.samples.len(), AUDIO_FRAME_SAMPLES);
        assert!(
            rms_level(&concealed.samples) > 0.05,
            "PLC continues the tone"
        );
        // Decoding goes on after the gap.
        let packet = encoder.encode(&tone.next_frame()).expect("encode");
        assert_eq!(
            decoder.decode(&packet).expect("decode").samples.len(),
            AUDIO_FRAME_SAMPLES
        );
    }

    #[test]
    fn bad_input_is_rejected() {
        assert!(matches!(
            OpusEncoder::new(1_000),
            Err(CodecError::InvalidConfig { .. })
        ));
        let mut encoder = OpusEncoder::new(32_000).expect("encoder");
        let short = AudioFrame {
            samples: vec![0; 480],
        };
        assert!(matches!(
            encoder.encode(&short),
            Err(CodecError::Frame(FrameError::AudioLength { .. }))
        ));

        let mut decoder = OpusDecoder::new().expect("decoder");
        assert!(matches!(
            decoder.decode(&[]),
            Err(CodecError::EmptyPacket { .. })
        ));
        // TOC code 3 ("arbitrary number of frames") without its frame-count byte.
        assert!(matches!(
            decoder.decode(&[0x03]),
            Err(CodecError::Opus { .. })
        ));

        // A valid 40 ms packet does not fit one AudioFrame.
        let mut raw = ::opus::Encoder::new(AUDIO_SAMPLE_RATE, Channels::Mono, Application::Voip)
            .expect("raw encoder");
        let long = raw
            .encode_vec(&[0; 1920], MAX_PACKET_BYTES)
            .expect("encode");
        assert!(matches!(
            decoder.decode(&long),
            Err(CodecError::OpusFrameDuration { samples: 1920, .. })
        ));
    }

    #[test]
    fn codecs_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<OpusEncoder>();
        assert_send::<OpusDecoder>();
    }
}
