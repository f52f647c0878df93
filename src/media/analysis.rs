//! Measurements on received audio: the frequency of a tone and the signal level.

use std::f64::consts::TAU;

use realfft::RealFftPlanner;

/// At most this many of the latest samples are analysed by [`dominant_frequency`]
/// (85 ms at 48 kHz: an 11.7 Hz bin spacing, refined by interpolation).
const MAX_ANALYSIS_SAMPLES: usize = 4096;
/// Fewer samples than this give no frequency estimate.
const MIN_ANALYSIS_SAMPLES: usize = 64;
/// Below this RMS level (about -80 dBFS) a signal counts as silence.
const SILENCE_RMS: f32 = 1e-4;

/// Frequency in Hz of the strongest spectral peak of the latest samples (at most the
/// last 4096), or `None` for silence, fewer than 64 samples, or a zero sample rate.
///
/// The spectrum is a Hann-windowed real FFT (every peer's figures take one a second, so
/// it must be cheap: bin by bin, the same spectrum cost 2.5 % of a core per peer); the
/// peak is refined between bins by Gaussian interpolation, which is accurate to well
/// under 1 Hz for a clean tone.
pub fn dominant_frequency(samples: &[i16], sample_rate: u32) -> Option<f32> {
    if sample_rate == 0 || samples.len() < MIN_ANALYSIS_SAMPLES {
        return None;
    }
    let tail = &samples[samples.len().saturating_sub(MAX_ANALYSIS_SAMPLES)..];
    if rms_level(tail) < SILENCE_RMS {
        return None;
    }
    let n = tail.len();
    let mean = tail.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
    let mut windowed: Vec<f64> = tail
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let hann = 0.5 - 0.5 * (TAU * i as f64 / (n - 1) as f64).cos();
            (f64::from(s) - mean) * hann
        })
        .collect();

    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let mut spectrum = fft.make_output_vec();
    fft.process(&mut windowed, &mut spectrum).ok()?;
    let power: Vec<f64> = spectrum.iter().map(|bin| bin.norm_sqr()).collect();
    let last_bin = power.len() - 1;
    let (peak, _) = power
        .iter()
        .enumerate()
        .skip(1)
        .max_by(|a, b| a.1.total_cmp(b.1))?;

    let offset = if peak < last_bin {
        let ln = |p: f64| (p + f64::MIN_POSITIVE).ln();
        let (left, centre, right) = (ln(power[peak - 1]), ln(power[peak]), ln(power[peak + 1]));
        let curvature = left - 2.0 * centre + right;
        if curvature < 0.0 {
            0.5 * (left - right) / curvature
        } else {
            0.0
        }
    } else {
        0.0
    };
    Some(((peak as f64 + offset) * f64::from(sample_rate) / n as f64) as f32)
}

/// Root-mean-square level of `samples` as a fraction of full scale (0 for silence or no
/// samples, about 0.707 for a full-scale sine, 1 for a full-scale square wave).
pub fn rms_level(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum_of_squares: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    ((sum_of_squares / samples.len() as f64).sqrt() / 32_768.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::AUDIO_SAMPLE_RATE;
    use crate::media::synthetic::SyntheticAudio;

    fn tone(frequency: f32, frames: usize) -> Vec<i16> {
        let mut source = SyntheticAudio::new(frequency);
        (0..frames)
            .flat_map(|_| source.next_frame().samples)
            .collect()
    }

    #[test]
    fn finds_pure_tones_precisely() {
        for frequency in [100.0, 440.0, 1000.0, 3_150.0, 12_000.0] {
            let found = dominant_frequency(&tone(frequency, 10), AUDIO_SAMPLE_RATE)
                .expect("a tone has a frequency");
            assert!(
                (found - frequency).abs() < 1.0,
                "expected {frequency} Hz, found {found} Hz"
            );
        }
    }

    #[test]
    fn short_buffers_work_too() {
        let samples = tone(440.0, 1);
        let found = dominant_frequency(&samples, AUDIO_SAMPLE_RATE).expect("a tone");
        assert!((found - 440.0).abs() < 5.0, "found {found} Hz");
    }

    #[test]
    fn silence_and_tiny_inputs_have_no_frequency() {
        assert_eq!(dominant_frequency(&[0; 960], AUDIO_SAMPLE_RATE), None);
        assert_eq!(dominant_frequency(&[1000; 10], AUDIO_SAMPLE_RATE), None);
        assert_eq!(dominant_frequency(&tone(440.0, 1), 0), None);
    }

    #[test]
    fn rms_levels() {
        assert_eq!(rms_level(&[]), 0.0);
        assert_eq!(rms_level(&[0; 100]), 0.0);
        assert!((rms_level(&[i16::MIN; 100]) - 1.0).abs() < 1e-6);
        // A sine of amplitude 0.3 has an RMS of 0.3 / sqrt(2).
        let level = rms_level(&tone(440.0, 10));
        assert!((level - 0.3 / 2f32.sqrt()).abs() < 1e-3, "level {level}");
    }
}
