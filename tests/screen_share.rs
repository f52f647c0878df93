//! Screen sharing, end to end: an X server of the test's own (Xvfb) shows a known
//! picture of coloured blocks; one participant shares that screen, captured by `xcap`
//! and encoded in screen-content mode, as a second video track added to the running
//! connection by renegotiation; the other decodes it, finds the blocks, and keeps
//! receiving the camera meanwhile.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use common::{
    TestServer, client, client_from, config, frames_shown, host_room, join_room, pump_until,
    space_client,
};
use meetspace::call::{CallCommand, CallReport, OwnScreen, SharedScreen, VideoFeed};
use meetspace::config::ClientConfig;
use meetspace::media::{SendSettings, ShareTarget};
use meetspace::space::{WallScreen, wall_screen_size};

/// The test screen's size: the shared frames come at exactly this size.
const SCREEN: (u32, u32) = (640, 480);
/// The picture's blocks: 4 across, 3 down, 160 px square.
const BLOCK: u32 = 160;
const COLOURS: [[u8; 3]; 12] = [
    [220, 30, 30],
    [30, 200, 40],
    [40, 60, 220],
    [240, 220, 40],
    [40, 210, 220],
    [210, 40, 200],
    [245, 245, 245],
    [15, 15, 15],
    [240, 140, 30],
    [110, 40, 160],
    [128, 128, 128],
    [20, 120, 110],
];
/// How far a block's mean colour may be from the drawn one, per channel: VP8 at the
/// share's bitrate and two colour conversions (RGB to BT.601 and back).
const COLOUR_TOLERANCE: i32 = 24;

/// The X server the tests share, with the picture on its root window. `DISPLAY` points
/// at it for the whole process, as `xcap` connects to whatever `DISPLAY` names.
struct TestDisplay {
    _xvfb: Child,
}

/// Starts the test display once, before any test of this binary goes on.
fn display() -> &'static TestDisplay {
    static DISPLAY: OnceLock<TestDisplay> = OnceLock::new();
    DISPLAY.get_or_init(|| {
        let number = free_display_number();
        let name = format!(":{number}");
        let xvfb = Command::new("Xvfb")
            .args([
                &name,
                "-screen",
                "0",
                &format!("{}x{}x24", SCREEN.0, SCREEN.1),
                "-nolisten",
                "tcp",
                // Keep the picture when the last client leaves (by default the server
                // resets, and its root window goes black).
                "-noreset",
            ])
            .spawn()
            .expect("Xvfb starts (setup.sh installs xvfb)");
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "Xvfb {name} did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: set once, while every test of this binary waits on this OnceLock
        // before it starts anything that reads the environment.
        unsafe { std::env::set_var("DISPLAY", &name) };
        let picture = std::env::temp_dir().join(format!("meetspace-share-{number}.png"));
        pattern().save(&picture).expect("the picture is written");
        // It exits with 1 even when it drew the picture (the tests check what arrives).
        Command::new("display")
            .args(["-window", "root"])
            .arg(&picture)
            .status()
            .expect("ImageMagick's display runs (setup.sh installs imagemagick)");
        TestDisplay { _xvfb: xvfb }
    })
}

impl Drop for TestDisplay {
    fn drop(&mut self) {
        let _ = self._xvfb.kill();
    }
}

/// An X display number nobody uses.
fn free_display_number() -> u32 {
    (100 + std::process::id() % 400..)
        .find(|n| {
            !PathBuf::from(format!("/tmp/.X11-unix/X{n}")).exists()
                && !PathBuf::from(format!("/tmp/.X{n}-lock")).exists()
        })
        .expect("a free display number")
}

/// The test picture: [`COLOURS`] in blocks of [`BLOCK`] px, filling the screen.
fn pattern() -> image::RgbaImage {
    image::RgbaImage::from_fn(SCREEN.0, SCREEN.1, |x, y| {
        let [r, g, b] = COLOURS[(y / BLOCK * 4 + x / BLOCK) as usize];
        image::Rgba([r, g, b, 255])
    })
}

/// The newest frame of the screen `app` is shown, and how many it was shown.
fn shared_screen(app: &mut App) -> Option<(u64, Image)> {
    let world = app.world_mut();
    let mut feeds = world.query_filtered::<&VideoFeed, With<SharedScreen>>();
    let feed = feeds.iter(world).next()?;
    let (shown, handle) = (feed.frames_shown, feed.image.clone()?);
    let image = world.resource::<Assets<Image>>().get(&handle)?.clone();
    Some((shown, image))
}

/// What the room's wall shows in `app`: the picture's image and its size in metres.
fn wall(app: &mut App) -> Option<(AssetId<Image>, Vec2)> {
    let world = app.world_mut();
    let mut walls = world.query::<(&WallScreen, &MeshMaterial3d<StandardMaterial>, &Transform)>();
    let (_, material, transform) = walls.iter(world).next()?;
    let (material, size) = (material.0.clone(), transform.scale.truncate());
    let image = world
        .resource::<Assets<StandardMaterial>>()
        .get(&material)?
        .base_color_texture
        .as_ref()?
        .id();
    Some((image, size))
}

/// Checks that `image` is the test picture: its size, and each block's mean colour
/// (its middle half, away from the edges VP8 blurs) within [`COLOUR_TOLERANCE`].
fn assert_pattern(image: &Image) {
    assert_eq!(
        (image.width(), image.height()),
        SCREEN,
        "the shared frame's size"
    );
    let data = image.data.as_ref().expect("the frame has pixels");
    for (index, expected) in COLOURS.iter().enumerate() {
        let (left, top) = ((index as u32 % 4) * BLOCK, (index as u32 / 4) * BLOCK);
        let mut sum = [0u64; 3];
        let mut count = 0u64;
        for y in top + BLOCK / 4..top + BLOCK * 3 / 4 {
            for x in left + BLOCK / 4..left + BLOCK * 3 / 4 {
                let at = ((y * SCREEN.0 + x) * 4) as usize;
                for channel in 0..3 {
                    sum[channel] += u64::from(data[at + channel]);
                }
                count += 1;
            }
        }
        let mean = sum.map(|total| (total / count) as i32);
        let off = (0..3)
            .map(|c| (mean[c] - i32::from(expected[c])).abs())
            .max()
            .unwrap_or(0);
        println!("block {index}: drawn {expected:?}, received {mean:?}");
        assert!(
            off <= COLOUR_TOLERANCE,
            "block {index}: drawn {expected:?}, received {mean:?}"
        );
    }
}

/// A client called `name` that shares the test screen from the start of its calls.
fn sharer(url: &str, name: &str) -> App {
    client_from(ClientConfig {
        share: Some(ShareTarget::Screen(None)),
        ..config(url, name, SendSettings::default())
    })
}

#[test]
fn a_shared_screen_arrives_as_a_second_track_with_its_picture() {
    display();
    let server = TestServer::start();
    let mut viewer = client(&server.url, "viewer");
    let room = host_room(&mut viewer);
    let mut sharer = sharer(&server.url, "sharer");
    join_room(&mut sharer, &room);

    let arrived = pump_until(
        &mut [&mut viewer, &mut sharer],
        Duration::from_secs(30),
        |apps| shared_screen(apps[0]).is_some_and(|(shown, _)| shown >= 5),
    );
    assert!(arrived, "the viewer never showed the shared screen");
    assert_eq!(
        sharer.world().resource::<OwnScreen>().0,
        Some(ShareTarget::Screen(None)),
        "the sharer's app knows what it shares"
    );

    // The camera keeps flowing beside the screen.
    let camera_before = frames_shown(&mut viewer, "sharer").expect("the sharer's panel");
    let (screen_before, _) = shared_screen(&mut viewer).expect("the screen");
    pump_until(
        &mut [&mut viewer, &mut sharer],
        Duration::from_secs(2),
        |_| false,
    );
    let camera_after = frames_shown(&mut viewer, "sharer").expect("the sharer's panel");
    let (screen_after, image) = shared_screen(&mut viewer).expect("the screen");
    println!(
        "in 2 s: {} camera frames, {} screen frames",
        camera_after - camera_before,
        screen_after - screen_before
    );
    assert!(camera_after - camera_before >= 20, "the camera stalled");
    assert!(screen_after > screen_before, "the screen stalled");
    assert_pattern(&image);

    // The viewer's figures name the screen's size.
    let report = viewer.world().resource::<CallReport>().clone();
    let (_, stats) = report
        .peers
        .values()
        .find(|(name, _)| name.as_str() == "sharer")
        .expect("figures for the sharer");
    let screen = stats.screen.expect("screen figures while it is shared");
    println!("screen figures: {screen:?}");
    assert_eq!((screen.width, screen.height), SCREEN);
}

#[test]
fn sharing_starts_stops_and_starts_again_in_one_call_and_the_wall_follows() {
    display();
    let server = TestServer::start();
    let mut sharer = client(&server.url, "sharer");
    let room = host_room(&mut sharer);
    // The viewer has the space: the screen goes on its room's wall.
    let mut viewer = space_client(&server.url, "viewer");
    join_room(&mut viewer, &room);
    assert!(
        pump_until(
            &mut [&mut viewer, &mut sharer],
            Duration::from_secs(20),
            |apps| { frames_shown(apps[0], "sharer").is_some_and(|shown| shown >= 10) }
        ),
        "the call never showed the sharer's camera"
    );

    for round in 1..=2 {
        let started = Instant::now();
        sharer
            .world_mut()
            .write_message(CallCommand::ShareScreen(Some(ShareTarget::Screen(None))));
        assert!(
            pump_until(
                &mut [&mut viewer, &mut sharer],
                Duration::from_secs(15),
                |apps| { shared_screen(apps[0]).is_some_and(|(shown, _)| shown >= 3) }
            ),
            "round {round}: the screen never showed"
        );
        println!(
            "round {round}: the screen showed after {:?}",
            started.elapsed()
        );
        assert_pattern(&shared_screen(&mut viewer).expect("the screen").1);
        pump_until(
            &mut [&mut viewer, &mut sharer],
            Duration::from_millis(200),
            |_| false,
        );
        let feed_image = {
            let world = viewer.world_mut();
            let mut feeds = world.query_filtered::<&VideoFeed, With<SharedScreen>>();
            feeds
                .iter(world)
                .next()
                .and_then(|feed| feed.image.as_ref().map(Handle::id))
        };
        let (on_wall, size) = wall(&mut viewer).expect("the screen is on the wall");
        assert_eq!(
            Some(on_wall),
            feed_image,
            "the wall shows the shared screen"
        );
        assert_eq!(
            size,
            wall_screen_size(SCREEN.0, SCREEN.1),
            "sized to its aspect ratio"
        );

        let stopped = Instant::now();
        sharer
            .world_mut()
            .write_message(CallCommand::ShareScreen(None));
        assert!(
            pump_until(
                &mut [&mut viewer, &mut sharer],
                Duration::from_secs(15),
                |apps| { shared_screen(apps[0]).is_none() }
            ),
            "round {round}: the screen stayed after sharing stopped"
        );
        println!(
            "round {round}: the screen went after {:?}",
            stopped.elapsed()
        );
        assert_eq!(sharer.world().resource::<OwnScreen>().0, None);
        pump_until(
            &mut [&mut viewer, &mut sharer],
            Duration::from_millis(200),
            |_| false,
        );
        assert!(wall(&mut viewer).is_none(), "the wall is empty again");
    }
    // The camera went on through all of it.
    let before = frames_shown(&mut viewer, "sharer").expect("the sharer's panel");
    pump_until(
        &mut [&mut viewer, &mut sharer],
        Duration::from_secs(1),
        |_| false,
    );
    let after = frames_shown(&mut viewer, "sharer").expect("the sharer's panel");
    assert!(
        after > before + 10,
        "the camera stalled: {before} -> {after}"
    );
}

#[test]
fn two_people_sharing_at_once_both_see_the_other() {
    display();
    let server = TestServer::start();
    let mut first = client(&server.url, "first");
    let room = host_room(&mut first);
    let mut second = client(&server.url, "second");
    join_room(&mut second, &room);
    assert!(
        pump_until(
            &mut [&mut first, &mut second],
            Duration::from_secs(20),
            |apps| {
                frames_shown(apps[0], "second").is_some_and(|shown| shown >= 10)
                    && frames_shown(apps[1], "first").is_some_and(|shown| shown >= 10)
            }
        ),
        "the call never connected"
    );
    // Both change their tracks in the same instant: the reoffers cross, and the
    // answerer of the first exchange gives way.
    for app in [&mut first, &mut second] {
        app.world_mut()
            .write_message(CallCommand::ShareScreen(Some(ShareTarget::Screen(None))));
    }
    assert!(
        pump_until(
            &mut [&mut first, &mut second],
            Duration::from_secs(20),
            |apps| {
                shared_screen(apps[0]).is_some_and(|(shown, _)| shown >= 3)
                    && shared_screen(apps[1]).is_some_and(|(shown, _)| shown >= 3)
            }
        ),
        "crossing reoffers left someone without the other's screen"
    );
}
