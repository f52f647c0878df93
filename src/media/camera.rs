//! Cameras through nokhwa (V4L2 on Linux). A camera lives on its own thread (nokhwa's
//! handles are not `Send`), which negotiates a format, reads frames, converts them to
//! I420 with [`camera_frame_to_i420`] and hands them over; dropping the [`Camera`]
//! stops the thread, which closes the device.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};

use super::audio_io::pick_by_name;
use super::camera_format::{CameraPixels, camera_frame_to_i420};
use super::device::DeviceChoice;
use super::error::DeviceError;
use super::frame::VideoFrame;

/// The format asked of a camera first; the closest it offers is taken (1280x720 or
/// whatever it has when it lacks 640x480).
const PREFERRED: (u32, u32, u32) = (640, 480, 30);

/// The layouts meetspace converts, in order of preference.
const LAYOUTS: [FrameFormat; 3] = [FrameFormat::MJPEG, FrameFormat::YUYV, FrameFormat::NV12];

/// How long a camera may deliver nothing before it counts as lost.
const LOST_AFTER: Duration = Duration::from_secs(3);

/// The names of the cameras there are, in index order (none when the system has no
/// camera layer or no camera).
pub fn camera_names() -> Vec<String> {
    nokhwa::query(ApiBackend::Auto)
        .map(|cameras| cameras.iter().map(|camera| camera.human_name()).collect())
        .unwrap_or_default()
}

/// Finds the camera `choice` names: its index among [`camera_names`].
pub fn find_camera(choice: &DeviceChoice) -> Result<u32, DeviceError> {
    let names = camera_names();
    let found = match choice {
        DeviceChoice::Default => (!names.is_empty()).then_some(0),
        DeviceChoice::Named(wanted) => pick_by_name(&names, wanted),
    };
    found
        .map(|index| index as u32)
        .ok_or_else(|| DeviceError::NotFound {
            kind: "camera",
            wanted: choice.to_string(),
            available: names,
        })
}

/// An open camera delivering I420 frames.
pub struct Camera {
    frames: Receiver<Result<VideoFrame, DeviceError>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Camera {
    /// Opens the camera `choice` names and starts its stream.
    pub fn open(choice: &DeviceChoice) -> Result<Self, DeviceError> {
        let index = find_camera(choice)?;
        let (frames_tx, frames) = bounded(2);
        let (opened_tx, opened) = bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("meetspace-camera".to_owned())
            .spawn(move || {
                let mut camera = match open_stream(index) {
                    Ok(camera) => {
                        let _ = opened_tx.send(Ok(()));
                        camera
                    }
                    Err(error) => {
                        let _ = opened_tx.send(Err(error));
                        return;
                    }
                };
                while !stopping.load(Ordering::Relaxed) {
                    let frame =
                        camera
                            .frame()
                            .map_err(backend("read the camera"))
                            .and_then(|buffer| {
                                let resolution = buffer.resolution();
                                let pixels = match buffer.source_frame_format() {
                                    FrameFormat::MJPEG => CameraPixels::Mjpeg,
                                    FrameFormat::YUYV => CameraPixels::Yuyv,
                                    _ => CameraPixels::Nv12,
                                };
                                camera_frame_to_i420(
                                    pixels,
                                    resolution.width(),
                                    resolution.height(),
                                    buffer.buffer(),
                                )
                                .map_err(|error| DeviceError::Format(error.to_string()))
                            });
                    let failed = frame.is_err();
                    if frames_tx.send(frame).is_err() || failed {
                        break;
                    }
                }
                let _ = camera.stop_stream();
            })
            .map_err(|error| DeviceError::Backend {
                op: "start the camera thread",
                message: error.to_string(),
            })?;
        let camera = Self {
            frames,
            stop,
            thread: Some(thread),
        };
        match opened.recv() {
            Ok(Ok(())) => Ok(camera),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(DeviceError::Backend {
                op: "open the camera",
                message: "its thread ended".to_owned(),
            }),
        }
    }

    /// The next frame, as soon as the camera has one. Fails when the camera is lost
    /// (unplugged, or silent for 3 s).
    pub fn next_frame(&mut self) -> Result<VideoFrame, DeviceError> {
        match self.frames.recv_timeout(LOST_AFTER) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => Err(DeviceError::Backend {
                op: "read the camera",
                message: "it sent nothing for 3 s".to_owned(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(DeviceError::Backend {
                op: "read the camera",
                message: "it went away".to_owned(),
            }),
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a thread waiting to hand over a frame.
        while self.frames.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens camera `index` with the format closest to [`PREFERRED`] in one of
/// [`LAYOUTS`], and starts its stream.
fn open_stream(index: u32) -> Result<nokhwa::Camera, DeviceError> {
    let (width, height, fps) = PREFERRED;
    let wanted = RequestedFormat::with_formats(
        RequestedFormatType::Closest(CameraFormat::new_from(
            width,
            height,
            FrameFormat::MJPEG,
            fps,
        )),
        &LAYOUTS,
    );
    let mut camera = nokhwa::Camera::new(CameraIndex::Index(index), wanted)
        .map_err(backend("open the camera"))?;
    camera
        .open_stream()
        .map_err(backend("start the camera's stream"))?;
    tracing::info!(format = %camera.camera_format(), "camera open");
    Ok(camera)
}

fn backend(op: &'static str) -> impl Fn(nokhwa::NokhwaError) -> DeviceError {
    move |error| DeviceError::Backend {
        op,
        message: error.to_string(),
    }
}
