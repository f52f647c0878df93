//! The 3D space renders participants' live video: the real `meetspace` window under
//! Xvfb with Mesa's software renderer, in the demo room with its three bots, saving two
//! screenshots through Bevy's screenshot API (`--screenshot a.png --screenshot b.png
//! --frames N`). Inside every panel's video screen, at the rectangle the client projects
//! from the panel's transform and the camera (the JSON next to each PNG), the bots'
//! colour bars must show, the screen must not be mostly black, and the two screenshots
//! must differ (the moving box and the stamp band), so a black, missing or frozen
//! panel fails. The viewer asks for camera 0, which these machines lack: its self-view
//! must show the placeholder (its name on its colour) and a toast must have said why.
//!
//! In the lobby, a bot walking across the view must show as an avatar whose face (found
//! the same way, from its transform) carries the bot's live video in both screenshots,
//! and has moved between them.
//!
//! Needs Xvfb and a Vulkan or GL driver (mesa-vulkan-drivers). Without a usable adapter
//! the client exits and the test fails saying so; it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use image::RgbImage;
use meetspace::media::placeholder_colour;
use serde_json::Value;

/// Size of the virtual screen; the client's window (1280x720) fills it.
const SCREEN: (usize, usize) = (1280, 720);
/// How long the client gets to join, show video, take both screenshots and exit. It
/// waits at most 120 s for video itself; software rendering of the frames after that
/// is slow on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(420);
/// Frames before the first screenshot and between the two (at the light profile's
/// 7-10 fps under llvmpipe, time for the missing camera's toast to fade).
const FRAMES: u32 = 50;
/// The windowed client's display name.
const VIEWER: &str = "Viewer";
/// The bots of `--demo`.
const BOTS: [&str; 3] = ["Demo bot 1", "Demo bot 2", "Demo bot 3"];
/// Fraction of each side of a panel's rectangle left out before checking its pixels
/// (the edges blend with the frame around the screen).
const INSET: f32 = 0.08;
/// Share of a panel's pixels that each checked bar colour must cover (a bar is 1/8 of
/// the pattern's width over about 3/4 of its height).
const MIN_BAR_SHARE: f64 = 0.02;
/// Largest share of near-black pixels a live panel may have (its black bar and the
/// dark end of the grey ramp make about a sixth).
const MAX_DARK_SHARE: f64 = 0.4;
/// Share of a panel's pixels that must change between the two screenshots.
const MIN_CHANGED_SHARE: f64 = 0.003;

/// The test pattern's bars as the scene renders them (unlit screen material, the
/// camera's default tone mapping), measured from a screenshot under Mesa's lavapipe:
/// name and sRGB value. White, black and the grey ramp are left out (the room has
/// those too).
const BAR_COLOURS: [(&str, [u8; 3]); 6] = [
    ("yellow", [167, 164, 45]),
    ("cyan", [55, 164, 166]),
    ("green", [37, 164, 26]),
    ("magenta", [166, 45, 166]),
    ("red", [177, 23, 17]),
    ("blue", [0, 28, 175]),
];
/// How far (largest channel difference) a pixel may be from a bar colour to count.
const COLOUR_TOLERANCE: i32 = 30;

/// Held by each test: two software-rendered windows at once would starve each other
/// on a 2-core machine.
static ONE_WINDOW_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits for the other tests' window to close.
fn one_window() -> std::sync::MutexGuard<'static, ()> {
    ONE_WINDOW_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A child process, killed when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An Xvfb server, stopped when the test ends with SIGTERM, so that it removes its
/// lock file and socket (a killed one leaves them, and the display looks taken).
struct Xvfb(Child);

impl Drop for Xvfb {
    fn drop(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while stopped && Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether display `number` is free: no lock file, or one left by a server that is
/// gone (then the lock and the socket are removed).
fn display_free(number: u32) -> bool {
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
    let lock = PathBuf::from(format!("/tmp/.X{number}-lock"));
    let Ok(owner) = std::fs::read_to_string(&lock) else {
        return !socket.exists();
    };
    let alive = owner
        .trim()
        .parse::<u32>()
        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    if alive {
        return false;
    }
    let _ = std::fs::remove_file(&lock);
    let _ = std::fs::remove_file(&socket);
    true
}

/// Starts Xvfb on the first free display from :90; returns it and its name.
fn start_xvfb() -> (Xvfb, String) {
    for number in 90..130 {
        if !display_free(number) {
            continue;
        }
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
        let display = format!(":{number}");
        let screen = format!("{}x{}x24", SCREEN.0, SCREEN.1);
        let mut xvfb = match Command::new("Xvfb")
            .args([
                display.as_str(),
                "-screen",
                "0",
                &screen,
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => panic!("cannot run Xvfb (install the xvfb package): {error}"),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if socket.exists() {
                return (Xvfb(xvfb), display);
            }
            if xvfb.try_wait().ok().flatten().is_some() {
                break; // lost a race for this display; try the next
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = xvfb.kill();
        let _ = xvfb.wait();
    }
    panic!("no free X display between :90 and :129 for Xvfb");
}

/// The last lines of the client's log, newest first.
fn log_tail(log: &Path) -> String {
    let output = std::fs::read_to_string(log).unwrap_or_default();
    output.lines().rev().take(30).collect::<Vec<_>>().join("\n")
}

/// Runs the windowed client with `args` until it exits by itself (after its
/// screenshots).
fn run_client(display: &str, args: &[&str], shots: [&Path; 2], log: &Path) {
    let log_file = std::fs::File::create(log).expect("creating the client's log");
    let mut client = Killed(
        Command::new(env!("CARGO_BIN_EXE_meetspace"))
            .env_remove("MEETSPACE_SIGNAL")
            .env_remove("MEETSPACE_NAME")
            .args(["--name", VIEWER, "--frames", &FRAMES.to_string()])
            .args(args)
            .arg("--screenshot")
            .arg(shots[0])
            .arg("--screenshot")
            .arg(shots[1])
            .env("DISPLAY", display)
            .env_remove("WAYLAND_DISPLAY")
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("cannot start the meetspace client"),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = client.0.try_wait().expect("polling the client") {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the client did not save its screenshots within {DEADLINE:?}; last lines of {}, \
             newest first:\n{}",
            log.display(),
            log_tail(log)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let no_gpu = status.code() == Some(2);
        panic!(
            "the client exited with {status}{}; last lines of {}, newest first:\n{}",
            if no_gpu {
                ": no usable Vulkan/GL adapter (install mesa-vulkan-drivers)"
            } else {
                ""
            },
            log.display(),
            log_tail(log)
        );
    }
}

fn load_png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
        .into_rgb8()
}

fn load_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

/// A panel of a screenshot's JSON: its rectangle in window pixels and frames shown.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PanelInfo {
    rect: [f32; 4],
    frames_shown: u64,
}

/// The panel showing `name`, from a screenshot's JSON.
fn panel(info: &Value, name: &str, json: &Path) -> PanelInfo {
    let panels = info["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{} has no panels list", json.display()));
    let entry = panels
        .iter()
        .find(|panel| panel["name"] == name)
        .unwrap_or_else(|| panic!("{} has no panel for {name:?}: {info}", json.display()));
    let rect = entry["rect"]
        .as_array()
        .filter(|rect| rect.len() == 4)
        .unwrap_or_else(|| panic!("{name:?}'s screen is not in view in {}", json.display()));
    let rect: Vec<f32> = rect.iter().map(|v| v.as_f64().unwrap() as f32).collect();
    PanelInfo {
        rect: [rect[0], rect[1], rect[2], rect[3]],
        frames_shown: entry["frames_shown"].as_u64().unwrap_or(0),
    }
}

/// The pixel coordinates inside `rect` shrunk by [`INSET`], clipped to the image.
fn inner_pixels(rect: [f32; 4], image: &RgbImage) -> Vec<(u32, u32)> {
    let [x0, y0, x1, y1] = rect;
    let (dx, dy) = ((x1 - x0) * INSET, (y1 - y0) * INSET);
    let clip = |v: f32, max: u32| (v.max(0.0) as u32).min(max);
    let (x0, x1) = (clip(x0 + dx, image.width()), clip(x1 - dx, image.width()));
    let (y0, y1) = (clip(y0 + dy, image.height()), clip(y1 - dy, image.height()));
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .collect()
}

fn near(pixel: [u8; 3], colour: [u8; 3]) -> bool {
    pixel
        .iter()
        .zip(colour)
        .all(|(a, b)| (i32::from(*a) - i32::from(b)).abs() <= COLOUR_TOLERANCE)
}

/// Checks that `rect` of `image` shows the test pattern's colour bars and is not
/// mostly black; returns a line describing it, or why it shows no video.
fn check_video(name: &str, image: &RgbImage, rect: [f32; 4]) -> Result<String, String> {
    let pixels = inner_pixels(rect, image);
    if pixels.len() < 2000 {
        return Err(format!(
            "{name}: its screen covers only {} pixels at {rect:?}",
            pixels.len()
        ));
    }
    let total = pixels.len() as f64;
    let mut bars = [0usize; BAR_COLOURS.len()];
    let mut dark = 0usize;
    for &(x, y) in &pixels {
        let pixel = image.get_pixel(x, y).0;
        for (count, (_, colour)) in bars.iter_mut().zip(BAR_COLOURS) {
            if near(pixel, colour) {
                *count += 1;
            }
        }
        if pixel.iter().all(|&channel| channel < 30) {
            dark += 1;
        }
    }
    let shares: Vec<String> = BAR_COLOURS
        .iter()
        .zip(bars)
        .map(|((colour, _), count)| format!("{colour} {:.1}%", 100.0 * count as f64 / total))
        .collect();
    let line = format!(
        "{name}: {} px at {:?}; {}; dark {:.1}%",
        pixels.len(),
        rect.map(|v| v.round()),
        shares.join(", "),
        100.0 * dark as f64 / total,
    );
    let missing: Vec<&str> = BAR_COLOURS
        .iter()
        .zip(bars)
        .filter(|(_, count)| (*count as f64) < MIN_BAR_SHARE * total)
        .map(|((colour, _), _)| *colour)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{line}\n  -> no video: too few {} pixels (need {:.0}% each)",
            missing.join("/"),
            100.0 * MIN_BAR_SHARE
        ));
    }
    if dark as f64 > MAX_DARK_SHARE * total {
        return Err(format!("{line}\n  -> the screen is mostly black"));
    }
    Ok(line)
}

/// Checks one panel's pixels in the first screenshot and what changed in the second
/// (the panel standing where it stood); returns a line describing it, or why it fails.
fn check_panel(
    name: &str,
    first: (&RgbImage, PanelInfo),
    second: (&RgbImage, PanelInfo),
) -> Result<String, String> {
    let (a, info_a) = first;
    let (b, info_b) = second;
    let moved = info_a
        .rect
        .iter()
        .zip(info_b.rect)
        .any(|(p, q)| (p - q).abs() > 1.0);
    if moved {
        return Err(format!(
            "{name}: the panel moved between the screenshots ({:?} then {:?})",
            info_a.rect, info_b.rect
        ));
    }
    let video = check_video(name, a, info_a.rect)?;
    let pixels = inner_pixels(info_a.rect, a);
    let changed = pixels
        .iter()
        .filter(|&&(x, y)| {
            let difference: i32 = a
                .get_pixel(x, y)
                .0
                .iter()
                .zip(b.get_pixel(x, y).0)
                .map(|(p, q)| (i32::from(*p) - i32::from(q)).abs())
                .sum();
            difference > 60
        })
        .count();
    let total = pixels.len() as f64;
    let line = format!(
        "{video}; changed {:.2}%; frames shown {} then {}",
        100.0 * changed as f64 / total,
        info_a.frames_shown,
        info_b.frames_shown,
    );
    if (changed as f64) < MIN_CHANGED_SHARE * total {
        return Err(format!(
            "{line}\n  -> frozen: the two screenshots hardly differ inside the panel"
        ));
    }
    if info_b.frames_shown <= info_a.frames_shown {
        return Err(format!(
            "{line}\n  -> frozen: no new frames between the two"
        ));
    }
    Ok(line)
}

/// The viewer has no camera: a toast said so, and the self-view shows the placeholder,
/// one colour for most of its pixels, nearer the viewer's placeholder colour than any
/// other (the scene's tone mapping shifts colours, so the nearest is what counts).
fn check_placeholder_self_view(image: &RgbImage, info: &Value) -> String {
    let toasts = info["toasts"].to_string();
    assert!(
        toasts.contains("others see your name instead"),
        "no toast said the camera is missing: {toasts}"
    );
    let rect: Vec<f32> = info["self_view"]
        .as_array()
        .unwrap_or_else(|| panic!("the self-view is not showing: {info}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let pixels = inner_pixels([rect[0], rect[1], rect[2], rect[3]], image);
    assert!(
        pixels.len() > 500,
        "the self-view covers {} pixels",
        pixels.len()
    );
    let mut colours: Vec<[u8; 3]> = pixels
        .iter()
        .map(|&(x, y)| image.get_pixel(x, y).0)
        .collect();
    colours.sort_unstable_by_key(|c| c.iter().map(|&v| u32::from(v)).sum::<u32>());
    let median = colours[colours.len() / 2];
    let flat = colours
        .iter()
        .filter(|c| c.iter().zip(median).all(|(a, b)| a.abs_diff(b) <= 12))
        .count();
    let distance = |colour: [u8; 4]| -> u32 {
        (0..3)
            .map(|c| u32::from(colour[c].abs_diff(median[c])).pow(2))
            .sum()
    };
    let own = placeholder_colour(VIEWER);
    let others = [
        "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi",
    ]
    .map(placeholder_colour);
    let line = format!(
        "self-view: {} px, {:.0}% near {median:?}; the viewer's placeholder colour {own:?}",
        pixels.len(),
        100.0 * flat as f64 / colours.len() as f64
    );
    assert!(flat * 2 > colours.len(), "{line}: not one flat colour");
    for other in others.into_iter().filter(|other| *other != own) {
        assert!(
            distance(own) < distance(other),
            "{line}: nearer {other:?} than the viewer's colour"
        );
    }
    line
}

/// Fails unless the picture has some variety (not one flat colour).
fn assert_not_blank(image: &RgbImage, path: &Path) {
    let mut colours: Vec<[u8; 3]> = image
        .pixels()
        .step_by(97)
        .map(|pixel| pixel.0.map(|c| c & 0xF0))
        .collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(
        colours.len() >= 20,
        "{} is blank: only {} distinct colours",
        path.display(),
        colours.len()
    );
}

#[test]
fn video_panels_render_live_in_the_demo_room() {
    let _window = one_window();
    let (_xvfb, display) = start_xvfb();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("space_screenshot");
    std::fs::create_dir_all(&dir).expect("creating the output folder");
    let shots = [dir.join("first.png"), dir.join("second.png")];
    for shot in &shots {
        let _ = std::fs::remove_file(shot);
        let _ = std::fs::remove_file(shot.with_extension("json"));
    }
    let log = dir.join("client.log");
    // No camera (the self-view shows the placeholder) and no sound device, as on this
    // machine: said so, the sound devices' toasts do not cover the self-view.
    let demo = ["--demo", "room", "--video", "camera:0", "--audio", "none"];
    run_client(&display, &demo, [&shots[0], &shots[1]], &log);

    let images = shots.each_ref().map(|shot| load_png(shot));
    let infos = shots
        .each_ref()
        .map(|shot| load_json(&shot.with_extension("json")));
    for ((image, info), shot) in images.iter().zip(&infos).zip(&shots) {
        assert_eq!(
            (image.width(), image.height()),
            (
                info["window"][0].as_u64().unwrap_or(0) as u32,
                info["window"][1].as_u64().unwrap_or(0) as u32
            ),
            "{}: the PNG's size is not the window's",
            shot.display()
        );
        assert_not_blank(image, shot);
        let panels = info["panels"].as_array().map_or(0, Vec::len);
        assert_eq!(panels, BOTS.len(), "{}: panels {info}", shot.display());
    }

    let mut report = Vec::new();
    let mut failures = Vec::new();
    for name in BOTS {
        let first = panel(&infos[0], name, &shots[0].with_extension("json"));
        let second = panel(&infos[1], name, &shots[1].with_extension("json"));
        match check_panel(name, (&images[0], first), (&images[1], second)) {
            Ok(line) => report.push(line),
            Err(line) => failures.push(line),
        }
    }
    println!("{}", report.join("\n"));
    println!("{}", check_placeholder_self_view(&images[0], &infos[0]));
    assert!(
        failures.is_empty(),
        "panels without live video (screenshots {} and {}, log {}):\n{}",
        shots[0].display(),
        shots[1].display(),
        log.display(),
        failures.join("\n")
    );
}

#[test]
fn a_walking_avatar_carries_live_video_in_the_lobby() {
    let _window = one_window();
    let (_xvfb, display) = start_xvfb();
    let server = common::TestServer::start();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lobby_screenshot");
    std::fs::create_dir_all(&dir).expect("creating the output folder");
    let shots = [dir.join("first.png"), dir.join("second.png")];
    for shot in &shots {
        let _ = std::fs::remove_file(shot);
        let _ = std::fs::remove_file(shot.with_extension("json"));
    }
    // The viewer arrives at (0, 3.5) facing -z; the bot walks to and fro across its
    // view, 3.5 m ahead, slowly enough to stay in view between the screenshots.
    let to_and_fro = ["-1.5,0", "1.5,0"].repeat(6).join(";");
    let _bot = Killed(
        common::lobby_bot_command(&server.url, "Walker")
            .args(["--at", "1.5,0", "--walk-to", &to_and_fro, "--speed", "0.3"])
            .args(["--resolution", "320x240", "--duration", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the bot"),
    );
    let log = dir.join("client.log");
    let args = ["--signal", &server.url, "--wait-for-people", "1"];
    run_client(&display, &args, [&shots[0], &shots[1]], &log);

    let images = shots.each_ref().map(|shot| load_png(shot));
    let infos = shots
        .each_ref()
        .map(|shot| load_json(&shot.with_extension("json")));
    let first = panel(&infos[0], "Walker", &shots[0].with_extension("json"));
    let second = panel(&infos[1], "Walker", &shots[1].with_extension("json"));
    let mut lines = Vec::new();
    for (image, info, shot) in [
        (&images[0], first, &shots[0]),
        (&images[1], second, &shots[1]),
    ] {
        assert_not_blank(image, shot);
        match check_video("Walker", image, info.rect) {
            Ok(line) => lines.push(line),
            Err(why) => panic!("{} (log {}): {why}", shot.display(), log.display()),
        }
    }
    let centre = |rect: [f32; 4]| ((rect[0] + rect[2]) / 2.0, (rect[1] + rect[3]) / 2.0);
    let (a, b) = (centre(first.rect), centre(second.rect));
    println!(
        "{}\nthe avatar's face moved from {a:?} to {b:?}; frames shown {} then {}",
        lines.join("\n"),
        first.frames_shown,
        second.frames_shown
    );
    assert!(
        (a.0 - b.0).abs() > 3.0,
        "the avatar did not move between the screenshots: {a:?} then {b:?}"
    );
    assert!(
        second.frames_shown > first.frames_shown,
        "its video froze: {} then {} frames",
        first.frames_shown,
        second.frames_shown
    );
}
