//! The space's lobby with real bots (processes of the `meetspace` binary) and a real
//! signaling server: media connections follow distance, a space client shows people
//! as avatars carrying their video (in a room too, unless it is in the gallery view);
//! chat reaches its scope; raised hands and chat bubbles show over their sender.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bevy::prelude::*;
use common::{
    RawClient, TestServer, bot_command, client, host_room, join_room, lobby_bot_command, notices,
    pump_until, space_client, state,
};
use meetspace::call::{CallCommand, Participant, PoseTrack, VideoFeed};
use meetspace::signaling::protocol::{ChatScope, ChatText, ErrorCode, ServerMessage};
use meetspace::space::{BUBBLE_SHOWN, Overhead, Panel, PanelParts, Player, ROOM, RoomView};
use serde_json::{Value, json};

const SECOND: Duration = Duration::from_secs(1);

/// Starts `meetspace bot --lobby` as `name` with `extra` flags, writing its figures to
/// `stats` when it leaves after `seconds`.
fn lobby_bot(url: &str, name: &str, seconds: u32, stats: &Path, extra: &[&str]) -> Child {
    start_bot(lobby_bot_command(url, name), seconds, stats, extra)
}

/// Starts a bot `command` with `extra` flags, writing its figures to `stats` when it
/// leaves after `seconds`.
fn start_bot(mut command: Command, seconds: u32, stats: &Path, extra: &[&str]) -> Child {
    command
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

/// The poses a lobby bot received from the one other person it met, from its figures.
fn poses_from(stats: &Value) -> u64 {
    stats["space"]["poses_received"]
        .as_object()
        .and_then(|poses| poses.values().next())
        .and_then(Value::as_u64)
        .unwrap_or(0)
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
    // Poses come through the server 5 times a second for the whole walk, and on the
    // data channel 20 times a second while connected (standing still too).
    let (from_walker, from_standing) = (poses_from(&standing), poses_from(&walking));
    assert!(
        from_walker >= 80,
        "{from_walker} poses from the walker: {standing:#}"
    );
    assert!(
        from_standing >= 50,
        "{from_standing} poses from the standing bot: {walking:#}"
    );
    println!(
        "earshot crossed to the first decoded frame: {standing_ms:.0} ms (standing bot), \
         {walking_ms:.0} ms (walking bot); poses received: {from_walker} from the walker, \
         {from_standing} from the standing bot"
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

        // A raised hand counts against the same limit: refused now, relayed a second
        // later to the room.
        let hand = json!({"type": "hand", "raised": true});
        room_a.send_json(hand.clone()).await;
        match room_a.recv().await {
            ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::RateLimited),
            other => panic!("expected rate_limited, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        room_a.send_json(hand).await;
        match room_b.recv_within(3 * quiet).await {
            Some(ServerMessage::PeerHand { raised: true, .. }) => {}
            other => panic!("expected peer_hand, got {other:?}"),
        }
    });
}

/// The avatar of the participant called `name` in a space client: where its panel
/// stands on the floor, whether its face shows the participant's video, and the poses
/// received from them.
fn avatar_of(app: &mut App, name: &str) -> Option<(Vec2, bool, u64)> {
    let world = app.world_mut();
    let mut people = world.query::<(Entity, &Participant, &VideoFeed, &PoseTrack)>();
    let (entity, image, poses) = people
        .iter(world)
        .find(|(_, participant, ..)| participant.name.as_str() == name)
        .map(|(entity, _, feed, track)| (entity, feed.image.clone(), track.received))?;
    let mut panels = world.query::<(&Panel, &PanelParts, &Transform)>();
    let (_, parts, transform) = panels
        .iter(world)
        .find(|(panel, ..)| panel.participant == entity)?;
    let materials = world.resource::<Assets<StandardMaterial>>();
    let showing = image.is_some_and(|image| parts.screen_image(materials) == Some(image.id()));
    let spot = Vec2::new(transform.translation.x, transform.translation.z);
    Some((spot, showing, poses))
}

#[test]
fn a_space_client_sees_a_walking_bot_as_an_avatar_with_its_video_and_tells_its_own_walk() {
    let server = TestServer::start();
    let mut viewer = space_client(&server.url, "Viewer");
    assert!(
        pump_until(&mut [&mut viewer], 10 * SECOND, |apps| state(apps[0])
            .in_lobby()),
        "the client did not enter the lobby by itself: {:?}",
        notices(&viewer)
    );
    // The player arrives at (0, 3.5); the bot walks past in front of them, within earshot.
    let stats = scratch("beside-viewer.json");
    let mut bot = lobby_bot(
        &server.url,
        "Bot",
        20,
        &stats,
        &["--at", "3,1", "--walk-to", "-3,1;3,1", "--speed", "0.8"],
    );
    let seen = pump_until(&mut [&mut viewer], 15 * SECOND, |apps| {
        avatar_of(apps[0], "Bot").is_some_and(|(_, showing, poses)| showing && poses > 3)
    });
    assert!(
        seen,
        "no avatar with live video: {:?}",
        avatar_of(&mut viewer, "Bot")
    );
    let (before, ..) = avatar_of(&mut viewer, "Bot").expect("the avatar");
    pump_until(&mut [&mut viewer], SECOND, |_| false);
    let (after, showing, poses) = avatar_of(&mut viewer, "Bot").expect("the avatar");
    assert!(
        before.distance(after) > 0.3 && before.distance(after) < 2.0,
        "the avatar did not walk with the bot: {before} then {after}"
    );
    assert!((after.y - 1.0).abs() < 0.3, "off the bot's line: {after}");
    assert!(showing, "its face lost the video");

    // Our own walk reaches the bot: a few steps to the right.
    walk_right(&mut viewer, 10);
    let _ = bot.kill();
    let _ = bot.wait();
    pump_until(&mut [&mut viewer], SECOND, |_| false);
    let stats = read_stats(&stats);
    let from_viewer = poses_from(&stats);
    assert!(
        from_viewer >= 3,
        "the bot received {from_viewer} poses: {stats:#}"
    );
    println!(
        "the viewer received {poses} poses from the bot, the bot {from_viewer} from the viewer"
    );
}

/// Moves the player of a space client `steps` times by 0.1 m along x, a frame pump
/// apart, so that its walk goes out as poses.
fn walk_right(app: &mut App, steps: u32) {
    let start = {
        let world = app.world_mut();
        let mut players = world.query_filtered::<&Transform, With<Player>>();
        players.single(world).expect("the player").translation.x
    };
    for step in 1..=steps {
        let world = app.world_mut();
        let mut players = world.query_filtered::<&mut Transform, With<Player>>();
        players.single_mut(world).expect("the player").translation.x = start + step as f32 * 0.1;
        pump_until(&mut [&mut *app], SECOND / 10, |_| false);
    }
}

#[test]
fn in_a_room_people_walk_as_avatars_and_the_gallery_puts_them_on_its_circle() {
    let server = TestServer::start();
    let mut viewer = space_client(&server.url, "Viewer");
    let room = host_room(&mut viewer);
    // The player arrives 2.5 m in front of the room's middle; the bot walks across
    // 1 m behind the middle.
    let stats = scratch("in-a-room.json");
    let mut command = bot_command(&server.url, "Bot");
    command.args(["--room", room.as_str()]);
    let extra = ["--at", "2,-1", "--walk-to", "-2,-1;2,-1", "--speed", "0.8"];
    let mut bot = start_bot(command, 20, &stats, &extra);
    let seen = pump_until(&mut [&mut viewer], 15 * SECOND, |apps| {
        avatar_of(apps[0], "Bot").is_some_and(|(_, showing, poses)| showing && poses > 3)
    });
    assert!(
        seen,
        "no avatar with live video: {:?} {:?}",
        avatar_of(&mut viewer, "Bot"),
        notices(&viewer)
    );
    let (before, ..) = avatar_of(&mut viewer, "Bot").expect("the avatar");
    pump_until(&mut [&mut viewer], SECOND, |_| false);
    let (after, showing, _) = avatar_of(&mut viewer, "Bot").expect("the avatar");
    assert!(
        before.distance(after) > 0.3 && before.distance(after) < 2.0,
        "the avatar did not walk with the bot: {before} then {after}"
    );
    let from_middle = after - ROOM.center;
    assert!(
        (from_middle.y + 1.0).abs() < 0.3 && from_middle.x.abs() <= 2.1,
        "off the bot's line: {from_middle} from the room's middle"
    );
    assert!(showing, "its face lost the video");

    // The gallery view: the panel goes to its place on the circle, far from the walk.
    viewer.insert_resource(RoomView::Gallery);
    pump_until(&mut [&mut viewer], 2 * SECOND, |_| false);
    let (on_circle, ..) = avatar_of(&mut viewer, "Bot").expect("the panel");
    assert!(
        on_circle.distance(ROOM.center) > 4.0,
        "the panel is not on the gallery's circle: {on_circle}"
    );
    viewer.insert_resource(RoomView::Avatars);

    // Our own walk in the room reaches the bot.
    walk_right(&mut viewer, 10);
    let _ = bot.kill();
    let _ = bot.wait();
    let stats = read_stats(&stats);
    let from_viewer = poses_from(&stats);
    assert!(
        from_viewer >= 3,
        "the bot received {from_viewer} poses: {stats:#}"
    );
    println!("in the room, the bot received {from_viewer} poses from the viewer");
}

/// Whether the hand sign and the chat bubble over `name`'s panel show, in a space
/// client (`None` before the panel has them).
fn overhead_of(app: &mut App, name: &str) -> Option<(bool, bool)> {
    let world = app.world_mut();
    let mut people = world.query::<(Entity, &Participant)>();
    let person = people
        .iter(world)
        .find(|(_, participant)| participant.name.as_str() == name)
        .map(|(entity, _)| entity)?;
    let mut panels = world.query::<(&Panel, &Overhead)>();
    let (hand, bubble) = panels
        .iter(world)
        .find(|(panel, _)| panel.participant == person)
        .map(|(_, overhead)| (overhead.hand(), overhead.bubble()))?;
    let shown = |entity| world.get::<Visibility>(entity) == Some(&Visibility::Inherited);
    Some((shown(hand), shown(bubble)))
}

#[test]
fn a_raised_hand_and_a_chat_message_show_over_the_sender() {
    let server = TestServer::start();
    let mut viewer = space_client(&server.url, "Viewer");
    let room = host_room(&mut viewer);
    let mut talker = client(&server.url, "Talker");
    join_room(&mut talker, &room);
    assert!(
        pump_until(&mut [&mut viewer, &mut talker], 10 * SECOND, |apps| {
            overhead_of(apps[0], "Talker").is_some()
        }),
        "no panel for the talker: {:?}",
        notices(&viewer)
    );
    assert_eq!(overhead_of(&mut viewer, "Talker"), Some((false, false)));

    talker
        .world_mut()
        .write_message(CallCommand::RaiseHand(true));
    talker.world_mut().write_message(CallCommand::SendChat {
        scope: ChatScope::Room,
        text: ChatText::parse("Can everyone hear me?").expect("a valid message"),
    });
    assert!(
        pump_until(&mut [&mut viewer, &mut talker], 5 * SECOND, |apps| {
            overhead_of(apps[0], "Talker") == Some((true, true))
        }),
        "no hand and bubble over the talker: {:?}",
        overhead_of(&mut viewer, "Talker")
    );

    talker
        .world_mut()
        .write_message(CallCommand::RaiseHand(false));
    assert!(
        pump_until(&mut [&mut viewer, &mut talker], 5 * SECOND, |apps| {
            overhead_of(apps[0], "Talker").is_some_and(|(hand, _)| !hand)
        }),
        "the hand stayed up"
    );
    assert!(
        pump_until(&mut [&mut viewer, &mut talker], BUBBLE_SHOWN, |apps| {
            overhead_of(apps[0], "Talker") == Some((false, false))
        }),
        "the bubble stayed past {BUBBLE_SHOWN:?}"
    );
}

#[test]
fn the_lobby_demo_guide_walks_up_to_the_player_with_its_video() {
    let server = TestServer::start();
    let mut viewer = space_client(&server.url, "Viewer");
    let signal = server.url.parse().expect("the server's URL");
    meetspace::bot::spawn_lobby_demo(&signal, 1).expect("the demo starts");
    let arrived = pump_until(&mut [&mut viewer], 30 * SECOND, |apps| {
        avatar_of(apps[0], "Demo guide").is_some_and(|(spot, showing, _)| {
            // Stood still in front of the player, who arrived at (0, 3.5).
            showing && spot.distance(Vec2::new(0.0, 3.5)) < 3.0
        })
    });
    assert!(
        arrived,
        "the guide did not walk up with its video: {:?} {:?}",
        avatar_of(&mut viewer, "Demo guide"),
        notices(&viewer)
    );
    assert!(
        avatar_of(&mut viewer, "Demo bot 1").is_some(),
        "no wanderer in the lobby"
    );
}
