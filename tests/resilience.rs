//! Staying up: a signaling server restarted mid-call, peers killed without a goodbye,
//! call after call in one app, and what a hundred joins and leaves leave behind.
//! Real server on loopback, real WebRTC between headless clients.

mod common;

use std::time::{Duration, Instant};

use common::*;
use meetspace::call::{CallNotice, CallState, ConnectionState, Participant};
use meetspace::rtc::PeerConnectionState;
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
    let sizes = server.monitor.sizes();
    assert_eq!((sizes.rooms, sizes.members), (0, 0), "{sizes:?}");
}

#[test]
fn hundred_join_leave_cycles_do_not_grow_threads_fds_or_memory() {
    const CYCLES: usize = 100;
    const WARM_UP: usize = 5;
    let server = TestServer::start();
    let mut host = client(&server.url, "Host");
    let mut guest = client(&server.url, "Guest");
    let room = host_room(&mut host);
    let cycle = |round: usize, host: &mut bevy::prelude::App, guest: &mut bevy::prelude::App| {
        join_room(guest, &room);
        assert!(
            pump_until(&mut [&mut *host, &mut *guest], 20 * SECOND, |apps| {
                connected_to(apps[1], "Host")
            }),
            "cycle {round}: never connected: {:?}",
            notices(guest)
        );
        leave(guest);
        assert!(
            pump_until(&mut [&mut *host, &mut *guest], 5 * SECOND, |apps| {
                state(apps[1]) == CallState::Idle && participant_names(apps[0]).is_empty()
            }),
            "cycle {round}: did not leave"
        );
    };
    for round in 0..WARM_UP {
        cycle(round, &mut host, &mut guest);
    }
    let before = ProcessFigures::now();
    let started = Instant::now();
    for round in 0..CYCLES {
        cycle(round, &mut host, &mut guest);
    }
    // Let closing connections finish their goodbyes.
    pump_until(&mut [&mut host, &mut guest], 2 * SECOND, |_| false);
    let after = ProcessFigures::now();
    println!(
        "{CYCLES} join/leave cycles in {:.1} s (after {WARM_UP} warm-up cycles): \
         threads {} -> {}, fds {} -> {}, RSS {} -> {} KiB",
        started.elapsed().as_secs_f64(),
        before.threads,
        after.threads,
        before.fds,
        after.fds,
        before.rss_kib,
        after.rss_kib
    );
    println!("server after: {:?}", server.monitor.sizes());
    assert!(
        after.threads <= before.threads + 4,
        "threads grew {} -> {}",
        before.threads,
        after.threads
    );
    assert!(
        after.fds <= before.fds + 16,
        "file descriptors grew {} -> {}",
        before.fds,
        after.fds
    );
    assert!(
        after.rss_kib <= before.rss_kib + 64 * 1024,
        "resident memory grew {} -> {} KiB",
        before.rss_kib,
        after.rss_kib
    );
    assert_eq!(server.monitor.sizes().members, 1, "only the host is left");
}

fn connected_to(app: &mut bevy::prelude::App, name: &str) -> bool {
    let world = app.world_mut();
    let mut query = world.query::<(&Participant, &ConnectionState)>();
    query
        .iter(world)
        .any(|(p, s)| p.name.as_str() == name && s.0 == PeerConnectionState::Connected)
}
