//! The send path: capture (a synthetic source for now) and encode on dedicated threads,
//! once per local track, and hand the encoded frames to a [`MediaSink`] that fans them
//! out to every peer.
//!
//! A [`LocalSender`] lives exactly as long as the call: dropping it stops its threads,
//! which releases the capture devices.

#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(target_arch = "wasm32"))]
use std::thread::JoinHandle;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(not(target_arch = "wasm32"))]
use super::convert::i420_to_rgba;
#[cfg(not(target_arch = "wasm32"))]
use super::error::CodecError;
#[cfg(not(target_arch = "wasm32"))]
use super::frame::AUDIO_FRAME_SAMPLES;
#[cfg(not(target_arch = "wasm32"))]
use super::frame::AUDIO_SAMPLE_RATE;
#[cfg(not(target_arch = "wasm32"))]
use super::opus::OpusEncoder;
#[cfg(not(target_arch = "wasm32"))]
use super::receive::{DecodedFrame, FrameSender};
#[cfg(not(target_arch = "wasm32"))]
use super::synthetic::{SyntheticAudio, SyntheticVideo};
#[cfg(not(target_arch = "wasm32"))]
use super::vp8::{Vp8Config, Vp8Encoder};

#[cfg(not(target_arch = "wasm32"))]
/// Every how many captured frames one goes to the self-view (30 fps → 15 fps).
const PREVIEW_EVERY: u32 = 2;

#[cfg(not(target_arch = "wasm32"))]
/// Opus bitrate for voice.
const OPUS_BITRATE_BPS: u32 = 32_000;

/// What the send path produces its frames from, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct SendSettings {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// VP8 target bitrate. Fixed: the stack gives us no bandwidth estimate to follow.
    pub video_kbps: u32,
    /// Frequency of the synthetic audio tone.
    pub tone_hz: f32,
}

impl Default for SendSettings {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 30,
            video_kbps: 800,
            tone_hz: 440.0,
        }
    }
}

/// Where encoded media goes: every connected peer. Called from the encoder threads.
pub trait MediaSink: Send + Sync + 'static {
    /// One encoded VP8 frame lasting `duration`.
    fn send_video(&self, frame: &[u8], duration: Duration);
    /// One Opus packet lasting `duration`.
    fn send_audio(&self, packet: &[u8], duration: Duration);
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
    /// Opus packets encoded and handed to the sink.
    pub audio_packets: AtomicU64,
}

#[cfg(not(target_arch = "wasm32"))]
/// Switches shared between the owner and the encoder threads.
#[derive(Debug)]
struct Controls {
    video_on: AtomicBool,
    audio_on: AtomicBool,
    keyframe_wanted: AtomicBool,
    stop: AtomicBool,
}

#[cfg(not(target_arch = "wasm32"))]
/// The running send path of one call: one video and one audio encoder thread.
pub struct LocalSender {
    controls: Arc<Controls>,
    threads: Vec<JoinHandle<()>>,
}

#[cfg(not(target_arch = "wasm32"))]
impl LocalSender {
    /// Creates the encoders (errors surface here, not on the threads) and starts
    /// producing frames into `sink`, and what we capture into `preview` (the
    /// self-view) at half the frame rate.
    pub fn start(
        settings: &SendSettings,
        sink: Arc<dyn MediaSink>,
        counters: Arc<SendCounters>,
        preview: Option<FrameSender>,
    ) -> Result<Self, CodecError> {
        let encoder = Vp8Encoder::new(Vp8Config {
            width: settings.width,
            height: settings.height,
            fps: settings.fps,
            bitrate_kbps: settings.video_kbps,
        })?;
        counters.video_encoders.fetch_add(1, Ordering::Relaxed);
        let source = SyntheticVideo::new(settings.width, settings.height)?;
        let opus = OpusEncoder::new(OPUS_BITRATE_BPS)?;
        let controls = Arc::new(Controls {
            video_on: AtomicBool::new(true),
            audio_on: AtomicBool::new(true),
            keyframe_wanted: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let video = VideoLoop {
            controls: controls.clone(),
            sink: sink.clone(),
            counters: counters.clone(),
            encoder,
            source,
            period: Duration::from_secs(1) / settings.fps.max(1),
            preview,
        };
        let audio = AudioLoop {
            controls: controls.clone(),
            sink,
            counters,
            encoder: opus,
            source: SyntheticAudio::new(settings.tone_hz),
        };
        let threads = vec![
            spawn_named("meetspace-video-send", move || video.run())?,
            spawn_named("meetspace-audio-send", move || audio.run())?,
        ];
        Ok(Self { controls, threads })
    }

    /// Camera on or off. Turning it on starts with a keyframe so peers recover at once.
    pub fn set_video_enabled(&self, on: bool) {
        if on && !self.controls.video_on.load(Ordering::Relaxed) {
            self.request_keyframe();
        }
        self.controls.video_on.store(on, Ordering::Relaxed);
    }

    /// Microphone on or off.
    pub fn set_audio_enabled(&self, on: bool) {
        self.controls.audio_on.store(on, Ordering::Relaxed);
    }

    /// Makes the next encoded frame a keyframe (a peer lost data or just arrived).
    pub fn request_keyframe(&self) {
        self.controls.keyframe_wanted.store(true, Ordering::Relaxed);
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl LocalSender {
    /// Stops capturing and encoding now; the threads end within one frame period.
    pub fn stop(&self) {
        self.controls.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for LocalSender {
    fn drop(&mut self) {
        self.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn spawn_named(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, CodecError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|error| CodecError::Thread(error.to_string()))
}

#[cfg(not(target_arch = "wasm32"))]
/// Sleeps until `deadline`, then moves it one `period` on (skipping ahead if late).
fn pace(deadline: &mut Instant, period: Duration) {
    let now = Instant::now();
    if *deadline > now {
        std::thread::sleep(*deadline - now);
    }
    *deadline += period;
    if *deadline + period < Instant::now() {
        *deadline = Instant::now() + period;
    }
}

/// Microseconds since the UNIX epoch: the capture time stamped into synthetic frames.
pub fn wall_clock_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

#[cfg(not(target_arch = "wasm32"))]
struct VideoLoop {
    controls: Arc<Controls>,
    sink: Arc<dyn MediaSink>,
    counters: Arc<SendCounters>,
    encoder: Vp8Encoder,
    source: SyntheticVideo,
    period: Duration,
    preview: Option<FrameSender>,
}

#[cfg(not(target_arch = "wasm32"))]
impl VideoLoop {
    fn run(mut self) {
        let mut deadline = Instant::now();
        let mut captured_frames = 0u32;
        while !self.controls.stop.load(Ordering::Relaxed) {
            pace(&mut deadline, self.period);
            if !self.controls.video_on.load(Ordering::Relaxed) {
                continue;
            }
            let captured = wall_clock_micros();
            let frame = self.source.next_frame(captured);
            captured_frames = captured_frames.wrapping_add(1);
            if let Some(preview) = &self.preview
                && captured_frames.is_multiple_of(PREVIEW_EVERY)
            {
                let mut rgba = Vec::new();
                if i420_to_rgba(&frame, &mut rgba).is_ok() {
                    preview.offer(DecodedFrame {
                        width: frame.width,
                        height: frame.height,
                        rgba,
                        stamp: None,
                    });
                }
            }
            let keyframe = self.controls.keyframe_wanted.swap(false, Ordering::Relaxed);
            let encode_started = Instant::now();
            let encoded = self.encoder.encode(&frame, captured as i64, keyframe);
            self.counters.encode_micros.fetch_add(
                encode_started.elapsed().as_micros() as u64,
                Ordering::Relaxed,
            );
            match encoded {
                Ok(encoded) => {
                    for packet in encoded {
                        self.sink.send_video(&packet.data, self.period);
                        self.counters.video_frames.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(error) => tracing::warn!(%error, "a video frame could not be encoded"),
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
struct AudioLoop {
    controls: Arc<Controls>,
    sink: Arc<dyn MediaSink>,
    counters: Arc<SendCounters>,
    encoder: OpusEncoder,
    source: SyntheticAudio,
}

#[cfg(not(target_arch = "wasm32"))]
impl AudioLoop {
    fn run(mut self) {
        let period =
            Duration::from_secs_f64(AUDIO_FRAME_SAMPLES as f64 / f64::from(AUDIO_SAMPLE_RATE));
        let mut deadline = Instant::now();
        while !self.controls.stop.load(Ordering::Relaxed) {
            pace(&mut deadline, period);
            let frame = self.source.next_frame();
            if !self.controls.audio_on.load(Ordering::Relaxed) {
                continue;
            }
            match self.encoder.encode(&frame) {
                Ok(packet) => {
                    self.sink.send_audio(&packet, period);
                    self.counters.audio_packets.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => tracing::warn!(%error, "an audio frame could not be encoded"),
            }
        }
    }
}
