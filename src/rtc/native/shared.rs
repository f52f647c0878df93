//! What a peer session, its event handler and its tasks share: the event channel, the
//! signaling order, the remote video for keyframe requests, and our copies of the
//! outgoing streams.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use tokio::sync::mpsc::UnboundedSender;
use webrtc::media_stream::track_remote::TrackRemote;

use super::feedback::ReceivedFeedback;
use super::lock;
use super::outbound::Sink;
use crate::rtc::{PeerConnectionState, PeerEvent};
use crate::signaling::payload::SignalPayload;

/// Shortest time between two keyframe requests we send on our own after frame loss.
const AUTO_KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// State shared between a [`PeerSession`], its event handler and its tasks.
pub(super) struct Shared {
    pub(super) events: UnboundedSender<PeerEvent>,
    pub(super) last_state: Mutex<Option<PeerConnectionState>>,
    pub(super) local_signal: Mutex<LocalSignal>,
    /// The remote's video track and SSRC, for keyframe requests.
    pub(super) remote_video: Mutex<Option<(Arc<dyn TrackRemote>, u32)>>,
    /// Our video SSRC, named as the sender of our keyframe requests.
    pub(super) local_video_ssrc: u32,
    /// Our copy of the screen stream while we share it with this peer.
    pub(super) screen_sink: Mutex<Option<Arc<Sink>>>,
    /// The track ids of the remote's screens, from its latest description.
    pub(super) remote_screen_tracks: Mutex<Vec<String>>,
    pub(super) last_auto_keyframe_request: Mutex<Option<Instant>>,
    /// What the peer asked of our video, counted by the [`FeedbackTap`].
    pub(super) received_feedback: Arc<ReceivedFeedback>,
    /// Our copies of the outgoing streams, video then audio; sending starts once connected.
    pub(super) sinks: [Arc<Sink>; 2],
    /// Our copies of the camera's smaller simulcast layers, on a connection that carries
    /// simulcast (they share the video sink's track).
    pub(super) reduced_sinks: Option<[Arc<Sink>; 2]>,
    pub(super) connected: AtomicBool,
}

/// Local candidates are held back until our description has been emitted, so the remote never
/// sees a candidate before the offer/answer it belongs to.
#[derive(Default)]
pub(super) struct LocalSignal {
    /// Whether our offer or answer has gone out.
    pub(super) description_sent: bool,
    /// Candidates gathered before that.
    pub(super) held_candidates: Vec<SignalPayload>,
    /// The first media section's mid, which trickled candidates are attributed to (all media
    /// is bundled on one transport).
    pub(super) first_mid: Option<String>,
}

impl Shared {
    /// Reports an event to the session's owner.
    pub(super) fn emit(&self, event: PeerEvent) {
        // The receiver is gone only when the app no longer cares about this peer.
        let _ = self.events.send(event);
    }

    /// Emits a state change. `Closed` is final: ICE noticing the silence afterwards is not news.
    pub(super) fn emit_state(&self, state: PeerConnectionState) {
        let mut last = lock(&self.last_state);
        if *last != Some(state) && *last != Some(PeerConnectionState::Closed) {
            *last = Some(state);
            self.emit(PeerEvent::State(state));
        }
    }

    /// Whether the session reported `Closed`.
    pub(super) fn is_closed(&self) -> bool {
        *lock(&self.last_state) == Some(PeerConnectionState::Closed)
    }

    /// Marks the connection up or down, for the session and its outgoing streams.
    pub(super) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        for sink in self.sinks.iter().chain(self.reduced_sinks.iter().flatten()) {
            sink.connected.store(connected, Ordering::Relaxed);
        }
        if let Some(sink) = lock(&self.screen_sink).as_ref() {
            sink.connected.store(connected, Ordering::Relaxed);
        }
    }

    /// Emits our offer or answer, then the candidates gathered meanwhile.
    pub(super) fn send_description(&self, payload: SignalPayload) {
        // Emitted under the lock so that no new candidate can overtake the description.
        let mut signal = lock(&self.local_signal);
        signal.description_sent = true;
        self.emit(PeerEvent::Signal(payload));
        for candidate in std::mem::take(&mut signal.held_candidates) {
            self.emit(PeerEvent::Signal(candidate));
        }
    }

    /// Asks the remote for a key frame of its video (RTCP PLI), once its video is known.
    pub(super) async fn send_keyframe_request(&self) {
        let Some((track, media_ssrc)) = lock(&self.remote_video).clone() else {
            return;
        };
        self.send_keyframe_request_on(track.as_ref(), media_ssrc)
            .await;
    }

    /// Asks the remote for a key frame of the stream `media_ssrc` of `track` (RTCP PLI).
    pub(super) async fn send_keyframe_request_on(&self, track: &dyn TrackRemote, media_ssrc: u32) {
        let pli = PictureLossIndication {
            sender_ssrc: self.local_video_ssrc,
            media_ssrc,
        };
        if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
            tracing::debug!("keyframe request not sent: {e}");
        }
    }

    /// Requests a keyframe on our own (after frame loss, or when a stream starts with a delta
    /// frame), at most once per [`AUTO_KEYFRAME_REQUEST_INTERVAL`].
    pub(super) async fn request_keyframe_throttled(&self) {
        let due = {
            let mut last = lock(&self.last_auto_keyframe_request);
            let now = Instant::now();
            let due = last.is_none_or(|t| now.duration_since(t) >= AUTO_KEYFRAME_REQUEST_INTERVAL);
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            self.send_keyframe_request().await;
        }
    }
}
