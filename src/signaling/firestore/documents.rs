//! The documents of a call, in the original Flutter app's layout (the call document,
//! its candidates) and meetspace's extension for group calls (presence and addressed
//! signal documents), and how their ids and names read.

use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};

use crate::signaling::protocol::{DisplayName, PeerId};

/// The creator of a call: its peer id on every client.
pub(super) const CALLER: &str = "caller";
/// Whoever answers the creator's offer (the Flutter app's joiner): its peer id.
pub(super) const CALLEE: &str = "callee";
/// Name shown for a caller or callee that wrote none (the Flutter app writes none).
const FLUTTER_PEER_NAME: &str = "Guest";
/// Subcollection of presence documents (group calls).
pub(super) const PEERS: &str = "peers";
/// Subcollection of addressed signal documents (group calls).
pub(super) const SIGNALS: &str = "signals";

/// The collection names a call lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The Flutter app's: `calls`, `offerCandidates`, `answerCandidates`.
    Flutter,
    /// The Firebase WebRTC codelab's: `rooms`, `callerCandidates`, `calleeCandidates`.
    Codelab,
}

impl Layout {
    /// The call documents.
    pub(super) fn calls(self) -> &'static str {
        match self {
            Self::Flutter => "calls",
            Self::Codelab => "rooms",
        }
    }

    /// The caller's candidates.
    pub(super) fn offer_candidates(self) -> &'static str {
        match self {
            Self::Flutter => "offerCandidates",
            Self::Codelab => "callerCandidates",
        }
    }

    /// The callee's candidates.
    pub(super) fn answer_candidates(self) -> &'static str {
        match self {
            Self::Flutter => "answerCandidates",
            Self::Codelab => "calleeCandidates",
        }
    }
}

/// An SDP as the Flutter app stores it: `{type, sdp}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Description {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) sdp: String,
}

/// What we read of a call document (unknown fields are ignored).
#[derive(Debug, Default, Deserialize)]
pub(super) struct CallDoc {
    pub(super) offer: Option<Description>,
    pub(super) answer: Option<Description>,
    #[serde(rename = "callerName")]
    pub(super) caller_name: Option<String>,
    #[serde(rename = "calleeName")]
    pub(super) callee_name: Option<String>,
    /// The hang-up marker: `caller` or `callee`, whoever hung up.
    #[serde(rename = "hungUp")]
    pub(super) hung_up: Option<String>,
    /// Whether meetspace peers beyond the first two may join (group calls).
    pub(super) mesh: Option<bool>,
}

/// The call document as a meetspace caller creates it.
#[derive(Serialize, Deserialize)]
pub(super) struct NewCall {
    pub(super) offer: Description,
    #[serde(rename = "callerName")]
    pub(super) caller_name: String,
    pub(super) mesh: bool,
}

/// The fields a meetspace callee adds with an update, as the Flutter app adds `answer`.
#[derive(Serialize, Deserialize)]
pub(super) struct Answer {
    pub(super) answer: Description,
    #[serde(rename = "calleeName")]
    pub(super) callee_name: String,
}

/// The hang-up marker update.
#[derive(Serialize, Deserialize)]
pub(super) struct HangUp {
    #[serde(rename = "hungUp")]
    pub(super) hung_up: String,
}

/// Clearing `mesh` when a callee that cannot take part in a group answers.
#[derive(Serialize, Deserialize)]
pub(super) struct Mesh {
    pub(super) mesh: bool,
}

/// One ICE candidate as the Flutter app stores it (`RTCIceCandidate.toMap()`).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CandidateDoc {
    pub(super) candidate: String,
    #[serde(rename = "sdpMid", default)]
    pub(super) sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex", default)]
    pub(super) sdp_mline_index: Option<i64>,
}

/// A group-call presence document, `peers/{peerId}`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Presence {
    pub(super) name: String,
    #[serde(rename = "_firestore_created", default, skip_serializing)]
    pub(super) created: Option<FirestoreTimestamp>,
}

/// An addressed signal document, `signals/{auto}`: the WebSocket protocol's `data`, as
/// JSON text.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SignalDoc {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) data: String,
}

/// The last segment of a document's name: its id.
pub(super) fn doc_id(name: &str) -> Option<&str> {
    name.rsplit('/').next().filter(|id| !id.is_empty())
}

/// One of the fixed peer ids, [`CALLER`] or [`CALLEE`].
pub(super) fn peer(id: &str) -> PeerId {
    PeerId::parse(id).expect("fixed peer ids are valid")
}

/// A name as stored, or [`FLUTTER_PEER_NAME`] when there is none (or it is not one).
pub(super) fn display_name(stored: Option<&str>) -> DisplayName {
    stored
        .and_then(|name| DisplayName::parse(name).ok())
        .unwrap_or_else(|| DisplayName::parse(FLUTTER_PEER_NAME).unwrap_or_default())
}

/// A document id like the Firestore SDKs make: 20 letters and digits (119 bits).
pub(super) fn auto_id() -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::with_capacity(20);
    while id.len() < 20 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        // Rejecting 248..=255 keeps every symbol equally likely (248 = 4 * 62).
        id.extend(
            bytes
                .iter()
                .filter(|&&b| b < 248)
                .map(|&b| ALPHABET[usize::from(b % 62)] as char)
                .take(20 - id.len()),
        );
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::protocol::RoomId;

    #[test]
    fn auto_ids_look_like_firestores_and_are_room_ids() {
        let id = auto_id();
        assert_eq!(id.len(), 20);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(id, auto_id());
        assert!(RoomId::parse(&id).is_ok());
    }
}
