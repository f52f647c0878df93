//! Media: raw frame types, synthetic sources, y4m and WAV file sources, devices
//! (microphones and speakers through cpal, native only), codecs (VP8 through libvpx,
//! Opus through libopus), the send path (encode once per local track), the receive path
//! (decode per remote peer, newest frame wins), the playback mixer with spatial gains
//! and volumes, the voice processing (echo cancellation, noise suppression, gain),
//! statistics and signal analysis. Codecs are plain `Send` values living on worker
//! threads; nothing here runs in a Bevy system.

pub mod analysis;
#[cfg(not(target_arch = "wasm32"))]
pub mod audio_io;
#[cfg(not(target_arch = "wasm32"))]
pub mod camera;
#[cfg(not(target_arch = "wasm32"))]
pub mod camera_format;
pub mod congestion;
pub mod convert;
pub mod device;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod file_audio;
#[cfg(not(target_arch = "wasm32"))]
pub mod file_video;
pub mod frame;
pub mod mixer;
#[cfg(not(target_arch = "wasm32"))]
pub mod opus;
#[cfg(not(target_arch = "wasm32"))]
pub mod placeholder;
pub mod receive;
#[cfg(not(target_arch = "wasm32"))]
pub mod resample;
#[cfg(not(target_arch = "wasm32"))]
pub mod screen_capture;
pub mod send;
pub mod sign;
pub mod spatial;
pub mod stats;
pub mod synthetic;
pub mod voice_processing;
#[cfg(not(target_arch = "wasm32"))]
pub mod vp8;
#[cfg(target_arch = "wasm32")]
pub mod web;
#[cfg(target_arch = "wasm32")]
pub mod web_playback;

pub use self::analysis::{dominant_frequency, rms_level};
#[cfg(not(target_arch = "wasm32"))]
pub use self::audio_io::{Direction, Microphone, Speaker, audio_devices};
pub use self::congestion::{
    BitrateBounds, LossBasedController, PeerBitrateTarget, VideoBitrateTargets,
};
pub use self::device::{AudioInput, DeviceChoice, ShareSource, ShareTarget, Thumbnail, VideoInput};
pub use self::error::{CodecError, DeviceError, FrameError};
pub use self::frame::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, AudioFrame, VideoFrame};
pub use self::mixer::{Mixer, StereoGain};
#[cfg(not(target_arch = "wasm32"))]
pub use self::opus::{OpusDecoder, OpusEncoder};
#[cfg(not(target_arch = "wasm32"))]
pub use self::placeholder::{PlaceholderVideo, placeholder_colour};
#[cfg(not(target_arch = "wasm32"))]
pub use self::receive::RemoteVideoDecoder;
pub use self::receive::{DecodedFrame, FrameReceiver, FrameSender, frame_channel};
#[cfg(not(target_arch = "wasm32"))]
pub use self::send::{LocalSender, SCREEN_KBPS, ScreenSender};
pub use self::send::{MediaSink, ReducedLayer, SCREEN_FPS, SendCounters, SendSettings};
pub use self::sign::{LabelError, SignPainter, SignStyle};
pub use self::spatial::{RollOff, spatial_gain};
pub use self::stats::{CallStats, JoinStep, ReceiveStats, ScreenStats};
pub use self::synthetic::{
    Stamp, SyntheticAudio, SyntheticVideo, SyntheticVoice, luma_difference, read_stamp,
};
pub use self::voice_processing::VoiceProcessing;
#[cfg(not(target_arch = "wasm32"))]
pub use self::voice_processing::{EchoReference, VoiceProcessor};
#[cfg(not(target_arch = "wasm32"))]
pub use self::vp8::{EncodedFrame, VideoContent, Vp8Config, Vp8Decoder, Vp8Encoder};
