//! A lab for TURN relaying tests: two homes behind NATs, one internet, built from Linux
//! network namespaces (IPv4 only), with coturn on the internet host.
//!
//! ```text
//!  home-a 10.81.1.2 ── 10.81.1.1 nat-a 100.64.81.2 ─┐
//!                       (masquerade)                 ├─ br0 100.64.81.1  internet
//!  home-b 10.81.2.2 ── 10.81.2.1 nat-b 100.64.81.3 ─┘   (TURN, signaling)
//!                       (masquerade random,fully-random: a symmetric NAT)
//! ```
//!
//! The internet knows no route to either private network and the routers drop what
//! comes in from the internet unasked, so the homes reach each other only through the
//! TURN relay. Each lab has its own namespaces (names unique to the process and call),
//! so labs can run side by side; dropping one (also when a test fails) kills what runs
//! in it and deletes the namespaces with every interface and rule in them. Needs root,
//! iproute2, nftables, procps and coturn (setup.sh installs them).

// Each test binary that says `mod nat;` uses its own subset of the lab.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The internet host's address: the TURN server's and the signaling server's.
const INTERNET_IP: &str = "100.64.81.1";
/// The port coturn listens on, UDP and TCP.
pub const TURN_PORT: u16 = 3478;
/// The port `start_turn_and_signaling` has the signaling server listen on.
pub const SIGNAL_PORT: u16 = 8480;
/// How long coturn may take to listen.
const TURN_START_TIMEOUT: Duration = Duration::from_secs(10);
/// The namespace of the internet host.
const INTERNET: &str = "internet";
/// coturn's own log (`--log-file`), in the scratch directory.
const TURN_LOG: &str = "turnserver.log";
/// What coturn writes to stdout and stderr besides its log, in the scratch directory.
const TURN_OUTPUT: &str = "turnserver.out";

/// One of the two homes, each a private network behind its own NAT router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// Behind a port-preserving NAT with endpoint-independent mapping (plain
    /// `masquerade`).
    A,
    /// Behind a symmetric NAT (`masquerade random,fully-random`): every flow gets a
    /// random public port.
    B,
}

impl Home {
    /// Both homes.
    const ALL: [Home; 2] = [Home::A, Home::B];

    /// The home's own address, on its private network.
    pub fn private_ip(self) -> &'static str {
        match self {
            Home::A => "10.81.1.2",
            Home::B => "10.81.2.2",
        }
    }

    /// The address the internet sees the home's traffic come from: its router's WAN.
    pub fn public_ip(self) -> &'static str {
        match self {
            Home::A => "100.64.81.2",
            Home::B => "100.64.81.3",
        }
    }

    /// The router's address on the home's private network, the home's default route.
    fn gateway_ip(self) -> &'static str {
        match self {
            Home::A => "10.81.1.1",
            Home::B => "10.81.2.1",
        }
    }

    /// `a` or `b`, for names.
    fn letter(self) -> &'static str {
        match self {
            Home::A => "a",
            Home::B => "b",
        }
    }

    /// The short name of the home's namespace.
    fn house(self) -> String {
        format!("home-{}", self.letter())
    }

    /// The short name of the home's router's namespace.
    fn router(self) -> String {
        format!("nat-{}", self.letter())
    }

    /// The router's nftables statement for what leaves through its WAN.
    fn masquerade(self) -> &'static str {
        match self {
            Home::A => "masquerade",
            Home::B => "masquerade random,fully-random",
        }
    }
}

/// How the lab's signaling server was started, to start it again.
struct Signaling {
    /// Its index in `Lab::children`.
    at: usize,
    program: String,
    flags: Vec<String>,
    env: Vec<(String, String)>,
}

/// The namespaces, the processes started in them and a scratch directory. Dropping it
/// kills the processes and deletes the namespaces and the directory.
pub struct Lab {
    /// The prefix of this lab's namespace names, unique to the process and call.
    id: String,
    /// The namespaces made so far, by full name; deleted on drop.
    namespaces: Vec<String>,
    /// The processes started through `spawn` (coturn among them); killed on drop.
    children: Vec<Child>,
    /// coturn's index in `children`, once started.
    turn: Option<usize>,
    /// The signaling server, once started.
    signaling: Option<Signaling>,
    /// Files of this lab: nftables rulesets, coturn's log and database.
    scratch: tempfile::TempDir,
}

impl Lab {
    /// Builds the namespaces, links, routes and NAT rules (see the module's picture).
    pub fn new() -> Lab {
        require_tools();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "meetspace-nat-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let scratch = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir()
            .expect("cannot make a scratch directory");
        let mut lab = Lab {
            id,
            namespaces: Vec::new(),
            children: Vec::new(),
            turn: None,
            signaling: None,
            scratch,
        };
        let mut names = vec![INTERNET.to_owned()];
        for home in Home::ALL {
            names.extend([home.router(), home.house()]);
        }
        for name in names {
            let namespace = lab.namespace(&name);
            run(Command::new("ip").args(["netns", "add", &namespace]));
            lab.namespaces.push(namespace);
            lab.run_in(&name, "ip", &["link", "set", "lo", "up"]);
        }
        // The internet: one bridge that both routers' WAN links join.
        let internet_cidr = format!("{INTERNET_IP}/24");
        lab.run_in(INTERNET, "ip", &["link", "add", "br0", "type", "bridge"]);
        lab.run_in(
            INTERNET,
            "ip",
            &["addr", "add", &internet_cidr, "dev", "br0"],
        );
        lab.run_in(INTERNET, "ip", &["link", "set", "br0", "up"]);
        for home in Home::ALL {
            lab.connect(home);
        }
        lab
    }

    /// Where the TURN server listens, and where a signaling server should: the internet
    /// host's address, reachable from both homes.
    pub fn internet_ip() -> &'static str {
        INTERNET_IP
    }

    /// Starts coturn on the internet host, with TURN REST API credentials under
    /// `secret` (username `EXPIRY_UNIX_SECONDS:ANYTHING`, password
    /// base64(HMAC-SHA1(secret, username))) in realm `meetspace`, listening on UDP and
    /// TCP and relaying from the internet address. Waits until it listens; returns the
    /// port.
    pub fn start_turn(&mut self, secret: &str) -> u16 {
        assert!(self.turn.is_none(), "coturn is already running in this lab");
        let stderr = File::create(self.scratch().join(TURN_OUTPUT))
            .expect("cannot make coturn's output file");
        let stdout = stderr
            .try_clone()
            .expect("cannot share coturn's output file");
        let mut turn = self.command_in_internet("turnserver");
        turn.arg("-n") // no configuration file: everything is on this command line
            .arg(format!("--listening-ip={INTERNET_IP}"))
            .arg(format!("--listening-port={TURN_PORT}"))
            .arg(format!("--relay-ip={INTERNET_IP}"))
            .arg("--realm=meetspace")
            .arg("--use-auth-secret")
            .arg(format!("--static-auth-secret={secret}"))
            .args(["--no-tls", "--no-dtls", "--no-cli"])
            .arg(format!("--log-file={}", self.scratch_path(TURN_LOG)))
            // One file under exactly that name, with every session's requests in it.
            .args(["--simple-log", "--no-stdout-log", "--verbose"])
            .arg(format!("--pidfile={}", self.scratch_path("turnserver.pid")))
            .arg(format!("--userdb={}", self.scratch_path("turndb")))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let at = self.spawn(turn);
        self.turn = Some(at);
        let deadline = Instant::now() + TURN_START_TIMEOUT;
        while !self.turn_listens() {
            if let Some(status) = self.children[at].try_wait().expect("waiting for coturn") {
                panic!("coturn exited ({status}):\n{}", self.turn_log());
            }
            assert!(
                Instant::now() < deadline,
                "coturn did not listen on {INTERNET_IP}:{TURN_PORT} within {TURN_START_TIMEOUT:?}:\n{}",
                self.turn_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TURN_PORT
    }

    /// Starts coturn with `secret` and, with the same secret, `program` (the meetspace
    /// binary) as `serve` on the internet host, handing out credentials for coturn over
    /// UDP and TCP; `extra` flags go to `serve`. Waits until both listen; returns the
    /// signaling server's HOST:PORT.
    pub fn start_turn_and_signaling(
        &mut self,
        program: &str,
        secret: &str,
        extra: &[&str],
    ) -> String {
        let turn_port = self.start_turn(secret);
        let udp = format!("turn:{INTERNET_IP}:{turn_port}?transport=udp");
        let tcp = format!("turn:{INTERNET_IP}:{turn_port}?transport=tcp");
        let mut flags = vec!["--turn-url", &udp, "--turn-url", &tcp];
        flags.extend(extra);
        self.start_signaling(program, &flags, &[("MEETSPACE_TURN_SECRET", secret)])
    }

    /// Starts `program` (the meetspace binary) as `serve` with `flags` and `env` on the
    /// internet host at [`SIGNAL_PORT`]; waits until it listens and returns its
    /// HOST:PORT. [`Lab::restart_signaling`] starts it again alike.
    pub fn start_signaling(
        &mut self,
        program: &str,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> String {
        let owned = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect();
        let signaling = Signaling {
            at: 0,
            program: program.to_owned(),
            flags: owned(flags),
            env: env
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        };
        self.spawn_signaling(signaling);
        format!("{INTERNET_IP}:{SIGNAL_PORT}")
    }

    /// Kills the signaling server (every room and connection on it is lost) and starts
    /// it again at the same address; waits until it listens.
    pub fn restart_signaling(&mut self) {
        let signaling = self.signaling.take().expect("no signaling server started");
        let child = &mut self.children[signaling.at];
        child.kill().expect("cannot kill the signaling server");
        child.wait().expect("waiting for the signaling server");
        self.spawn_signaling(signaling);
    }

    fn spawn_signaling(&mut self, mut signaling: Signaling) {
        let address = format!("{INTERNET_IP}:{SIGNAL_PORT}");
        let mut serve = self.command_in_internet(&signaling.program);
        serve
            .args(["serve", "--listen", &address])
            .args(&signaling.flags)
            .envs(signaling.env.iter().map(|(key, value)| (key, value)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null());
        signaling.at = self.spawn_until(serve, "listening at ws://");
        self.signaling = Some(signaling);
    }

    /// coturn's log so far, and anything else it printed, for assertion messages.
    pub fn turn_log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.scratch().join(name)).unwrap_or_default();
        let mut log = read(TURN_LOG);
        let output = read(TURN_OUTPUT);
        if !output.trim().is_empty() {
            log.push_str("\n-- stdout and stderr --\n");
            log.push_str(&output);
        }
        log
    }

    /// A command that runs `program` inside `home` (`ip netns exec`); add its arguments.
    pub fn command_in_home(&self, home: Home, program: &str) -> Command {
        self.command_in(&home.house(), program)
    }

    /// A command that runs `program` on the internet host (`ip netns exec`); add its
    /// arguments.
    pub fn command_in_internet(&self, program: &str) -> Command {
        self.command_in(INTERNET, program)
    }

    /// Starts `command` (one from `command_in_home` or `command_in_internet`); it is
    /// killed when the lab goes. Returns its index for `child`.
    pub fn spawn(&mut self, mut command: Command) -> usize {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        self.children.push(child);
        self.children.len() - 1
    }

    /// Starts `command` with its stderr piped and waits until a line of it contains
    /// `ready` (a server saying where it listens); later lines are read and dropped, so
    /// the process never blocks on a full pipe. Fails the test when it ends first.
    pub fn spawn_until(&mut self, mut command: Command, ready: &str) -> usize {
        command.stderr(Stdio::piped());
        let at = self.spawn(command);
        let stderr = self.children[at].stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let said = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains(ready));
        assert!(said, "a process of the lab ended before saying {ready:?}");
        std::thread::spawn(move || lines.for_each(drop));
        at
    }

    /// The process `spawn` returned `at` for.
    pub fn child(&mut self, at: usize) -> &mut Child {
        &mut self.children[at]
    }

    /// Drops every UDP packet into and out of `home` (loopback aside), so that only TCP
    /// reaches the internet. Sending UDP then fails at once (EPERM).
    pub fn block_udp(&self, home: Home) {
        let ruleset = r#"table inet meetspace_block_udp {
	chain input {
		type filter hook input priority filter; policy accept;
		iifname != "lo" meta l4proto udp drop
	}
	chain output {
		type filter hook output priority filter; policy accept;
		oifname != "lo" meta l4proto udp drop
	}
}
"#;
        let name = format!("block-udp-{}", home.letter());
        self.load_rules(&home.house(), &name, ruleset);
    }

    /// Lets UDP into and out of `home` again after [`Lab::block_udp`].
    pub fn allow_udp(&self, home: Home) {
        self.run_in(
            &home.house(),
            "nft",
            &["delete", "table", "inet", "meetspace_block_udp"],
        );
    }

    /// The lab's scratch directory (removed on drop).
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// A veth pair from interface `a.1` in namespace `a.0` to `b.1` in `b.0` (short names
    /// of this lab's namespaces), made inside them so the names cannot collide.
    fn veth(&self, a: (&str, &str), b: (&str, &str)) {
        let (a_namespace, b_namespace) = (self.namespace(a.0), self.namespace(b.0));
        run(Command::new("ip").args([
            "link",
            "add",
            a.1,
            "netns",
            &a_namespace,
            "type",
            "veth",
            "peer",
            "name",
            b.1,
            "netns",
            &b_namespace,
        ]));
    }

    /// Joins `home` to the internet through its router: the WAN link into the bridge,
    /// the LAN link into the home, forwarding, the NAT rules and the home's route.
    fn connect(&self, home: Home) {
        let (router, house) = (home.router(), home.house());
        let wan_port = format!("wan-{}", home.letter());
        self.veth((&router, "wan"), (INTERNET, &wan_port));
        self.run_in(INTERNET, "ip", &["link", "set", &wan_port, "master", "br0"]);
        self.run_in(INTERNET, "ip", &["link", "set", &wan_port, "up"]);
        let wan_cidr = format!("{}/24", home.public_ip());
        self.run_in(&router, "ip", &["addr", "add", &wan_cidr, "dev", "wan"]);
        self.run_in(&router, "ip", &["link", "set", "wan", "up"]);

        self.veth((&router, "lan"), (&house, "eth0"));
        let lan_cidr = format!("{}/24", home.gateway_ip());
        self.run_in(&router, "ip", &["addr", "add", &lan_cidr, "dev", "lan"]);
        self.run_in(&router, "ip", &["link", "set", "lan", "up"]);
        self.run_in(&router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        // Masquerade what leaves through the WAN; let in from the WAN only the replies.
        let ruleset = format!(
            r#"table ip meetspace_nat {{
	chain postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" {masquerade}
	}}
	chain forward {{
		type filter hook forward priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" drop
	}}
}}
"#,
            masquerade = home.masquerade()
        );
        self.load_rules(&router, &router, &ruleset);

        let home_cidr = format!("{}/24", home.private_ip());
        self.run_in(&house, "ip", &["addr", "add", &home_cidr, "dev", "eth0"]);
        self.run_in(&house, "ip", &["link", "set", "eth0", "up"]);
        self.run_in(
            &house,
            "ip",
            &["route", "add", "default", "via", home.gateway_ip()],
        );
    }

    /// Whether coturn has its UDP and TCP listeners up.
    fn turn_listens(&self) -> bool {
        let filter = format!("sport = :{TURN_PORT}");
        let sockets = run(self.command_in(INTERNET, "ss").args(["-Hlnut", &filter]));
        let sockets = String::from_utf8_lossy(&sockets.stdout);
        ["udp", "tcp"]
            .iter()
            .all(|protocol| sockets.lines().any(|line| line.starts_with(protocol)))
    }

    /// Writes `ruleset` to the scratch directory as `name.nft` and loads it into
    /// namespace `short_name`.
    fn load_rules(&self, short_name: &str, name: &str, ruleset: &str) {
        let path = self.scratch().join(format!("{name}.nft"));
        std::fs::write(&path, ruleset).expect("cannot write an nftables ruleset");
        let path = path.to_str().expect("a UTF-8 scratch path");
        self.run_in(short_name, "nft", &["-f", path]);
    }

    /// The full name of this lab's namespace `short_name` (`internet`, `nat-a`, ...).
    fn namespace(&self, short_name: &str) -> String {
        format!("{}-{short_name}", self.id)
    }

    /// A command that runs `program` inside namespace `short_name`.
    fn command_in(&self, short_name: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace(short_name), program]);
        command
    }

    /// Runs `program` with `args` inside namespace `short_name`; fails the test if it
    /// fails.
    fn run_in(&self, short_name: &str, program: &str, args: &[&str]) -> Output {
        run(self.command_in(short_name, program).args(args))
    }

    /// `name` in the scratch directory, as a string for command lines.
    fn scratch_path(&self, name: &str) -> String {
        let path = self.scratch().join(name);
        path.to_str().expect("a UTF-8 scratch path").to_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for namespace in self.namespaces.iter().rev() {
            // Also what those processes started (a browser's helpers, say).
            let pids = Command::new("ip")
                .args(["netns", "pids", namespace])
                .output();
            if let Ok(pids) = pids {
                let pids = String::from_utf8_lossy(&pids.stdout);
                let pids: Vec<&str> = pids.split_whitespace().collect();
                if !pids.is_empty() {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .args(pids)
                        .stderr(Stdio::null())
                        .status();
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

/// Fails with instructions when the lab cannot be built: not root, or a tool missing.
fn require_tools() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .expect("cannot run id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the NAT lab makes network namespaces: run the test as root"
    );
    for (tool, package) in [
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("nft", "nftables"),
        ("sysctl", "procps"),
        ("kill", "procps"),
        ("turnserver", "coturn"),
    ] {
        assert!(
            on_path(tool),
            "`{tool}` is missing: install the Debian package {package} (./setup.sh does)"
        );
    }
}

/// Whether an executable file `tool` is in a directory of `PATH`.
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(tool))
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// Runs `command`, failing the test with its stderr if it fails.
fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
