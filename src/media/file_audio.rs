//! `--mic file:PATH.wav`: a looping WAV file as the audio we send, the audio twin of
//! `--video file:` (bots that talk with a recorded voice, tests of the voice processing).
//! Read whole with `hound` (PCM of 8 to 32 bits or 32-bit float, any rate and channel
//! count), down-mixed to mono and resampled to 48 kHz once, on opening.

use std::path::Path;

use super::error::DeviceError;
use super::frame::{AUDIO_FRAME_SAMPLES, AudioFrame};
use super::resample::ToOpusFrames;

/// Longest file accepted, in seconds (a hostile or mistaken file does not fill memory).
const MAX_SECONDS: u32 = 600;

/// A WAV file's sound, played from the start again each time it ends.
#[derive(Debug)]
pub struct WavFile {
    /// The whole file at 48 kHz mono, at least one frame long.
    samples: Vec<i16>,
    /// Where the next frame starts.
    position: usize,
}

impl WavFile {
    /// Reads `path` whole.
    pub fn open(path: &Path) -> Result<Self, DeviceError> {
        let unreadable = |error: hound::Error| {
            DeviceError::Format(format!(
                "{}: not a readable WAV file: {error}",
                path.display()
            ))
        };
        let mut reader = hound::WavReader::open(path).map_err(unreadable)?;
        let spec = reader.spec();
        if spec.sample_rate == 0 || spec.channels == 0 {
            return Err(DeviceError::Format(format!(
                "{}: a WAV file of {} channels at {} Hz",
                path.display(),
                spec.channels,
                spec.sample_rate
            )));
        }
        if reader.duration() > MAX_SECONDS * spec.sample_rate {
            return Err(DeviceError::Format(format!(
                "{}: longer than {MAX_SECONDS} s",
                path.display()
            )));
        }
        let floats: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>(),
            hound::SampleFormat::Int => {
                let full_scale = (1_i64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|sample| sample.map(|sample| sample as f32 / full_scale))
                    .collect()
            }
        }
        .map_err(unreadable)?;
        let channels = usize::from(spec.channels);
        let mono: Vec<f32> = floats
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect();
        let mut frames =
            ToOpusFrames::new(spec.sample_rate).map_err(|error| DeviceError::Backend {
                op: "resample the WAV file",
                message: error.to_string(),
            })?;
        frames.push(&mono);
        // The resampler's tail: push a block of silence so the last samples come out.
        frames.push(&vec![0.0; spec.sample_rate as usize / 50]);
        let mut samples = Vec::new();
        while let Some(frame) = frames.next_frame() {
            samples.extend(frame.samples);
        }
        if samples.len() < AUDIO_FRAME_SAMPLES {
            return Err(DeviceError::Format(format!(
                "{}: shorter than 20 ms",
                path.display()
            )));
        }
        Ok(Self {
            samples,
            position: 0,
        })
    }

    /// The next 20 ms, wrapping around at the end.
    pub fn next_frame(&mut self) -> AudioFrame {
        let samples = (0..AUDIO_FRAME_SAMPLES)
            .map(|offset| self.samples[(self.position + offset) % self.samples.len()])
            .collect();
        self.position = (self.position + AUDIO_FRAME_SAMPLES) % self.samples.len();
        AudioFrame { samples }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::{dominant_frequency, rms_level};

    fn write_wav(path: &Path, rate: u32, channels: u16, seconds: f32, hz: f32) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..(rate as f32 * seconds) as usize {
            let t = i as f32 / rate as f32;
            let sample = (0.5 * (std::f32::consts::TAU * hz * t).sin() * 32_767.0) as i16;
            for _ in 0..channels {
                writer.write_sample(sample).unwrap();
            }
        }
        writer.finalize().unwrap();
    }

    #[test]
    fn a_stereo_22_khz_file_plays_at_48_khz_in_a_loop_with_its_pitch() {
        let dir = std::env::temp_dir().join(format!("meetspace-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tone.wav");
        write_wav(&path, 22_050, 2, 0.5, 300.0);
        let mut file = WavFile::open(&path).unwrap();
        // Half a second is 25 frames; take 60 to go round twice.
        let samples: Vec<i16> = (0..60).flat_map(|_| file.next_frame().samples).collect();
        let hz = dominant_frequency(&samples[4800..14400], 48_000).unwrap();
        assert!((hz - 300.0).abs() < 10.0, "pitch {hz} Hz");
        let level = rms_level(&samples[30 * 960..40 * 960]);
        assert!((level - 0.35).abs() < 0.05, "level {level} after the loop");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn what_is_not_a_wav_file_says_so() {
        let path = std::env::temp_dir().join(format!("meetspace-notwav-{}", std::process::id()));
        std::fs::write(&path, b"hello").unwrap();
        let error = WavFile::open(&path).unwrap_err().to_string();
        assert!(error.contains("not a readable WAV file"), "{error}");
        std::fs::remove_file(path).unwrap();
    }
}
