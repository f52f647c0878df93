//! The native send path: synthetic sources, y4m and WAV files, a camera or the
//! microphone (through the voice processing: echo cancellation, noise suppression,
//! gain), and the encoders on their own threads (see the parent module). A video source that
//! cannot be opened or is lost is replaced by the placeholder (our name on a colour); a
//! microphone that is lost leaves the audio loop silent until another is picked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::media::analysis::rms_level;
use crate::media::audio_io::Microphone;
use crate::media::camera::Camera;
use crate::media::congestion::{BitrateBounds, VideoBitrateTargets};
use crate::media::convert::i420_to_rgba;
use crate::media::device::{AudioInput, VideoInput};
use crate::media::error::{CodecError, DeviceError};
use crate::media::file_audio::WavFile;
use crate::media::file_video::Y4mFile;
use crate::media::frame::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, AudioFrame, VideoFrame};
use crate::media::opus::OpusEncoder;
use crate::media::placeholder::PlaceholderVideo;
use crate::media::receive::{DecodedFrame, FrameSender};
use crate::media::synthetic::{SyntheticAudio, SyntheticVideo, wall_clock_micros};
use crate::media::voice_processing::{EchoReference, VoiceProcessing, VoiceProcessor};
use crate::media::vp8::{VideoContent, Vp8Config, Vp8Encoder};

use super::ReducedLayer;

use super::{MediaSink, SendCounters, SendSettings};

/// Every how many captured frames one goes to the self-view (30 fps → 15 fps).
const PREVIEW_EVERY: u32 = 2;

/// Below this video bitrate only every other captured frame is encoded: at the
/// quantizer ceiling a frame costs what it costs (about 140 kbit/s for the synthetic
/// 640x480 picture at 30 fps), so fewer frames is how the rate keeps falling.
const HALF_FRAME_RATE_BELOW_KBPS: u32 = 150;

/// Relative change of the bitrate target below which the encoder is left alone.
const RETUNE_STEP: f64 = 0.03;

/// The lowest bitrate a smaller simulcast layer is given, in kbit/s.
const MIN_LAYER_KBPS: u32 = 20;

/// How much each frame moves the whole picture's average cost
/// ([`VideoLoop::full_rate_kbps`]): about the last second at 30 fps.
const FULL_RATE_WEIGHT: f64 = 0.05;

/// Opus bitrate for voice.
const OPUS_BITRATE_BPS: u32 = 32_000;

/// One open capture source, counted in [`SendCounters::open_captures`] while it lives.
pub(super) struct CaptureHandle(Arc<SendCounters>);

impl CaptureHandle {
    pub(super) fn open(counters: &Arc<SendCounters>) -> Self {
        counters.open_captures.fetch_add(1, Ordering::Relaxed);
        Self(counters.clone())
    }
}

impl Drop for CaptureHandle {
    fn drop(&mut self) {
        self.0.open_captures.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where the audio loop takes its frames from.
enum AudioSource {
    /// The synthetic tone, paced by the clock.
    Tone(SyntheticAudio),
    /// A WAV file, paced by the clock.
    File(Box<WavFile>),
    /// A microphone, paced by the device, and the voice processing of what it hears.
    Microphone(Box<(Microphone, VoiceProcessor)>),
    /// Nothing: the microphone could not be opened or was lost; another may be picked.
    Silent,
}

/// How long the audio loop waits for a microphone before checking whether to stop.
const MICROPHONE_WAIT: Duration = Duration::from_millis(100);

impl AudioSource {
    /// Opens what `settings` asks for; a microphone's sound goes through the voice
    /// processing, with what the speaker plays (`echo_reference`) as the far end.
    fn open(
        settings: &SendSettings,
        echo_reference: &Arc<EchoReference>,
    ) -> Result<Self, DeviceError> {
        match &settings.audio_input {
            AudioInput::Tone => Ok(Self::Tone(SyntheticAudio::new(settings.tone_hz))),
            AudioInput::File(path) => WavFile::open(path).map(|file| Self::File(Box::new(file))),
            AudioInput::Microphone(choice) => Microphone::open(choice).map(|microphone| {
                let processor =
                    VoiceProcessor::new(settings.voice_processing, echo_reference.clone());
                Self::Microphone(Box::new((microphone, processor)))
            }),
        }
    }

    /// Switches the parts of the voice processing (a microphone's only).
    fn set_voice_processing(&mut self, parts: VoiceProcessing) {
        if let Self::Microphone(microphone) = self {
            microphone.1.set_parts(parts);
        }
    }

    /// The next 20 ms frame: the tone after sleeping until `deadline`, a microphone's
    /// as soon as it has one (`None` if it has none for a while). Fails when the
    /// microphone is lost.
    fn next_frame(
        &mut self,
        deadline: &mut Instant,
        period: Duration,
    ) -> Result<Option<AudioFrame>, DeviceError> {
        match self {
            Self::Tone(tone) => {
                pace(deadline, period);
                Ok(Some(tone.next_frame()))
            }
            Self::File(file) => {
                pace(deadline, period);
                Ok(Some(file.next_frame()))
            }
            Self::Microphone(microphone) => {
                let (microphone, processor) = &mut **microphone;
                let mut frame = microphone.next_frame(MICROPHONE_WAIT)?;
                if let Some(frame) = &mut frame {
                    processor.process(frame, microphone.latency());
                }
                Ok(frame)
            }
            Self::Silent => {
                std::thread::sleep(MICROPHONE_WAIT);
                Ok(None)
            }
        }
    }
}

/// Where the video loop takes its frames from.
enum VideoSource {
    /// The stamped test pattern.
    Synthetic(SyntheticVideo),
    /// A y4m file, in a loop.
    #[cfg(not(target_arch = "wasm32"))]
    File(Box<Y4mFile>),
    /// A camera, paced by the device.
    #[cfg(not(target_arch = "wasm32"))]
    Camera(Camera),
    /// Our name on a colour, when there is no video to send.
    Placeholder(PlaceholderVideo),
}

impl VideoSource {
    /// Opens what `settings` asks for.
    fn open(settings: &SendSettings) -> Result<Self, DeviceError> {
        match &settings.video_input {
            VideoInput::Synthetic => Self::synthetic(settings),
            #[cfg(not(target_arch = "wasm32"))]
            VideoInput::File(path) => Y4mFile::open(path).map(|file| Self::File(Box::new(file))),
            #[cfg(target_arch = "wasm32")]
            VideoInput::File(_) => Err(DeviceError::Format(
                "video files are read by the native client only".to_owned(),
            )),
            #[cfg(not(target_arch = "wasm32"))]
            VideoInput::Camera(choice) => Camera::open(choice).map(Self::Camera),
            #[cfg(target_arch = "wasm32")]
            VideoInput::Camera(choice) => Err(DeviceError::NotFound {
                kind: "camera",
                wanted: choice.to_string(),
                available: Vec::new(),
            }),
        }
    }

    /// The test pattern at the size `settings` asks for.
    fn synthetic(settings: &SendSettings) -> Result<Self, DeviceError> {
        SyntheticVideo::new(settings.width, settings.height)
            .map(Self::Synthetic)
            .map_err(|error| DeviceError::Format(error.to_string()))
    }

    /// `own_name` on its colour, `width` x `height`.
    fn placeholder(own_name: &str, width: u32, height: u32) -> Result<Self, CodecError> {
        PlaceholderVideo::new(own_name, width, height)
            .map(Self::Placeholder)
            .map_err(CodecError::from)
    }

    /// The next frame, captured at `captured` (microseconds since the UNIX epoch).
    fn next_frame(&mut self, captured: u64) -> Result<VideoFrame, DeviceError> {
        match self {
            Self::Synthetic(source) => Ok(source.next_frame(captured)),
            #[cfg(not(target_arch = "wasm32"))]
            Self::File(file) => file.next_frame(),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Camera(camera) => camera.next_frame(),
            Self::Placeholder(placeholder) => Ok(placeholder.next_frame()),
        }
    }

    /// Whether the source delivers frames at its own pace (the loop must not sleep).
    fn paces_itself(&self) -> bool {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Self::Camera(_) => true,
            _ => false,
        }
    }
}

/// Switches shared between the owner and the encoder threads.
#[derive(Debug)]
struct Controls {
    video_on: AtomicBool,
    audio_on: AtomicBool,
    /// The parts of the voice processing asked for now.
    voice_processing: Mutex<VoiceProcessing>,
    keyframe_wanted: AtomicBool,
    stop: AtomicBool,
}

/// The running send path of one call: one video and one audio encoder thread.
pub struct LocalSender {
    controls: Arc<Controls>,
    bounds: BitrateBounds,
    bitrate_targets: Arc<VideoBitrateTargets>,
    /// A source waiting to replace the video loop's (hot switching).
    next_video: Arc<Mutex<Option<VideoSource>>>,
    /// A source waiting to replace the audio loop's.
    next_audio: Arc<Mutex<Option<AudioSource>>>,
    /// What the speaker plays, for the echo canceller of the microphones we open.
    echo_reference: Arc<EchoReference>,
    threads: Vec<JoinHandle<()>>,
    audio_problem: Option<DeviceError>,
    video_problem: Option<DeviceError>,
}

impl LocalSender {
    /// Creates the encoders and opens the sources (errors surface here, not on the
    /// threads) and starts producing frames into `sink`, and what we capture into
    /// `preview` (the self-view) at half the frame rate.
    ///
    /// A microphone that cannot be opened does not stop the call: we send no audio,
    /// and [`Self::audio_problem`] says why. Neither does a video source: we send the
    /// placeholder (`own_name` on a colour) instead, and [`Self::video_problem`] says
    /// why. A microphone's sound goes through the voice processing that
    /// `settings.voice_processing` asks for, with `echo_reference` (what the speaker
    /// plays) as the far end of the echo canceller.
    pub fn start(
        settings: &SendSettings,
        own_name: &str,
        sink: Arc<dyn MediaSink>,
        counters: Arc<SendCounters>,
        preview: Option<FrameSender>,
        echo_reference: Arc<EchoReference>,
    ) -> Result<Self, CodecError> {
        let (source, video_problem) = match VideoSource::open(settings) {
            Ok(source) => (source, None),
            Err(error) => {
                tracing::warn!(%error, "sending the placeholder");
                let placeholder =
                    VideoSource::placeholder(own_name, settings.width, settings.height)?;
                (placeholder, Some(error))
            }
        };
        let encoder = Vp8Encoder::new(Vp8Config {
            width: settings.width,
            height: settings.height,
            fps: settings.fps,
            bitrate_kbps: settings.video_kbps,
            content: VideoContent::Camera,
        })?;
        counters.video_encoders.fetch_add(1, Ordering::Relaxed);
        counters
            .video_target_kbps
            .store(u64::from(settings.video_kbps), Ordering::Relaxed);
        let bounds = BitrateBounds::new(settings.min_video_kbps, settings.video_kbps);
        let bitrate_targets = Arc::new(VideoBitrateTargets::default());
        let opus = OpusEncoder::new(OPUS_BITRATE_BPS)?;
        let (audio_source, audio_problem) = match AudioSource::open(settings, &echo_reference) {
            Ok(source) => (source, None),
            Err(error) => {
                tracing::warn!(%error, "sending no audio");
                (AudioSource::Silent, Some(error))
            }
        };
        let controls = Arc::new(Controls {
            video_on: AtomicBool::new(true),
            audio_on: AtomicBool::new(true),
            voice_processing: Mutex::new(settings.voice_processing),
            keyframe_wanted: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let next_video = Arc::new(Mutex::new(None));
        let next_audio = Arc::new(Mutex::new(None));
        let video = VideoLoop {
            controls: controls.clone(),
            next_video: next_video.clone(),
            own_name: own_name.to_owned(),
            sink: sink.clone(),
            _capture: CaptureHandle::open(&counters),
            counters: counters.clone(),
            encoder,
            reduced: [None, None],
            full_rate_kbps: None,
            bitrate_targets: bitrate_targets.clone(),
            source,
            period: Duration::from_secs(1) / settings.fps.max(1),
            preview,
        };
        let mut audio = AudioLoop {
            controls: controls.clone(),
            next_audio: next_audio.clone(),
            sink,
            capture: None,
            counters,
            encoder: opus,
            source: AudioSource::Silent,
        };
        audio.use_source(audio_source);
        let threads = vec![
            spawn_named("meetspace-video-send", move || video.run())?,
            spawn_named("meetspace-audio-send", move || audio.run())?,
        ];
        Ok(Self {
            controls,
            bounds,
            bitrate_targets,
            next_video,
            next_audio,
            echo_reference,
            threads,
            audio_problem,
            video_problem,
        })
    }

    /// Replaces the video source mid-call with what `settings.video_input` names,
    /// without a new negotiation: the track stays, the encoder follows a new frame size
    /// with a keyframe. On failure the current source goes on.
    pub fn switch_video(&self, settings: &SendSettings) -> Result<(), DeviceError> {
        let source = VideoSource::open(settings)?;
        if let Ok(mut next) = self.next_video.lock() {
            *next = Some(source);
        }
        Ok(())
    }

    /// Replaces the audio source mid-call with what `settings.audio_input` names (also
    /// after the microphone was lost or never opened). On failure the current source
    /// goes on.
    pub fn switch_audio(&self, settings: &SendSettings) -> Result<(), DeviceError> {
        let mut settings = settings.clone();
        if let Ok(parts) = self.controls.voice_processing.lock() {
            settings.voice_processing = *parts;
        }
        let source = AudioSource::open(&settings, &self.echo_reference)?;
        if let Ok(mut next) = self.next_audio.lock() {
            *next = Some(source);
        }
        Ok(())
    }

    /// Why we send the placeholder instead of the video asked for.
    pub fn video_problem(&self) -> Option<&DeviceError> {
        self.video_problem.as_ref()
    }

    /// Why we send no audio, when the microphone could not be opened.
    pub fn audio_problem(&self) -> Option<&DeviceError> {
        self.audio_problem.as_ref()
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

    /// Switches parts of the microphone's voice processing on or off, mid-call.
    pub fn set_voice_processing(&self, parts: VoiceProcessing) {
        if let Ok(mut current) = self.controls.voice_processing.lock() {
            *current = parts;
        }
    }

    /// Makes the next encoded frame a keyframe (a peer lost data or just arrived).
    pub fn request_keyframe(&self) {
        self.controls.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    /// The range congestion control keeps the video bitrate in.
    pub fn bitrate_bounds(&self) -> BitrateBounds {
        self.bounds
    }

    /// Where each peer's congestion controller puts its target; the video encoder
    /// follows the lowest.
    pub fn bitrate_targets(&self) -> &Arc<VideoBitrateTargets> {
        &self.bitrate_targets
    }
}

impl LocalSender {
    /// Stops capturing and encoding now; the threads end within one frame period.
    pub fn stop(&self) {
        self.controls.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for LocalSender {
    fn drop(&mut self) {
        self.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

pub(super) fn spawn_named(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, CodecError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|error| CodecError::Thread(error.to_string()))
}

/// Sleeps until `deadline`, then moves it one `period` on (skipping ahead if late).
pub(super) fn pace(deadline: &mut Instant, period: Duration) {
    let now = Instant::now();
    if *deadline > now {
        std::thread::sleep(*deadline - now);
    }
    *deadline += period;
    if *deadline + period < Instant::now() {
        *deadline = Instant::now() + period;
    }
}

struct VideoLoop {
    controls: Arc<Controls>,
    next_video: Arc<Mutex<Option<VideoSource>>>,
    /// Drawn on the placeholder when the source is lost.
    own_name: String,
    sink: Arc<dyn MediaSink>,
    /// Counts the source as open while the loop runs.
    _capture: CaptureHandle,
    counters: Arc<SendCounters>,
    encoder: Vp8Encoder,
    /// The encoders of the smaller simulcast layers ([`ReducedLayer`] order), while a
    /// connection takes them.
    reduced: [Option<Vp8Encoder>; 2],
    /// What the whole picture's frames have cost lately, in kbit/s (a moving average).
    full_rate_kbps: Option<f64>,
    bitrate_targets: Arc<VideoBitrateTargets>,
    source: VideoSource,
    period: Duration,
    preview: Option<FrameSender>,
}

impl VideoLoop {
    fn run(mut self) {
        let mut deadline = Instant::now();
        let mut captured_frames = 0u32;
        while !self.controls.stop.load(Ordering::Relaxed) {
            if let Some(source) = self.next_video.lock().ok().and_then(|mut next| next.take()) {
                self.source = source;
            }
            let video_on = self.controls.video_on.load(Ordering::Relaxed);
            if !self.source.paces_itself() || !video_on {
                pace(&mut deadline, self.period);
            }
            if !video_on {
                continue;
            }
            let captured = wall_clock_micros();
            let frame = match self.source.next_frame(captured) {
                Ok(frame) => frame,
                Err(error) => {
                    tracing::warn!(%error, "the video source failed; sending the placeholder");
                    self.counters
                        .video_source_failures
                        .fetch_add(1, Ordering::Relaxed);
                    let config = self.encoder.config();
                    match VideoSource::placeholder(&self.own_name, config.width, config.height) {
                        Ok(placeholder) => self.source = placeholder,
                        Err(_) => return,
                    }
                    continue;
                }
            };
            if let Err(error) = self.fit_encoder(&frame) {
                tracing::warn!(%error, "no encoder for the new frame size");
                return;
            }
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
            self.follow_bitrate_target();
            // Every other frame at very low rates; the frame after a skipped one lasts two.
            let step = if self.encoder.config().bitrate_kbps < HALF_FRAME_RATE_BELOW_KBPS {
                2
            } else {
                1
            };
            if !captured_frames.is_multiple_of(step) {
                continue;
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
                        self.note_full_rate(packet.data.len(), self.period * step);
                        self.sink.send_video(&packet.data, self.period * step);
                        self.counters.video_frames.fetch_add(1, Ordering::Relaxed);
                        if packet.keyframe {
                            self.counters
                                .video_keyframes
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "a video frame could not be encoded"),
            }
            self.encode_reduced_layers(&frame, captured, keyframe, self.period * step);
        }
    }

    /// Adds a frame of the whole picture, `bytes` long and lasting `duration`, to
    /// [`Self::full_rate_kbps`].
    fn note_full_rate(&mut self, bytes: usize, duration: Duration) {
        let kbps = bytes as f64 * 8.0 / 1000.0 / duration.as_secs_f64().max(1e-3);
        let average = self.full_rate_kbps.map_or(kbps, |average| {
            average + FULL_RATE_WEIGHT * (kbps - average)
        });
        self.full_rate_kbps = Some(average);
    }

    /// Encodes and sends the smaller simulcast layers of `frame` while a connection
    /// takes them (a keyframe in each when the full picture's is); their encoders go
    /// when none does.
    fn encode_reduced_layers(
        &mut self,
        frame: &VideoFrame,
        captured: u64,
        keyframe: bool,
        duration: Duration,
    ) {
        if !self.sink.wants_reduced_layers() {
            self.reduced = [None, None];
            return;
        }
        let full = self.encoder.config();
        // A smaller layer gets its share of what the whole picture costs: of the
        // encoder's target, or of less when the picture needs less (a still one).
        let basis = self
            .full_rate_kbps
            .map_or(f64::from(full.bitrate_kbps), |rate| {
                rate.min(f64::from(full.bitrate_kbps))
            });
        for layer in ReducedLayer::ALL {
            let picture = frame.downscaled(layer.divisor());
            let kbps = ((basis * layer.bitrate_share()) as u32).max(MIN_LAYER_KBPS);
            let slot = &mut self.reduced[layer as usize];
            let fits = slot.as_ref().is_some_and(|encoder| {
                let config = encoder.config();
                (config.width, config.height) == (picture.width, picture.height)
            });
            let fresh = !fits;
            if fresh {
                let config = Vp8Config {
                    width: picture.width,
                    height: picture.height,
                    bitrate_kbps: kbps,
                    ..full
                };
                match Vp8Encoder::new(config) {
                    Ok(encoder) => *slot = Some(encoder),
                    Err(error) => {
                        tracing::warn!(%error, ?layer, "no encoder for a simulcast layer");
                        continue;
                    }
                }
            }
            let Some(encoder) = slot else { continue };
            let current = encoder.config().bitrate_kbps;
            if f64::from(kbps.abs_diff(current)) >= f64::from(current) * RETUNE_STEP
                && let Err(error) = encoder.set_bitrate_kbps(kbps)
            {
                tracing::warn!(%error, ?layer, "a simulcast layer's bitrate could not be changed");
            }
            match encoder.encode(&picture, captured as i64, keyframe || fresh) {
                Ok(encoded) => {
                    for packet in encoded {
                        self.sink.send_video_layer(layer, &packet.data, duration);
                        self.counters
                            .simulcast_frames
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, ?layer, "a simulcast frame could not be encoded")
                }
            }
        }
    }

    /// Retunes the encoder to the lowest peer's target when that moved by more than
    /// [`RETUNE_STEP`] (rate control needs no keyframe for it).
    fn follow_bitrate_target(&mut self) {
        let Some(target) = self.bitrate_targets.lowest_kbps() else {
            return;
        };
        let current = self.encoder.config().bitrate_kbps;
        if f64::from(target.abs_diff(current)) < f64::from(current) * RETUNE_STEP {
            return;
        }
        match self.encoder.set_bitrate_kbps(target) {
            Ok(()) => self
                .counters
                .video_target_kbps
                .store(u64::from(target), Ordering::Relaxed),
            Err(error) => tracing::warn!(%error, "the video bitrate could not be changed"),
        }
    }

    /// Makes a new encoder when the source's frame size changed (a file or camera of
    /// another size); its first frame is a keyframe, so peers follow without a new
    /// negotiation: the track stays.
    fn fit_encoder(&mut self, frame: &VideoFrame) -> Result<(), CodecError> {
        let config = self.encoder.config();
        if (frame.width, frame.height) != (config.width, config.height) {
            self.encoder = Vp8Encoder::new(Vp8Config {
                width: frame.width,
                height: frame.height,
                ..config
            })?;
            self.controls.keyframe_wanted.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Frames in the own-level window (3 x 20 ms).
const LEVEL_FRAMES: usize = 3;

struct AudioLoop {
    controls: Arc<Controls>,
    next_audio: Arc<Mutex<Option<AudioSource>>>,
    sink: Arc<dyn MediaSink>,
    /// Counts the source as open while it is one (not [`AudioSource::Silent`]).
    capture: Option<CaptureHandle>,
    counters: Arc<SendCounters>,
    encoder: OpusEncoder,
    source: AudioSource,
}

impl AudioLoop {
    fn run(mut self) {
        let period =
            Duration::from_secs_f64(AUDIO_FRAME_SAMPLES as f64 / f64::from(AUDIO_SAMPLE_RATE));
        let mut deadline = Instant::now();
        let mut mean_squares = std::collections::VecDeque::with_capacity(LEVEL_FRAMES);
        while !self.controls.stop.load(Ordering::Relaxed) {
            if let Some(source) = self.next_audio.lock().ok().and_then(|mut next| next.take()) {
                self.use_source(source);
            }
            if let Ok(parts) = self.controls.voice_processing.lock() {
                self.source.set_voice_processing(*parts);
            }
            let frame = match self.source.next_frame(&mut deadline, period) {
                Ok(Some(frame)) => frame,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "the microphone is lost; sending no audio");
                    self.counters
                        .audio_source_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.counters.own_level.store(0, Ordering::Relaxed);
                    self.counters.muted_level.store(0, Ordering::Relaxed);
                    self.use_source(AudioSource::Silent);
                    continue;
                }
            };
            if mean_squares.len() == LEVEL_FRAMES {
                mean_squares.pop_front();
            }
            mean_squares.push_back(rms_level(&frame.samples).powi(2));
            let level = (mean_squares.iter().sum::<f32>() / mean_squares.len() as f32).sqrt();
            let on = self.controls.audio_on.load(Ordering::Relaxed);
            let (sent, held) = if on { (level, 0.0) } else { (0.0, level) };
            self.counters
                .own_level
                .store(sent.to_bits(), Ordering::Relaxed);
            self.counters
                .muted_level
                .store(held.to_bits(), Ordering::Relaxed);
            if !on {
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

    /// Takes `source` from now on, counted as an open capture unless it is silence.
    fn use_source(&mut self, source: AudioSource) {
        self.capture = match source {
            AudioSource::Silent => None,
            _ => Some(
                self.capture
                    .take()
                    .unwrap_or_else(|| CaptureHandle::open(&self.counters)),
            ),
        };
        self.source = source;
    }
}
