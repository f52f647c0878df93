//! Calls over an impaired network (docs/impaired-network.md): two `meetspace bot`
//! processes, each in a network namespace the test makes, joined by a veth pair. The link
//! gets loss (an nftables `numgen random` drop rule), delay (an NFQUEUE rule and
//! `meetspace-delay-queue`, as this kernel has no `tc netem`) and a bandwidth cap
//! (`tc tbf`), each on the egress of both ends. The signaling server runs in the first
//! namespace; nothing leaves the machine. Needs root and the tools setup.sh installs.
//!
//! The tests assert behaviour (video keeps playing, the bitrate comes down under a cap);
//! the figures (freezes, NACK/PLI counts, bitrate, fps) are printed:
//! `cargo test --test impaired_network -- --nocapture` (the calls take turns).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The two ends of the link.
const SIDES: [Side; 2] = [Side::A, Side::B];
/// Where the signaling server listens, in namespace A.
const SERVER: &str = "10.77.0.1:8480";
/// How long a bot may take to get into its room.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

impl Side {
    fn index(self) -> usize {
        self as usize
    }

    fn address(self) -> &'static str {
        match self {
            Side::A => "10.77.0.1/24",
            Side::B => "10.77.0.2/24",
        }
    }
}

/// What is done to the packets leaving each end of the link.
#[derive(Debug, Clone, Copy, Default)]
struct Impairment {
    /// UDP packets dropped, in percent.
    loss_percent: u32,
    /// One-way delay added to UDP packets.
    delay_ms: u64,
    /// Bandwidth cap on everything, in kbit/s.
    rate_kbit: Option<u32>,
}

/// Fails with instructions when a tool the harness needs is missing.
fn require_tools() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .expect("cannot run id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the impaired-network tests make network namespaces: run them as root"
    );
    for (tool, package) in [
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("nft", "nftables"),
        ("iptables", "iptables"),
    ] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "`{tool}` is missing: install the Debian package {package} (./setup.sh does)"
        );
    }
}

/// Two network namespaces joined by a veth pair, and the processes started in them.
/// Dropping it (also when a test fails) kills the processes and deletes the namespaces,
/// which takes the veth pair and every rule with them.
struct Link {
    namespaces: [String; 2],
    children: Vec<Child>,
    scratch: PathBuf,
}

impl Link {
    /// Makes the namespaces (names unique to this process and call) and the link.
    fn new() -> Self {
        require_tools();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "meetspace-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let scratch = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&scratch).expect("cannot make a scratch directory");
        let link = Self {
            namespaces: [format!("{id}-a"), format!("{id}-b")],
            children: Vec::new(),
            scratch,
        };
        for name in &link.namespaces {
            run(Command::new("ip").args(["netns", "add", name]));
        }
        // Made inside the namespaces, so the name `veth0` cannot collide with anything.
        let [a, b] = &link.namespaces;
        run(Command::new("ip").args([
            "link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "veth0", "netns", b,
        ]));
        for side in SIDES {
            link.run_in(side, "ip", &["addr", "add", side.address(), "dev", "veth0"]);
            link.run_in(side, "ip", &["link", "set", "veth0", "up"]);
            link.run_in(side, "ip", &["link", "set", "lo", "up"]);
        }
        link
    }

    /// A command that runs `program` inside the namespace of `side`.
    fn command(&self, side: Side, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespaces[side.index()], program])
            .args(args);
        command
    }

    /// Runs `program` inside `side`'s namespace and fails the test if it fails.
    fn run_in(&self, side: Side, program: &str, args: &[&str]) -> Output {
        run(&mut self.command(side, program, args))
    }

    /// Starts `command`; it is killed when the link goes. Returns its index in
    /// `children`.
    fn spawn(&mut self, mut command: Command) -> usize {
        let child = command
            .spawn()
            .expect("cannot start a process in a namespace");
        self.children.push(child);
        self.children.len() - 1
    }

    /// Waits until child `at` exits, which it must do successfully before `deadline`.
    fn wait_for(&mut self, at: usize, deadline: Instant) {
        loop {
            if let Some(status) = self.children[at].try_wait().expect("waiting for a bot") {
                assert!(status.success(), "a bot failed: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "a bot did not finish its call");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Applies `impairment` to the packets leaving both ends.
    fn impair(&mut self, impairment: Impairment) {
        for side in SIDES {
            if impairment.loss_percent > 0 {
                let loss = impairment.loss_percent.to_string();
                self.run_in(side, "nft", &["add", "table", "inet", "impair"]);
                self.run_in(
                    side,
                    "nft",
                    &[
                        "add", "chain", "inet", "impair", "out", "{", "type", "filter", "hook",
                        "output", "priority", "0", ";", "}",
                    ],
                );
                self.run_in(
                    side,
                    "nft",
                    &[
                        "add", "rule", "inet", "impair", "out", "oifname", "veth0", "meta",
                        "l4proto", "udp", "numgen", "random", "mod", "100", "<", &loss, "drop",
                    ],
                );
            }
            if impairment.delay_ms > 0 {
                self.delay(side, impairment.delay_ms);
            }
            if let Some(rate) = impairment.rate_kbit {
                let rate = format!("{rate}kbit");
                self.run_in(
                    side,
                    "tc",
                    &[
                        "qdisc", "add", "dev", "veth0", "root", "tbf", "rate", &rate, "burst",
                        "10kb", "latency", "150ms",
                    ],
                );
            }
        }
    }

    /// Delays the UDP packets leaving `side` through NFQUEUE and the delay helper. The
    /// rule goes in through iptables because this kernel has the `NFQUEUE` xtables
    /// target but not nftables' own `queue` expression (`CONFIG_NFT_QUEUE`).
    fn delay(&mut self, side: Side, delay_ms: u64) {
        let delay = delay_ms.to_string();
        let mut helper = self.command(
            side,
            env!("CARGO_BIN_EXE_meetspace-delay-queue"),
            &["--queue", "0", "--delay-ms", &delay],
        );
        helper.stdout(Stdio::piped());
        let at = self.spawn(helper);
        let mut ready = String::new();
        let stdout = self.children[at].stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut ready)
            .expect("the delay helper's stdout");
        assert_eq!(ready.trim(), "ready", "the delay helper did not start");
        self.run_in(
            side,
            "iptables",
            &[
                "-A",
                "OUTPUT",
                "-o",
                "veth0",
                "-p",
                "udp",
                "-j",
                "NFQUEUE",
                "--queue-num",
                "0",
            ],
        );
    }

    /// Starts the signaling server in namespace A and waits until B can reach it.
    fn start_server(&mut self) {
        let mut server = self.command(
            Side::A,
            env!("CARGO_BIN_EXE_meetspace"),
            &["serve", "--listen", SERVER],
        );
        server.stderr(Stdio::null());
        self.spawn(server);
        let (host, port) = SERVER.split_once(':').expect("host:port");
        let probe = format!("exec 3<>/dev/tcp/{host}/{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self
            .command(Side::B, "bash", &["-c", &probe])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
        {
            assert!(
                Instant::now() < deadline,
                "the signaling server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a call: A creates a room and stays `seconds` + 5, B joins and stays
    /// `seconds`. Returns both bots' `--stats-json` files, A's then B's.
    fn call(&mut self, seconds: u64, media: &[&str]) -> [Value; 2] {
        self.start_server();
        let signal = format!("ws://{SERVER}");
        let stats = [self.scratch.join("a.json"), self.scratch.join("b.json")];
        let host_stays = (seconds + 5).to_string();
        let mut host = self.bot(Side::A, &signal, &stats[0], "Alice", &host_stays);
        host.args(["--create"]).args(media).stdout(Stdio::piped());
        let host = self.spawn(host);
        let room = read_room(&mut self.children[host]);
        let guest_stays = seconds.to_string();
        let mut guest = self.bot(Side::B, &signal, &stats[1], "Bob", &guest_stays);
        guest
            .args(["--room", &room])
            .args(media)
            .stdout(Stdio::null());
        let guest = self.spawn(guest);
        let deadline = Instant::now() + Duration::from_secs(seconds) + JOIN_TIMEOUT * 2;
        self.wait_for(guest, deadline);
        self.wait_for(host, deadline);
        stats.map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("no stats in {}: {e}", path.display()));
            serde_json::from_str(&text).expect("stats JSON")
        })
    }

    fn bot(
        &self,
        side: Side,
        signal: &str,
        stats: &std::path::Path,
        name: &str,
        stay: &str,
    ) -> Command {
        let stats = stats.to_str().expect("a UTF-8 temp path");
        let mut bot = self.command(
            side,
            env!("CARGO_BIN_EXE_meetspace"),
            &[
                "bot",
                "--signal",
                signal,
                "--name",
                name,
                "--duration",
                stay,
                "--stats-json",
                stats,
            ],
        );
        bot.stderr(Stdio::null());
        bot
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Runs `command`, failing the test with its stderr if it fails.
fn run(command: &mut Command) -> Output {
    let output = command.output().expect("cannot run a setup command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Reads the `room <ID>` line a bot prints once it is in its room.
fn read_room(bot: &mut Child) -> String {
    let stdout = bot.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(JOIN_TIMEOUT)
        .expect("the host bot did not get into a room");
    line.trim()
        .strip_prefix("room ")
        .unwrap_or_else(|| panic!("unexpected first line from the bot: {line:?}"))
        .to_owned()
}

/// What `bot` received from its one peer.
fn peer(bot: &Value) -> &Value {
    &bot["peers"][0]
}

fn number(value: &Value, field: &str) -> f64 {
    value[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no {field} in {value}"))
}

/// What one call over the link showed: what Alice sent, what Bob received from her.
struct CallFigures {
    /// Alice's encoder target when she left, kbit/s.
    target_kbps: f64,
    /// Bob's stats about Alice.
    received: Value,
    /// Seconds from Bob's first decoded frame to his leaving.
    watched_s: f64,
}

impl CallFigures {
    fn get(&self, field: &str) -> f64 {
        number(&self.received, field)
    }
}

/// Runs a call of `SECONDS` over a link with `impairment` (described by `label`) and
/// prints the figures.
fn impaired_call(label: &str, impairment: Impairment, media: &[&str]) -> CallFigures {
    const SECONDS: u64 = 30;
    // One call at a time: four calls of two encoding, decoding bots at once would starve
    // each other of CPU on a small machine and blur the figures.
    static ONE_CALL_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_CALL_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut link = Link::new();
    link.impair(impairment);
    let [alice, bob] = link.call(SECONDS, media);
    let received = peer(&bob).clone();
    let target_kbps = number(&alice["sent"], "video_target_kbps");
    // No first frame at all counts as none watched (the assertions then fail).
    let first_frame_ms = received["first_frame_ms"]
        .as_f64()
        .unwrap_or(1000.0 * SECONDS as f64);
    let watched_s = (SECONDS as f64 - first_frame_ms / 1000.0).max(1.0);
    let figures = CallFigures {
        target_kbps,
        received,
        watched_s,
    };
    let frozen_ms = figures.get("frozen_ms");
    println!(
        "{label}, {watched_s:.1} s of video (640x480, 30 fps sent unless said):\n  \
         Bob decoded {:.1} fps and received {:.0} kbit/s of video on average; rtt {:?} ms\n  \
         longest gap between decoded frames {:.0} ms; frozen (gaps > 200 ms, counted \
         whole) {frozen_ms:.0} ms in {} freezes = {:.0} ms per minute (extrapolated)\n  \
         packets lost {}; recovery: Bob sent {} NACKs and {} PLIs; Alice received {} \
         NACKs and {} PLIs, encoded {} keyframes; her video target ended at \
         {target_kbps} kbit/s",
        figures.get("frames_decoded") / watched_s,
        figures.get("video_bytes_received") * 8.0 / 1000.0 / watched_s,
        figures.received["rtt_ms"].as_f64(),
        figures.get("longest_frame_gap_ms"),
        figures.received["freezes"],
        frozen_ms * 60.0 / watched_s,
        figures.received["packets_lost"],
        figures.received["nacks_sent"],
        figures.received["plis_sent"],
        peer(&alice)["nacks_received"],
        peer(&alice)["plis_received"],
        alice["sent"]["video_keyframes"],
    );
    figures
}

/// Video kept playing: on average at least `min_fps` frames a second, and no stall of
/// 5 s.
fn assert_video_kept_playing(figures: &CallFigures, min_fps: f64) {
    assert!(
        figures.get("frames_decoded") >= min_fps * figures.watched_s,
        "{}",
        figures.received
    );
    assert!(
        figures.get("longest_frame_gap_ms") < 5000.0,
        "{}",
        figures.received
    );
}

#[test]
fn baseline_figures_on_an_unimpaired_link() {
    let figures = impaired_call("no impairment", Impairment::default(), &[]);
    assert_video_kept_playing(&figures, 10.0);
    assert_eq!(
        figures.target_kbps, 800.0,
        "no loss, no reason to slow down"
    );
}

#[test]
fn video_keeps_playing_through_five_percent_loss_and_fifty_ms_delay() {
    let impairment = Impairment {
        loss_percent: 5,
        delay_ms: 50,
        ..Impairment::default()
    };
    let figures = impaired_call("5 % loss, 50 ms one-way delay", impairment, &[]);
    assert_video_kept_playing(&figures, 10.0);
    // The loss was seen and repaired by retransmission requests.
    assert!(figures.get("packets_lost") > 0.0, "{}", figures.received);
    assert!(figures.get("nacks_sent") > 0.0, "{}", figures.received);
}

#[test]
fn video_keeps_playing_under_a_300_kbit_cap() {
    // The synthetic 640x480 picture needs about 140 kbit/s of VP8, so this cap leaves
    // room: the call must simply go on.
    let impairment = Impairment {
        rate_kbit: Some(300),
        ..Impairment::default()
    };
    let figures = impaired_call("300 kbit/s cap", impairment, &[]);
    assert_video_kept_playing(&figures, 10.0);
}

#[test]
fn a_cap_below_what_the_video_needs_lowers_the_bitrate_instead_of_freezing() {
    // 180 kbit/s for everything: audio takes about 50 of it (Opus and packet headers),
    // less than the synthetic video's 140 kbit/s is left.
    let impairment = Impairment {
        rate_kbit: Some(180),
        ..Impairment::default()
    };
    let figures = impaired_call(
        "180 kbit/s cap, --min-video-kbps 50",
        impairment,
        &["--min-video-kbps", "50"],
    );
    assert!(
        figures.target_kbps <= 180.0,
        "the bitrate did not come down to the cap: {}",
        figures.target_kbps
    );
    assert_video_kept_playing(&figures, 5.0);
}
