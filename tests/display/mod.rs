//! An X server of the test's own (Xvfb) showing a known picture on its root window, for
//! the tests that share a screen: `xcap` captures whatever `DISPLAY` names.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Xvfb. Its server goes away within a second of the test process (a
/// watchdog shell waits for it), so a test that panics leaves nothing behind.
pub struct TestDisplay {
    /// `:N`, what `DISPLAY` is set to.
    pub name: String,
    _server: Child,
}

impl TestDisplay {
    /// Starts Xvfb at `size`, with `picture` tiled on its root window.
    pub fn start(size: (u32, u32), picture: &image::RgbaImage) -> Self {
        let number = free_display_number();
        let name = format!(":{number}");
        // -noreset: keep the picture when the last client leaves (by default the
        // server resets, and its root window goes black).
        let server = format!(
            "Xvfb {name} -screen 0 {}x{}x24 -nolisten tcp -noreset & server=$!; \
             while kill -0 {} 2>/dev/null; do sleep 1; done; kill $server",
            size.0,
            size.1,
            std::process::id()
        );
        let server = Command::new("sh")
            .args(["-c", &server])
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts (setup.sh installs xvfb)");
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "Xvfb {name} did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        let file = std::env::temp_dir().join(format!("meetspace-share-{number}.png"));
        picture.save(&file).expect("the picture is written");
        // It exits with 1 even when it drew the picture (the tests check what arrives).
        Command::new("display")
            .args(["-window", "root"])
            .arg(&file)
            .env("DISPLAY", &name)
            .status()
            .expect("ImageMagick's display runs (setup.sh installs imagemagick)");
        Self {
            name,
            _server: server,
        }
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
