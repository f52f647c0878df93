//! Calls over an impaired network (docs/impaired-network.md): two `meetspace bot`
//! processes, each in a network namespace the test makes, joined by a veth pair. The link
//! gets loss (an nftables `numgen random` drop rule), delay (an NFQUEUE rule and
//! `meetspace-delay-queue`, as this kernel has no `tc netem`) and a bandwidth cap
//! (`tc tbf`), each on the egress of both ends. The signaling server runs in the first
//! namespace; nothing leaves the machine. Needs root and the tools setup.sh installs.
//!
//! The tests assert behaviour (video keeps playing, the bitrate comes down under a cap);
//! the figures (freezes, NACK/PLI counts, bitrate, fps) are printed:
//! `cargo test --test impaired_network -- --nocapture --test-threads 1`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
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

#[test]
fn video_keeps_playing_through_five_percent_loss_and_fifty_ms_delay() {
    const SECONDS: u64 = 30;
    let mut link = Link::new();
    link.impair(Impairment {
        loss_percent: 5,
        delay_ms: 50,
        ..Impairment::default()
    });
    let [alice, bob] = link.call(SECONDS, &[]);
    let received = peer(&bob);
    let sent = peer(&alice);
    let decoded = number(received, "frames_decoded");
    let first_frame_s = number(received, "first_frame_ms") / 1000.0;
    let watched_s = SECONDS as f64 - first_frame_s;
    let frozen_ms = number(received, "frozen_ms");
    let per_minute = 60.0 / watched_s;
    println!(
        "5 % loss, 50 ms one-way delay, {watched_s:.1} s of video (30 fps sent):\n  \
         frames decoded {decoded}, {:.1} fps on average; rtt {:?} ms\n  \
         longest gap between decoded frames {:.0} ms\n  \
         frozen (gaps > 200 ms, counted whole) {frozen_ms:.0} ms in {} freezes = \
         {:.0} ms per minute (extrapolated)\n  \
         recovery: Bob sent {} NACKs and {} PLIs; Alice received {} NACKs and {} PLIs, \
         encoded {} keyframes; Alice's video target at the end {} kbit/s",
        decoded / watched_s,
        received["rtt_ms"].as_f64(),
        number(received, "longest_frame_gap_ms"),
        received["freezes"],
        frozen_ms * per_minute,
        received["nacks_sent"],
        received["plis_sent"],
        sent["nacks_received"],
        sent["plis_received"],
        alice["sent"]["video_keyframes"],
        alice["sent"]["video_target_kbps"],
    );
    // Video keeps playing: frames throughout (a third of the frame rate on average, no
    // stall of 5 s), and the loss was seen and repaired by retransmission requests.
    assert!(decoded >= 10.0 * watched_s, "{received}");
    assert!(
        number(received, "longest_frame_gap_ms") < 5000.0,
        "{received}"
    );
    assert!(
        number(received, "packets_lost") > 0.0,
        "no loss seen: {received}"
    );
    assert!(number(received, "nacks_sent") > 0.0, "no NACKs: {received}");
}

/// A call over a link capped at `rate_kbit` each way; prints and returns what Alice
/// sent and what Bob received: (Alice's encoder target, Bob's view of Alice, seconds of
/// video Bob watched).
fn capped_call(rate_kbit: u32, media: &[&str]) -> (f64, Value, f64) {
    const SECONDS: u64 = 30;
    let mut link = Link::new();
    link.impair(Impairment {
        rate_kbit: Some(rate_kbit),
        ..Impairment::default()
    });
    let [alice, bob] = link.call(SECONDS, media);
    let received = peer(&bob).clone();
    let target = number(&alice["sent"], "video_target_kbps");
    let decoded = number(&received, "frames_decoded");
    // No first frame at all counts as none watched (the assertions then fail).
    let first_frame_ms = received["first_frame_ms"]
        .as_f64()
        .unwrap_or(1000.0 * SECONDS as f64);
    let watched_s = (SECONDS as f64 - first_frame_ms / 1000.0).max(1.0);
    println!(
        "{rate_kbit} kbit/s cap, {watched_s:.1} s of video: Alice's video target ended at \
         {target} kbit/s; Bob received {:.0} kbit/s at {:.1} fps in the last second, \
         {:.1} fps on average; longest gap {:.0} ms, frozen {:.0} ms in {} freezes; \
         packets lost {}, NACKs {}, PLIs {}",
        number(&received, "video_kbps"),
        number(&received, "fps"),
        decoded / watched_s,
        number(&received, "longest_frame_gap_ms"),
        number(&received, "frozen_ms"),
        received["freezes"],
        received["packets_lost"],
        received["nacks_sent"],
        received["plis_sent"],
    );
    (target, received, watched_s)
}

#[test]
fn video_keeps_playing_under_a_300_kbit_cap() {
    // The synthetic 640x480 picture needs about 140 kbit/s of VP8, so this cap leaves
    // room: the call must simply go on at full frame rate.
    let (target, received, watched_s) = capped_call(300, &[]);
    assert!(target <= 800.0);
    assert!(
        number(&received, "frames_decoded") >= 10.0 * watched_s,
        "{received}"
    );
    assert!(
        number(&received, "longest_frame_gap_ms") < 5000.0,
        "{received}"
    );
}

#[test]
fn a_cap_below_what_the_video_needs_lowers_the_bitrate_instead_of_freezing() {
    // 180 kbit/s for everything: audio takes about 50 of it (Opus and packet headers),
    // less than the synthetic video's 140 kbit/s is left.
    let (target, received, watched_s) = capped_call(180, &["--min-video-kbps", "50"]);
    assert!(
        target <= 180.0,
        "the bitrate did not come down to the cap: {target}"
    );
    assert!(
        number(&received, "frames_decoded") >= 5.0 * watched_s,
        "{received}"
    );
    assert!(
        number(&received, "longest_frame_gap_ms") < 5000.0,
        "{received}"
    );
}
