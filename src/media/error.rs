//! Error types of the media module.

/// A frame (video or audio) whose shape does not match what the media types require.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Width or height is zero or odd (I420 needs even dimensions).
    #[error(
        "video frame size {width}x{height} is invalid: width and height must be even and non-zero"
    )]
    InvalidSize {
        /// Requested width in pixels.
        width: u32,
        /// Requested height in pixels.
        height: u32,
    },
    /// A plane does not hold exactly the bytes its tight stride implies.
    #[error("{plane} plane of a {width}x{height} frame has {actual} bytes, expected {expected}")]
    PlaneLength {
        /// Which plane: "Y", "U" or "V".
        plane: &'static str,
        /// Frame width in pixels.
        width: u32,
        /// Frame height in pixels.
        height: u32,
        /// Bytes the plane must hold.
        expected: usize,
        /// Bytes the plane holds.
        actual: usize,
    },
    /// An audio frame does not hold exactly one 20 ms frame of samples.
    #[error("audio frame has {actual} samples, expected {expected}")]
    AudioLength {
        /// Samples an audio frame must hold.
        expected: usize,
        /// Samples given.
        actual: usize,
    },
    /// The frame is too small to carry the synthetic source's stamp.
    #[error(
        "{width}x{height} is too small for the synthetic video stamp: its band of 16 px block rows must fit in the top half"
    )]
    TooSmallForStamp {
        /// Requested width in pixels.
        width: u32,
        /// Requested height in pixels.
        height: u32,
    },
    /// The colour conversion (or the JPEG decoder) refused the frame.
    #[error("cannot convert a video frame: {0}")]
    Conversion(String),
}

/// A failure of a codec (libvpx VP8 or libopus) or of its configuration.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The frame handed to a codec is malformed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The codec configuration is unusable.
    #[error("invalid codec configuration: {reason}")]
    InvalidConfig {
        /// What is wrong with it.
        reason: String,
    },
    /// The encoder was configured for one frame size and handed another.
    #[error(
        "encoder is configured for {expected_width}x{expected_height} but got a {width}x{height} frame"
    )]
    FrameSizeMismatch {
        /// Configured width.
        expected_width: u32,
        /// Configured height.
        expected_height: u32,
        /// Width of the frame handed in.
        width: u32,
        /// Height of the frame handed in.
        height: u32,
    },
    /// A libvpx call returned an error.
    #[error("libvpx {op} failed (code {code}): {message}")]
    Vpx {
        /// The libvpx function that failed.
        op: &'static str,
        /// The `vpx_codec_err_t` value.
        code: u32,
        /// libvpx's description of the error, with its detail when it gave one.
        message: String,
    },
    /// The VP8 decoder produced an image in a pixel format other than I420.
    #[error("VP8 decoder produced unsupported image format {format}")]
    UnsupportedImageFormat {
        /// The `vpx_img_fmt_t` value.
        format: u32,
    },
    /// The decoder was handed an empty packet.
    #[error("empty {codec} packet")]
    EmptyPacket {
        /// Which codec: "VP8" or "Opus".
        codec: &'static str,
    },
    /// A libopus call returned an error.
    #[cfg(not(target_arch = "wasm32"))]
    #[error("libopus {op} failed: {source}")]
    Opus {
        /// What was being done.
        op: &'static str,
        /// The error libopus reported (code and description).
        #[source]
        source: ::opus::Error,
    },
    /// An Opus packet decoded to a duration other than one 20 ms frame.
    #[error("Opus packet decoded to {samples} samples, expected {expected} (20 ms)")]
    OpusFrameDuration {
        /// Samples per channel the packet held.
        samples: usize,
        /// Samples per channel of one `AudioFrame`.
        expected: usize,
    },
    /// A codec worker thread could not be started.
    #[error("cannot start a media thread: {0}")]
    Thread(String),
}

/// A capture or playback device that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// No device matches what was asked for (or there is none at all).
    #[error("no {kind} {wanted}; available: {}", numbered(available))]
    NotFound {
        /// "microphone", "speaker" or "camera".
        kind: &'static str,
        /// What was asked for, as the user wrote it.
        wanted: String,
        /// The devices there are, in index order.
        available: Vec<String>,
    },
    /// The device offers no format meetspace can use.
    #[error("{0}")]
    Format(String),
    /// The system's audio or video layer refused.
    #[error("cannot {op}: {message}")]
    Backend {
        /// What was being done.
        op: &'static str,
        /// The layer's words.
        message: String,
    },
}

/// `0 "a", 1 "b"`, or `none`.
fn numbered(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .enumerate()
        .map(|(index, name)| format!("{index} {name:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
