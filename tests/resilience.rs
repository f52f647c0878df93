//! Staying up: a signaling server restarted mid-call, and call after call in one app.
//! Real server on loopback, real WebRTC between headless clients.

mod common;

use std::time::{Duration, Instant};

use common::*;
use meetspace::call::{CallNotice, CallState};
use meetspace::signaling::server::ServerLimits;

const SECOND: Duration = Duration::from_secs(1);

fn resumed(app: &bevy::prelude::App) -> bool {
    notices(app).contains(&CallNotice::Reconnected)
}

/// Waits until `viewer` has shown more than `at_least` frames of `name`'s video.
fn shows_video(viewer: &mut bevy::prelude::App, name: &str, at_least: u64) -> bool {
    frames_shown(viewer, name).is_some_and(|frames| frames > at_least)
}

#[test]
fn signaling_server_restart_mid_call_keeps_media_and_clients_resume_within_5_s() {
    let server = TestServer::start();
    let addr = server.addr;
    let mut alice = client(&server.url, "Alice");
    let mut bob = client(&server.url, "Bob");
    let room = host_room(&mut alice);
    join_room(&mut bob, &room);
    assert!(
        pump_until(&mut [&mut alice, &mut bob], 20 * SECOND, |apps| {
            let [a, b] = apps else { unreachable!() };
            shows_video(a, "Bob", 10) && shows_video(b, "Alice", 10)
        }),
        "no video both ways before the restart: {:?} / {:?}",
        notices(&alice),
        notices(&bob)
    );
    let bob_id = match state(&bob) {
        CallState::InCall { self_id, .. } => self_id,
        other => panic!("Bob is not in the call: {other:?}"),
    };

    drop(server); // every signaling connection drops; the server forgets everything
    let before = frames_shown(&mut alice, "Bob").unwrap();
    pump_until(&mut [&mut alice, &mut bob], 2 * SECOND, |_| false);
    let during = frames_shown(&mut alice, "Bob").unwrap() - before;
    println!("video frames shown while the signaling server was down for 2 s: {during}");
    assert!(
        during >= 10,
        "media stopped with signaling: {during} frames in 2 s"
    );
    assert!(
        notices(&alice)
            .iter()
            .any(|n| matches!(n, CallNotice::Reconnecting(_))),
        "{:?}",
        notices(&alice)
    );

    let server = TestServer::start_at(addr, ServerLimits::default());
    let restarted = Instant::now();
    assert!(
        pump_until(&mut [&mut alice, &mut bob], 5 * SECOND, |apps| {
            resumed(apps[0]) && resumed(apps[1])
        }),
        "not both resumed within 5 s of the restart: {:?} / {:?}",
        notices(&alice),
        notices(&bob)
    );
    println!(
        "both clients resumed {:?} after the server restarted",
        restarted.elapsed()
    );
    assert_eq!(
        state(&bob),
        CallState::InCall {
            room: room.clone(),
            self_id: bob_id
        }
    );
    assert_eq!(
        participant_names(&mut alice),
        ["Bob"],
        "a duplicate participant"
    );
    assert_eq!(
        participant_names(&mut bob),
        ["Alice"],
        "a duplicate participant"
    );
    let sizes = server.monitor.sizes();
    assert_eq!((sizes.rooms, sizes.members), (1, 2), "{sizes:?}");

    let mut carol = client(&server.url, "Carol");
    join_room(&mut carol, &room);
    assert!(
        pump_until(
            &mut [&mut alice, &mut bob, &mut carol],
            20 * SECOND,
            |apps| {
                let [a, b, c] = apps else { unreachable!() };
                shows_video(c, "Alice", 5)
                    && shows_video(c, "Bob", 5)
                    && shows_video(a, "Carol", 5)
                    && shows_video(b, "Carol", 5)
            }
        ),
        "the newcomer did not reach everyone: {:?}",
        notices(&carol)
    );
    assert_eq!(participant_names(&mut alice), ["Bob", "Carol"]);
    assert_eq!(participant_names(&mut carol), ["Alice", "Bob"]);
}

#[test]
fn ten_calls_in_one_app_session_each_on_fresh_connections() {
    let server = TestServer::start();
    let mut host = client(&server.url, "Host");
    let mut guest = client(&server.url, "Guest");
    for round in 1..=10 {
        let room = host_room(&mut host);
        join_room(&mut guest, &room);
        assert!(
            pump_until(&mut [&mut host, &mut guest], 20 * SECOND, |apps| {
                let [h, g] = apps else { unreachable!() };
                shows_video(h, "Guest", 3) && shows_video(g, "Host", 3)
            }),
            "call {round}: no video both ways: {:?}",
            notices(&guest)
        );
        leave(&mut guest);
        leave(&mut host);
        assert!(
            pump_until(&mut [&mut host, &mut guest], 5 * SECOND, |apps| {
                state(apps[0]) == CallState::Idle && state(apps[1]) == CallState::Idle
            }),
            "call {round}: did not hang up"
        );
    }
    // The apps are idle once they said goodbye; the server may hear it a moment later.
    let deadline = Instant::now() + 5 * SECOND;
    let mut sizes = server.monitor.sizes();
    while (sizes.rooms, sizes.members) != (0, 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        sizes = server.monitor.sizes();
    }
    assert_eq!((sizes.rooms, sizes.members), (0, 0), "{sizes:?}");
}
