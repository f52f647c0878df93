//! Calls through NATs and a TURN relay (issue: getting through NATs and firewalls).
//!
//! tests/nat builds two homes behind NATs (one of them symmetric) on an "internet"
//! of network namespaces, with no route between the homes, and runs coturn (Debian's
//! `coturn`) there with a shared secret. `meetspace serve --turn-secret` runs on the
//! internet too and hands every client short-lived TURN credentials; `meetspace bot`s
//! in the homes must call each other through the relay. Needs root and the tools
//! setup.sh installs. The figures are printed: `cargo test --test turn -- --nocapture`.

mod nat;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use meetspace::bot::EXIT_TURN;
use meetspace::signaling::protocol::PeerId;
use meetspace::signaling::turn_credentials::TurnCredentials;
use nat::{Home, Lab, SIGNAL_PORT, TURN_PORT};
use serde_json::Value;

/// The secret coturn and the signaling server share.
const SECRET: &str = "meetspace-nat-test-secret";
/// How long a bot may take to get into its room.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call of the tests lasts.
const CALL_SECONDS: u64 = 15;

/// One lab at a time: the calls' figures should not fight over two cores.
static ONE_LAB: Mutex<()> = Mutex::new(());

/// The lab with coturn and the signaling server running on its internet host.
struct Internet {
    lab: Lab,
}

impl Internet {
    fn start() -> Self {
        let mut lab = Lab::new();
        lab.start_turn_and_signaling(
            env!("CARGO_BIN_EXE_meetspace"),
            SECRET,
            &["--turn-ttl", "600"],
        );
        Self { lab }
    }

    fn signal(&self) -> String {
        format!("ws://{}:{SIGNAL_PORT}", Lab::internet_ip())
    }

    fn turn_url(&self, port: u16) -> String {
        format!("turn:{}:{port}?transport=udp", Lab::internet_ip())
    }

    /// A `meetspace bot` in `home` with `args` after the signaling flag.
    fn bot(&self, home: Home, args: &[&str]) -> Command {
        let mut bot = self
            .lab
            .command_in_home(home, env!("CARGO_BIN_EXE_meetspace"));
        bot.args(["bot", "--signal", &self.signal()])
            .args(args)
            .env_remove("MEETSPACE_SIGNAL")
            .env_remove("MEETSPACE_NAME")
            .env_remove("MEETSPACE_ICE_CREDENTIAL");
        bot
    }

    /// Starts `bot` with its stderr piped and read as it comes, so that a chatty bot
    /// never stalls on a full pipe.
    fn start_bot(&mut self, mut bot: Command) -> BotRun {
        bot.stderr(Stdio::piped());
        let at = self.lab.spawn(bot);
        let mut pipe = self.lab.child(at).stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        BotRun { at, stderr }
    }

    fn scratch(&self, name: &str) -> PathBuf {
        self.lab.scratch().join(name)
    }
}

/// A running bot of the lab and the thread collecting its stderr.
struct BotRun {
    at: usize,
    stderr: JoinHandle<String>,
}

/// What one bot of a call measured of the other.
struct Seen {
    first_frame_ms: f64,
    peer: Value,
}

/// A call between a bot in `host_home` that creates the room and one in `guest_home`
/// that joins it; both stay [`CALL_SECONDS`] and report what they received.
fn call(internet: &mut Internet, host_home: Home, guest_home: Home, label: &str) -> [Seen; 2] {
    let stats = [
        internet.scratch(&format!("{label}-host.json")),
        internet.scratch(&format!("{label}-guest.json")),
    ];
    let seconds = CALL_SECONDS.to_string();
    let mut host = internet.bot(
        host_home,
        &[
            "--create",
            "--name",
            "Host",
            "--duration",
            &seconds,
            "--stats-json",
        ],
    );
    host.arg(&stats[0]).stdout(Stdio::piped());
    let host_run = internet.start_bot(host);
    let room = read_room(internet, host_run.at);
    let mut guest = internet.bot(
        guest_home,
        &[
            "--room",
            &room,
            "--name",
            "Guest",
            "--duration",
            &seconds,
            "--stats-json",
        ],
    );
    guest.arg(&stats[1]).stdout(Stdio::null());
    let guest_run = internet.start_bot(guest);
    for run in [guest_run, host_run] {
        let (status, stderr) = wait(internet, run, Duration::from_secs(CALL_SECONDS + 40));
        assert!(
            status.success(),
            "{label}: a bot failed ({status}):\n{stderr}"
        );
    }
    stats.map(|path| {
        let figures = read_figures(&path);
        let peer = figures["peers"][0].clone();
        assert!(!peer.is_null(), "{label}: a bot saw nobody: {figures}");
        Seen {
            first_frame_ms: peer["first_frame_ms"].as_f64().unwrap_or(f64::NAN),
            peer,
        }
    })
}

/// The `room <ID>` line a creating bot prints once it is in its room.
fn read_room(internet: &mut Internet, at: usize) -> String {
    let stdout = internet.lab.child(at).stdout.take().expect("piped stdout");
    let (line_tx, line) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = line_tx.send(first);
    });
    let first = line
        .recv_timeout(JOIN_TIMEOUT)
        .expect("the bot did not get into its room in time");
    first
        .strip_prefix("room ")
        .unwrap_or_else(|| panic!("the bot's first line was {first:?}"))
        .trim()
        .to_owned()
}

/// Waits for a bot to exit (killing it past `limit`); its status and stderr.
fn wait(internet: &mut Internet, run: BotRun, limit: Duration) -> (ExitStatus, String) {
    let child = internet.lab.child(run.at);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("the killed child's status");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, run.stderr.join().unwrap_or_default())
}

/// Checks that video and audio flowed from the other side for most of the call.
fn assert_media_flowed(label: &str, seen: &Seen) {
    let peer = &seen.peer;
    let frames = peer["frames_decoded"].as_u64().unwrap_or(0);
    let audio = peer["audio_packets"].as_u64().unwrap_or(0);
    // 30 fps and 50 packets/s for most of the call.
    let half = CALL_SECONDS / 2;
    assert!(
        frames >= 30 * half,
        "{label}: {frames} frames decoded: {peer}"
    );
    assert!(audio >= 50 * half, "{label}: {audio} audio packets: {peer}");
}

fn pair_side(seen: &Seen, side: &str) -> String {
    seen.peer["candidate_pair"][side]
        .as_str()
        .unwrap_or_else(|| panic!("no candidate pair in {}", seen.peer))
        .to_owned()
}

#[test]
fn two_homes_behind_nats_call_through_the_relay_with_credentials_from_the_server() {
    let _one = ONE_LAB
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut internet = Internet::start();

    let relayed = call(&mut internet, Home::A, Home::B, "relayed");
    for (side, seen) in ["home A", "home B (symmetric NAT)"].iter().zip(&relayed) {
        assert_media_flowed(side, seen);
        let (local, remote) = (pair_side(seen, "local"), pair_side(seen, "remote"));
        assert!(
            local == "relay" || remote == "relay",
            "{side}: the media did not go through the relay: {}",
            seen.peer
        );
        assert_eq!(
            seen.peer["candidate_pair"]["protocol"], "udp",
            "{}",
            seen.peer
        );
    }
    // The relay let them in with the credentials the signaling server made: coturn
    // logged usernames of the form EXPIRY:PEER_ID for both peers.
    let log = internet.lab.turn_log();
    for seen in &relayed {
        let peer_id = seen.peer["peer_id"].as_str().expect("peer id");
        assert!(
            log.contains(&format!(":{peer_id}")),
            "coturn never saw the credentials of {peer_id}:\n{log}"
        );
    }

    // The same call inside one home: a direct path, for comparison.
    let direct = call(&mut internet, Home::A, Home::A, "direct");
    for seen in &direct {
        assert_media_flowed("direct", seen);
        assert_eq!(pair_side(seen, "local"), "host", "{}", seen.peer);
    }
    println!(
        "join to first frame: through the relay {:.0} / {:.0} ms (home A / home B), \
         direct {:.0} / {:.0} ms",
        relayed[0].first_frame_ms,
        relayed[1].first_frame_ms,
        direct[0].first_frame_ms,
        direct[1].first_frame_ms
    );
}

/// Runs a bot that creates a room with `ice` flags; it must end with `kind` in its last
/// line (and `detail`, when given) and the TURN exit code.
fn assert_bot_refused(internet: &mut Internet, ice: &[&str], kind: &str, detail: Option<&str>) {
    let mut bot = internet.bot(Home::A, &["--create", "--name", "Refused"]);
    bot.args(ice).stdout(Stdio::null());
    let run = internet.start_bot(bot);
    let started = Instant::now();
    let (status, stderr) = wait(internet, run, Duration::from_secs(40));
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_TURN)),
        "expected the TURN exit code for {kind}:\n{stderr}"
    );
    assert!(
        last.starts_with(&format!("meetspace bot: {kind}:")),
        "{kind}: {last}"
    );
    if let Some(detail) = detail {
        assert!(last.contains(detail), "{kind}: {last}");
    }
    println!(
        "{kind} after {:.1} s: {last}",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn refused_expired_and_unreachable_turn_servers_are_reported() {
    let _one = ONE_LAB
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut internet = Internet::start();
    let url = internet.turn_url(TURN_PORT);

    assert_bot_refused(
        &mut internet,
        &[
            "--ice",
            &url,
            "--ice-username",
            "4102444800:someone",
            "--ice-credential",
            "wrong",
        ],
        "turn_refused",
        Some("401"),
    );

    // Signed with the right secret, but expired an hour ago.
    let expired = TurnCredentials::new(
        vec![url.parse().expect("a TURN URL")],
        SECRET,
        Duration::from_secs(60),
    )
    .issue(
        &PeerId::parse("expired").expect("an id"),
        SystemTime::now() - Duration::from_secs(3600),
    );
    assert_bot_refused(
        &mut internet,
        &[
            "--ice",
            &url,
            "--ice-username",
            expired.username.as_deref().expect("a username"),
            "--ice-credential",
            expired.credential.as_deref().expect("a credential"),
        ],
        "turn_refused",
        Some("401"),
    );

    // Nothing listens on the next port.
    let nowhere = internet.turn_url(TURN_PORT + 1);
    assert_bot_refused(
        &mut internet,
        &[
            "--ice",
            &nowhere,
            "--ice-username",
            "u",
            "--ice-credential",
            "p",
        ],
        "turn_unreachable",
        None,
    );
}

#[test]
fn without_a_turn_server_the_homes_are_told_there_is_no_route() {
    let _one = ONE_LAB
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut internet = Internet::start();
    let stats = internet.scratch("no-route.json");
    // A STUN server only (coturn answers STUN too): no relay, and the symmetric NAT
    // defeats hole punching, so ICE fails.
    let stun = format!("stun:{}:{TURN_PORT}", Lab::internet_ip());
    let mut host = internet.bot(
        Home::A,
        &[
            "--create",
            "--name",
            "Host",
            "--ice",
            &stun,
            "--duration",
            "30",
            "--stats-json",
        ],
    );
    host.arg(&stats).stdout(Stdio::piped());
    let host_run = internet.start_bot(host);
    let room = read_room(&mut internet, host_run.at);
    let mut guest = internet.bot(
        Home::B,
        &[
            "--room",
            &room,
            "--name",
            "Guest",
            "--ice",
            &stun,
            "--duration",
            "25",
        ],
    );
    guest.stdout(Stdio::null());
    let guest_run = internet.start_bot(guest);
    let (_, guest_log) = wait(&mut internet, guest_run, Duration::from_secs(60));
    let (_, host_log) = wait(&mut internet, host_run, Duration::from_secs(60));
    for (who, log) in [("host", &host_log), ("guest", &guest_log)] {
        assert!(
            log.contains("ice_failed") && log.contains("a TURN server is needed"),
            "the {who} was not told there is no route:\n{log}"
        );
    }
    assert_no_frames(&stats);
}

/// The host's figures show the guest but no video from it.
fn assert_no_frames(stats: &Path) {
    let figures = read_figures(stats);
    let frames = figures["peers"][0]["frames_decoded"].as_u64().unwrap_or(0);
    assert_eq!(frames, 0, "{figures}");
}

/// A bot's `--stats-json` file.
fn read_figures(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the bot's --stats-json file");
    serde_json::from_str(&text).expect("the bot's figures are JSON")
}
