//! Which capture and playback devices to use, as the user named them. Plain data,
//! shared by every platform; the devices themselves are opened in `audio_io`.

use std::fmt;

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
}
