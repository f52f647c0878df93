//! Voices in the lobby through a real sound server (a private PulseAudio with a null
//! sink, as `tests/sound.rs` has): a bot talking to the listener's left is louder on
//! the left, fainter further away, and silent out of earshot.

mod common;

use std::process::Stdio;
use std::time::Duration;

use bevy::prelude::*;
use common::*;
use meetspace::call::SpeakingLevel;
use meetspace::media::{
    AUDIO_SAMPLE_RATE, AudioInput, DeviceChoice, SendSettings, dominant_frequency, rms_level,
};
use meetspace::space::Player;

const SECOND: Duration = Duration::from_secs(1);
/// The talking bot's tone.
const TONE_HZ: f32 = 440.0;

/// A space client that plays what it hears on the sound server's default sink.
fn listener(url: &str) -> App {
    let media = SendSettings {
        width: 320,
        height: 240,
        video_kbps: 300,
        audio_input: AudioInput::Tone,
        ..SendSettings::default()
    };
    let mut config = config(url, "Listener", media);
    config.speaker = Some(DeviceChoice::Default);
    space_client_with(config)
}

/// Puts the listener at `x` on the lobby's arrival line (z = 3.5), facing -z.
fn stand_at(app: &mut App, x: f32) {
    let world = app.world_mut();
    let mut players = world.query::<(&mut Player, &mut Transform)>();
    let (mut player, mut transform) = players.single_mut(world).expect("the player");
    player.place(&mut transform, Vec2::new(x, 3.5), 0.0);
}

#[test]
fn a_voice_in_the_lobby_comes_from_where_the_talker_stands_and_fades_out_of_earshot() {
    let pulse = PulseServer::start();
    // SAFETY: the only test of this binary sets this before it starts any thread of
    // its own; ALSA's PulseAudio plugin reads it when cpal opens a device.
    unsafe { std::env::set_var("PULSE_SERVER", &pulse.server) };
    let server = TestServer::start();
    let mut listener = listener(&server.url);
    assert!(
        pump_until(&mut [&mut listener], 10 * SECOND, |apps| state(apps[0])
            .in_lobby()),
        "the listener did not enter the lobby: {:?}",
        notices(&listener)
    );
    // The talker stands 1.5 m to the listener's left (the listener faces -z).
    let mut talker = lobby_bot_command(&server.url, "Talker")
        .args(["--at", "-1.5,3.5", "--tone-hz", &TONE_HZ.to_string()])
        .args(["--resolution", "320x240", "--duration", "60"])
        .stdout(Stdio::null())
        .spawn()
        .expect("the meetspace binary starts");
    let heard = pump_until(&mut [&mut listener], 20 * SECOND, |apps| {
        let world = apps[0].world_mut();
        let mut levels = world.query::<&SpeakingLevel>();
        levels.iter(world).any(|level| level.0 > 0.05)
    });
    assert!(heard, "the talker was not heard: {:?}", notices(&listener));
    pump_until(&mut [&mut listener], SECOND, |_| false);

    let (left, right) = record_playback(&pulse, &mut [&mut listener], 2 * SECOND);
    let frequency = dominant_frequency(&left, AUDIO_SAMPLE_RATE);
    let (near_left, near_right) = (rms_level(&left), rms_level(&right));
    eprintln!("1.5 m to the left: {frequency:?} Hz, RMS left {near_left:.4} right {near_right:.4}");
    assert!(
        frequency.is_some_and(|hz| (hz - TONE_HZ).abs() < TONE_HZ * 0.02),
        "heard {frequency:?} Hz, expected {TONE_HZ}"
    );
    assert!(
        near_left > 0.01 && near_left > 3.0 * near_right,
        "the talker on the left: left {near_left}, right {near_right}"
    );

    // 3.5 m apart (the listener steps right): half the level (full within 2 m, silent
    // at the 5 m earshot edge), still from the left.
    stand_at(&mut listener, 2.0);
    pump_until(&mut [&mut listener], SECOND / 2, |_| false);
    let (left, right) = record_playback(&pulse, &mut [&mut listener], 2 * SECOND);
    let (far_left, far_right) = (rms_level(&left), rms_level(&right));
    eprintln!("3.5 m to the left: RMS left {far_left:.4} right {far_right:.4}");
    let fallen = far_left / near_left;
    assert!(
        (0.35..0.65).contains(&fallen) && far_left > 3.0 * far_right,
        "at 3.5 m: left {far_left} ({fallen:.2} of the level at 1.5 m), right {far_right}"
    );

    // Out of earshot (7.5 m): silent, and the connection closes.
    stand_at(&mut listener, 6.0);
    pump_until(&mut [&mut listener], SECOND, |_| false);
    let (left, right) = record_playback(&pulse, &mut [&mut listener], 2 * SECOND);
    eprintln!(
        "7.5 m away: RMS left {:.5} right {:.5}",
        rms_level(&left),
        rms_level(&right)
    );
    assert!(
        rms_level(&left) < 0.002 && rms_level(&right) < 0.002,
        "out of earshot must be silent: {} / {}",
        rms_level(&left),
        rms_level(&right)
    );
    let _ = talker.kill();
    let _ = talker.wait();
}
