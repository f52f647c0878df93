//! Audio through a real sound server with no hardware: a private PulseAudio daemon
//! with a null sink, a call between two headless clients, the listener playing the
//! other's tone through cpal (ALSA's PulseAudio plugin) into the sink, and the sink's
//! monitor recorded with `parec` and measured.
//!
//! One test in this binary on purpose: it points the process at its daemon through
//! `PULSE_SERVER` before any other thread exists.

mod common;

use std::f32::consts::FRAC_PI_4;
use std::time::Duration;

use bevy::prelude::*;
use common::*;
use meetspace::call::{
    AudioMix, CallCommand, MediaState, OwnMediaState, OwnSpeakingLevel, SpeakingLevel,
};
use meetspace::media::{
    AUDIO_SAMPLE_RATE, AudioInput, DeviceChoice, SendSettings, dominant_frequency, rms_level,
};
use meetspace::space::{Location, Player};

const SECOND: Duration = Duration::from_secs(1);
/// The talker's tone.
const TONE_HZ: f32 = 440.0;

fn small_video(tone_hz: f32) -> SendSettings {
    SendSettings {
        width: 320,
        height: 240,
        video_kbps: 300,
        tone_hz,
        ..SendSettings::default()
    }
}

/// A headless client with the space (its player is the listener), playing on the
/// default speaker and capturing from the default microphone (the sink's monitor).
fn listener(url: &str) -> App {
    let mut config = config(
        url,
        "Listener",
        SendSettings {
            audio_input: AudioInput::Microphone(DeviceChoice::Default),
            ..small_video(660.0)
        },
    );
    config.speaker = Some(DeviceChoice::Default);
    space_client_with(config)
}

fn set_yaw(app: &mut App, yaw: f32) {
    let world = app.world_mut();
    let mut players = world.query::<&mut Player>();
    players.single_mut(world).unwrap().yaw = yaw;
}

/// What `app` knows of its one peer's microphone and camera.
fn peer_media(app: &mut App) -> Option<MediaState> {
    let world = app.world_mut();
    let mut query = world.query::<&MediaState>();
    query.iter(world).next().copied()
}

#[test]
fn the_remote_tone_plays_into_the_sound_server_placed_where_its_panel_stands() {
    let pulse = PulseServer::start();
    // SAFETY: the only test of this binary sets this before it starts any thread of
    // its own; ALSA's PulseAudio plugin reads it when cpal opens a device.
    unsafe { std::env::set_var("PULSE_SERVER", &pulse.server) };

    let server = TestServer::start();
    let mut talker = client_with(&server.url, "Talker", small_video(TONE_HZ));
    let room = host_room(&mut talker);
    let mut listener = listener(&server.url);
    join_room(&mut listener, &room);
    let heard = pump_until(&mut [&mut talker, &mut listener], 30 * SECOND, |apps| {
        let world = apps[1].world_mut();
        let mut levels = world.query::<&SpeakingLevel>();
        levels.iter(world).any(|level| level.0 > 0.05)
    });
    assert!(
        heard,
        "no audio reached the listener: {:?}",
        notices(&listener)
    );
    assert_eq!(
        open_captures(&listener),
        2,
        "the listener's synthetic video and its microphone are open"
    );
    // The microphone (the sink's monitor) is live: our own level moves.
    assert!(
        pump_until(&mut [&mut talker, &mut listener], 5 * SECOND, |apps| {
            apps[1].world().resource::<OwnSpeakingLevel>().0 > 0.0
        }),
        "nothing came from the microphone"
    );

    // The panel straight ahead: the tone on both channels alike.
    let (left, right) = record_playback(&pulse, &mut [&mut talker, &mut listener], 2 * SECOND);
    let frequency = dominant_frequency(&left, AUDIO_SAMPLE_RATE);
    assert!(
        frequency.is_some_and(|hz| (hz - TONE_HZ).abs() < TONE_HZ * 0.02),
        "heard {frequency:?} Hz, expected {TONE_HZ}"
    );
    let (l, r) = (rms_level(&left), rms_level(&right));
    eprintln!("ahead: {frequency:?} Hz, RMS left {l:.4} right {r:.4}");
    assert!(
        l > 0.01 && (l / r - 1.0).abs() < 0.1,
        "ahead: left {l}, right {r}"
    );

    // Turned 45° to the right: the panel is front-left. Equal-power panning at
    // pan = -sin 45° gives left/right = cot(π/4 · (1 - 1/√2)) ≈ 4.3.
    set_yaw(&mut listener, -FRAC_PI_4);
    pump_until(&mut [&mut talker, &mut listener], SECOND / 2, |_| false);
    let (left, right) = record_playback(&pulse, &mut [&mut talker, &mut listener], 2 * SECOND);
    let ratio = rms_level(&left) / rms_level(&right);
    let expected = 1.0 / (FRAC_PI_4 * (1.0 - std::f32::consts::FRAC_1_SQRT_2)).tan();
    eprintln!("front-left: left/right {ratio:.3}, expected {expected:.3}");
    assert!(
        (ratio / expected - 1.0).abs() < 0.15,
        "left/right {ratio:.2}, expected {expected:.2}"
    );

    // Spatial audio off: the plain mix, both sides alike again.
    listener
        .world_mut()
        .resource_mut::<meetspace::space::SpatialAudio>()
        .enabled = false;
    pump_until(&mut [&mut talker, &mut listener], SECOND / 2, |_| false);
    let (left, right) = record_playback(&pulse, &mut [&mut talker, &mut listener], 2 * SECOND);
    let ratio = rms_level(&left) / rms_level(&right);
    eprintln!("plain mix: left/right {ratio:.3}");
    assert!(
        (ratio - 1.0).abs() < 0.1,
        "plain mix: left/right {ratio:.2}"
    );
    listener
        .world_mut()
        .resource_mut::<meetspace::space::SpatialAudio>()
        .enabled = true;

    // Behind the walls, in the lobby: the room's voices are not heard.
    *listener.world_mut().resource_mut::<Location>() = Location::Lobby;
    pump_until(&mut [&mut talker, &mut listener], SECOND / 2, |_| false);
    let (left, right) = record_playback(&pulse, &mut [&mut talker, &mut listener], 2 * SECOND);
    eprintln!(
        "lobby: RMS left {:.5} right {:.5}",
        rms_level(&left),
        rms_level(&right)
    );
    assert!(
        rms_level(&left) < 0.002 && rms_level(&right) < 0.002,
        "another room must be silent: {} / {}",
        rms_level(&left),
        rms_level(&right)
    );
    // The voice still arrives (and lights its ring); it is only not played.
    let world = listener.world_mut();
    let mut participants = world.query::<&meetspace::call::Participant>();
    let talker_id = participants.single(world).unwrap().peer_id.to_string();
    let level = world.resource::<AudioMix>().level(&talker_id);
    assert!(level > 0.05, "the talker's level behind the wall: {level}");

    // The microphone is unplugged mid-call: the listener is muted and told, the talker
    // sees the mute, and the call goes on.
    pulse.unplug_sink();
    let muted = pump_until(&mut [&mut talker, &mut listener], 10 * SECOND, |apps| {
        !apps[1].world().resource::<OwnMediaState>().audio
            && peer_media(apps[0]).is_some_and(|media| !media.audio)
    });
    assert!(
        muted,
        "the lost microphone did not mute the listener: {:?}",
        notices(&listener)
    );
    let told = format!("{:?}", notices(&listener));
    assert!(told.contains("your microphone stopped"), "not told: {told}");
    assert_eq!(room_of(&listener), Some(room), "the call must go on");
    assert_eq!(
        open_captures(&listener),
        1,
        "only the video source is open now"
    );

    // Another source picked (as the overlay's Devices section does: the test tone) and
    // unmuted: the talker hears the listener again.
    listener
        .world_mut()
        .write_message(CallCommand::SwitchMicrophone(AudioInput::Tone));
    listener
        .world_mut()
        .write_message(CallCommand::SetMicrophone(true));
    let heard_again = pump_until(&mut [&mut talker, &mut listener], 10 * SECOND, |apps| {
        let reopened = open_captures(apps[1]) == 2;
        let world = apps[0].world_mut();
        let mut levels = world.query::<&SpeakingLevel>();
        reopened && levels.iter(world).any(|level| level.0 > 0.05)
    });
    assert!(heard_again, "the new microphone did not reach the talker");

    leave(&mut listener);
    assert_capture_stopped(&mut listener);
}
