//! Screen sharing, end to end: an X server of the test's own (Xvfb, with openbox as
//! its window manager) shows a known picture of coloured blocks and small text on its
//! root window, and a window with other blocks beside it; one participant shares the
//! screen or the window, captured by `xcap` and encoded in screen-content mode, as a
//! second video track added to the running connection by renegotiation; the other
//! decodes it, finds the blocks, and keeps receiving the camera meanwhile.

mod common;
mod display;

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use common::{
    TestServer, bot_command, client, client_from, config, frames_shown, host_room, join_room,
    pump_until, space_client,
};
use display::TestDisplay;
use meetspace::call::{CallCommand, CallReport, OwnScreen, ShareQuestion, SharedScreen, VideoFeed};
use meetspace::config::ClientConfig;
use meetspace::media::screen_capture::share_sources;
use meetspace::media::{SendSettings, ShareTarget, SignPainter, SignStyle, Thumbnail};
use meetspace::signaling::server::ServerLimits;
use meetspace::space::{WallScreen, wall_screen_size};

/// The test screen's size: a shared screen arrives at exactly this size.
const SCREEN: (u32, u32) = (1280, 480);
/// The root window's picture, tiled across the screen: blocks over a band of text.
const PICTURE: (u32, u32) = (640, 480);
/// The side of a block, in pixels.
const BLOCK: u32 = 160;
/// The picture's blocks, 4 across and 2 down.
const COLOURS: [[u8; 3]; 8] = [
    [220, 30, 30],
    [30, 200, 40],
    [40, 60, 220],
    [240, 220, 40],
    [40, 210, 220],
    [210, 40, 200],
    [128, 128, 128],
    [20, 120, 110],
];
/// Under the blocks, a band of small black text on white: 10 lines, about 12 px high.
const TEXT_TOP: u32 = 2 * BLOCK;
const TEXT_LINES: [&str; 10] = [
    "The quarterly figures: revenue 4,812,330 EUR (+3.1%), costs 4,102,975 EUR.",
    "Open issues: 17 (speed), 13 (people), 16 (SFU), 18 (screen share) - see board.",
    "Next review: Thursday 14:30 in room 2B; bring the signed-off deployment plan.",
    "Latency p50 79 ms, p95 118 ms; join-to-first-frame measured on loopback only.",
    "function share(target) { return capture(target).encode({ content: 'screen' }); }",
    "Action items: Ana - budget draft; Ben - TURN tests; Chen - wall screen layout.",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ ;:,.!?()[]",
    "Risks: cold build 68 min > 60 min goal; xcap pulls PipeWire and Wayland crates.",
    "Decision log #42: keep VP8 for now, revisit AV1 screen tools after the SFU work.",
    "Contact: meetspace-dev@example.org, +49 30 1234567, https://example.org/notes",
];
/// Lowest PSNR of the text band after a few seconds of sharing, in dB.
const TEXT_PSNR_MIN: f64 = 35.0;
/// The window's picture: 3 blocks across, 2 down, in colours of its own.
const WINDOW_COLOURS: [[u8; 3]; 6] = [
    [250, 130, 20],
    [100, 30, 150],
    [245, 245, 245],
    [15, 15, 15],
    [60, 160, 60],
    [200, 60, 90],
];
/// Where the window stands: on the right half of the screen, clear of the picture the
/// screen tests check.
const WINDOW_AT: (u32, u32) = (760, 60);
/// How far a block's mean colour may be from the drawn one, per channel: VP8 at the
/// share's bitrate and two colour conversions (RGB to BT.601 and back).
const COLOUR_TOLERANCE: i32 = 24;

/// Starts the test display once, before any test of this binary goes on, and points
/// `DISPLAY` at it for the whole process (`xcap` connects to whatever it names), with
/// openbox and the test window on it. The processes are kept here until the process
/// ends (the server goes within a second of it, with its clients).
fn display() {
    static DISPLAY: OnceLock<(TestDisplay, Vec<Child>)> = OnceLock::new();
    DISPLAY.get_or_init(|| {
        let display = TestDisplay::start(SCREEN, &pattern());
        // SAFETY: set once, while every test of this binary waits on this OnceLock
        // before it starts anything that reads the environment.
        unsafe { std::env::set_var("DISPLAY", &display.name) };
        // A window manager that lists the windows (_NET_CLIENT_LIST_STACKING), as
        // desktops do, and a window on it, opened once openbox runs (`--startup`): a
        // window mapped while openbox starts can stay unmanaged, and so unlisted.
        let window = std::env::temp_dir().join(format!(
            "meetspace-window-{}.png",
            display.name.trim_start_matches(':')
        ));
        window_pattern()
            .save(&window)
            .expect("the window's picture is written");
        let open_window = format!(
            "display -geometry +{}+{} {}",
            WINDOW_AT.0,
            WINDOW_AT.1,
            window.display()
        );
        let processes = vec![
            Command::new("openbox")
                .args(["--startup", &open_window])
                .stderr(Stdio::null())
                .spawn()
                .expect("openbox starts (setup.sh installs it), and ImageMagick's display on it"),
        ];
        // Listed once openbox manages it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !window_shown() {
            assert!(Instant::now() < deadline, "the test window never showed");
            std::thread::sleep(Duration::from_millis(100));
        }
        (display, processes)
    });
}

/// Whether the test window is listed for sharing.
fn window_shown() -> bool {
    share_sources().is_ok_and(|sources| {
        sources
            .iter()
            .any(|source| matches!(source.target, ShareTarget::Window(_)))
    })
}

/// The root window's picture: [`COLOURS`] in blocks of [`BLOCK`] px, then
/// [`TEXT_LINES`] in a band under them.
fn pattern() -> image::RgbaImage {
    let band = text_band();
    image::RgbaImage::from_fn(PICTURE.0, PICTURE.1, |x, y| {
        if y >= TEXT_TOP {
            return *band.get_pixel(x, y - TEXT_TOP);
        }
        let [r, g, b] = COLOURS[(y / BLOCK * 4 + x / BLOCK) as usize];
        image::Rgba([r, g, b, 255])
    })
}

/// The window's picture: [`WINDOW_COLOURS`] in blocks of [`BLOCK`] px.
fn window_pattern() -> image::RgbaImage {
    image::RgbaImage::from_fn(3 * BLOCK, 2 * BLOCK, |x, y| {
        let [r, g, b] = WINDOW_COLOURS[(y / BLOCK * 3 + x / BLOCK) as usize];
        image::Rgba([r, g, b, 255])
    })
}

/// The band of small text, as drawn.
fn text_band() -> image::RgbaImage {
    let height = PICTURE.1 - TEXT_TOP;
    let pixels = SignPainter::new().expect("the built-in font").rgba(
        &TEXT_LINES,
        PICTURE.0,
        height,
        SignStyle {
            background: [255, 255, 255, 255],
            text: [0, 0, 0, 255],
        },
    );
    image::RgbaImage::from_raw(PICTURE.0, height, pixels).expect("a whole band")
}

/// The PSNR of the text band of `frame` (the shared screen, whose top left shows the
/// picture) against the band as drawn, over R, G and B.
fn text_psnr(frame: &image::RgbaImage) -> f64 {
    let band = text_band();
    let mut squared_error = 0.0;
    let mut samples = 0.0;
    for (x, y, drawn) in band.enumerate_pixels() {
        let received = frame.get_pixel(x, y + TEXT_TOP);
        for channel in 0..3 {
            let error = f64::from(received[channel]) - f64::from(drawn[channel]);
            squared_error += error * error;
            samples += 1.0;
        }
    }
    10.0 * (255.0 * 255.0 / (squared_error / samples).max(1e-9)).log10()
}

/// The newest frame of the screen `app` is shown, and how many it was shown.
fn shared_screen(app: &mut App) -> Option<(u64, image::RgbaImage)> {
    let world = app.world_mut();
    let mut feeds = world.query_filtered::<&VideoFeed, With<SharedScreen>>();
    let feed = feeds.iter(world).next()?;
    let (shown, handle) = (feed.frames_shown, feed.image.clone()?);
    let image = world.resource::<Assets<Image>>().get(&handle)?;
    let frame = image::RgbaImage::from_raw(image.width(), image.height(), image.data.clone()?)?;
    Some((shown, frame))
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

/// Checks that `frame` shows `colours` in blocks of [`BLOCK`] px, `across` to a row,
/// from its top left: each block's mean colour (its middle half, away from the edges
/// VP8 blurs) within [`COLOUR_TOLERANCE`].
fn assert_blocks(frame: &image::RgbaImage, colours: &[[u8; 3]], across: u32) {
    for (index, expected) in colours.iter().enumerate() {
        let (left, top) = (
            (index as u32 % across) * BLOCK,
            (index as u32 / across) * BLOCK,
        );
        let mut sum = [0u64; 3];
        let mut count = 0u64;
        for y in top + BLOCK / 4..top + BLOCK * 3 / 4 {
            for x in left + BLOCK / 4..left + BLOCK * 3 / 4 {
                let pixel = frame.get_pixel(x, y);
                for channel in 0..3 {
                    sum[channel] += u64::from(pixel[channel]);
                }
                count += 1;
            }
        }
        let mean = sum.map(|total| (total / count) as i32);
        let off = (0..3)
            .map(|c| (mean[c] - i32::from(expected[c])).abs())
            .max()
            .unwrap_or(0);
        assert!(
            off <= COLOUR_TOLERANCE,
            "block {index}: drawn {expected:?}, received {mean:?}"
        );
    }
}

/// Checks that `frame` is the shared test screen: its size and the picture's blocks.
fn assert_pattern(frame: &image::RgbaImage) {
    assert_eq!(frame.dimensions(), SCREEN, "the shared screen's size");
    assert_blocks(frame, &COLOURS, 4);
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

    // Small text stays readable once the picture settled, at the bitrate congestion
    // control keeps on a clean link.
    pump_until(
        &mut [&mut viewer, &mut sharer],
        Duration::from_secs(3),
        |_| false,
    );
    let (_, image) = shared_screen(&mut viewer).expect("the screen");
    let psnr = text_psnr(&image);
    let report = viewer.world().resource::<CallReport>().clone();
    let kbps = report
        .peers
        .values()
        .find_map(|(name, stats)| (name.as_str() == "sharer").then_some(stats.screen?.kbps));
    println!("12 px text: PSNR {psnr:.1} dB at {kbps:?} kbit/s received");
    assert!(psnr > TEXT_PSNR_MIN, "12 px text arrived at {psnr:.1} dB");
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
    // A room that shows two screens at once.
    let server = TestServer::with_limits(ServerLimits {
        room_sharers: 2,
        ..ServerLimits::default()
    });
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

#[test]
fn a_second_sharer_is_asked_and_taking_over_moves_the_wall() {
    display();
    let server = TestServer::start();
    let mut first = client(&server.url, "first");
    let room = host_room(&mut first);
    let mut second = client(&server.url, "second");
    join_room(&mut second, &room);
    let share = || CallCommand::ShareScreen(Some(ShareTarget::Screen(None)));
    first.world_mut().write_message(share());
    assert!(
        pump_until(
            &mut [&mut first, &mut second],
            Duration::from_secs(20),
            |apps| shared_screen(apps[1]).is_some_and(|(shown, _)| shown >= 3)
        ),
        "the first share never showed"
    );

    // The room shows one screen: the second sharer is asked instead of shown.
    second.world_mut().write_message(share());
    assert!(
        pump_until(
            &mut [&mut first, &mut second],
            Duration::from_secs(10),
            |apps| apps[1].world().resource::<ShareQuestion>().0.is_some()
        ),
        "the second sharer was never asked"
    );
    let question = second.world().resource::<ShareQuestion>().0.clone();
    assert_eq!(
        question
            .as_deref()
            .map(|names| names.iter().map(ToString::to_string).collect()),
        Some(vec!["first".to_owned()])
    );
    assert_eq!(second.world().resource::<OwnScreen>().0, None);
    assert!(
        shared_screen(&mut first).is_none(),
        "a refused share went out anyway"
    );

    let asked = Instant::now();
    second
        .world_mut()
        .write_message(CallCommand::TakeOverScreen);
    assert!(
        pump_until(
            &mut [&mut first, &mut second],
            Duration::from_secs(20),
            |apps| {
                apps[0].world().resource::<OwnScreen>().0.is_none()
                    && shared_screen(apps[0]).is_some_and(|(shown, _)| shown >= 3)
                    && apps[1].world().resource::<OwnScreen>().0.is_some()
            }
        ),
        "taking over did not move the wall"
    );
    println!(
        "the wall went from the first sharer to the second in {:?}",
        asked.elapsed()
    );
    pump_until(
        &mut [&mut first, &mut second],
        Duration::from_millis(500),
        |_| false,
    );
    assert!(
        shared_screen(&mut second).is_none(),
        "the first share stayed on after the take-over"
    );
}

#[test]
fn the_picker_lists_the_screen_and_the_window_with_thumbnails_of_what_they_show() {
    display();
    let sources = share_sources().expect("the test display lists its sources");
    let pixel = |thumbnail: &Thumbnail, x: u32, y: u32| -> [u8; 3] {
        let at = ((y * thumbnail.width + x) * 4) as usize;
        [
            thumbnail.rgba[at],
            thumbnail.rgba[at + 1],
            thumbnail.rgba[at + 2],
        ]
    };
    let near = |seen: [u8; 3], drawn: [u8; 3]| {
        seen.iter()
            .zip(drawn)
            .all(|(&a, b)| (i32::from(a) - i32::from(b)).abs() <= COLOUR_TOLERANCE)
    };
    let screen = sources
        .iter()
        .find(|source| matches!(source.target, ShareTarget::Screen(_)))
        .and_then(|source| source.thumbnail.as_ref())
        .expect("the screen, with a thumbnail");
    // 1280x480 scaled by 1/8: the blocks are 20 px.
    assert_eq!((screen.width, screen.height), (Thumbnail::MAX_WIDTH, 60));
    let seen = pixel(screen, 10, 10);
    assert!(
        near(seen, COLOURS[0]),
        "the screen's first block shows as {seen:?}"
    );
    let window = sources
        .iter()
        .find(|source| matches!(source.target, ShareTarget::Window(_)) && source.width == 3 * BLOCK)
        .and_then(|source| source.thumbnail.as_ref())
        .expect("the test window, with a thumbnail");
    // 480x320 scaled to 90 px high: the blocks are 45 px.
    assert_eq!((window.width, window.height), (135, Thumbnail::MAX_HEIGHT));
    let seen = pixel(window, 22, 22);
    assert!(
        near(seen, WINDOW_COLOURS[0]),
        "the window's first block shows as {seen:?}"
    );
}

/// A child process that is killed when the test ends, however it ends.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_bot_shares_a_window_and_another_bot_saves_it_at_the_window_size() {
    use std::io::BufRead;
    display();
    let server = TestServer::start();
    let saved = std::env::temp_dir().join(format!("meetspace-saved-{}.png", std::process::id()));
    let _ = std::fs::remove_file(&saved);
    // The test window is ImageMagick's: no title, its program's name is "Display-...".
    let mut sharer = bot_command(&server.url, "sharer")
        .args(["--create", "--share", "window:Display", "--duration", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the sharing bot starts");
    let mut first_line = String::new();
    std::io::BufReader::new(sharer.stdout.take().expect("its stdout"))
        .read_line(&mut first_line)
        .expect("the sharing bot says its room");
    let _sharer = Process(sharer);
    let room = first_line
        .strip_prefix("room ")
        .unwrap_or_else(|| panic!("the bot's first line was {first_line:?}"))
        .trim()
        .to_owned();
    let _viewer = Process(
        bot_command(&server.url, "viewer")
            .args(["--room", &room, "--duration", "30", "--save-screen"])
            .arg(&saved)
            .spawn()
            .expect("the viewing bot starts"),
    );
    let window = (3 * BLOCK, 2 * BLOCK);
    let deadline = Instant::now() + Duration::from_secs(30);
    let frame = loop {
        let frame = image::open(&saved).ok().map(|frame| frame.to_rgba8());
        if let Some(frame) = frame.filter(|frame| frame.dimensions() == window) {
            break frame;
        }
        assert!(
            Instant::now() < deadline,
            "the viewing bot never saved the window at {window:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_blocks(&frame, &WINDOW_COLOURS, 3);
}
