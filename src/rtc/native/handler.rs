//! The stack's callbacks for one peer connection, turned into [`PeerEvent`]s.

use std::sync::Arc;

use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

use super::lock;
use super::receive::receive_track;
use super::shared::Shared;
use crate::rtc::{PeerConnectionState, PeerEvent};
use crate::signaling::payload::SignalPayload;

/// The stack's connection state as ours; `None` for states we do not report.
fn map_state(state: RTCPeerConnectionState) -> Option<PeerConnectionState> {
    Some(match state {
        RTCPeerConnectionState::New => PeerConnectionState::New,
        RTCPeerConnectionState::Connecting => PeerConnectionState::Connecting,
        RTCPeerConnectionState::Connected => PeerConnectionState::Connected,
        RTCPeerConnectionState::Disconnected => PeerConnectionState::Disconnected,
        RTCPeerConnectionState::Failed => PeerConnectionState::Failed,
        RTCPeerConnectionState::Closed => PeerConnectionState::Closed,
        _ => return None,
    })
}

/// Receives the stack's callbacks. They run on the connection's driver task, so nothing here
/// waits on the connection itself: longer work is spawned.
pub(super) struct Handler {
    /// What the handler reports through.
    pub(super) shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let init = match event.candidate.to_json() {
            Ok(init) => init,
            Err(e) => {
                tracing::warn!("cannot serialize a local ICE candidate: {e}");
                return;
            }
        };
        let mut signal = lock(&self.shared.local_signal);
        let payload = SignalPayload::Candidate {
            candidate: init.candidate,
            sdp_mid: signal.first_mid.clone().or(init.sdp_mid),
            sdp_mline_index: Some(0),
        };
        if signal.description_sent {
            self.shared.emit(PeerEvent::Signal(payload));
        } else {
            signal.held_candidates.push(payload);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let Some(state) = map_state(state) else {
            return;
        };
        if self.shared.is_closed() {
            return;
        }
        // Flags first, so that writes made on seeing `Connected` go out.
        match state {
            PeerConnectionState::Connected => self.shared.set_connected(true),
            PeerConnectionState::Failed | PeerConnectionState::Closed => {
                self.shared.set_connected(false);
            }
            _ => {}
        }
        self.shared.emit_state(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = Arc::clone(&self.shared);
        tokio::spawn(receive_track(shared, track));
    }
}
