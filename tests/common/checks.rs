//! Checks of what a headless client shows: decoded frames, their pixels against the
//! synthetic source, tones heard. Shared by the call tests of every signaling backend.

use std::time::Duration;

use bevy::prelude::*;
use meetspace::call::{MediaState, Participant, VideoFeed};
use meetspace::media::convert::i420_to_rgba;
use meetspace::media::{CallStats, SendSettings, SyntheticVideo};

use super::{notices, pump_until};

pub const SECOND: Duration = Duration::from_secs(1);

/// Small frames keep several calls at once affordable on a 2-core machine.
pub fn settings(tone_hz: f32) -> SendSettings {
    SendSettings {
        width: 320,
        height: 240,
        fps: 30,
        video_kbps: 300,
        tone_hz,
        ..SendSettings::default()
    }
}

/// What `app` shows of the participant called `name`.
pub struct Seen {
    pub stats: Option<CallStats>,
    pub media: MediaState,
    pub frames_shown: u64,
    pub stamp_seq: Option<u32>,
}

pub fn seen(app: &mut App, name: &str) -> Option<Seen> {
    let world = app.world_mut();
    let mut query = world.query::<(&Participant, Option<&CallStats>, &MediaState, &VideoFeed)>();
    query
        .iter(world)
        .find(|(participant, ..)| participant.name.as_str() == name)
        .map(|(_, stats, media, feed)| Seen {
            stats: stats.cloned(),
            media: *media,
            frames_shown: feed.frames_shown,
            stamp_seq: feed.stamp.map(|stamp| stamp.seq),
        })
}

pub fn frames_decoded(app: &mut App, name: &str) -> u64 {
    seen(app, name)
        .and_then(|seen| seen.stats)
        .map_or(0, |stats| stats.frames_decoded)
}

/// Mean absolute RGB difference between the image `app` shows for `name` and the frame
/// the synthetic source rendered for the same stamp.
pub fn difference_from_source(app: &mut App, name: &str) -> f64 {
    let world = app.world_mut();
    let mut query = world.query::<(&Participant, &VideoFeed)>();
    let (handle, stamp) = query
        .iter(world)
        .find(|(participant, _)| participant.name.as_str() == name)
        .and_then(|(_, feed)| Some((feed.image.clone()?, feed.stamp?)))
        .expect("a stamped frame is shown");
    let images = world.resource::<Assets<Image>>();
    let image = images.get(&handle).expect("the image exists");
    let shown = image.data.as_ref().expect("the image has pixels");
    let source = SyntheticVideo::new(image.width(), image.height())
        .unwrap()
        .render(stamp);
    let mut expected = Vec::new();
    i420_to_rgba(&source, &mut expected).unwrap();
    assert_eq!(shown.len(), expected.len());
    let total: u64 = shown
        .chunks_exact(4)
        .zip(expected.chunks_exact(4))
        .map(|(a, b)| (0..3).map(|c| u64::from(a[c].abs_diff(b[c]))).sum::<u64>())
        .sum();
    total as f64 / (shown.len() / 4 * 3) as f64
}

pub fn tone_of(app: &mut App, name: &str) -> Option<f32> {
    seen(app, name)?.stats?.audio_tone_hz
}

pub fn audio_packets(app: &mut App, name: &str) -> u64 {
    seen(app, name)
        .and_then(|seen| seen.stats)
        .map_or(0, |stats| stats.audio_packets)
}

pub fn close_to(measured: Option<f32>, expected: f32) -> bool {
    measured.is_some_and(|hz| (hz - expected).abs() <= expected * 0.05)
}

/// Asserts a working two-way call between `alice` (sending [`settings`]`(440.0)`) and
/// `bob` (sending `settings(660.0)`), each showing the other under those names: 60
/// decoded frames each way with increasing stamps, pixels matching the source within
/// VP8's tolerance, and each other's tone.
pub fn assert_alice_and_bob_see_and_hear_each_other(alice: &mut App, bob: &mut App) {
    // Watch the stamps Bob sees go by while waiting for 60 decoded frames each way.
    let mut seqs_at_bob = Vec::new();
    let decoded = pump_until(&mut [&mut *alice, &mut *bob], 30 * SECOND, |apps| {
        if let Some(seq) = seen(apps[1], "Alice").and_then(|seen| seen.stamp_seq)
            && seqs_at_bob.last() != Some(&seq)
        {
            seqs_at_bob.push(seq);
        }
        frames_decoded(apps[0], "Bob") >= 60 && frames_decoded(apps[1], "Alice") >= 60
    });
    assert!(
        decoded,
        "alice got {} frames, bob {}: {:?} / {:?}",
        frames_decoded(alice, "Bob"),
        frames_decoded(bob, "Alice"),
        notices(alice),
        notices(bob)
    );
    assert!(
        seqs_at_bob.len() > 10,
        "too few distinct frames shown: {seqs_at_bob:?}"
    );
    assert!(
        seqs_at_bob.windows(2).all(|pair| pair[0] < pair[1]),
        "stamped sequence numbers must increase: {seqs_at_bob:?}"
    );

    // The pixels shown are the pixels sent, within VP8's tolerance. For scale: a
    // neighbouring frame of the pattern differs by far more than this bound.
    let at_bob = difference_from_source(bob, "Alice");
    let at_alice = difference_from_source(alice, "Bob");
    assert!(
        at_bob < 8.0 && at_alice < 8.0,
        "mean RGB error {at_bob:.2} / {at_alice:.2}"
    );

    // Audio both ways, each the sender's own tone.
    let heard = pump_until(&mut [&mut *alice, &mut *bob], 10 * SECOND, |apps| {
        close_to(tone_of(apps[0], "Bob"), 660.0) && close_to(tone_of(apps[1], "Alice"), 440.0)
    });
    assert!(
        heard,
        "tones heard: alice {:?}, bob {:?}",
        tone_of(alice, "Bob"),
        tone_of(bob, "Alice")
    );
    assert!(audio_packets(alice, "Bob") > 50 && audio_packets(bob, "Alice") > 50);
    let stats = seen(bob, "Alice").unwrap().stats.unwrap();
    assert_eq!(
        (stats.width, stats.height, stats.video_codec),
        (320, 240, "VP8")
    );
    assert!(stats.latency_ms_p50.is_some() && stats.first_frame_ms.is_some());
}
