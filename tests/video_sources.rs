//! Video sources other than the synthetic pattern, through a real call on 127.0.0.1: a
//! y4m file (`--video file:PATH`) is received by the peer frame by frame, in a loop.

mod common;

use std::path::Path;
use std::time::Duration;

use bevy::prelude::*;
use common::*;
use meetspace::call::{Participant, VideoFeed};
use meetspace::media::{SendSettings, Stamp, SyntheticVideo, VideoInput};

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
            capture_micros: meetspace::media::send::wall_clock_micros(),
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
