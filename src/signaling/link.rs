//! What every signaling backend speaks: the URL it was opened with, the link it hands
//! the call driver, and why opening one failed.

use std::fmt;

use thiserror::Error;
use tokio::sync::mpsc;

#[cfg(not(target_arch = "wasm32"))]
use super::protocol::PeerId;
use super::protocol::{ClientMessage, ServerMessage};
#[cfg(not(target_arch = "wasm32"))]
use super::tls;

/// Where signaling happens: a meetspace server's `ws://` or `wss://` URL, or (with the
/// `firestore` feature, native) `firestore://PROJECT_ID[?names=codelab]`, a Firebase
/// project's Firestore in the original Flutter app's layout.
///
/// A URL without a path (`ws://host:port`) means the server's [`WS_PATH`](super::WS_PATH)
/// endpoint. Parsing it (`str::parse`) checks it against the backends this build has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalUrl(pub(super) url::Url);

impl fmt::Display for SignalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// What arrives from a signaling backend.
#[derive(Debug)]
pub enum LinkEvent {
    /// A message from the server.
    Message(ServerMessage),
    /// Offer to `peer` now, before it is in the room; its arrival comes later as
    /// [`ServerMessage::PeerJoined`]. Only after `welcome`, and only from backends whose
    /// calls start with the creator's offer (Firestore's 1:1 calls, where the offer waits
    /// in the call document for whoever answers it). The WebSocket server never sends it,
    /// and the browser build has no Firestore backend.
    #[cfg(not(target_arch = "wasm32"))]
    OfferAhead {
        /// The peer that will answer.
        peer: PeerId,
    },
    /// The connection ended; nothing more will arrive.
    Closed {
        /// Why, for people.
        reason: String,
    },
}

/// An open signaling connection: send [`ClientMessage`]s, receive [`LinkEvent`]s.
/// Dropping it closes the connection cleanly.
pub struct SignalingLink {
    /// Messages to send, in order.
    pub outgoing: mpsc::UnboundedSender<ClientMessage>,
    /// What the server sent, ending with [`LinkEvent::Closed`].
    pub incoming: mpsc::UnboundedReceiver<LinkEvent>,
}

/// Why a signaling connection could not be opened.
#[derive(Debug, Error)]
pub enum SignalingError {
    /// The server refused the connection, or the handshake failed.
    #[error("cannot reach the signaling server at {url}: {reason}")]
    Unreachable {
        /// The URL tried.
        url: SignalUrl,
        /// What the network said.
        reason: String,
    },
    /// The TLS settings for a `wss://` URL could not be made (a bad `--signal-ca`).
    #[cfg(not(target_arch = "wasm32"))]
    #[error("cannot set up TLS for {url}: {source}")]
    Tls {
        /// The URL tried.
        url: SignalUrl,
        /// What was wrong.
        source: tls::TlsError,
    },
    /// No answer in time.
    #[error("the signaling server at {url} did not answer within {seconds} s")]
    Timeout {
        /// The URL tried.
        url: SignalUrl,
        /// How long we waited.
        seconds: u64,
    },
}
