//! Janus for the tests: the Debian package's binary, started with a configuration of
//! its own in a network namespace of its own (its ICE gathers no loopback candidates,
//! so it needs an interface), joined to the test's namespace by a veth pair; and
//! `meetspace bot`s in that namespace, with their `--stats-json` figures and CPU time.
//! Used by tests/sfu.rs, tests/browser.rs and benches/sfu_rooms.rs.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meetspace::rtc::RtcConfig;

/// The Debian package's Janus.
const JANUS: &str = "/usr/bin/janus";
/// The `api_secret` the tests' Janus has.
pub const JANUS_API_SECRET: &str = "test-api-secret";
/// The VideoRoom `admin_key` the tests' Janus has.
pub const JANUS_ADMIN_KEY: &str = "test-admin-key";

/// The port the first Janus's WebSocket transport listens on in its namespace (the
/// next one beside it: the next port).
const JANUS_PORT: u16 = 8188;
/// The first Janus's RTP ports start here (each one beside it: [`RTP_PORTS_EACH`]
/// further on).
const RTP_PORTS: u16 = 20_000;
/// RTP ports each Janus has: one per connection (ten bots in a room hold 100).
const RTP_PORTS_EACH: u16 = 300;

/// A network namespace of the test's own, joined to this one by a veth pair: Janus
/// runs in it (its ICE gathers no loopback candidates, so it needs an interface).
pub struct Namespace {
    /// Its name (`ip netns exec NAME`).
    pub name: String,
    /// Our end's address (clients' media goes from here).
    pub host_ip: Ipv4Addr,
    /// The namespace's end (Janus).
    pub inside_ip: Ipv4Addr,
}

impl Namespace {
    /// Makes namespace number `index` of this test process.
    fn new(index: u8) -> Self {
        let pid = std::process::id();
        let name = format!("msj{}{index}", pid % 100_000);
        let subnet = [10, 78, (pid % 250) as u8, index * 4];
        let host_ip = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], subnet[3] + 1);
        let inside_ip = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], subnet[3] + 2);
        let (outer, inner) = (format!("{name}h"), format!("{name}j"));
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &name,
        ]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        for args in [
            vec!["addr", "add", &format!("{inside_ip}/30"), "dev", &inner],
            vec!["link", "set", &inner, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut inside = vec!["netns", "exec", &name, "ip"];
            inside.extend(args);
            ip(&inside);
        }
        Self {
            name,
            host_ip,
            inside_ip,
        }
    }

    /// Peer connections that gather on our end of the link only.
    pub fn rtc(&self) -> RtcConfig {
        RtcConfig {
            udp_bind: vec![SocketAddr::from((self.host_ip, 0))],
            ..RtcConfig::default()
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and so the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `ip ARGS`, failing the test with what it said.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("cannot run ip (iproute2; the tests run as root)");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Janus of its own in a namespace of its own (or beside another one in its
/// namespace), its configuration in a fresh folder. Killed when dropped.
pub struct JanusProcess {
    child: Child,
    /// Its namespace (shared with those started beside it).
    pub namespace: Arc<Namespace>,
    /// Which Janus of the namespace it is (0: the first): its ports follow.
    slot: u16,
    /// Its configuration; scratch files of the test may go here too.
    pub folder: PathBuf,
}

impl JanusProcess {
    /// Starts Janus in namespace `index` of this test process.
    pub fn start(index: u8) -> Self {
        Self::start_in(Arc::new(Namespace::new(index)), 0)
    }

    /// Starts another Janus in this one's namespace, on the next ports.
    pub fn beside(&self) -> Self {
        Self::start_in(Arc::clone(&self.namespace), self.slot + 1)
    }

    /// Starts Janus number `slot` of `namespace`.
    fn start_in(namespace: Arc<Namespace>, slot: u16) -> Self {
        assert!(
            std::path::Path::new(JANUS).is_file(),
            "{JANUS} is missing: install it with `apt-get install janus` (setup.sh does)"
        );
        let port = JANUS_PORT + slot;
        let folder = std::env::temp_dir().join(format!("meetspace-{}-{slot}", namespace.name));
        std::fs::create_dir_all(&folder).expect("a folder for Janus's configuration");
        let lib = "/usr/lib/x86_64-linux-gnu/janus";
        let rtp = RTP_PORTS + slot * RTP_PORTS_EACH;
        let plugins = [
            "audiobridge",
            "echotest",
            "nosip",
            "recordplay",
            "sip",
            "streaming",
            "textroom",
            "videocall",
            "voicemail",
            "duktape",
            "lua",
        ]
        .map(|name| format!("libjanus_{name}.so"))
        .join(",");
        let transports = ["http", "mqtt", "nanomsg", "pfunix", "rabbitmq"]
            .map(|name| format!("libjanus_{name}.so"))
            .join(",");
        let main = format!(
            "general: {{\n  configs_folder = \"{folder}\"\n  plugins_folder = \"{lib}/plugins\"\n  \
             transports_folder = \"{lib}/transports\"\n  events_folder = \"{lib}/events\"\n  \
             loggers_folder = \"{lib}/loggers\"\n  debug_level = 3\n  \
             api_secret = \"{JANUS_API_SECRET}\"\n}}\n\
             media: {{\n  rtp_port_range = \"{rtp}-{}\"\n}}\n\
             plugins: {{\n  disable = \"{plugins}\"\n}}\n\
             transports: {{\n  disable = \"{transports}\"\n}}\n",
            rtp + RTP_PORTS_EACH - 1,
            folder = folder.display(),
        );
        std::fs::write(folder.join("janus.jcfg"), main).expect("janus.jcfg");
        std::fs::write(
            folder.join("janus.transport.websockets.jcfg"),
            format!("general: {{\n  ws = true\n  ws_port = {port}\n}}\n"),
        )
        .expect("the WebSocket transport's configuration");
        std::fs::write(
            folder.join("janus.plugin.videoroom.jcfg"),
            format!("general: {{\n  admin_key = \"{JANUS_ADMIN_KEY}\"\n}}\n"),
        )
        .expect("the VideoRoom's configuration");
        let child = Command::new("ip")
            .args(["netns", "exec", &namespace.name, JANUS])
            .arg("-C")
            .arg(folder.join("janus.jcfg"))
            .arg("-F")
            .arg(&folder)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start janus");
        let started = Instant::now();
        while TcpStream::connect((namespace.inside_ip, port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "Janus did not open its WebSocket port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            namespace,
            slot,
            folder,
        }
    }

    /// The CPU time it has used so far.
    pub fn cpu_time(&self) -> Duration {
        process_cpu_time(self.child.id())
    }

    /// Its WebSocket address (`--sfu janus+ws://...` without `janus+`).
    pub fn url(&self) -> String {
        format!(
            "ws://{}:{}",
            self.namespace.inside_ip,
            JANUS_PORT + self.slot
        )
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// A `meetspace bot` running in `janus`'s namespace (media between it and Janus
/// stays there), killed when dropped.
pub struct Bot {
    child: Child,
    /// Its `--stats-json` file.
    pub stats: PathBuf,
}

impl Bot {
    /// Starts a bot named `name` signaling through `url` with `args` (where it goes).
    pub fn start(
        janus: &JanusProcess,
        url: &str,
        name: &str,
        args: &[&str],
    ) -> (Self, Option<String>) {
        let stats = janus.folder.join(format!("{name}.json"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &janus.namespace.name])
            .arg(env!("CARGO_BIN_EXE_meetspace"))
            .args(["bot", "--signal", url, "--name", name])
            .args(["--resolution", "320x240", "--fps", "15", "--stats-json"])
            .arg(&stats)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start meetspace bot");
        let room = args.contains(&"--create").then(|| {
            let stdout = child.stdout.take().expect("the bot's stdout");
            let mut first_line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first_line)
                .expect("the bot's first line");
            first_line
                .strip_prefix("room ")
                .unwrap_or_else(|| panic!("the bot's first line was {first_line:?}"))
                .trim()
                .to_owned()
        });
        (Self { child, stats }, room)
    }

    /// Its `--stats-json` figures now (null until written).
    pub fn figures(&self) -> serde_json::Value {
        std::fs::read_to_string(&self.stats)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// What `read` finds in each peer's figures, by the peer's name (peers where it
    /// finds nothing left out).
    pub fn per_peer<T>(
        &self,
        read: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> HashMap<String, T> {
        let figures = self.figures();
        figures["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|peer| Some((peer["name"].as_str()?.to_owned(), read(peer)?)))
            .collect()
    }

    /// The longest time between two frames shown of each peer, by name, in ms.
    pub fn shown_gaps(&self) -> HashMap<String, f64> {
        self.per_peer(|peer| peer["longest_shown_gap_ms"].as_f64())
    }

    /// Frames decoded from each peer, by name.
    pub fn decoded(&self) -> HashMap<String, u64> {
        self.per_peer(|peer| Some(peer["frames_decoded"].as_u64().unwrap_or(0)))
    }

    /// The CPU time it has used so far.
    pub fn cpu_time(&self) -> Duration {
        process_cpu_time(self.child.id())
    }

    /// Stops the bot as a person leaves: it says `leave` (SIGTERM), and exits.
    pub fn leave(mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(stopped.success());
        let _ = self.child.wait();
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CPU time process `pid` has used (user and system).
fn process_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's name (in parentheses, which may hold spaces):
    // utime and stime are the 12th and 13th, in clock ticks of 1/100 s.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}
