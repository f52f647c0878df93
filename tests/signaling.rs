//! Signaling end to end: a real server on 127.0.0.1, headless meetspace clients,
//! raw protocol clients, and the `meetspace bot` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use meetspace::call::{CallError, CallNotice, CallState, ConnectionState, Participant};
use meetspace::rtc::PeerConnectionState;
use meetspace::signaling::protocol::{ErrorCode, RoomId, ServerMessage};
use meetspace::signaling::server::ServerLimits;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const SECOND: Duration = Duration::from_secs(1);

fn refused_with(app: &bevy::prelude::App, code: ErrorCode) -> bool {
    notices(app).iter().any(|notice| {
        matches!(notice, CallNotice::Failed(CallError::Refused { code: c, .. }) if *c == code)
    })
}

#[test]
fn create_then_join_by_id_both_see_each_other() {
    let server = TestServer::start();
    let mut alice = client(&server.url, "Alice");
    let mut bob = client(&server.url, "Bob");
    let room = host_room(&mut alice);
    assert_eq!(
        room.as_str().len(),
        20,
        "server-made ids carry 100 random bits"
    );

    join_room(&mut bob, &room);
    let both_see_each_other = pump_until(&mut [&mut alice, &mut bob], 5 * SECOND, |apps| {
        participant_names(apps[0]) == ["Bob"] && participant_names(apps[1]) == ["Alice"]
    });
    assert!(
        both_see_each_other,
        "alice {:?}, bob {:?}",
        notices(&alice),
        notices(&bob)
    );
    assert_eq!(room_of(&bob), Some(room));
    assert!(notices(&alice).contains(&CallNotice::PeerJoined("Bob".parse_name())));
}

/// Small helper so expectations read naturally.
trait ParseName {
    fn parse_name(&self) -> meetspace::signaling::protocol::DisplayName;
}
impl ParseName for str {
    fn parse_name(&self) -> meetspace::signaling::protocol::DisplayName {
        meetspace::signaling::protocol::DisplayName::parse(self).unwrap()
    }
}

#[test]
fn unknown_room_id_fails_within_a_second_and_returns_to_idle() {
    let server = TestServer::start();
    let mut carol = client(&server.url, "Carol");
    join_room(&mut carol, &RoomId::parse("nosuchroom2345678abc").unwrap());
    let started = Instant::now();
    let failed = pump_until(&mut [&mut carol], SECOND, |apps| {
        refused_with(apps[0], ErrorCode::RoomNotFound) && state(apps[0]) == CallState::Idle
    });
    assert!(
        failed,
        "no room_not_found within 1 s: {:?} in state {:?}",
        notices(&carol),
        state(&carol)
    );
    assert!(started.elapsed() < SECOND);
    assert!(participant_names(&mut carol).is_empty());
}

#[test]
fn unreachable_server_is_reported_not_hung() {
    // Bind and drop a listener so that the port is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dave = client(&format!("ws://127.0.0.1:{port}"), "Dave");
    create_room(&mut dave);
    let reported = pump_until(&mut [&mut dave], 6 * SECOND, |apps| {
        notices(apps[0])
            .iter()
            .any(|n| matches!(n, CallNotice::Failed(CallError::SignalingUnreachable(_))))
            && state(apps[0]) == CallState::Idle
    });
    assert!(reported, "{:?}", notices(&dave));
}

#[test]
fn three_clients_see_each_other_and_every_departure() {
    let server = TestServer::start();
    let mut a = client(&server.url, "A");
    let mut b = client(&server.url, "B");
    let mut c = client(&server.url, "C");
    let room = host_room(&mut a);
    join_room(&mut b, &room);
    join_room(&mut c, &room);
    let full_mesh = pump_until(&mut [&mut a, &mut b, &mut c], 5 * SECOND, |apps| {
        participant_names(apps[0]) == ["B", "C"]
            && participant_names(apps[1]) == ["A", "C"]
            && participant_names(apps[2]) == ["A", "B"]
    });
    assert!(full_mesh);

    // B hangs up cleanly.
    leave(&mut b);
    let b_gone = pump_until(&mut [&mut a, &mut b, &mut c], 2 * SECOND, |apps| {
        participant_names(apps[0]) == ["C"]
            && participant_names(apps[2]) == ["A"]
            && state(apps[1]) == CallState::Idle
            && participant_names(apps[1]).is_empty()
    });
    assert!(b_gone);
    assert!(notices(&a).contains(&CallNotice::PeerLeft("B".parse_name())));

    // D joins, then is killed: its runtime and socket vanish without a goodbye.
    let mut d = client(&server.url, "D");
    join_room(&mut d, &room);
    assert!(pump_until(
        &mut [&mut a, &mut c, &mut d],
        5 * SECOND,
        |apps| {
            participant_names(apps[0]) == ["C", "D"] && participant_names(apps[1]) == ["A", "D"]
        }
    ));
    drop(d);
    let killed_at = Instant::now();
    // Signaling says D is away at once; D goes when its peer connections fail.
    let d_gone = pump_until(&mut [&mut a, &mut c], 5 * SECOND, |apps| {
        participant_names(apps[0]) == ["C"] && participant_names(apps[1]) == ["A"]
    });
    assert!(
        d_gone,
        "the killed peer was still listed after {:?}",
        killed_at.elapsed()
    );
}

#[test]
fn a_second_and_third_call_in_one_app_work() {
    let server = TestServer::start();
    let mut host = client(&server.url, "Host");
    let mut guest = client(&server.url, "Guest");
    for round in 0..3 {
        let room = host_room(&mut host);
        join_room(&mut guest, &room);
        assert!(
            pump_until(&mut [&mut host, &mut guest], 5 * SECOND, |apps| {
                participant_names(apps[0]).len() == 1 && participant_names(apps[1]).len() == 1
            }),
            "round {round}"
        );
        leave(&mut guest);
        leave(&mut host);
        assert!(pump_until(
            &mut [&mut host, &mut guest],
            2 * SECOND,
            |apps| { state(apps[0]) == CallState::Idle && state(apps[1]) == CallState::Idle }
        ));
    }
}

#[test]
fn room_full_for_the_joiner_past_capacity() {
    let capacity = 3;
    let server = TestServer::with_limits(ServerLimits {
        room_capacity: capacity,
        ..ServerLimits::default()
    });
    let mut host = client(&server.url, "Host");
    let room = host_room(&mut host);
    let mut guests: Vec<_> = (1..capacity)
        .map(|i| client(&server.url, &format!("G{i}")))
        .collect();
    for guest in &mut guests {
        join_room(guest, &room);
    }
    let mut everyone: Vec<&mut bevy::prelude::App> = guests.iter_mut().collect();
    everyone.push(&mut host);
    let all_in = pump_until(&mut everyone, 5 * SECOND, |apps| {
        apps.iter_mut()
            .all(|app| participant_names(app).len() == capacity - 1)
    });
    let seen: Vec<Vec<String>> = everyone
        .iter_mut()
        .map(|app| participant_names(app))
        .collect();
    let heard: Vec<&[CallNotice]> = everyone.iter().map(|app| notices(app)).collect();
    assert!(
        all_in,
        "who each of G1, G2 and Host sees: {seen:?}; what each heard: {heard:?}"
    );

    let mut late = client(&server.url, "Late");
    join_room(&mut late, &room);
    let refused = pump_until(&mut [&mut late], 2 * SECOND, |apps| {
        refused_with(apps[0], ErrorCode::RoomFull) && state(apps[0]) == CallState::Idle
    });
    assert!(refused, "{:?}", notices(&late));
    pump_until(&mut [&mut host], Duration::from_millis(200), |_| false);
    assert_eq!(
        participant_names(&mut host).len(),
        capacity - 1,
        "the refused joiner must not appear"
    );
}

#[test]
fn a_signal_reaches_its_addressee_and_nobody_else() {
    let server = TestServer::start();
    server.block_on(async {
        let mut a = RawClient::connect(&server.url).await;
        let mut b = RawClient::connect(&server.url).await;
        let mut c = RawClient::connect(&server.url).await;
        let (room, a_id) = a.create("A").await;
        let ServerMessage::Welcome { peer_id: b_id, peers, .. } = b.join(&room, "B").await else {
            panic!("B was not welcomed");
        };
        assert_eq!(peers.len(), 1);
        assert!(matches!(a.recv().await, ServerMessage::PeerJoined { .. }));
        assert!(matches!(c.join(&room, "C").await, ServerMessage::Welcome { ref peers, .. } if peers.len() == 2));
        assert!(matches!(a.recv().await, ServerMessage::PeerJoined { .. }));
        assert!(matches!(b.recv().await, ServerMessage::PeerJoined { .. }));

        let offer = json!({"kind": "offer", "sdp": "v=0\r\n"});
        a.send_json(json!({"type": "signal", "to": b_id.as_str(), "data": offer})).await;
        match b.recv().await {
            ServerMessage::Signal { from, data } => {
                assert_eq!(from.as_str(), a_id);
                assert_eq!(data, offer);
            }
            other => panic!("B expected the signal, got {other:?}"),
        }
        assert_eq!(c.recv_within(Duration::from_millis(300)).await, None, "C must not see it");
        assert_eq!(a.recv_within(Duration::from_millis(100)).await, None, "no echo to A");

        a.send_json(json!({"type": "signal", "to": "nobody", "data": {}})).await;
        assert!(matches!(
            a.recv().await,
            ServerMessage::Error { code: ErrorCode::PeerNotFound, .. }
        ));
    });
}

#[test]
fn two_joining_at_once_are_each_welcomed_before_hearing_of_the_other() {
    let server = TestServer::start();
    server.block_on(async {
        // The race is between one join's welcome and the other's announcement: many
        // rounds give it many chances (before the fix, one of the first 15 lost it).
        for round in 0..200 {
            let mut host = RawClient::connect(&server.url).await;
            let mut x = RawClient::connect(&server.url).await;
            let mut y = RawClient::connect(&server.url).await;
            let (room, _) = host.create("Host").await;
            let join = |name: &str| json!({"type": "join_room", "room": room, "name": name});
            tokio::join!(x.send_json(join("X")), y.send_json(join("Y")));
            for (me, other) in [(&mut x, "Y"), (&mut y, "X")] {
                let ServerMessage::Welcome { peers, .. } = me.recv().await else {
                    panic!("round {round}: a joiner heard something before its welcome");
                };
                let listed = peers.iter().any(|peer| peer.name.as_str() == other);
                if !listed {
                    assert!(
                        matches!(me.recv().await, ServerMessage::PeerJoined { peer } if peer.name.as_str() == other),
                        "round {round}: a joiner never heard of the other"
                    );
                }
            }
        }
    });
}

/// A call between two raw clients in their own room, used to show it keeps working.
struct Bystanders {
    x: RawClient,
    y: RawClient,
    y_id: String,
}

impl Bystanders {
    async fn start(url: &str) -> Self {
        let mut x = RawClient::connect(url).await;
        let mut y = RawClient::connect(url).await;
        let (room, _) = x.create("X").await;
        let ServerMessage::Welcome { peer_id, .. } = y.join(&room, "Y").await else {
            panic!("Y was not welcomed");
        };
        assert!(matches!(x.recv().await, ServerMessage::PeerJoined { .. }));
        Self {
            x,
            y,
            y_id: peer_id.to_string(),
        }
    }

    async fn still_talking(&mut self, tag: &str) {
        self.x
            .send_json(json!({"type": "signal", "to": self.y_id, "data": {"tag": tag}}))
            .await;
        match self.y.recv().await {
            ServerMessage::Signal { data, .. } => assert_eq!(data, json!({"tag": tag})),
            other => panic!("the other room broke after {tag}: {other:?}"),
        }
    }
}

async fn expect_error(client: &mut RawClient, code: ErrorCode) -> String {
    match client.recv().await {
        ServerMessage::Error { code: got, message } if got == code => message,
        other => panic!("expected {code}, got {other:?}"),
    }
}

#[test]
fn hostile_input_gets_typed_errors_and_other_rooms_keep_working() {
    let server = TestServer::start();
    server.block_on(async {
        let mut calm = Bystanders::start(&server.url).await;
        let mut attacker = RawClient::connect(&server.url).await;

        attacker.send_text("{\"type\": \"join_room\", ").await;
        assert!(
            expect_error(&mut attacker, ErrorCode::BadMessage)
                .await
                .contains("JSON")
        );
        calm.still_talking("malformed").await;

        attacker.send_json(json!({"type": "launch_rockets"})).await;
        assert!(
            expect_error(&mut attacker, ErrorCode::BadMessage)
                .await
                .contains("launch_rockets")
        );
        attacker
            .send_json(json!({"type": "join_room", "room": "../../etc/passwd"}))
            .await;
        expect_error(&mut attacker, ErrorCode::BadMessage).await;
        attacker.send_binary(vec![0xff; 16]).await;
        expect_error(&mut attacker, ErrorCode::BadMessage).await;
        calm.still_talking("unknown type").await;

        // Watching the space is for those in it; in a room, past chat's allowance,
        // each ask is refused (each answer could name 200 people).
        attacker.send_json(json!({"type": "watch_space"})).await;
        expect_error(&mut attacker, ErrorCode::NotInRoom).await;
        let mut watcher = RawClient::connect(&server.url).await;
        watcher.create("Watcher").await;
        for _ in 0..8 {
            watcher.send_json(json!({"type": "watch_space"})).await;
        }
        let (mut answers, mut refused) = (0, 0);
        while let Some(message) = watcher.recv_within(Duration::from_millis(500)).await {
            match message {
                ServerMessage::Space { .. } => answers += 1,
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                } => refused += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            (answers, refused),
            (5, 3),
            "chat's burst of 5, then refusals"
        );

        // A thousand messages at once: the burst is served, the rest is dropped with
        // a rate_limited error, and the connection survives.
        for _ in 0..1000 {
            attacker.send_json(json!({"type": "leave"})).await;
        }
        let mut not_in_room = 0;
        let mut rate_limited = 0;
        while let Some(message) = attacker.recv_within(Duration::from_millis(500)).await {
            match message {
                ServerMessage::Error {
                    code: ErrorCode::NotInRoom,
                    ..
                } => not_in_room += 1,
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                } => rate_limited += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(rate_limited >= 1, "no rate_limited error");
        assert!(
            not_in_room < 1000,
            "nothing was dropped ({not_in_room} served)"
        );
        calm.still_talking("flood").await;
        tokio::time::sleep(SECOND).await;
        attacker.send_json(json!({"type": "leave"})).await;
        expect_error(&mut attacker, ErrorCode::NotInRoom).await;

        // One MiB in one message: refused and the connection closed (1009).
        // The server may close before the whole frame is written, failing the send.
        let _ = attacker.try_send_text("x".repeat(1 << 20)).await;
        let mut saw_error = false;
        let mut saw_close = false;
        while let Some(frame) = attacker.next_frame(Duration::from_secs(2)).await {
            match frame {
                Message::Text(text) => {
                    saw_error |= text.as_str().contains("message_too_large");
                }
                Message::Close(frame) => {
                    saw_close = true;
                    if let Some(frame) = frame {
                        assert_eq!(u16::from(frame.code), 1009);
                    }
                }
                _ => {}
            }
        }
        assert!(
            saw_error || saw_close,
            "the oversized message was neither refused nor closed"
        );
        calm.still_talking("oversized").await;
    });
}

/// A `meetspace bot` process; killed if the test ends early.
struct BotProcess(Child);

impl Drop for BotProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bot(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meetspace"));
    command
        .arg("bot")
        .args(args)
        .env_remove("MEETSPACE_SIGNAL")
        .env_remove("MEETSPACE_NAME");
    command
}

/// Starts a bot that creates a room; returns it with the room id from its first line.
fn spawn_hosting_bot(url: &str, name: &str) -> (BotProcess, String) {
    let mut child = bot(&["--signal", url, "--create", "--name", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let room = first_line
        .strip_prefix("room ")
        .unwrap_or_else(|| panic!("the bot's first line was {first_line:?}"))
        .trim()
        .to_owned();
    (BotProcess(child), room)
}

#[test]
fn bot_hosts_and_another_bot_joins_and_reports_its_peers() {
    let server = TestServer::start();
    let (_host, room) = spawn_hosting_bot(&server.url, "HostBot");
    let stats = std::env::temp_dir().join(format!("meetspace-bot-{}.json", std::process::id()));
    let output = bot(&[
        "--signal",
        &server.url,
        "--room",
        &room,
        "--name",
        "GuestBot",
        "--duration",
        "1",
        "--stats-json",
        stats.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().next(),
        Some(format!("room {room}").as_str())
    );
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(stats["peers"][0]["name"], "HostBot");
    assert_eq!(stats["peers"].as_array().unwrap().len(), 1);
}

#[test]
fn bot_with_a_wrong_room_id_exits_3_naming_room_not_found() {
    let server = TestServer::start();
    let output = bot(&["--signal", &server.url, "--room", "doesnotexist23456789"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
    assert!(stderr.contains("room_not_found"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn bot_killed_with_sigkill_is_shown_reconnecting_then_dropped_within_5_s() {
    let server = TestServer::start();
    let (mut host, room) = spawn_hosting_bot(&server.url, "Doomed");
    let mut watcher = client(&server.url, "Watcher");
    join_room(&mut watcher, &RoomId::parse(&room).unwrap());
    assert!(pump_until(&mut [&mut watcher], 5 * SECOND, |apps| {
        participant_names(apps[0]) == ["Doomed"]
    }));
    assert!(pump_until(&mut [&mut watcher], 15 * SECOND, |apps| {
        doomed_connection(apps[0]) == Some(PeerConnectionState::Connected)
    }));
    host.0.kill().unwrap(); // SIGKILL: no goodbye of any kind
    let killed_at = Instant::now();
    // Signaling says at once that the peer is away; its panel shows "reconnecting"
    // (disconnected) when ICE notices, and goes when ICE fails (4 s of silence).
    let mut reconnecting_seen = false;
    assert!(
        pump_until(&mut [&mut watcher], 5 * SECOND, |apps| {
            reconnecting_seen |=
                doomed_connection(apps[0]) == Some(PeerConnectionState::Disconnected);
            participant_names(apps[0]).is_empty()
        }),
        "still listed {:?} after the kill",
        killed_at.elapsed()
    );
    println!(
        "the killed peer was dropped {:?} after the kill",
        killed_at.elapsed()
    );
    assert!(reconnecting_seen, "never shown as reconnecting");
    assert!(notices(&watcher).contains(&CallNotice::PeerLeft("Doomed".parse_name())));
}

fn doomed_connection(app: &mut bevy::prelude::App) -> Option<PeerConnectionState> {
    let world = app.world_mut();
    let mut query = world.query::<(&Participant, &ConnectionState)>();
    query
        .iter(world)
        .find(|(participant, _)| participant.name.as_str() == "Doomed")
        .map(|(_, state)| state.0)
}

#[test]
fn public_rooms_are_listed_and_private_ones_are_not() {
    let server = TestServer::start();
    // The raw clients stay connected (and the rooms open) until the end of the test.
    let _members = server.block_on(async {
        let mut public = RawClient::connect(&server.url).await;
        public
            .send_json(json!({"type": "create_room", "name": "A", "public_title": "Standup"}))
            .await;
        let ServerMessage::Welcome { room, .. } = public.recv().await else {
            panic!("no welcome");
        };
        let mut private = RawClient::connect(&server.url).await;
        private.create("B").await;
        let mut guest = RawClient::connect(&server.url).await;
        guest.join(room.as_str(), "C").await;

        let mut lobby = RawClient::connect(&server.url).await;
        lobby.send_json(json!({"type": "list_rooms"})).await;
        match lobby.recv().await {
            ServerMessage::RoomList { rooms } => {
                assert_eq!(rooms.len(), 1, "only the public room: {rooms:?}");
                assert_eq!(rooms[0].room, room);
                assert_eq!(rooms[0].title.as_str(), "Standup");
                assert_eq!(rooms[0].participants, 2);
            }
            other => panic!("expected room_list, got {other:?}"),
        }
        (public, private, guest)
    });
    // The client side: ListRooms fills PublicRooms without entering a call.
    let mut viewer = client(&server.url, "Viewer");
    viewer
        .world_mut()
        .write_message(meetspace::call::CallCommand::ListRooms);
    let listed = pump_until(&mut [&mut viewer], 5 * SECOND, |apps| {
        apps[0]
            .world()
            .resource::<meetspace::call::PublicRooms>()
            .0
            .len()
            == 1
    });
    assert!(listed);
    assert_eq!(state(&viewer), CallState::Idle);
}

/// An HTTP answer: its status code, its headers (names lower-cased) and how long its
/// body was.
struct HttpAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body_length: usize,
}

impl HttpAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 GET of `path` from `addr` with `headers` (`Name: value` lines).
fn http_get(addr: std::net::SocketAddr, path: &str, headers: &[&str]) -> HttpAnswer {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the server's port");
    stream
        .set_read_timeout(Some(5 * SECOND))
        .expect("a read timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("the request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the answer");
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("the end of the headers");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body_length: answer.len() - split - 4,
    }
}

#[test]
fn the_browser_app_is_sent_compressed_to_browsers_that_accept_it_and_revalidated() {
    let root = tempfile::tempdir().expect("a scratch folder");
    let wasm = vec![7u8; 64 * 1024];
    std::fs::write(root.path().join("index.html"), "<html></html>").unwrap();
    std::fs::write(root.path().join("meetspace_bg.wasm"), &wasm).unwrap();
    // What build-web.sh writes beside it (the body's length shows which one was sent).
    std::fs::write(root.path().join("meetspace_bg.wasm.gz"), [1u8; 100]).unwrap();
    std::fs::write(root.path().join("meetspace_bg.wasm.br"), [2u8; 80]).unwrap();
    let root_path = root.path().to_owned();
    let server = TestServer::start_configured(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ServerLimits::default(),
        move |server| server.serve_web_app(root_path),
    );

    let brotli = http_get(
        server.addr,
        "/meetspace_bg.wasm",
        &["Accept-Encoding: gzip, deflate, br"],
    );
    assert_eq!(brotli.status, 200);
    assert_eq!(brotli.header("content-encoding"), Some("br"));
    assert_eq!(brotli.header("content-type"), Some("application/wasm"));
    assert_eq!(brotli.body_length, 80, "the brotli twin");

    let gzipped = http_get(
        server.addr,
        "/meetspace_bg.wasm",
        &["Accept-Encoding: gzip, deflate"],
    );
    assert_eq!(gzipped.status, 200);
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert_eq!(gzipped.header("content-type"), Some("application/wasm"));
    assert_eq!(gzipped.header("cache-control"), Some("no-cache"));
    assert_eq!(gzipped.body_length, 100, "the gzip twin");

    let plain = http_get(server.addr, "/meetspace_bg.wasm", &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body_length, wasm.len(), "the file itself");

    // A browser that kept the bundle asks whether it changed: it did not.
    let modified = plain
        .header("last-modified")
        .expect("a Last-Modified header");
    let kept = http_get(
        server.addr,
        "/meetspace_bg.wasm",
        &[&format!("If-Modified-Since: {modified}")],
    );
    assert_eq!(kept.status, 304);
    assert_eq!(kept.body_length, 0);

    let page = http_get(server.addr, "/", &["Accept-Encoding: gzip"]);
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), Some("no-cache"));
}
