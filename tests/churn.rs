//! What churn leaves behind: a hundred joins and leaves of one client, thousands of
//! connect/create/join/leave cycles on the server. Each test prints the process's
//! threads, file descriptors and resident memory before and after, and asserts a
//! bound on the growth. They take turns (the figures are the whole process's).

mod common;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::*;
use meetspace::call::{CallState, ConnectionState, Participant};
use meetspace::rtc::PeerConnectionState;
use meetspace::signaling::server::{ServerLimits, ServerSizes};
use serde_json::json;

const SECOND: Duration = Duration::from_secs(1);

/// Held by each test while it measures.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn hundred_join_leave_cycles_do_not_grow_threads_fds_or_memory() {
    const CYCLES: usize = 100;
    const WARM_UP: usize = 5;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    // A cycle takes about 0.1 s and the host sends about eight signals in each: far
    // over the default rate limit (50 a second after a burst of 200), which would drop
    // an answer after some ninety cycles. This test measures what churn leaves behind,
    // not the limit.
    let server = TestServer::with_limits(ServerLimits {
        rate_per_sec: 10_000,
        rate_burst: 10_000,
        ..ServerLimits::default()
    });
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
    let images = |app: &bevy::prelude::App| {
        app.world()
            .resource::<bevy::prelude::Assets<bevy::prelude::Image>>()
            .len()
    };
    println!(
        "images held: host {}, guest {}",
        images(&host),
        images(&guest)
    );
    // Only the self-view's image is left: every panel's went with its participant.
    assert!(images(&host) <= 1 && images(&guest) <= 1);
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

#[test]
fn server_memory_and_maps_stay_flat_under_churn() {
    const CYCLES: usize = 2000;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let server = TestServer::with_limits(ServerLimits {
        resume_grace_secs: 0.2,
        rate_per_sec: 10_000,
        rate_burst: 10_000,
        ..ServerLimits::default()
    });
    let churn = |cycles: usize| {
        server.block_on(async {
            for cycle in 0..cycles {
                let mut host = RawClient::connect(&server.url).await;
                let (room, _) = host.create("Host").await;
                let mut guest = RawClient::connect(&server.url).await;
                assert!(matches!(
                    guest.join(&room, "Guest").await,
                    meetspace::signaling::protocol::ServerMessage::Welcome { .. }
                ));
                if cycle % 2 == 0 {
                    guest.send_json(json!({"type": "leave"})).await;
                    host.send_json(json!({"type": "leave"})).await;
                    let _ = guest.next_frame(Duration::from_millis(1)).await;
                } else {
                    // Dropped without a goodbye: the places wait out the grace period.
                    guest.kill();
                    host.kill();
                }
            }
        });
    };
    let settle = || {
        let deadline = Instant::now() + 5 * SECOND;
        loop {
            let sizes = server.monitor.sizes();
            if sizes
                == (ServerSizes {
                    connections: 0,
                    rooms: 0,
                    members: 0,
                    away: 0,
                })
                || Instant::now() > deadline
            {
                return sizes;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    churn(200); // warm-up: allocator pools, task slabs
    settle();
    let before = ProcessFigures::now();
    let started = Instant::now();
    churn(CYCLES);
    let sizes = settle();
    let after = ProcessFigures::now();
    println!(
        "{CYCLES} connect/create/join/leave cycles (half dropped without leave) in {:.1} s: \
         server {sizes:?}; process RSS {} -> {} KiB, threads {} -> {}, fds {} -> {}",
        started.elapsed().as_secs_f64(),
        before.rss_kib,
        after.rss_kib,
        before.threads,
        after.threads,
        before.fds,
        after.fds
    );
    assert_eq!(
        sizes,
        ServerSizes {
            connections: 0,
            rooms: 0,
            members: 0,
            away: 0
        }
    );
    assert!(
        after.rss_kib <= before.rss_kib + 16 * 1024,
        "RSS grew {} -> {} KiB",
        before.rss_kib,
        after.rss_kib
    );
    assert!(
        after.fds <= before.fds + 8,
        "fds grew {} -> {}",
        before.fds,
        after.fds
    );
}
