//! Raw media frames: I420 video and 20 ms mono audio.

use std::fmt;

use super::error::FrameError;

/// Audio sample rate used everywhere in the media pipeline (Opus' native rate).
pub const AUDIO_SAMPLE_RATE: u32 = 48_000;

/// Samples in one [`AudioFrame`]: 20 ms at [`AUDIO_SAMPLE_RATE`].
pub const AUDIO_FRAME_SAMPLES: usize = 960;

/// One video picture in I420 (planar YUV 4:2:0, BT.601 studio range) with tight strides:
/// `y` is `width * height` bytes, `u` and `v` are `width/2 * height/2` bytes each.
///
/// Fields are public for zero-copy hand-off; code that builds a frame by hand should go
/// through [`VideoFrame::new`], and consumers that index raw memory call
/// [`VideoFrame::validate`] first.
#[derive(Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Width in pixels (even, non-zero).
    pub width: u32,
    /// Height in pixels (even, non-zero).
    pub height: u32,
    /// Luma plane, stride `width`.
    pub y: Vec<u8>,
    /// Cb plane, stride `width / 2`.
    pub u: Vec<u8>,
    /// Cr plane, stride `width / 2`.
    pub v: Vec<u8>,
}

impl VideoFrame {
    /// Builds a frame from its three planes, checking the size and the plane lengths.
    pub fn new(
        width: u32,
        height: u32,
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
    ) -> Result<Self, FrameError> {
        let frame = Self {
            width,
            height,
            y,
            u,
            v,
        };
        frame.validate()?;
        Ok(frame)
    }

    /// Checks that the dimensions are even and non-zero and that each plane has exactly
    /// the length its tight stride implies.
    pub fn validate(&self) -> Result<(), FrameError> {
        let (luma, chroma) = plane_lengths(self.width, self.height)?;
        for (plane, data, expected) in [
            ("Y", &self.y, luma),
            ("U", &self.u, chroma),
            ("V", &self.v, chroma),
        ] {
            if data.len() != expected {
                return Err(FrameError::PlaneLength {
                    plane,
                    width: self.width,
                    height: self.height,
                    expected,
                    actual: data.len(),
                });
            }
        }
        Ok(())
    }

    /// Width of the chroma planes in pixels (`width / 2`).
    pub fn chroma_width(&self) -> u32 {
        self.width / 2
    }

    /// Height of the chroma planes in pixels (`height / 2`).
    pub fn chroma_height(&self) -> u32 {
        self.height / 2
    }

    /// The picture `divisor` times smaller each way (a simulcast layer): each pixel the
    /// mean of the block it stands for. The size stays even (and at least 2x2), so a
    /// block at the right or bottom edge may be left out.
    pub fn downscaled(&self, divisor: u32) -> Self {
        let divisor = divisor.max(1);
        let width = ((self.width / divisor) & !1).max(2);
        let height = ((self.height / divisor) & !1).max(2);
        let (source_width, source_height) = (self.width as usize, self.height as usize);
        Self {
            width,
            height,
            y: box_filter(&self.y, source_width, source_height, width, height, divisor),
            u: box_filter(
                &self.u,
                source_width / 2,
                source_height / 2,
                width / 2,
                height / 2,
                divisor,
            ),
            v: box_filter(
                &self.v,
                source_width / 2,
                source_height / 2,
                width / 2,
                height / 2,
                divisor,
            ),
        }
    }
}

/// A `width` x `height` plane whose pixels are the means of `divisor` x `divisor`
/// blocks of `plane` (`plane_width` pixels a row; blocks past its edge are clipped).
fn box_filter(
    plane: &[u8],
    plane_width: usize,
    plane_height: usize,
    width: u32,
    height: u32,
    divisor: u32,
) -> Vec<u8> {
    let (width, height, divisor) = (width as usize, height as usize, divisor as usize);
    let mut out = Vec::with_capacity(width * height);
    for row in 0..height {
        let rows = (row * divisor)..((row + 1) * divisor).min(plane_height);
        for column in 0..width {
            let columns = (column * divisor)..((column + 1) * divisor).min(plane_width);
            let (mut sum, mut count) = (0u32, 0u32);
            for source_row in rows.clone() {
                let line = &plane[source_row * plane_width..][columns.clone()];
                sum += line.iter().map(|&value| u32::from(value)).sum::<u32>();
                count += line.len() as u32;
            }
            out.push((sum / count.max(1)) as u8);
        }
    }
    out
}

impl fmt::Debug for VideoFrame {
    // The planes are hundreds of kilobytes: show their lengths, not their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("y_len", &self.y.len())
            .field("u_len", &self.u.len())
            .field("v_len", &self.v.len())
            .finish()
    }
}

/// Lengths of the luma and of each chroma plane for a `width` x `height` I420 frame.
pub(crate) fn plane_lengths(width: u32, height: u32) -> Result<(usize, usize), FrameError> {
    if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(FrameError::InvalidSize { width, height });
    }
    let (w, h) = (width as usize, height as usize);
    Ok((w * h, (w / 2) * (h / 2)))
}

/// 20 ms of mono audio at 48 kHz: exactly [`AUDIO_FRAME_SAMPLES`] signed 16-bit samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// The samples, oldest first.
    pub samples: Vec<i16>,
}

impl AudioFrame {
    /// Wraps samples, checking that there are exactly [`AUDIO_FRAME_SAMPLES`] of them.
    pub fn new(samples: Vec<i16>) -> Result<Self, FrameError> {
        let frame = Self { samples };
        frame.validate()?;
        Ok(frame)
    }

    /// Checks that the frame holds exactly [`AUDIO_FRAME_SAMPLES`] samples.
    pub fn validate(&self) -> Result<(), FrameError> {
        if self.samples.len() == AUDIO_FRAME_SAMPLES {
            Ok(())
        } else {
            Err(FrameError::AudioLength {
                expected: AUDIO_FRAME_SAMPLES,
                actual: self.samples.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_downscaled_picture_is_the_mean_of_its_blocks_and_stays_even() {
        let (width, height) = (8, 4);
        let y: Vec<u8> = (0..width * height)
            .map(|i| (i % width * 10) as u8)
            .collect();
        let frame = VideoFrame::new(8, 4, y, vec![100; 8], vec![200; 8]).unwrap();
        let half = frame.downscaled(2);
        assert_eq!((half.width, half.height), (4, 2));
        half.validate().unwrap();
        // Columns 0 and 1 hold 0 and 10: their mean is 5; the next pair 25, and so on.
        assert_eq!(half.y, vec![5, 25, 45, 65, 5, 25, 45, 65]);
        assert_eq!((half.u[0], half.v[0]), (100, 200));
        let quarter = frame.downscaled(4);
        assert_eq!((quarter.width, quarter.height), (2, 2));
        quarter.validate().unwrap();
        let layers = VideoFrame::new(640, 480, vec![0; 640 * 480], vec![0; 76800], vec![0; 76800])
            .unwrap()
            .downscaled(4);
        assert_eq!((layers.width, layers.height), (160, 120));
    }

    #[test]
    fn video_frame_validates_size_and_planes() {
        let ok = VideoFrame::new(4, 2, vec![0; 8], vec![0; 2], vec![0; 2]);
        assert!(ok.is_ok());
        assert_eq!(
            VideoFrame::new(3, 2, vec![0; 6], vec![0; 1], vec![0; 1]),
            Err(FrameError::InvalidSize {
                width: 3,
                height: 2
            })
        );
        assert_eq!(
            VideoFrame::new(0, 2, vec![], vec![], vec![]),
            Err(FrameError::InvalidSize {
                width: 0,
                height: 2
            })
        );
        assert!(matches!(
            VideoFrame::new(4, 2, vec![0; 8], vec![0; 3], vec![0; 2]),
            Err(FrameError::PlaneLength {
                plane: "U",
                expected: 2,
                actual: 3,
                ..
            })
        ));
    }

    #[test]
    fn audio_frame_needs_960_samples() {
        assert!(AudioFrame::new(vec![0; AUDIO_FRAME_SAMPLES]).is_ok());
        assert_eq!(
            AudioFrame::new(vec![0; 480]),
            Err(FrameError::AudioLength {
                expected: 960,
                actual: 480
            })
        );
    }
}
