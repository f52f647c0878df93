//! The 3D space renders participants' video: the real `meetspace` window under Xvfb
//! with Mesa's software renderer, in a public room with two `meetspace bot`s, captured
//! with ImageMagick's `import`; the bots' colour bars must show on the panels.
//!
//! Needs Xvfb, a Vulkan or GL driver (mesa-vulkan-drivers) and ImageMagick. Without a
//! usable adapter the client exits and the test fails saying so; it never skips.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;

/// Size of the virtual screen; the client's window is smaller and sits inside it.
const SCREEN: (usize, usize) = (1280, 720);
/// How long the client gets to join, connect and show video.
const DEADLINE: Duration = Duration::from_secs(60);
/// Pixels of each bar colour that must show outside the overlay.
const MIN_PIXELS: usize = 300;

/// A child process, killed when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Xvfb on the first free display from :90; returns it and its name.
fn start_xvfb() -> (Killed, String) {
    for number in 90..130 {
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
        let lock = PathBuf::from(format!("/tmp/.X{number}-lock"));
        if socket.exists() || lock.exists() {
            continue;
        }
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
                return (Killed(xvfb), display);
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

fn meetspace() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meetspace"));
    command
        .env_remove("MEETSPACE_SIGNAL")
        .env_remove("MEETSPACE_NAME");
    command
}

/// A bot that creates the public room "Demo"; returns it with the room's id.
fn hosting_bot(url: &str) -> (Killed, String) {
    let mut child = meetspace()
        .args(["bot", "--signal", url, "--create", "--public", "Demo"])
        .args(["--name", "Alice"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start meetspace bot");
    let mut first_line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut first_line)
        .expect("reading the bot's first line");
    let room = first_line
        .strip_prefix("room ")
        .unwrap_or_else(|| panic!("the bot's first line was {first_line:?}"))
        .trim()
        .to_owned();
    (Killed(child), room)
}

/// Captures the whole X screen into `png`; returns its pixels, RGB, row by row.
fn capture(display: &str, png: &Path) -> Vec<u8> {
    let status = Command::new("import")
        .args(["-window", "root"])
        .arg(png)
        .env("DISPLAY", display)
        .status()
        .expect("cannot run `import` (install imagemagick)");
    assert!(status.success(), "import failed: {status}");
    let pixels = image::open(png)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", png.display()))
        .into_rgb8()
        .into_raw();
    assert_eq!(
        pixels.len(),
        SCREEN.0 * SCREEN.1 * 3,
        "unexpected capture size"
    );
    pixels
}

/// Counts of yellow, cyan and magenta pixels (the test pattern's bars, as the scene's
/// tone mapping leaves them) in columns from `from_x` rightwards.
fn bar_pixels(rgb: &[u8], from_x: usize) -> [usize; 3] {
    let mut counts = [0; 3];
    for (index, pixel) in rgb.chunks_exact(3).enumerate() {
        if index % SCREEN.0 < from_x {
            continue;
        }
        let [r, g, b] = [pixel[0], pixel[1], pixel[2]].map(i32::from);
        let strong = |a: i32, b: i32| a > 110 && b > 110 && (a - b).abs() < 40;
        if strong(r, g) && b < 90 {
            counts[0] += 1;
        } else if strong(g, b) && r < 100 {
            counts[1] += 1;
        } else if strong(r, b) && g < 90 {
            counts[2] += 1;
        }
    }
    counts
}

#[test]
fn video_panels_render_in_the_room() {
    let (_xvfb, display) = start_xvfb();
    let server = TestServer::start();
    let (_alice, room) = hosting_bot(&server.url);
    let _bob = Killed(
        meetspace()
            .args(["bot", "--signal", &server.url, "--room", &room])
            .args(["--name", "Bob", "--tone-hz", "660"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the second bot"),
    );
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("space_screenshot_client.log");
    let log_file = std::fs::File::create(&log).expect("creating the client's log");
    let mut client = Killed(
        meetspace()
            .args(["--signal", &server.url, "--room", &room, "--name", "Viewer"])
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("cannot start the meetspace client"),
    );

    let png = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("space_screenshot.png");
    // The overlay (egui) shows the same video at the left; count only the 3D scene.
    let from_x = SCREEN.0 * 2 / 5;
    let started = Instant::now();
    let mut counts = [0; 3];
    std::thread::sleep(Duration::from_secs(8));
    while started.elapsed() < DEADLINE {
        if let Some(status) = client.0.try_wait().expect("polling the client") {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = output.lines().rev().take(30).collect::<Vec<_>>().join("\n");
            let no_adapter = ["adapter", "GPU", "Vulkan", "wgpu"]
                .iter()
                .any(|word| output.contains(word));
            panic!(
                "the client exited ({status}) before showing video{}; last lines, newest \
                 first:\n{tail}",
                if no_adapter {
                    ": no usable Vulkan/GL adapter? (install mesa-vulkan-drivers)"
                } else {
                    ""
                }
            );
        }
        counts = bar_pixels(&capture(&display, &png), from_x);
        if counts.iter().all(|&count| count >= MIN_PIXELS) {
            println!("screenshot: {} (bar pixels {counts:?})", png.display());
            return;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!(
        "no video panels within {DEADLINE:?}: yellow/cyan/magenta pixels {counts:?}, need \
         {MIN_PIXELS} each; see {} and {}",
        png.display(),
        log.display()
    );
}
