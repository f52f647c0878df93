//! Native peer connections, on webrtc-rs 0.21 (`webrtc` over the sans-IO `rtc` core) and tokio.
//!
//! * [`LocalMedia`] owns our outgoing video (VP8) and audio (Opus) streams. Each encoded
//!   frame is packetized once and the same RTP packets go to every peer of the mesh.
//! * [`PeerSession`] is one `RTCPeerConnection` to one remote peer; everything it learns is
//!   reported as [`PeerEvent`]s on the channel given to [`PeerSession::new`].
//!
//! No webrtc-rs type appears in this module's public API. One file per concern: the codecs
//! and interceptors (`codecs`), the outgoing fan-out (`outbound`), the RTCP feedback tap
//! (`feedback`), what a session's parts share (`shared`), the stack's callbacks
//! (`handler`), receiving remote tracks (`receive`), watching a live connection
//! (`monitor`), the pose data channel (`poses`) and the offer/answer negotiation
//! (`session`). VP8 reassembly is the
//! platform-neutral [`super::vp8_depacketizer`].
//!
//! [`PeerEvent`]: super::PeerEvent

use std::sync::Mutex;

use super::RtcError;

mod codecs;
mod feedback;
mod handler;
mod monitor;
mod outbound;
mod poses;
mod receive;
mod session;
mod shared;

pub use outbound::LocalMedia;
pub use session::PeerSession;

/// Maps a webrtc-rs error to [`RtcError::Stack`], saying what we were doing.
fn stack_error(context: &'static str) -> impl FnOnce(webrtc::error::Error) -> RtcError {
    move |e| RtcError::Stack {
        context,
        message: e.to_string(),
    }
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
