//! Signaling: how peers find each other and exchange offers, answers and candidates.
//!
//! One message protocol ([`protocol`]), a server ([`server`]), and client backends
//! that all hand the call driver the same [`SignalingLink`]: the driver never knows
//! which backend carries its messages.

#[cfg(all(feature = "firestore", not(target_arch = "wasm32")))]
pub mod firestore;
pub mod ice_servers;
mod link;
pub mod payload;
pub mod protocol;
pub mod reconnect;
#[cfg(not(target_arch = "wasm32"))]
pub mod server;
#[cfg(not(target_arch = "wasm32"))]
pub mod tls;
#[cfg(not(target_arch = "wasm32"))]
pub mod turn_credentials;
#[cfg(not(target_arch = "wasm32"))]
mod ws_native;
#[cfg(target_arch = "wasm32")]
mod ws_web;

use std::path::Path;
use std::str::FromStr;

use thiserror::Error;

pub use link::{LinkEvent, SignalUrl, SignalingError, SignalingLink};
use protocol::{ClientMessage, RoomSummary, ServerMessage};
#[cfg(target_arch = "wasm32")]
pub use ws_web::took_page_socket;

/// Scheme of Firestore signaling URLs.
const FIRESTORE_SCHEME: &str = "firestore";

/// Path of the WebSocket endpoint on a meetspace signaling server.
pub const WS_PATH: &str = "/ws";

/// Why a `--signal` value was refused.
#[derive(Debug, Error)]
pub enum SignalUrlError {
    /// Not a URL at all.
    #[error("not a URL ({0}); expected ws://HOST:PORT")]
    Malformed(#[from] url::ParseError),
    /// A URL of another scheme.
    #[error("unsupported scheme {0:?}; expected ws://, wss:// or firestore://")]
    Scheme(String),
    /// A `firestore://` URL in a build without Firestore signaling.
    #[error("this build has no Firestore signaling (build it with the cargo feature firestore)")]
    FirestoreNotBuilt,
    /// A `firestore://` URL that names no project, or has an unknown option.
    #[cfg(all(feature = "firestore", not(target_arch = "wasm32")))]
    #[error(transparent)]
    Firestore(#[from] firestore::FirestoreUrlError),
    /// A URL without a host.
    #[error("the URL has no host; expected ws://HOST:PORT")]
    NoHost,
}

impl FromStr for SignalUrl {
    type Err = SignalUrlError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let mut url = url::Url::parse(raw.trim())?;
        if url.scheme() == FIRESTORE_SCHEME {
            #[cfg(all(feature = "firestore", not(target_arch = "wasm32")))]
            {
                firestore::FirestoreTarget::from_url(&url)?;
                return Ok(Self(url));
            }
            #[cfg(not(all(feature = "firestore", not(target_arch = "wasm32"))))]
            return Err(SignalUrlError::FirestoreNotBuilt);
        }
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(SignalUrlError::Scheme(url.scheme().to_owned()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(SignalUrlError::NoHost);
        }
        if url.path().is_empty() || url.path() == "/" {
            url.set_path(WS_PATH);
        }
        Ok(Self(url))
    }
}

/// Opens a signaling connection to `url`: a Firestore project (native, with the
/// `firestore` feature) or a meetspace server, where a `wss://` server must show a
/// certificate that the platform's roots or the CA certificates in `extra_ca` (PEM)
/// vouch for. In the browser, the browser's own trust store decides and `extra_ca` is
/// not used.
pub async fn connect(
    url: &SignalUrl,
    extra_ca: Option<&Path>,
) -> Result<SignalingLink, SignalingError> {
    #[cfg(all(feature = "firestore", not(target_arch = "wasm32")))]
    if url.0.scheme() == FIRESTORE_SCHEME {
        return firestore::connect(url).await;
    }
    #[cfg(not(target_arch = "wasm32"))]
    return ws_native::connect(url, extra_ca).await;
    #[cfg(target_arch = "wasm32")]
    {
        let _ = extra_ca;
        ws_web::connect(url).await
    }
}

/// Asks the server at `url` for its public rooms over a connection of its own (`extra_ca`
/// as for [`connect`]); `None` when it cannot be reached or closes first. The caller
/// bounds the wait.
pub async fn list_public_rooms(
    url: &SignalUrl,
    extra_ca: Option<&Path>,
) -> Option<Vec<RoomSummary>> {
    let mut link = connect(url, extra_ca).await.ok()?;
    link.outgoing.send(ClientMessage::ListRooms).ok()?;
    while let Some(event) = link.incoming.recv().await {
        if let LinkEvent::Message(ServerMessage::RoomList { rooms }) = event {
            return Some(rooms);
        }
    }
    None
}
