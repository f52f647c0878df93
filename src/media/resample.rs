//! From a capture device's rate to the encoder's: mono samples at whatever rate the
//! microphone runs at, resampled to 48 kHz (rubato's FFT resampler) and cut into the
//! 20 ms [`AudioFrame`]s Opus takes.

use std::collections::VecDeque;

use rubato::{FftFixedIn, Resampler};

use super::error::CodecError;
use super::frame::{AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, AudioFrame};

/// Input block of the resampler: 10 ms at the device's rate.
const BLOCKS_PER_SECOND: u32 = 100;
/// Sub-chunks rubato splits a block into (more: less delay, more work).
const SUB_CHUNKS: usize = 2;

/// Turns mono samples at a device's rate into 20 ms frames at 48 kHz.
pub struct ToOpusFrames {
    /// `None` when the device already runs at 48 kHz.
    resampler: Option<FftFixedIn<f32>>,
    /// Input waiting for a full resampler block.
    pending: Vec<f32>,
    /// 48 kHz samples waiting for a full frame.
    ready: VecDeque<f32>,
    /// The resampler's output buffer, reused.
    output: Vec<Vec<f32>>,
}

impl ToOpusFrames {
    /// A converter for input at `input_rate` Hz.
    pub fn new(input_rate: u32) -> Result<Self, CodecError> {
        let resampler = if input_rate == AUDIO_SAMPLE_RATE {
            None
        } else {
            let block = (input_rate / BLOCKS_PER_SECOND).max(1) as usize;
            let resampler = FftFixedIn::new(
                input_rate as usize,
                AUDIO_SAMPLE_RATE as usize,
                block,
                SUB_CHUNKS,
                1,
            )
            .map_err(|error| CodecError::InvalidConfig {
                reason: format!("cannot resample {input_rate} Hz to 48 kHz: {error}"),
            })?;
            Some(resampler)
        };
        let output = resampler
            .as_ref()
            .map_or_else(Vec::new, |resampler| resampler.output_buffer_allocate(true));
        Ok(Self {
            resampler,
            pending: Vec::new(),
            ready: VecDeque::with_capacity(2 * AUDIO_FRAME_SAMPLES),
            output,
        })
    }

    /// Adds captured samples (mono, -1 to 1, at the input rate).
    pub fn push(&mut self, samples: &[f32]) {
        let Some(resampler) = &mut self.resampler else {
            self.ready.extend(samples);
            return;
        };
        self.pending.extend_from_slice(samples);
        let mut consumed = 0;
        loop {
            let needed = resampler.input_frames_next();
            if self.pending.len() - consumed < needed {
                break;
            }
            let block = [&self.pending[consumed..consumed + needed]];
            match resampler.process_into_buffer(&block, &mut self.output, None) {
                Ok((_, produced)) => self.ready.extend(&self.output[0][..produced]),
                Err(error) => tracing::warn!(%error, "dropping captured audio"),
            }
            consumed += needed;
        }
        self.pending.drain(..consumed);
    }

    /// The next whole 20 ms frame, if one is ready.
    pub fn next_frame(&mut self) -> Option<AudioFrame> {
        if self.ready.len() < AUDIO_FRAME_SAMPLES {
            return None;
        }
        let samples = self
            .ready
            .drain(..AUDIO_FRAME_SAMPLES)
            .map(|sample| (sample.clamp(-1.0, 1.0) * 32_767.0).round() as i16)
            .collect();
        Some(AudioFrame { samples })
    }
}

#[cfg(test)]
mod tests {
    use std::f32::consts::TAU;

    use super::*;
    use crate::media::analysis::{dominant_frequency, rms_level};

    /// `seconds` of a sine at `frequency` and amplitude 0.5, sampled at `rate`.
    fn sine(frequency: f32, rate: u32, seconds: f32) -> Vec<f32> {
        let count = (rate as f32 * seconds) as usize;
        (0..count)
            .map(|i| 0.5 * (TAU * frequency * i as f32 / rate as f32).sin())
            .collect()
    }

    fn convert(input_rate: u32, input: &[f32], chunk: usize) -> Vec<i16> {
        let mut frames = ToOpusFrames::new(input_rate).unwrap();
        let mut out = Vec::new();
        // Devices deliver odd-sized chunks.
        for piece in input.chunks(chunk) {
            frames.push(piece);
            while let Some(frame) = frames.next_frame() {
                assert_eq!(frame.samples.len(), AUDIO_FRAME_SAMPLES);
                out.extend(frame.samples);
            }
        }
        out
    }

    #[test]
    fn common_device_rates_become_48_khz_with_pitch_and_level_kept() {
        for rate in [44_100, 16_000, 96_000, 48_000] {
            let out = convert(rate, &sine(1_000.0, rate, 1.0), 441);
            // One second in, one second out, less the resampler's delay and the
            // partial last frame.
            assert!(
                (45_000..=48_000).contains(&out.len()),
                "{rate} Hz: {} samples",
                out.len()
            );
            let steady = &out[4_800..];
            let found = dominant_frequency(steady, AUDIO_SAMPLE_RATE).unwrap();
            assert!((found - 1_000.0).abs() < 2.0, "{rate} Hz: heard {found} Hz");
            // Energy kept: a sine of amplitude 0.5 has an RMS of 0.354.
            let level = rms_level(steady);
            assert!(
                (level - 0.5 / 2f32.sqrt()).abs() < 0.01,
                "{rate} Hz: {level}"
            );
        }
    }

    #[test]
    fn loud_input_saturates_instead_of_wrapping() {
        let mut frames = ToOpusFrames::new(AUDIO_SAMPLE_RATE).unwrap();
        frames.push(&[2.0; AUDIO_FRAME_SAMPLES]);
        let frame = frames.next_frame().unwrap();
        assert!(frame.samples.iter().all(|&s| s == 32_767));
        assert!(frames.next_frame().is_none());
    }
}
