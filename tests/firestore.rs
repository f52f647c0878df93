//! Firestore signaling against the real Firestore emulator: meetspace with meetspace,
//! meetspace with a peer that follows the original Flutter app's flow in another stack
//! (Python: google-cloud-firestore and aiortc), the documents read back through the
//! emulator's REST API, errors, hang-up and clean-up, and a group call.
//!
//! Every test has its own project id, so they share one emulator and run in parallel,
//! except the one that times a hang-up: it runs alone (see `project_alone`).

mod common;
#[path = "firestore/emulator.rs"]
mod emulator;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use common::checks::*;
use common::*;
use emulator::{Emulator, emulator};
use meetspace::call::{CallCommand, CallError, CallNotice};
use meetspace::media::ShareTarget;
use meetspace::signaling::protocol::{ErrorCode, RoomId};
use serde_json::{Value, json};

/// Shared by the tests that run side by side; taken whole by a test that times something
/// (the emulator and the 2 cores are then its own).
static EMULATOR_TURN: RwLock<()> = RwLock::new(());

/// An emulator reset for `project`, the `--signal` URL of that project, and a turn
/// alongside the other tests, to hold while the test runs.
fn project(project: &str) -> (&'static Emulator, String, RwLockReadGuard<'static, ()>) {
    let turn = EMULATOR_TURN.read().unwrap_or_else(PoisonError::into_inner);
    let (emulator, url) = reset(project);
    (emulator, url, turn)
}

/// As `project`, with the emulator to this test alone while it holds the turn.
fn project_alone(project: &str) -> (&'static Emulator, String, RwLockWriteGuard<'static, ()>) {
    let turn = EMULATOR_TURN
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    let (emulator, url) = reset(project);
    (emulator, url, turn)
}

fn reset(project: &str) -> (&'static Emulator, String) {
    let emulator = emulator();
    emulator.reset(project);
    (emulator, format!("firestore://{project}"))
}

/// The fields of a REST document, or of a REST map value.
fn fields(value: &Value) -> &serde_json::Map<String, Value> {
    value["fields"]
        .as_object()
        .or_else(|| value["mapValue"]["fields"].as_object())
        .expect("a document or map with fields")
}

/// The names of a REST document's fields, sorted.
fn field_names(value: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = fields(value).keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

/// Asserts that a REST description is the Flutter app's `{type, sdp}` map.
fn assert_description(value: &Value, kind: &str) {
    assert_eq!(field_names(value), ["sdp", "type"], "{value}");
    assert_eq!(fields(value)["type"]["stringValue"], kind);
    let sdp = fields(value)["sdp"]["stringValue"].as_str().unwrap();
    assert!(sdp.starts_with("v=0"), "{sdp}");
}

/// Asserts that every candidate document is `{candidate, sdpMid, sdpMLineIndex}` of
/// the Flutter app's types (string, string or null, integer or null); returns how many.
fn assert_candidates(documents: &[Value]) -> usize {
    for document in documents {
        assert_eq!(
            field_names(document),
            ["candidate", "sdpMLineIndex", "sdpMid"],
            "{document}"
        );
        let fields = fields(document);
        let line = fields["candidate"]["stringValue"].as_str().unwrap();
        assert!(line.starts_with("candidate:"), "{line}");
        assert!(
            fields["sdpMid"].get("stringValue").is_some()
                || fields["sdpMid"].get("nullValue").is_some()
        );
        assert!(
            fields["sdpMLineIndex"].get("integerValue").is_some()
                || fields["sdpMLineIndex"].get("nullValue").is_some()
        );
    }
    documents.len()
}

/// Waits until `app` has been refused with `code`; returns how long that took.
fn refused_with(app: &mut App, code: ErrorCode) -> Option<Duration> {
    let started = Instant::now();
    pump_until(&mut [&mut *app], 10 * SECOND, |apps| {
        notices(apps[0]).iter().any(|notice| {
            matches!(notice, CallNotice::Failed(CallError::Refused { code: c, .. }) if *c == code)
        })
    })
    .then(|| started.elapsed())
}

/// The Flutter-flow peer (tests/firestore/flutter_peer.py) in its venv.
struct FlutterPeer {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl FlutterPeer {
    fn start(project: &str, names: &str, args: &[&str]) -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/firestore");
        let venv = Command::new("bash")
            .arg(format!("{dir}/venv.sh"))
            .output()
            .expect("bash runs");
        assert!(
            venv.status.success(),
            "the Python venv (google-cloud-firestore, aiortc from PyPI) could not be made: \
             needs python3 with venv and pip, and PyPI: {}",
            String::from_utf8_lossy(&venv.stderr)
        );
        let python = String::from_utf8_lossy(&venv.stdout).trim().to_owned();
        let mut child = Command::new(python)
            .arg(format!("{dir}/flutter_peer.py"))
            .args(["--project", project, "--names", names, "--frames", "30"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Flutter-flow peer starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self { child, stdout }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    /// Its report: how many video frames it received from us. It stays in the call
    /// until dropped.
    fn frames_received(&mut self) -> u64 {
        let report: Value = serde_json::from_str(&self.line()).unwrap_or_default();
        report["video_frames"].as_u64().unwrap_or(0)
    }
}

impl Drop for FlutterPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (pumping `app`) until the call document exists: the id is shown a moment
/// before the offer is written.
fn wait_for_call(app: &mut App, emulator: &Emulator, project: &str, call: &str) {
    assert!(
        pump_until(&mut [&mut *app], 5 * SECOND, |_| emulator
            .document(project, call)
            .is_some()),
        "{call} was never written"
    );
}

#[test]
fn meetspace_calls_meetspace_with_video_and_audio_in_the_flutter_layout() {
    let project_id = "meetspace-two-way";
    let (emulator, url, _turn) = project(project_id);
    let mut alice = client_with(&url, "Alice", settings(440.0));
    let mut bob = client_with(&url, "Bob", settings(660.0));
    let room = host_room(&mut alice);
    assert_eq!(room.as_str().len(), 20, "the id is Firestore's auto id");
    wait_for_call(&mut alice, emulator, project_id, &format!("calls/{room}"));
    join_room(&mut bob, &room);
    assert_alice_and_bob_see_and_hear_each_other(&mut alice, &mut bob);

    // The documents, read back independently of our code.
    let call = emulator
        .document(project_id, &format!("calls/{room}"))
        .unwrap();
    let names = field_names(&call);
    for name in ["offer", "answer"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let extensions = ["callerName", "calleeName", "mesh"];
    assert!(
        names
            .iter()
            .all(|name| ["offer", "answer"].contains(name) || extensions.contains(name)),
        "unexpected fields {names:?}"
    );
    assert_description(&fields(&call)["offer"], "offer");
    assert_description(&fields(&call)["answer"], "answer");
    assert_eq!(fields(&call)["callerName"]["stringValue"], "Alice");
    assert_eq!(fields(&call)["calleeName"]["stringValue"], "Bob");
    let offered = emulator.collection(project_id, &format!("calls/{room}/offerCandidates"));
    let answered = emulator.collection(project_id, &format!("calls/{room}/answerCandidates"));
    assert!(assert_candidates(&offered) > 0 && assert_candidates(&answered) > 0);
}

#[test]
fn a_flutter_flow_peer_creates_and_meetspace_joins() {
    let project_id = "flutter-creates";
    let (_emulator, url, _turn) = project(project_id);
    let mut flutter = FlutterPeer::start(project_id, "flutter", &["create"]);
    let created = flutter.line();
    let id = created
        .strip_prefix("call ")
        .unwrap_or_else(|| panic!("expected `call ID`, got {created:?}"));
    let mut bob = client_with(&url, "Bob", settings(660.0));
    join_room(&mut bob, &RoomId::parse(id).unwrap());
    let received = pump_until(&mut [&mut bob], 40 * SECOND, |apps| {
        frames_decoded(apps[0], "Guest") >= 30
    });
    assert!(
        received,
        "meetspace decoded {} frames: {:?}",
        frames_decoded(&mut bob, "Guest"),
        notices(&bob)
    );
    // Keep sending until the peer has its frames.
    let frames = std::thread::scope(|scope| {
        let report = scope.spawn(|| flutter.frames_received());
        pump_until(&mut [&mut bob], 30 * SECOND, |_| report.is_finished());
        report.join().unwrap()
    });
    assert!(
        frames >= 30,
        "the Flutter-flow peer received {frames} frames"
    );

    // The Flutter app shows no second track: a sharer hears so, and the call goes on.
    bob.world_mut()
        .write_message(CallCommand::ShareScreen(Some(ShareTarget::Screen(None))));
    assert!(
        refused_with(&mut bob, ErrorCode::BadMessage).is_some(),
        "the sharer was not told: {:?}",
        notices(&bob)
    );
    let told = notices(&bob).iter().any(|notice| {
        matches!(notice, CallNotice::Failed(CallError::Refused { message, .. })
            if message.contains("Flutter app does not show shared screens"))
    });
    assert!(told, "{:?}", notices(&bob));
    let before = frames_decoded(&mut bob, "Guest");
    assert!(
        pump_until(&mut [&mut bob], 20 * SECOND, |apps| {
            frames_decoded(apps[0], "Guest") >= before + 30
        }),
        "the call stalled after the share: {before} frames, then {}",
        frames_decoded(&mut bob, "Guest")
    );
}

#[test]
fn meetspace_creates_and_a_flutter_flow_peer_joins() {
    let project_id = "flutter-joins";
    let (emulator, url, _turn) = project(project_id);
    let mut alice = client_with(&url, "Alice", settings(440.0));
    let room = host_room(&mut alice);
    wait_for_call(&mut alice, emulator, project_id, &format!("calls/{room}"));
    let mut flutter = FlutterPeer::start(project_id, "flutter", &["join", room.as_str()]);
    let frames = std::thread::scope(|scope| {
        let report = scope.spawn(|| flutter.frames_received());
        pump_until(&mut [&mut alice], 60 * SECOND, |_| report.is_finished());
        report.join().unwrap()
    });
    assert!(
        frames >= 30,
        "the Flutter-flow peer received {frames} frames"
    );
    let received = pump_until(&mut [&mut alice], 30 * SECOND, |apps| {
        frames_decoded(apps[0], "Guest") >= 30
    });
    assert!(
        received,
        "meetspace decoded {} frames: {:?}",
        frames_decoded(&mut alice, "Guest"),
        notices(&alice)
    );
    // A callee that reads only the Flutter layout closes the call to anyone else.
    let call = emulator
        .document(project_id, &format!("calls/{room}"))
        .unwrap();
    assert_eq!(fields(&call)["mesh"]["booleanValue"], false);
}

#[test]
fn the_codelab_names_are_an_option() {
    let project_id = "codelab-names";
    let (emulator, _, _turn) = project(project_id);
    let url = format!("firestore://{project_id}?names=codelab");
    let mut flutter = FlutterPeer::start(project_id, "codelab", &["create"]);
    let created = flutter.line();
    let id = created.strip_prefix("call ").unwrap().to_owned();
    let mut bob = client_with(&url, "Bob", settings(660.0));
    join_room(&mut bob, &RoomId::parse(&id).unwrap());
    let received = pump_until(&mut [&mut bob], 40 * SECOND, |apps| {
        frames_decoded(apps[0], "Guest") >= 30
    });
    assert!(received, "{:?}", notices(&bob));
    let room = emulator
        .document(project_id, &format!("rooms/{id}"))
        .unwrap();
    assert_description(&fields(&room)["answer"], "answer");
    let callee = emulator.collection(project_id, &format!("rooms/{id}/calleeCandidates"));
    assert!(assert_candidates(&callee) > 0);
    assert!(
        emulator
            .document(project_id, &format!("calls/{id}"))
            .is_none()
    );
}

#[test]
fn a_wrong_id_is_room_not_found_at_once() {
    let (_, url, _turn) = project("wrong-call-id");
    let mut bob = client_with(&url, "Bob", settings(660.0));
    join_room(&mut bob, &RoomId::parse("NoSuchCallAaaaaaaaaa").unwrap());
    let after = refused_with(&mut bob, ErrorCode::RoomNotFound);
    assert!(
        after.is_some_and(|after| after < 3 * SECOND),
        "{after:?}: {:?}",
        notices(&bob)
    );
    assert!(pump_until(&mut [&mut bob], 2 * SECOND, |apps| state(
        apps[0]
    )
        == meetspace::call::CallState::Idle));
}

#[test]
fn an_answered_call_is_room_full() {
    let project_id = "answered-call";
    let (emulator, url, _turn) = project(project_id);
    // A call as the Flutter app leaves it once answered.
    let description = |kind: &str| {
        json!({"mapValue": {"fields": {
            "type": {"stringValue": kind},
            "sdp": {"stringValue": "v=0\r\n"}
        }}})
    };
    emulator.put(
        project_id,
        "calls/AnsweredCallAaaaaaaa",
        json!({"offer": description("offer"), "answer": description("answer")}),
    );
    let mut carol = client_with(&url, "Carol", settings(550.0));
    join_room(&mut carol, &RoomId::parse("AnsweredCallAaaaaaaa").unwrap());
    let after = refused_with(&mut carol, ErrorCode::RoomFull);
    assert!(after.is_some(), "{:?}", notices(&carol));
}

#[test]
fn hang_up_marker_and_clean_up() {
    let project_id = "hang-up-and-clean";
    let (emulator, url, _alone) = project_alone(project_id);
    let mut alice = client_with(&url, "Alice", settings(440.0));
    let mut bob = client_with(&url, "Bob", settings(660.0));
    let connected = |alice: &mut App, bob: &mut App| {
        pump_until(&mut [alice, bob], 30 * SECOND, |apps| {
            frames_decoded(apps[0], "Bob") >= 10 && frames_decoded(apps[1], "Alice") >= 10
        })
    };

    // The callee hangs up: the marker is written and the caller sees it within 2 s.
    let room = host_room(&mut alice);
    wait_for_call(&mut alice, emulator, project_id, &format!("calls/{room}"));
    join_room(&mut bob, &room);
    assert!(connected(&mut alice, &mut bob));
    leave(&mut bob);
    let hung_up_at = Instant::now();
    assert!(
        pump_until(&mut [&mut alice, &mut bob], 2 * SECOND, |apps| {
            seen(apps[0], "Bob").is_none()
        }),
        "the caller still shows the callee after {:?}",
        hung_up_at.elapsed()
    );
    println!(
        "the caller saw the hang-up after {:?}",
        hung_up_at.elapsed()
    );
    let call = emulator
        .document(project_id, &format!("calls/{room}"))
        .unwrap();
    assert_eq!(fields(&call)["hungUp"]["stringValue"], "callee");
    leave(&mut alice);
    pump_until(&mut [&mut alice, &mut bob], SECOND, |_| false);

    // The caller hangs up: the callee sees it within 2 s, and every document goes.
    let room = host_room(&mut alice);
    wait_for_call(&mut alice, emulator, project_id, &format!("calls/{room}"));
    join_room(&mut bob, &room);
    assert!(connected(&mut alice, &mut bob));
    leave(&mut alice);
    let hung_up_at = Instant::now();
    assert!(
        pump_until(&mut [&mut alice, &mut bob], 2 * SECOND, |apps| {
            seen(apps[1], "Alice").is_none()
        }),
        "the callee still shows the caller after {:?}",
        hung_up_at.elapsed()
    );
    println!(
        "the callee saw the hang-up after {:?}",
        hung_up_at.elapsed()
    );
    let subcollections = ["offerCandidates", "answerCandidates", "peers", "signals"];
    // Waits for the cleaning; the asserts below say what is left.
    pump_until(&mut [&mut alice, &mut bob], 5 * SECOND, |_| {
        emulator
            .document(project_id, &format!("calls/{room}"))
            .is_none()
            && subcollections.iter().all(|sub| {
                emulator
                    .collection(project_id, &format!("calls/{room}/{sub}"))
                    .is_empty()
            })
    });
    assert!(
        emulator
            .document(project_id, &format!("calls/{room}"))
            .is_none(),
        "the call document is still there"
    );
    for sub in subcollections {
        let left = emulator.collection(project_id, &format!("calls/{room}/{sub}"));
        assert!(left.is_empty(), "{sub} still holds {left:?}");
    }
}

#[test]
fn three_clients_in_one_group_call() {
    let project_id = "group-of-three";
    let (emulator, url, _turn) = project(project_id);
    let mut a = client_with(&url, "A", settings(300.0));
    let mut b = client_with(&url, "B", settings(500.0));
    let mut c = client_with(&url, "C", settings(700.0));
    let room = host_room(&mut a);
    wait_for_call(&mut a, emulator, project_id, &format!("calls/{room}"));
    join_room(&mut b, &room);
    // C joins once B has answered: C is a group member, not the callee.
    assert!(pump_until(&mut [&mut a, &mut b], 10 * SECOND, |_| {
        emulator
            .document(project_id, &format!("calls/{room}"))
            .is_some_and(|call| fields(&call).contains_key("answer"))
    }));
    join_room(&mut c, &room);
    let names = ["A", "B", "C"];
    let mesh = pump_until(&mut [&mut a, &mut b, &mut c], 60 * SECOND, |apps| {
        apps.iter_mut().enumerate().all(|(i, app)| {
            names
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .all(|(_, name)| frames_decoded(app, name) >= 30)
        })
    });
    assert!(
        mesh,
        "not every client received both others' video: A {:?} B {:?} C {:?}; what each \
         heard: A {:?} B {:?} C {:?}",
        participant_names(&mut a),
        participant_names(&mut b),
        participant_names(&mut c),
        notices(&a),
        notices(&b),
        notices(&c)
    );
    let present = emulator.collection(project_id, &format!("calls/{room}/peers"));
    assert_eq!(present.len(), 3, "{present:?}");
}

/// The next message of `link`, waiting at most 10 s.
async fn next_message(
    link: &mut meetspace::signaling::SignalingLink,
) -> meetspace::signaling::protocol::ServerMessage {
    use meetspace::signaling::LinkEvent;
    loop {
        match tokio::time::timeout(10 * SECOND, link.incoming.recv()).await {
            Ok(Some(LinkEvent::Message(message))) => return message,
            Ok(Some(LinkEvent::OfferAhead { .. })) => {}
            other => panic!("the link ended or stalled: {other:?}"),
        }
    }
}

/// Waits for the next signal `link` receives and checks it is `data` from `from`.
async fn expect_signal(link: &mut meetspace::signaling::SignalingLink, from: &str, data: Value) {
    use meetspace::signaling::protocol::ServerMessage;
    loop {
        if let ServerMessage::Signal {
            from: got_from,
            data: got,
        } = next_message(link).await
        {
            assert_eq!((got_from.as_str(), &got), (from, &data));
            return;
        }
    }
}

/// A connection that fails is started over by its offerer (call::driver): in a Firestore
/// call between meetspace peers the second offer, its answer and the candidates after
/// them travel as signal documents, since the call document holds one offer and one
/// answer. (Writing the second offer into the call document failed with "already
/// exists" and ended the call.)
#[test]
fn a_connection_started_over_travels_in_signal_documents() {
    use meetspace::signaling::payload::SignalPayload;
    use meetspace::signaling::protocol::{ClientMessage, DisplayName, PeerId, ServerMessage};
    use meetspace::signaling::{SignalUrl, connect};
    let project_id = "meetspace-start-over";
    let (emulator, url, _turn) = project(project_id);
    let url: SignalUrl = url.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let room = runtime.block_on(async {
        let mut alice = connect(&url, None).await.unwrap();
        let mut bob = connect(&url, None).await.unwrap();
        let send = |link: &meetspace::signaling::SignalingLink, message| {
            link.outgoing.send(message).unwrap();
        };
        let signal = |to: &str, data: Value| ClientMessage::Signal {
            to: PeerId::parse(to).unwrap(),
            data,
        };
        let payload = |payload: SignalPayload| serde_json::to_value(payload).unwrap();
        let offer = |sdp: &str| payload(SignalPayload::Offer { sdp: sdp.into() });
        let answer = |sdp: &str| payload(SignalPayload::Answer { sdp: sdp.into() });
        let candidate = |n: u16| {
            payload(SignalPayload::Candidate {
                candidate: format!(
                    "candidate:{n} 1 udp 2122260223 127.0.0.1 {} typ host",
                    50000 + n
                ),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            })
        };
        send(
            &alice,
            ClientMessage::CreateRoom {
                name: DisplayName::parse("Alice").unwrap(),
                public_title: None,
                passcode: None,
            },
        );
        let ServerMessage::Welcome { room, .. } = next_message(&mut alice).await else {
            panic!("no welcome");
        };
        send(&alice, signal("callee", offer("first offer")));
        send(&alice, signal("callee", candidate(1)));
        // The call document appears with the offer; then Bob answers.
        tokio::time::sleep(Duration::from_millis(500)).await;
        send(
            &bob,
            ClientMessage::JoinRoom {
                room: room.clone(),
                name: DisplayName::parse("Bob").unwrap(),
                passcode: None,
            },
        );
        expect_signal(&mut bob, "caller", offer("first offer")).await;
        expect_signal(&mut bob, "caller", candidate(1)).await;
        send(&bob, signal("caller", answer("first answer")));
        expect_signal(&mut alice, "callee", answer("first answer")).await;

        // Alice's connection failed: she offers afresh, with new candidates.
        send(&alice, signal("callee", offer("second offer")));
        send(&alice, signal("callee", candidate(2)));
        expect_signal(&mut bob, "caller", offer("second offer")).await;
        expect_signal(&mut bob, "caller", candidate(2)).await;
        send(&bob, signal("caller", answer("second answer")));
        send(&bob, signal("caller", candidate(3)));
        expect_signal(&mut alice, "callee", answer("second answer")).await;
        expect_signal(&mut alice, "callee", candidate(3)).await;
        room
    });
    // The call document still holds the first exchange, for the Flutter app.
    let call = emulator
        .document(project_id, &format!("calls/{room}"))
        .unwrap();
    assert_eq!(
        fields(&call)["offer"]["mapValue"]["fields"]["sdp"]["stringValue"],
        "first offer"
    );
}
