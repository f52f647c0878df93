//! The send path: capture (synthetic sources or, natively, a microphone) and encode on
//! dedicated threads, once per local track, and hand the encoded frames to a
//! [`MediaSink`] that fans them out to every peer.
//!
//! A [`LocalSender`] lives exactly as long as the call: dropping it stops its threads,
//! which releases the capture devices. [`SendCounters::open_captures`] counts the
//! sources open right now, so tests can see that they are.
//!
//! The types here are shared with the browser build (which encodes in the browser);
//! the encoder threads are native only ([`native`]).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::device::{AudioInput, VideoInput};
use super::voice_processing::VoiceProcessing;

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
mod screen;

#[cfg(not(target_arch = "wasm32"))]
pub use native::LocalSender;
#[cfg(not(target_arch = "wasm32"))]
pub use screen::{SCREEN_KBPS, ScreenSender};

/// Frames a second of a share, sent natively and asked of the browser: text and slides
/// change seldom, and each frame of a large screen costs a lot to capture and encode.
pub const SCREEN_FPS: u32 = 10;

/// What the send path produces its frames from, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct SendSettings {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Highest VP8 bitrate, in kbit/s, and where a call starts; congestion control lowers
    /// it when peers report loss (see [`super::congestion`]).
    pub video_kbps: u32,
    /// Lowest VP8 bitrate congestion control may go to, in kbit/s.
    pub min_video_kbps: u32,
    /// Frequency of the synthetic audio tone.
    pub tone_hz: f32,
    /// Where the audio we send comes from.
    pub audio_input: AudioInput,
    /// Where the video we send comes from.
    pub video_input: VideoInput,
    /// What is done to a microphone's sound before it is sent.
    pub voice_processing: VoiceProcessing,
}

impl Default for SendSettings {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 30,
            video_kbps: 800,
            min_video_kbps: 100,
            tone_hz: 440.0,
            audio_input: AudioInput::Tone,
            video_input: VideoInput::Synthetic,
            voice_processing: VoiceProcessing::default(),
        }
    }
}

/// A simulcast layer smaller than the camera's picture, which is the largest layer.
/// Receivers through the SFU pick the layer that fits how large we appear to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReducedLayer {
    /// A quarter of the width and height (the SFU's substream 0).
    Quarter = 0,
    /// Half the width and height (substream 1).
    Half = 1,
}

impl ReducedLayer {
    /// Both, smallest first.
    pub const ALL: [Self; 2] = [Self::Quarter, Self::Half];

    /// By how much the layer divides the width and height of the picture.
    pub fn divisor(self) -> u32 {
        match self {
            Self::Quarter => 4,
            Self::Half => 2,
        }
    }

    /// Its share of the full picture's bitrate: fewer pixels need fewer bits, though
    /// not in proportion.
    pub fn bitrate_share(self) -> f64 {
        match self {
            Self::Quarter => 0.15,
            Self::Half => 0.35,
        }
    }
}

/// Where encoded media goes: every connected peer. Called from the encoder threads.
pub trait MediaSink: Send + Sync + 'static {
    /// One encoded VP8 frame lasting `duration`.
    fn send_video(&self, frame: &[u8], duration: Duration);
    /// One Opus packet lasting `duration`.
    fn send_audio(&self, packet: &[u8], duration: Duration);
    /// One encoded VP8 frame of our shared screen lasting `duration`.
    fn send_screen(&self, frame: &[u8], duration: Duration);
    /// One encoded VP8 frame of the smaller simulcast layer `layer` lasting `duration`.
    fn send_video_layer(&self, layer: ReducedLayer, frame: &[u8], duration: Duration);
    /// Whether a connection takes the smaller simulcast layers now (only then are they
    /// encoded).
    fn wants_reduced_layers(&self) -> bool;
}

/// Running totals of the send path, shared with whoever wants to read them.
#[derive(Debug, Default)]
pub struct SendCounters {
    /// Video encoders created (one per call: encode once, send to all).
    pub video_encoders: AtomicU64,
    /// Video frames encoded and handed to the sink.
    pub video_frames: AtomicU64,
    /// Time spent in the VP8 encoder, in microseconds.
    pub encode_micros: AtomicU64,
    /// Of those video frames, keyframes (periodic, or asked for by a peer).
    pub video_keyframes: AtomicU64,
    /// The VP8 bitrate the encoder is set to now, in kbit/s (the lowest peer's target).
    pub video_target_kbps: AtomicU64,
    /// Opus packets encoded and handed to the sink.
    pub audio_packets: AtomicU64,
    /// Frames of our shared screen encoded and handed to the sink.
    pub screen_frames: AtomicU64,
    /// Frames of the camera's smaller simulcast layers encoded and handed to the sink.
    pub simulcast_frames: AtomicU64,
    /// Capture sources (camera, synthetic video, microphone, tone, shared screen) open
    /// right now.
    pub open_captures: AtomicU64,
    /// Times the video source failed mid-call and the placeholder took its place.
    pub video_source_failures: AtomicU64,
    /// Times the microphone was lost mid-call (we send no audio until another is picked).
    pub audio_source_failures: AtomicU64,
    /// RMS level (0 to 1, as `f32` bits) of the last 60 ms we captured while the
    /// microphone is on; 0 while it is muted.
    pub own_level: AtomicU32,
    /// The same level while the microphone is muted (heard, not sent), for the "you
    /// are muted" reminder; 0 while it is on.
    pub muted_level: AtomicU32,
}

impl SendCounters {
    /// Our own audio level now (see [`Self::own_level`]).
    pub fn own_level(&self) -> f32 {
        f32::from_bits(self.own_level.load(Ordering::Relaxed))
    }

    /// Our level while muted (see [`Self::muted_level`]).
    pub fn muted_level(&self) -> f32 {
        f32::from_bits(self.muted_level.load(Ordering::Relaxed))
    }
}
