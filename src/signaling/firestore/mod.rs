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

use std::collections::HashSet;
use std::time::Duration;

use firestore::{
    FirestoreDb, FirestoreDbOptions, FirestoreListenEvent, FirestoreListener,
    FirestoreListenerTarget, FirestoreMemListenStateStorage, FirestoreTimestamp,
    FirestoreWritePrecondition, ParentPathBuilder,
};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::mpsc;

use super::protocol::{
    ClientMessage, DisplayName, ErrorCode, PeerId, PeerInfo, ResumeToken, RoomId, ServerMessage,
};
use super::{LinkEvent, SignalUrl, SignalingError, SignalingLink};
use crate::rtc::SignalPayload;

/// Most people in one group call (the signaling server's default room capacity).
const GROUP_CAPACITY: usize = 8;
/// How long one Firestore request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping the listener may take when a call ends.
const LISTENER_STOP_TIMEOUT: Duration = Duration::from_secs(1);
/// The creator of a call: its peer id on every client.
const CALLER: &str = "caller";
/// Whoever answers the creator's offer (the Flutter app's joiner): its peer id.
const CALLEE: &str = "callee";
/// Name shown for a caller or callee that wrote none (the Flutter app writes none).
const FLUTTER_PEER_NAME: &str = "Guest";
/// Subcollection of presence documents (group calls).
const PEERS: &str = "peers";
/// Subcollection of addressed signal documents (group calls).
const SIGNALS: &str = "signals";

/// The collection names a call lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The Flutter app's: `calls`, `offerCandidates`, `answerCandidates`.
    Flutter,
    /// The Firebase WebRTC codelab's: `rooms`, `callerCandidates`, `calleeCandidates`.
    Codelab,
}

impl Layout {
    fn calls(self) -> &'static str {
        match self {
            Self::Flutter => "calls",
            Self::Codelab => "rooms",
        }
    }

    /// The caller's candidates.
    fn offer_candidates(self) -> &'static str {
        match self {
            Self::Flutter => "offerCandidates",
            Self::Codelab => "callerCandidates",
        }
    }

    /// The callee's candidates.
    fn answer_candidates(self) -> &'static str {
        match self {
            Self::Flutter => "answerCandidates",
            Self::Codelab => "calleeCandidates",
        }
    }
}

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

/// An SDP as the Flutter app stores it: `{type, sdp}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Description {
    #[serde(rename = "type")]
    kind: String,
    sdp: String,
}

/// What we read of a call document (unknown fields are ignored).
#[derive(Debug, Default, Deserialize)]
struct CallDoc {
    offer: Option<Description>,
    answer: Option<Description>,
    #[serde(rename = "callerName")]
    caller_name: Option<String>,
    #[serde(rename = "calleeName")]
    callee_name: Option<String>,
    /// The hang-up marker: `caller` or `callee`, whoever hung up.
    #[serde(rename = "hungUp")]
    hung_up: Option<String>,
    /// Whether meetspace peers beyond the first two may join (group calls).
    mesh: Option<bool>,
}

/// The call document as a meetspace caller creates it.
#[derive(Serialize, Deserialize)]
struct NewCall {
    offer: Description,
    #[serde(rename = "callerName")]
    caller_name: String,
    mesh: bool,
}

/// The fields a meetspace callee adds with an update, as the Flutter app adds `answer`.
#[derive(Serialize, Deserialize)]
struct Answer {
    answer: Description,
    #[serde(rename = "calleeName")]
    callee_name: String,
}

/// The hang-up marker update.
#[derive(Serialize, Deserialize)]
struct HangUp {
    #[serde(rename = "hungUp")]
    hung_up: String,
}

/// Clearing `mesh` when a callee that cannot take part in a group answers.
#[derive(Serialize, Deserialize)]
struct Mesh {
    mesh: bool,
}

/// One ICE candidate as the Flutter app stores it (`RTCIceCandidate.toMap()`).
#[derive(Debug, Serialize, Deserialize)]
struct CandidateDoc {
    candidate: String,
    #[serde(rename = "sdpMid", default)]
    sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex", default)]
    sdp_mline_index: Option<i64>,
}

/// A group-call presence document, `peers/{peerId}`.
#[derive(Debug, Serialize, Deserialize)]
struct Presence {
    name: String,
    #[serde(rename = "_firestore_created", default, skip_serializing)]
    created: Option<FirestoreTimestamp>,
}

/// An addressed signal document, `signals/{auto}`: the WebSocket protocol's `data`, as
/// JSON text.
#[derive(Debug, Serialize, Deserialize)]
struct SignalDoc {
    from: String,
    to: String,
    data: String,
}

/// Where the caller's and callee's signals to each other go. The Flutter layout has one
/// offer, one answer and their candidates: a connection started over (after it failed)
/// needs the signal documents, which only meetspace peers read (`mesh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// Our offer (caller) or answer (callee) is not written yet.
    Pending,
    /// It is in the call document; candidates go to the Flutter layout's collections.
    InLayout,
    /// The connection was started over: everything goes through signal documents.
    InSignals,
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

    fn subcollection_path(&self, id: &str) -> Result<ParentPathBuilder, CallStoreError> {
        Ok(self.db.parent_path(self.layout.calls(), id)?)
    }

    /// Writes our presence document; returns when Firestore made it.
    async fn announce(
        &self,
        path: &ParentPathBuilder,
        self_id: &PeerId,
        name: &DisplayName,
    ) -> Result<Option<FirestoreTimestamp>, CallStoreError> {
        let presence = Presence {
            name: name.to_string(),
            created: None,
        };
        let stored: Presence = self
            .db
            .fluent()
            .update()
            .in_col(PEERS)
            .document_id(self_id.as_str())
            .parent(path.as_ref())
            .object(&presence)
            .execute()
            .await?;
        Ok(stored.created)
    }

    async fn create(
        &mut self,
        name: DisplayName,
        changes: &mpsc::UnboundedSender<FirestoreListenEvent>,
    ) -> Result<(), CallStoreError> {
        let id = auto_id();
        let path = self.subcollection_path(&id)?;
        let self_id = peer(CALLER);
        let joined_at = self.announce(&path, &self_id, &name).await?;
        let room = RoomId::parse(&id).expect("auto ids are valid room ids");
        let call = Call {
            id,
            part: Part::Caller,
            self_id: self_id.clone(),
            name,
            path,
            mesh: true,
            joined_at,
            known: HashSet::new(),
            seen: HashSet::new(),
            exchange: Exchange::Pending,
            listener: None,
        };
        self.enter(call, room, Vec::new(), changes).await?;
        let _ = self
            .received
            .send(LinkEvent::OfferAhead { peer: peer(CALLEE) });
        Ok(())
    }

    async fn join(
        &mut self,
        room: RoomId,
        name: DisplayName,
        changes: &mpsc::UnboundedSender<FirestoreListenEvent>,
    ) -> Result<(), CallStoreError> {
        let id = room.to_string();
        let doc: Option<CallDoc> = self
            .db
            .fluent()
            .select()
            .by_id_in(self.layout.calls())
            .obj()
            .one(&id)
            .await?;
        let doc = match doc {
            Some(doc) if doc.offer.is_some() && doc.hung_up.as_deref() != Some(CALLER) => doc,
            _ => {
                self.refuse(
                    ErrorCode::RoomNotFound,
                    format!("no call with id {id} exists (or its creator hung up)"),
                );
                return Ok(());
            }
        };
        let path = self.subcollection_path(&id)?;
        let mesh = doc.mesh == Some(true);
        if doc.answer.is_none() {
            return self
                .join_as_callee(id, path, doc, mesh, name, changes)
                .await;
        }
        if !mesh {
            self.refuse(
                ErrorCode::RoomFull,
                format!("call {id} already has an answer: it is a call for two"),
            );
            return Ok(());
        }
        let present: Vec<Presence> = self
            .db
            .fluent()
            .select()
            .from(PEERS)
            .parent(path.as_ref())
            .obj()
            .query()
            .await?;
        if present.len() >= GROUP_CAPACITY {
            self.refuse(
                ErrorCode::RoomFull,
                format!("call {id} already holds {GROUP_CAPACITY} people"),
            );
            return Ok(());
        }
        self.join_as_member(id, path, name, changes).await
    }

    async fn join_as_callee(
        &mut self,
        id: String,
        path: ParentPathBuilder,
        doc: CallDoc,
        mesh: bool,
        name: DisplayName,
        changes: &mpsc::UnboundedSender<FirestoreListenEvent>,
    ) -> Result<(), CallStoreError> {
        let offer = doc.offer.ok_or(CallStoreError::NoOffer)?;
        let self_id = peer(CALLEE);
        let joined_at = if mesh {
            self.announce(&path, &self_id, &name).await?
        } else {
            None
        };
        let caller = PeerInfo {
            peer_id: peer(CALLER),
            name: display_name(doc.caller_name.as_deref()),
        };
        let call = Call {
            id: id.clone(),
            part: Part::Callee,
            self_id: self_id.clone(),
            name,
            path,
            mesh,
            joined_at,
            known: HashSet::from([caller.peer_id.clone()]),
            seen: HashSet::new(),
            exchange: Exchange::Pending,
            listener: None,
        };
        self.enter(
            call,
            RoomId::parse(&id).expect("validated when joining"),
            Vec::new(),
            changes,
        )
        .await?;
        self.deliver(ServerMessage::PeerJoined { peer: caller });
        self.deliver(ServerMessage::Signal {
            from: peer(CALLER),
            data: serde_json::to_value(SignalPayload::Offer { sdp: offer.sdp }).unwrap_or_default(),
        });
        Ok(())
    }

    async fn join_as_member(
        &mut self,
        id: String,
        path: ParentPathBuilder,
        name: DisplayName,
        changes: &mpsc::UnboundedSender<FirestoreListenEvent>,
    ) -> Result<(), CallStoreError> {
        let self_id = PeerId::random();
        let joined_at = self.announce(&path, &self_id, &name).await?;
        let mut earlier: Vec<(FirestoreTimestamp, PeerInfo)> = Vec::new();
        let docs = self
            .db
            .fluent()
            .select()
            .from(PEERS)
            .parent(path.as_ref())
            .query()
            .await?;
        for doc in &docs {
            let Some(peer_id) = doc_id(&doc.name).and_then(|id| PeerId::parse(id).ok()) else {
                continue;
            };
            let Ok(presence) = FirestoreDb::deserialize_doc_to::<Presence>(doc) else {
                continue;
            };
            if let Some(created) = presence.created
                && peer_id != self_id
                && Some(created) < joined_at
            {
                let name = display_name(Some(&presence.name));
                earlier.push((created, PeerInfo { peer_id, name }));
            }
        }
        earlier.sort_by_key(|(created, _)| *created);
        let peers: Vec<PeerInfo> = earlier.into_iter().map(|(_, info)| info).collect();
        let call = Call {
            id: id.clone(),
            part: Part::Member,
            self_id: self_id.clone(),
            name,
            path,
            mesh: true,
            joined_at,
            known: peers.iter().map(|info| info.peer_id.clone()).collect(),
            seen: HashSet::new(),
            exchange: Exchange::Pending,
            listener: None,
        };
        self.enter(
            call,
            RoomId::parse(&id).expect("validated when joining"),
            peers,
            changes,
        )
        .await?;
        Ok(())
    }

    /// Starts listening to `call`, makes it ours and welcomes us into `room` with the
    /// `peers` already there: the same `welcome` a meetspace server sends.
    async fn enter(
        &mut self,
        mut call: Call,
        room: RoomId,
        peers: Vec<PeerInfo>,
        changes: &mpsc::UnboundedSender<FirestoreListenEvent>,
    ) -> Result<(), CallStoreError> {
        call.listener = Some(self.listen(&call, changes).await?);
        let peer_id = call.self_id.clone();
        self.call = Some(call);
        self.deliver(ServerMessage::Welcome {
            // Never used: a Firestore call is not resumed (see `on_client_message`).
            resume_token: ResumeToken::random(),
            room,
            peer_id,
            peers,
            ice_servers: Vec::new(),
        });
        Ok(())
    }

    /// Listens (Firestore's real-time listen) to what this client reads of the call: the
    /// call document, the other side's candidates, and in group calls the presence
    /// documents and the signals addressed to us.
    async fn listen(
        &self,
        call: &Call,
        changes: &mpsc::UnboundedSender<FirestoreListenEvent>,
    ) -> Result<FirestoreListener<FirestoreDb, FirestoreMemListenStateStorage>, CallStoreError>
    {
        let mut listener = self
            .db
            .create_listener(FirestoreMemListenStateStorage::new())
            .await?;
        self.db
            .fluent()
            .select()
            .by_id_in(self.layout.calls())
            .batch_listen([call.id.as_str()])
            .add_target(FirestoreListenerTarget::new(1), &mut listener)?;
        let their_candidates = match call.part {
            Part::Caller => Some(self.layout.answer_candidates()),
            Part::Callee => Some(self.layout.offer_candidates()),
            Part::Member => None,
        };
        if let Some(collection) = their_candidates {
            self.db
                .fluent()
                .select()
                .from(collection)
                .parent(call.path.as_ref())
                .listen()
                .add_target(FirestoreListenerTarget::new(2), &mut listener)?;
        }
        if call.mesh {
            self.db
                .fluent()
                .select()
                .from(PEERS)
                .parent(call.path.as_ref())
                .listen()
                .add_target(FirestoreListenerTarget::new(3), &mut listener)?;
            let self_id = call.self_id.to_string();
            self.db
                .fluent()
                .select()
                .from(SIGNALS)
                .parent(call.path.as_ref())
                .filter(|q| q.for_all([q.field("to").eq(self_id.as_str())]))
                .listen()
                .add_target(FirestoreListenerTarget::new(4), &mut listener)?;
        }
        let changes = changes.clone();
        listener
            .start(move |event| {
                let changes = changes.clone();
                async move {
                    let _ = changes.send(event);
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                }
            })
            .await?;
        Ok(listener)
    }

    /// Passes a signal from the driver on: the Flutter layout's fields where the
    /// original app reads them, else (group calls, `media_state`, a connection started
    /// over) a signal document.
    async fn send_signal(
        &mut self,
        to: PeerId,
        data: serde_json::Value,
    ) -> Result<(), CallStoreError> {
        let Some(call) = &mut self.call else {
            self.refuse(ErrorCode::NotInRoom, "not in a call".into());
            return Ok(());
        };
        let payload = SignalPayload::deserialize(&data).ok();
        let slot_peer = match call.part {
            Part::Caller => Some(CALLEE),
            Part::Callee => Some(CALLER),
            Part::Member => None,
        };
        if slot_peer == Some(to.as_str()) && call.exchange != Exchange::InSignals {
            match (call.part, call.exchange, payload) {
                (Part::Caller, Exchange::Pending, Some(SignalPayload::Offer { sdp })) => {
                    let doc = NewCall {
                        offer: Description {
                            kind: "offer".into(),
                            sdp,
                        },
                        caller_name: call.name.to_string(),
                        mesh: true,
                    };
                    let _: IgnoredAny = self
                        .db
                        .fluent()
                        .insert()
                        .into(self.layout.calls())
                        .document_id(&call.id)
                        .object(&doc)
                        .execute()
                        .await?;
                    call.exchange = Exchange::InLayout;
                    return Ok(());
                }
                (Part::Callee, Exchange::Pending, Some(SignalPayload::Answer { sdp })) => {
                    let doc = Answer {
                        answer: Description {
                            kind: "answer".into(),
                            sdp,
                        },
                        callee_name: call.name.to_string(),
                    };
                    let _: IgnoredAny = self
                        .db
                        .fluent()
                        .update()
                        .fields(["answer", "calleeName"])
                        .in_col(self.layout.calls())
                        .precondition(FirestoreWritePrecondition::Exists(true))
                        .document_id(&call.id)
                        .object(&doc)
                        .execute()
                        .await?;
                    call.exchange = Exchange::InLayout;
                    return Ok(());
                }
                (
                    _,
                    Exchange::InLayout,
                    Some(SignalPayload::Offer { .. } | SignalPayload::Answer { .. }),
                ) => {
                    // A fresh connection: only a meetspace peer can take it.
                    if !call.mesh {
                        tracing::warn!(
                            peer = %to,
                            "the other side reads only the Flutter layout and cannot start \
                             the connection over"
                        );
                        return Ok(());
                    }
                    call.exchange = Exchange::InSignals;
                }
                (
                    part,
                    _,
                    Some(SignalPayload::Candidate {
                        candidate,
                        sdp_mid,
                        sdp_mline_index,
                    }),
                ) => {
                    // The Flutter app never writes an end-of-candidates marker.
                    if candidate.is_empty() {
                        return Ok(());
                    }
                    let collection = if part == Part::Caller {
                        self.layout.offer_candidates()
                    } else {
                        self.layout.answer_candidates()
                    };
                    let doc = CandidateDoc {
                        candidate,
                        sdp_mid,
                        sdp_mline_index: sdp_mline_index.map(i64::from),
                    };
                    let _: IgnoredAny = self
                        .db
                        .fluent()
                        .insert()
                        .into(collection)
                        .generate_document_id()
                        .parent(call.path.as_ref())
                        .object(&doc)
                        .execute()
                        .await?;
                    return Ok(());
                }
                _ => {}
            }
        }
        if !call.mesh {
            tracing::debug!(peer = %to, "the other side reads only the Flutter layout; signal dropped");
            return Ok(());
        }
        let doc = SignalDoc {
            from: call.self_id.to_string(),
            to: to.to_string(),
            data: data.to_string(),
        };
        let _: IgnoredAny = self
            .db
            .fluent()
            .insert()
            .into(SIGNALS)
            .generate_document_id()
            .parent(call.path.as_ref())
            .object(&doc)
            .execute()
            .await?;
        Ok(())
    }

    async fn on_change(&mut self, change: FirestoreListenEvent) {
        use firestore::gcloud_sdk::google::firestore::v1::listen_response::ResponseType;
        match change {
            ResponseType::DocumentChange(change) => {
                let Some(doc) = change.document else { return };
                if change.target_ids.is_empty() {
                    self.on_gone(&doc.name);
                } else if let Err(error) = self.on_document(&doc).await {
                    tracing::warn!(%error, document = %doc.name, "a call document could not be read");
                }
            }
            ResponseType::DocumentDelete(delete) => self.on_gone(&delete.document),
            ResponseType::DocumentRemove(remove) => self.on_gone(&remove.document),
            ResponseType::TargetChange(_) | ResponseType::Filter(_) => {}
        }
    }

    /// Where a document of this call sits: `None` for the call document, else the
    /// subcollection.
    fn locate<'a>(&self, name: &'a str) -> Option<Option<&'a str>> {
        let call = self.call.as_ref()?;
        let relative = name.strip_prefix(self.db.get_documents_path().as_str())?;
        let mut parts = relative.trim_start_matches('/').split('/');
        if parts.next() != Some(self.layout.calls()) || parts.next() != Some(call.id.as_str()) {
            return None;
        }
        Some(parts.next())
    }

    async fn on_document(
        &mut self,
        doc: &firestore::gcloud_sdk::google::firestore::v1::Document,
    ) -> Result<(), CallStoreError> {
        let Some(location) = self.locate(&doc.name) else {
            return Ok(());
        };
        let Some(call) = &mut self.call else {
            return Ok(());
        };
        match location {
            None => {
                let fields: CallDoc = FirestoreDb::deserialize_doc_to(doc)?;
                self.on_call_document(fields).await?;
            }
            Some(PEERS) => {
                let Some(peer_id) = doc_id(&doc.name).and_then(|id| PeerId::parse(id).ok()) else {
                    return Ok(());
                };
                let presence: Presence = FirestoreDb::deserialize_doc_to(doc)?;
                let newcomer = presence.created > call.joined_at
                    && peer_id != call.self_id
                    && !(call.part == Part::Caller && peer_id.as_str() == CALLEE);
                if newcomer && call.known.insert(peer_id.clone()) {
                    let name = display_name(Some(&presence.name));
                    self.deliver(ServerMessage::PeerJoined {
                        peer: PeerInfo { peer_id, name },
                    });
                }
            }
            Some(SIGNALS) => {
                if !call.seen.insert(doc.name.clone()) {
                    return Ok(());
                }
                let signal: SignalDoc = FirestoreDb::deserialize_doc_to(doc)?;
                let id = doc_id(&doc.name).unwrap_or_default().to_owned();
                let db = self.db.clone();
                let path = call.path.clone();
                // Read once: nobody needs it any more.
                tokio::spawn(async move {
                    let _ = db
                        .fluent()
                        .delete()
                        .from(SIGNALS)
                        .parent(path.as_ref())
                        .document_id(id)
                        .execute()
                        .await;
                });
                match (
                    PeerId::parse(&signal.from),
                    serde_json::from_str(&signal.data),
                ) {
                    (Ok(from), Ok(data)) => self.deliver(ServerMessage::Signal { from, data }),
                    _ => tracing::warn!("ignoring a malformed signal document"),
                }
            }
            Some(_candidates) => {
                if !call.seen.insert(doc.name.clone()) {
                    return Ok(());
                }
                let from = peer(if call.part == Part::Caller {
                    CALLEE
                } else {
                    CALLER
                });
                let stored: CandidateDoc = FirestoreDb::deserialize_doc_to(doc)?;
                let payload = SignalPayload::Candidate {
                    candidate: stored.candidate,
                    sdp_mid: stored.sdp_mid,
                    sdp_mline_index: stored
                        .sdp_mline_index
                        .and_then(|index| u16::try_from(index).ok()),
                };
                if let Ok(data) = serde_json::to_value(payload) {
                    self.deliver(ServerMessage::Signal { from, data });
                }
            }
        }
        Ok(())
    }

    async fn on_call_document(&mut self, doc: CallDoc) -> Result<(), CallStoreError> {
        let Some(call) = &mut self.call else {
            return Ok(());
        };
        let callee = peer(CALLEE);
        let caller = peer(CALLER);
        match call.part {
            Part::Caller => {
                if let Some(answer) = doc.answer
                    && doc.hung_up.is_none()
                    && call.known.insert(callee.clone())
                {
                    if doc.callee_name.is_none() && call.mesh {
                        // A callee that reads only the Flutter layout (the original app)
                        // cannot take part in a group: nobody else may join.
                        call.mesh = false;
                        let _: IgnoredAny = self
                            .db
                            .fluent()
                            .update()
                            .fields(["mesh"])
                            .in_col(self.layout.calls())
                            .document_id(&call.id)
                            .object(&Mesh { mesh: false })
                            .execute()
                            .await?;
                    }
                    let name = display_name(doc.callee_name.as_deref());
                    self.deliver(ServerMessage::PeerJoined {
                        peer: PeerInfo {
                            peer_id: callee.clone(),
                            name,
                        },
                    });
                    self.deliver(ServerMessage::Signal {
                        from: callee.clone(),
                        data: serde_json::to_value(SignalPayload::Answer { sdp: answer.sdp })
                            .unwrap_or_default(),
                    });
                }
                if doc.hung_up.as_deref() == Some(CALLEE) {
                    self.forget(&callee);
                }
            }
            Part::Callee => {
                if doc.hung_up.as_deref() == Some(CALLER) {
                    self.forget(&caller);
                }
            }
            Part::Member => match doc.hung_up.as_deref() {
                Some(CALLER) => self.forget(&caller),
                Some(CALLEE) => self.forget(&callee),
                _ => {}
            },
        }
        Ok(())
    }

    /// A document left the listened set (deleted, or no longer matching).
    fn on_gone(&mut self, name: &str) {
        let Some(location) = self.locate(name) else {
            return;
        };
        match location {
            None => self.forget(&peer(CALLER)),
            Some(PEERS) => {
                if let Some(peer_id) = doc_id(name).and_then(|id| PeerId::parse(id).ok()) {
                    self.forget(&peer_id);
                }
            }
            Some(_) => {}
        }
    }

    /// `peer_id` left: tell the driver once.
    fn forget(&mut self, peer_id: &PeerId) {
        let Some(call) = &mut self.call else { return };
        if call.known.remove(peer_id) {
            self.deliver(ServerMessage::PeerLeft {
                peer_id: peer_id.clone(),
            });
        }
    }

    /// Leaves the call: the hang-up marker, then the caller deletes every document of
    /// the call, and anyone else their own presence.
    async fn hang_up(&mut self) {
        let Some(mut call) = self.call.take() else {
            return;
        };
        if let Some(mut listener) = call.listener.take() {
            let _ = listener.shutdown_with_timeout(LISTENER_STOP_TIMEOUT).await;
        }
        if let Err(error) = self.remove(&call).await {
            tracing::warn!(%error, call = %call.id, "could not clean up the call's documents");
        }
    }

    async fn remove(&self, call: &Call) -> Result<(), CallStoreError> {
        let marker = match call.part {
            Part::Caller => Some(CALLER),
            Part::Callee => Some(CALLEE),
            Part::Member => None,
        };
        if let Some(hung_up) = marker {
            // Fails harmlessly when the document is already gone.
            let _ = self
                .db
                .fluent()
                .update()
                .fields(["hungUp"])
                .in_col(self.layout.calls())
                .precondition(FirestoreWritePrecondition::Exists(true))
                .document_id(&call.id)
                .object(&HangUp {
                    hung_up: hung_up.to_owned(),
                })
                .execute::<IgnoredAny>()
                .await;
        }
        if call.part != Part::Caller {
            if call.mesh {
                self.db
                    .fluent()
                    .delete()
                    .from(PEERS)
                    .parent(call.path.as_ref())
                    .document_id(call.self_id.as_str())
                    .execute()
                    .await?;
            }
            return Ok(());
        }
        let subcollections = [
            self.layout.offer_candidates(),
            self.layout.answer_candidates(),
            PEERS,
            SIGNALS,
        ];
        for collection in subcollections {
            let docs = self
                .db
                .fluent()
                .select()
                .from(collection)
                .parent(call.path.as_ref())
                .query()
                .await?;
            let deletions = docs.iter().filter_map(|doc| doc_id(&doc.name)).map(|id| {
                self.db
                    .fluent()
                    .delete()
                    .from(collection)
                    .parent(call.path.as_ref())
                    .document_id(id)
                    .execute()
            });
            for deleted in futures_util::future::join_all(deletions).await {
                deleted?;
            }
        }
        self.db
            .fluent()
            .delete()
            .from(self.layout.calls())
            .document_id(&call.id)
            .execute()
            .await?;
        Ok(())
    }
}

/// The last segment of a document's name: its id.
fn doc_id(name: &str) -> Option<&str> {
    name.rsplit('/').next().filter(|id| !id.is_empty())
}

fn peer(id: &str) -> PeerId {
    PeerId::parse(id).expect("fixed peer ids are valid")
}

fn display_name(stored: Option<&str>) -> DisplayName {
    stored
        .and_then(|name| DisplayName::parse(name).ok())
        .unwrap_or_else(|| DisplayName::parse(FLUTTER_PEER_NAME).unwrap_or_default())
}

/// A document id like the Firestore SDKs make: 20 letters and digits (119 bits).
fn auto_id() -> String {
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

    #[test]
    fn auto_ids_look_like_firestores_and_are_room_ids() {
        let id = auto_id();
        assert_eq!(id.len(), 20);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(id, auto_id());
        assert!(RoomId::parse(&id).is_ok());
    }
}
