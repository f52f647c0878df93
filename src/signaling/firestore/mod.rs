//! Firestore signaling (native): calls in the original Flutter app's documents, so a
//! meetspace client and that app can call each other, plus meetspace's own extension
//! for group calls. `docs/signaling.md` ("Firestore") describes every document.
//!
//! The backend speaks the same [`SignalingLink`] as the WebSocket client, translating
//! between the two flows:
//! - **create**: `welcome` (as `caller`), then [`LinkEvent::OfferAhead`] for `callee`:
//!   the driver offers at once, and the offer becomes the call document, as the Flutter
//!   app writes it; whoever answers arrives as `peer_joined` with the answer.
//! - **join**: `welcome` (as `callee`, nobody listed), `peer_joined` for the caller and
//!   the stored offer as its `signal`: the driver answers, in the Flutter direction.
//! - **group** (a third meetspace client and more): presence documents and addressed
//!   signal documents carry the WebSocket protocol's mesh, newcomer offering.
//!
//! The document shapes are in `documents.rs`, making, joining and leaving calls in
//! `rooms.rs`, the offer/answer exchange in `exchange.rs` and the listeners in
//! `listen.rs`; this file holds the session that plays them.

mod documents;
mod exchange;
mod listen;
mod rooms;

use std::collections::HashSet;
use std::time::Duration;

use firestore::{
    FirestoreDb, FirestoreDbOptions, FirestoreListenEvent, FirestoreListener,
    FirestoreMemListenStateStorage, FirestoreTimestamp, ParentPathBuilder,
};
use thiserror::Error;
use tokio::sync::mpsc;

pub use self::documents::Layout;
use self::exchange::Exchange;
use super::link::{LinkEvent, SignalUrl, SignalingError, SignalingLink};
use super::protocol::{ClientMessage, DisplayName, ErrorCode, PeerId, ServerMessage};

/// How long one Firestore request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where Firestore calls live: a Google Cloud project and the collection names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirestoreTarget {
    /// The project id.
    pub project: String,
    /// The collection names.
    pub layout: Layout,
}

/// Why a `firestore://` URL was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FirestoreUrlError {
    /// Not a Google Cloud project id.
    #[error(
        "{0:?} is not a Firebase project id (6 to 30 lowercase letters, digits and hyphens, starting with a letter); expected firestore://PROJECT_ID"
    )]
    Project(String),
    /// A query other than `names=flutter` or `names=codelab`.
    #[error("unknown option {0:?}; the only one is names=flutter (default) or names=codelab")]
    Option(String),
}

impl FirestoreTarget {
    /// Reads `firestore://PROJECT_ID[?names=flutter|codelab]`.
    pub fn from_url(url: &url::Url) -> Result<Self, FirestoreUrlError> {
        let project = url.host_str().unwrap_or_default().to_owned();
        let valid = (6..=30).contains(&project.len())
            && project.starts_with(|c: char| c.is_ascii_lowercase())
            && !project.ends_with('-')
            && project
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid || url.port().is_some() || !matches!(url.path(), "" | "/") {
            return Err(FirestoreUrlError::Project(
                url.as_str().trim_start_matches("firestore://").to_owned(),
            ));
        }
        let mut layout = Layout::Flutter;
        for (key, value) in url.query_pairs() {
            layout = match (key.as_ref(), value.as_ref()) {
                ("names", "flutter") => Layout::Flutter,
                ("names", "codelab") => Layout::Codelab,
                _ => return Err(FirestoreUrlError::Option(format!("{key}={value}"))),
            };
        }
        Ok(Self { project, layout })
    }
}

/// Which part of a call this client plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Wrote the offer.
    Caller,
    /// Wrote the answer.
    Callee,
    /// Joined a group call after the answer, through presence and signal documents.
    Member,
}

/// Opens a Firestore "connection": a client of the project's database (the emulator at
/// `FIRESTORE_EMULATOR_HOST` when that is set, else Firestore with the Application
/// Default Credentials) and the task that plays the calls.
pub(super) async fn connect(url: &SignalUrl) -> Result<SignalingLink, SignalingError> {
    let target =
        FirestoreTarget::from_url(&url.0).map_err(|error| SignalingError::Unreachable {
            url: url.clone(),
            reason: error.to_string(),
        })?;
    let options =
        FirestoreDbOptions::new(target.project.clone()).with_request_timeout(REQUEST_TIMEOUT);
    let db =
        FirestoreDb::with_options(options)
            .await
            .map_err(|error| SignalingError::Unreachable {
                url: url.clone(),
                reason: error.to_string(),
            })?;
    let (outgoing, to_send) = mpsc::unbounded_channel();
    let (received, incoming) = mpsc::unbounded_channel();
    let session = Session {
        db,
        layout: target.layout,
        received,
        call: None,
    };
    tokio::spawn(session.run(to_send));
    Ok(SignalingLink { outgoing, incoming })
}

/// Why a Firestore request failed.
#[derive(Debug, Error)]
enum CallStoreError {
    #[error("Firestore: {0}")]
    Firestore(#[from] firestore::errors::FirestoreError),
    #[error("the call document has no offer")]
    NoOffer,
}

/// The call this client is in.
struct Call {
    id: String,
    part: Part,
    self_id: PeerId,
    name: DisplayName,
    /// Where the call's subcollections hang.
    path: ParentPathBuilder,
    /// Whether the group-call documents are in use.
    mesh: bool,
    /// When our presence document was made: presence documents made later are newcomers.
    joined_at: Option<FirestoreTimestamp>,
    /// The peers announced to the driver and not yet gone.
    known: HashSet<PeerId>,
    /// The peers that left: signals to them are dropped.
    left: HashSet<PeerId>,
    /// Candidate and signal documents already passed on (a listener may replay).
    seen: HashSet<String>,
    /// How far our side of the 1:1 exchange in the Flutter layout has gone.
    exchange: Exchange,
    listener: Option<FirestoreListener<FirestoreDb, FirestoreMemListenStateStorage>>,
}

struct Session {
    db: FirestoreDb,
    layout: Layout,
    received: mpsc::UnboundedSender<LinkEvent>,
    call: Option<Call>,
}

impl Session {
    async fn run(mut self, mut to_send: mpsc::UnboundedReceiver<ClientMessage>) {
        let (changes_tx, mut changes) = mpsc::unbounded_channel();
        loop {
            tokio::select! {
                message = to_send.recv() => match message {
                    Some(message) => self.on_client_message(message, &changes_tx).await,
                    None => break,
                },
                Some(change) = changes.recv() => self.on_change(change).await,
            }
        }
        self.hang_up().await;
    }

    fn deliver(&self, message: ServerMessage) {
        let _ = self.received.send(LinkEvent::Message(message));
    }

    fn refuse(&self, code: ErrorCode, message: String) {
        self.deliver(ServerMessage::Error { code, message });
    }

    async fn on_client_message(
        &mut self,
        message: ClientMessage,
        changes: &mpsc::UnboundedSender<FirestoreListenEvent>,
    ) {
        let outcome = match message {
            ClientMessage::CreateRoom {
                passcode: Some(_), ..
            }
            | ClientMessage::JoinRoom {
                passcode: Some(_), ..
            } => {
                self.refuse(
                    ErrorCode::BadMessage,
                    "room passcodes need a meetspace signaling server; a Firestore call is \
                     protected by its id alone"
                        .into(),
                );
                Ok(())
            }
            ClientMessage::Resume { .. } => {
                // The listeners outlive network drops, so a Firestore link that closed is
                // not coming back: the call ends.
                self.refuse(
                    ErrorCode::ResumeRefused,
                    "a Firestore call cannot be resumed".into(),
                );
                Ok(())
            }
            ClientMessage::CreateRoom { name, .. } if self.call.is_none() => {
                self.create(name, changes).await
            }
            ClientMessage::JoinRoom { room, name, .. } if self.call.is_none() => {
                self.join(room, name, changes).await
            }
            ClientMessage::CreateRoom { .. } | ClientMessage::JoinRoom { .. } => {
                self.refuse(ErrorCode::AlreadyInRoom, "already in a call".into());
                Ok(())
            }
            ClientMessage::Signal { to, data } => self.send_signal(to, data).await,
            ClientMessage::Leave => {
                self.hang_up().await;
                Ok(())
            }
            // A Firestore call has no lobby and no space around it: nobody to tell
            // where we stand, nobody beyond the call to watch.
            ClientMessage::Pose { .. } | ClientMessage::WatchSpace => Ok(()),
            ClientMessage::SfuSignal { .. }
            | ClientMessage::SfuResubscribe { .. }
            | ClientMessage::SfuLayer { .. }
            | ClientMessage::SfuLeave => {
                self.refuse(
                    ErrorCode::SfuFailed,
                    "a Firestore call has no SFU: it is one call between two people".into(),
                );
                Ok(())
            }
            ClientMessage::Chat { .. } | ClientMessage::Hand { .. } => {
                self.refuse(
                    ErrorCode::BadMessage,
                    "chat and raised hands need a meetspace signaling server; a Firestore \
                     call has none"
                        .into(),
                );
                Ok(())
            }
            // One call, no server to share the wall out: it is ours. The Flutter app has
            // no second video track to show: the sharer hears so.
            ClientMessage::Share { sharing, .. } => {
                if let Some(call) = &self.call {
                    let peers = if sharing {
                        vec![call.self_id.clone()]
                    } else {
                        Vec::new()
                    };
                    if sharing && !call.mesh {
                        self.refuse(
                            ErrorCode::BadMessage,
                            "the Flutter app does not show shared screens: the other side \
                             does not see yours"
                                .into(),
                        );
                    }
                    self.deliver(ServerMessage::Sharers { peers });
                }
                Ok(())
            }
            ClientMessage::ListRooms => {
                // Firestore calls are private: only their id lets anyone in.
                self.deliver(ServerMessage::RoomList { rooms: Vec::new() });
                Ok(())
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, "a Firestore request failed");
            let _ = self.received.send(LinkEvent::Closed {
                reason: error.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(raw: &str) -> Result<FirestoreTarget, FirestoreUrlError> {
        FirestoreTarget::from_url(&url::Url::parse(raw).unwrap())
    }

    #[test]
    fn firestore_urls_name_a_project_and_optionally_the_codelab_names() {
        assert_eq!(
            target("firestore://my-project-42").unwrap(),
            FirestoreTarget {
                project: "my-project-42".into(),
                layout: Layout::Flutter
            }
        );
        assert_eq!(
            target("firestore://my-project?names=codelab")
                .unwrap()
                .layout,
            Layout::Codelab
        );
        assert!(matches!(
            target("firestore://abc"),
            Err(FirestoreUrlError::Project(_))
        ));
        assert!(matches!(
            target("firestore://my-project/calls"),
            Err(FirestoreUrlError::Project(_))
        ));
        assert!(matches!(
            target("firestore://my-project?names=rooms"),
            Err(FirestoreUrlError::Option(_))
        ));
    }
}
