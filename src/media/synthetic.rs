//! Synthetic media sources for tests and for `--video synthetic`: a moving test pattern
//! whose frames carry a machine-readable stamp (sequence number and capture time), and a
//! sine tone.
//!
//! # Stamp layout
//!
//! The stamp is 120 bits (15 bytes): a magic byte `0x5A`, the sequence number (`u32`,
//! big-endian), the capture time in microseconds since the UNIX epoch (`u64`, big-endian)
//! and a CRC-16/CCITT-FALSE over the first 13 bytes. Each bit is a 16x16 px luma block
//! (235 = 1, 16 = 0, chroma neutral 128) aligned on VP8's 16x16 macroblock grid, laid
//! out most significant bit first, left to right then top to bottom, `width / 16`
//! blocks per row from the top-left corner. The band takes `ceil(120 / (width / 16))`
//! block rows: 3 (48 px) at 640 wide, 6 (96 px) at 320 wide. It must fit in the top half
//! of the frame.

use std::f64::consts::TAU;
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::FrameError;
use super::frame::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, AudioFrame, VideoFrame, plane_lengths};

/// Side of one stamp block in pixels (one VP8 macroblock).
const BLOCK: u32 = 16;
/// Bytes in a stamp: magic, seq (4), capture time (8), CRC-16 (2).
const STAMP_BYTES: usize = 15;
/// Bits in a stamp.
const STAMP_BITS: u32 = STAMP_BYTES as u32 * 8;
/// First byte of every stamp, so that an unstamped picture is rejected before the CRC.
const STAMP_MAGIC: u8 = 0x5A;
/// Luma of a 1 bit.
const LUMA_ONE: u8 = 235;
/// Luma of a 0 bit.
const LUMA_ZERO: u8 = 16;
/// Neutral chroma.
const CHROMA_NEUTRAL: u8 = 128;
/// Mean luma above which a block reads as 1 (midway between the two levels).
const LUMA_THRESHOLD: u32 = (LUMA_ONE as u32 + LUMA_ZERO as u32).div_ceil(2);
/// Margin inside each block left out when reading it (coding ringing sits at the edges).
const READ_MARGIN: u32 = 4;

/// 75% colour bars in BT.601 studio-range YUV: white, yellow, cyan, green, magenta, red,
/// blue, black.
pub(crate) const BARS: [[u8; 3]; 8] = [
    [180, 128, 128],
    [162, 44, 142],
    [131, 156, 44],
    [112, 72, 58],
    [84, 184, 198],
    [65, 100, 212],
    [35, 212, 114],
    [16, 128, 128],
];
/// Colour of the moving box (an orange that differs from every bar).
const BOX_YUV: [u8; 3] = [150, 54, 190];
/// Horizontal speed of the moving box in pixels per frame.
const BOX_SPEED_X: u64 = 4;
/// Vertical speed of the moving box in pixels per frame.
const BOX_SPEED_Y: u64 = 2;
/// Largest side of the moving box in pixels.
const BOX_MAX_SIDE: u32 = 64;

/// Microseconds since the UNIX epoch: the capture time stamped into synthetic frames.
pub fn wall_clock_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// What a synthetic frame's stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Sequence number: 0 for the source's first frame, then one more per frame.
    pub seq: u32,
    /// Capture time in microseconds since the UNIX epoch, as given to
    /// [`SyntheticVideo::next_frame`].
    pub capture_micros: u64,
}

/// Where the stamp blocks sit in a frame of a given width.
#[derive(Debug, Clone, Copy)]
struct StampLayout {
    /// Blocks per row.
    columns: u32,
    /// Height of the stamp band in pixels.
    band_height: u32,
}

impl StampLayout {
    /// The layout for a `width` x `height` frame, or `None` when the stamp does not fit.
    fn for_size(width: u32, height: u32) -> Option<Self> {
        let columns = (width / BLOCK).min(STAMP_BITS);
        if columns == 0 {
            return None;
        }
        let band_height = STAMP_BITS.div_ceil(columns) * BLOCK;
        (band_height <= height / 2).then_some(Self {
            columns,
            band_height,
        })
    }

    /// Top-left pixel of the block carrying bit `bit`.
    fn block_origin(self, bit: u32) -> (u32, u32) {
        ((bit % self.columns) * BLOCK, (bit / self.columns) * BLOCK)
    }
}

/// A moving test pattern (colour bars, a bouncing box, a luma ramp) under a stamp band
/// carrying each frame's sequence number and capture time.
#[derive(Debug, Clone)]
pub struct SyntheticVideo {
    width: u32,
    height: u32,
    layout: StampLayout,
    seq: u32,
}

impl SyntheticVideo {
    /// A source of `width` x `height` frames. Both must be even, and the stamp band (see
    /// the module docs) must fit in the top half: 320x240 and 640x480 work, 160x120
    /// does not.
    pub fn new(width: u32, height: u32) -> Result<Self, FrameError> {
        plane_lengths(width, height)?;
        let layout = StampLayout::for_size(width, height)
            .ok_or(FrameError::TooSmallForStamp { width, height })?;
        Ok(Self {
            width,
            height,
            layout,
            seq: 0,
        })
    }

    /// Renders the next frame, stamped with the next sequence number and with
    /// `capture_time_micros` (microseconds since the UNIX epoch).
    pub fn next_frame(&mut self, capture_time_micros: u64) -> VideoFrame {
        let stamp = Stamp {
            seq: self.seq,
            capture_micros: capture_time_micros,
        };
        self.seq = self.seq.wrapping_add(1);
        self.render(stamp)
    }

    /// Renders the frame that carries `stamp`: the same pixels [`Self::next_frame`]
    /// produced for it, so a receiver can compare what it decoded with what was sent.
    pub fn render(&self, stamp: Stamp) -> VideoFrame {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w / 2, h / 2);
        let mut y = vec![0u8; w * h];
        let mut u = vec![0u8; cw * ch];
        let mut v = vec![0u8; cw * ch];

        let band = self.layout.band_height;
        let ramp_top = band + (((self.height - band) * 3 / 4) & !1);
        let bars_height = ramp_top - band;

        // Colour bars under the band: one row of each plane worked out, then copied.
        let bar_luma: Vec<u8> = (0..w).map(|x| BARS[x * BARS.len() / w][0]).collect();
        let bar_u: Vec<u8> = (0..cw).map(|x| BARS[x * BARS.len() / cw][1]).collect();
        let bar_v: Vec<u8> = (0..cw).map(|x| BARS[x * BARS.len() / cw][2]).collect();
        for row in band as usize..ramp_top as usize {
            y[row * w..][..w].copy_from_slice(&bar_luma);
        }
        for row in band as usize / 2..ramp_top as usize / 2 {
            u[row * cw..][..cw].copy_from_slice(&bar_u);
            v[row * cw..][..cw].copy_from_slice(&bar_v);
        }

        // A horizontal luma ramp at the bottom, with neutral chroma.
        // 16 + x * 219 / w stays within 16..=235.
        let ramp: Vec<u8> = (0..w).map(|x| (16 + x * 219 / w) as u8).collect();
        for row in ramp_top as usize..h {
            y[row * w..][..w].copy_from_slice(&ramp);
        }
        u[ramp_top as usize / 2 * cw..].fill(CHROMA_NEUTRAL);
        v[ramp_top as usize / 2 * cw..].fill(CHROMA_NEUTRAL);

        // The bouncing box, inside the bars region, at even coordinates.
        let side = (bars_height / 2).min(BOX_MAX_SIDE) & !1;
        if side > 0 {
            let step = u64::from(stamp.seq);
            let box_x = bounce(step * BOX_SPEED_X, self.width - side) & !1;
            let box_y = band + (bounce(step * BOX_SPEED_Y, bars_height - side) & !1);
            for row in box_y..box_y + side {
                y[row as usize * w + box_x as usize..][..side as usize].fill(BOX_YUV[0]);
            }
            for row in box_y / 2..(box_y + side) / 2 {
                let start = row as usize * cw + box_x as usize / 2;
                u[start..][..side as usize / 2].fill(BOX_YUV[1]);
                v[start..][..side as usize / 2].fill(BOX_YUV[2]);
            }
        }

        // The stamp band: black background, one block per bit, neutral chroma.
        y[..band as usize * w].fill(LUMA_ZERO);
        u[..band as usize / 2 * cw].fill(CHROMA_NEUTRAL);
        v[..band as usize / 2 * cw].fill(CHROMA_NEUTRAL);
        let bytes = encode_stamp(stamp);
        for bit in 0..STAMP_BITS {
            if bytes[bit as usize / 8] & (0x80 >> (bit % 8)) == 0 {
                continue;
            }
            let (x0, y0) = self.layout.block_origin(bit);
            for row in y0..y0 + BLOCK {
                y[row as usize * w + x0 as usize..][..BLOCK as usize].fill(LUMA_ONE);
            }
        }

        VideoFrame {
            width: self.width,
            height: self.height,
            y,
            u,
            v,
        }
    }
}

/// Reads the stamp of a frame made by [`SyntheticVideo`], possibly after lossy coding.
/// Returns `None` when the frame is malformed, too small, or carries no valid stamp
/// (wrong magic byte or CRC mismatch).
pub fn read_stamp(frame: &VideoFrame) -> Option<Stamp> {
    frame.validate().ok()?;
    let layout = StampLayout::for_size(frame.width, frame.height)?;
    let w = frame.width as usize;
    let mut bytes = [0u8; STAMP_BYTES];
    for bit in 0..STAMP_BITS {
        let (x0, y0) = layout.block_origin(bit);
        let inner = BLOCK - 2 * READ_MARGIN;
        let mut sum = 0u32;
        for row in y0 + READ_MARGIN..y0 + BLOCK - READ_MARGIN {
            let start = row as usize * w + (x0 + READ_MARGIN) as usize;
            sum += frame.y[start..][..inner as usize]
                .iter()
                .map(|&p| u32::from(p))
                .sum::<u32>();
        }
        if sum >= LUMA_THRESHOLD * inner * inner {
            bytes[bit as usize / 8] |= 0x80 >> (bit % 8);
        }
    }
    decode_stamp(&bytes)
}

/// Mean absolute difference of the luma planes of two frames (0 = identical, 255 =
/// opposite). Frames of different sizes, or malformed ones, give `f64::INFINITY`.
pub fn luma_difference(a: &VideoFrame, b: &VideoFrame) -> f64 {
    if a.width != b.width || a.height != b.height || a.y.len() != b.y.len() || a.y.is_empty() {
        return f64::INFINITY;
    }
    let total: u64 =
        a.y.iter()
            .zip(&b.y)
            .map(|(&p, &q)| u64::from(p.abs_diff(q)))
            .sum();
    total as f64 / a.y.len() as f64
}

/// A continuous-phase sine tone at about 0.3 of full scale, in 20 ms frames.
#[derive(Debug, Clone)]
pub struct SyntheticAudio {
    /// Current phase in radians, in `0..TAU`.
    phase: f64,
    /// Phase advance per sample in radians.
    step: f64,
}

impl SyntheticAudio {
    /// Amplitude of the tone, as a fraction of full scale.
    const AMPLITUDE: f64 = 0.3;

    /// A tone of `frequency_hz` (frequencies at or above 24 kHz alias).
    pub fn new(frequency_hz: f32) -> Self {
        Self {
            phase: 0.0,
            step: TAU * f64::from(frequency_hz) / f64::from(AUDIO_SAMPLE_RATE),
        }
    }

    /// The next 20 ms of the tone, continuing the phase of the previous frame.
    pub fn next_frame(&mut self) -> AudioFrame {
        let amplitude = Self::AMPLITUDE * f64::from(i16::MAX);
        let samples = (0..AUDIO_FRAME_SAMPLES)
            .map(|_| {
                let sample = (self.phase.sin() * amplitude).round() as i16;
                self.phase = (self.phase + self.step).rem_euclid(TAU);
                sample
            })
            .collect();
        AudioFrame { samples }
    }
}

/// A speech-like synthetic voice for measuring the voice processing without a
/// recording: a 150 Hz buzz with falling harmonics, its loudness rising and falling four
/// times a second like syllables, over a faint hiss. Deterministic.
#[derive(Debug, Clone)]
pub struct SyntheticVoice {
    /// Samples produced so far.
    position: u64,
    /// The hiss's xorshift state.
    noise: u32,
}

impl Default for SyntheticVoice {
    fn default() -> Self {
        Self {
            position: 0,
            noise: 0x1234_5678,
        }
    }
}

impl SyntheticVoice {
    /// The next 20 ms as floats (-1 to 1).
    pub fn next_samples(&mut self) -> Vec<f32> {
        (0..AUDIO_FRAME_SAMPLES)
            .map(|_| {
                let t = self.position as f64 / f64::from(AUDIO_SAMPLE_RATE);
                self.position += 1;
                let syllable = (TAU * 4.0 * t).sin().max(0.0);
                let buzz: f64 = (1..8)
                    .map(|h| (TAU * 150.0 * f64::from(h) * t).sin() / f64::from(h))
                    .sum();
                self.noise ^= self.noise << 13;
                self.noise ^= self.noise >> 17;
                self.noise ^= self.noise << 5;
                let hiss = (f64::from(self.noise) / f64::from(u32::MAX) - 0.5) * 0.02;
                (0.15 * syllable * buzz + hiss) as f32
            })
            .collect()
    }
}

/// Position along a back-and-forth path of length `range`, after travelling `distance`.
fn bounce(distance: u64, range: u32) -> u32 {
    if range == 0 {
        return 0;
    }
    let range = u64::from(range);
    let along = distance % (2 * range);
    // Both branches are at most `range`, which came from a u32.
    (if along <= range {
        along
    } else {
        2 * range - along
    }) as u32
}

/// The 15 stamp bytes for `stamp`.
fn encode_stamp(stamp: Stamp) -> [u8; STAMP_BYTES] {
    let mut bytes = [0u8; STAMP_BYTES];
    bytes[0] = STAMP_MAGIC;
    bytes[1..5].copy_from_slice(&stamp.seq.to_be_bytes());
    bytes[5..13].copy_from_slice(&stamp.capture_micros.to_be_bytes());
    let crc = crc16_ccitt(&bytes[..13]);
    bytes[13..].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// The stamp in `bytes`, if the magic byte and the CRC match.
fn decode_stamp(bytes: &[u8; STAMP_BYTES]) -> Option<Stamp> {
    let crc = u16::from_be_bytes([bytes[13], bytes[14]]);
    if bytes[0] != STAMP_MAGIC || crc16_ccitt(&bytes[..13]) != crc {
        return None;
    }
    let mut seq = [0u8; 4];
    seq.copy_from_slice(&bytes[1..5]);
    let mut capture = [0u8; 8];
    capture.copy_from_slice(&bytes[5..13]);
    Some(Stamp {
        seq: u32::from_be_bytes(seq),
        capture_micros: u64::from_be_bytes(capture),
    })
}

/// CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection).
fn crc16_ccitt(data: &[u8]) -> u16 {
    data.iter().fold(0xFFFF, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |crc, _| {
            if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_reference_check_value() {
        // The catalogue check value of CRC-16/CCITT-FALSE.
        assert_eq!(crc16_ccitt(b"123456789"), 0x29B1);
    }

    #[test]
    fn stamp_round_trips_on_raw_frames() {
        for (width, height) in [(640, 480), (320, 240), (1280, 720)] {
            let mut source = SyntheticVideo::new(width, height).expect("valid size");
            for i in 0..5u64 {
                let capture = 1_750_000_000_000_000 + i * 33_333;
                let frame = source.next_frame(capture);
                frame.validate().expect("well-formed frame");
                assert_eq!(
                    read_stamp(&frame),
                    Some(Stamp {
                        seq: i as u32,
                        capture_micros: capture
                    }),
                    "{width}x{height} frame {i}"
                );
            }
        }
    }

    #[test]
    fn stamp_extremes_round_trip() {
        let mut source = SyntheticVideo::new(320, 240).expect("valid size");
        source.seq = u32::MAX;
        let frame = source.next_frame(u64::MAX);
        assert_eq!(
            read_stamp(&frame),
            Some(Stamp {
                seq: u32::MAX,
                capture_micros: u64::MAX
            })
        );
        assert_eq!(read_stamp(&source.next_frame(0)).map(|s| s.seq), Some(0));
    }

    #[test]
    fn corrupted_or_missing_stamp_reads_none() {
        let mut source = SyntheticVideo::new(640, 480).expect("valid size");
        let mut frame = source.next_frame(42);
        // Flip one data block (bit 20, inside the sequence number).
        let (x0, y0) = StampLayout::for_size(640, 480)
            .expect("fits")
            .block_origin(20);
        for row in y0..y0 + BLOCK {
            let start = row as usize * 640 + x0 as usize;
            for px in &mut frame.y[start..start + BLOCK as usize] {
                *px = if *px > 128 { LUMA_ZERO } else { LUMA_ONE };
            }
        }
        assert_eq!(read_stamp(&frame), None);

        let grey = VideoFrame::new(
            640,
            480,
            vec![128; 640 * 480],
            vec![128; 320 * 240],
            vec![128; 320 * 240],
        )
        .expect("valid frame");
        assert_eq!(read_stamp(&grey), None);
    }

    #[test]
    fn too_small_sizes_are_rejected() {
        assert_eq!(
            SyntheticVideo::new(160, 120).map(|_| ()),
            Err(FrameError::TooSmallForStamp {
                width: 160,
                height: 120
            })
        );
        assert!(matches!(
            SyntheticVideo::new(641, 480),
            Err(FrameError::InvalidSize { .. })
        ));
    }

    #[test]
    fn pattern_moves_between_frames() {
        let mut source = SyntheticVideo::new(640, 480).expect("valid size");
        let first = source.next_frame(0);
        let second = source.next_frame(33_333);
        let band = 48 * 640;
        assert_ne!(first.y[band..], second.y[band..], "the box must move");
        assert_eq!(luma_difference(&first, &first), 0.0);
        assert!(luma_difference(&first, &second) > 0.0);
    }

    #[test]
    fn luma_difference_of_mismatched_sizes_is_infinite() {
        let a = SyntheticVideo::new(640, 480)
            .expect("valid size")
            .next_frame(0);
        let b = SyntheticVideo::new(320, 240)
            .expect("valid size")
            .next_frame(0);
        assert_eq!(luma_difference(&a, &b), f64::INFINITY);
    }

    #[test]
    fn tone_is_continuous_and_at_the_right_level() {
        let mut tone = SyntheticAudio::new(440.0);
        let a = tone.next_frame();
        let b = tone.next_frame();
        assert_eq!(a.samples.len(), AUDIO_FRAME_SAMPLES);
        let peak = a
            .samples
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!((9_500..=9_900).contains(&peak), "peak {peak}");
        // Continuous phase: the jump across the frame boundary is no bigger than a step.
        let max_step = TAU * 440.0 / 48_000.0 * 0.3 * 32_767.0 + 2.0;
        let last = f64::from(a.samples[AUDIO_FRAME_SAMPLES - 1]);
        assert!((f64::from(b.samples[0]) - last).abs() <= max_step);
    }
}
