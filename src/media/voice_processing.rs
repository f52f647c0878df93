//! What is done to the microphone's sound before it is sent: echo cancellation, noise
//! suppression and automatic gain, each switchable ([`VoiceProcessing`], shared by both
//! targets: the browser asks `getUserMedia` for them, the native client runs WebRTC's
//! audio processing module, ported to Rust as `sonora`).
//!
//! Natively, the echo canceller (AEC3) needs the far end: what the speaker plays. The
//! speaker's callback hands each mix it plays to an [`EchoReference`] (kept by the
//! mixer); the [`VoiceProcessor`] on the send thread drains it in 10 ms frames before
//! it processes each captured 10 ms frame, and tells AEC3 the stream delay the devices
//! report (the speaker's output latency plus the microphone's input latency). AEC3
//! finds the exact echo path delay itself; the reported one is where it starts looking.

#[cfg(not(target_arch = "wasm32"))]
pub use native::{EchoPath, EchoReference, PROCESSING_FRAME_SAMPLES, VoiceProcessor};

/// Which parts of the voice processing run on our microphone. All on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoiceProcessing {
    /// Remove what the speaker played from what the microphone heard (AEC3).
    pub echo_cancellation: bool,
    /// Remove steady background noise (fans, hum, traffic).
    pub noise_suppression: bool,
    /// Bring quiet and loud voices to one level (AGC2, adaptive digital gain).
    pub auto_gain: bool,
}

impl Default for VoiceProcessing {
    fn default() -> Self {
        Self::ALL
    }
}

impl VoiceProcessing {
    /// Every part on (the default).
    pub const ALL: Self = Self {
        echo_cancellation: true,
        noise_suppression: true,
        auto_gain: true,
    };
    /// Every part off: the microphone as it is.
    pub const NONE: Self = Self {
        echo_cancellation: false,
        noise_suppression: false,
        auto_gain: false,
    };

    /// Whether any part is on.
    pub fn any(self) -> bool {
        self.echo_cancellation || self.noise_suppression || self.auto_gain
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
    use std::time::Duration;

    use sonora::config::{
        AdaptiveDigital, EchoCanceller, GainController2, HighPassFilter, NoiseSuppression,
        NoiseSuppressionLevel,
    };
    use sonora::{AudioProcessing, Config, StreamConfig};

    use super::VoiceProcessing;
    use crate::media::frame::{AUDIO_SAMPLE_RATE, AudioFrame};

    /// Samples in one frame of the audio processing: 10 ms at 48 kHz.
    pub const PROCESSING_FRAME_SAMPLES: usize = AUDIO_SAMPLE_RATE as usize / 100;

    /// Played audio kept for the echo canceller at most (older is dropped): one second.
    const MAX_REFERENCE_SAMPLES: usize = AUDIO_SAMPLE_RATE as usize;

    /// What the speaker played lately (mono, 48 kHz), for the echo canceller, and the
    /// speaker's output latency. Filled only while a [`VoiceProcessor`] listens.
    #[derive(Debug, Default)]
    pub struct EchoReference {
        played: Mutex<VecDeque<f32>>,
        /// Processors listening now; nothing is kept while there are none.
        listeners: AtomicUsize,
        /// The speaker's latest output latency (callback to playback), microseconds.
        output_latency_us: AtomicU32,
    }

    impl EchoReference {
        fn played(&self) -> MutexGuard<'_, VecDeque<f32>> {
            self.played.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Records what the speaker is about to play: `mix` interleaved with `channels`
        /// per frame (down-mixed to mono here), to be heard after `latency`.
        pub fn record(&self, mix: &[f32], channels: usize, latency: Duration) {
            let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
            self.output_latency_us.store(micros, Ordering::Relaxed);
            if self.listeners.load(Ordering::Relaxed) == 0 || channels == 0 {
                return;
            }
            let mut played = self.played();
            played.extend(
                mix.chunks_exact(channels)
                    .map(|frame| frame.iter().sum::<f32>() / channels as f32),
            );
            let excess = played.len().saturating_sub(MAX_REFERENCE_SAMPLES);
            played.drain(..excess);
        }

        /// The speaker's latest output latency.
        pub fn output_latency(&self) -> Duration {
            Duration::from_micros(u64::from(self.output_latency_us.load(Ordering::Relaxed)))
        }

        /// Moves every whole 10 ms frame recorded so far into `frames`.
        fn drain_frames(&self, frames: &mut Vec<f32>) {
            let mut played = self.played();
            let whole = played.len() / PROCESSING_FRAME_SAMPLES * PROCESSING_FRAME_SAMPLES;
            frames.extend(played.drain(..whole));
        }
    }

    /// A room's echo for measurements without devices: what the speaker plays comes
    /// back into the microphone some 20 ms frames later, scaled.
    #[derive(Debug)]
    pub struct EchoPath {
        /// Played frames not heard yet, oldest first.
        in_flight: VecDeque<Vec<f32>>,
        delay_frames: usize,
        gain: f32,
    }

    impl EchoPath {
        /// An echo `delay_frames` 20 ms frames late at `gain` (0.5: -6 dB).
        pub fn new(delay_frames: usize, gain: f32) -> Self {
            Self {
                in_flight: VecDeque::with_capacity(delay_frames + 1),
                delay_frames,
                gain,
            }
        }

        /// What the microphone hears while the speaker plays `played` (20 ms).
        pub fn hear(&mut self, played: &[f32]) -> AudioFrame {
            self.in_flight.push_back(played.to_vec());
            let samples = if self.in_flight.len() > self.delay_frames {
                self.in_flight
                    .pop_front()
                    .unwrap_or_default()
                    .iter()
                    .map(|&sample| {
                        (sample * self.gain * 32_768.0).clamp(-32_768.0, 32_767.0) as i16
                    })
                    .collect()
            } else {
                vec![0; played.len()]
            };
            AudioFrame { samples }
        }
    }

    /// WebRTC's audio processing (through `sonora`) on one microphone's frames, fed the
    /// speaker's mix as the far end.
    pub struct VoiceProcessor {
        processing: AudioProcessing,
        parts: VoiceProcessing,
        reference: Arc<EchoReference>,
        /// Far-end frames drained, waiting to be analysed.
        far_end: Vec<f32>,
        /// One 10 ms capture frame in and out, as floats.
        capture_in: Vec<f32>,
        capture_out: Vec<f32>,
        render_out: Vec<f32>,
    }

    impl VoiceProcessor {
        /// A processor running `parts`, listening to `reference` from now on.
        pub fn new(parts: VoiceProcessing, reference: Arc<EchoReference>) -> Self {
            reference.listeners.fetch_add(1, Ordering::Relaxed);
            // What was played before we listened is no echo of anything we will hear.
            reference.played().clear();
            let stream = StreamConfig::new(AUDIO_SAMPLE_RATE, 1);
            let processing = AudioProcessing::builder()
                .config(sonora_config(parts))
                .capture_config(stream)
                .render_config(stream)
                .build();
            Self {
                processing,
                parts,
                reference,
                far_end: Vec::new(),
                capture_in: vec![0.0; PROCESSING_FRAME_SAMPLES],
                capture_out: vec![0.0; PROCESSING_FRAME_SAMPLES],
                render_out: vec![0.0; PROCESSING_FRAME_SAMPLES],
            }
        }

        /// Switches parts on or off without losing what the others learnt.
        pub fn set_parts(&mut self, parts: VoiceProcessing) {
            if parts != self.parts {
                self.parts = parts;
                self.processing.apply_config(sonora_config(parts));
            }
        }

        /// Processes one captured frame in place (any whole number of 10 ms frames),
        /// after analysing what the speaker played since the last call. `input_latency`
        /// is the microphone's, as its device reports it.
        /// With every part off the frame is left as it is (and what the speaker played
        /// is dropped, so that switching on later starts from the present).
        pub fn process(&mut self, frame: &mut AudioFrame, input_latency: Duration) {
            self.reference.drain_frames(&mut self.far_end);
            if !self.parts.any() {
                self.far_end.clear();
                return;
            }
            for far in self.far_end.chunks_exact(PROCESSING_FRAME_SAMPLES) {
                // The render side only analyses here; its output is not used.
                let _ = self
                    .processing
                    .process_render_f32(&[far], &mut [&mut self.render_out]);
            }
            self.far_end.clear();
            let delay = self.reference.output_latency() + input_latency;
            // Out of AEC3's range (0-500 ms) it is clamped, which is all we could do.
            let _ = self
                .processing
                .set_stream_delay_ms(i32::try_from(delay.as_millis()).unwrap_or(i32::MAX));
            for chunk in frame.samples.chunks_exact_mut(PROCESSING_FRAME_SAMPLES) {
                for (float, &sample) in self.capture_in.iter_mut().zip(chunk.iter()) {
                    *float = f32::from(sample) / 32_768.0;
                }
                if self
                    .processing
                    .process_capture_f32(&[&self.capture_in], &mut [&mut self.capture_out])
                    .is_err()
                {
                    // Only a wrong frame size fails, which the chunking rules out; the
                    // frame then goes out unprocessed.
                    continue;
                }
                for (sample, &float) in chunk.iter_mut().zip(&self.capture_out) {
                    *sample = (float * 32_768.0).clamp(-32_768.0, 32_767.0) as i16;
                }
            }
        }
    }

    impl Drop for VoiceProcessor {
        fn drop(&mut self) {
            self.reference.listeners.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `sonora`'s configuration for `parts`: the high-pass filter whenever anything runs
    /// (AEC3 wants it), high noise suppression (about 18 dB; Chromium's choice too),
    /// AGC2's adaptive digital gain.
    fn sonora_config(parts: VoiceProcessing) -> Config {
        Config {
            high_pass_filter: parts.any().then(HighPassFilter::default),
            echo_canceller: parts.echo_cancellation.then(EchoCanceller::default),
            noise_suppression: parts.noise_suppression.then(|| NoiseSuppression {
                level: NoiseSuppressionLevel::High,
                ..NoiseSuppression::default()
            }),
            gain_controller2: parts.auto_gain.then(|| GainController2 {
                adaptive_digital: Some(AdaptiveDigital::default()),
                ..GainController2::default()
            }),
            ..Config::default()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::media::analysis::rms_level;
        use crate::media::synthetic::SyntheticVoice;

        /// Plays the talker through `reference` and hears it back `delay_frames` 20 ms
        /// frames later at half the level (-6 dB); returns the level of what the
        /// processor sends over the last second of `seconds`.
        fn echo_left_after(parts: VoiceProcessing, seconds: usize) -> f32 {
            let reference = Arc::new(EchoReference::default());
            let mut processor = VoiceProcessor::new(parts, reference.clone());
            let frames = seconds * 50;
            let mut echo_path = EchoPath::new(4, 0.5);
            let mut voice = SyntheticVoice::default();
            let mut sent = Vec::new();
            for index in 0..frames {
                let played = voice.next_samples();
                reference.record(&played, 1, Duration::from_millis(20));
                let mut frame = echo_path.hear(&played);
                processor.process(&mut frame, Duration::from_millis(20));
                if index >= frames - 50 {
                    sent.extend(frame.samples);
                }
            }
            rms_level(&sent)
        }

        #[test]
        fn the_echo_of_what_the_speaker_played_is_removed() {
            let without = echo_left_after(VoiceProcessing::NONE, 4);
            let with = echo_left_after(
                VoiceProcessing {
                    echo_cancellation: true,
                    ..VoiceProcessing::NONE
                },
                4,
            );
            let erle_db = 20.0 * (without / with.max(1e-6)).log10();
            assert!(without > 0.01, "the echo was heard at all: {without}");
            assert!(erle_db > 20.0, "echo only {erle_db:.1} dB lower");
        }

        #[test]
        fn nothing_is_kept_for_the_echo_canceller_while_no_processor_listens() {
            let reference = Arc::new(EchoReference::default());
            reference.record(&[0.5; 960], 2, Duration::ZERO);
            assert!(reference.played().is_empty());
            let processor = VoiceProcessor::new(VoiceProcessing::ALL, reference.clone());
            reference.record(&[0.5; 960], 2, Duration::ZERO);
            assert_eq!(reference.played().len(), 480, "stereo down-mixed to mono");
            drop(processor);
            assert_eq!(reference.listeners.load(Ordering::Relaxed), 0);
        }
    }
}
