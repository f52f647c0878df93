//! The shared screen's send path: capture a screen or window a few times a second,
//! encode it once with libvpx's screen-content settings, and hand it to the
//! [`MediaSink`] for every peer it is shared with. One [`ScreenSender`] lives exactly
//! as long as the share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::media::congestion::{BitrateBounds, VideoBitrateTargets};
use crate::media::device::ShareTarget;
use crate::media::error::DeviceError;
use crate::media::frame::VideoFrame;
use crate::media::screen_capture::ScreenCapture;
use crate::media::send::SCREEN_FPS;
use crate::media::synthetic::wall_clock_micros;
use crate::media::vp8::{VideoContent, Vp8Config, Vp8Encoder};

use super::native::{CaptureHandle, pace, spawn_named};
use super::{MediaSink, SendCounters};

/// The share's bitrate on a clean path, in kbit/s: enough for sharp 12 px text at
/// 1280x720.
pub const SCREEN_KBPS: u32 = 1500;
/// The least a share is sent at when the camera's congestion control backs off.
const SCREEN_MIN_KBPS: u32 = 300;
/// Captures that may fail in a row before the share ends: X connections fail now and
/// then (about one capture in a few hundred under Xvfb), a closed window fails every
/// time.
const MAX_CAPTURE_FAILURES: u32 = 10;
/// Relative change of the bitrate target below which the encoder is left alone.
const RETUNE_STEP: f64 = 0.05;

/// A running share: its capture and encoder thread. Dropping it stops the thread and
/// releases the capture.
pub struct ScreenSender {
    target: ShareTarget,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScreenSender {
    /// Opens `target` and starts sending it into `sink`. The bitrate follows the
    /// camera's congestion control (its targets within its bounds), scaled to
    /// [`SCREEN_KBPS`]; the next frame is a keyframe whenever `keyframe_wanted` is set
    /// (a peer asked). When the capture fails later (the window was closed), `ended` is
    /// called with the reason and the thread stops.
    pub fn start(
        target: &ShareTarget,
        sink: Arc<dyn MediaSink>,
        counters: Arc<SendCounters>,
        camera: (BitrateBounds, Arc<VideoBitrateTargets>),
        keyframe_wanted: Arc<AtomicBool>,
        ended: impl FnOnce(DeviceError) + Send + 'static,
    ) -> Result<Self, DeviceError> {
        let mut capture = ScreenCapture::open(target)?;
        let first = first_frame(&mut capture)?;
        let encoder = screen_encoder(&first, SCREEN_KBPS)?;
        let stop = Arc::new(AtomicBool::new(false));
        let screen_loop = ScreenLoop {
            stop: stop.clone(),
            keyframe_wanted,
            _capture: CaptureHandle::open(&counters),
            counters,
            capture,
            encoder,
            sink,
            camera,
        };
        let thread = spawn_named("meetspace-screen-send", move || {
            if let Err(error) = screen_loop.run(first) {
                ended(error);
            }
        })
        .map_err(|error| DeviceError::Backend {
            op: "start sharing",
            message: error.to_string(),
        })?;
        Ok(Self {
            target: target.clone(),
            stop,
            thread: Some(thread),
        })
    }

    /// What is shared.
    pub fn target(&self) -> &ShareTarget {
        &self.target
    }
}

impl Drop for ScreenSender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The share's first frame, tried up to [`MAX_CAPTURE_FAILURES`] times.
fn first_frame(capture: &mut ScreenCapture) -> Result<VideoFrame, DeviceError> {
    let mut tries = 1;
    loop {
        match capture.next_frame() {
            Ok(frame) => return Ok(frame),
            Err(error) if tries >= MAX_CAPTURE_FAILURES => return Err(error),
            Err(error) => tracing::debug!(%error, tries, "a capture of the shared screen failed"),
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A VP8 encoder in screen-content mode for frames the size of `frame`.
fn screen_encoder(frame: &VideoFrame, bitrate_kbps: u32) -> Result<Vp8Encoder, DeviceError> {
    Vp8Encoder::new(Vp8Config {
        width: frame.width,
        height: frame.height,
        fps: SCREEN_FPS,
        bitrate_kbps,
        content: VideoContent::Screen,
    })
    .map_err(|error| DeviceError::Backend {
        op: "encode the shared screen",
        message: error.to_string(),
    })
}

struct ScreenLoop {
    stop: Arc<AtomicBool>,
    keyframe_wanted: Arc<AtomicBool>,
    /// Counts the capture as open while the loop runs.
    _capture: CaptureHandle,
    counters: Arc<SendCounters>,
    capture: ScreenCapture,
    encoder: Vp8Encoder,
    sink: Arc<dyn MediaSink>,
    camera: (BitrateBounds, Arc<VideoBitrateTargets>),
}

impl ScreenLoop {
    /// Sends `first`, then a frame every 1/[`SCREEN_FPS`] s until stopped (`Ok`) or the
    /// capture fails [`MAX_CAPTURE_FAILURES`] times in a row (the last error); after a
    /// single failure the last frame is sent again.
    fn run(mut self, first: VideoFrame) -> Result<(), DeviceError> {
        let period = Duration::from_secs(1) / SCREEN_FPS;
        let mut deadline = Instant::now();
        let mut frame = first;
        let mut failures = 0;
        // The first frame of a share is a keyframe by itself (a new encoder).
        while !self.stop.load(Ordering::Relaxed) {
            self.send(&frame, period)?;
            pace(&mut deadline, period);
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            match self.capture.next_frame() {
                Ok(next) => {
                    frame = next;
                    failures = 0;
                }
                Err(error) => {
                    failures += 1;
                    tracing::debug!(%error, failures, "a capture of the shared screen failed");
                    if failures >= MAX_CAPTURE_FAILURES {
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }

    /// Encodes `frame` (a new encoder when its size changed) and sends it.
    fn send(&mut self, frame: &VideoFrame, period: Duration) -> Result<(), DeviceError> {
        let target = self.bitrate_target();
        let config = self.encoder.config();
        if (frame.width, frame.height) != (config.width, config.height) {
            self.encoder = screen_encoder(frame, target)?;
        } else if f64::from(target.abs_diff(config.bitrate_kbps))
            > f64::from(config.bitrate_kbps) * RETUNE_STEP
            && let Err(error) = self.encoder.set_bitrate_kbps(target)
        {
            tracing::warn!(%error, "the share's bitrate could not be changed");
        }
        let keyframe = self.keyframe_wanted.swap(false, Ordering::Relaxed);
        let encoded = self
            .encoder
            .encode(frame, wall_clock_micros() as i64, keyframe)
            .map_err(|error| DeviceError::Backend {
                op: "encode the shared screen",
                message: error.to_string(),
            })?;
        for packet in encoded {
            self.sink.send_screen(&packet.data, period);
            self.counters.screen_frames.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// [`SCREEN_KBPS`] scaled by how far the camera's congestion control backed off.
    fn bitrate_target(&self) -> u32 {
        let (bounds, targets) = &self.camera;
        let Some(camera) = targets.lowest_kbps() else {
            return SCREEN_KBPS;
        };
        let share = f64::from(camera) / f64::from(bounds.max_kbps.max(1));
        ((f64::from(SCREEN_KBPS) * share.min(1.0)) as u32).max(SCREEN_MIN_KBPS)
    }
}
