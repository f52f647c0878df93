//! Rooms on the SFU: a real Janus (the Debian package, started here with its own
//! configuration in a network namespace of its own) behind a real signaling server. Clients speak
//! the wire protocol (`sfu_signal`) and real webrtc-rs connections: one upstream each,
//! one downstream per other member, every stream through Janus.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod janus;

use futures_util::{SinkExt, StreamExt};
use meetspace::rtc::native::{LocalMedia, PeerSession};
use meetspace::rtc::{PeerEvent, Role, RtcConfig, Sending};
use meetspace::signaling::payload::SignalPayload;
use meetspace::signaling::protocol::{
    ClientMessage, DisplayName, ErrorCode, PeerId, ServerMessage,
};
use meetspace::signaling::server::janus::Janus;
use meetspace::signaling::server::sfu::SfuSettings;
use meetspace::signaling::server::{ServerLimits, SignalingServer};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use janus::{Bot, JANUS_ADMIN_KEY, JANUS_API_SECRET, JanusProcess};

const FRAME_DURATION: Duration = Duration::from_millis(33);

/// One room at a time: the switch's figures are not to be a neighbour's load.
static ONE_ROOM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A signaling server on `ip` whose rooms move to one of `instances` at `mesh_limit`
/// people.
async fn serve(instances: &[&JanusProcess], ip: Ipv4Addr, mesh_limit: usize) -> String {
    // Rooms of up to ten bots.
    let limits = ServerLimits {
        room_capacity: 12,
        ..ServerLimits::default()
    };
    let server = SignalingServer::bind(SocketAddr::from((ip, 0)), limits)
        .await
        .expect("a port for the signaling server")
        .with_sfu(SfuSettings {
            instances: instances.iter().map(|janus| janus.url()).collect(),
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

/// The frame indices received from `feed` so far.
fn frames_in(received: &Received, feed: &PeerId) -> Vec<u32> {
    received
        .lock()
        .expect("no panic while holding the frames")
        .get(feed)
        .cloned()
        .unwrap_or_default()
}

/// The time between two frames of a member's shared screen.
const SCREEN_FRAME_DURATION: Duration = Duration::from_millis(100);

/// One member of a room on the SFU, as a client would be: its signaling connection,
/// its upstream (once the room is on the SFU) and a downstream per other member.
struct Member {
    peer_id: PeerId,
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    /// Starts our upstream over (a fresh connection and offer, as after a failure).
    restart_upstream: mpsc::UnboundedSender<()>,
    /// Starts (true) or stops sharing our screen on our upstream.
    share_screen: mpsc::UnboundedSender<bool>,
    /// What the server said that the member's task did not handle itself.
    said: mpsc::UnboundedReceiver<ServerMessage>,
    received: Received,
    /// The frame indices of the screens it received, by whose.
    screens: Received,
    /// Downstreams the server has offered it so far.
    offers: Arc<AtomicUsize>,
    tasks: [tokio::task::JoinHandle<()>; 3],
}

impl Member {
    /// Connects to `url` and sends `first` (create or join); returns with the welcome.
    async fn enter(url: &str, rtc: RtcConfig, first: ClientMessage) -> (Self, ServerMessage) {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the signaling server answers");
        let (outgoing, to_send) = mpsc::unbounded_channel::<ClientMessage>();
        let (said_tx, mut said) = mpsc::unbounded_channel::<ServerMessage>();
        let (restart_upstream, restarts) = mpsc::unbounded_channel();
        let (share_screen, shares) = mpsc::unbounded_channel();
        let resuming = matches!(first, ClientMessage::Resume { .. });
        outgoing.send(first).expect("the member's task runs");
        let received: Received = Arc::default();
        let screens: Received = Arc::default();
        let offers = Arc::new(AtomicUsize::new(0));
        let media = LocalMedia::new().expect("local media");
        let task = MemberTask {
            rtc,
            to_send,
            restarts,
            shares,
            outgoing: outgoing.clone(),
            said: said_tx,
            received: received.clone(),
            screens: screens.clone(),
            offers: offers.clone(),
            media: media.clone(),
            resuming,
        };
        let member = tokio::spawn(run_member(socket, task));
        // Our camera: a numbered frame every 33 ms (sent once the upstream is up).
        let camera_media = media.clone();
        let camera = tokio::spawn(async move {
            for index in 0.. {
                let _ = camera_media
                    .write_video(&fake_frame(index), FRAME_DURATION)
                    .await;
                tokio::time::sleep(FRAME_DURATION).await;
            }
        });
        // Our screen: a numbered frame every 100 ms (sent while we share).
        let screen = tokio::spawn(async move {
            for index in 0.. {
                let _ = media
                    .write_screen(&fake_frame(index), SCREEN_FRAME_DURATION)
                    .await;
                tokio::time::sleep(SCREEN_FRAME_DURATION).await;
            }
        });
        let welcome = next_said(&mut said, "a welcome").await;
        let ServerMessage::Welcome { peer_id, .. } = &welcome else {
            panic!("expected a welcome, got {welcome:?}");
        };
        let member = Self {
            peer_id: peer_id.clone(),
            outgoing,
            restart_upstream,
            share_screen,
            said,
            received,
            screens,
            offers,
            tasks: [member, camera, screen],
        };
        (member, welcome)
    }

    /// The frame indices received from `feed` so far.
    fn frames_from(&self, feed: &PeerId) -> Vec<u32> {
        frames_in(&self.received, feed)
    }

    /// The frame indices of `feed`'s screen received so far.
    fn screen_frames_from(&self, feed: &PeerId) -> Vec<u32> {
        frames_in(&self.screens, feed)
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

/// What a member's client task works with.
struct MemberTask {
    rtc: RtcConfig,
    /// What to send to the server.
    to_send: mpsc::UnboundedReceiver<ClientMessage>,
    /// Requests to start our upstream over.
    restarts: mpsc::UnboundedReceiver<()>,
    /// Requests to start or stop sharing our screen.
    shares: mpsc::UnboundedReceiver<bool>,
    /// Where our connections' signals go out (into `to_send`).
    outgoing: mpsc::UnboundedSender<ClientMessage>,
    /// What the server said that the task does not handle itself.
    said: mpsc::UnboundedSender<ServerMessage>,
    received: Received,
    screens: Received,
    /// Counts the downstreams the server offers.
    offers: Arc<AtomicUsize>,
    /// Our camera's stream.
    media: LocalMedia,
    /// We come back (`resume`): a client would still have its streams, so a welcome onto
    /// the SFU does not make us publish.
    resuming: bool,
}

/// A member's client: writes what is sent, opens the upstream when the room is on the
/// SFU, answers every downstream the server offers, and counts the frames that come.
async fn run_member(
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    task: MemberTask,
) {
    let MemberTask {
        rtc,
        mut to_send,
        mut restarts,
        mut shares,
        outgoing,
        said,
        received,
        screens,
        offers,
        media,
        resuming,
    } = task;
    let (mut write, mut read) = socket.split();
    let (events_tx, mut events) = mpsc::unbounded_channel::<(Option<PeerId>, PeerEvent)>();
    let mut streams: HashMap<Option<PeerId>, Arc<PeerSession>> = HashMap::new();
    let open = |feed: Option<PeerId>, role| {
        let events_tx = events_tx.clone();
        let local = media.clone();
        // A downstream sends nothing.
        let sending = if feed.is_some() {
            Sending::Nothing
        } else {
            Sending::Media
        };
        let rtc = RtcConfig {
            sending,
            ..rtc.clone()
        };
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
            Some(()) = restarts.recv() => {
                streams.insert(None, open(None, Role::Offerer).await);
            }
            Some(sharing) = shares.recv() => {
                let upstream = streams.get(&None).expect("our upstream");
                upstream.set_screen_shared(sharing).await.expect("the upstream carries the change");
            }
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
                    ServerMessage::Welcome { sfu: true, .. } => {
                        if !resuming {
                            streams.insert(None, open(None, Role::Offerer).await);
                        }
                        let _ = said.send(message);
                    }
                    ServerMessage::SfuStarted => {
                        // Moved (again: the instance holding the room went): our streams
                        // through the SFU go, and we publish afresh.
                        streams.clear();
                        streams.insert(None, open(None, Role::Offerer).await);
                        let _ = said.send(message);
                    }
                    ServerMessage::SfuSignal { feed, data } => {
                        let payload = SignalPayload::from_json(&data.to_string())
                            .expect("the server relays valid payloads");
                        if let (Some(owner), SignalPayload::Offer { .. }) = (&feed, &payload) {
                            offers.fetch_add(1, Ordering::Relaxed);
                            let session = open(Some(owner.clone()), Role::Answerer).await;
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
                PeerEvent::ScreenFrame { data, .. } => {
                    if let Some(feed) = feed {
                        let index = u32::from_be_bytes(data[1..5].try_into().expect("4 bytes"));
                        screens.lock().expect("no panic while holding the frames")
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
    let _alone = ONE_ROOM.lock().await;
    let janus = JanusProcess::start(0);
    let url = serve(&[&janus], Ipv4Addr::LOCALHOST, 3).await;
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
    // Those there hear of the move before the newcomer, who never offers.
    for member in [&mut first, &mut second] {
        loop {
            match next_said(&mut member.said, "sfu_started").await {
                ServerMessage::SfuStarted => break,
                ServerMessage::PeerJoined { peer } if peer.name.as_str() == "Second" => {}
                other => panic!("expected sfu_started, got {other:?}"),
            }
        }
        match next_said(&mut member.said, "the third joining").await {
            ServerMessage::PeerJoined { peer } if peer.peer_id == third.peer_id => {}
            other => panic!("expected the third's peer_joined, got {other:?}"),
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

    // The first's upstream starts over (as after a failure): the second is offered its
    // new stream and goes on seeing it.
    let before = second.frames_from(&first.peer_id).len();
    first
        .restart_upstream
        .send(())
        .expect("the first's task runs");
    let restarted = Instant::now();
    while second.frames_from(&first.peer_id).len() < before + 30 {
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "the second lost the first after its upstream started over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "after the first's upstream started over, the second saw it again within {:?}",
        restarted.elapsed()
    );

    // The second asks for its stream of the first again (as a client whose downstream
    // failed does): the server subscribes it afresh, and the first's video goes on
    // through the new stream.
    let (offered, before) = (
        second.offers.load(Ordering::Relaxed),
        second.frames_from(&first.peer_id).len(),
    );
    second
        .outgoing
        .send(ClientMessage::SfuResubscribe {
            feed: first.peer_id.clone(),
        })
        .expect("the second's task runs");
    let asked = Instant::now();
    while second.offers.load(Ordering::Relaxed) == offered
        || second.frames_from(&first.peer_id).len() < before + 30
    {
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "no fresh stream of the first after sfu_resubscribe: {} offers (then {offered}), \
             {} frames (then {before})",
            second.offers.load(Ordering::Relaxed),
            second.frames_from(&first.peer_id).len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "after sfu_resubscribe, 30 more frames of the first through a fresh stream within {:?}",
        asked.elapsed()
    );

    // The second shares its screen: its upstream renegotiates, and the first is offered
    // its streams afresh, the screen among them.
    let shared = Instant::now();
    second
        .share_screen
        .send(true)
        .expect("the second's task runs");
    while first.screen_frames_from(&second.peer_id).len() < 10 {
        assert!(
            shared.elapsed() < Duration::from_secs(15),
            "the first got {} frames of the second's screen",
            first.screen_frames_from(&second.peer_id).len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = (
        first.frames_from(&second.peer_id).len(),
        first.screen_frames_from(&second.peer_id).len(),
    );
    println!(
        "the first got the second's screen through Janus {:?} after it shared",
        shared.elapsed()
    );
    // It stops: the screen stops coming, the camera goes on.
    second
        .share_screen
        .send(false)
        .expect("the second's task runs");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stopped = first.screen_frames_from(&second.peer_id).len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = (
        first.frames_from(&second.peer_id).len(),
        first.screen_frames_from(&second.peer_id).len(),
    );
    assert_eq!(now.1, stopped, "the screen goes on after the share stopped");
    assert!(
        now.0 >= seen.0 + 60,
        "the second's camera stalled around its share: {seen:?} -> {now:?}"
    );
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

/// Prints and bounds (500 ms) the longest still that `switch` added: the longest still
/// of each bot's panel of each other bot that grew since `before` (one per bot, in
/// order).
fn switch_stills_bounded(bots: &[&Bot], before: &[HashMap<String, f64>], switch: &str) {
    let mut longest_ms: f64 = 0.0;
    for (bot, before) in bots.iter().zip(before) {
        for (name, gap) in bot.shown_gaps() {
            if before.get(&name).is_some_and(|earlier| gap > *earlier) {
                longest_ms = longest_ms.max(gap);
            }
        }
    }
    println!("the longest gap between frames shown across {switch}: {longest_ms:.0} ms");
    assert!(
        longest_ms < 500.0,
        "a picture stood still {longest_ms:.0} ms during {switch}"
    );
}

/// Prints each bot's figures: how it sends, what it decoded, its longest stills.
fn print_bots(bots: &[&Bot]) {
    for bot in bots {
        let figures = bot.figures();
        println!(
            "{}: via {}, {} upstream(s), decoded {:?}, longest gaps between frames shown {:.0?} ms",
            bot.stats.display(),
            figures["sent"]["via"],
            figures["sent"]["upstreams"],
            bot.decoded(),
            bot.shown_gaps()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_in_a_room_that_grows_past_the_mesh_move_to_janus_and_back_as_it_shrinks() {
    let _alone = ONE_ROOM.lock().await;
    let janus = JanusProcess::start(1);
    let url = serve(&[&janus], janus.namespace.host_ip, 4).await;
    let (first, room) = Bot::start(&janus, &url, "One", &["--create"]);
    let room = room.expect("the first bot's room");
    let (second, _) = Bot::start(&janus, &url, "Two", &["--room", &room]);
    let (third, _) = Bot::start(&janus, &url, "Three", &["--room", &room]);
    let decodes = |bot: &Bot, peers: usize, frames: u64| {
        let decoded = bot.decoded();
        decoded.len() == peers && decoded.values().all(|n| *n >= frames)
    };
    let sends_via = |bot: &Bot, via: &str, upstreams: usize| {
        let figures = bot.figures();
        figures["sent"]["via"] == via && figures["sent"]["upstreams"] == upstreams
    };
    let meshed = [&first, &second, &third];
    until_all(
        &meshed,
        Duration::from_secs(45),
        "three bots see each other in a mesh",
        |bot| decodes(bot, 2, 15) && sends_via(bot, "mesh", 2),
    )
    .await;
    let before: Vec<u64> = meshed
        .iter()
        .map(|bot| bot.decoded().values().sum())
        .collect();
    // The longest stills so far (starting up): the switch is judged by what it adds.
    let gaps_before: Vec<HashMap<String, f64>> =
        meshed.iter().map(|bot| bot.shown_gaps()).collect();

    // The fourth reaches the mesh limit: the room moves to Janus.
    let (fourth, _) = Bot::start(&janus, &url, "Four", &["--room", &room]);
    let bots = [&first, &second, &third, &fourth];
    until_all(
        &bots,
        Duration::from_secs(45),
        "all four on the SFU",
        |bot| sends_via(bot, "sfu", 1),
    )
    .await;
    let on_sfu: Vec<HashMap<String, u64>> = bots.iter().map(|bot| bot.decoded()).collect();
    let decoding_more = |bot: &Bot, then: &HashMap<String, u64>, frames: u64| {
        bot.decoded()
            .iter()
            .all(|(name, now)| *now >= then.get(name).copied().unwrap_or(0) + frames)
    };
    until_all(
        &bots,
        Duration::from_secs(30),
        "everyone decodes everyone through Janus",
        |bot| {
            decodes(bot, 3, 0)
                && bots
                    .iter()
                    .position(|b| std::ptr::eq(*b, bot))
                    .is_some_and(|index| decoding_more(bot, &on_sfu[index], 45))
        },
    )
    .await;
    for (bot, then) in meshed.iter().zip(before) {
        let now: u64 = bot.decoded().values().sum();
        assert!(now > then, "the first three kept decoding: {then} -> {now}");
    }
    // The switch, seen on the first three bots' panels of each other: no picture
    // stood still long (a longest still that grew since before the fourth came is the
    // switch's).
    print_bots(&bots);
    switch_stills_bounded(&meshed, &gaps_before, "the switch to the SFU");

    // Two leave: two below the limit, the room goes back to a mesh.
    let stayers = [&first, &second];
    let gaps_before: Vec<HashMap<String, f64>> =
        stayers.iter().map(|bot| bot.shown_gaps()).collect();
    fourth.leave();
    third.leave();
    until_all(
        &stayers,
        Duration::from_secs(45),
        "the two left meshed again",
        |bot| sends_via(bot, "mesh", 1),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    until_decoding(&first, "Two", 45, deadline).await;
    until_decoding(&second, "One", 45, deadline).await;
    print_bots(&stayers);
    switch_stills_bounded(&stayers, &gaps_before, "the switch back to a mesh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_bots_on_janus_each_decode_the_other_nine_for_30_s_sending_one_upstream() {
    const BOTS: usize = 10;
    const RUN: Duration = Duration::from_secs(30);
    let _alone = ONE_ROOM.lock().await;
    let janus = JanusProcess::start(4);
    let url = serve(&[&janus], janus.namespace.host_ip, 4).await;
    let (first, room) = Bot::start(&janus, &url, "Bot0", &["--create"]);
    let room = room.expect("the first bot's room");
    let mut bots = vec![first];
    for index in 1..BOTS {
        bots.push(Bot::start(&janus, &url, &format!("Bot{index}"), &["--room", &room]).0);
    }
    let all: Vec<&Bot> = bots.iter().collect();
    let on_sfu = |bot: &Bot| {
        let figures = bot.figures();
        figures["sent"]["via"] == "sfu" && figures["sent"]["upstreams"] == 1
    };
    until_all(
        &all,
        Duration::from_secs(120),
        "ten bots decode the other nine through Janus",
        |bot| {
            let decoded = bot.decoded();
            on_sfu(bot) && decoded.len() == BOTS - 1 && decoded.values().all(|n| *n >= 15)
        },
    )
    .await;
    let decoded_then: Vec<HashMap<String, u64>> = all.iter().map(|bot| bot.decoded()).collect();
    let cpu_then: Vec<Duration> = all.iter().map(|bot| bot.cpu_time()).collect();
    let encoded_then: Vec<(u64, u64)> = all.iter().map(|bot| encoded(bot)).collect();
    let started = Instant::now();
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for bot in &all {
            assert!(
                on_sfu(bot),
                "{} stopped sending one upstream through Janus: {:#}",
                bot.stats.display(),
                bot.figures()["sent"]
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // Every bot went on decoding every other: on average at a third of their 15 fps at
    // least, and none below 2 fps. Ten bots fill two cores: 8.4-13.8 fps on average was
    // seen, and single streams as low as 3.7 fps on a fresh machine.
    let least_mean = seconds * 15.0 / 3.0;
    let least = (seconds * 2.0) as u64;
    for (((bot, then), cpu_then), encoded_then) in all
        .iter()
        .zip(&decoded_then)
        .zip(&cpu_then)
        .zip(&encoded_then)
    {
        // Each frame is encoded once per layer: the whole picture, and the two smaller
        // simulcast layers.
        let (frames, layer_frames) = encoded(bot);
        let (frames, layer_frames) = (frames - encoded_then.0, layer_frames - encoded_then.1);
        assert!(
            layer_frames.abs_diff(2 * frames) <= frames / 10,
            "{} encoded {frames} frames and {layer_frames} of the smaller layers",
            bot.stats.display()
        );
        let now = bot.decoded();
        let gained: Vec<u64> = now
            .iter()
            .map(|(name, n)| n.saturating_sub(then.get(name).copied().unwrap_or(0)))
            .collect();
        let cpu = bot.cpu_time().saturating_sub(*cpu_then);
        let frames: u64 = gained.iter().sum();
        println!(
            "{}: decoded {frames} frames of {} others in {seconds:.1} s ({:.1} fps each); \
             CPU {:.0} % of a core, {:.2} ms per decoded frame",
            bot.stats.display(),
            now.len(),
            frames as f64 / seconds / now.len() as f64,
            100.0 * cpu.as_secs_f64() / seconds,
            1000.0 * cpu.as_secs_f64() / frames.max(1) as f64
        );
        assert_eq!(now.len(), BOTS - 1, "{} lost someone", bot.stats.display());
        assert!(
            frames as f64 / now.len() as f64 >= least_mean,
            "{} decoded {frames} frames of {} others in {seconds:.0} s, fewer than {least_mean:.0} \
             of each on average",
            bot.stats.display(),
            now.len()
        );
        assert!(
            gained.iter().all(|n| *n >= least),
            "{} decoded fewer than {least} frames of someone in {seconds:.0} s: {now:?} (then {then:?})",
            bot.stats.display()
        );
    }
}

/// The frames `bot` has encoded so far: of its camera's whole picture, and of its
/// smaller simulcast layers.
fn encoded(bot: &Bot) -> (u64, u64) {
    let sent = &bot.figures()["sent"];
    let count = |what: &str| sent[what].as_u64().unwrap_or(0);
    (count("video_frames"), count("simulcast_frames"))
}

/// Waits until `bot` has decoded `frames` more of `peer` from now on, over connection
/// changes (a count that falls is a fresh connection's); fails at `deadline`.
async fn until_decoding(bot: &Bot, peer: &str, frames: u64, deadline: Instant) {
    let count = || bot.decoded().get(peer).copied();
    let mut last = count().unwrap_or(0);
    let mut gained = 0;
    while gained < frames {
        assert!(
            Instant::now() < deadline,
            "{} decoded {gained} frames of {peer} by the deadline: {:#}",
            bot.stats.display(),
            bot.figures()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(now) = count() else { continue };
        gained += if now >= last { now - last } else { now };
        last = now;
    }
}

/// How many VideoRooms `janus` holds (the private ones too: the admin key lists them).
async fn rooms_on(janus: &JanusProcess) -> usize {
    let client = Janus::connect(&janus.url(), Some(JANUS_API_SECRET.to_owned()))
        .await
        .expect("Janus answers");
    let (session, _) = Arc::new(client).session().await.expect("a Janus session");
    let handle = session
        .attach_videoroom()
        .await
        .expect("the VideoRoom plugin");
    let list = json!({"request": "list", "admin_key": JANUS_ADMIN_KEY});
    let reply = session
        .message(handle, list, None)
        .await
        .expect("the VideoRoom's list");
    reply.data["list"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_rooms_spread_over_two_janus_instances_and_a_dead_ones_rooms_move_to_the_other() {
    const ROOMS: usize = 6;
    let _alone = ONE_ROOM.lock().await;
    let first_janus = JanusProcess::start(2);
    let second_janus = first_janus.beside();
    let url = serve(
        &[&first_janus, &second_janus],
        first_janus.namespace.host_ip,
        1,
    )
    .await;
    // Six rooms of two, one after the other: each goes to the instance holding fewer
    // (the first on a tie), so the even ones to the first and the odd ones to the
    // second. The bots' figures stay in the second's folder (the first's goes with it).
    let mut rooms = Vec::new();
    for index in 0..ROOMS {
        let (host, guest) = (format!("Host{index}"), format!("Guest{index}"));
        let (host, room) = Bot::start(&second_janus, &url, &host, &["--create"]);
        let room = room.expect("the room the bot made");
        let (guest, _) = Bot::start(&second_janus, &url, &guest, &["--room", &room]);
        until_all(
            &[&host, &guest],
            Duration::from_secs(45),
            "a room's two bots see each other through Janus",
            |bot| {
                let decoded = bot.decoded();
                decoded.len() == 1
                    && decoded.values().all(|n| *n >= 15)
                    && bot.figures()["sent"]["via"] == "sfu"
            },
        )
        .await;
        rooms.push((index, [host, guest]));
    }
    assert_eq!(
        (rooms_on(&first_janus).await, rooms_on(&second_janus).await),
        (ROOMS / 2, ROOMS / 2),
        "the rooms spread evenly over the two instances"
    );
    let (moved, kept): (Vec<_>, Vec<_>) = rooms.iter().partition(|(index, _)| index % 2 == 0);
    let kept_bots: Vec<&Bot> = kept.iter().flat_map(|(_, bots)| bots).collect();
    let kept_gaps: Vec<HashMap<String, f64>> =
        kept_bots.iter().map(|bot| bot.shown_gaps()).collect();

    // The first instance goes; its rooms' bots publish again, to the other.
    drop(first_janus);
    let killed = Instant::now();
    // What the figures say about the time before it (they lag up to 2 s) is not counted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // All at once: each bot has 10 s from the kill to decode 30 frames afresh.
    let deadline = killed + Duration::from_secs(10);
    let watched: Vec<(&Bot, String)> = moved
        .iter()
        .flat_map(|(index, [host, guest])| {
            [
                (host, format!("Guest{index}")),
                (guest, format!("Host{index}")),
            ]
        })
        .collect();
    futures_util::future::join_all(
        watched
            .iter()
            .map(|(bot, peer)| until_decoding(bot, peer, 30, deadline)),
    )
    .await;
    for (bot, _) in &watched {
        // Its longest still is the move's (the room was on the SFU from the start).
        println!(
            "{}: 30 more frames by {:?} after its Janus went; longest stills {:.0?} ms",
            bot.stats.display(),
            killed.elapsed(),
            bot.shown_gaps()
        );
    }
    assert_eq!(
        rooms_on(&second_janus).await,
        ROOMS,
        "every room on the instance left"
    );
    // The other rooms, on the instance that stayed, saw nothing of it.
    for (bot, before) in kept_bots.iter().zip(&kept_gaps) {
        for (name, gap) in bot.shown_gaps() {
            let grew = before.get(&name).is_none_or(|earlier| gap > *earlier);
            assert!(
                !grew || gap < 500.0,
                "{name} stood still {gap:.0} ms on {} while the other rooms moved",
                bot.stats.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_away_while_its_room_moves_to_another_janus_publishes_again_on_its_return() {
    let _alone = ONE_ROOM.lock().await;
    let first_janus = JanusProcess::start(3);
    let second_janus = first_janus.beside();
    let url = serve(
        &[&first_janus, &second_janus],
        first_janus.namespace.host_ip,
        1,
    )
    .await;
    let rtc = first_janus.namespace.rtc();
    let name = |name: &str| DisplayName::parse(name).expect("a name");
    let (mut host, welcome) = Member::enter(
        &url,
        rtc.clone(),
        ClientMessage::CreateRoom {
            name: name("Host"),
            public_title: None,
            passcode: None,
        },
    )
    .await;
    let ServerMessage::Welcome { room, .. } = welcome else {
        panic!("expected a welcome, got {welcome:?}");
    };
    let join = ClientMessage::JoinRoom {
        room: room.clone(),
        name: name("Away"),
        passcode: None,
    };
    let (away, welcome) = Member::enter(&url, rtc.clone(), join).await;
    let ServerMessage::Welcome { resume_token, .. } = welcome else {
        panic!("expected a welcome, got {welcome:?}");
    };
    everyone_sees_everyone(&[&host, &away], 15, Duration::from_secs(30)).await;

    // The second member's signaling connection drops; then the instance holding the
    // room goes. The host hears of the move at once.
    let away_id = away.peer_id.clone();
    drop(away);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let holder = if rooms_on(&first_janus).await == 1 {
        first_janus
    } else {
        second_janus
    };
    drop(holder);
    loop {
        match next_said(&mut host.said, "sfu_started").await {
            ServerMessage::SfuStarted => break,
            ServerMessage::PeerJoined { .. } | ServerMessage::PeerAway { .. } => {}
            other => panic!("expected sfu_started, got {other:?}"),
        }
    }

    // Back on a new connection: right after the welcome it is told to publish afresh
    // (it would otherwise keep an upstream to the instance that went). Its camera counts
    // from 0 again.
    host.received
        .lock()
        .expect("no panic while holding the frames")
        .remove(&away_id);
    let resume = ClientMessage::Resume {
        room,
        peer_id: away_id.clone(),
        resume_token,
        name: name("Away"),
        public_title: None,
        passcode: None,
    };
    let (mut back, welcome) = Member::enter(&url, rtc, resume).await;
    assert!(
        matches!(welcome, ServerMessage::Welcome { sfu: true, .. }),
        "{welcome:?}"
    );
    match next_said(&mut back.said, "sfu_started after the resume").await {
        ServerMessage::SfuStarted => {}
        other => panic!("expected sfu_started, got {other:?}"),
    }
    everyone_sees_everyone(&[&host, &back], 15, Duration::from_secs(30)).await;
}

/// The size of `bot`'s last decoded frame of `peer`.
fn received_size(bot: &Bot, peer: &str) -> Option<(u64, u64)> {
    bot.per_peer(|figures| Some((figures["width"].as_u64()?, figures["height"].as_u64()?)))
        .remove(peer)
}

/// The rate `bot` receives `peer`'s video at over the next `window`, in kbit/s.
async fn received_kbps(bot: &Bot, peer: &str, window: Duration) -> f64 {
    let bytes = || {
        bot.per_peer(|figures| figures["video_bytes_received"].as_u64())
            .remove(peer)
            .unwrap_or(0)
    };
    let before = bytes();
    tokio::time::sleep(window).await;
    bytes().saturating_sub(before) as f64 * 8.0 / 1000.0 / window.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_across_the_room_receives_the_small_layer_and_the_large_one_within_1_s_of_walking_up()
{
    // The bots send 320x240: the layers are 80x60, 160x120 and 320x240.
    const SMALL: (u64, u64) = (80, 60);
    const LARGE: (u64, u64) = (320, 240);
    const RATE_WINDOW: Duration = Duration::from_secs(4);
    let _alone = ONE_ROOM.lock().await;
    let janus = JanusProcess::start(5);
    let url = serve(&[&janus], janus.namespace.host_ip, 1).await;
    let (host, room) = Bot::start(&janus, &url, "Host", &["--create", "--at", "0,-6"]);
    let room = room.expect("the host's room");
    // 12 m away, the host appears about 90 pixels high on a 720-pixel view: the small
    // layer. After 20 s the walker walks up to 2 m from it (520 pixels: the large one).
    let walk = [
        "--room",
        &room,
        "--at",
        "0,6",
        "--walk-to",
        "0,-4",
        "--speed",
        "8",
        "--walk-after",
        "20",
    ];
    let (walker, _) = Bot::start(&janus, &url, "Walker", &walk);
    until_all(
        &[&walker],
        Duration::from_secs(12),
        "the walker, across the room, receives the host's small layer",
        |bot| {
            received_size(bot, "Host") == Some(SMALL) && bot.figures()["arrived_unix_ms"].is_null()
        },
    )
    .await;
    let small_kbps = received_kbps(&walker, "Host", RATE_WINDOW).await;
    assert_eq!(
        (
            received_size(&walker, "Host"),
            &walker.figures()["arrived_unix_ms"]
        ),
        (Some(SMALL), &serde_json::Value::Null),
        "the walker kept the small layer while it stood across the room"
    );
    let host_sent = host.figures()["sent"].clone();
    assert!(
        host_sent["simulcast_frames"].as_u64() > Some(0) && host_sent["upstreams"] == 1,
        "the host sends its layers on one upstream: {host_sent:#}"
    );
    until_all(
        &[&walker],
        Duration::from_secs(25),
        "the walker walks up to the host and receives its large layer",
        |bot| {
            received_size(bot, "Host") == Some(LARGE) && !bot.figures()["arrived_unix_ms"].is_null()
        },
    )
    .await;
    let large_kbps = received_kbps(&walker, "Host", RATE_WINDOW).await;
    let figures = walker.figures();
    let arrived = figures["arrived_unix_ms"].as_u64().expect("the walk's end");
    let changes = figures["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|peer| peer["name"] == "Host"))
        .map(|host| host["size_changes"].clone())
        .expect("the host's figures");
    let large_from = changes
        .as_array()
        .and_then(|changes| {
            changes
                .iter()
                .rev()
                .find(|change| change["width"] == LARGE.0 && change["height"] == LARGE.1)
        })
        .and_then(|change| change["at_unix_ms"].as_u64())
        .expect("a change to the large layer");
    let switch_ms = large_from as i64 - arrived as i64;
    println!(
        "the walker received the host's small layer at {small_kbps:.0} kbit/s, the large one \
         {switch_ms} ms after it walked up, at {large_kbps:.0} kbit/s (the host's encoder \
         at {} kbit/s); size changes {changes}",
        host_sent["video_target_kbps"]
    );
    assert!(
        switch_ms < 1000,
        "the large layer came {switch_ms} ms after the walker walked up"
    );
    // The small layer costs less than the whole picture (its share of what that costs).
    assert!(
        small_kbps < large_kbps,
        "the small layer came at {small_kbps:.0} kbit/s, the large one at {large_kbps:.0}"
    );
}
