//! Capturing a screen or a window for sharing, through `xcap` (X11 and Wayland through
//! its portal on Linux, macOS, Windows). Frames come out as I420 at most
//! [`MAX_SHARE_WIDTH`] x [`MAX_SHARE_HEIGHT`], ready for the screen encoder.

use image::RgbaImage;
use image::imageops;

use super::camera_format::rgba_to_i420;
use super::device::{ShareSource, ShareTarget, Thumbnail};
use super::error::DeviceError;
use super::frame::VideoFrame;

/// Widest frame a share is sent at; larger screens are scaled down.
pub const MAX_SHARE_WIDTH: u32 = 1920;
/// Tallest frame a share is sent at.
pub const MAX_SHARE_HEIGHT: u32 = 1080;

/// The screens, then the windows that are shown (not minimised, with a title or a
/// program name, by which they are asked for), each with a thumbnail of what it shows
/// now (none when it cannot be captured).
pub fn share_sources() -> Result<Vec<ShareSource>, DeviceError> {
    let mut sources = Vec::new();
    for (index, monitor) in xcap::Monitor::all()
        .map_err(backend("list the screens"))?
        .iter()
        .enumerate()
    {
        sources.push(ShareSource {
            target: ShareTarget::Screen(Some(index)),
            label: monitor.name().unwrap_or_else(|_| format!("screen {index}")),
            width: monitor.width().unwrap_or(0),
            height: monitor.height().unwrap_or(0),
            thumbnail: thumbnail(monitor.capture_image()),
        });
    }
    // Without a window manager that lists them (a bare X server) there are only screens.
    let windows = xcap::Window::all().unwrap_or_else(|error| {
        tracing::debug!(%error, "no windows to share");
        Vec::new()
    });
    for window in windows {
        if window.is_minimized().unwrap_or(true) {
            continue;
        }
        let title = window.title().unwrap_or_default();
        let program = window.app_name().unwrap_or_default();
        let (label, name) = match (title.is_empty(), program.is_empty()) {
            (true, true) => continue,
            (false, false) => (format!("{title} ({program})"), title),
            (false, true) => (title.clone(), title),
            (true, false) => (program.clone(), program),
        };
        sources.push(ShareSource {
            label,
            target: ShareTarget::Window(name),
            width: window.width().unwrap_or(0),
            height: window.height().unwrap_or(0),
            thumbnail: thumbnail(window.capture_image()),
        });
    }
    Ok(sources)
}

/// A capture scaled down to fit a [`Thumbnail`], keeping its aspect ratio; `None`
/// when the capture failed (a window that went away meanwhile).
fn thumbnail(captured: Result<RgbaImage, xcap::XCapError>) -> Option<Thumbnail> {
    let image = captured
        .inspect_err(|error| tracing::debug!(%error, "no thumbnail"))
        .ok()?;
    let (width, height) = image.dimensions();
    let scale = (f64::from(Thumbnail::MAX_WIDTH) / f64::from(width.max(1)))
        .min(f64::from(Thumbnail::MAX_HEIGHT) / f64::from(height.max(1)))
        .min(1.0);
    let fit = |side: u32| ((f64::from(side) * scale) as u32).max(1);
    let small = imageops::thumbnail(&image, fit(width), fit(height));
    Some(Thumbnail {
        width: small.width(),
        height: small.height(),
        rgba: small.into_raw(),
    })
}

/// An open screen or window capture.
pub enum ScreenCapture {
    /// A whole screen.
    Screen(xcap::Monitor),
    /// One window.
    Window(xcap::Window),
}

impl ScreenCapture {
    /// Finds what `target` names: the screen by index (the primary one when none is
    /// given), the window whose title is `TITLE` or, failing that, the only one whose
    /// title, or else whose program's name, contains it.
    pub fn open(target: &ShareTarget) -> Result<Self, DeviceError> {
        match target {
            ShareTarget::Screen(index) => {
                let monitors = xcap::Monitor::all().map_err(backend("list the screens"))?;
                let found = match index {
                    Some(index) => monitors.get(*index).cloned(),
                    None => monitors
                        .iter()
                        .find(|monitor| monitor.is_primary().unwrap_or(false))
                        .or(monitors.first())
                        .cloned(),
                };
                found
                    .map(Self::Screen)
                    .ok_or_else(|| DeviceError::NotFound {
                        kind: "screen",
                        wanted: target.to_string(),
                        available: monitors
                            .iter()
                            .map(|monitor| monitor.name().unwrap_or_default())
                            .collect(),
                    })
            }
            ShareTarget::Window(title) => {
                let windows = xcap::Window::all().map_err(backend("list the windows"))?;
                let titles: Vec<String> = windows
                    .iter()
                    .map(|window| window.title().unwrap_or_default())
                    .collect();
                let programs: Vec<String> = windows
                    .iter()
                    .map(|window| window.app_name().unwrap_or_default())
                    .collect();
                let only = |names: &[String]| match names
                    .iter()
                    .enumerate()
                    .filter(|(_, name)| name.contains(title.as_str()))
                    .collect::<Vec<_>>()[..]
                {
                    [(index, _)] => Some(index),
                    _ => None,
                };
                let index = titles
                    .iter()
                    .position(|shown| shown == title)
                    .or_else(|| only(&titles))
                    .or_else(|| only(&programs));
                match index {
                    Some(index) => Ok(Self::Window(windows[index].clone())),
                    None => Err(DeviceError::NotFound {
                        kind: "window",
                        wanted: target.to_string(),
                        available: titles
                            .into_iter()
                            .zip(programs)
                            .map(|(title, program)| format!("{title} ({program})"))
                            .collect(),
                    }),
                }
            }
        }
    }

    /// Captures what is shown now, scaled to fit [`MAX_SHARE_WIDTH`] x
    /// [`MAX_SHARE_HEIGHT`], cut to even sides (I420 needs them).
    pub fn next_frame(&mut self) -> Result<VideoFrame, DeviceError> {
        let image = match self {
            Self::Screen(monitor) => monitor.capture_image(),
            Self::Window(window) => window.capture_image(),
        }
        .map_err(backend("capture the shared screen"))?;
        share_frame(&image)
    }
}

/// `image` as the frame a share sends: scaled down to fit the largest share size and
/// cut to even sides.
pub fn share_frame(image: &RgbaImage) -> Result<VideoFrame, DeviceError> {
    let (width, height) = image.dimensions();
    let scale = (f64::from(MAX_SHARE_WIDTH) / f64::from(width.max(1)))
        .min(f64::from(MAX_SHARE_HEIGHT) / f64::from(height.max(1)));
    let scaled;
    let image = if scale < 1.0 {
        let fit = |side: u32| ((f64::from(side) * scale) as u32).max(2);
        scaled = imageops::thumbnail(image, fit(width), fit(height));
        &scaled
    } else {
        image
    };
    let (width, height) = (image.width() & !1, image.height() & !1);
    if width == 0 || height == 0 {
        return Err(DeviceError::Format(format!(
            "the shared screen is {}x{}, too small to send",
            image.width(),
            image.height()
        )));
    }
    let even;
    let image = if (width, height) == image.dimensions() {
        image
    } else {
        even = imageops::crop_imm(image, 0, 0, width, height).to_image();
        &even
    };
    rgba_to_i420(width, height, image.as_raw())
        .map_err(|error| DeviceError::Format(error.to_string()))
}

/// Turns an `xcap` error into what the user is told.
fn backend(op: &'static str) -> impl Fn(xcap::XCapError) -> DeviceError {
    move |error| DeviceError::Backend {
        op,
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_frame_fits_the_largest_size_with_even_sides() {
        let odd = RgbaImage::from_pixel(101, 51, image::Rgba([200, 30, 30, 255]));
        let frame = share_frame(&odd).expect("a frame");
        assert_eq!((frame.width, frame.height), (100, 50));
        let big = RgbaImage::from_pixel(3840, 2160, image::Rgba([30, 200, 30, 255]));
        let frame = share_frame(&big).expect("a frame");
        assert_eq!((frame.width, frame.height), (1920, 1080));
        let tiny = RgbaImage::from_pixel(1, 1, image::Rgba([0, 0, 0, 255]));
        assert!(share_frame(&tiny).is_err());
    }
}
