//! The browser's media: the camera and microphone through `getUserMedia` (with the
//! browser's echo cancellation, noise suppression and gain as [`VoiceProcessing`]
//! asks), remote and local video copied into the ECS frame channel, and remote voices
//! through WebAudio with one `PannerNode` each, placed where their panels stand and
//! fading with distance as the native mixer does ([`place_voice`]), and
//! one `GainNode` each for the listener's volume. Every voice goes into one master
//! `GainNode` and out as a `MediaStream` (a `MediaStreamAudioDestinationNode`), which
//! `web_playback` plays so that the echo canceller hears it. The browser encodes and
//! decodes; no Rust codec runs in the wasm build.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bevy::math::Vec3;
use js_sys::{Array, Function, Object, Reflect};
use serde::Serialize;
use thiserror::Error;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AnalyserNode, AudioContext, AudioContextState, CanvasRenderingContext2d,
    DisplayMediaStreamConstraints, DistanceModelType, GainNode, HtmlCanvasElement,
    HtmlVideoElement, MediaStream, MediaStreamAudioDestinationNode, MediaStreamAudioSourceNode,
    MediaStreamConstraints, MediaStreamTrack, MediaTrackConstraints, PannerNode, PanningModelType,
};

use super::receive::{DecodedFrame, FrameSender};
use super::{RollOff, SCREEN_FPS, VoiceProcessing};
use crate::signaling::protocol::PeerId;

/// The largest camera video side copied into a panel; bigger frames are scaled down
/// first.
pub const CAMERA_COPY_SIDE: u32 = 1280;
/// The largest side of a shared screen copied to the wall: a 1080p screen whole.
pub const SCREEN_COPY_SIDE: u32 = 1920;

/// Samples a level is measured over.
const LEVEL_WINDOW: u32 = 2048;

/// Why the camera and microphone could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MediaAccessError {
    /// The user (or the browser's settings) refused the permission.
    #[error("camera and microphone access was denied")]
    Denied,
    /// No camera or microphone exists.
    #[error("no camera or microphone was found")]
    NoDevice,
    /// The page is not a secure context (http from another host), so the browser
    /// offers no `getUserMedia`.
    #[error("the browser allows the camera only on https:// or localhost pages")]
    InsecurePage,
    /// Anything else the browser said.
    #[error("the camera or microphone could not be opened: {0}")]
    Other(String),
}

/// Why a screen could not be shared.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScreenShareError {
    /// The user closed the browser's picker, or the browser's settings refuse it.
    #[error("sharing was cancelled or is not allowed on this page")]
    Declined,
    /// The browser offers no `getDisplayMedia` (an old or mobile browser, or a page
    /// that is not a secure context).
    #[error("this browser cannot share a screen")]
    Unsupported,
    /// Anything else the browser said.
    #[error("the screen could not be shared: {0}")]
    Other(String),
}

/// A screen, window or tab the user picked in the browser's own picker
/// (`getDisplayMedia`), while it is shared. Dropping it stops the capture.
pub struct ScreenShare {
    stream: MediaStream,
    track: MediaStreamTrack,
    _on_ended: Closure<dyn FnMut()>,
}

impl ScreenShare {
    /// Asks the browser for a screen (its picker shows here); `on_ended` runs when the
    /// capture ends from outside: the browser's "stop sharing" bar, a closed window.
    pub async fn open(on_ended: impl FnMut() + 'static) -> Result<Self, ScreenShareError> {
        let devices = web_sys::window()
            .ok_or(ScreenShareError::Unsupported)?
            .navigator()
            .media_devices()
            .map_err(|_| ScreenShareError::Unsupported)?;
        let video = MediaTrackConstraints::new();
        let at_most = |value: u32| -> Result<Object, ScreenShareError> {
            let range = Object::new();
            Reflect::set(&range, &"max".into(), &value.into())
                .map_err(|error| ScreenShareError::Other(crate::browser::describe(&error)))?;
            Ok(range)
        };
        video.set_frame_rate(&at_most(SCREEN_FPS)?.into());
        video.set_width(&at_most(1920)?.into());
        video.set_height(&at_most(1080)?.into());
        let constraints = DisplayMediaStreamConstraints::new();
        constraints.set_video_media_track_constraints(&video);
        constraints.set_audio_bool(false);
        let request = devices
            .get_display_media_with_constraints(&constraints)
            .map_err(|_| ScreenShareError::Unsupported)?;
        let stream: MediaStream = match JsFuture::from(request).await {
            Ok(stream) => stream.unchecked_into(),
            Err(error) => {
                return Err(match crate::browser::error_name(&error).as_deref() {
                    Some("NotAllowedError" | "AbortError") => ScreenShareError::Declined,
                    Some("NotSupportedError" | "TypeError") => ScreenShareError::Unsupported,
                    _ => ScreenShareError::Other(crate::browser::describe(&error)),
                });
            }
        };
        let track = stream.get_video_tracks().get(0);
        if track.is_undefined() {
            stop_tracks(&stream);
            return Err(ScreenShareError::Other(
                "the browser gave no video".to_owned(),
            ));
        }
        let track: MediaStreamTrack = track.unchecked_into();
        let on_ended = Closure::<dyn FnMut()>::new(on_ended);
        track.set_onended(Some(on_ended.as_ref().unchecked_ref()));
        Ok(Self {
            stream,
            track,
            _on_ended: on_ended,
        })
    }

    /// The shared stream (one video track).
    pub fn stream(&self) -> &MediaStream {
        &self.stream
    }
}

impl Drop for ScreenShare {
    fn drop(&mut self) {
        self.track.set_onended(None);
        stop_tracks(&self.stream);
    }
}

/// Why the microphone's voice processing could not be switched during a call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VoiceProcessingError {
    /// The browser refused the new constraints (`applyConstraints` failed).
    #[error(
        "the browser refused to change the microphone's voice processing during the call \
         ({0}); the change applies from the next call"
    )]
    Refused(String),
    /// The browser took the constraints but kept these parts as they were (Chromium
    /// fixes a microphone's processing when it opens it).
    #[error("the browser kept {0} as it was for this call; the change applies from the next call")]
    Kept(String),
}

/// The audio constraints that ask the browser for `processing`.
fn processing_constraints(processing: VoiceProcessing) -> MediaTrackConstraints {
    let constraints = MediaTrackConstraints::new();
    constraints.set_echo_cancellation_bool(processing.echo_cancellation);
    constraints.set_noise_suppression_bool(processing.noise_suppression);
    constraints.set_auto_gain_control_bool(processing.auto_gain);
    constraints
}

/// Asks the browser for the camera and microphone (the permission prompt shows here),
/// the microphone with the voice processing `processing` asks for.
pub async fn open_camera_and_microphone(
    processing: VoiceProcessing,
) -> Result<MediaStream, MediaAccessError> {
    let window = web_sys::window().ok_or(MediaAccessError::InsecurePage)?;
    let devices = window
        .navigator()
        .media_devices()
        .map_err(|_| MediaAccessError::InsecurePage)?;
    let constraints = MediaStreamConstraints::new();
    constraints.set_audio_media_track_constraints(&processing_constraints(processing));
    constraints.set_video_bool(true);
    let request = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|error| MediaAccessError::Other(crate::browser::describe(&error)))?;
    match JsFuture::from(request).await {
        Ok(stream) => Ok(stream.unchecked_into()),
        Err(error) => Err(match crate::browser::error_name(&error).as_deref() {
            Some("NotAllowedError" | "SecurityError") => MediaAccessError::Denied,
            Some("NotFoundError" | "OverconstrainedError") => MediaAccessError::NoDevice,
            _ => MediaAccessError::Other(crate::browser::describe(&error)),
        }),
    }
}

/// Turns the audio or video tracks of `stream` on or off (muted tracks send silence
/// or black, so peers keep the connection).
pub fn set_tracks_enabled(stream: &MediaStream, video: bool, enabled: bool) {
    let tracks = if video {
        stream.get_video_tracks()
    } else {
        stream.get_audio_tracks()
    };
    for track in tracks.iter() {
        track
            .unchecked_into::<web_sys::MediaStreamTrack>()
            .set_enabled(enabled);
    }
}

/// Switches the voice processing of `stream`'s microphone to `processing`
/// (`applyConstraints`), then checks with `getSettings` that the browser did.
pub async fn apply_voice_processing(
    stream: &MediaStream,
    processing: VoiceProcessing,
) -> Result<(), VoiceProcessingError> {
    let Some(track) = audio_track(stream) else {
        return Ok(());
    };
    let request = track
        .apply_constraints_with_constraints(&processing_constraints(processing))
        .map_err(|error| VoiceProcessingError::Refused(crate::browser::describe(&error)))?;
    JsFuture::from(request).await.map_err(|error| {
        // An OverconstrainedError names the constraint it could not meet.
        let constraint = Reflect::get(&error, &"constraint".into())
            .ok()
            .and_then(|constraint| constraint.as_string())
            .filter(|constraint| !constraint.is_empty());
        let described = crate::browser::describe(&error);
        VoiceProcessingError::Refused(match constraint {
            Some(constraint) => format!("{constraint}: {described}"),
            None => described,
        })
    })?;
    let Some(now) = track_processing(&track) else {
        return Ok(());
    };
    let kept: Vec<&str> = [
        (
            now.echo_cancellation,
            processing.echo_cancellation,
            "echo cancellation",
        ),
        (
            now.noise_suppression,
            processing.noise_suppression,
            "noise suppression",
        ),
        (now.auto_gain, processing.auto_gain, "automatic gain"),
    ]
    .into_iter()
    .filter(|(reported, asked, _)| reported.is_some_and(|reported| reported != *asked))
    .map(|(_, _, part)| part)
    .collect();
    if kept.is_empty() {
        Ok(())
    } else {
        Err(VoiceProcessingError::Kept(kept.join(" and ")))
    }
}

/// The voice processing a microphone track runs, as the browser reports it
/// (`getSettings`); `None` for a part the browser does not report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportedProcessing {
    /// `echoCancellation`.
    pub echo_cancellation: Option<bool>,
    /// `noiseSuppression`.
    pub noise_suppression: Option<bool>,
    /// `autoGainControl`.
    pub auto_gain: Option<bool>,
}

/// What `track`'s settings say of its voice processing (`None` for a video track).
fn track_processing(track: &MediaStreamTrack) -> Option<ReportedProcessing> {
    if track.kind() != "audio" {
        return None;
    }
    let settings = track.get_settings();
    Some(ReportedProcessing {
        echo_cancellation: settings.get_echo_cancellation(),
        noise_suppression: settings.get_noise_suppression(),
        auto_gain: settings.get_auto_gain_control(),
    })
}

/// The first audio track of `stream`.
fn audio_track(stream: &MediaStream) -> Option<MediaStreamTrack> {
    stream
        .get_audio_tracks()
        .iter()
        .next()
        .map(|track| track.unchecked_into())
}

/// Stops every track of `stream`: the camera light goes off.
pub fn stop_tracks(stream: &MediaStream) {
    for track in stream.get_tracks().iter() {
        track.unchecked_into::<web_sys::MediaStreamTrack>().stop();
    }
}

/// Copies each new video frame of a stream into a frame channel: a hidden, muted
/// `<video>` plays the stream and `requestVideoFrameCallback` draws every frame it
/// presents into a canvas, whose pixels go to the ECS. Dropping it stops the copying
/// and removes the element.
pub struct VideoTap {
    video: HtmlVideoElement,
    _callback: FrameCallback,
}

impl VideoTap {
    /// Starts copying `stream`'s video into `frames`, scaled down to at most
    /// `max_side` pixels ([`CAMERA_COPY_SIDE`], [`SCREEN_COPY_SIDE`]).
    pub fn start(
        stream: &MediaStream,
        frames: FrameSender,
        max_side: u32,
    ) -> Result<Self, JsValue> {
        let document = crate::browser::document()?;
        let video: HtmlVideoElement = document.create_element("video")?.unchecked_into();
        video.set_muted(true);
        video.set_autoplay(true);
        video.set_attribute("playsinline", "")?;
        // Kept in the page but invisible: browsers present frames (and call back) only
        // for elements that are rendered, so `display: none` would stop the copying.
        video.set_attribute(
            "style",
            "position:fixed;left:0;top:0;width:2px;height:2px;opacity:0;pointer-events:none",
        )?;
        video.set_src_object(Some(stream));
        document
            .body()
            .ok_or_else(|| JsValue::from_str("the page has no body"))?
            .append_child(&video)?;
        let canvas: HtmlCanvasElement = document.create_element("canvas")?.unchecked_into();
        let options = Object::new();
        Reflect::set(&options, &"willReadFrequently".into(), &JsValue::TRUE)?;
        let context: CanvasRenderingContext2d = canvas
            .get_context_with_context_options("2d", &options)?
            .ok_or_else(|| JsValue::from_str("no 2D canvas"))?
            .unchecked_into();
        let copier = FrameCopier {
            video: video.clone(),
            canvas,
            context,
            frames,
            max_side,
        };
        let callback = watch_frames(video.clone(), move || copier.copy());
        // Autoplay of a muted element is allowed; a refusal only delays the video.
        if let Ok(started) = video.play() {
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(error) = JsFuture::from(started).await {
                    tracing::debug!(
                        "a video did not start: {}",
                        crate::browser::describe(&error)
                    );
                }
            });
        }
        Ok(Self {
            video,
            _callback: callback,
        })
    }
}

impl Drop for VideoTap {
    fn drop(&mut self) {
        self.video.set_src_object(None);
        self.video.remove();
    }
}

/// Draws the frame a video element shows into a canvas and offers its pixels.
struct FrameCopier {
    video: HtmlVideoElement,
    canvas: HtmlCanvasElement,
    context: CanvasRenderingContext2d,
    frames: FrameSender,
    max_side: u32,
}

impl FrameCopier {
    fn copy(&self) {
        let (width, height) = fitted(
            self.video.video_width(),
            self.video.video_height(),
            self.max_side,
        );
        if width == 0 || height == 0 {
            return;
        }
        if self.canvas.width() != width || self.canvas.height() != height {
            self.canvas.set_width(width);
            self.canvas.set_height(height);
        }
        let (w, h) = (f64::from(width), f64::from(height));
        let drawn = self
            .context
            .draw_image_with_html_video_element_and_dw_and_dh(&self.video, 0.0, 0.0, w, h)
            .and_then(|()| self.context.get_image_data(0.0, 0.0, w, h));
        match drawn {
            Ok(pixels) => self.frames.offer(DecodedFrame {
                width,
                height,
                rgba: pixels.data().0,
                stamp: None,
            }),
            Err(error) => tracing::debug!(
                "a video frame was not copied: {}",
                crate::browser::describe(&error)
            ),
        }
    }
}

/// A video size scaled down to fit `max_side`, keeping the aspect.
fn fitted(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = f64::from(max_side) / f64::from(longest);
    let scaled = |side: u32| ((f64::from(side) * scale) as u32).max(1);
    (scaled(width), scaled(height))
}

/// The per-frame callback of a [`VideoTap`]; dropping it ends the copying.
type FrameCallback = Rc<RefCell<Option<Closure<dyn FnMut()>>>>;

/// Calls `on_frame` for every frame `video` presents, for as long as the returned
/// callback lives.
fn watch_frames(video: HtmlVideoElement, on_frame: impl Fn() + 'static) -> FrameCallback {
    let callback: FrameCallback = Rc::new(RefCell::new(None));
    let request: Option<Function> = Reflect::get(&video, &"requestVideoFrameCallback".into())
        .ok()
        .and_then(|function| function.dyn_into().ok());
    let Some(request) = request else {
        tracing::error!("this browser lacks requestVideoFrameCallback; video will not show");
        return callback;
    };
    let again = Rc::downgrade(&callback);
    let (element, ask) = (video.clone(), request.clone());
    *callback.borrow_mut() = Some(Closure::new(move || {
        let Some(callback) = again.upgrade() else {
            return;
        };
        on_frame();
        if let Some(next) = callback.borrow().as_ref() {
            let _ = ask.call1(&element, next.as_ref());
        }
    }));
    if let Some(first) = callback.borrow().as_ref() {
        let _ = request.call1(&video, first.as_ref());
    }
    callback
}

thread_local! {
    /// The page's audio graph and every remote voice in it, by peer.
    static AUDIO: RefCell<Option<SpatialAudio>> = const { RefCell::new(None) };
}

/// A remote voice's nodes: placed by its panner, made louder or quieter by its gain
/// (the listener's volume for this person), measured by its analyser (before the gain:
/// the speaking ring shows how loud they speak, not how loud we play them).
struct VoiceNodes {
    panner: PannerNode,
    volume: GainNode,
    analyser: AnalyserNode,
}

/// Our microphone as the level meter hears it.
struct OwnMicrophone {
    /// Measures `duplicate`.
    analyser: AnalyserNode,
    /// The track we send (muting disables it); its settings tell the voice processing.
    sent: MediaStreamTrack,
    /// A clone of `sent` that stays enabled while we are muted, so that the muted
    /// reminder hears us; stopped with the meter.
    duplicate: MediaStreamTrack,
}

/// The page's `AudioContext`, one panner and gain per remote voice, the master volume
/// and the stream the mix comes out as, and the analyser of our own microphone.
struct SpatialAudio {
    context: AudioContext,
    voices: HashMap<PeerId, VoiceNodes>,
    /// Every voice goes through it: the master volume.
    master: GainNode,
    /// Where the master volume goes: a stream for `web_playback` to play. Nothing is
    /// connected to the context's own destination (see `web_playback`).
    output: MediaStreamAudioDestinationNode,
    own: Option<OwnMicrophone>,
}

impl SpatialAudio {
    fn new() -> Result<Self, JsValue> {
        let context = AudioContext::new()?;
        let master = context.create_gain()?;
        let output = context.create_media_stream_destination()?;
        master.connect_with_audio_node(&output)?;
        Ok(Self {
            context,
            voices: HashMap::new(),
            master,
            output,
            own: None,
        })
    }
}

/// Runs `body` with the page's audio graph, making it on first use.
fn with_audio<T>(body: impl FnOnce(&mut SpatialAudio) -> T) -> Result<T, JsValue> {
    AUDIO.with(|audio| {
        let mut audio = audio.borrow_mut();
        if audio.is_none() {
            *audio = Some(SpatialAudio::new()?);
        }
        let audio = audio
            .as_mut()
            .ok_or_else(|| JsValue::from_str("no audio"))?;
        if audio.context.state() == AudioContextState::Suspended {
            // Browsers start audio only after a user gesture; try again each time.
            let _ = audio.context.resume();
        }
        Ok(body(audio))
    })
}

/// The page's audio context and the stream every voice, after the master volume, comes
/// out as (made on first use).
pub(super) fn mix_output() -> Result<(AudioContext, MediaStream), JsValue> {
    with_audio(|audio| (audio.context.clone(), audio.output.stream()))
}

/// An analyser fed by `stream`'s audio, over about the last 43 ms at 48 kHz.
pub(super) fn analyse(
    context: &AudioContext,
    stream: &MediaStream,
) -> Result<(AnalyserNode, MediaStreamAudioSourceNode), JsValue> {
    let source = context.create_media_stream_source(stream)?;
    let analyser = context.create_analyser()?;
    analyser.set_fft_size(LEVEL_WINDOW);
    source.connect_with_audio_node(&analyser)?;
    Ok((analyser, source))
}

/// The RMS level (0 to 1) of what `analyser` heard last.
pub(super) fn rms(analyser: &AnalyserNode) -> f32 {
    let mut samples = [0.0f32; LEVEL_WINDOW as usize];
    analyser.get_float_time_domain_data(&mut samples);
    (samples.iter().map(|sample| sample * sample).sum::<f32>() / samples.len() as f32).sqrt()
}

/// A remote voice in the page's audio graph, placed by [`place_voice`] and made louder
/// or quieter by [`set_voice_volume`]. Dropping it takes the voice out.
pub struct Voice {
    peer_id: PeerId,
}

impl Voice {
    /// Plays `stream`'s audio through a panner and a gain of its own into the master
    /// volume, measured for the speaking ring.
    pub fn start(peer_id: PeerId, stream: &MediaStream) -> Result<Self, JsValue> {
        with_audio(|audio| -> Result<(), JsValue> {
            let (analyser, source) = analyse(&audio.context, stream)?;
            let panner = audio.context.create_panner()?;
            panner.set_panning_model(PanningModelType::Hrtf);
            let volume = audio.context.create_gain()?;
            source.connect_with_audio_node(&panner)?;
            panner.connect_with_audio_node(&volume)?;
            volume.connect_with_audio_node(&audio.master)?;
            let nodes = VoiceNodes {
                panner,
                volume,
                analyser,
            };
            if let Some(old) = audio.voices.insert(peer_id.clone(), nodes) {
                old.disconnect();
            }
            Ok(())
        })??;
        Ok(Self { peer_id })
    }
}

impl VoiceNodes {
    fn disconnect(&self) {
        let _ = self.panner.disconnect();
        let _ = self.volume.disconnect();
    }
}

impl Drop for Voice {
    fn drop(&mut self) {
        let _ = with_audio(|audio| {
            if let Some(nodes) = audio.voices.remove(&self.peer_id) {
                nodes.disconnect();
            }
        });
    }
}

/// Measures our own microphone for the overlay's level and the muted reminder;
/// dropping it stops.
pub struct LevelMeter;

impl LevelMeter {
    /// Measures the microphone of `stream` (not played: we do not hear ourselves)
    /// through a clone of its track, which muting leaves on.
    pub fn own(stream: &MediaStream) -> Result<Self, JsValue> {
        let Some(sent) = audio_track(stream) else {
            return Ok(Self);
        };
        // `MediaStreamTrack::clone` is the JavaScript `clone()`: a second track of the
        // same microphone, enabled on its own.
        let duplicate = MediaStreamTrack::clone(&sent);
        let measured = MediaStream::new_with_tracks(&Array::of1(&duplicate));
        // `Clone::clone` copies the handle (the method would clone the track again).
        let stop_on_failure = Clone::clone(&duplicate);
        let meter = measured.and_then(|measured| {
            with_audio(|audio| -> Result<(), JsValue> {
                let (analyser, _source) = analyse(&audio.context, &measured)?;
                let old = audio.own.replace(OwnMicrophone {
                    analyser,
                    sent,
                    duplicate,
                });
                if let Some(old) = old {
                    old.duplicate.stop();
                }
                Ok(())
            })?
        });
        if meter.is_err() {
            stop_on_failure.stop();
        }
        meter.map(|()| Self)
    }
}

impl Drop for LevelMeter {
    fn drop(&mut self) {
        let _ = with_audio(|audio| {
            if let Some(own) = audio.own.take() {
                own.duplicate.stop();
            }
        });
    }
}

/// The voice processing our microphone runs now, as the browser reports it; `None`
/// without a microphone.
pub fn microphone_processing() -> Option<ReportedProcessing> {
    AUDIO.with(|audio| {
        let audio = audio.borrow();
        audio
            .as_ref()
            .and_then(|audio| audio.own.as_ref())
            .and_then(|own| track_processing(&own.sent))
    })
}

/// Sets the master volume (0 to 1) of every voice together.
pub fn set_master_volume(volume: f32) {
    AUDIO.with(|audio| {
        if let Some(audio) = audio.borrow().as_ref() {
            set_gain(&audio.master, volume);
        }
    });
}

/// Sets `peer_id`'s own volume (0 to 1), on top of the master volume.
pub fn set_voice_volume(peer_id: &PeerId, volume: f32) {
    AUDIO.with(|audio| {
        if let Some(nodes) = audio.borrow().as_ref().and_then(|a| a.voices.get(peer_id)) {
            set_gain(&nodes.volume, volume);
        }
    });
}

/// Sets `node`'s gain to `volume` (clamped to 0 to 1) unless it is there already.
fn set_gain(node: &GainNode, volume: f32) {
    let volume = volume.clamp(0.0, 1.0);
    let gain = node.gain();
    if gain.value() != volume {
        gain.set_value(volume);
    }
}

/// How loud `peer_id` sounded last (RMS, 0 to 1; 0 for no voice).
pub fn voice_level(peer_id: &PeerId) -> f32 {
    AUDIO.with(|audio| {
        let audio = audio.borrow();
        audio
            .as_ref()
            .and_then(|audio| audio.voices.get(peer_id))
            .map_or(0.0, |nodes| rms(&nodes.analyser))
    })
}

/// How loud our microphone heard us last, muted or not (RMS, 0 to 1; 0 without a
/// microphone).
pub fn own_level() -> f32 {
    AUDIO.with(|audio| {
        let audio = audio.borrow();
        audio
            .as_ref()
            .and_then(|audio| audio.own.as_ref())
            .map_or(0.0, |own| rms(&own.analyser))
    })
}

/// Puts the listener at `position`, looking along `forward` with `up` up.
pub fn place_listener(position: Vec3, forward: Vec3, up: Vec3) {
    AUDIO.with(|audio| {
        let audio = audio.borrow();
        let Some(audio) = audio.as_ref() else { return };
        let listener = audio.context.listener();
        listener.set_position(position.x.into(), position.y.into(), position.z.into());
        listener.set_orientation(
            forward.x.into(),
            forward.y.into(),
            forward.z.into(),
            up.x.into(),
            up.y.into(),
            up.z.into(),
        );
    });
}

/// How a voice fades with distance now: its panner's distance model (`linear` or
/// `inverse`), reference and maximum distance in metres.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceFade {
    /// The panner's distance model, as WebAudio names it.
    pub model: String,
    /// Full level within this distance.
    pub ref_distance: f64,
    /// Silent from here on (with the linear model).
    pub max_distance: f64,
}

/// How `peer_id`'s voice fades with distance, if it plays.
pub fn voice_fade(peer_id: &PeerId) -> Option<VoiceFade> {
    AUDIO.with(|audio| {
        let audio = audio.borrow();
        let nodes = audio.as_ref()?.voices.get(peer_id)?;
        let model = match nodes.panner.distance_model() {
            DistanceModelType::Linear => "linear",
            DistanceModelType::Inverse => "inverse",
            _ => "exponential",
        };
        Some(VoiceFade {
            model: model.to_owned(),
            ref_distance: nodes.panner.ref_distance(),
            max_distance: nodes.panner.max_distance(),
        })
    })
}

/// Puts `peer_id`'s voice at `position` (where their panel stands), fading with
/// distance as `roll_off` says: in a straight line to silence where it has an edge (the
/// lobby), else inversely with distance past its reference.
pub fn place_voice(peer_id: &PeerId, position: Vec3, roll_off: RollOff) {
    AUDIO.with(|audio| {
        let audio = audio.borrow();
        let Some(nodes) = audio.as_ref().and_then(|audio| audio.voices.get(peer_id)) else {
            return;
        };
        let panner = &nodes.panner;
        panner.set_position(position.x.into(), position.y.into(), position.z.into());
        // Called every frame: only what changed is handed to WebAudio.
        let model = match roll_off.silent_at {
            Some(_) => DistanceModelType::Linear,
            None => DistanceModelType::Inverse,
        };
        if panner.distance_model() != model {
            panner.set_distance_model(model);
        }
        let reference = f64::from(roll_off.reference_distance);
        if panner.ref_distance() != reference {
            panner.set_ref_distance(reference);
        }
        if let Some(edge) = roll_off.silent_at.map(f64::from)
            && panner.max_distance() != edge
        {
            panner.set_max_distance(edge);
        }
    });
}
