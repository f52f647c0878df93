//! Real peer connections over 127.0.0.1: signaling is relayed by the test, as the signaling
//! server would relay it.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use meetspace::rtc::native::{LocalMedia, PeerSession};
use meetspace::rtc::{PeerConnectionState, PeerEvent, Role, RtcConfig, RtcError};
use meetspace::signaling::payload::SignalPayload;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FRAME_DURATION: Duration = Duration::from_millis(33);
const AUDIO_DURATION: Duration = Duration::from_millis(20);

/// One side of a connection as the app would see it: the session and its non-signal events.
struct Side {
    session: Arc<PeerSession>,
    events: UnboundedReceiver<PeerEvent>,
    relay: JoinHandle<()>,
}

impl Side {
    /// Waits for an event matching `pred`, discarding others.
    async fn wait_for(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&PeerEvent) -> bool,
    ) -> Option<PeerEvent> {
        timeout(limit, async {
            while let Some(event) = self.events.recv().await {
                if pred(&event) {
                    return Some(event);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    async fn wait_state(
        &mut self,
        limit: Duration,
        states: &[PeerConnectionState],
    ) -> Option<PeerConnectionState> {
        match self
            .wait_for(
                limit,
                |e| matches!(e, PeerEvent::State(s) if states.contains(s)),
            )
            .await
        {
            Some(PeerEvent::State(s)) => Some(s),
            _ => None,
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Forwards `from`'s signals to `to` and everything else to the returned receiver.
fn relay(
    mut from: UnboundedReceiver<PeerEvent>,
    to: Weak<PeerSession>,
    out: UnboundedSender<PeerEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = from.recv().await {
            match event {
                PeerEvent::Signal(payload) => {
                    // Through JSON, as the signaling server relays it.
                    let payload = SignalPayload::from_json(&payload.to_json()).expect("valid json");
                    if let SignalPayload::Candidate { sdp_mid, .. } = &payload {
                        assert_eq!(
                            sdp_mid.as_deref(),
                            Some("0"),
                            "candidates name the bundled mid"
                        );
                    }
                    let Some(to) = to.upgrade() else { return };
                    if let Err(e) = to.handle_signal(payload).await {
                        let _ = out.send(PeerEvent::Error(format!("relay: {e}")));
                    }
                }
                other => {
                    let _ = out.send(other);
                }
            }
        }
    })
}

/// Creates an offerer session at `offerer` and an answerer at `answerer`, wired together.
async fn connect(offerer: &LocalMedia, answerer: &LocalMedia) -> (Side, Side) {
    let config = RtcConfig::loopback();
    let (a_tx, a_rx) = unbounded_channel();
    let (b_tx, b_rx) = unbounded_channel();
    let b = Arc::new(
        PeerSession::new(&config, answerer, Role::Answerer, b_tx)
            .await
            .expect("answerer session"),
    );
    let a = Arc::new(
        PeerSession::new(&config, offerer, Role::Offerer, a_tx)
            .await
            .expect("offerer session"),
    );
    pair(a, a_rx, b, b_rx)
}

fn pair(
    a: Arc<PeerSession>,
    a_rx: UnboundedReceiver<PeerEvent>,
    b: Arc<PeerSession>,
    b_rx: UnboundedReceiver<PeerEvent>,
) -> (Side, Side) {
    let (a_out, a_events) = unbounded_channel();
    let (b_out, b_events) = unbounded_channel();
    let a_relay = relay(a_rx, Arc::downgrade(&b), a_out);
    let b_relay = relay(b_rx, Arc::downgrade(&a), b_out);
    (
        Side {
            session: a,
            events: a_events,
            relay: a_relay,
        },
        Side {
            session: b,
            events: b_events,
            relay: b_relay,
        },
    )
}

async fn both_connected(a: &mut Side, b: &mut Side) -> Duration {
    let start = Instant::now();
    let (sa, sb) = tokio::join!(
        a.wait_state(
            CONNECT_TIMEOUT,
            &[PeerConnectionState::Connected, PeerConnectionState::Failed]
        ),
        b.wait_state(
            CONNECT_TIMEOUT,
            &[PeerConnectionState::Connected, PeerConnectionState::Failed]
        )
    );
    assert_eq!(
        sa,
        Some(PeerConnectionState::Connected),
        "offerer did not connect"
    );
    assert_eq!(
        sb,
        Some(PeerConnectionState::Connected),
        "answerer did not connect"
    );
    start.elapsed()
}

/// A fake VP8 frame: key frames have the P bit clear. Bytes 1..5 carry the index; the length
/// (1-5 KB) makes most frames span several RTP packets.
fn fake_frame(index: u32) -> Vec<u8> {
    let len = 1000 + (index as usize * 7919) % 4000;
    let mut data: Vec<u8> = (0..len)
        .map(|i| ((i as u32).wrapping_mul(31).wrapping_add(index * 17) % 251) as u8)
        .collect();
    data[0] = if index == 0 { 0x10 } else { 0x11 };
    data[1..5].copy_from_slice(&index.to_be_bytes());
    data
}

fn frame_index(data: &[u8]) -> u32 {
    u32::from_be_bytes(data[1..5].try_into().expect("4 bytes"))
}

async fn send_frames(media: &LocalMedia, range: std::ops::Range<u32>) {
    for i in range {
        media
            .write_video(&fake_frame(i), FRAME_DURATION)
            .await
            .expect("write video");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn collect_frames(
    side: &mut Side,
    want: usize,
    limit: Duration,
) -> Vec<(Vec<u8>, u32, bool)> {
    let mut frames = Vec::new();
    let _ = timeout(limit, async {
        while let Some(event) = side.events.recv().await {
            if let PeerEvent::VideoFrame {
                data,
                rtp_timestamp,
                keyframe,
            } = event
            {
                frames.push((data, rtp_timestamp, keyframe));
                if frames.len() >= want {
                    return;
                }
            }
        }
    })
    .await;
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_exchange_video_and_audio() {
    let la = LocalMedia::new().expect("local media");
    let lb = LocalMedia::new().expect("local media");
    let start = Instant::now();
    let (mut a, mut b) = connect(&la, &lb).await;
    let waited = both_connected(&mut a, &mut b).await;
    eprintln!(
        "connect time on loopback: {:?} (session creation + signaling + ICE/DTLS), of which waiting for Connected: {waited:?}",
        start.elapsed()
    );

    // Audio both ways, then video one way.
    for i in 0..25u8 {
        la.write_audio(&[0xF8, i, 1, 2, 3], AUDIO_DURATION)
            .await
            .expect("audio a");
        lb.write_audio(&[0xF8, i, 4, 5, 6], AUDIO_DURATION)
            .await
            .expect("audio b");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    send_frames(&la, 0..60).await;

    let mut audio_at_b = 0;
    let mut frames = Vec::new();
    let _ = timeout(Duration::from_secs(5), async {
        while let Some(event) = b.events.recv().await {
            match event {
                PeerEvent::AudioPacket { data, .. } => {
                    assert_eq!(&data[2..], &[1, 2, 3]);
                    audio_at_b += 1;
                }
                PeerEvent::VideoFrame {
                    data,
                    rtp_timestamp,
                    keyframe,
                } => {
                    frames.push((data, rtp_timestamp, keyframe));
                    if frames.len() == 60 {
                        return;
                    }
                }
                _ => {}
            }
        }
    })
    .await;
    let audio_at_a = {
        let mut n = 0;
        while let Some(PeerEvent::AudioPacket { data, .. }) = a
            .wait_for(Duration::from_millis(500), |e| {
                matches!(e, PeerEvent::AudioPacket { .. })
            })
            .await
        {
            assert_eq!(&data[2..], &[4, 5, 6]);
            n += 1;
        }
        n
    };
    eprintln!(
        "received {} of 60 frames, audio packets a->b {audio_at_b}/25, b->a {audio_at_a}/25",
        frames.len()
    );
    assert!(frames.len() >= 55, "only {} frames arrived", frames.len());
    let mut last_ts = None;
    for (data, ts, keyframe) in &frames {
        let index = frame_index(data);
        assert_eq!(data, &fake_frame(index), "frame {index} corrupted");
        assert_eq!(*keyframe, index == 0);
        if let Some(last) = last_ts {
            assert_eq!(
                ts.wrapping_sub(last) % 2970,
                0,
                "90 kHz clock, 33 ms frames"
            );
        }
        last_ts = Some(*ts);
    }
    assert!(audio_at_b >= 20, "audio a->b: {audio_at_b}");
    assert!(audio_at_a >= 20, "audio b->a: {audio_at_a}");

    // Stats arrive while connected.
    let stats = a
        .wait_for(Duration::from_secs(5), |e| {
            matches!(e, PeerEvent::Stats { .. })
        })
        .await;
    eprintln!("stats at the sender: {stats:?}");
    assert!(stats.is_some());

    a.session.close().await;
    b.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_of_three_shares_one_encode() {
    let (la, lb, lc) = (
        LocalMedia::new().expect("a"),
        LocalMedia::new().expect("b"),
        LocalMedia::new().expect("c"),
    );
    // Newcomer offers: B joins A, then C joins A and B.
    let (mut b_to_a, mut a_to_b) = connect(&lb, &la).await;
    let (mut c_to_a, mut a_to_c) = connect(&lc, &la).await;
    let (mut c_to_b, mut b_to_c) = connect(&lc, &lb).await;
    both_connected(&mut b_to_a, &mut a_to_b).await;
    both_connected(&mut c_to_a, &mut a_to_c).await;
    both_connected(&mut c_to_b, &mut b_to_c).await;

    // A writes each frame once; both B and C receive it. (Spawned: writes are Send.)
    let writer = la.clone();
    tokio::spawn(async move { send_frames(&writer, 0..10).await })
        .await
        .expect("writer");
    let at_b = collect_frames(&mut b_to_a, 10, Duration::from_secs(5)).await;
    let at_c = collect_frames(&mut c_to_a, 10, Duration::from_secs(5)).await;
    eprintln!(
        "mesh: B got {} and C got {} of A's 10 frames",
        at_b.len(),
        at_c.len()
    );
    assert!(at_b.len() >= 9 && at_c.len() >= 9);
    for (data, _, _) in at_b.iter().chain(&at_c) {
        assert_eq!(data, &fake_frame(frame_index(data)));
    }
    // B and C see the same stream: same SSRC, same RTP timestamps (packetized once).
    let ts_b: Vec<u32> = at_b.iter().map(|f| f.1).collect();
    let ts_c: Vec<u32> = at_c.iter().map(|f| f.1).collect();
    assert_eq!(ts_b[..9], ts_c[..9]);

    // C's frames reach both A and B too, while B's side-link stays quiet about A's.
    send_frames(&lc, 100..105).await;
    assert_eq!(
        collect_frames(&mut a_to_c, 5, Duration::from_secs(5))
            .await
            .len(),
        5
    );
    assert_eq!(
        collect_frames(&mut b_to_c, 5, Duration::from_secs(5))
            .await
            .len(),
        5
    );

    for side in [&a_to_b, &a_to_c, &b_to_a, &b_to_c, &c_to_a, &c_to_b] {
        side.session.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_reach_the_sender() {
    let (la, lb) = (LocalMedia::new().expect("a"), LocalMedia::new().expect("b"));
    let (mut a, mut b) = connect(&la, &lb).await;
    both_connected(&mut a, &mut b).await;

    // A stream that starts with delta frames makes the receiver ask for a key frame itself.
    send_frames(&la, 1..4).await;
    assert_eq!(
        a.wait_for(Duration::from_secs(5), |e| *e
            == PeerEvent::KeyframeRequested)
            .await,
        Some(PeerEvent::KeyframeRequested),
        "no automatic keyframe request"
    );
    send_frames(&la, 0..1).await; // the key frame
    assert_eq!(
        collect_frames(&mut b, 4, Duration::from_secs(5))
            .await
            .len(),
        4
    );
    // Drain anything still queued at the sender.
    while a
        .wait_for(Duration::from_millis(600), |e| {
            *e == PeerEvent::KeyframeRequested
        })
        .await
        .is_some()
    {}

    // An explicit request from the receiver.
    let start = Instant::now();
    let requester = Arc::clone(&b.session);
    tokio::spawn(async move { requester.request_keyframe().await })
        .await
        .expect("request");
    let got = a
        .wait_for(Duration::from_secs(5), |e| {
            *e == PeerEvent::KeyframeRequested
        })
        .await;
    eprintln!("keyframe request arrived after {:?}", start.elapsed());
    assert_eq!(got, Some(PeerEvent::KeyframeRequested));
    a.session.close().await;
    b.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_seen_by_the_remote() {
    let (la, lb) = (LocalMedia::new().expect("a"), LocalMedia::new().expect("b"));
    let (mut a, mut b) = connect(&la, &lb).await;
    both_connected(&mut a, &mut b).await;

    let start = Instant::now();
    // Spawned: the session's futures are Send.
    let closing = Arc::clone(&a.session);
    tokio::spawn(async move { closing.close().await })
        .await
        .expect("close");
    let seen = b
        .wait_state(
            Duration::from_secs(10),
            &[
                PeerConnectionState::Disconnected,
                PeerConnectionState::Failed,
                PeerConnectionState::Closed,
            ],
        )
        .await;
    eprintln!(
        "after close(), the remote saw {seen:?} after {:?}",
        start.elapsed()
    );
    assert_eq!(seen, Some(PeerConnectionState::Closed));
    assert!(start.elapsed() < Duration::from_secs(1));
    // Closed is final: ICE timing out later is not reported.
    assert_eq!(
        b.wait_state(
            Duration::from_secs(5),
            &[
                PeerConnectionState::Disconnected,
                PeerConnectionState::Failed
            ]
        )
        .await,
        None
    );
    // After close, signals are refused and writes are no-ops.
    assert_eq!(
        a.session
            .handle_signal(SignalPayload::Answer { sdp: "v=0".into() })
            .await,
        Err(RtcError::Closed)
    );
    la.write_video(&fake_frame(1), FRAME_DURATION)
        .await
        .expect("no peers is fine");
    b.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_peer_is_detected() {
    // B lives on its own runtime; shutting that runtime down kills B's sockets without any
    // goodbye, as when the remote process dies or its network goes away.
    let remote_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (la, lb) = (LocalMedia::new().expect("a"), LocalMedia::new().expect("b"));
    let config = RtcConfig::loopback();
    let (a_tx, a_rx) = unbounded_channel();
    let (b_tx, b_rx) = unbounded_channel();
    let b = remote_runtime
        .spawn(async move { PeerSession::new(&config, &lb, Role::Answerer, b_tx).await })
        .await
        .expect("join")
        .expect("remote session");
    let b = Arc::new(b);
    let a = Arc::new(
        PeerSession::new(&RtcConfig::loopback(), &la, Role::Offerer, a_tx)
            .await
            .expect("local session"),
    );
    let (mut a_side, mut b_side) = pair(a, a_rx, Arc::clone(&b), b_rx);
    both_connected(&mut a_side, &mut b_side).await;
    send_frames(&la, 0..3).await;

    let start = Instant::now();
    std::mem::forget(b); // no close, no drop: the remote just disappears
    drop(b_side);
    remote_runtime.shutdown_background();
    let disconnected = a_side
        .wait_state(
            Duration::from_secs(15),
            &[
                PeerConnectionState::Disconnected,
                PeerConnectionState::Failed,
            ],
        )
        .await;
    let disconnected_after = start.elapsed();
    let failed = if disconnected == Some(PeerConnectionState::Failed) {
        disconnected
    } else {
        a_side
            .wait_state(Duration::from_secs(15), &[PeerConnectionState::Failed])
            .await
    };
    let failed_after = start.elapsed();
    eprintln!(
        "vanished peer: {disconnected:?} after {disconnected_after:?}, {failed:?} after {failed_after:?}"
    );
    assert_eq!(disconnected, Some(PeerConnectionState::Disconnected));
    assert_eq!(failed, Some(PeerConnectionState::Failed));
    assert!(failed_after < Duration::from_secs(5), "{failed_after:?}");
    a_side.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_without_vp8_is_refused_clearly() {
    let (la, lb) = (LocalMedia::new().expect("a"), LocalMedia::new().expect("b"));
    let config = RtcConfig::loopback();
    let (a_tx, mut a_rx) = unbounded_channel();
    let (b_tx, mut b_rx) = unbounded_channel();
    let _a = PeerSession::new(&config, &la, Role::Offerer, a_tx)
        .await
        .expect("offerer");
    let b = PeerSession::new(&config, &lb, Role::Answerer, b_tx)
        .await
        .expect("answerer");
    let sdp = loop {
        match a_rx.recv().await {
            Some(PeerEvent::Signal(SignalPayload::Offer { sdp })) => break sdp,
            Some(_) => {}
            None => panic!("no offer"),
        }
    };
    // Hand-edit: the video section now lists only H.265 and AV1.
    let edited = sdp
        .replace("VP8/90000", "H265/90000")
        .replace("UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF 96 45")
        .replace(
            "a=rtpmap:96 H265/90000",
            "a=rtpmap:96 H265/90000\r\na=rtpmap:45 AV1/90000",
        );
    assert!(
        edited.contains("AV1/90000") && !edited.contains("VP8"),
        "{edited}"
    );

    let result = timeout(
        Duration::from_secs(5),
        b.handle_signal(SignalPayload::Offer { sdp: edited }),
    )
    .await
    .expect("no hang");
    eprintln!("H.265/AV1-only offer: {result:?}");
    assert!(
        matches!(result, Err(RtcError::NoSupportedCodec { ref media, .. }) if media == "video")
    );
    let message = loop {
        match b_rx.try_recv() {
            Ok(PeerEvent::Error(message)) => break message,
            Ok(_) => {}
            Err(e) => panic!("no PeerEvent::Error: {e}"),
        }
    };
    assert!(
        message.contains("no codec we support (VP8/Opus)"),
        "{message}"
    );
    assert!(message.contains("AV1, H265"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_before_the_offer_are_queued() {
    let (la, lb) = (LocalMedia::new().expect("a"), LocalMedia::new().expect("b"));
    let config = RtcConfig::loopback();
    let (a_tx, mut a_rx) = unbounded_channel();
    let (b_tx, b_rx) = unbounded_channel();
    let a = Arc::new(
        PeerSession::new(&config, &la, Role::Offerer, a_tx)
            .await
            .expect("offerer"),
    );
    let b = Arc::new(
        PeerSession::new(&config, &lb, Role::Answerer, b_tx)
            .await
            .expect("answerer"),
    );
    // Hold the offer back until A's first candidate has been delivered to B.
    let mut offer = None;
    loop {
        match timeout(Duration::from_secs(5), a_rx.recv()).await {
            Ok(Some(PeerEvent::Signal(SignalPayload::Offer { sdp }))) => offer = Some(sdp),
            Ok(Some(PeerEvent::Signal(p @ SignalPayload::Candidate { .. }))) => {
                b.handle_signal(p).await.expect("early candidate is queued");
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("no offer/candidate from the offerer: {other:?}"),
        }
    }
    let sdp = offer.expect("the offer comes before its candidates");
    assert!(!sdp.contains("a=candidate"), "{sdp}");
    // The SDP carries no candidates (trickle), so B can only reach A through the queued one.
    b.handle_signal(SignalPayload::Offer { sdp })
        .await
        .expect("offer applies");
    let (mut a, mut b) = pair(a, a_rx, b, b_rx);
    both_connected(&mut a, &mut b).await;
    a.session.close().await;
    b.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_remote_signals_are_errors_not_panics() {
    let (la, lb) = (LocalMedia::new().expect("a"), LocalMedia::new().expect("b"));
    let config = RtcConfig::loopback();
    let (a_tx, _a_rx) = unbounded_channel();
    let (b_tx, _b_rx) = unbounded_channel();
    let offerer = PeerSession::new(&config, &la, Role::Offerer, a_tx)
        .await
        .expect("offerer");
    let answerer = PeerSession::new(&config, &lb, Role::Answerer, b_tx)
        .await
        .expect("answerer");
    let sdps = [
        "v=0",
        "v=0\r\n",
        "v=0\r\nm=video\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP\r\n",
        "v=0\u{0}\u{ffff}garbage",
    ];
    for sdp in sdps {
        let result = answerer
            .handle_signal(SignalPayload::Offer { sdp: sdp.into() })
            .await;
        assert!(result.is_err(), "{sdp:?} accepted");
        let result = offerer
            .handle_signal(SignalPayload::Answer { sdp: sdp.into() })
            .await;
        assert!(result.is_err(), "{sdp:?} accepted as an answer");
    }
    for candidate in [
        "candidate:garbage",
        "candidate:1 1 udp 1 999.1.1.1 99999 typ host",
        "candidate:1 1 udp 2130706431 abcd.local 5000 typ host",
        "candidate:",
    ] {
        let _ = offerer
            .handle_signal(SignalPayload::Candidate {
                candidate: candidate.into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            })
            .await;
    }
    // Roles are enforced.
    assert!(matches!(
        offerer
            .handle_signal(SignalPayload::Offer {
                sdp: "v=0\r\n".into()
            })
            .await,
        Err(RtcError::UnexpectedSignal { .. })
    ));
}
