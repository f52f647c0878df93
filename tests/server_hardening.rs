//! The signaling server under trouble: dropped connections that come back (`resume`),
//! a restart that forgot everything, locked rooms, silent connections, and churn.
//! Real server on loopback, spoken to with the raw wire protocol.

mod common;

use std::time::{Duration, Instant};

use common::*;
use meetspace::call::{CallNotice, CallState};
use meetspace::signaling::protocol::{ErrorCode, Passcode, ServerMessage};
use meetspace::signaling::server::ServerLimits;
use meetspace::signaling::turn_credentials::TurnCredentials;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const SECOND: Duration = Duration::from_secs(1);

/// A place in a room as `welcome` gave it.
struct Place {
    room: String,
    peer_id: String,
    token: String,
}

fn place_of(welcome: ServerMessage) -> (Place, Vec<String>) {
    match welcome {
        ServerMessage::Welcome {
            room,
            peer_id,
            peers,
            resume_token,
            ..
        } => (
            Place {
                room: room.to_string(),
                peer_id: peer_id.to_string(),
                token: String::from(resume_token),
            },
            peers.into_iter().map(|p| p.peer_id.to_string()).collect(),
        ),
        other => panic!("expected welcome, got {other:?}"),
    }
}

async fn create(client: &mut RawClient, extra: serde_json::Value) -> Place {
    let mut message = json!({"type": "create_room", "name": "Host"});
    message
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    client.send_json(message).await;
    place_of(client.recv().await).0
}

async fn resume(
    client: &mut RawClient,
    place: &Place,
    token: &str,
    passcode: Option<&str>,
) -> ServerMessage {
    let mut message = json!({"type": "resume", "room": place.room, "peer_id": place.peer_id,
                             "resume_token": token, "name": "Guest"});
    if let Some(passcode) = passcode {
        message["passcode"] = json!(passcode);
    }
    client.send_json(message).await;
    client.recv().await
}

fn error_code(message: &ServerMessage) -> Option<ErrorCode> {
    match message {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

#[test]
fn a_dropped_peer_resumes_its_place_with_its_token_and_nobody_else_can() {
    let server = TestServer::start();
    server.block_on(async {
        let mut host = RawClient::connect(&server.url).await;
        let room = create(&mut host, json!({})).await;
        let mut guest = RawClient::connect(&server.url).await;
        let (guest_place, _) = place_of(guest.join(&room.room, "Guest").await);
        assert!(matches!(
            host.recv().await,
            ServerMessage::PeerJoined { .. }
        ));

        guest.kill();
        match host.recv().await {
            ServerMessage::PeerAway { peer_id } => {
                assert_eq!(peer_id.as_str(), guest_place.peer_id)
            }
            other => panic!("expected peer_away, got {other:?}"),
        }

        let mut thief = RawClient::connect(&server.url).await;
        let refused = resume(&mut thief, &guest_place, "notthetoken23456789abcdefg", None).await;
        assert_eq!(
            error_code(&refused),
            Some(ErrorCode::ResumeRefused),
            "{refused:?}"
        );

        let mut back = RawClient::connect(&server.url).await;
        let (again, peers) =
            place_of(resume(&mut back, &guest_place, &guest_place.token, None).await);
        assert_eq!(again.peer_id, guest_place.peer_id, "the same peer id");
        assert_eq!(again.token, guest_place.token);
        assert_eq!(peers, std::slice::from_ref(&room.peer_id));
        match host.recv().await {
            ServerMessage::PeerBack { peer } => {
                assert_eq!(peer.peer_id.as_str(), guest_place.peer_id)
            }
            other => panic!("expected peer_back, got {other:?}"),
        }
        // Signals reach the resumed peer, and nobody shows twice.
        host.send_json(json!({"type": "signal", "to": guest_place.peer_id, "data": {"x": 1}}))
            .await;
        assert!(matches!(back.recv().await, ServerMessage::Signal { .. }));
        let sizes = server.monitor.sizes();
        assert_eq!(
            (sizes.rooms, sizes.members, sizes.away),
            (1, 2, 0),
            "{sizes:?}"
        );
    });
}

#[test]
fn a_place_not_taken_back_within_the_grace_period_is_given_up() {
    let server = TestServer::with_limits(ServerLimits {
        resume_grace_secs: 0.5,
        ..ServerLimits::default()
    });
    server.block_on(async {
        let mut host = RawClient::connect(&server.url).await;
        let room = create(&mut host, json!({})).await;
        let mut guest = RawClient::connect(&server.url).await;
        guest.join(&room.room, "Guest").await;
        assert!(matches!(
            host.recv().await,
            ServerMessage::PeerJoined { .. }
        ));
        guest.kill();
        let dropped = Instant::now();
        assert!(matches!(host.recv().await, ServerMessage::PeerAway { .. }));
        assert!(matches!(host.recv().await, ServerMessage::PeerLeft { .. }));
        let waited = dropped.elapsed();
        assert!(
            waited >= Duration::from_millis(450) && waited < 3 * SECOND,
            "peer_left after {waited:?}"
        );
    });
}

#[test]
fn after_a_restart_resume_makes_the_room_again_with_the_same_ids_and_passcode() {
    let server = TestServer::start();
    let addr = server.addr;
    let (room, guest_place) = server.block_on(async {
        let mut host = RawClient::connect(&server.url).await;
        let room = create(&mut host, json!({"passcode": "blue heron"})).await;
        let mut guest = RawClient::connect(&server.url).await;
        guest
            .send_json(json!({"type": "join_room", "room": room.room, "passcode": "blue heron"}))
            .await;
        (room, place_of(guest.recv().await).0)
    });
    drop(server);
    let server = TestServer::start_at(addr, ServerLimits::default());
    server.block_on(async {
        let mut guest = RawClient::connect(&server.url).await;
        guest
            .send_json(json!({"type": "resume", "room": guest_place.room,
                              "peer_id": guest_place.peer_id, "resume_token": guest_place.token,
                              "passcode": "blue heron"}))
            .await;
        let (again, peers) = place_of(guest.recv().await);
        assert_eq!(
            (again.room.as_str(), again.peer_id.as_str()),
            (room.room.as_str(), guest_place.peer_id.as_str())
        );
        assert!(peers.is_empty(), "nobody else has resumed yet");

        let mut host = RawClient::connect(&server.url).await;
        let (host_again, peers) =
            place_of(resume(&mut host, &room, &room.token, Some("blue heron")).await);
        assert_eq!(host_again.peer_id, room.peer_id);
        assert_eq!(peers, std::slice::from_ref(&guest_place.peer_id));
        assert!(matches!(guest.recv().await, ServerMessage::PeerBack { .. }));

        // The room made again is still locked.
        let mut stranger = RawClient::connect(&server.url).await;
        let refused = stranger.join(&room.room, "Stranger").await;
        assert_eq!(
            error_code(&refused),
            Some(ErrorCode::WrongPasscode),
            "{refused:?}"
        );
    });
}

#[test]
fn a_locked_room_wants_its_passcode() {
    let server = TestServer::start();
    server.block_on(async {
        let mut host = RawClient::connect(&server.url).await;
        let room = create(&mut host, json!({"passcode": "s3cret"})).await;
        let mut guest = RawClient::connect(&server.url).await;
        for passcode in [None, Some("S3CRET"), Some("s3cret ")] {
            let mut message = json!({"type": "join_room", "room": room.room, "name": "Guest"});
            if let Some(passcode) = passcode {
                message["passcode"] = json!(passcode);
            }
            guest.send_json(message).await;
            let answer = guest.recv().await;
            assert_eq!(
                error_code(&answer),
                Some(ErrorCode::WrongPasscode),
                "{passcode:?}: {answer:?}"
            );
        }
        guest
            .send_json(json!({"type": "join_room", "room": room.room, "passcode": "s3cret"}))
            .await;
        assert!(matches!(guest.recv().await, ServerMessage::Welcome { .. }));
    });

    // A meetspace client with the wrong passcode gets a clear error and stays idle.
    let mut host_config = config(&server.url, "Host", Default::default());
    host_config.passcode = Some(Passcode::parse("right").unwrap());
    let mut host = client_from(host_config);
    let room = host_room(&mut host);
    let mut guest_config = config(&server.url, "Guest", Default::default());
    guest_config.passcode = Some(Passcode::parse("nope").unwrap());
    let mut guest = client_from(guest_config);
    join_room(&mut guest, &room);
    let refused = |app: &mut bevy::prelude::App| {
        notices(app).iter().any(|notice| {
            matches!(notice, CallNotice::Failed(error) if error.code() == Some(ErrorCode::WrongPasscode))
        }) && state(app) == CallState::Idle
    };
    assert!(
        pump_until(&mut [&mut guest], 5 * SECOND, |apps| refused(apps[0])),
        "{:?}",
        notices(&guest)
    );
}

#[test]
fn silent_connections_are_pinged_then_dropped() {
    let server = TestServer::with_limits(ServerLimits {
        ping_interval_secs: 0.2,
        idle_timeout_secs: 0.6,
        ..ServerLimits::default()
    });
    let mut deaf = server.block_on(async {
        let mut deaf = RawClient::connect(&server.url).await;
        create(&mut deaf, json!({})).await;
        deaf
    });
    // A client that reads (and so answers pings) stays.
    let mut listener = server.block_on(RawClient::connect(&server.url));
    let started = Instant::now();
    while started.elapsed() < 2 * SECOND {
        server.block_on(listener.next_frame(Duration::from_millis(100)));
    }
    let sizes = server.monitor.sizes();
    assert_eq!(sizes.connections, 1, "{sizes:?}");
    assert_eq!(
        sizes.away, 1,
        "the deaf client's place is kept for its resume: {sizes:?}"
    );
    // What the deaf client finds when it finally reads: the pings it never answered,
    // then the end of the connection.
    let mut pings = 0;
    while let Some(frame) = server.block_on(deaf.next_frame(Duration::from_millis(200))) {
        pings += usize::from(matches!(frame, Message::Ping(_)));
    }
    assert!(pings >= 2, "{pings} pings before the drop");
}

/// The TURN servers of a `welcome`, as JSON.
fn ice_servers_of(welcome: &ServerMessage) -> serde_json::Value {
    match welcome {
        ServerMessage::Welcome { ice_servers, .. } => serde_json::to_value(ice_servers).unwrap(),
        other => panic!("expected welcome, got {other:?}"),
    }
}

#[test]
fn welcome_hands_out_turn_credentials_for_the_peer_and_fresh_ones_on_resume() {
    const TTL: u64 = 600;
    let url = "turn:turn.example.org:3478?transport=udp";
    let turn = || {
        TurnCredentials::new(
            vec![url.parse().unwrap()],
            "shared secret",
            Duration::from_secs(TTL),
        )
    };
    let server = TestServer::with_turn(turn());
    server.block_on(async {
        let mut host = RawClient::connect(&server.url).await;
        host.send_json(json!({"type": "create_room", "name": "Host"}))
            .await;
        let welcome = host.recv().await;
        let servers = ice_servers_of(&welcome);
        let place = place_of(welcome).0;
        assert_eq!(servers[0]["urls"], json!([url]), "{servers}");
        let username = servers[0]["username"].as_str().unwrap().to_owned();
        let (expiry, peer) = username.split_once(':').unwrap();
        assert_eq!(peer, place.peer_id, "the username names the peer");
        let expiry: u64 = expiry.parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            (now + TTL - 5..=now + TTL + 5).contains(&expiry),
            "expires in about {TTL} s: {username}"
        );
        // The credential is the HMAC of that username under the shared secret.
        let issued_at = std::time::UNIX_EPOCH + Duration::from_secs(expiry - TTL);
        let expected = turn().issue(
            &meetspace::signaling::protocol::PeerId::parse(peer).unwrap(),
            issued_at,
        );
        assert_eq!(
            servers[0]["credential"].as_str(),
            expected.credential.as_deref()
        );

        host.kill();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut back = RawClient::connect(&server.url).await;
        let again = resume(&mut back, &place, &place.token, None).await;
        let renewed = ice_servers_of(&again);
        let renewed_user = renewed[0]["username"].as_str().unwrap();
        assert!(
            renewed_user > username.as_str() && renewed_user.ends_with(&place.peer_id),
            "resume renews the credentials: {username} then {renewed_user}"
        );
    });
}
