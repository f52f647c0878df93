//! Property-based fuzzing of everything we parse from the network: the signaling
//! messages (server side: `ClientMessage::decode`; client side: `ServerMessage`), the
//! payloads peers relay to each other (`SignalPayload`, `PeerControl`), and the SDP
//! and ICE candidate lines that pass our validation on their way to the WebRTC
//! stack's own parsers. Nothing may panic.
//!
//! Cases per property: `PROPTEST_CASES` (default 2000, what CI runs). A longer run:
//! `PROPTEST_CASES=200000 cargo test --release --test fuzz_signaling -- --nocapture`.

use std::sync::atomic::{AtomicU64, Ordering};

use meetspace::call::PeerControl;
use meetspace::signaling::payload::SignalPayload;
use meetspace::signaling::protocol::{ClientMessage, ServerMessage};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::Deserialize;
use serde_json::{Value, json};

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 2000;

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs `check` on inputs from `strategy` and prints how many were tried.
fn fuzz<S: Strategy>(what: &str, strategy: S, check: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let tried = AtomicU64::new(0);
    runner()
        .run(&strategy, |input| {
            tried.fetch_add(1, Ordering::Relaxed);
            check(input);
            Ok(())
        })
        .unwrap();
    println!(
        "{what}: {} inputs tried, no panic",
        tried.load(Ordering::Relaxed)
    );
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        "[a-z0-9]{1,70}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Field names of the protocol, and some that are not.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "name",
            "room",
            "peer_id",
            "peers",
            "to",
            "from",
            "data",
            "public_title",
            "passcode",
            "resume_token",
            "code",
            "message",
            "rooms",
            "peer",
            "kind",
            "sdp",
            "candidate",
            "sdpMid",
            "sdpMLineIndex",
            "audio",
            "video",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_]{1,12}",
    ]
}

/// Message types of both directions, and some that are not.
fn message_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "create_room",
            "join_room",
            "resume",
            "signal",
            "leave",
            "list_rooms",
            "welcome",
            "peer_joined",
            "peer_left",
            "peer_away",
            "peer_back",
            "room_list",
            "error",
        ])
        .prop_map(Value::from),
        json_value(),
    ]
}

/// An object with a protocol type and random protocol-ish fields.
fn message_like() -> impl Strategy<Value = String> {
    (
        message_type(),
        prop::collection::btree_map(field_name(), json_value(), 0..7),
    )
        .prop_map(|(kind, fields)| {
            let mut object: serde_json::Map<String, Value> = fields.into_iter().collect();
            object.insert("type".into(), kind);
            Value::Object(object).to_string()
        })
}

/// Valid messages with a few bytes replaced, inserted or cut.
fn mutated_message() -> impl Strategy<Value = String> {
    let valid = prop::sample::select(vec![
        r#"{"type":"join_room","room":"k3m9px2q7rabcdefghjk","name":"Bob","passcode":"x"}"#,
        r#"{"type":"resume","room":"k3m9px2q7rabcdefghjk","peer_id":"c4d8n2w6ze","resume_token":"q8w2e4r6t8y2u4i6o8p2a4s6d8"}"#,
        r#"{"type":"signal","to":"p7x2k9m3qa","data":{"kind":"offer","sdp":"v=0\r\n"}}"#,
        r#"{"type":"welcome","room":"k3m9px2q7rabcdefghjk","peer_id":"c4d8n2w6ze","peers":[{"peer_id":"p7x2k9m3qa","name":"Alice"}],"resume_token":"q8w2e4r6t8y2u4i6o8p2a4s6d8"}"#,
        r#"{"type":"room_list","rooms":[{"room":"k3m9px2q7rabcdefghjk","title":"Standup","participants":3,"capacity":8}]}"#,
        r#"{"type":"error","code":"room_not_found","message":"no"}"#,
    ]);
    (
        valid,
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..6),
    )
        .prop_map(|(valid, edits)| {
            let mut chars: Vec<char> = valid.chars().collect();
            for (at, how, with) in edits {
                let i = at.index(chars.len() + 1);
                match how {
                    0 if i < chars.len() => chars[i] = with,
                    1 => chars.insert(i, with),
                    _ if i < chars.len() => {
                        chars.remove(i);
                    }
                    _ => chars.push(with),
                }
            }
            chars.into_iter().collect()
        })
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,200}", message_like(), mutated_message()]
}

#[test]
fn the_server_parses_any_frame_without_panicking() {
    fuzz("ClientMessage::decode", any_text(), |text| {
        if let Ok(message) = ClientMessage::decode(&text) {
            // What we accept survives a round trip unchanged.
            let again = serde_json::to_string(&message).unwrap();
            assert_eq!(ClientMessage::decode(&again).unwrap(), message);
        }
    });
}

#[test]
fn the_client_parses_any_frame_without_panicking() {
    fuzz("ServerMessage (client side)", any_text(), |text| {
        if let Ok(message) = serde_json::from_str::<ServerMessage>(&text) {
            let again = serde_json::to_string(&message).unwrap();
            assert_eq!(
                serde_json::from_str::<ServerMessage>(&again).unwrap(),
                message
            );
        }
    });
}

/// SDP-like text: `v=0` and lines made of SDP's own vocabulary, or anything.
fn sdp_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "[vosctmab]=[ -~]{0,60}",
        prop::sample::select(vec![
            "o=- 1 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "c=IN IP4 0.0.0.0",
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:111 opus/48000/2",
            "a=mid:0",
            "a=group:BUNDLE 0 1",
            "a=ice-ufrag:abcd",
            "a=ice-pwd:abcdefghijklmnopqrstuv",
            "a=fingerprint:sha-256 00:11",
            "a=setup:actpass",
            "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        ])
        .prop_map(str::to_owned),
        ".{0,30}",
    ];
    (
        prop_oneof![Just("v=0".to_owned()), ".{0,5}"],
        prop::collection::vec(line, 0..25),
        prop_oneof![Just("\r\n"), Just("\n"), Just("\r")],
    )
        .prop_map(|(first, lines, eol)| {
            std::iter::once(first)
                .chain(lines)
                .collect::<Vec<_>>()
                .join(eol)
        })
}

/// Candidate-like lines: the grammar's words in random order and count, or anything.
fn candidate_like() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "candidate:1",
            "1",
            "2",
            "udp",
            "tcp",
            "2130706431",
            "127.0.0.1",
            "::1",
            "5000",
            "65536",
            "-1",
            "typ",
            "host",
            "srflx",
            "relay",
            "raddr",
            "rport",
            "generation",
            "0",
            "tcptype",
            "active",
            "x.local",
            "ufrag",
            "abc",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,12}",
    ];
    prop_oneof![
        prop::collection::vec(word, 0..16).prop_map(|words| words.join(" ")),
        ".{0,80}",
    ]
}

fn payload_like() -> impl Strategy<Value = Value> {
    prop_oneof![
        (prop::sample::select(vec!["offer", "reoffer", "answer", "bye"]), sdp_like())
            .prop_map(|(kind, sdp)| json!({"kind": kind, "sdp": sdp})),
        (candidate_like(), json_value(), json_value()).prop_map(|(candidate, mid, index)| {
            json!({"kind": "candidate", "candidate": candidate, "sdpMid": mid, "sdpMLineIndex": index})
        }),
        (json_value(), json_value())
            .prop_map(|(audio, video)| json!({"kind": "media_state", "audio": audio, "video": video})),
        json_value(),
    ]
}

#[test]
fn peer_payloads_are_validated_and_what_passes_parses_without_panicking() {
    fuzz(
        "SignalPayload + SDP/candidate parsers",
        payload_like(),
        |data| {
            let _ = PeerControl::deserialize(&data);
            let Ok(payload) = SignalPayload::from_json(&data.to_string()) else {
                return;
            };
            match payload {
                SignalPayload::Offer { sdp }
                | SignalPayload::Reoffer { sdp }
                | SignalPayload::Answer { sdp } => {
                    let _ = webrtc::peer_connection::RTCSessionDescription::offer(sdp);
                }
                SignalPayload::Candidate { candidate, .. } => {
                    let line = candidate.strip_prefix("candidate:").unwrap_or(&candidate);
                    let _ = rtc::ice::candidate::unmarshal_candidate(line);
                }
            }
        },
    );
}
