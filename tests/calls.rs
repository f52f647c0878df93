//! Real WebRTC calls between headless meetspace clients over 127.0.0.1: synthetic video
//! and audio through VP8 and Opus, decoded frames checked pixel by pixel in the ECS.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bevy::app::App;
use common::checks::*;
use common::*;
use meetspace::call::{
    CallCommand, CallError, CallNotice, ConnectionState, MediaState, PEER_RECONNECT_LIMIT,
    Participant, SendStats,
};
use meetspace::rtc::native::{LocalMedia, PeerSession};
use meetspace::rtc::{PeerConnectionState, PeerEvent, Role, RtcConfig};
use meetspace::runtime::AsyncRuntime;
use meetspace::signaling::payload::SignalPayload;
use meetspace::signaling::protocol::ServerMessage;
use serde_json::json;
use tokio::sync::mpsc;

#[test]
fn two_clients_see_and_hear_each_other() {
    let server = TestServer::start();
    let mut alice = client_with(&server.url, "Alice", settings(440.0));
    let mut bob = client_with(&server.url, "Bob", settings(660.0));
    let room = host_room(&mut alice);
    join_room(&mut bob, &room);

    assert_alice_and_bob_see_and_hear_each_other(&mut alice, &mut bob);
}

#[test]
fn three_clients_full_mesh_with_one_encoder_each() {
    let server = TestServer::start();
    let mut a = client_with(&server.url, "A", settings(300.0));
    let mut b = client_with(&server.url, "B", settings(500.0));
    let mut c = client_with(&server.url, "C", settings(700.0));
    let room = host_room(&mut a);
    join_room(&mut b, &room);
    join_room(&mut c, &room);
    let names = ["A", "B", "C"];
    let mesh = pump_until(&mut [&mut a, &mut b, &mut c], 40 * SECOND, |apps| {
        apps.iter_mut().enumerate().all(|(i, app)| {
            names
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .all(|(_, name)| frames_decoded(app, name) >= 30)
        })
    });
    assert!(mesh, "not every client received both others' video");
    for app in [&a, &b, &c] {
        let encoders = app
            .world()
            .resource::<SendStats>()
            .video_encoders
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(encoders, 1, "one VP8 encoder serves both peers");
    }

    // C leaves: A and B keep receiving each other without a glitch over 1 s, and C's
    // participant is gone within 2 s.
    leave(&mut c);
    let left_at = Instant::now();
    let mut last_change = [Instant::now(); 2];
    let mut last_seq = [None, None];
    let mut longest_gap = Duration::ZERO;
    let mut c_gone_after = None;
    pump_until(&mut [&mut a, &mut b, &mut c], 3 * SECOND, |apps| {
        for (i, (viewer, sender)) in [(0, "B"), (1, "A")].into_iter().enumerate() {
            let seq = seen(apps[viewer], sender).and_then(|seen| seen.stamp_seq);
            if seq != last_seq[i] {
                longest_gap = longest_gap.max(last_change[i].elapsed());
                last_change[i] = Instant::now();
                last_seq[i] = seq;
            }
        }
        if c_gone_after.is_none() && seen(apps[0], "C").is_none() && seen(apps[1], "C").is_none() {
            c_gone_after = Some(left_at.elapsed());
        }
        false
    });
    assert!(
        longest_gap < SECOND,
        "video froze for {longest_gap:?} when C left"
    );
    assert!(
        c_gone_after.is_some_and(|after| after < 2 * SECOND),
        "C still shown: {c_gone_after:?}"
    );
}

#[test]
fn camera_off_and_mic_mute_stop_the_media_and_resume_it() {
    let server = TestServer::start();
    let mut alice = client_with(&server.url, "Alice", settings(440.0));
    let mut bob = client_with(&server.url, "Bob", settings(660.0));
    let room = host_room(&mut alice);
    join_room(&mut bob, &room);
    assert!(pump_until(
        &mut [&mut alice, &mut bob],
        30 * SECOND,
        |apps| { frames_decoded(apps[1], "Alice") >= 30 && audio_packets(apps[1], "Alice") > 20 }
    ));

    alice
        .world_mut()
        .write_message(CallCommand::SetCamera(false));
    alice
        .world_mut()
        .write_message(CallCommand::SetMicrophone(false));
    assert!(
        pump_until(&mut [&mut alice, &mut bob], SECOND, |apps| {
            seen(apps[1], "Alice").is_some_and(|seen| {
                seen.media
                    == MediaState {
                        audio: false,
                        video: false,
                    }
            })
        }),
        "Bob was not told that Alice muted"
    );
    // Let what was in flight arrive, then nothing more may come.
    pump_until(
        &mut [&mut alice, &mut bob],
        1500 * Duration::from_millis(1),
        |_| false,
    );
    let frames_before = seen(&mut bob, "Alice").unwrap().frames_shown;
    let errors_before = seen(&mut bob, "Alice")
        .unwrap()
        .stats
        .unwrap()
        .decode_errors;
    let audio_before = audio_packets(&mut bob, "Alice");
    pump_until(&mut [&mut alice, &mut bob], 2 * SECOND, |_| false);
    assert_eq!(
        seen(&mut bob, "Alice").unwrap().frames_shown,
        frames_before,
        "video kept coming"
    );
    assert_eq!(
        audio_packets(&mut bob, "Alice"),
        audio_before,
        "audio kept coming"
    );

    alice
        .world_mut()
        .write_message(CallCommand::SetCamera(true));
    alice
        .world_mut()
        .write_message(CallCommand::SetMicrophone(true));
    let resumed_at = Instant::now();
    assert!(
        pump_until(&mut [&mut alice, &mut bob], SECOND, |apps| {
            seen(apps[1], "Alice").is_some_and(|seen| {
                seen.frames_shown > frames_before && seen.media == MediaState::default()
            })
        }),
        "video did not resume within 1 s"
    );
    let resumed_after = resumed_at.elapsed();
    // Stats arrive once a second: wait for a fresh snapshot before comparing.
    pump_until(
        &mut [&mut alice, &mut bob],
        1200 * Duration::from_millis(1),
        |_| false,
    );
    let errors = seen(&mut bob, "Alice")
        .unwrap()
        .stats
        .unwrap()
        .decode_errors;
    assert_eq!(
        errors, errors_before,
        "the first frame after the pause must be a keyframe (resumed after {resumed_after:?})"
    );
    assert!(pump_until(
        &mut [&mut alice, &mut bob],
        3 * SECOND,
        |apps| { audio_packets(apps[1], "Alice") > audio_before }
    ));
}

/// A bare WebRTC peer driven by the test (no meetspace client) in a room: its
/// signaling half runs on the server's runtime, its peer connections on runtimes the
/// test hands it, so dropping such a runtime kills the media path while signaling
/// stays up.
struct BarePeer {
    /// The peer id of the room's host, whom the bare peer offers to.
    host: String,
    to_signaling: mpsc::UnboundedSender<(String, serde_json::Value)>,
    /// Where signals from the host go: the current peer connection's task.
    inbox: Arc<Mutex<Option<mpsc::UnboundedSender<serde_json::Value>>>>,
}

impl BarePeer {
    /// Joins `room` (hosted by a meetspace client alone) over signaling only.
    fn join(server: &TestServer, room: &str) -> Self {
        let (to_signaling, mut outbox) = mpsc::unbounded_channel::<(String, serde_json::Value)>();
        let inbox: Arc<Mutex<Option<mpsc::UnboundedSender<serde_json::Value>>>> = Arc::default();
        let url = server.url.clone();
        let room = room.to_owned();
        let (welcomed_tx, welcomed) = std::sync::mpsc::channel();
        let deliver = inbox.clone();
        server.runtime.handle().spawn(async move {
            let mut raw = RawClient::connect(&url).await;
            let ServerMessage::Welcome { peers, .. } = raw.join(&room, "Bare").await else {
                panic!("the bare peer was not welcomed");
            };
            welcomed_tx.send(peers[0].peer_id.to_string()).unwrap();
            loop {
                tokio::select! {
                    Some((to, data)) = outbox.recv() => {
                        raw.send_json(json!({"type": "signal", "to": to, "data": data})).await;
                    }
                    message = raw.recv_within(Duration::from_secs(3600)) => match message {
                        Some(ServerMessage::Signal { data, .. }) => {
                            if let Some(inbox) = deliver.lock().unwrap().as_ref() {
                                let _ = inbox.send(data);
                            }
                        }
                        Some(_) => {}
                        None => return,
                    },
                }
            }
        });
        let host = welcomed.recv_timeout(5 * SECOND).unwrap();
        Self {
            host,
            to_signaling,
            inbox,
        }
    }

    /// Offers to the host on a fresh peer connection that runs on `rtc_runtime`;
    /// `offer_override` edits the offer's SDP before it is sent.
    fn offer_from(&self, rtc_runtime: &AsyncRuntime, offer_override: Option<fn(String) -> String>) {
        let (to_rtc, mut inbox) = mpsc::unbounded_channel::<serde_json::Value>();
        *self.inbox.lock().unwrap() = Some(to_rtc);
        let host = self.host.clone();
        let to_signaling = self.to_signaling.clone();
        rtc_runtime.handle().spawn(async move {
            let local = LocalMedia::new().unwrap();
            let (events_tx, mut events) = mpsc::unbounded_channel();
            let session =
                PeerSession::new(&RtcConfig::loopback(), &local, Role::Offerer, events_tx)
                    .await
                    .unwrap();
            loop {
                tokio::select! {
                    Some(event) = events.recv() => {
                        if let PeerEvent::Signal(mut payload) = event {
                            if let (SignalPayload::Offer { sdp }, Some(edit)) = (&mut payload, offer_override) {
                                *sdp = edit(std::mem::take(sdp));
                            }
                            let _ = to_signaling.send((host.clone(), serde_json::to_value(&payload).unwrap()));
                        }
                    }
                    Some(data) = inbox.recv() => {
                        if let Ok(payload) = serde_json::from_value::<SignalPayload>(data) {
                            let _ = session.handle_signal(payload).await;
                        }
                    }
                }
            }
        });
    }
}

/// The state of the host's connection to the bare peer, while it is shown.
fn bare_connection(app: &mut App) -> Option<PeerConnectionState> {
    let world = app.world_mut();
    let mut query = world.query::<(&Participant, &ConnectionState)>();
    query
        .iter(world)
        .find(|(participant, _)| participant.name.as_str() == "Bare")
        .map(|(_, state)| state.0)
}

#[test]
fn a_killed_peer_is_dropped_in_bounded_time_even_while_signaling_still_lists_it() {
    let server = TestServer::start();
    let mut host = client_with(&server.url, "Host", settings(440.0));
    let room = host_room(&mut host);
    let bare_runtime = AsyncRuntime::new().unwrap();
    BarePeer::join(&server, room.as_str()).offer_from(&bare_runtime, None);
    let connected = pump_until(&mut [&mut host], 15 * SECOND, |apps| {
        bare_connection(apps[0]) == Some(PeerConnectionState::Connected)
    });
    assert!(
        connected,
        "the bare peer never connected: {:?}",
        notices(&host)
    );

    drop(bare_runtime); // its sockets vanish without DTLS or signaling goodbye
    let killed_at = Instant::now();
    // Signaling still lists the peer, so it gets the time a fresh connection needs
    // (its offer) before it is dropped: failed after 4 s, then PEER_RECONNECT_LIMIT.
    let gone = pump_until(
        &mut [&mut host],
        PEER_RECONNECT_LIMIT + 8 * SECOND,
        |apps| seen(apps[0], "Bare").is_none(),
    );
    assert!(
        gone,
        "the dead peer was still shown after {:?}",
        killed_at.elapsed()
    );
    println!("dropped {:?} after the kill", killed_at.elapsed());
}

#[test]
fn a_failed_connection_is_replaced_by_a_fresh_one_while_both_stay_in_the_room() {
    let server = TestServer::start();
    let mut host = client_with(&server.url, "Host", settings(440.0));
    let room = host_room(&mut host);
    let bare = BarePeer::join(&server, room.as_str());
    let first = AsyncRuntime::new().unwrap();
    bare.offer_from(&first, None);
    assert!(
        pump_until(&mut [&mut host], 15 * SECOND, |apps| {
            bare_connection(apps[0]) == Some(PeerConnectionState::Connected)
        }),
        "the bare peer never connected: {:?}",
        notices(&host)
    );

    drop(first); // the media path dies; both stay in the room
    let cut_at = Instant::now();
    assert!(
        pump_until(&mut [&mut host], 10 * SECOND, |apps| {
            matches!(
                bare_connection(apps[0]),
                Some(PeerConnectionState::Disconnected | PeerConnectionState::Failed)
            )
        }),
        "the dead path was never shown as reconnecting"
    );
    // The peer that offered the failed connection offers a fresh one (new ICE
    // credentials, new DTLS); the host answers it on a fresh connection of its own.
    let second = AsyncRuntime::new().unwrap();
    bare.offer_from(&second, None);
    assert!(
        pump_until(&mut [&mut host], 15 * SECOND, |apps| {
            bare_connection(apps[0]) == Some(PeerConnectionState::Connected)
        }),
        "no fresh connection: {:?}",
        notices(&host)
    );
    println!("connected again {:?} after the cut", cut_at.elapsed());
    assert_eq!(participant_names(&mut host), ["Bare"], "shown once");
    assert!(
        !notices(&host)
            .iter()
            .any(|notice| matches!(notice, CallNotice::PeerLeft(_))),
        "the peer was dropped on the way: {:?}",
        notices(&host)
    );
    // Past the reconnect limit, it is still there: the fresh connection counts.
    pump_until(&mut [&mut host], PEER_RECONNECT_LIMIT, |_| false);
    assert_eq!(
        bare_connection(&mut host),
        Some(PeerConnectionState::Connected)
    );
}

#[test]
fn an_offer_without_a_codec_we_support_is_a_clear_error() {
    let server = TestServer::start();
    let mut host = client_with(&server.url, "Host", settings(440.0));
    let room = host_room(&mut host);
    let bare_runtime = AsyncRuntime::new().unwrap();
    // The video section of the bare peer's offer lists only H.265 and AV1.
    let only_h265_and_av1: fn(String) -> String = |sdp| {
        sdp.replace("VP8/90000", "H265/90000")
            .replace("UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF 96 45")
            .replace(
                "a=rtpmap:96 H265/90000",
                "a=rtpmap:96 H265/90000\r\na=rtpmap:45 AV1/90000",
            )
    };
    BarePeer::join(&server, room.as_str()).offer_from(&bare_runtime, Some(only_h265_and_av1));
    let refused = pump_until(&mut [&mut host], 10 * SECOND, |apps| {
        notices(apps[0]).iter().any(|notice| {
            matches!(notice, CallNotice::Failed(CallError::Media(message)) if message.contains("VP8"))
        })
    });
    assert!(refused, "{:?}", notices(&host));
}

#[test]
fn an_echo_bot_sends_back_our_own_video_and_tone() {
    let server = TestServer::start();
    let mut alice = client_with(&server.url, "Alice", settings(550.0));
    let room = host_room(&mut alice);
    let mut echo = std::process::Command::new(env!("CARGO_BIN_EXE_meetspace"))
        .args(["bot", "--signal", &server.url, "--room", room.as_str()])
        .args(["--name", "Echo", "--echo", "--duration", "30"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let echoed = pump_until(&mut [&mut alice], 30 * SECOND, |apps| {
        frames_decoded(apps[0], "Echo") >= 30 && close_to(tone_of(apps[0], "Echo"), 550.0)
    });
    let _ = echo.kill();
    let _ = echo.wait();
    assert!(
        echoed,
        "frames {}, tone {:?}",
        frames_decoded(&mut alice, "Echo"),
        tone_of(&mut alice, "Echo")
    );
    // The frames that came back carry Alice's own stamps: the pixels match her source.
    assert!(difference_from_source(&mut alice, "Echo") < 8.0);
}

#[test]
fn the_self_view_shows_our_capture_during_a_call_and_stops_after() {
    let server = TestServer::start();
    let mut alice = client_with(&server.url, "Alice", settings(440.0));
    pump_until(&mut [&mut alice], Duration::from_millis(300), |_| false);
    assert_eq!(
        self_view_frames(&mut alice),
        0,
        "nothing is captured outside a call"
    );
    host_room(&mut alice);
    assert!(
        pump_until(&mut [&mut alice], 3 * SECOND, |apps| self_view_frames(
            apps[0]
        ) >= 10),
        "the self-view did not show our capture"
    );
    leave(&mut alice);
    assert_capture_stopped(&mut alice);
}
