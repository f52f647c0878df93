//! Rooms on the SFU: a real Janus (the Debian package, started here with its own
//! configuration on free loopback ports) behind a real signaling server. Clients speak
//! the wire protocol (`sfu_signal`) and real webrtc-rs connections: one upstream each,
//! one downstream per other member, every stream through Janus.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use meetspace::rtc::native::{LocalMedia, PeerSession};
use meetspace::rtc::{PeerEvent, Role, RtcConfig};
use meetspace::signaling::payload::SignalPayload;
use meetspace::signaling::protocol::{
    ClientMessage, DisplayName, ErrorCode, PeerId, ServerMessage,
};
use meetspace::signaling::server::sfu::SfuSettings;
use meetspace::signaling::server::{ServerLimits, SignalingServer};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const JANUS: &str = "/usr/bin/janus";
const FRAME_DURATION: Duration = Duration::from_millis(33);
const JANUS_API_SECRET: &str = "test-api-secret";
const JANUS_ADMIN_KEY: &str = "test-admin-key";

/// The port Janus's WebSocket transport listens on in its namespace.
const JANUS_PORT: u16 = 8188;

/// A network namespace of the test's own, joined to this one by a veth pair: Janus
/// runs in it (its ICE gathers no loopback candidates, so it needs an interface).
struct Namespace {
    name: String,
    /// Our end's address (clients' media goes from here).
    host_ip: Ipv4Addr,
    /// The namespace's end (Janus).
    inside_ip: Ipv4Addr,
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
    fn rtc(&self) -> RtcConfig {
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

/// A Janus of its own in a namespace of its own, its configuration in a fresh folder.
/// Killed when dropped.
struct JanusProcess {
    child: Child,
    namespace: Namespace,
    _folder: PathBuf,
}

impl JanusProcess {
    fn start(index: u8) -> Self {
        assert!(
            std::path::Path::new(JANUS).is_file(),
            "{JANUS} is missing: install it with `apt-get install janus` (setup.sh does)"
        );
        let namespace = Namespace::new(index);
        let port = JANUS_PORT;
        let folder = std::env::temp_dir().join(format!("meetspace-{}", namespace.name));
        std::fs::create_dir_all(&folder).expect("a folder for Janus's configuration");
        let lib = "/usr/lib/x86_64-linux-gnu/janus";
        let rtp = 20_000;
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
            rtp + 99,
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
            _folder: folder,
        }
    }

    /// Its WebSocket address (`--sfu janus+ws://...` without `janus+`).
    fn url(&self) -> String {
        format!("ws://{}:{JANUS_PORT}", self.namespace.inside_ip)
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._folder);
    }
}

/// A signaling server on `ip` whose rooms move to `janus` at `mesh_limit` people.
async fn serve(janus: &JanusProcess, ip: Ipv4Addr, mesh_limit: usize) -> String {
    let server = SignalingServer::bind(SocketAddr::from((ip, 0)), ServerLimits::default())
        .await
        .expect("a port for the signaling server")
        .with_sfu(SfuSettings {
            instances: vec![janus.url()],
            api_secret: Some(JANUS_API_SECRET.to_owned()),
            admin_key: Some(JANUS_ADMIN_KEY.to_owned()),
            mesh_limit,
        });
    let url = server.url();
    tokio::spawn(server.run());
    url
}

/// The fake VP8 frame `index` (a key frame every 10th), its index in bytes 1..5.
fn fake_frame(index: u32) -> Vec<u8> {
    let mut data: Vec<u8> = (0..1500u32)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect();
    data[0] = if index.is_multiple_of(10) { 0x10 } else { 0x11 };
    data[1..5].copy_from_slice(&index.to_be_bytes());
    data
}

/// What one member has received through the SFU: frame indices, by whose feed.
type Received = Arc<Mutex<HashMap<PeerId, Vec<u32>>>>;

/// One member of a room on the SFU, as a client would be: its signaling connection,
/// its upstream (once the room is on the SFU) and a downstream per other member.
struct Member {
    peer_id: PeerId,
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    /// What the server said that the member's task did not handle itself.
    said: mpsc::UnboundedReceiver<ServerMessage>,
    received: Received,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Member {
    /// Connects to `url` and sends `first` (create or join); returns with the welcome.
    async fn enter(url: &str, rtc: RtcConfig, first: ClientMessage) -> (Self, ServerMessage) {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the signaling server answers");
        let (outgoing, to_send) = mpsc::unbounded_channel::<ClientMessage>();
        let (said_tx, mut said) = mpsc::unbounded_channel::<ServerMessage>();
        outgoing.send(first).expect("the member's task runs");
        let received: Received = Arc::default();
        let media = LocalMedia::new().expect("local media");
        let member = tokio::spawn(run_member(
            socket,
            rtc,
            to_send,
            outgoing.clone(),
            said_tx,
            received.clone(),
            media.clone(),
        ));
        // Our camera: a numbered frame every 33 ms (sent once the upstream is up).
        let camera = tokio::spawn(async move {
            for index in 0.. {
                let _ = media.write_video(&fake_frame(index), FRAME_DURATION).await;
                tokio::time::sleep(FRAME_DURATION).await;
            }
        });
        let welcome = next_said(&mut said, "a welcome").await;
        let ServerMessage::Welcome { peer_id, .. } = &welcome else {
            panic!("expected a welcome, got {welcome:?}");
        };
        let member = Self {
            peer_id: peer_id.clone(),
            outgoing,
            said,
            received,
            tasks: [member, camera],
        };
        (member, welcome)
    }

    /// The frame indices received from `feed` so far.
    fn frames_from(&self, feed: &PeerId) -> Vec<u32> {
        self.received
            .lock()
            .expect("no panic while holding the frames")
            .get(feed)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The next thing the server said, within 10 s.
async fn next_said(said: &mut mpsc::UnboundedReceiver<ServerMessage>, what: &str) -> ServerMessage {
    tokio::time::timeout(Duration::from_secs(10), said.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s"))
        .expect("the connection stays open")
}

/// A member's client: writes what is sent, opens the upstream when the room is on the
/// SFU, answers every downstream the server offers, and counts the frames that come.
async fn run_member(
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    rtc: RtcConfig,
    mut to_send: mpsc::UnboundedReceiver<ClientMessage>,
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    said: mpsc::UnboundedSender<ServerMessage>,
    received: Received,
    media: LocalMedia,
) {
    let (mut write, mut read) = socket.split();
    let (events_tx, mut events) = mpsc::unbounded_channel::<(Option<PeerId>, PeerEvent)>();
    // Downstreams send nothing: their tracks are fed by a camera that never writes.
    let silent = LocalMedia::new().expect("local media");
    let mut streams: HashMap<Option<PeerId>, Arc<PeerSession>> = HashMap::new();
    let open = |feed: Option<PeerId>, local: &LocalMedia, role| {
        let events_tx = events_tx.clone();
        let local = local.clone();
        let rtc = rtc.clone();
        async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let session = PeerSession::new(&rtc, &local, role, tx)
                .await
                .expect("a peer connection");
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    if events_tx.send((feed.clone(), event)).is_err() {
                        break;
                    }
                }
            });
            Arc::new(session)
        }
    };
    loop {
        tokio::select! {
            message = to_send.recv() => {
                let Some(message) = message else { break };
                let text = serde_json::to_string(&message).expect("a message encodes");
                if write.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            frame = read.next() => {
                let Some(Ok(frame)) = frame else { break };
                let Message::Text(text) = frame else { continue };
                let message: ServerMessage =
                    serde_json::from_str(text.as_str()).expect("the server speaks the protocol");
                match message {
                    ServerMessage::SfuStarted | ServerMessage::Welcome { sfu: true, .. } => {
                        if let std::collections::hash_map::Entry::Vacant(upstream) =
                            streams.entry(None)
                        {
                            upstream.insert(open(None, &media, Role::Offerer).await);
                        }
                        let _ = said.send(message);
                    }
                    ServerMessage::SfuSignal { feed, data } => {
                        let payload = SignalPayload::from_json(&data.to_string())
                            .expect("the server relays valid payloads");
                        if let (Some(owner), SignalPayload::Offer { .. }) = (&feed, &payload) {
                            let session = open(Some(owner.clone()), &silent, Role::Answerer).await;
                            streams.insert(feed.clone(), session);
                        }
                        let session = streams.get(&feed).expect("a stream the server offered");
                        session.handle_signal(payload).await.expect("the SFU's description applies");
                    }
                    other => {
                        let _ = said.send(other);
                    }
                }
            }
            Some((feed, event)) = events.recv() => match event {
                PeerEvent::Signal(payload) => {
                    let data = serde_json::to_value(&payload).expect("a payload encodes");
                    let _ = outgoing.send(ClientMessage::SfuSignal { feed, data });
                }
                PeerEvent::VideoFrame { data, .. } => {
                    if let Some(feed) = feed {
                        let index = u32::from_be_bytes(data[1..5].try_into().expect("4 bytes"));
                        received.lock().expect("no panic while holding the frames")
                            .entry(feed).or_default().push(index);
                    }
                }
                _ => {}
            },
        }
    }
}

/// Waits until each of `members` has at least `frames` frames from each other one,
/// their indices increasing; fails after `limit` with what each received.
async fn everyone_sees_everyone(members: &[&Member], frames: usize, limit: Duration) {
    let started = Instant::now();
    loop {
        let mut missing = Vec::new();
        for viewer in members {
            for owner in members.iter().filter(|m| m.peer_id != viewer.peer_id) {
                let got = viewer.frames_from(&owner.peer_id);
                assert!(
                    got.windows(2).all(|pair| pair[0] < pair[1]),
                    "{} got {}'s frames out of order: {got:?}",
                    viewer.peer_id,
                    owner.peer_id
                );
                if got.len() < frames {
                    missing.push(format!(
                        "{} has {} of {}'s",
                        viewer.peer_id,
                        got.len(),
                        owner.peer_id
                    ));
                }
            }
        }
        if missing.is_empty() {
            println!(
                "everyone had {frames} frames of everyone after {:?}",
                started.elapsed()
            );
            return;
        }
        assert!(
            started.elapsed() < limit,
            "after {limit:?}: {}",
            missing.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_that_reaches_the_mesh_limit_moves_to_janus_and_everyone_sees_everyone_through_it() {
    let janus = JanusProcess::start(0);
    let url = serve(&janus, Ipv4Addr::LOCALHOST, 3).await;
    let rtc = janus.namespace.rtc();
    let (mut first, welcome) = Member::enter(
        &url,
        rtc.clone(),
        ClientMessage::CreateRoom {
            name: DisplayName::parse("First").expect("a name"),
            public_title: None,
            passcode: None,
        },
    )
    .await;
    let ServerMessage::Welcome {
        room, sfu: false, ..
    } = welcome
    else {
        panic!("a room of one is not on the SFU: {welcome:?}");
    };
    let join = |name: &str| ClientMessage::JoinRoom {
        room: room.clone(),
        name: DisplayName::parse(name).expect("a name"),
        passcode: None,
    };
    let (mut second, welcome) = Member::enter(&url, rtc.clone(), join("Second")).await;
    assert!(
        matches!(welcome, ServerMessage::Welcome { sfu: false, .. }),
        "{welcome:?}"
    );
    // The third reaches the limit: it is welcomed onto the SFU, the others are moved.
    let (third, welcome) = Member::enter(&url, rtc.clone(), join("Third")).await;
    assert!(
        matches!(welcome, ServerMessage::Welcome { sfu: true, .. }),
        "{welcome:?}"
    );
    for member in [&mut first, &mut second] {
        loop {
            match next_said(&mut member.said, "sfu_started").await {
                ServerMessage::SfuStarted => break,
                ServerMessage::PeerJoined { .. } => {}
                other => panic!("expected sfu_started, got {other:?}"),
            }
        }
    }
    everyone_sees_everyone(&[&first, &second, &third], 30, Duration::from_secs(30)).await;

    // One leaves: the others go on seeing each other, through the same room.
    let _ = third.outgoing.send(ClientMessage::Leave);
    let third_id = third.peer_id.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = (
        first.frames_from(&second.peer_id).len(),
        first.frames_from(&third_id).len(),
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = (
        first.frames_from(&second.peer_id).len(),
        first.frames_from(&third_id).len(),
    );
    assert!(
        after.0 >= before.0 + 30,
        "the second's video stalled: {before:?} -> {after:?}"
    );
    assert_eq!(after.1, before.1, "the third's video goes on after it left");

    // An sfu_signal for a stream that is not there is refused with a reason.
    let _ = first.outgoing.send(ClientMessage::SfuSignal {
        feed: Some(third_id.clone()),
        data: json!({"kind": "answer", "sdp": "v=0"}),
    });
    loop {
        match next_said(&mut first.said, "the refusal").await {
            ServerMessage::Error {
                code: ErrorCode::SfuFailed,
                message,
            } => {
                assert!(message.contains(third_id.as_str()), "{message}");
                break;
            }
            ServerMessage::PeerLeft { .. } | ServerMessage::PersonLeft { .. } => {}
            other => panic!("expected sfu_failed, got {other:?}"),
        }
    }
}

/// A `meetspace bot` running in `janus`'s namespace (media between it and Janus
/// stays there), killed when dropped.
struct Bot {
    child: Child,
    stats: PathBuf,
}

impl Bot {
    /// Starts a bot named `name` signaling through `url` with `args` (where it goes).
    fn start(janus: &JanusProcess, url: &str, name: &str, args: &[&str]) -> (Self, Option<String>) {
        let stats = janus._folder.join(format!("{name}.json"));
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
    fn figures(&self) -> serde_json::Value {
        std::fs::read_to_string(&self.stats)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Frames decoded from each peer, by name.
    fn decoded(&self) -> HashMap<String, u64> {
        let figures = self.figures();
        figures["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|peer| {
                (
                    peer["name"].as_str().unwrap_or_default().to_owned(),
                    peer["frames_decoded"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done` holds for every bot's figures, polling; fails after `limit` with
/// their figures.
async fn until_all(bots: &[&Bot], limit: Duration, what: &str, done: impl Fn(&Bot) -> bool) {
    let started = Instant::now();
    while !bots.iter().all(|bot| done(bot)) {
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; {:#?}",
            bots.iter().map(|bot| bot.figures()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("{what}: after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_in_a_room_that_grows_past_the_mesh_move_to_janus_and_keep_seeing_each_other() {
    let janus = JanusProcess::start(1);
    let url = serve(&janus, janus.namespace.host_ip, 3).await;
    let (first, room) = Bot::start(&janus, &url, "One", &["--create"]);
    let room = room.expect("the first bot's room");
    let (second, _) = Bot::start(&janus, &url, "Two", &["--room", &room]);
    let decodes = |bot: &Bot, peers: usize, frames: u64| {
        let decoded = bot.decoded();
        decoded.len() == peers && decoded.values().all(|n| *n >= frames)
    };
    let via = |bot: &Bot| {
        bot.figures()["sent"]["via"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    until_all(
        &[&first, &second],
        Duration::from_secs(30),
        "two bots see each other",
        |bot| decodes(bot, 1, 15),
    )
    .await;
    assert_eq!(
        (via(&first), via(&second)),
        ("mesh".to_owned(), "mesh".to_owned())
    );
    let before: Vec<u64> = [&first, &second]
        .iter()
        .map(|bot| bot.decoded().values().sum())
        .collect();

    // The third reaches the mesh limit: the room moves to Janus.
    let (third, _) = Bot::start(&janus, &url, "Three", &["--room", &room]);
    let bots = [&first, &second, &third];
    until_all(
        &bots,
        Duration::from_secs(45),
        "all three on the SFU",
        |bot| {
            let figures = bot.figures();
            figures["sent"]["via"] == "sfu" && figures["sent"]["upstreams"] == 1
        },
    )
    .await;
    let on_sfu: Vec<HashMap<String, u64>> = bots.iter().map(|bot| bot.decoded()).collect();
    until_all(
        &bots,
        Duration::from_secs(30),
        "everyone decodes everyone through Janus",
        |bot| {
            decodes(bot, 2, 0)
                && bots
                    .iter()
                    .position(|b| std::ptr::eq(*b, bot))
                    .is_some_and(|index| {
                        let then = &on_sfu[index];
                        bot.decoded()
                            .iter()
                            .all(|(name, now)| *now >= then.get(name).copied().unwrap_or(0) + 45)
                    })
        },
    )
    .await;
    for (bot, then) in [&first, &second].iter().zip(before) {
        let now: u64 = bot.decoded().values().sum();
        assert!(now > then, "the first two kept decoding: {then} -> {now}");
    }
    // The switch, seen on the first two bots' panels: no picture stood still long.
    let mut longest_gap_ms: f64 = 0.0;
    for bot in bots {
        let figures = bot.figures();
        let gaps: Vec<f64> = figures["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|peer| peer["longest_shown_gap_ms"].as_f64())
            .collect();
        println!(
            "{}: via {}, {} upstream(s), decoded {:?}, longest gaps between frames shown {gaps:.0?} ms",
            bot.stats.display(),
            figures["sent"]["via"],
            figures["sent"]["upstreams"],
            bot.decoded()
        );
        if !std::ptr::eq(bot, &third) {
            longest_gap_ms = gaps.into_iter().fold(longest_gap_ms, f64::max);
        }
    }
    println!("the longest gap between frames shown across the switch: {longest_gap_ms:.0} ms");
    assert!(
        longest_gap_ms < 500.0,
        "a picture stood still {longest_gap_ms:.0} ms during the switch to the SFU"
    );
}
