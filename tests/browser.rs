//! The browser build end to end in real headless Chromium: `meetspace serve` hosts the
//! page and the signaling, a native `meetspace bot` creates a room, and
//! tests/browser/e2e.mjs (playwright-core) opens the room link in one or two tabs.
//!
//! Builds the bundle from the current source first (`scripts/build-web.sh`, once per run;
//! the wasm target and wasm-bindgen-cli come from setup.sh) and installs playwright-core
//! when it is missing (`npm ci --prefix tests/browser`); Chromium comes from setup.sh.
//! Each test fails with the command that installs what is missing.

mod display;
mod janus;
mod nat;

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

use display::TestDisplay;
use nat::{Home, Lab};

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the serve process may take to say where it listens.
const SERVE_START: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program` in the repository and fails the test, with `help`, unless it succeeds.
fn run_step(program: &str, args: &[&str], help: &str) {
    let status = Command::new(program)
        .args(args)
        .current_dir(repo())
        .status()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}; {help}"));
    assert!(
        status.success(),
        "{program} {args:?} failed ({status}); {help}"
    );
}

/// The bundle, built once per test run from the current source.
fn web_root() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        run_step(
            "scripts/build-web.sh",
            &[],
            "it needs `rustup target add wasm32-unknown-unknown` and \
             `cargo install wasm-bindgen-cli --version <the wasm-bindgen crate's>` (setup.sh does both)",
        );
    });
    repo().join(meetspace::config::DEFAULT_WEB_ROOT)
}

/// One Chromium at a time: software WebGL on a small machine is slow enough alone.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// Checks that Chromium and playwright-core are installed, then waits for the browser.
fn check_tools() -> MutexGuard<'static, ()> {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: install it with `apt-get install chromium` (setup.sh does)"
    );
    let guard = ONE_BROWSER.lock().unwrap_or_else(PoisonError::into_inner);
    if !repo()
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        run_step(
            "npm",
            &["ci", "--prefix", "tests/browser", "--no-audit", "--no-fund"],
            "playwright-core comes from the npm registry (Node.js and npm from setup.sh)",
        );
    }
    guard
}

/// A child process killed (and reaped) when the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn meetspace() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meetspace"));
    command
        .env_remove("MEETSPACE_SIGNAL")
        .env_remove("MEETSPACE_NAME");
    command
}

/// `meetspace serve --web-root` on a free port of 127.0.0.1; returns it and its
/// address (HOST:PORT).
fn serve() -> (Running, String) {
    serve_with(&[])
}

/// [`serve`] with `extra` flags.
fn serve_with(extra: &[&str]) -> (Running, String) {
    let mut child = meetspace()
        .args(["serve", "--listen", "127.0.0.1:0", "--web-root"])
        .arg(web_root())
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start meetspace serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let (found_tx, found) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // The test's captured output: shown when it fails.
            eprintln!("server: {line}");
            if let Some(rest) = line.split("listening at ws://").nth(1) {
                let address = rest.trim_end_matches("/ws").trim().to_owned();
                let _ = found_tx.send(address);
            }
        }
    });
    let address = found
        .recv_timeout(SERVE_START)
        .expect("meetspace serve did not say where it listens");
    (Running(child), address)
}

/// A bot that creates a room and stays until stopped, writing its figures to `stats`.
fn hosting_bot(address: &str, stats: &Path) -> (Running, String) {
    hosting_bot_from(meetspace(), address, stats, &[])
}

/// [`hosting_bot`] from `command` (the meetspace binary, or a command that runs it),
/// with `extra` flags.
fn hosting_bot_from(
    mut command: Command,
    address: &str,
    stats: &Path,
    extra: &[&str],
) -> (Running, String) {
    let mut child = command
        .args(["bot", "--signal", &format!("ws://{address}"), "--create"])
        .args(extra)
        .args(["--name", "Bot", "--stats-json"])
        .arg(stats)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start meetspace bot");
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut first_line)
        .expect("the bot's first line");
    let room = first_line
        .strip_prefix("room ")
        .unwrap_or_else(|| panic!("the bot's first line was {first_line:?}"))
        .trim()
        .to_owned();
    (Running(child), room)
}

/// Asks the bot to leave (SIGTERM: it writes its figures and exits), then reads them.
fn stop_bot(mut bot: Running, stats: &Path) -> serde_json::Value {
    let status = Command::new("kill")
        .args(["-TERM", &bot.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exited = bot.0.wait().expect("the bot's exit");
    assert!(exited.success(), "the bot failed: {exited}");
    let text = std::fs::read_to_string(stats).expect("the bot's --stats-json file");
    serde_json::from_str(&text).expect("the bot's figures are JSON")
}

fn artefacts() -> PathBuf {
    let dir = repo().join("target/test-artefacts");
    std::fs::create_dir_all(&dir).expect("the artefact folder");
    dir
}

/// Runs one scenario of e2e.mjs; returns its `RESULT` JSON.
fn browser(scenario: &str, address: &str, room: &str) -> serde_json::Value {
    browser_from(Command::new("node"), scenario, address, room)
}

/// [`browser`] with `node` (Node.js, or a command that runs it).
fn browser_from(mut node: Command, scenario: &str, address: &str, room: &str) -> serde_json::Value {
    let output = node
        .arg(repo().join("tests/browser/e2e.mjs"))
        .args([scenario, &format!("http://{address}"), room])
        .arg(artefacts())
        .output()
        .expect("cannot run node (install Node.js 20 or later)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser scenario {scenario} failed:\n{stderr}\n{stdout}"
    );
    let result = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line:\n{stdout}\n{stderr}"));
    serde_json::from_str(result).expect("the RESULT line is JSON")
}

/// A scenario of e2e.mjs that waits for the test between its steps: it prints
/// `STEP <name> <json>` and reads one line from stdin before it goes on.
struct SteppedBrowser {
    node: Running,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl SteppedBrowser {
    /// Starts `scenario` with `node` (Node.js, or a command that runs it).
    fn start(mut node: Command, scenario: &str, address: &str, room: &str) -> Self {
        let mut child = node
            .arg(repo().join("tests/browser/e2e.mjs"))
            .args([scenario, &format!("http://{address}"), room])
            .arg(artefacts())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run node (install Node.js 20 or later)");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Self {
            node: Running(child),
            stdin,
            stdout,
        }
    }

    /// The next line that starts with `prefix`, without it; fails the test when the
    /// scenario ends first.
    fn line(&mut self, prefix: &str) -> String {
        for line in self.stdout.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
        let status = self.node.0.wait().expect("the scenario's exit");
        panic!("the browser scenario ended ({status}) before printing {prefix:?}");
    }

    /// Waits for step `name`; returns the page's hooks then.
    fn reached(&mut self, name: &str) -> serde_json::Value {
        let hooks = self.line(&format!("STEP {name} "));
        serde_json::from_str(&hooks).expect("a step's hooks are JSON")
    }

    /// Lets the scenario go on.
    fn proceed(&mut self) {
        writeln!(self.stdin, "go").expect("the scenario's stdin");
    }

    /// The scenario's `RESULT` JSON.
    fn result(mut self) -> serde_json::Value {
        let result = self.line("RESULT ");
        serde_json::from_str(&result).expect("the RESULT line is JSON")
    }
}

fn peer<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|peer| peer["name"] == name))
        .unwrap_or_else(|| panic!("the bot never saw {name}: {stats}"))
}

/// Spread of the luma in a rectangle of a PNG: a blank (one-colour) panel has none.
fn luma_spread(png: &Path, rect: [f64; 4]) -> u8 {
    let image = image::open(png).expect("the screenshot").to_luma8();
    let clamp = |value: f64, max: u32| (value.max(0.0) as u32).min(max.saturating_sub(1));
    let (x0, y0) = (
        clamp(rect[0], image.width()),
        clamp(rect[1], image.height()),
    );
    let (x1, y1) = (
        clamp(rect[2], image.width()),
        clamp(rect[3], image.height()),
    );
    let mut lumas = Vec::new();
    for y in y0..=y1 {
        for x in x0..=x1 {
            lumas.push(image.get_pixel(x, y).0[0]);
        }
    }
    let (low, high) = lumas
        .iter()
        .fold((u8::MAX, u8::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
    high.saturating_sub(low)
}

#[test]
fn a_browser_tab_and_a_native_bot_see_each_other() {
    let _browser = check_tools();
    let (_server, address) = serve();
    let stats = artefacts().join("browser-video-bot.json");
    let (bot, room) = hosting_bot(&address, &stats);
    let result = browser("video", &address, &room);

    let bot_panel = result["hooks"]["panels"]
        .as_array()
        .and_then(|panels| panels.iter().find(|panel| panel["name"] == "Bot"))
        .unwrap_or_else(|| panic!("no panel for the bot: {result}"));
    assert!(bot_panel["frames_shown"].as_u64() >= Some(30), "{result}");
    // egui's emoji fonts came as files beside the page (the wasm has the text fonts only),
    // and the app signalled on the connection the page opened while the wasm downloaded.
    assert_eq!(result["hooks"]["emojiFonts"], true, "{result}");
    assert_eq!(result["hooks"]["signalingFromPage"], true, "{result}");
    // The tab's own figures for the bot (getStats) and its speaking ring (an analyser on
    // the bot's voice: the bot's test tone).
    let seen = result["hooks"]["participants"]
        .as_array()
        .and_then(|participants| participants.iter().find(|p| p["name"] == "Bot"))
        .unwrap_or_else(|| panic!("the bot is no participant: {result}"));
    let figures = &seen["stats"];
    assert!(figures["frames_decoded"].as_u64() >= Some(30), "{seen}");
    assert_eq!(figures["video_codec"], "VP8", "{seen}");
    assert!(figures["rtt_ms"].as_f64() >= Some(0.0), "{seen}");
    assert!(
        seen["level"].as_f64() > Some(0.005),
        "the bot's voice is silent: {seen}"
    );
    println!(
        "the tab's figures for the bot: {} frames decoded at {} fps, pair {}, voice level {}",
        figures["frames_decoded"], figures["fps"], figures["candidate_pair"], seen["level"]
    );
    let rect: [f64; 4] = serde_json::from_value(bot_panel["rect"].clone()).expect("the rect");
    let screenshot = PathBuf::from(result["screenshot"].as_str().expect("the screenshot"));
    let spread = luma_spread(&screenshot, rect);
    assert!(
        spread > 40,
        "the bot's panel in {} looks blank (luma spread {spread})",
        screenshot.display()
    );
    check_sound(&result);

    let figures = stop_bot(bot, &stats);
    let browser = peer(&figures, "Browser");
    assert!(
        browser["frames_decoded"].as_u64() >= Some(30),
        "the bot decoded too little of the browser's camera: {browser}"
    );
    assert_eq!(browser["video_codec"], "VP8", "{browser}");
}

/// The sound of the video scenario: the bot's tone, spatialised, reaches the page's
/// `<audio>` element through the loopback connection (where the echo canceller hears
/// it), the microphone runs the browser's echo cancellation, and the bot's volume at
/// 25 % plays it about 12 dB lower.
fn check_sound(result: &serde_json::Value) {
    let audio = &result["audio"];
    let output = &audio["audioOutput"];
    assert_eq!(output["element"], true, "no <audio> element: {output}");
    assert_eq!(
        output["playing"], true,
        "the <audio> element is silent: {output}"
    );
    assert_eq!(
        output["loopback"], true,
        "the voices play without the loopback (the echo canceller does not hear them): {audio}"
    );
    assert!(
        output["level"].as_f64() > Some(0.001),
        "the bot's tone does not reach the <audio> element: {output}"
    );
    // Chromium's fake microphone takes the constraints and reports them.
    let microphone = &audio["microphone"];
    assert_eq!(
        microphone["echoCancellation"], true,
        "the microphone runs without echo cancellation: {microphone}"
    );
    let full = result["volume"]["full"]
        .as_f64()
        .expect("the level at 100 %");
    let quarter = result["volume"]["quarter"]
        .as_f64()
        .expect("the level at 25 %");
    let drop_db = 20.0 * (full / quarter.max(1e-9)).log10();
    assert!(
        (9.0..15.0).contains(&drop_db),
        "the bot at 25 % is {drop_db:.1} dB quieter, not about 12 dB ({full} -> {quarter})"
    );
    println!(
        "the tab's sound: output level {full:.4} at 100 %, {quarter:.4} at 25 % ({drop_db:.1} dB \
         lower); microphone settings {microphone}"
    );
}

/// The bot's figures say it decoded video from both tabs.
fn bot_decoded_both_tabs(figures: &serde_json::Value) {
    for name in ["TabOne", "TabTwo"] {
        let tab = peer(figures, name);
        assert!(
            tab["frames_decoded"].as_u64() > Some(0),
            "the bot decoded nothing from {name}: {tab}"
        );
    }
}

/// The mesh scenario's outcome: each tab shows the other two, connected.
fn both_tabs_see_both_others(result: &serde_json::Value) {
    for tab in ["first", "second"] {
        let participants = result[tab]["participants"]
            .as_array()
            .expect("participants");
        assert_eq!(participants.len(), 2, "{tab} tab: {result}");
        assert!(
            participants.iter().all(|p| p["connection"] == "connected"),
            "{tab} tab: {result}"
        );
    }
}

#[test]
fn two_tabs_and_a_native_bot_make_a_full_mesh() {
    let _browser = check_tools();
    let (_server, address) = serve();
    let stats = artefacts().join("browser-mesh-bot.json");
    let (bot, room) = hosting_bot(&address, &stats);
    let result = browser("mesh", &address, &room);
    both_tabs_see_both_others(&result);
    bot_decoded_both_tabs(&stop_bot(bot, &stats));
}

#[test]
fn two_tabs_and_a_native_bot_in_a_room_on_janus_see_each_other_through_it() {
    let _browser = check_tools();
    let janus = janus::JanusProcess::start(0);
    let sfu = format!("janus+{}", janus.url());
    // The room moves to Janus when the second tab joins: that tab never meshes.
    let (_server, address) = serve_with(&[
        "--sfu",
        &sfu,
        "--mesh-limit",
        "3",
        "--janus-api-secret",
        janus::JANUS_API_SECRET,
        "--janus-admin-key",
        janus::JANUS_ADMIN_KEY,
    ]);
    let stats = artefacts().join("browser-sfu-bot.json");
    // The bot stands at the far end of the room with its back to the tabs, which arrive
    // facing it: it sees neither, so it asks Janus for their smallest layers.
    let (bot, room) = hosting_bot_from(meetspace(), &address, &stats, &["--at", "0,-7"]);
    let result = browser("mesh", &address, &room);
    both_tabs_see_both_others(&result);
    // The second tab's own figures (getStats) count the others' video as their cameras.
    for seen in result["second"]["participants"]
        .as_array()
        .expect("participants")
    {
        assert!(
            seen["stats"]["video_bytes_received"].as_u64() > Some(0),
            "the second tab counts no video from {}: {seen}",
            seen["name"]
        );
    }
    let figures = stop_bot(bot, &stats);
    assert_eq!(figures["sent"]["via"], "sfu", "{figures}");
    assert_eq!(figures["sent"]["upstreams"], 1, "{figures}");
    bot_decoded_both_tabs(&figures);
    // Each tab publishes simulcast: the bot ends on a layer at most half as wide as the
    // tab's camera (Chromium's fake one is 640x480, where it sends two of the three
    // layers: the whole picture and the half one).
    const TAB_CAMERA_WIDTH: u64 = 640;
    for name in ["TabOne", "TabTwo"] {
        let tab = peer(&figures, name);
        let last = tab["size_changes"]
            .as_array()
            .and_then(|changes| changes.last())
            .and_then(|change| change["width"].as_u64());
        assert!(
            last.is_some_and(|width| width * 2 <= TAB_CAMERA_WIDTH),
            "the bot did not get a smaller layer of {name}: sizes {}",
            tab["size_changes"]
        );
    }
    println!(
        "through Janus: the bot decoded {} frames of TabOne and {} of TabTwo; sizes {} and {}",
        peer(&figures, "TabOne")["frames_decoded"],
        peer(&figures, "TabTwo")["frames_decoded"],
        peer(&figures, "TabOne")["size_changes"],
        peer(&figures, "TabTwo")["size_changes"],
    );
}

#[test]
fn a_refused_camera_is_reported_and_the_tab_still_watches() {
    let _browser = check_tools();
    let (_server, address) = serve();
    let stats = artefacts().join("browser-denied-bot.json");
    let (bot, room) = hosting_bot(&address, &stats);
    let result = browser("denied", &address, &room);
    let errors = result["hooks"]["errors"].as_array().expect("errors");
    let refusal = errors
        .iter()
        .find(|error| error["kind"] == "devices_unavailable")
        .unwrap_or_else(|| panic!("no refusal reported: {result}"));
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|message| message.contains("denied")),
        "{refusal}"
    );
    let figures = stop_bot(bot, &stats);
    let watcher = peer(&figures, "Watcher");
    assert_eq!(
        watcher["frames_decoded"], 0,
        "a watcher sends no video: {watcher}"
    );
}

/// The secret coturn and the signaling server share in the NAT test.
const TURN_SECRET: &str = "meetspace-browser-nat-secret";

#[test]
fn a_browser_behind_a_nat_without_udp_calls_a_native_bot_through_the_relay() {
    let _browser = check_tools();
    let root = web_root();
    let mut lab = Lab::new();
    // The signaling server and the page on the internet, with TURN over UDP (for the
    // bot) and TCP (all the browser can use).
    let root = root.to_str().expect("a UTF-8 path");
    let address = lab.start_turn_and_signaling(
        env!("CARGO_BIN_EXE_meetspace"),
        TURN_SECRET,
        &["--web-root", root],
    );

    let stats = artefacts().join("browser-nat-bot.json");
    // Both ends relay only, so the first connection works: without it, the first one
    // fails (webrtc-rs does not find the relayed pair between two NATed peers that also
    // offer host candidates) and the call waits for the relay-only retry
    // (docs/signaling.md, TURN credentials); this test is about TURN over TCP.
    let bot = lab.command_in_home(Home::A, env!("CARGO_BIN_EXE_meetspace"));
    let (bot, room) = hosting_bot_from(bot, &address, &stats, &["--ice-transport-policy", "relay"]);
    // Home B (the symmetric NAT) lets no UDP through at all: TURN over TCP or nothing.
    lab.block_udp(Home::B);
    let mut node = lab.command_in_home(Home::B, "node");
    node.env("E2E_PAGE_PARAMS", "&ice_transport_policy=relay");
    let result = browser_from(node, "video", &address, &room);
    let bot_panel = result["hooks"]["panels"]
        .as_array()
        .and_then(|panels| panels.iter().find(|panel| panel["name"] == "Bot"))
        .unwrap_or_else(|| panic!("no panel for the bot: {result}"));
    assert!(bot_panel["frames_shown"].as_u64() >= Some(30), "{result}");
    println!("the tab's errors: {}", result["hooks"]["errors"]);

    let figures = stop_bot(bot, &stats);
    let browser = peer(&figures, "Browser");
    assert!(
        browser["frames_decoded"].as_u64() >= Some(30),
        "the bot decoded too little of the browser's camera: {browser}"
    );
    let pair = &browser["candidate_pair"];
    assert!(
        pair["local"] == "relay" || pair["remote"] == "relay",
        "the bot and the browser met without the relay: {browser}"
    );
    println!(
        "browser behind NAT, TURN over TCP: first frame at the bot after {} ms, pair {pair}",
        browser["first_frame_ms"]
    );
}

/// How long the media path is cut in the resilience test.
const MEDIA_CUT: Duration = Duration::from_secs(5);
/// How long the bot may take to decode the browser's video again after the cut.
const VIDEO_BACK_WITHIN: Duration = Duration::from_secs(30);

#[test]
fn a_browser_keeps_its_call_through_a_server_restart_and_a_cut_media_path() {
    let _browser = check_tools();
    let root = web_root();
    let root = root.to_str().expect("a UTF-8 path");
    let mut lab = Lab::new();
    // The server and the bot on the internet; the browser at home, behind a NAT.
    let address = lab.start_signaling(env!("CARGO_BIN_EXE_meetspace"), &["--web-root", root], &[]);
    let stats = artefacts().join("browser-resilience-bot.json");
    let bot = lab.command_in_internet(env!("CARGO_BIN_EXE_meetspace"));
    let (bot, room) = hosting_bot_from(bot, &address, &stats, &[]);
    let node = lab.command_in_home(Home::A, "node");
    let mut tab = SteppedBrowser::start(node, "resilience", &address, &room);

    let joined = tab.reached("joined");
    lab.restart_signaling();
    tab.proceed();
    let resumed = tab.reached("resumed");
    assert_eq!(
        resumed["selfId"], joined["selfId"],
        "the tab came back as someone else"
    );

    lab.block_udp(Home::A);
    std::thread::sleep(MEDIA_CUT);
    lab.allow_udp(Home::A);
    tab.proceed();
    let back = tab.reached("back");
    assert_eq!(
        back["participants"].as_array().map(Vec::len),
        Some(1),
        "{back}"
    );

    // The other direction, with the tab still open: the bot decodes the browser's video
    // again (its figures file is rewritten every second), and saw it once (one peer id
    // throughout).
    let decoded = || {
        let figures: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&stats).expect("the bot's --stats-json file"),
        )
        .expect("the bot's figures are JSON");
        peer(&figures, "Browser")["frames_decoded"]
            .as_u64()
            .unwrap_or_default()
    };
    // A few frames at least: the browser's fake camera sends about 6 a second on this
    // shared machine, but after the cut its congestion control starts low and the bot
    // needs a key frame, so how soon is a figure, not the check.
    let before = decoded();
    let cut_over = Instant::now();
    let mut after = before;
    while after < before + 8 && cut_over.elapsed() < VIDEO_BACK_WITHIN {
        std::thread::sleep(Duration::from_millis(250));
        after = decoded();
    }
    assert!(
        after >= before + 8,
        "the bot's video from the browser did not come back after the cut: {before} frames \
         decoded, {} s later {after}",
        VIDEO_BACK_WITHIN.as_secs()
    );
    let back_after = cut_over.elapsed();
    tab.proceed();
    tab.result();
    let figures = stop_bot(bot, &stats);
    let peers = figures["peers"].as_array().expect("the bot's peers");
    assert_eq!(
        peers.len(),
        1,
        "the bot saw the browser more than once: {figures}"
    );
    println!(
        "server restart: the tab resumed as {}; after a {} s media cut the tab drew 10 \
         frames of the bot within {} ms, and the bot decoded {} more frames of the browser \
         within {} ms of that",
        resumed["selfId"],
        MEDIA_CUT.as_secs(),
        back["backMs"],
        after - before,
        back_after.as_millis()
    );
}

#[test]
fn a_browser_tab_in_the_lobby_sees_a_walking_bot_and_the_bot_gets_its_poses() {
    let _browser = check_tools();
    let (_server, address) = serve();
    let stats = artefacts().join("browser-lobby-bot.json");
    let _ = std::fs::remove_file(&stats);
    // The tab arrives at (0, 3.5); the bot walks to and fro 2.5 m in front of it.
    let to_and_fro = ["-2,1", "2,1"].repeat(10).join(";");
    let bot = Running(
        meetspace()
            .args(["bot", "--signal", &format!("ws://{address}"), "--lobby"])
            .args(["--name", "Bot", "--at", "2,1", "--walk-to", &to_and_fro])
            .args(["--speed", "0.5", "--stats-json"])
            .arg(&stats)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start meetspace bot"),
    );
    let result = browser("lobby", &address, "-");
    let figures = stop_bot(bot, &stats);

    let bot_in = |state: &serde_json::Value| {
        state["participants"]
            .as_array()
            .and_then(|people| people.iter().find(|p| p["name"] == "Bot"))
            .cloned()
            .unwrap_or_else(|| panic!("the bot is not in the tab's lobby: {state}"))
    };
    let (first, later) = (bot_in(&result["first"]), bot_in(&result["later"]));
    assert_eq!(result["first"]["room"], "lobby", "{result}");
    assert!(first["framesDrawn"].as_u64() >= Some(10), "{first}");
    // The tab watches the space: the bot is in the lobby.
    assert_eq!(
        result["later"]["space"],
        serde_json::json!([{"area": "lobby", "names": ["Bot"]}]),
        "{result}"
    );
    // Its voice fades as natively: full within 2 m, silent at the 5 m earshot edge.
    let fade = &later["voiceFade"];
    assert_eq!(fade["model"], "linear", "{later}");
    assert_eq!(fade["refDistance"].as_f64(), Some(2.0), "{later}");
    assert_eq!(fade["maxDistance"].as_f64(), Some(5.0), "{later}");
    // Chromium without a GPU draws with SwiftShader: the space picks its light profile.
    let graphics = result["later"]["graphics"].as_str().unwrap_or_default();
    assert!(
        graphics.starts_with("light (software renderer: ") && graphics.contains("SwiftShader"),
        "{graphics}"
    );
    println!("the tab's graphics: {graphics}");
    // The page's progress bar counted to the wasm's size, though it came gzipped.
    let load = &result["load"];
    assert!(
        load["total"].as_u64().is_some_and(|total| total > 0),
        "{load}"
    );
    assert_eq!(load["received"], load["total"], "{load}");
    println!(
        "the page loaded {} bytes of wasm (the bar counted to {}), downloaded at {:.0} ms, \
         the app started at {:.0} ms after navigation",
        load["received"],
        load["total"],
        load["downloadedMs"].as_f64().unwrap_or(f64::NAN),
        load["startedMs"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "the tab saw the bot at {} then {}, {} poses received, {} frames drawn, voice {}",
        first["position"], later["position"], later["posesReceived"], later["framesDrawn"], fade
    );
    let space = &figures["space"];
    let opened = space["media_opened"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        opened.iter().any(|entry| entry["name"] == "Browser"),
        "the bot's media never opened with the tab: {space}"
    );
    let from_tab = space["poses_received"]
        .as_object()
        .and_then(|poses| poses.values().next())
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    // Standing still, the tab said where it stands once through the server; the rest
    // came on its data channel (20 a second at most: the page's timers slow down when
    // the machine is busy rendering several tabs).
    assert!(
        from_tab >= 5,
        "the bot received {from_tab} poses from the tab: {space}"
    );
    println!("the bot received {from_tab} poses from the tab");
}

/// The bot's screen in the screen test: blocks of these colours, 2 across and 2 down,
/// each of [`SCREEN_BLOCK`].
const SCREEN_BLOCKS: [[u8; 3]; 4] = [[220, 30, 30], [30, 200, 40], [40, 60, 220], [240, 220, 40]];
/// The size of one block: the screen is 2 x 2 of them.
const SCREEN_BLOCK: (u32, u32) = (320, 240);

/// The mean colour of the 9 x 9 pixels of `image` around the point `(u, v)` (0 to 1
/// across and down) of the quad `corners` (top-left, top-right, bottom-right,
/// bottom-left).
fn colour_in_quad(image: &image::RgbImage, corners: &[[f64; 2]; 4], u: f64, v: f64) -> [f64; 3] {
    let lerp =
        |a: [f64; 2], b: [f64; 2], t: f64| [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
    let [x, y] = lerp(
        lerp(corners[0], corners[1], u),
        lerp(corners[3], corners[2], u),
        v,
    );
    let mut sum = [0.0; 3];
    let mut samples = 0.0_f64;
    for dy in -4..=4 {
        for dx in -4..=4 {
            let (px, py) = ((x as i64 + dx) as u32, (y as i64 + dy) as u32);
            if let Some(pixel) = image.get_pixel_checked(px, py) {
                for (total, channel) in sum.iter_mut().zip(pixel.0) {
                    *total += f64::from(channel);
                }
                samples += 1.0;
            }
        }
    }
    sum.map(|total| total / samples.max(1.0))
}

/// The index of the largest of three channels; 3 for "red and green both" (yellow).
fn dominant(colour: [f64; 3]) -> usize {
    let [r, g, b] = colour;
    if r > b * 1.5 && g > b * 1.5 && (r - g).abs() < 0.35 * r.max(g) {
        return 3;
    }
    (0..3)
        .max_by(|&a, &b| colour[a].total_cmp(&colour[b]))
        .unwrap_or(0)
}

/// The bot's screen: [`SCREEN_BLOCKS`] in blocks of [`SCREEN_BLOCK`].
fn screen_picture() -> image::RgbaImage {
    image::RgbaImage::from_fn(2 * SCREEN_BLOCK.0, 2 * SCREEN_BLOCK.1, |x, y| {
        let [r, g, b] = SCREEN_BLOCKS[(y / SCREEN_BLOCK.1 * 2 + x / SCREEN_BLOCK.0) as usize];
        image::Rgba([r, g, b, 255])
    })
}

/// The corners of the wall's screen in the page's hooks.
fn wall_corners(hooks: &serde_json::Value) -> [[f64; 2]; 4] {
    serde_json::from_value(hooks["wall"].clone())
        .unwrap_or_else(|_| panic!("no wall in the hooks: {hooks}"))
}

/// Where the middle of each block of [`SCREEN_BLOCKS`] is on the wall, as (u, v)
/// across and down its quad.
fn block_centres() -> impl Iterator<Item = (usize, f64, f64)> {
    (0..SCREEN_BLOCKS.len()).map(|index| {
        let (u, v) = (
            0.25 + 0.5 * (index % 2) as f64,
            0.25 + 0.5 * (index / 2) as f64,
        );
        (index, u, v)
    })
}

/// Checks that the page's `screenshot` shows each block of the bot's screen inside the
/// wall's quad `corners`, by its dominant colour (the renderer's tone mapping shifts
/// the exact values).
fn assert_wall_shows_blocks(screenshot: &str, corners: &[[f64; 2]; 4]) {
    let image = image::open(screenshot).expect("the screenshot").to_rgb8();
    for (index, u, v) in block_centres() {
        let drawn = SCREEN_BLOCKS[index];
        let seen = colour_in_quad(&image, corners, u, v);
        println!("block {index}: drawn {drawn:?}, on the wall {seen:.0?}");
        assert_eq!(
            dominant(seen),
            dominant(drawn.map(f64::from)),
            "block {index} ({drawn:?}) shows as {seen:?} on the wall (corners {corners:?}, \
             see {screenshot})"
        );
    }
}

#[test]
fn a_browser_shares_its_screen_with_a_native_bot_and_shows_the_bots_on_the_wall() {
    let _browser = check_tools();
    let picture = screen_picture();
    let display = TestDisplay::start(picture.dimensions(), &picture);
    // Both share: a wall for two.
    let (_server, address) = serve_with(&["--room-sharers", "2"]);
    let stats = artefacts().join("browser-screen-bot.json");
    let saved = artefacts().join("browser-screen-received.png");
    let _ = std::fs::remove_file(&saved);
    let mut bot = meetspace();
    bot.env("DISPLAY", &display.name);
    let saved_arg = saved.to_str().expect("a UTF-8 path");
    let (bot, room) = hosting_bot_from(
        bot,
        &address,
        &stats,
        &["--share", "screen", "--save-screen", saved_arg],
    );
    let mut node = Command::new("node");
    node.env("E2E_PAGE_PARAMS", "&share=screen");
    let mut tab = SteppedBrowser::start(node, "screen", &address, &room);
    let shown = tab.reached("shown");

    // The bot decodes the page's screen (getDisplayMedia: Chromium's fake screen) while
    // the page shares, beside its camera.
    let deadline = Instant::now() + Duration::from_secs(60);
    let received = loop {
        if let Ok(frame) = image::open(&saved) {
            break frame;
        }
        assert!(
            Instant::now() < deadline,
            "the bot never received the page's screen"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let figures: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&stats).expect("the bot's --stats-json file"),
    )
    .expect("the bot's figures are JSON");
    let from_page = peer(&figures, "Browser");
    println!(
        "the bot receives the page's screen at {}x{}: {}",
        received.width(),
        received.height(),
        from_page["screen"]
    );
    assert!(
        received.width() >= 640 && received.width() * 9 == received.height() * 16,
        "the page's screen arrived at {}x{} (Chromium's fake screen is 16:9)",
        received.width(),
        received.height()
    );
    assert!(
        from_page["frames_decoded"].as_u64().unwrap_or_default() > 0,
        "the page's camera stopped: {from_page}"
    );
    tab.proceed();
    let result = tab.result();

    // The page shows the bot's screen at its size, on the wall where the projection of
    // the wall's quad says, with the blocks where they are on the bot's screen.
    assert_eq!(
        shown["screens"][0]["size"],
        serde_json::json!([picture.width(), picture.height()]),
        "{shown}"
    );
    let screenshot = result["screenshot"].as_str().expect("a screenshot path");
    assert_wall_shows_blocks(screenshot, &wall_corners(&shown));
    let figures = stop_bot(bot, &stats);
    assert!(
        figures["sent"]["screen_frames"]
            .as_u64()
            .unwrap_or_default()
            > 0,
        "the bot sent no screen: {}",
        figures["sent"]
    );
}

#[test]
fn a_share_that_stops_and_starts_again_leaves_the_wall_and_comes_back() {
    let _browser = check_tools();
    let display = TestDisplay::start(screen_picture().dimensions(), &screen_picture());
    let (_server, address) = serve();
    let stats = artefacts().join("browser-wall-bot.json");
    let mut bot = meetspace();
    bot.env("DISPLAY", &display.name);
    let (bot, room) = hosting_bot_from(
        bot,
        &address,
        &stats,
        &["--share", "screen", "--share-toggle", "12"],
    );
    let result = browser("wall", &address, &room);
    let shots = result["shots"].as_array().expect("the screenshots");
    let path = |shot: &serde_json::Value| shot["screenshot"].as_str().expect("a path").to_owned();
    let corners = wall_corners(&shots[0]["hooks"]);
    assert_wall_shows_blocks(&path(&shots[0]), &corners);
    // Where the screen was, the bare wall: grey, no block's colour.
    let empty = image::open(path(&shots[1]))
        .expect("the screenshot")
        .to_rgb8();
    for (index, u, v) in block_centres() {
        let seen = colour_in_quad(&empty, &corners, u, v);
        let spread = seen.iter().copied().fold(f64::MIN, f64::max)
            - seen.iter().copied().fold(f64::MAX, f64::min);
        println!("block {index}'s place on the empty wall: {seen:.0?}");
        assert!(
            spread < 40.0,
            "block {index}'s place still shows a colour, {seen:?} (see {})",
            path(&shots[1])
        );
    }
    assert_wall_shows_blocks(&path(&shots[2]), &wall_corners(&shots[2]["hooks"]));
    stop_bot(bot, &stats);
}
