//! Which capture and playback devices to use, as the user named them. Plain data,
//! shared by every platform; the devices themselves are opened in `audio_io` and
//! `file_video`.

use std::fmt;
use std::path::PathBuf;

/// A device as the user picked it: the system's default, or one by name or index
/// (as listed in error messages and the overlay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    /// Whatever the system calls its default device.
    Default,
    /// A device by its exact name, a unique part of its name, or its index in the list.
    Named(String),
}

impl DeviceChoice {
    /// `default` (any case) is the default device; anything else names one.
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("default") {
            Self::Default
        } else {
            Self::Named(raw.to_owned())
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("the default device"),
            Self::Named(name) => write!(f, "{name:?}"),
        }
    }
}

/// Where the audio we send comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioInput {
    /// The synthetic tone (`SendSettings::tone_hz`): tests, bots, `--audio none`.
    Tone,
    /// A microphone.
    Microphone(DeviceChoice),
    /// A WAV file, played in a loop (`--mic file:PATH`).
    File(PathBuf),
}

impl fmt::Display for AudioInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tone => f.write_str("the test tone"),
            Self::Microphone(choice) => write!(f, "microphone {choice}"),
            Self::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// Where the video we send comes from (`--video`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VideoInput {
    /// The stamped synthetic test pattern.
    #[default]
    Synthetic,
    /// A y4m file, played in a loop.
    File(PathBuf),
    /// A camera.
    Camera(DeviceChoice),
}

impl fmt::Display for VideoInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Synthetic => f.write_str("the test pattern"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Camera(choice) => write!(f, "camera {choice}"),
        }
    }
}

impl VideoInput {
    /// `synthetic`, `file:PATH` or `camera[:NAME|INDEX]` (`camera` alone: the first).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("synthetic") {
            Ok(Self::Synthetic)
        } else if let Some(path) = raw.strip_prefix("file:") {
            if path.is_empty() {
                Err("file: needs a path, e.g. file:clip.y4m".to_owned())
            } else {
                Ok(Self::File(PathBuf::from(path)))
            }
        } else if raw.eq_ignore_ascii_case("camera") {
            Ok(Self::Camera(DeviceChoice::Default))
        } else if let Some(name) = raw.strip_prefix("camera:") {
            Ok(Self::Camera(DeviceChoice::parse(name)))
        } else {
            Err(format!(
                "expected synthetic, file:PATH or camera[:NAME|INDEX], got {raw:?}"
            ))
        }
    }
}

/// Something that can be shared right now, as the overlay's picker lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSource {
    /// How to ask for it.
    pub target: ShareTarget,
    /// What the user sees: the screen's name, or the window's title and program.
    pub label: String,
    /// Its size in pixels (0 x 0: not known before it is picked, as in the browser).
    pub width: u32,
    /// Its size in pixels.
    pub height: u32,
    /// A small picture of it when listed, for the picker.
    pub thumbnail: Option<Thumbnail>,
}

/// A small RGBA picture of a [`ShareSource`], at most [`Thumbnail::MAX_WIDTH`] x
/// [`Thumbnail::MAX_HEIGHT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
    /// Its pixels, RGBA, row by row.
    pub rgba: Vec<u8>,
}

impl Thumbnail {
    /// Widest a thumbnail gets.
    pub const MAX_WIDTH: u32 = 160;
    /// Tallest a thumbnail gets.
    pub const MAX_HEIGHT: u32 = 90;
}

impl fmt::Display for ShareSource {
    /// Its label, with its size when known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.width == 0 || self.height == 0 {
            return f.write_str(&self.label);
        }
        write!(f, "{} ({}x{})", self.label, self.width, self.height)
    }
}

/// What we show others of our desktop (`--share`, the overlay's picker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareTarget {
    /// A whole screen: the primary one, or one by its index in the list.
    Screen(Option<usize>),
    /// One window, by its exact title or a unique part of it.
    Window(String),
}

impl fmt::Display for ShareTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Screen(None) => f.write_str("the primary screen"),
            Self::Screen(Some(index)) => write!(f, "screen {index}"),
            Self::Window(title) => write!(f, "window {title:?}"),
        }
    }
}

impl ShareTarget {
    /// Longest window title we look for.
    pub const MAX_TITLE_LEN: usize = 256;

    /// `screen`, `screen:N` or `window:TITLE`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("screen") {
            return Ok(Self::Screen(None));
        }
        if let Some(index) = raw.strip_prefix("screen:") {
            return index
                .parse()
                .map(|index| Self::Screen(Some(index)))
                .map_err(|_| format!("screen:N needs a screen number, got {index:?}"));
        }
        if let Some(title) = raw.strip_prefix("window:") {
            if title.is_empty() || title.len() > Self::MAX_TITLE_LEN {
                return Err(format!(
                    "window:TITLE needs a title of 1 to {} bytes",
                    Self::MAX_TITLE_LEN
                ));
            }
            return Ok(Self::Window(title.to_owned()));
        }
        Err(format!(
            "expected screen, screen:N or window:TITLE, got {raw:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_targets_parse() {
        assert_eq!(ShareTarget::parse("screen"), Ok(ShareTarget::Screen(None)));
        assert_eq!(
            ShareTarget::parse("screen:1"),
            Ok(ShareTarget::Screen(Some(1)))
        );
        assert_eq!(
            ShareTarget::parse("window:Slides - deck"),
            Ok(ShareTarget::Window("Slides - deck".to_owned()))
        );
        assert!(ShareTarget::parse("screen:x").is_err());
        assert!(ShareTarget::parse("window:").is_err());
        assert!(ShareTarget::parse(&format!("window:{}", "a".repeat(300))).is_err());
        assert!(ShareTarget::parse("desktop").is_err());
    }

    #[test]
    fn video_inputs_parse() {
        assert_eq!(VideoInput::parse("synthetic"), Ok(VideoInput::Synthetic));
        assert_eq!(
            VideoInput::parse("file:/tmp/a.y4m"),
            Ok(VideoInput::File(PathBuf::from("/tmp/a.y4m")))
        );
        assert_eq!(
            VideoInput::parse("camera"),
            Ok(VideoInput::Camera(DeviceChoice::Default))
        );
        assert_eq!(
            VideoInput::parse("camera:0"),
            Ok(VideoInput::Camera(DeviceChoice::Named("0".to_owned())))
        );
        assert!(VideoInput::parse("file:").is_err());
        assert!(VideoInput::parse("webcam").is_err());
    }
}
