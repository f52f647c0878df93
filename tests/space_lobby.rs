//! The space's lobby with real bots (processes of the `meetspace` binary) and a real
//! signaling server: media connections follow distance; chat reaches its scope.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{RawClient, TestServer};
use meetspace::signaling::protocol::{ErrorCode, ServerMessage};
use serde_json::{Value, json};

/// Starts `meetspace bot --lobby` as `name` with `extra` flags, writing its figures to
/// `stats` when it leaves after `seconds`.
fn lobby_bot(url: &str, name: &str, seconds: u32, stats: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meetspace"))
        .args(["bot", "--signal", url, "--lobby", "--name", name])
        .args(["--resolution", "320x240", "--video-kbps", "300"])
        .args(["--duration", &seconds.to_string()])
        .arg("--stats-json")
        .arg(stats)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the meetspace binary starts")
}

fn read_stats(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).expect("the stats are JSON")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meetspace-lobby-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir.join(name)
}

/// One side's view of the other: its opening, closing, poses and received media.
fn check_side(stats: &Value, other: &str, earshot: f64, margin: f64) -> f64 {
    let space = &stats["space"];
    assert_eq!(space["max_media_connections"], 1, "{stats:#}");
    let opened = space["media_opened"].as_array().expect("media_opened");
    assert_eq!(opened.len(), 1, "one walk up: {stats:#}");
    let distance = opened[0]["distance_m"].as_f64().expect("a distance");
    assert!(
        distance <= earshot + 0.5,
        "opened {distance} m away: {stats:#}"
    );
    let first_frame_ms = opened[0]["ms_to_first_frame"]
        .as_f64()
        .unwrap_or_else(|| panic!("no frame came from {other}: {stats:#}"));
    let closed = space["media_closed"].as_array().expect("media_closed");
    assert_eq!(closed.len(), 1, "one walk away: {stats:#}");
    assert!(
        closed[0]["distance_m"].as_f64() > Some(earshot + margin),
        "closed too near: {stats:#}"
    );
    let peer = stats["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|peer| peer["name"] == other))
        .unwrap_or_else(|| panic!("{other} is not among the peers: {stats:#}"));
    assert!(peer["frames_decoded"].as_u64() > Some(10), "{peer:#}");
    assert!(peer["audio_packets"].as_u64() > Some(10), "{peer:#}");
    first_frame_ms
}

#[test]
fn a_walk_up_opens_the_media_and_the_walk_back_closes_it() {
    let server = TestServer::start();
    let (standing_stats, walking_stats) = (scratch("standing.json"), scratch("walking.json"));
    let mut standing = lobby_bot(
        &server.url,
        "Standing",
        24,
        &standing_stats,
        &["--at", "0,0"],
    );
    let mut walking = lobby_bot(
        &server.url,
        "Walking",
        24,
        &walking_stats,
        &["--at", "20,0", "--walk-to", "1,0;20,0", "--speed", "2"],
    );
    for bot in [&mut standing, &mut walking] {
        let status = bot.wait().expect("the bot runs");
        assert!(status.success(), "a bot failed: {status}");
    }
    let (standing, walking) = (read_stats(&standing_stats), read_stats(&walking_stats));
    let standing_ms = check_side(&standing, "Walking", 5.0, 2.0);
    let walking_ms = check_side(&walking, "Standing", 5.0, 2.0);
    // The walker's poses go through the server 5 times a second for its whole walk.
    let poses = standing["space"]["poses_received"]
        .as_object()
        .and_then(|poses| poses.values().next())
        .and_then(Value::as_u64)
        .unwrap_or(0);
    assert!(
        poses >= 60,
        "the standing bot received {poses} poses: {standing:#}"
    );
    println!(
        "earshot crossed to the first decoded frame: {standing_ms:.0} ms (standing bot), \
         {walking_ms:.0} ms (walking bot); {poses} poses received from the walker"
    );
}

/// Chat messages a raw client gets within a short wait, as (sender name, text).
async fn chats_within(client: &mut RawClient, wait: Duration) -> Vec<(String, String)> {
    let mut got = Vec::new();
    while let Some(message) = client.recv_within(wait).await {
        if let ServerMessage::Chat { name, text, .. } = message {
            got.push((name.to_string(), text.as_str().to_owned()));
        }
    }
    got
}

#[test]
fn chat_reaches_exactly_its_scope_and_bad_messages_get_their_errors() {
    let server = TestServer::start();
    server.block_on(async {
        let quiet = Duration::from_millis(300);
        let mut lobby = Vec::new();
        for (name, x) in [("Near", 0.0), ("Also near", 3.0), ("Far", 30.0)] {
            let mut client = RawClient::connect(&server.url).await;
            client.join("lobby", name).await;
            client
                .send_json(json!({"type": "pose", "pose": {"x": x, "z": 0.0, "yaw": 0.0}}))
                .await;
            lobby.push(client);
        }
        let mut room_a = RawClient::connect(&server.url).await;
        let (room, _) = room_a.create("In a room").await;
        let mut room_b = RawClient::connect(&server.url).await;
        room_b.join(&room, "Also in the room").await;
        // Let the joins and poses settle, then forget what they caused.
        for client in lobby.iter_mut().chain([&mut room_a, &mut room_b]) {
            while client.recv_within(quiet).await.is_some() {}
        }

        let say = |scope: &str, text: &str| json!({"type": "chat", "scope": scope, "text": text});
        lobby[0].send_json(say("near", "psst")).await;
        assert_eq!(
            chats_within(&mut lobby[1], quiet).await,
            vec![("Near".to_owned(), "psst".to_owned())]
        );
        assert!(
            chats_within(&mut lobby[2], quiet).await.is_empty(),
            "too far"
        );
        assert!(
            chats_within(&mut lobby[0], quiet).await.is_empty(),
            "no echo"
        );
        assert!(
            chats_within(&mut room_a, quiet).await.is_empty(),
            "another room"
        );

        lobby[0].send_json(say("room", "hello lobby")).await;
        for client in &mut lobby[1..] {
            assert_eq!(chats_within(client, quiet).await.len(), 1);
        }
        assert!(chats_within(&mut room_b, quiet).await.is_empty());

        room_a.send_json(say("space", "hello everyone")).await;
        for client in lobby.iter_mut().chain([&mut room_b]) {
            assert_eq!(
                chats_within(client, quiet).await,
                vec![("In a room".to_owned(), "hello everyone".to_owned())]
            );
        }

        // Bad input: a typed error for the sender, nothing for anyone else.
        let too_long = "x".repeat(1001);
        for bad in [
            say("room", &too_long),
            say("room", "bell\u{7}"),
            say("room", ""),
        ] {
            room_a.send_json(bad).await;
            match room_a.recv().await {
                ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::BadChat),
                other => panic!("expected bad_chat, got {other:?}"),
            }
        }
        // A flood: 5 at once pass, the rest are refused.
        for n in 0..8 {
            room_a.send_json(say("room", &format!("flood {n}"))).await;
        }
        let mut refused = 0;
        while let Some(message) = room_a.recv_within(quiet).await {
            if let ServerMessage::Error { code, .. } = message {
                assert_eq!(code, ErrorCode::RateLimited);
                refused += 1;
            }
        }
        assert!(refused >= 2, "{refused} refused");
        let delivered = chats_within(&mut room_b, quiet).await;
        assert_eq!(delivered.len(), 8 - refused, "{delivered:?}");
        assert!(chats_within(&mut lobby[0], quiet).await.is_empty());
    });
}
