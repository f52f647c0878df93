//! The voice processing through a real sound server: a private PulseAudio whose
//! speaker (a null sink) comes back into the microphone 100 ms later at -6 dB, as a
//! laptop's speakers do, a far-end talker sending a synthesised voice (espeak-ng, as a
//! WAV file microphone), and the listener's microphone processed by the echo
//! canceller, the noise suppression, or neither. Everything is measured where a person
//! would hear it: at the far end, on the level of the listener's voice as it arrives;
//! and, for the volume per person, in what the listener's speaker plays.
//!
//! With `--nocapture` it prints one line per figure (`ERLE 31.2 dB`, ...).
//!
//! One test in this binary on purpose: it points the process at its daemon through
//! `PULSE_SERVER` before any other thread exists.

mod common;

use std::path::Path;
use std::time::Duration;

use bevy::prelude::*;
use common::*;
use meetspace::call::{CallCommand, Participant, SpeakingLevel, Volumes};
use meetspace::media::{AudioInput, DeviceChoice, SendSettings, VoiceProcessing};
use meetspace::signaling::protocol::PeerId;

const SECOND: Duration = Duration::from_secs(1);
/// Where the listener's microphone hears from: the echo path and the near-end voice
/// and noise are mixed into this sink, whose monitor is the default source.
const ROOM_AIR: &str = "room_air";
/// The echo path's delay.
const ECHO_DELAY_MS: u32 = 100;

/// Synthesises `text` with espeak-ng's `voice` into `path`.
fn speak(voice: &str, text: &str, path: &Path) {
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(path)
        .arg(text)
        .status()
        .unwrap_or_else(|error| {
            panic!("cannot run espeak-ng ({error}): run ./setup.sh, or apt-get install espeak-ng")
        });
    assert!(status.success(), "espeak-ng failed");
}

/// The RMS level (0 to 1) of a 16-bit WAV file.
fn wav_level(path: &Path) -> f32 {
    let mut reader = hound::WavReader::open(path).unwrap();
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    meetspace::media::rms_level(&samples)
}

/// Writes `seconds` of steady white noise at RMS `level` (48 kHz mono) to `path`.
fn write_noise(path: &Path, level: f32, seconds: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    let mut state = 0x2545_f491_u32;
    // Uniform noise in [-a, a] has RMS a/√3.
    let amplitude = level * 3.0_f32.sqrt();
    for _ in 0..48_000 * seconds {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let uniform = state as f32 / u32::MAX as f32 * 2.0 - 1.0;
        writer
            .write_sample((uniform * amplitude * 32_767.0) as i16)
            .unwrap();
    }
    writer.finalize().unwrap();
}

/// The level at which `far` hears the listener, sampled every update for `span`,
/// as a mean power (level squared).
fn heard_power(apps: &mut [&mut App], span: Duration) -> f32 {
    let mut powers = Vec::new();
    pump_until(apps, span, |apps| {
        let world = apps[0].world_mut();
        let mut levels = world.query::<&SpeakingLevel>();
        if let Some(level) = levels.iter(world).next() {
            powers.push(level.0 * level.0);
        }
        false
    });
    assert!(!powers.is_empty(), "the far end has no participant");
    powers.iter().sum::<f32>() / powers.len() as f32
}

/// The mean power the far end hears while `clip` plays into the room's air (from
/// 0.3 s after it starts until it ends).
fn heard_during(pulse: &PulseServer, apps: &mut [&mut App], clip: &Path) -> f32 {
    let mut player = pulse.play(ROOM_AIR, clip);
    pump_until(apps, Duration::from_millis(300), |_| false);
    let mut powers = Vec::new();
    let ended = pump_until(apps, 30 * SECOND, |apps| {
        let world = apps[0].world_mut();
        let mut levels = world.query::<&SpeakingLevel>();
        if let Some(level) = levels.iter(world).next() {
            powers.push(level.0 * level.0);
        }
        matches!(player.try_wait(), Ok(Some(_)))
    });
    assert!(ended, "paplay did not finish within 30 s");
    powers.iter().sum::<f32>() / powers.len().max(1) as f32
}

/// Small video: the sound is what is measured here.
fn small_video() -> SendSettings {
    SendSettings {
        width: 320,
        height: 240,
        video_kbps: 300,
        ..SendSettings::default()
    }
}

/// The amplitude of the `hz` component of `samples` (Goertzel), at 48 kHz.
fn tone_level(samples: &[i16], hz: f32) -> f32 {
    let coefficient = 2.0 * (std::f32::consts::TAU * hz / 48_000.0).cos();
    let (mut previous, mut before) = (0.0_f32, 0.0_f32);
    for &sample in samples {
        let current = f32::from(sample) / 32_768.0 + coefficient * previous - before;
        before = previous;
        previous = current;
    }
    let power = previous * previous + before * before - coefficient * previous * before;
    2.0 * power.sqrt() / samples.len() as f32
}

/// Whether no 10 ms of `samples` is much quieter than the whole: steady tones play
/// throughout, so a quiet 10 ms is a moment the playback ran dry.
fn without_gap(samples: &[i16]) -> bool {
    let power =
        |part: &[i16]| part.iter().map(|&s| f32::from(s).powi(2)).sum::<f32>() / part.len() as f32;
    let whole = power(samples);
    samples
        .chunks_exact(480)
        .all(|window| power(window) >= whole / 100.0)
}

/// The peer id of the participant `app` shows as `name`.
fn peer_id_of(app: &mut App, name: &str) -> PeerId {
    let world = app.world_mut();
    let mut participants = world.query::<&Participant>();
    participants
        .iter(world)
        .find(|participant| participant.name.as_str() == name)
        .map(|participant| participant.peer_id.clone())
        .unwrap_or_else(|| panic!("no participant {name}"))
}

fn db(power_ratio: f32) -> f32 {
    10.0 * power_ratio.log10()
}

fn set_processing(listener: &mut App, parts: VoiceProcessing) {
    listener
        .world_mut()
        .write_message(CallCommand::SetVoiceProcessing(parts));
}

fn set_far_end_talking(far: &mut App, on: bool) {
    far.world_mut()
        .write_message(CallCommand::SetMicrophone(on));
}

#[test]
fn the_echo_of_the_far_end_is_removed_the_near_end_kept_and_noise_suppressed() {
    let dir = std::env::temp_dir().join(format!("meetspace-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let far_voice = dir.join("far.wav");
    let near_voice = dir.join("near.wav");
    let noise = dir.join("noise.wav");
    speak(
        "en",
        "The quick brown fox jumps over the lazy dog. Meetspace is a place where people \
         meet, walk up to each other, talk and listen.",
        &far_voice,
    );
    speak(
        "en+f3",
        "Hello there, can you hear me well? I am talking at the same time as you are.",
        &near_voice,
    );
    // Steady noise 10 dB below the near-end voice.
    write_noise(&noise, wav_level(&near_voice) / 10.0_f32.sqrt(), 60);

    let pulse = PulseServer::start();
    // The speaker is the test sink; the room's air hears it 100 ms later at -6 dB
    // (half the amplitude), and the microphone hears the air.
    pulse.pactl_output(&[
        "load-module",
        "module-null-sink",
        &format!("sink_name={ROOM_AIR}"),
        "rate=48000",
        "channels=1",
    ]);
    pulse.pactl_output(&[
        "load-module",
        "module-loopback",
        &format!("source={TEST_SINK}.monitor"),
        &format!("sink={ROOM_AIR}"),
        &format!("latency_msec={ECHO_DELAY_MS}"),
        "adjust_time=0",
    ]);
    // Nothing else plays yet: the one sink input is the loopback's.
    let inputs = pulse.pactl_output(&["list", "short", "sink-inputs"]);
    let echo_input = inputs
        .lines()
        .find(|line| line.contains("module-loopback"))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no sink input of the loopback in {inputs:?}"))
        .to_owned();
    pulse.pactl_output(&["set-sink-input-volume", &echo_input, "0.5"]);
    pulse.pactl_output(&["set-default-sink", TEST_SINK]);
    pulse.pactl_output(&["set-default-source", &format!("{ROOM_AIR}.monitor")]);
    // SAFETY: the only test of this binary sets this before it starts any thread of
    // its own; ALSA's PulseAudio plugin reads it when cpal opens a device.
    unsafe { std::env::set_var("PULSE_SERVER", &pulse.server) };

    let server = TestServer::start();
    let small = small_video();
    let mut far = client_from(config(
        &server.url,
        "Far",
        SendSettings {
            audio_input: AudioInput::File(far_voice.clone()),
            ..small.clone()
        },
    ));
    let mut listener_config = config(
        &server.url,
        "Listener",
        SendSettings {
            audio_input: AudioInput::Microphone(DeviceChoice::Default),
            voice_processing: VoiceProcessing {
                echo_cancellation: true,
                ..VoiceProcessing::NONE
            },
            ..small
        },
    );
    listener_config.speaker = Some(DeviceChoice::Default);
    let mut listener = client_from(listener_config);
    let room = host_room(&mut far);
    join_room(&mut listener, &room);
    let apps = &mut [&mut far, &mut listener];
    let connected = pump_until(apps, 30 * SECOND, |apps| {
        let world = apps[1].world_mut();
        let mut levels = world.query::<&SpeakingLevel>();
        levels.iter(world).any(|level| level.0 > 0.01)
    });
    assert!(connected, "the listener never heard the far end");

    // Echo: measured over a whole loop of the far end's voice (under 8 s), with the
    // canceller on (after 3 s to converge) and off.
    let whole_clip = 8 * SECOND;
    pump_until(apps, 3 * SECOND, |_| false);
    let echo_on = heard_power(apps, whole_clip);
    set_processing(apps[1], VoiceProcessing::NONE);
    pump_until(apps, SECOND, |_| false);
    let echo_off = heard_power(apps, whole_clip);
    let erle = db(echo_off / echo_on);
    println!(
        "echo at the far end: {:.1} dBFS without cancellation, {:.1} dBFS with",
        db(echo_off),
        db(echo_on)
    );
    println!("ERLE {erle:.1} dB");
    assert!(
        db(echo_off) > -45.0,
        "the echo path did not carry the far end: {:.1} dBFS",
        db(echo_off)
    );
    assert!(
        erle >= 25.0,
        "echo only {erle:.1} dB lower with cancellation"
    );

    // Double talk: the near-end voice alone, then over the far end's, both with the
    // canceller on. Switched back on, it starts learning the echo path afresh: the far
    // end talks a whole loop first (after only 3 s the near end was seen 2.2-3.0 dB
    // lower in double talk, against 1.4-1.6 dB after a loop).
    set_processing(
        apps[1],
        VoiceProcessing {
            echo_cancellation: true,
            ..VoiceProcessing::NONE
        },
    );
    set_far_end_talking(apps[0], false);
    pump_until(apps, 2 * SECOND, |_| false);
    let near_alone = heard_during(&pulse, apps, &near_voice);
    set_far_end_talking(apps[0], true);
    pump_until(apps, whole_clip, |_| false);
    let near_over_far = heard_during(&pulse, apps, &near_voice);
    let double_talk = db(near_over_far / near_alone);
    println!(
        "near end at the far end: {:.1} dBFS alone, {:.1} dBFS in double talk",
        db(near_alone),
        db(near_over_far)
    );
    println!("double-talk change {double_talk:+.1} dB");
    assert!(
        double_talk.abs() <= 3.0,
        "the near-end voice changed by {double_talk:.1} dB in double talk"
    );

    // Noise: steady noise 10 dB under the near-end voice, the far end silent; the
    // signal-to-noise ratio at the far end without and with suppression.
    set_far_end_talking(apps[0], false);
    let mut noise_player = pulse.play(ROOM_AIR, &noise);
    let snr = |apps: &mut [&mut App], parts: VoiceProcessing| {
        set_processing(apps[1], parts);
        pump_until(apps, 2 * SECOND, |_| false);
        let noise_only = heard_power(apps, 2 * SECOND);
        let speech_and_noise = heard_during(&pulse, apps, &near_voice);
        db((speech_and_noise - noise_only).max(1e-12) / noise_only)
    };
    let snr_off = snr(apps, VoiceProcessing::NONE);
    let snr_on = snr(
        apps,
        VoiceProcessing {
            noise_suppression: true,
            ..VoiceProcessing::NONE
        },
    );
    let _ = noise_player.kill();
    let _ = noise_player.wait();
    println!("SNR at the far end: {snr_off:.1} dB without suppression, {snr_on:.1} dB with");
    println!("SNR gain {:.1} dB", snr_on - snr_off);
    assert!(
        snr_on - snr_off >= 10.0,
        "noise suppression gained only {:.1} dB",
        snr_on - snr_off
    );

    // Volumes: the far end sends a 440 Hz tone, a second talker joins with 660 Hz;
    // the listener turns the far end down to 25 %: its tone plays 12 dB lower into the
    // speaker, the other's as before.
    let mut second = client_with(
        &server.url,
        "Second",
        SendSettings {
            tone_hz: 660.0,
            ..small_video()
        },
    );
    join_room(&mut second, &room);
    apps[0]
        .world_mut()
        .write_message(CallCommand::SwitchMicrophone(AudioInput::Tone));
    set_far_end_talking(apps[0], true);
    let apps = &mut [&mut far, &mut listener, &mut second];
    let both = pump_until(apps, 30 * SECOND, |apps| {
        let world = apps[1].world_mut();
        let mut levels = world.query::<&SpeakingLevel>();
        levels.iter(world).filter(|level| level.0 > 0.05).count() == 2
    });
    assert!(both, "the listener does not hear both talkers");
    let far_id = peer_id_of(apps[1], "Far");
    // Each tone's median level over the quarter seconds of 3 s in which the playback
    // ran without a gap (on a loaded machine the speaker may run dry for a moment,
    // which lowers both tones alike).
    let tones = |apps: &mut [&mut App]| {
        let (left, _) = record_playback(&pulse, apps, 3 * SECOND);
        let steady: Vec<&[i16]> = left
            .chunks_exact(12_000)
            .filter(|chunk| without_gap(chunk))
            .collect();
        println!(
            "{} of 12 quarter seconds played without a gap",
            steady.len()
        );
        assert!(steady.len() >= 3, "the playback kept running dry");
        let median = |hz: f32| {
            let mut levels: Vec<f32> = steady.iter().map(|chunk| tone_level(chunk, hz)).collect();
            levels.sort_by(f32::total_cmp);
            levels[levels.len() / 2]
        };
        (median(440.0), median(660.0))
    };
    let (far_before, second_before) = tones(apps);
    apps[1]
        .world_mut()
        .resource_mut::<Volumes>()
        .people
        .insert(far_id, 0.25);
    pump_until(apps, SECOND / 2, |_| false);
    let (far_after, second_after) = tones(apps);
    let far_change = 20.0 * (far_after / far_before).log10();
    let second_change = 20.0 * (second_after / second_before).log10();
    println!(
        "tone levels before {far_before:.4} / {second_before:.4}, after {far_after:.4} / \
         {second_after:.4}"
    );
    println!("far end at 25 %: {far_change:+.1} dB; the other talker: {second_change:+.1} dB");
    assert!(
        (far_change + 12.0).abs() < 1.5,
        "the far end changed by {far_change:.1} dB"
    );
    assert!(
        second_change.abs() < 1.0,
        "the other talker changed by {second_change:.1} dB"
    );

    leave(&mut listener);
    assert_capture_stopped(&mut listener);
    drop(pulse);
    std::fs::remove_dir_all(dir).unwrap();
}
