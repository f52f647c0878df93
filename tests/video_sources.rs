//! Video sources other than the synthetic pattern, through a real call on 127.0.0.1: a
//! y4m file (`--video file:PATH`) is received by the peer frame by frame, in a loop;
//! the source is switched mid-call without a new negotiation; a missing camera is a
//! one-line error for the bot, and the placeholder (the name on a colour) with a notice
//! in the client, as is a source lost mid-call.

mod common;

use std::path::Path;
use std::time::Duration;

use bevy::prelude::*;
use common::*;
use meetspace::call::{CallCommand, Participant, SelfView, VideoFeed};
use meetspace::media::{
    DeviceChoice, SendSettings, Stamp, SyntheticVideo, VideoInput, placeholder_colour,
};

/// Frames in the test file.
const FILE_FRAMES: u32 = 12;

/// Writes `frames` frames of 320x240, each the synthetic pattern stamped with its index,
/// so that the receiver can read back which frame of the file it shows.
fn write_stamped_y4m(path: &Path, frames: u32) {
    let pattern = SyntheticVideo::new(320, 240).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = y4m::encode(320, 240, y4m::Ratio::new(30, 1))
        .with_colorspace(y4m::Colorspace::C420jpeg)
        .write_header(file)
        .unwrap();
    for seq in 0..frames {
        let frame = pattern.render(Stamp {
            seq,
            capture_micros: meetspace::media::synthetic::wall_clock_micros(),
        });
        writer
            .write_frame(&y4m::Frame::new([&frame.y, &frame.u, &frame.v], None))
            .unwrap();
    }
}

/// The sequence number stamped on the frame `app` shows for `name`.
fn shown_seq(app: &mut App, name: &str) -> Option<u32> {
    let world = app.world_mut();
    let mut query = world.query::<(&Participant, &VideoFeed)>();
    query
        .iter(world)
        .find(|(participant, _)| participant.name.as_str() == name)
        .and_then(|(_, feed)| feed.stamp)
        .map(|stamp| stamp.seq)
}

/// Whether the newest frame on `feed` is `name`'s placeholder: unstamped, and its
/// corner is `name`'s colour.
fn is_placeholder(world: &World, feed: &VideoFeed, name: &str) -> bool {
    let Some(image) = feed
        .image
        .as_ref()
        .and_then(|handle| world.resource::<Assets<Image>>().get(handle))
    else {
        return false;
    };
    let Some(pixels) = image.data.as_ref() else {
        return false;
    };
    let corner = &pixels[(8 * image.width() as usize + 8) * 4..][..3];
    let colour = placeholder_colour(name);
    feed.stamp.is_none()
        && corner
            .iter()
            .zip(colour)
            .all(|(got, want)| got.abs_diff(want) <= 10)
}

/// Whether `viewer` shows `name`'s placeholder on `name`'s panel.
fn shows_placeholder_of(viewer: &mut App, name: &str) -> bool {
    let world = viewer.world_mut();
    let mut query = world.query::<(&Participant, &VideoFeed)>();
    let world = viewer.world();
    query.iter(world).any(|(participant, feed)| {
        participant.name.as_str() == name && is_placeholder(world, feed, name)
    })
}

/// Whether `app`'s self-view shows its own placeholder, `name` on its colour.
fn self_view_shows_placeholder(app: &mut App, name: &str) -> bool {
    let world = app.world_mut();
    let mut query = world.query_filtered::<&VideoFeed, With<SelfView>>();
    let world = app.world();
    query
        .iter(world)
        .any(|feed| is_placeholder(world, feed, name))
}

/// Whether Bob (`apps[1]`) shows Alice's placeholder and Alice (`apps[0]`) sees it in
/// her self-view.
fn alice_shows_her_placeholder(apps: &mut [&mut App]) -> bool {
    shows_placeholder_of(apps[1], "Alice") && self_view_shows_placeholder(apps[0], "Alice")
}

#[test]
fn a_y4m_file_is_received_frame_by_frame_in_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.y4m");
    write_stamped_y4m(&path, FILE_FRAMES);

    let server = TestServer::start();
    // The file is 320x240; the settings ask for 640x480: the file's size wins.
    let from_file = SendSettings {
        fps: 30,
        video_kbps: 300,
        video_input: VideoInput::File(path),
        ..SendSettings::default()
    };
    let mut alice = client_with(&server.url, "Alice", from_file);
    let mut bob = client(&server.url, "Bob");
    let room = host_room(&mut alice);
    join_room(&mut bob, &room);

    let mut seqs = Vec::new();
    let looped = pump_until(
        &mut [&mut alice, &mut bob],
        Duration::from_secs(40),
        |apps| {
            if let Some(seq) = shown_seq(apps[1], "Alice")
                && seqs.last() != Some(&seq)
            {
                seqs.push(seq);
            }
            seqs.windows(2).filter(|pair| pair[1] < pair[0]).count() >= 3
        },
    );
    assert!(
        looped,
        "Bob did not see the file loop three times: {seqs:?}; {:?}",
        notices(&alice)
    );
    assert!(
        seqs.iter().all(|&seq| seq < FILE_FRAMES),
        "a frame that is not in the file: {seqs:?}"
    );
    // Between two wraps the stamps only go up, and most frames of the file show.
    let steps_up = seqs.windows(2).filter(|pair| pair[1] > pair[0]).count();
    let wraps = seqs.windows(2).filter(|pair| pair[1] < pair[0]).count();
    assert!(
        steps_up >= wraps * (FILE_FRAMES as usize / 2),
        "too few frames of the file shown between wraps: {seqs:?}"
    );
    let distinct: std::collections::BTreeSet<u32> = seqs.iter().copied().collect();
    assert!(
        distinct.len() as u32 >= FILE_FRAMES * 3 / 4,
        "only frames {distinct:?} of {FILE_FRAMES} shown"
    );
    println!("file frames shown at the peer, in order: {seqs:?}");

    assert!(
        open_captures(&alice) >= 1,
        "the file is not counted as an open capture"
    );
    leave(&mut alice);
    assert_capture_stopped(&mut alice);
}

/// On a machine without a camera (as these are), asking the bot for one fails at once
/// with one line that says what is missing and what there is.
#[test]
fn bot_with_a_missing_camera_fails_with_one_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_meetspace"))
        .args([
            "bot",
            "--signal",
            "ws://127.0.0.1:9",
            "--create",
            "--camera",
            "0",
        ])
        .output()
        .expect("the meetspace binary runs");
    assert!(!output.status.success(), "the bot started without a camera");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].contains("no camera \"0\"; available: "),
        "unexpected message: {stderr}"
    );
    println!("{}", lines[0]);
}

/// The synthetic pattern at 640x480 switched to the 320x240 file mid-call: the peer
/// goes on receiving on the same track, now the file's frames at the file's size.
#[test]
fn the_video_source_switches_mid_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switch.y4m");
    write_stamped_y4m(&path, FILE_FRAMES);

    let server = TestServer::start();
    let mut alice = client(&server.url, "Alice");
    let mut bob = client(&server.url, "Bob");
    let room = host_room(&mut alice);
    join_room(&mut bob, &room);
    let synthetic = pump_until(
        &mut [&mut alice, &mut bob],
        Duration::from_secs(30),
        |apps| shown_seq(apps[1], "Alice").is_some_and(|seq| seq > FILE_FRAMES * 2),
    );
    assert!(synthetic, "Bob never saw Alice's synthetic video");

    alice
        .world_mut()
        .write_message(CallCommand::SwitchVideo(VideoInput::File(path)));
    let mut seqs = Vec::new();
    let switched = pump_until(
        &mut [&mut alice, &mut bob],
        Duration::from_secs(30),
        |apps| {
            if let Some(seq) = shown_seq(apps[1], "Alice")
                && seqs.last() != Some(&seq)
            {
                seqs.push(seq);
            }
            seqs.iter()
                .rev()
                .take(FILE_FRAMES as usize * 2)
                .all(|&seq| seq < FILE_FRAMES)
                && seqs.len() > FILE_FRAMES as usize * 2
        },
    );
    assert!(
        switched,
        "the file's frames did not replace the pattern: {seqs:?}"
    );
    let world = bob.world_mut();
    let size = world
        .query::<(&Participant, &VideoFeed)>()
        .iter(world)
        .find(|(participant, _)| participant.name.as_str() == "Alice")
        .and_then(|(_, feed)| feed.image.clone());
    let images = world.resource::<Assets<Image>>();
    let image = images.get(&size.expect("Alice's video shows")).unwrap();
    assert_eq!(
        (image.width(), image.height()),
        (320, 240),
        "the file's size"
    );
    leave(&mut alice);
    assert_capture_stopped(&mut alice);
}

/// A file that disappears mid-call fails at its end: the placeholder takes its place,
/// the user is told, and the peer goes on receiving.
#[test]
fn a_source_lost_mid_call_falls_back_and_the_call_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vanishing.y4m");
    write_stamped_y4m(&path, FILE_FRAMES);
    let server = TestServer::start();
    let from_file = SendSettings {
        video_input: VideoInput::File(path.clone()),
        ..SendSettings::default()
    };
    let mut alice = client_with(&server.url, "Alice", from_file);
    let mut bob = client(&server.url, "Bob");
    let room = host_room(&mut alice);
    join_room(&mut bob, &room);
    let from_file = pump_until(
        &mut [&mut alice, &mut bob],
        Duration::from_secs(30),
        |apps| shown_seq(apps[1], "Alice").is_some(),
    );
    assert!(from_file, "Bob never saw the file");
    std::fs::remove_file(&path).unwrap();

    let fell_back = pump_until(
        &mut [&mut alice, &mut bob],
        Duration::from_secs(30),
        alice_shows_her_placeholder,
    );
    assert!(fell_back, "the placeholder did not replace the lost file");
    let told = format!("{:?}", notices(&alice));
    assert!(told.contains("video file stopped"), "not told: {told}");
    assert_eq!(room_of(&alice), Some(room), "the call must go on");
}

/// A client asked for a camera that is not there (none is, on these machines) joins
/// all the same: it sends the placeholder, shows it in its self-view, and says why.
#[test]
fn a_missing_camera_sends_the_placeholder_and_says_why() {
    let server = TestServer::start();
    let no_camera = SendSettings {
        video_input: VideoInput::Camera(DeviceChoice::Named("0".to_owned())),
        ..SendSettings::default()
    };
    let mut alice = client_with(&server.url, "Alice", no_camera);
    let mut bob = client(&server.url, "Bob");
    let room = host_room(&mut alice);
    join_room(&mut bob, &room);
    let shown = pump_until(
        &mut [&mut alice, &mut bob],
        Duration::from_secs(30),
        alice_shows_her_placeholder,
    );
    assert!(
        shown,
        "the placeholder is not on Bob's panel and Alice's self-view"
    );
    let told = format!("{:?}", notices(&alice));
    assert!(
        told.contains("others see your name instead") && told.contains("no camera"),
        "not told: {told}"
    );
    leave(&mut alice);
    assert_capture_stopped(&mut alice);
}
