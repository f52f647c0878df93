//! The playback mixer: one voice per remote participant, each behind a small jitter
//! buffer, each with its own stereo gains (set by spatial audio) and volume (set by the
//! listener), smoothed so that walking does not click, summed into the speaker's buffer
//! under a master volume. It also measures each voice's level over the last 50 ms for
//! the speaking indicator, and (natively) keeps what the speaker plays for the echo
//! canceller.
//!
//! # Jitter buffer depth
//!
//! A voice starts (and, after running dry, restarts) playing once it holds
//! [`JITTER_TARGET_MS`] (60 ms, three Opus packets) of audio, and is trimmed back to
//! that depth when more than [`JITTER_MAX_MS`] piles up. Packets are 20 ms; on a LAN
//! the network adds little jitter, but the sender's pacing thread, our tokio task and
//! the sound server's period (10-25 ms) each wobble by a packet on a loaded machine.
//! Three packets ride out two late ones while adding only 60 ms of mouth-to-ear delay;
//! the 200 ms cap keeps a burst (after a stall) from turning into lasting latency.

use std::collections::{HashMap, VecDeque};
#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::analysis::rms_level;
use super::frame::{AUDIO_SAMPLE_RATE, AudioFrame};
#[cfg(not(target_arch = "wasm32"))]
use super::voice_processing::EchoReference;

/// Audio a voice buffers before it plays, in milliseconds (see the module docs).
pub const JITTER_TARGET_MS: usize = 60;
/// Audio a voice may hold before the oldest is dropped, in milliseconds.
pub const JITTER_MAX_MS: usize = 200;
/// Window of the level measurement, in milliseconds.
pub const LEVEL_WINDOW_MS: usize = 50;
/// Time constant of the gain smoothing, in seconds: a gain change is 63% done after it.
const GAIN_TIME_CONSTANT_S: f32 = 0.03;

const fn samples_in(ms: usize) -> usize {
    AUDIO_SAMPLE_RATE as usize * ms / 1000
}

/// Left and right gains of a voice (0 = silent, 1 = as received).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StereoGain {
    /// Gain into the left channel.
    pub left: f32,
    /// Gain into the right channel.
    pub right: f32,
}

impl StereoGain {
    /// No spatial placement: the voice as received on both channels.
    pub const PLAIN: Self = Self {
        left: 1.0,
        right: 1.0,
    };
    /// Not heard at all.
    pub const SILENT: Self = Self {
        left: 0.0,
        right: 0.0,
    };
}

/// One remote participant's audio inside the mixer.
#[derive(Debug)]
struct Voice {
    /// Decoded samples waiting to be played, oldest first.
    queue: VecDeque<f32>,
    /// Playing (true) or waiting for the buffer to fill (false).
    primed: bool,
    /// Gains to move towards.
    target: StereoGain,
    /// Gains applied to the current sample.
    current: StereoGain,
    /// The listener's volume for this voice (0 to 1).
    volume: f32,
    /// The last [`LEVEL_WINDOW_MS`] of samples, for the level.
    recent: VecDeque<i16>,
}

impl Voice {
    fn new() -> Self {
        Self {
            queue: VecDeque::with_capacity(samples_in(JITTER_MAX_MS)),
            primed: false,
            target: StereoGain::PLAIN,
            current: StereoGain::PLAIN,
            volume: 1.0,
            recent: VecDeque::with_capacity(samples_in(LEVEL_WINDOW_MS)),
        }
    }
}

/// The mixer shared by the receive path (which pushes decoded audio), the ECS (which
/// sets gains and reads levels) and the speaker's callback (which pulls the mix).
/// Voices are named by the participant's peer id.
#[derive(Debug)]
pub struct Mixer {
    voices: Mutex<HashMap<String, Voice>>,
    playing: AtomicBool,
    /// The master volume (0 to 1, as `f32` bits).
    master: AtomicU32,
    /// What the speaker played, for the echo canceller.
    #[cfg(not(target_arch = "wasm32"))]
    echo_reference: Arc<EchoReference>,
}

impl Default for Mixer {
    fn default() -> Self {
        Self {
            voices: Mutex::default(),
            playing: AtomicBool::new(false),
            master: AtomicU32::new(1.0_f32.to_bits()),
            #[cfg(not(target_arch = "wasm32"))]
            echo_reference: Arc::default(),
        }
    }
}

impl Mixer {
    /// A mixer with no voices, not playing, at full volume.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the speaker played lately (the speaker records it, the voice processing
    /// reads it).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn echo_reference(&self) -> &Arc<EchoReference> {
        &self.echo_reference
    }

    /// Sets the volume of every voice together (0 to 1).
    pub fn set_master_volume(&self, volume: f32) {
        self.master
            .store(volume.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// Sets the listener's volume for `voice` (0 to 1), on top of its spatial gains.
    pub fn set_volume(&self, voice: &str, volume: f32) {
        self.voices()
            .entry(voice.to_owned())
            .or_insert_with(Voice::new)
            .volume = volume.clamp(0.0, 1.0);
    }

    fn voices(&self) -> MutexGuard<'_, HashMap<String, Voice>> {
        self.voices.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a speaker pulls from this mixer. While it does not, pushed audio only
    /// feeds the levels (nothing queues up).
    pub fn set_playing(&self, playing: bool) {
        self.playing.store(playing, Ordering::Relaxed);
        if !playing {
            for voice in self.voices().values_mut() {
                voice.queue.clear();
                voice.primed = false;
            }
        }
    }

    /// Adds one decoded 20 ms frame of `voice`'s audio.
    pub fn push(&self, voice: &str, frame: &AudioFrame) {
        let playing = self.playing.load(Ordering::Relaxed);
        let mut voices = self.voices();
        let voice = voices.entry(voice.to_owned()).or_insert_with(Voice::new);
        let window = samples_in(LEVEL_WINDOW_MS);
        voice.recent.extend(&frame.samples);
        let excess = voice.recent.len().saturating_sub(window);
        voice.recent.drain(..excess);
        if !playing {
            return;
        }
        voice
            .queue
            .extend(frame.samples.iter().map(|&s| f32::from(s) / 32_768.0));
        if voice.queue.len() > samples_in(JITTER_MAX_MS) {
            let excess = voice.queue.len() - samples_in(JITTER_TARGET_MS);
            voice.queue.drain(..excess);
        }
    }

    /// Forgets a voice (its participant left).
    pub fn remove(&self, voice: &str) {
        self.voices().remove(voice);
    }

    /// Forgets every voice (the call ended).
    pub fn clear(&self) {
        self.voices().clear();
    }

    /// Sets the gains `voice` moves to (smoothly, over about 30 ms).
    pub fn set_gain(&self, voice: &str, gain: StereoGain) {
        self.voices()
            .entry(voice.to_owned())
            .or_insert_with(Voice::new)
            .target = gain;
    }

    /// RMS level (0 to 1) of the last 50 ms `voice` sent; 0 for an unknown voice.
    pub fn level(&self, voice: &str) -> f32 {
        self.voices()
            .get_mut(voice)
            .map_or(0.0, |voice| rms_level(voice.recent.make_contiguous()))
    }

    /// Milliseconds of audio waiting in `voice`'s jitter buffer.
    pub fn buffered_ms(&self, voice: &str) -> usize {
        self.voices().get(voice).map_or(0, |voice| {
            voice.queue.len() * 1000 / AUDIO_SAMPLE_RATE as usize
        })
    }

    /// Fills `out` (interleaved, `channels` per frame, at 48 kHz) with the mix of every
    /// voice: the left mix on the first channel, the right on the second, their average
    /// for a mono device, silence on any further channels. The sum is limited to
    /// [-1, 1].
    pub fn mix_into(&self, out: &mut [f32], channels: usize) {
        out.fill(0.0);
        if channels == 0 {
            return;
        }
        let step = 1.0 - (-1.0 / (GAIN_TIME_CONSTANT_S * AUDIO_SAMPLE_RATE as f32)).exp();
        let master = f32::from_bits(self.master.load(Ordering::Relaxed));
        let mut voices = self.voices();
        for voice in voices.values_mut() {
            let scale = voice.volume * master;
            let target = StereoGain {
                left: voice.target.left * scale,
                right: voice.target.right * scale,
            };
            if !voice.primed && voice.queue.len() >= samples_in(JITTER_TARGET_MS) {
                voice.primed = true;
            }
            if !voice.primed {
                continue;
            }
            for frame in out.chunks_exact_mut(channels) {
                let Some(sample) = voice.queue.pop_front() else {
                    // Ran dry: wait for the buffer to fill again.
                    voice.primed = false;
                    break;
                };
                let current = &mut voice.current;
                current.left += (target.left - current.left) * step;
                current.right += (target.right - current.right) * step;
                let (left, right) = (sample * current.left, sample * current.right);
                if channels == 1 {
                    frame[0] += (left + right) / 2.0;
                } else {
                    frame[0] += left;
                    frame[1] += right;
                }
            }
        }
        for sample in out.iter_mut() {
            *sample = sample.clamp(-1.0, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::dominant_frequency;
    use crate::media::frame::AUDIO_FRAME_SAMPLES;
    use crate::media::synthetic::SyntheticAudio;

    /// Pushes `frames` frames of a tone as `voice`.
    fn feed(mixer: &Mixer, voice: &str, tone: &mut SyntheticAudio, frames: usize) {
        for _ in 0..frames {
            mixer.push(voice, &tone.next_frame());
        }
    }

    /// Pulls `frames` 20 ms stereo buffers; returns (left, right) as i16.
    fn pull(mixer: &Mixer, frames: usize) -> (Vec<i16>, Vec<i16>) {
        let mut left = Vec::new();
        let mut right = Vec::new();
        let mut out = vec![0.0f32; AUDIO_FRAME_SAMPLES * 2];
        for _ in 0..frames {
            mixer.mix_into(&mut out, 2);
            for pair in out.chunks_exact(2) {
                left.push((pair[0] * 32_767.0) as i16);
                right.push((pair[1] * 32_767.0) as i16);
            }
        }
        (left, right)
    }

    #[test]
    fn a_voice_waits_for_the_jitter_target_then_plays() {
        let mixer = Mixer::new();
        mixer.set_playing(true);
        let mut tone = SyntheticAudio::new(440.0);
        feed(&mixer, "a", &mut tone, 2);
        let (left, _) = pull(&mixer, 1);
        assert!(left.iter().all(|&s| s == 0), "40 ms is below the target");
        feed(&mixer, "a", &mut tone, 1);
        assert_eq!(mixer.buffered_ms("a"), 60);
        let (left, right) = pull(&mixer, 1);
        assert!(rms_level(&left) > 0.15 && left == right);
        assert_eq!(mixer.buffered_ms("a"), 40);
    }

    #[test]
    fn a_burst_is_trimmed_to_bound_latency() {
        let mixer = Mixer::new();
        mixer.set_playing(true);
        feed(&mixer, "a", &mut SyntheticAudio::new(440.0), 20);
        assert!(mixer.buffered_ms("a") <= JITTER_MAX_MS);
        assert!(mixer.buffered_ms("a") >= JITTER_TARGET_MS);
    }

    #[test]
    fn not_playing_measures_levels_without_queueing() {
        let mixer = Mixer::new();
        feed(&mixer, "a", &mut SyntheticAudio::new(440.0), 5);
        assert_eq!(mixer.buffered_ms("a"), 0);
        let level = mixer.level("a");
        assert!((level - 0.3 / 2f32.sqrt()).abs() < 0.01, "level {level}");
        assert_eq!(mixer.level("nobody"), 0.0);
    }

    #[test]
    fn the_mix_is_the_sum_of_the_voices_and_keeps_their_energy() {
        let mixer = Mixer::new();
        mixer.set_playing(true);
        let (mut low, mut high) = (SyntheticAudio::new(300.0), SyntheticAudio::new(1_000.0));
        feed(&mixer, "low", &mut low, 10);
        feed(&mixer, "high", &mut high, 10);
        let (left, right) = pull(&mixer, 5);
        assert_eq!(left, right);
        // Two uncorrelated tones of RMS r each sum to RMS r * sqrt(2).
        let single = 0.3 / 2f32.sqrt();
        let level = rms_level(&left);
        assert!((level - single * 2f32.sqrt()).abs() < 0.01, "level {level}");
        // Both tones are in the mix: remove one by its own samples and the other is left.
        let mut reference = SyntheticAudio::new(300.0);
        let low_part: Vec<i16> = (0..5)
            .flat_map(|_| reference.next_frame().samples)
            .collect();
        let rest: Vec<i16> = left
            .iter()
            .zip(&low_part)
            .map(|(&mixed, &low)| mixed.saturating_sub(low))
            .collect();
        let found = dominant_frequency(&rest, AUDIO_SAMPLE_RATE).expect("a tone is left");
        assert!((found - 1_000.0).abs() < 5.0, "found {found} Hz");
    }

    #[test]
    fn loud_voices_are_limited_not_wrapped() {
        let mixer = Mixer::new();
        mixer.set_playing(true);
        let loud = AudioFrame {
            samples: vec![30_000; AUDIO_FRAME_SAMPLES],
        };
        for voice in ["a", "b", "c"] {
            for _ in 0..3 {
                mixer.push(voice, &loud);
            }
        }
        let mut out = vec![0.0f32; AUDIO_FRAME_SAMPLES * 2];
        mixer.mix_into(&mut out, 2);
        assert!(out.iter().all(|&s| (-1.0..=1.0).contains(&s)));
        assert!(
            out.iter().all(|&s| s > 0.99),
            "a positive sum stays positive"
        );
    }

    #[test]
    fn gains_pan_the_voice_and_change_smoothly() {
        let mixer = Mixer::new();
        mixer.set_playing(true);
        let mut tone = SyntheticAudio::new(440.0);
        feed(&mixer, "a", &mut tone, 10);
        mixer.set_gain(
            "a",
            StereoGain {
                left: 1.0,
                right: 0.0,
            },
        );
        let (left, right) = pull(&mixer, 1);
        // The first samples still carry most of the old gain: no jump.
        let step = (f32::from(right[1]) - f32::from(right[0])).abs();
        assert!(step < 0.1 * 32_767.0, "right jumped by {step}");
        // After 200 ms (about seven time constants) the right channel is silent.
        for _ in 0..10 {
            feed(&mixer, "a", &mut tone, 1);
            pull(&mixer, 1);
        }
        let (left_late, right_late) = pull(&mixer, 1);
        assert!(rms_level(&right_late) < 0.001, "{}", rms_level(&right_late));
        assert!((rms_level(&left_late) - rms_level(&left)).abs() < 0.01);
    }

    #[test]
    fn a_mono_device_gets_the_average_of_both_sides() {
        let mixer = Mixer::new();
        mixer.set_playing(true);
        feed(&mixer, "a", &mut SyntheticAudio::new(440.0), 3);
        mixer.set_gain("a", StereoGain::SILENT);
        let mut out = vec![0.0f32; 10];
        mixer.mix_into(&mut out, 1);
        assert!(
            out.iter().any(|&s| s != 0.0),
            "smoothing: not silent at once"
        );
        mixer.remove("a");
        mixer.mix_into(&mut out, 1);
        assert!(out.iter().all(|&s| s == 0.0));
    }

    #[test]
    fn a_quarter_volume_is_twelve_db_lower_and_leaves_the_others_alone() {
        let level_db = |samples: &[i16]| 20.0 * rms_level(samples).log10();
        let mixer = Mixer::new();
        mixer.set_playing(true);
        let mut a = SyntheticAudio::new(440.0);
        let mut b = SyntheticAudio::new(660.0);
        // Each voice alone, a frame in and a frame out at a time, after 200 ms to
        // settle: the left channel of the last 100 ms.
        let alone = |voice: &str, tone: &mut SyntheticAudio| {
            feed(&mixer, voice, tone, 3);
            for _ in 0..10 {
                feed(&mixer, voice, tone, 1);
                pull(&mixer, 1);
            }
            let mut left = Vec::new();
            for _ in 0..5 {
                feed(&mixer, voice, tone, 1);
                left.extend(pull(&mixer, 1).0);
            }
            mixer.remove(voice);
            left
        };
        let a_full = alone("a", &mut a);
        let b_full = alone("b", &mut b);
        mixer.set_volume("a", 0.25);
        let a_quarter = alone("a", &mut a);
        mixer.set_volume("a", 0.25);
        let b_beside = alone("b", &mut b);
        let drop_db = level_db(&a_full) - level_db(&a_quarter);
        assert!((drop_db - 12.04).abs() < 0.2, "{drop_db} dB lower");
        let b_db = level_db(&b_full) - level_db(&b_beside);
        assert!(
            b_db.abs() < 0.1,
            "b is {b_db} dB off: a's volume is a's alone"
        );

        mixer.set_master_volume(0.5);
        let b_halved = alone("b", &mut b);
        let master_db = level_db(&b_full) - level_db(&b_halved);
        assert!(
            (master_db - 6.02).abs() < 0.2,
            "master: {master_db} dB lower"
        );
    }
}
