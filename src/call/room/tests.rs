//! The room's rules, each driven with scripted inputs and a fake clock.

use super::*;
use crate::signaling::ice_servers::IceServerUrl;
use crate::signaling::protocol::{SpaceArea, SpacePerson, VideoLayer};

/// Our id: between the ids of `LOW` and `HIGH`, for the glare rule.
const OURS: &str = "mmmmmmmmmm";
const LOW: &str = "aaaaaaaaaa";
const HIGH: &str = "zzzzzzzzzz";
const TOKEN: &str = "q8w2e4r6t8y2u4i6o8p2a4s6d8";

fn id(raw: &str) -> PeerId {
    PeerId::parse(raw).expect("a valid peer id")
}

fn info(raw: &str) -> PeerInfo {
    PeerInfo::new(
        id(raw),
        DisplayName::parse(&format!("peer {}", &raw[..1])).expect("a valid name"),
    )
}

fn room_id() -> RoomId {
    RoomId::parse("k3m9px2q7rabcdefghjk").expect("a valid room id")
}

fn turn_server() -> IceServer {
    IceServer {
        urls: vec![
            "turn:100.64.81.1:3478"
                .parse::<IceServerUrl>()
                .expect("a TURN URL"),
        ],
        username: Some("user".to_owned()),
        credential: Some("secret".to_owned()),
    }
}

fn welcome(peers: &[&str]) -> ServerMessage {
    ServerMessage::Welcome {
        room: room_id(),
        peer_id: id(OURS),
        peers: peers.iter().map(|peer| info(peer)).collect(),
        resume_token: ResumeToken::parse(TOKEN).expect("a valid token"),
        ice_servers: Vec::new(),
        sfu: false,
    }
}

fn signal(from: &str, payload: &SignalPayload) -> ServerMessage {
    ServerMessage::Signal {
        from: id(from),
        data: serde_json::to_value(payload).expect("a payload serializes"),
    }
}

fn offer() -> SignalPayload {
    SignalPayload::Offer {
        sdp: "v=0 offer".to_owned(),
    }
}

fn answer() -> SignalPayload {
    SignalPayload::Answer {
        sdp: "v=0 answer".to_owned(),
    }
}

fn candidate(n: usize) -> SignalPayload {
    SignalPayload::Candidate {
        candidate: format!("candidate:{n} 1 udp 1 10.0.0.1 {n} typ host"),
        sdp_mid: Some("0".to_owned()),
        sdp_mline_index: Some(0),
    }
}

/// A room with the clock at `start`.
struct Script {
    room: Room,
    start: Instant,
}

impl Script {
    fn new(ice_servers: Vec<IceServer>) -> Self {
        let start = Instant::now();
        Self {
            room: Room::new(
                RoomSettings {
                    name: DisplayName::parse("me").expect("a valid name"),
                    passcode: None,
                    ice_servers,
                    nearby: NearbySettings::default(),
                    share: None,
                },
                start,
            ),
            start,
        }
    }

    fn at(&self, seconds: u64) -> Instant {
        self.start + Duration::from_secs(seconds)
    }

    /// A message from the server, at the start.
    fn hear(&mut self, message: ServerMessage) {
        self.room.server_message(message, self.start);
    }

    fn actions(&mut self) -> Vec<RoomAction> {
        std::iter::from_fn(|| self.room.poll_action()).collect()
    }

    /// Joins a room where `peers` are, up to our media running; the actions so far
    /// are dropped.
    fn in_call(peers: &[&str]) -> Self {
        Self::in_call_with(peers, Vec::new())
    }

    fn in_call_with(peers: &[&str], ice_servers: Vec<IceServer>) -> Self {
        let mut script = Self::welcomed_with(peers, ice_servers);
        script.room.media_started(false, script.start);
        script.actions();
        script
    }

    /// Joins a room where `peers` are, up to the welcome (our media not started yet);
    /// the actions so far are dropped.
    fn welcomed(peers: &[&str]) -> Self {
        Self::welcomed_with(peers, Vec::new())
    }

    fn welcomed_with(peers: &[&str], ice_servers: Vec<IceServer>) -> Self {
        let mut script = Self::new(ice_servers);
        script
            .room
            .join(room_id(), DisplayName::parse("me").expect("name"));
        script.room.link_opened();
        script.hear(welcome(peers));
        script.actions();
        script
    }

    /// Connects `peer`'s current connection.
    fn connected(&mut self, peer: &str) {
        self.report(peer, PeerConnectionState::Connected, 0);
    }

    /// `peer`'s current connection reports `state` at `seconds`.
    fn report(&mut self, peer: &str, state: PeerConnectionState, seconds: u64) {
        let epoch = self.epoch(peer);
        self.room
            .peer_state(&id(peer), epoch, state, self.at(seconds));
    }

    fn epoch(&self, peer: &str) -> u64 {
        self.room.peers[&id(peer)].epoch
    }
}

/// The actions that match `pattern`, each as `value`.
macro_rules! picked {
    ($actions:expr, $pattern:pat => $value:expr) => {
        $actions
            .iter()
            .filter_map(|action| match action {
                $pattern => Some($value),
                _ => None,
            })
            .collect()
    };
}

fn connects(actions: &[RoomAction]) -> Vec<(PeerId, Role, bool)> {
    picked!(actions, RoomAction::Connect { peer, role, relay_only, .. } => (peer.clone(), *role, *relay_only))
}

fn sent(actions: &[RoomAction]) -> Vec<ClientMessage> {
    picked!(actions, RoomAction::Send(message) => message.clone())
}

fn events(actions: &[RoomAction]) -> Vec<RoomEvent> {
    picked!(actions, RoomAction::Emit(event) => event.clone())
}

fn delivered(actions: &[RoomAction]) -> Vec<(PeerId, u64, SignalPayload)> {
    picked!(actions, RoomAction::Deliver { peer, epoch, payload } => (peer.clone(), *epoch, payload.clone()))
}

fn left(actions: &[RoomAction], peer: &str) -> bool {
    events(actions).contains(&RoomEvent::PeerLeft(id(peer)))
        && actions.contains(&RoomAction::Close(id(peer)))
}

#[test]
fn the_newcomer_starts_its_media_then_offers_to_everyone_there() {
    let mut script = Script::new(Vec::new());
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    assert!(matches!(
        script.actions()[..],
        [RoomAction::OpenLink(ClientMessage::JoinRoom { .. })]
    ));
    script.room.link_opened();
    script.hear(welcome(&[LOW, HIGH]));
    assert_eq!(
        script.actions(),
        vec![
            RoomAction::Send(ClientMessage::WatchSpace),
            RoomAction::UseIceServers(Vec::new()),
            RoomAction::StartMedia
        ]
    );
    script.room.media_started(false, script.start);
    let actions = script.actions();
    assert!(matches!(&actions[1], RoomAction::Joined { peers, .. } if peers.len() == 2));
    assert_eq!(
        connects(&actions),
        vec![
            (id(LOW), Role::Offerer, false),
            (id(HIGH), Role::Offerer, false)
        ]
    );
    // Each connection is told our switches.
    let told: Vec<PeerId> = sent(&actions)
        .into_iter()
        .filter_map(|message| match message {
            ClientMessage::Signal { to, data } => {
                assert_eq!(data["kind"], "media_state");
                Some(to)
            }
            _ => None,
        })
        .collect();
    assert_eq!(told, vec![id(LOW), id(HIGH)]);
}

#[test]
fn those_in_the_room_answer_a_newcomer() {
    let mut script = Script::in_call(&[]);
    script.hear(ServerMessage::PeerJoined { peer: info(LOW) });
    let actions = script.actions();
    assert_eq!(actions[0], RoomAction::PeerJoined(info(LOW)));
    assert_eq!(connects(&actions), vec![(id(LOW), Role::Answerer, false)]);
    script.hear(signal(LOW, &offer()));
    let actions = script.actions();
    assert_eq!(delivered(&actions), vec![(id(LOW), 0, offer())]);
    assert!(
        connects(&actions).is_empty(),
        "the first offer is the offer"
    );
}

#[test]
fn a_signaling_drop_reconnects_with_backoff_resumes_with_the_token_and_flushes_in_order() {
    let mut script = Script::in_call(&[LOW]);
    script.connected(LOW);
    script.room.link_closed("reset".to_owned(), script.at(1));
    let actions = script.actions();
    assert_eq!(
        events(&actions),
        vec![RoomEvent::Reconnecting("reset".to_owned())]
    );
    assert!(matches!(actions[..], [_, RoomAction::Reconnect { .. }]));
    // Signals meanwhile wait.
    let queued: Vec<ClientMessage> = (0..3)
        .map(|n| ClientMessage::Signal {
            to: id(LOW),
            data: serde_json::to_value(candidate(n)).expect("serializes"),
        })
        .collect();
    for message in &queued {
        script.room.send_signal(message.clone());
    }
    assert!(sent(&script.actions()).is_empty());
    // Three attempts fail, each asking for the next after a longer wait.
    let mut waits = Vec::new();
    for _ in 0..3 {
        script.room.reconnect_failed();
        match script.actions()[..] {
            [RoomAction::Reconnect { after }] => waits.push(after),
            ref other => panic!("expected one more attempt, got {other:?}"),
        }
    }
    assert!(waits[2] > waits[0], "the waits grow: {waits:?}");
    // The fourth opens: resume with our token, then the queue once welcomed.
    script.room.link_opened();
    match &sent(&script.actions())[..] {
        [
            ClientMessage::Resume {
                peer_id,
                resume_token,
                room,
                ..
            },
        ] => {
            assert_eq!(peer_id, &id(OURS));
            assert_eq!(
                resume_token,
                &ResumeToken::parse(TOKEN).expect("a valid token")
            );
            assert_eq!(room, &room_id());
        }
        other => panic!("expected a resume, got {other:?}"),
    }
    script.hear(welcome(&[LOW]));
    let actions = script.actions();
    assert_eq!(events(&actions), vec![RoomEvent::Reconnected]);
    let mut expected = vec![ClientMessage::WatchSpace];
    expected.extend(queued);
    assert_eq!(
        sent(&actions),
        expected,
        "the space watched again, then queued signals out in order"
    );
    assert!(
        connects(&actions).is_empty(),
        "a working connection is kept"
    );
}

#[test]
fn the_queue_keeps_the_newest_signals() {
    let mut script = Script::in_call(&[LOW]);
    script.room.link_closed("reset".to_owned(), script.at(1));
    for n in 0..MAX_QUEUED_SIGNALS + 5 {
        script.room.send_signal(ClientMessage::Signal {
            to: id(LOW),
            data: serde_json::json!(n),
        });
    }
    script.room.link_opened();
    script.hear(welcome(&[LOW]));
    let flushed = sent(&script.actions());
    let numbers: Vec<u64> = flushed
        .iter()
        .filter_map(|message| match message {
            ClientMessage::Signal { data, .. } => data.as_u64(),
            _ => None,
        })
        .collect();
    assert_eq!(numbers.len(), MAX_QUEUED_SIGNALS);
    assert_eq!(numbers[0], 5, "the oldest went");
}

#[test]
fn signaling_lost_past_the_resume_limit_ends_the_call() {
    let mut script = Script::in_call(&[LOW]);
    script.connected(LOW);
    script.room.link_closed("reset".to_owned(), script.at(0));
    script.actions();
    assert_eq!(
        script.room.next_deadline(),
        Some(script.at(0) + RESUME_LIMIT)
    );
    script.room.tick(script.at(59));
    assert!(script.actions().is_empty());
    script.room.tick(script.at(60));
    let actions = script.actions();
    assert!(matches!(
        events(&actions)[..],
        [
            RoomEvent::Failed(CallError::ConnectionLost(_)),
            RoomEvent::Left
        ]
    ));
    assert!(actions.contains(&RoomAction::StopMedia));
    assert!(!script.room.in_call());
}

#[test]
fn crossing_offers_one_side_backs_off() {
    // We offered to both; both offer to us at once.
    let mut script = Script::in_call(&[LOW, HIGH]);
    // LOW has the smaller id: it keeps its offer, so we answer it on a fresh connection.
    script.hear(signal(LOW, &offer()));
    let actions = script.actions();
    assert_eq!(
        actions[0],
        RoomAction::Retire {
            peer: id(LOW),
            epoch: 0
        }
    );
    assert_eq!(connects(&actions), vec![(id(LOW), Role::Answerer, false)]);
    let fresh = script.epoch(LOW);
    assert_eq!(delivered(&actions), vec![(id(LOW), fresh, offer())]);
    // HIGH has the larger id: we keep ours and ignore its offer.
    script.hear(signal(HIGH, &offer()));
    assert!(script.actions().is_empty());
    assert_eq!(script.room.peers[&id(HIGH)].role, Role::Offerer);
}

#[test]
fn an_offer_on_a_negotiated_connection_starts_over() {
    let mut script = Script::in_call(&[LOW]);
    script.hear(signal(LOW, &answer()));
    script.connected(LOW);
    script.actions();
    script.hear(signal(LOW, &offer()));
    let actions = script.actions();
    assert_eq!(connects(&actions), vec![(id(LOW), Role::Answerer, false)]);
    assert_eq!(delivered(&actions).len(), 1);
}

#[test]
fn a_reoffer_changes_the_negotiated_connection_instead_of_starting_over() {
    let reoffer = SignalPayload::Reoffer {
        sdp: "v=0 reoffer".to_owned(),
    };
    let mut script = Script::in_call(&[LOW]);
    // Before the first answer there is nothing to change: the reoffer is dropped.
    script.hear(signal(LOW, &reoffer));
    assert!(delivered(&script.actions()).is_empty());
    script.hear(signal(LOW, &answer()));
    script.connected(LOW);
    script.actions();
    let epoch = script.epoch(LOW);
    script.hear(signal(LOW, &reoffer));
    let actions = script.actions();
    assert!(connects(&actions).is_empty(), "{actions:?}");
    assert_eq!(delivered(&actions), vec![(id(LOW), epoch, reoffer)]);
}

#[test]
fn a_failed_connection_is_offered_afresh_and_dropped_when_not_back_in_time() {
    let mut script = Script::in_call(&[LOW]);
    script.connected(LOW);
    let epoch = script.epoch(LOW);
    script.report(LOW, PeerConnectionState::Failed, 0);
    let actions = script.actions();
    assert_eq!(
        connects(&actions),
        vec![(id(LOW), Role::Offerer, false)],
        "the offerer offers a fresh connection (not relay-only: this one connected)"
    );
    // The replaced connection's last words change nothing.
    script
        .room
        .peer_state(&id(LOW), epoch, PeerConnectionState::Closed, script.at(1));
    assert!(script.actions().is_empty());
    assert_eq!(
        script.room.next_deadline(),
        Some(script.at(0) + PEER_RECONNECT_LIMIT)
    );
    script.room.tick(script.at(9));
    assert!(script.actions().is_empty());
    script.room.tick(script.at(10));
    let actions = script.actions();
    assert!(left(&actions, LOW));
    assert!(
        !events(&actions)
            .iter()
            .any(|event| matches!(event, RoomEvent::Failed(_))),
        "a peer that was reached once is not 'no route'"
    );
}

#[test]
fn a_failed_connection_that_comes_back_in_time_stays() {
    let mut script = Script::in_call(&[LOW]);
    script.connected(LOW);
    script.report(LOW, PeerConnectionState::Failed, 0);
    script.actions();
    script.connected(LOW);
    script.room.tick(script.at(30));
    assert!(script.actions().is_empty());
    assert_eq!(script.room.next_deadline(), None);
}

#[test]
fn the_answerer_of_a_failed_connection_offers_too_and_crossing_offers_resolve() {
    // We answered LOW's offer; the connection fails on our side (LOW's may look fine).
    let mut script = Script::in_call(&[]);
    script.hear(ServerMessage::PeerJoined { peer: info(LOW) });
    script.hear(signal(LOW, &offer()));
    script.connected(LOW);
    script.actions();
    script.report(LOW, PeerConnectionState::Failed, 0);
    assert_eq!(
        connects(&script.actions()),
        vec![(id(LOW), Role::Offerer, false)]
    );
    // LOW noticed too and offered: its id is smaller, so we answer its offer.
    script.hear(signal(LOW, &offer()));
    assert_eq!(
        connects(&script.actions()),
        vec![(id(LOW), Role::Answerer, false)]
    );
}

#[test]
fn a_peer_never_reached_is_retried_through_the_relay_then_reported_as_no_route() {
    let mut script = Script::in_call_with(&[LOW], vec![turn_server()]);
    script.report(LOW, PeerConnectionState::Failed, 0);
    assert_eq!(
        connects(&script.actions()),
        vec![(id(LOW), Role::Offerer, true)]
    );
    script.room.tick(script.at(10));
    let actions = script.actions();
    assert!(left(&actions, LOW));
    assert!(
        events(&actions).contains(&RoomEvent::Failed(CallError::NoRoute {
            peer: "peer a".to_owned(),
            through_turn: true
        }))
    );
}

#[test]
fn without_turn_a_retry_uses_every_candidate() {
    let mut script = Script::in_call(&[LOW]);
    script.report(LOW, PeerConnectionState::Failed, 0);
    assert_eq!(
        connects(&script.actions()),
        vec![(id(LOW), Role::Offerer, false)]
    );
}

#[test]
fn a_peer_away_stays_while_its_media_flows_and_goes_without() {
    let mut script = Script::in_call(&[LOW, HIGH]);
    script.connected(LOW);
    script.hear(ServerMessage::PeerAway { peer_id: id(LOW) });
    assert!(script.actions().is_empty(), "connected: kept");
    script.hear(ServerMessage::PeerBack { peer: info(LOW) });
    assert!(!script.room.peers[&id(LOW)].away);
    script.hear(ServerMessage::PeerAway { peer_id: id(HIGH) });
    assert!(left(&script.actions(), HIGH), "never connected: gone");
}

#[test]
fn a_connection_that_fails_while_its_peer_is_away_drops_the_peer() {
    let mut script = Script::in_call(&[LOW]);
    script.connected(LOW);
    script.hear(ServerMessage::PeerAway { peer_id: id(LOW) });
    script.report(LOW, PeerConnectionState::Failed, 0);
    assert!(left(&script.actions(), LOW));
}

#[test]
fn after_resume_we_offer_afresh_where_nothing_works_and_keep_what_does() {
    let mut script = Script::in_call(&[LOW, HIGH]);
    script.connected(LOW);
    script.room.link_closed("restart".to_owned(), script.at(0));
    script.room.link_opened();
    script.actions();
    // The restarted server knows only HIGH so far (LOW has not resumed yet), and a
    // newcomer.
    const NEW: &str = "nnnnnnnnnn";
    script.hear(welcome(&[HIGH, NEW]));
    let actions = script.actions();
    assert_eq!(
        connects(&actions),
        vec![
            (id(HIGH), Role::Offerer, false),
            (id(NEW), Role::Offerer, false)
        ]
    );
    assert!(actions.contains(&RoomAction::PeerJoined(info(NEW))));
    assert!(
        script.room.peers[&id(LOW)].away,
        "unlisted but working: away"
    );
    assert!(!left(&actions, LOW));
}

#[test]
fn an_unlisted_peer_without_a_working_connection_is_dropped_on_resume() {
    let mut script = Script::in_call(&[LOW]);
    script.room.link_closed("restart".to_owned(), script.at(0));
    script.room.link_opened();
    script.hear(welcome(&[]));
    assert!(left(&script.actions(), LOW));
}

#[test]
fn early_candidates_are_bounded_until_the_description() {
    let mut script = Script::in_call(&[]);
    script.hear(ServerMessage::PeerJoined { peer: info(LOW) });
    script.actions();
    for n in 0..MAX_EARLY_CANDIDATES + 3 {
        script.hear(signal(LOW, &candidate(n)));
    }
    assert_eq!(delivered(&script.actions()).len(), MAX_EARLY_CANDIDATES);
    script.hear(signal(LOW, &offer()));
    script.hear(signal(LOW, &candidate(999)));
    assert_eq!(delivered(&script.actions()).len(), 2, "after it: no bound");
}

#[test]
fn invalid_signals_are_ignored() {
    let mut script = Script::in_call(&[LOW]);
    let not_sdp = SignalPayload::Answer {
        sdp: "hello".to_owned(),
    };
    script.hear(signal(LOW, &not_sdp));
    script.hear(ServerMessage::Signal {
        from: id(LOW),
        data: serde_json::json!({"kind": "dance"}),
    });
    assert!(script.actions().is_empty());
}

#[test]
fn media_state_is_told_to_every_peer_and_theirs_reaches_the_app() {
    let mut script = Script::in_call(&[LOW, HIGH]);
    script
        .room
        .command(CallCommand::SetMicrophone(false), script.start);
    let actions = script.actions();
    let muted = MediaState {
        audio: false,
        video: true,
    };
    assert_eq!(actions[0], RoomAction::ApplyMedia(muted));
    assert_eq!(sent(&actions).len(), 2);
    let theirs = PeerControl::MediaState(muted).to_json();
    script.hear(ServerMessage::Signal {
        from: id(LOW),
        data: theirs,
    });
    assert_eq!(
        events(&script.actions()),
        vec![RoomEvent::PeerMedia(id(LOW), muted)]
    );
}

#[test]
fn no_microphone_means_muted() {
    let mut script = Script::new(Vec::new());
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    script.room.link_opened();
    script.hear(welcome(&[]));
    script.room.media_started(true, script.start);
    let muted = MediaState {
        audio: false,
        video: true,
    };
    let actions = script.actions();
    assert!(events(&actions).contains(&RoomEvent::OwnMedia(muted)));
    assert!(actions.contains(&RoomAction::ApplyMedia(muted)));
}

#[test]
fn refusals_before_welcome_end_the_call_and_later_ones_do_not() {
    let mut script = Script::new(Vec::new());
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    script.room.link_opened();
    script.hear(ServerMessage::Error {
        code: ErrorCode::RoomNotFound,
        message: "no such room".to_owned(),
    });
    let actions = script.actions();
    assert!(events(&actions).contains(&RoomEvent::Left));
    assert!(actions.contains(&RoomAction::CloseLink));

    let mut script = Script::in_call(&[LOW]);
    script.hear(ServerMessage::Error {
        code: ErrorCode::BadMessage,
        message: "what".to_owned(),
    });
    assert!(!events(&script.actions()).contains(&RoomEvent::Left));
    script.hear(ServerMessage::Error {
        code: ErrorCode::MessageTooLarge,
        message: "too big".to_owned(),
    });
    assert!(events(&script.actions()).contains(&RoomEvent::Left));
}

#[test]
fn a_server_that_cannot_be_reached_or_drops_before_welcome_ends_the_call() {
    let mut script = Script::new(Vec::new());
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    script.actions();
    script.room.link_failed("refused".to_owned());
    assert_eq!(
        events(&script.actions()),
        vec![
            RoomEvent::Failed(CallError::SignalingUnreachable("refused".to_owned())),
            RoomEvent::Left
        ]
    );
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    script.room.link_opened();
    script.room.link_closed("reset".to_owned(), script.at(0));
    assert!(events(&script.actions()).contains(&RoomEvent::Left));
}

#[test]
fn leaving_tells_the_server_and_releases_everything() {
    let mut script = Script::in_call(&[LOW]);
    script.room.command(CallCommand::Leave, script.start);
    let actions = script.actions();
    assert_eq!(
        actions,
        vec![
            RoomAction::Send(ClientMessage::Leave),
            RoomAction::CloseLink,
            RoomAction::StopMedia,
            RoomAction::Emit(RoomEvent::Left),
        ]
    );
    assert!(!script.room.in_call());
}

#[test]
fn media_that_cannot_start_ends_the_call() {
    let mut script = Script::welcomed(&[LOW]);
    script
        .room
        .media_failed(CallError::Media("no encoder".to_owned()));
    let actions = script.actions();
    assert_eq!(sent(&actions), vec![ClientMessage::Leave]);
    assert!(events(&actions).contains(&RoomEvent::Left));
    assert!(connects(&actions).is_empty());
}

#[test]
fn a_second_call_is_refused_while_one_is_on() {
    let mut script = Script::in_call(&[]);
    script
        .room
        .create(DisplayName::parse("me").expect("name"), None);
    assert_eq!(
        events(&script.actions()),
        vec![RoomEvent::Failed(CallError::AlreadyInCall)]
    );
}

#[test]
fn an_offer_made_ahead_shows_the_peer_when_it_arrives() {
    let mut script = Script::in_call(&[]);
    script.room.offer_ahead(id(LOW), script.start);
    assert_eq!(
        connects(&script.actions()),
        vec![(id(LOW), Role::Offerer, false)]
    );
    script.hear(ServerMessage::PeerJoined { peer: info(LOW) });
    let actions = script.actions();
    assert_eq!(actions, vec![RoomAction::PeerJoined(info(LOW))]);
}

#[test]
fn the_servers_turn_credentials_are_used_unless_we_have_our_own() {
    let mut script = Script::new(Vec::new());
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    script.room.link_opened();
    let ServerMessage::Welcome {
        room,
        peer_id,
        peers,
        resume_token,
        ..
    } = welcome(&[])
    else {
        unreachable!()
    };
    script.hear(ServerMessage::Welcome {
        room,
        peer_id,
        peers,
        resume_token,
        ice_servers: vec![turn_server()],
        sfu: false,
    });
    assert!(
        script
            .actions()
            .contains(&RoomAction::UseIceServers(vec![turn_server()]))
    );
    assert!(script.room.has_turn);

    let mut own = Script::in_call_with(&[], vec![turn_server()]);
    own.room.link_closed("reset".to_owned(), own.at(0));
    own.room.link_opened();
    own.hear(welcome(&[]));
    assert!(
        !own.actions()
            .iter()
            .any(|action| matches!(action, RoomAction::UseIceServers(_)))
    );
}

#[test]
fn a_connection_that_never_connects_counts_as_failed() {
    // An offer the peer refused (no common codec) leaves both connections new.
    let mut script = Script::in_call(&[LOW]);
    assert_eq!(
        script.room.next_deadline(),
        Some(script.start + CONNECT_LIMIT)
    );
    script.room.tick(script.at(29));
    assert!(script.actions().is_empty());
    script.room.tick(script.at(30));
    assert_eq!(
        connects(&script.actions()),
        vec![(id(LOW), Role::Offerer, false)],
        "the offerer tries a fresh connection"
    );
    script.room.tick(script.at(40));
    let actions = script.actions();
    assert!(left(&actions, LOW));
    assert!(
        events(&actions)
            .iter()
            .any(|event| matches!(event, RoomEvent::Failed(CallError::NoRoute { .. })))
    );
}

#[test]
fn a_negotiation_that_moves_on_is_given_time() {
    // A slow page: the answer comes 20 s after our offer, then nothing more.
    let mut script = Script::in_call(&[LOW]);
    script
        .room
        .server_message(signal(LOW, &answer()), script.at(20));
    script.actions();
    assert_eq!(
        script.room.next_deadline(),
        Some(script.at(20) + CONNECT_LIMIT)
    );
    script.room.tick(script.at(49));
    assert!(connects(&script.actions()).is_empty());
    script.report(LOW, PeerConnectionState::Connecting, 45);
    script.room.tick(script.at(74));
    assert!(connects(&script.actions()).is_empty(), "still moving on");
    script.room.tick(script.at(75));
    assert_eq!(
        connects(&script.actions()),
        vec![(id(LOW), Role::Offerer, false)],
        "stuck for the limit: a fresh connection"
    );
}

#[test]
fn a_closed_connection_is_no_goodbye() {
    // The peer retired its connection to start over; its fresh offer comes after.
    let mut script = Script::in_call(&[]);
    script.hear(ServerMessage::PeerJoined { peer: info(LOW) });
    script.hear(signal(LOW, &offer()));
    script.connected(LOW);
    script.actions();
    script.report(LOW, PeerConnectionState::Closed, 1);
    assert!(!left(&script.actions(), LOW), "the panel stays");
    script.hear(signal(LOW, &offer()));
    assert_eq!(
        connects(&script.actions()),
        vec![(id(LOW), Role::Answerer, false)]
    );
    // Gone for good only when the server says so.
    script.hear(ServerMessage::PeerLeft { peer_id: id(LOW) });
    assert!(left(&script.actions(), LOW));
}

#[test]
fn a_dropped_peer_still_in_the_room_that_offers_again_is_shown_and_answered() {
    let mut script = Script::in_call(&[LOW]);
    script.connected(LOW);
    script.report(LOW, PeerConnectionState::Failed, 0);
    script.room.tick(script.at(10));
    assert!(left(&script.actions(), LOW));
    script.hear(signal(LOW, &offer()));
    let actions = script.actions();
    assert!(actions.contains(&RoomAction::PeerJoined(info(LOW))));
    assert_eq!(connects(&actions), vec![(id(LOW), Role::Answerer, false)]);
    assert_eq!(delivered(&actions).len(), 1);
    // A peer that left the room is not brought back by a late offer.
    script.hear(ServerMessage::PeerLeft { peer_id: id(LOW) });
    script.actions();
    script.hear(signal(LOW, &offer()));
    assert!(script.actions().is_empty());
}

// --- the lobby ------------------------------------------------------------------------

fn standing(x: f32) -> Pose {
    Pose::new(x, 0.0, 0.0, false).expect("a valid pose")
}

fn ready(from: &str, ready: bool) -> ServerMessage {
    ServerMessage::Signal {
        from: id(from),
        data: PeerControl::Nearby { ready, pose: None }.to_json(),
    }
}

fn readiness_told(actions: &[RoomAction]) -> Vec<(PeerId, bool)> {
    let signals: Vec<(PeerId, serde_json::Value)> = picked!(actions, RoomAction::Send(ClientMessage::Signal { to, data }) => (to.clone(), data.clone()));
    signals
        .into_iter()
        .filter_map(|(to, data)| match PeerControl::deserialize(&data) {
            Ok(PeerControl::Nearby { ready, .. }) => Some((to, ready)),
            _ => None,
        })
        .collect()
}

impl Script {
    /// In the lobby standing at x = 0, with `peers` standing at the given x.
    fn in_lobby(peers: &[(&str, f32)]) -> Self {
        Self::in_lobby_with(peers, NearbySettings::default())
    }

    /// [`Script::in_lobby`] with these nearby settings.
    fn in_lobby_with(peers: &[(&str, f32)], nearby: NearbySettings) -> Self {
        let mut script = Self::new(Vec::new());
        script.room.settings.nearby = nearby;
        script
            .room
            .command(CallCommand::SetPose(standing(0.0)), script.start);
        script
            .room
            .join(RoomId::lobby(), DisplayName::parse("me").expect("name"));
        script.room.link_opened();
        let peers = peers
            .iter()
            .map(|(peer, x)| PeerInfo {
                pose: Some(standing(*x)),
                ..info(peer)
            })
            .collect();
        script.hear(ServerMessage::Welcome {
            room: RoomId::lobby(),
            peer_id: id(OURS),
            peers,
            resume_token: ResumeToken::parse(TOKEN).expect("a valid token"),
            ice_servers: Vec::new(),
            sfu: false,
        });
        script
    }

    /// `peer` is now standing at `x`, at `seconds`.
    fn moves(&mut self, peer: &str, x: f32, seconds: u64) {
        self.room.server_message(
            ServerMessage::PeerPose {
                peer_id: id(peer),
                pose: standing(x),
            },
            self.at(seconds),
        );
    }
}

#[test]
fn the_lobby_shows_everyone_at_once_and_connects_only_to_the_near() {
    let mut script = Script::in_lobby(&[(HIGH, 3.0), (LOW, 20.0)]);
    let actions = script.actions();
    let shown: Vec<usize> = picked!(actions, RoomAction::Joined { peers, .. } => peers.len());
    assert_eq!(shown, vec![2], "{actions:?}");
    assert!(sent(&actions).contains(&ClientMessage::Pose {
        pose: standing(0.0)
    }));
    assert!(events(&actions).contains(&RoomEvent::Nearby {
        peer: id(HIGH),
        distance_m: 3.0,
        near: true
    }));
    // Someone near: our media starts, and once it runs we say we are ready.
    assert!(actions.contains(&RoomAction::StartMedia));
    assert!(connects(&actions).is_empty());
    script.room.media_started(false, script.start);
    let actions = script.actions();
    assert_eq!(readiness_told(&actions), vec![(id(HIGH), true)]);
    assert!(
        connects(&actions).is_empty(),
        "not before the peer is ready"
    );
    // Ours is the smaller id: we offer once the peer is ready too.
    script.hear(ready(HIGH, true));
    assert_eq!(
        connects(&script.actions()),
        vec![(id(HIGH), Role::Offerer, false)]
    );
    // The far one offers: not wanted, not answered.
    script.hear(signal(LOW, &offer()));
    let actions = script.actions();
    assert!(connects(&actions).is_empty() && delivered(&actions).is_empty());
}

#[test]
fn a_ready_peer_is_taken_where_its_message_says_it_stands() {
    // The server last put the peer 9 m away; its readiness says it walked up to 3 m.
    let mut script = Script::in_lobby(&[(HIGH, 9.0)]);
    script.actions();
    script.hear(ServerMessage::Signal {
        from: id(HIGH),
        data: PeerControl::Nearby {
            ready: true,
            pose: Some(standing(3.0)),
        }
        .to_json(),
    });
    let actions = script.actions();
    assert!(
        actions.contains(&RoomAction::Emit(RoomEvent::PeerPose(
            id(HIGH),
            standing(3.0)
        ))),
        "{actions:?}"
    );
    assert!(actions.contains(&RoomAction::StartMedia), "{actions:?}");
    // Once our media runs we are ready too, saying where we stand, and offer.
    script.room.media_started(false, script.start);
    let actions = script.actions();
    assert_eq!(readiness_told(&actions), vec![(id(HIGH), true)]);
    assert_eq!(connects(&actions), vec![(id(HIGH), Role::Offerer, false)]);
    let ours: Vec<serde_json::Value> =
        picked!(actions, RoomAction::Send(ClientMessage::Signal { data, .. }) => data.clone());
    assert_eq!(
        PeerControl::deserialize(&ours[0]).ok(),
        Some(PeerControl::Nearby {
            ready: true,
            pose: Some(standing(0.0))
        })
    );
}

#[test]
fn walking_away_closes_the_media_and_keeps_the_person_then_media_stops() {
    let mut script = Script::in_lobby(&[(LOW, 4.0)]);
    script.room.media_started(false, script.start);
    script.hear(ready(LOW, true));
    script.actions();
    // The smaller id offers: we answer.
    script.hear(signal(LOW, &offer()));
    assert_eq!(
        connects(&script.actions()),
        vec![(id(LOW), Role::Answerer, false)]
    );
    script.connected(LOW);
    // Within the margin: kept. Past earshot + margin: closed, told, still shown.
    script.moves(LOW, 6.5, 1);
    assert_eq!(
        script.actions(),
        vec![RoomAction::Emit(RoomEvent::PeerPose(
            id(LOW),
            standing(6.5)
        ))]
    );
    script.moves(LOW, 7.5, 2);
    let actions = script.actions();
    assert!(actions.contains(&RoomAction::Close(id(LOW))));
    assert_eq!(readiness_told(&actions), vec![(id(LOW), false)]);
    assert!(!events(&actions).contains(&RoomEvent::PeerLeft(id(LOW))));
    // A failure report of the closed connection starts nothing.
    script.room.tick(script.at(3));
    assert!(connects(&script.actions()).is_empty());
    // Alone for ALONE_LIMIT: the camera and microphone are released.
    assert_eq!(
        script.room.next_deadline(),
        Some(script.at(2) + ALONE_LIMIT)
    );
    script.room.tick(script.at(2) + ALONE_LIMIT);
    assert!(script.actions().contains(&RoomAction::StopMedia));
    // Coming back near starts them again.
    script.moves(LOW, 1.0, 10);
    assert!(script.actions().contains(&RoomAction::StartMedia));
    // Leaving the lobby: the person goes.
    script.hear(ServerMessage::PeerLeft { peer_id: id(LOW) });
    assert!(events(&script.actions()).contains(&RoomEvent::PeerLeft(id(LOW))));
}

#[test]
fn poses_go_to_the_server_at_most_five_a_second() {
    let mut script = Script::in_lobby(&[]);
    script.actions();
    let start = script.start;
    let at_ms = |ms: u64| start + Duration::from_millis(ms);
    script
        .room
        .command(CallCommand::SetPose(standing(1.0)), at_ms(50));
    assert!(
        sent(&script.actions()).is_empty(),
        "too soon after the first"
    );
    assert_eq!(script.room.next_deadline(), Some(at_ms(200)));
    script
        .room
        .command(CallCommand::SetPose(standing(2.0)), at_ms(120));
    script.room.tick(at_ms(200));
    assert_eq!(
        sent(&script.actions()),
        vec![ClientMessage::Pose {
            pose: standing(2.0)
        }],
        "the newest one goes when due"
    );
}

#[test]
fn a_room_is_entered_from_the_lobby_without_the_call_ending() {
    let mut script = Script::in_lobby(&[(HIGH, 3.0)]);
    script.room.media_started(false, script.start);
    script.actions();
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    let actions = script.actions();
    assert_eq!(actions[0], RoomAction::Send(ClientMessage::Leave));
    assert!(actions.contains(&RoomAction::StopMedia));
    assert!(matches!(
        actions.last(),
        Some(RoomAction::OpenLink(ClientMessage::JoinRoom { .. }))
    ));
    assert!(!events(&actions).contains(&RoomEvent::Left), "{actions:?}");
    assert!(!events(&actions).contains(&RoomEvent::Failed(CallError::AlreadyInCall)));
}

#[test]
fn at_most_the_nearest_few_are_wanted() {
    let one = NearbySettings {
        max_connections: 1,
        ..NearbySettings::default()
    };
    let mut script = Script::in_lobby_with(&[(LOW, 2.0), (HIGH, 1.0)], one);
    script.room.media_started(false, script.start);
    assert_eq!(readiness_told(&script.actions()), vec![(id(HIGH), true)]);
}

#[test]
fn in_a_room_poses_travel_too_and_a_data_channel_pose_outranks_the_servers() {
    let mut script = Script::in_call(&[LOW]);
    let start = script.start;
    let at_ms = |ms: u64| start + Duration::from_millis(ms);
    script
        .room
        .command(CallCommand::SetPose(standing(61.0)), at_ms(10));
    let actions = script.actions();
    assert!(actions.contains(&RoomAction::SharePose(standing(61.0))));
    assert_eq!(
        sent(&actions),
        vec![ClientMessage::Pose {
            pose: standing(61.0)
        }]
    );

    // Their pose through the server is shown, until their data channel speaks.
    script.room.server_message(
        ServerMessage::PeerPose {
            peer_id: id(LOW),
            pose: standing(59.0),
        },
        at_ms(20),
    );
    script.room.peer_pose(&id(LOW), standing(58.0), at_ms(30));
    script.room.server_message(
        ServerMessage::PeerPose {
            peer_id: id(LOW),
            pose: standing(57.0),
        },
        at_ms(40),
    );
    let shown: Vec<Pose> = picked!(events(&script.actions()),
        RoomEvent::PeerPose(_, pose) => *pose);
    assert_eq!(shown, vec![standing(59.0), standing(58.0)]);

    // Leaving forgets where we stood: the next place hears of it anew.
    script.room.leave();
    script.actions();
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    script.room.link_opened();
    script.hear(welcome(&[]));
    assert_eq!(sent(&script.actions()), vec![ClientMessage::WatchSpace]);
}

#[test]
fn a_raised_hand_is_told_now_and_in_each_room_entered_and_theirs_reaches_the_app() {
    let mut script = Script::new(Vec::new());
    script
        .room
        .command(CallCommand::RaiseHand(true), script.start);
    assert!(sent(&script.actions()).is_empty(), "not in a room yet");
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    script.room.link_opened();
    script.hear(welcome(&[LOW]));
    assert_eq!(
        sent(&script.actions()),
        vec![
            ClientMessage::WatchSpace,
            ClientMessage::Hand { raised: true }
        ]
    );
    script
        .room
        .command(CallCommand::RaiseHand(false), script.start);
    assert_eq!(
        sent(&script.actions()),
        vec![ClientMessage::Hand { raised: false }]
    );

    script.room.media_started(false, script.start);
    script.actions();
    for peer in [LOW, HIGH] {
        script.hear(ServerMessage::PeerHand {
            peer_id: id(peer),
            raised: true,
        });
    }
    assert_eq!(
        events(&script.actions()),
        vec![RoomEvent::PeerHand(id(LOW), true)],
        "only from someone in the room"
    );
}

#[test]
fn news_of_the_space_reaches_the_app() {
    let mut script = Script::welcomed(&[]);
    let person = SpacePerson {
        peer_id: id(LOW),
        name: DisplayName::parse("Ann").expect("name"),
        area: SpaceArea::Lobby,
    };
    script.hear(ServerMessage::Space {
        people: vec![person.clone()],
        total: 3,
    });
    script.hear(ServerMessage::PersonEntered {
        person: person.clone(),
    });
    script.hear(ServerMessage::PersonLeft { peer_id: id(LOW) });
    assert_eq!(
        events(&script.actions()),
        vec![
            RoomEvent::Space(SpaceNews::Everyone {
                people: vec![person.clone()],
                total: 3
            }),
            RoomEvent::Space(SpaceNews::Entered(person)),
            RoomEvent::Space(SpaceNews::Left(id(LOW))),
        ]
    );
}

#[test]
fn someone_who_joins_while_our_media_starts_is_shown_and_connected_once_it_runs() {
    // In a mesh: we wait for their offer, as for anyone who joins.
    let mut script = Script::welcomed(&[LOW]);
    script.hear(ServerMessage::PeerJoined { peer: info(HIGH) });
    script.hear(ServerMessage::PeerJoined {
        peer: info("gggggggggg"),
    });
    script.hear(ServerMessage::PeerLeft {
        peer_id: id("gggggggggg"),
    });
    assert!(
        connects(&script.actions()).is_empty(),
        "our media is not running yet"
    );
    script.room.media_started(false, script.start);
    let actions = script.actions();
    assert_eq!(
        connects(&actions),
        vec![
            (id(LOW), Role::Offerer, false),
            (id(HIGH), Role::Answerer, false)
        ],
        "{actions:?}"
    );
    assert!(actions.contains(&RoomAction::PeerJoined(info(HIGH))));

    // On the SFU: shown, and the SFU brings their media.
    let mut script = Script::welcomed(&[LOW]);
    script.hear(ServerMessage::SfuStarted);
    script.hear(ServerMessage::PeerJoined { peer: info(HIGH) });
    script.actions();
    script.room.media_started(false, script.start);
    let actions = script.actions();
    assert!(connects(&actions).is_empty(), "{actions:?}");
    assert!(actions.contains(&RoomAction::PeerJoined(info(HIGH))));
    assert!(actions.contains(&RoomAction::OpenSfu {
        feed: None,
        epoch: 0
    }));
    // A mesh offer from them is not answered: nothing would retire that connection.
    script.hear(signal(HIGH, &offer()));
    assert!(connects(&script.actions()).is_empty());
}

#[test]
fn a_share_waits_for_the_wall_and_stops_when_someone_takes_it_over() {
    let mut script = Script::in_call(&[LOW]);
    let screen = ShareTarget::Screen(None);
    let claim = |take_over| ClientMessage::Share {
        sharing: true,
        take_over,
    };
    script
        .room
        .command(CallCommand::ShareScreen(Some(screen.clone())), script.start);
    assert_eq!(
        script.actions(),
        vec![RoomAction::Send(claim(false))],
        "the share waits for the wall"
    );

    script.hear(ServerMessage::ShareRefused {
        sharers: vec![id(LOW)],
    });
    assert_eq!(
        events(&script.actions()),
        vec![RoomEvent::ShareRefused(vec![info(LOW).name])],
        "the user is asked whether to take over"
    );
    script
        .room
        .command(CallCommand::TakeOverScreen, script.start);
    assert_eq!(script.actions(), vec![RoomAction::Send(claim(true))]);
    script.hear(ServerMessage::Sharers {
        peers: vec![id(OURS)],
    });
    assert_eq!(
        script.actions(),
        vec![RoomAction::ShareScreen(Some(screen.clone()))]
    );

    script.hear(ServerMessage::Sharers {
        peers: vec![id(LOW)],
    });
    let actions = script.actions();
    assert!(actions.contains(&RoomAction::ShareScreen(None)));
    assert_eq!(
        events(&actions),
        vec![RoomEvent::ShareTakenOver(Some(info(LOW).name))]
    );
    script
        .room
        .command(CallCommand::ShareScreen(Some(screen.clone())), script.start);
    script.hear(ServerMessage::Sharers {
        peers: vec![id(OURS)],
    });
    script.actions();
    script
        .room
        .command(CallCommand::ShareScreen(None), script.start);
    assert_eq!(
        script.actions(),
        vec![
            RoomAction::Send(ClientMessage::Share {
                sharing: false,
                take_over: false,
            }),
            RoomAction::ShareScreen(None)
        ],
        "stopping gives the wall back"
    );
}

#[test]
fn a_share_asked_for_before_the_call_claims_the_wall_on_arrival() {
    let mut script = Script::new(Vec::new());
    script.room.command(
        CallCommand::ShareScreen(Some(ShareTarget::Screen(None))),
        script.start,
    );
    assert!(script.actions().is_empty(), "not in a room yet");
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    script.room.link_opened();
    script.hear(welcome(&[LOW]));
    assert!(sent(&script.actions()).contains(&ClientMessage::Share {
        sharing: true,
        take_over: false
    }));
}

#[test]
fn a_failed_stream_from_the_sfu_is_asked_for_again_and_the_fresh_offer_replaces_it() {
    let mut script = Script::in_call(&[LOW, HIGH]);
    script.hear(ServerMessage::SfuStarted);
    script.actions();
    let sfu_offer = || ServerMessage::SfuSignal {
        feed: Some(id(LOW)),
        data: serde_json::to_value(offer()).expect("a payload serializes"),
    };
    let downstream = |actions: &[RoomAction]| -> u64 {
        let opened: Vec<u64> =
            picked!(actions, RoomAction::OpenSfu { feed: Some(_), epoch } => *epoch);
        match opened.as_slice() {
            [epoch] => *epoch,
            other => panic!("expected one downstream to open, got {other:?}: {actions:?}"),
        }
    };
    script.hear(sfu_offer());
    let first = downstream(&script.actions());
    script.room.sfu_state(
        Some(&id(LOW)),
        first,
        PeerConnectionState::Failed,
        script.start,
    );
    assert_eq!(
        script.actions(),
        vec![RoomAction::Send(ClientMessage::SfuResubscribe {
            feed: id(LOW)
        })]
    );
    script.hear(sfu_offer());
    let second = downstream(&script.actions());
    assert_ne!(second, first, "a fresh downstream");
    // The replaced stream's last words are not news.
    script.room.sfu_state(
        Some(&id(LOW)),
        first,
        PeerConnectionState::Closed,
        script.start,
    );
    assert!(script.actions().is_empty());
    // Once LOW has left, its stream's end is only logged.
    script.hear(ServerMessage::PeerLeft { peer_id: id(LOW) });
    script.actions();
    script.room.sfu_state(
        Some(&id(LOW)),
        second,
        PeerConnectionState::Failed,
        script.start,
    );
    assert!(!sent(&script.actions()).contains(&ClientMessage::SfuResubscribe { feed: id(LOW) }));
}

#[test]
fn the_layer_of_someone_s_camera_follows_how_large_they_appear_with_a_margin_at_each_limit() {
    use super::sfu::layer_for_height;
    use VideoLayer::{Large, Medium, Small};
    assert_eq!(layer_for_height(90.0, Large), Small);
    assert_eq!(layer_for_height(520.0, Small), Large);
    assert_eq!(layer_for_height(200.0, Small), Medium);
    // Within 10 % of a limit (150 and 300 pixels) the layer stays as it is.
    assert_eq!(layer_for_height(160.0, Small), Small);
    assert_eq!(layer_for_height(140.0, Medium), Medium);
    assert_eq!(layer_for_height(310.0, Medium), Medium);
    assert_eq!(layer_for_height(290.0, Large), Large);
    assert_eq!(layer_for_height(170.0, Small), Medium);
    assert_eq!(layer_for_height(130.0, Medium), Small);
    // Out of view: the smallest.
    assert_eq!(layer_for_height(0.0, Large), Small);
}

#[test]
fn on_the_sfu_each_connected_downstream_is_asked_for_the_layer_its_size_calls_for_once() {
    let mut script = Script::in_call(&[LOW, HIGH]);
    script.hear(ServerMessage::SfuStarted);
    script.actions();
    let sfu_offer = ServerMessage::SfuSignal {
        feed: Some(id(LOW)),
        data: serde_json::to_value(offer()).expect("a payload serializes"),
    };
    script.hear(sfu_offer);
    let opened: Vec<u64> =
        picked!(&script.actions(), RoomAction::OpenSfu { feed: Some(_), epoch } => *epoch);
    let epoch = opened[0];
    let show = |script: &mut Script, pixels: f32| {
        let sizes = vec![(id(LOW), pixels), (id(HIGH), pixels)];
        script
            .room
            .command(CallCommand::ShowSizes(sizes), script.start);
        sent(&script.actions())
    };
    // Not connected yet: nothing is asked; once it connects, the small layer is.
    assert!(show(&mut script, 90.0).is_empty());
    script.room.sfu_state(
        Some(&id(LOW)),
        epoch,
        PeerConnectionState::Connected,
        script.start,
    );
    let layer = |layer| ClientMessage::SfuLayer {
        feed: id(LOW),
        layer,
    };
    assert!(sent(&script.actions()).contains(&layer(VideoLayer::Small)));
    // The same size again asks nothing; walking up asks for the large layer (HIGH has
    // no downstream: nothing about it).
    assert!(show(&mut script, 95.0).is_empty());
    assert_eq!(show(&mut script, 520.0), vec![layer(VideoLayer::Large)]);
}

#[test]
fn a_room_that_moves_to_the_sfu_publishes_once_and_lets_the_mesh_go_as_the_sfu_takes_over() {
    let mut script = Script::in_call(&[LOW, HIGH]);
    script.connected(LOW);
    script.connected(HIGH);
    script.hear(ServerMessage::SfuStarted);
    let actions = script.actions();
    let opened: Vec<Option<PeerId>> =
        picked!(actions, RoomAction::OpenSfu { feed, .. } => feed.clone());
    assert_eq!(opened, vec![None], "our upstream, once: {actions:?}");
    assert_eq!(
        script.room.upstreams(),
        (false, 2),
        "the mesh still carries us"
    );
    let upstream_epoch = script
        .room
        .sfu
        .as_ref()
        .and_then(|sfu| sfu.upstream_epoch());
    let upstream_epoch = upstream_epoch.expect("an upstream");
    script.room.sfu_state(
        None,
        upstream_epoch,
        PeerConnectionState::Connected,
        script.start,
    );
    assert_eq!(script.room.upstreams(), (true, 3));

    // The SFU offers LOW's media: a downstream opens and takes the offer.
    let sfu_offer = ServerMessage::SfuSignal {
        feed: Some(id(LOW)),
        data: serde_json::to_value(offer()).expect("a payload serializes"),
    };
    script.hear(sfu_offer);
    let actions = script.actions();
    let epoch = match actions.as_slice() {
        [
            RoomAction::OpenSfu {
                feed: Some(owner),
                epoch,
            },
            RoomAction::DeliverSfu {
                feed: Some(to),
                epoch: delivered_to,
                payload: SignalPayload::Offer { .. },
            },
        ] if *owner == id(LOW) && *to == id(LOW) && epoch == delivered_to => *epoch,
        other => panic!("expected a downstream of LOW taking the offer: {other:?}"),
    };
    // Until it connects the mesh to LOW stays; then we tell LOW, and the mesh goes
    // once LOW says the SFU brings it our media too (it carries media both ways). LOW's
    // mesh offers are not answered then.
    let mesh_epoch = script.epoch(LOW);
    assert!(script.actions().is_empty());
    script.room.sfu_state(
        Some(&id(LOW)),
        epoch,
        PeerConnectionState::Connected,
        script.start,
    );
    assert_eq!(
        script.actions(),
        vec![RoomAction::Send(ClientMessage::Signal {
            to: id(LOW),
            data: PeerControl::SfuCarries.to_json(),
        })]
    );
    assert_eq!(script.room.connection_count(), 3, "the mesh to LOW stays");
    script.hear(ServerMessage::Signal {
        from: id(LOW),
        data: PeerControl::SfuCarries.to_json(),
    });
    assert_eq!(
        script.actions(),
        vec![RoomAction::Retire {
            peer: id(LOW),
            epoch: mesh_epoch,
        }]
    );
    assert_eq!(
        script.room.upstreams(),
        (true, 2),
        "HIGH's mesh and the upstream"
    );
    assert_eq!(
        script.room.connection_count(),
        2,
        "HIGH's mesh and LOW's downstream"
    );
    script.hear(signal(LOW, &offer()));
    assert!(
        connects(&script.actions()).is_empty(),
        "a mesh offer from a peer the SFU brings is not answered"
    );

    // A newcomer is shown without a mesh connection; LOW leaving closes its downstream.
    script.hear(ServerMessage::PeerJoined {
        peer: info("newcomer00"),
    });
    let actions = script.actions();
    assert!(connects(&actions).is_empty(), "{actions:?}");
    assert!(
        matches!(actions.as_slice(), [RoomAction::PeerJoined(_)]),
        "{actions:?}"
    );
    script.hear(ServerMessage::PeerLeft { peer_id: id(LOW) });
    let actions = script.actions();
    assert!(
        actions.contains(&RoomAction::CloseSfu {
            feed: Some(id(LOW))
        }),
        "{actions:?}"
    );
    assert!(
        actions.contains(&RoomAction::Emit(RoomEvent::PeerLeft(id(LOW)))),
        "{actions:?}"
    );
}

#[test]
fn told_again_that_the_room_is_on_the_sfu_it_closes_its_sfu_streams_and_publishes_afresh() {
    let mut script = Script::in_call(&[LOW]);
    script.connected(LOW);
    script.hear(ServerMessage::SfuStarted);
    let upstream_epoch = |script: &Script| {
        script
            .room
            .sfu
            .as_ref()
            .and_then(|sfu| sfu.upstream_epoch())
            .expect("an upstream")
    };
    let first = upstream_epoch(&script);
    let low_offer = || ServerMessage::SfuSignal {
        feed: Some(id(LOW)),
        data: serde_json::to_value(offer()).expect("a payload serializes"),
    };
    script.hear(low_offer());
    script.actions();

    // A resume keeps them: its welcome says the room is on the SFU, as we know.
    script.room.link_closed("reset".to_owned(), script.at(1));
    script.room.link_opened();
    script.actions();
    script.hear(ServerMessage::Welcome {
        room: room_id(),
        peer_id: id(OURS),
        peers: vec![info(LOW)],
        resume_token: ResumeToken::parse(TOKEN).expect("a valid token"),
        ice_servers: Vec::new(),
        sfu: true,
    });
    let actions = script.actions();
    assert!(
        !actions.iter().any(|action| matches!(
            action,
            RoomAction::CloseSfu { .. } | RoomAction::OpenSfu { .. }
        )),
        "{actions:?}"
    );

    // The SFU instance that held the room went: the server says it again.
    script.hear(ServerMessage::SfuStarted);
    let actions = script.actions();
    assert_eq!(
        actions.first(),
        Some(&RoomAction::CloseSfu { feed: None }),
        "{actions:?}"
    );
    assert!(
        actions.contains(&RoomAction::CloseSfu {
            feed: Some(id(LOW))
        }),
        "{actions:?}"
    );
    let opened: Vec<Option<PeerId>> =
        picked!(actions, RoomAction::OpenSfu { feed, .. } => feed.clone());
    assert_eq!(opened, vec![None], "published afresh: {actions:?}");
    assert_ne!(upstream_epoch(&script), first);
    assert!(
        !actions
            .iter()
            .any(|action| matches!(action, RoomAction::Retire { .. })),
        "the mesh to LOW stays until the new downstream connects: {actions:?}"
    );
    // LOW's media comes again, from the room on the other instance.
    script.hear(low_offer());
    let actions = script.actions();
    let opened: Vec<Option<PeerId>> =
        picked!(actions, RoomAction::OpenSfu { feed, .. } => feed.clone());
    assert_eq!(opened, vec![Some(id(LOW))]);
}

/// Joins a room on the SFU where `peers` are, up to the welcome (our media not started
/// yet); the actions so far are dropped.
fn welcomed_onto_sfu(peers: &[&str]) -> Script {
    let mut script = Script::new(Vec::new());
    script
        .room
        .join(room_id(), DisplayName::parse("me").expect("name"));
    script.room.link_opened();
    script.hear(ServerMessage::Welcome {
        room: room_id(),
        peer_id: id(OURS),
        peers: peers.iter().map(|peer| info(peer)).collect(),
        resume_token: ResumeToken::parse(TOKEN).expect("a valid token"),
        ice_servers: Vec::new(),
        sfu: true,
    });
    script.actions();
    script
}

#[test]
fn a_newcomer_welcomed_onto_the_sfu_offers_to_nobody_and_publishes() {
    let mut script = welcomed_onto_sfu(&[LOW, HIGH]);
    script.room.media_started(false, script.start);
    let actions = script.actions();
    assert!(connects(&actions).is_empty(), "{actions:?}");
    let opened: Vec<Option<PeerId>> =
        picked!(actions, RoomAction::OpenSfu { feed, .. } => feed.clone());
    assert_eq!(opened, vec![None]);
}

#[test]
fn a_member_the_sfu_carries_stays_while_away_and_its_downstream_closes_last() {
    // The mesh connection to LOW never connected; the SFU brings LOW.
    let mut script = Script::in_call(&[LOW]);
    script.hear(ServerMessage::SfuStarted);
    script.hear(ServerMessage::SfuSignal {
        feed: Some(id(LOW)),
        data: serde_json::to_value(offer()).expect("a payload serializes"),
    });
    let actions = script.actions();
    let epochs: Vec<u64> = picked!(actions, RoomAction::OpenSfu { feed: Some(_), epoch } => *epoch);
    script.room.sfu_state(
        Some(&id(LOW)),
        epochs[0],
        PeerConnectionState::Connected,
        script.start,
    );
    script.actions();

    script.hear(ServerMessage::PeerAway { peer_id: id(LOW) });
    let actions = script.actions();
    assert!(
        actions.is_empty(),
        "away, but the SFU still brings LOW: {actions:?}"
    );

    // Leaving closes both; the downstream last, so that its figures stand.
    script.hear(ServerMessage::PeerLeft { peer_id: id(LOW) });
    let actions = script.actions();
    let closed: Vec<&RoomAction> = actions
        .iter()
        .filter(|action| matches!(action, RoomAction::Close(_) | RoomAction::CloseSfu { .. }))
        .collect();
    assert_eq!(
        closed,
        vec![
            &RoomAction::Close(id(LOW)),
            &RoomAction::CloseSfu {
                feed: Some(id(LOW))
            }
        ]
    );
    assert!(left(&actions, LOW), "{actions:?}");
}

/// Welcomed onto the SFU with `peers` there, our media running, our upstream and a
/// downstream of each connected; the actions so far are dropped.
fn on_sfu_with(peers: &[&str]) -> Script {
    let mut script = welcomed_onto_sfu(peers);
    script.room.media_started(false, script.start);
    for owner in peers {
        script.hear(ServerMessage::SfuSignal {
            feed: Some(id(owner)),
            data: serde_json::to_value(offer()).expect("a payload serializes"),
        });
    }
    let actions = script.actions();
    let epochs: Vec<(Option<PeerId>, u64)> =
        picked!(actions, RoomAction::OpenSfu { feed, epoch } => (feed.clone(), *epoch));
    for (feed, epoch) in &epochs {
        script.room.sfu_state(
            feed.as_ref(),
            *epoch,
            PeerConnectionState::Connected,
            script.start,
        );
    }
    script.actions();
    script
}

#[test]
fn a_room_back_to_a_mesh_connects_peer_to_peer_and_leaves_the_sfu_once_the_mesh_carries_all() {
    let mut script = on_sfu_with(&[LOW, HIGH]);
    assert_eq!(script.room.upstreams(), (true, 1));

    // Back to a mesh: the smaller id offers (we to HIGH; LOW to us).
    script.hear(ServerMessage::SfuEnded);
    let actions = script.actions();
    assert_eq!(
        connects(&actions),
        vec![
            (id(LOW), Role::Answerer, false),
            (id(HIGH), Role::Offerer, false)
        ]
    );
    assert!(
        !actions
            .iter()
            .any(|action| matches!(action, RoomAction::CloseSfu { .. })),
        "the SFU carries on until the mesh does: {actions:?}"
    );
    script.hear(signal(LOW, &offer()));
    let actions = script.actions();
    assert_eq!(delivered(&actions).len(), 1, "LOW's offer is answered");

    // Each member's stream through the SFU goes as its mesh connects; the SFU with
    // the last one.
    script.connected(LOW);
    assert_eq!(
        script.actions(),
        vec![RoomAction::CloseSfu {
            feed: Some(id(LOW))
        }]
    );
    script.connected(HIGH);
    assert_eq!(
        script.actions(),
        vec![
            RoomAction::CloseSfu {
                feed: Some(id(HIGH))
            },
            RoomAction::CloseSfu { feed: None },
            RoomAction::Send(ClientMessage::SfuLeave),
        ]
    );
    assert!(!script.room.on_sfu());
    assert_eq!(script.room.upstreams(), (false, 2));
}

#[test]
fn going_back_to_a_mesh_a_member_who_leaves_counts_as_meshed() {
    let mut script = on_sfu_with(&[LOW, HIGH]);
    script.hear(ServerMessage::SfuEnded);
    script.actions();
    script.connected(LOW);
    script.actions();
    script.hear(ServerMessage::PeerLeft { peer_id: id(HIGH) });
    let actions = script.actions();
    assert!(left(&actions, HIGH), "{actions:?}");
    assert_eq!(
        actions.last(),
        Some(&RoomAction::Send(ClientMessage::SfuLeave)),
        "the mesh carries everyone left: {actions:?}"
    );
    assert!(!script.room.on_sfu());
}
