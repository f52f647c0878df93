//! Media: raw frame types, synthetic sources, codecs (VP8 through libvpx, Opus through
//! libopus), the send path (encode once per local track), the receive path (decode per
//! remote peer, newest frame wins), statistics and signal analysis. Codecs are plain
//! `Send` values living on worker threads; nothing here runs in a Bevy system.

pub mod analysis;
pub mod convert;
pub mod error;
pub mod frame;
#[cfg(not(target_arch = "wasm32"))]
pub mod opus;
pub mod receive;
pub mod send;
pub mod stats;
pub mod synthetic;
#[cfg(not(target_arch = "wasm32"))]
pub mod vp8;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use self::analysis::{dominant_frequency, rms_level};
pub use self::error::{CodecError, FrameError};
pub use self::frame::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, AudioFrame, VideoFrame};
#[cfg(not(target_arch = "wasm32"))]
pub use self::opus::{OpusDecoder, OpusEncoder};
#[cfg(not(target_arch = "wasm32"))]
pub use self::receive::RemoteVideoDecoder;
pub use self::receive::{DecodedFrame, FrameReceiver, FrameSender, frame_channel};
#[cfg(not(target_arch = "wasm32"))]
pub use self::send::LocalSender;
pub use self::send::{MediaSink, SendCounters, SendSettings};
pub use self::stats::{CallStats, ReceiveStats};
pub use self::synthetic::{Stamp, SyntheticAudio, SyntheticVideo, luma_difference, read_stamp};
#[cfg(not(target_arch = "wasm32"))]
pub use self::vp8::{EncodedFrame, Vp8Config, Vp8Decoder, Vp8Encoder};
