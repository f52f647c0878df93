//! Media: raw frame types, synthetic sources, codecs (VP8 through libvpx, Opus through
//! libopus), the send path (encode once per local track), the receive path (decode per
//! remote peer, newest frame wins), statistics and signal analysis. Codecs are plain
//! `Send` values living on worker threads; nothing here runs in a Bevy system.

pub mod analysis;
pub mod congestion;
pub mod convert;
pub mod error;
pub mod frame;
pub mod opus;
pub mod receive;
pub mod send;
pub mod stats;
pub mod synthetic;
pub mod vp8;

pub use self::analysis::{dominant_frequency, rms_level};
pub use self::congestion::{
    BitrateBounds, LossBasedController, PeerBitrateTarget, VideoBitrateTargets,
};
pub use self::error::{CodecError, FrameError};
pub use self::frame::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, AudioFrame, VideoFrame};
pub use self::opus::{OpusDecoder, OpusEncoder};
pub use self::receive::{
    DecodedFrame, FrameReceiver, FrameSender, RemoteVideoDecoder, frame_channel,
};
pub use self::send::{LocalSender, MediaSink, SendCounters, SendSettings};
pub use self::stats::{CallStats, ReceiveStats};
pub use self::synthetic::{Stamp, SyntheticAudio, SyntheticVideo, luma_difference, read_stamp};
pub use self::vp8::{EncodedFrame, Vp8Config, Vp8Decoder, Vp8Encoder};
