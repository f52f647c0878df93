//! Making, joining and leaving calls: the call document and presence documents, and
//! the `welcome` each way in ends with.

use std::collections::HashSet;
use std::time::Duration;

use firestore::{
    FirestoreDb, FirestoreListenEvent, FirestoreTimestamp, FirestoreWritePrecondition,
    ParentPathBuilder,
};
use serde::de::IgnoredAny;
use tokio::sync::mpsc;

use super::documents::{
    CALLEE, CALLER, CallDoc, HangUp, PEERS, Presence, SIGNALS, auto_id, display_name, doc_id, peer,
};
use super::exchange::Exchange;
use super::{Call, CallStoreError, Part, Session};
use crate::signaling::link::LinkEvent;
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{
    DisplayName, ErrorCode, PeerId, PeerInfo, ResumeToken, RoomId, ServerMessage,
};

/// Most people in one group call (the signaling server's default room capacity).
const GROUP_CAPACITY: usize = 8;
/// How long stopping the listener may take when a call ends.
const LISTENER_STOP_TIMEOUT: Duration = Duration::from_secs(1);

impl Session {
    /// Where the subcollections of the call `id` hang.
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

    /// Makes a call with us as its caller; our offer, when the driver writes it, becomes
    /// the call document.
    pub(super) async fn create(
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
            left: HashSet::new(),
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

    /// Joins the call `room`: as its callee while it has no answer, else (a group call)
    /// as a member.
    pub(super) async fn join(
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
        let caller = PeerInfo::new(peer(CALLER), display_name(doc.caller_name.as_deref()));
        let call = Call {
            id: id.clone(),
            part: Part::Callee,
            self_id: self_id.clone(),
            name,
            path,
            mesh,
            joined_at,
            known: HashSet::from([caller.peer_id.clone()]),
            left: HashSet::new(),
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
                earlier.push((created, PeerInfo::new(peer_id, name)));
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
            left: HashSet::new(),
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
            sfu: false,
        });
        Ok(())
    }

    /// Leaves the call: the hang-up marker first (what the other side waits for), then,
    /// with our listener stopped, the caller deletes every document of the call, and
    /// anyone else their own presence.
    pub(super) async fn hang_up(&mut self) {
        let Some(mut call) = self.call.take() else {
            return;
        };
        self.mark_hung_up(&call).await;
        if let Some(mut listener) = call.listener.take() {
            let _ = listener.shutdown_with_timeout(LISTENER_STOP_TIMEOUT).await;
        }
        if let Err(error) = self.remove(&call).await {
            tracing::warn!(%error, call = %call.id, "could not clean up the call's documents");
        }
    }

    /// Writes the hang-up marker of a 1:1 call (`hungUp`: who hung up).
    async fn mark_hung_up(&self, call: &Call) {
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
    }

    /// Our documents of the call, gone: everything (caller) or, for anyone else, our
    /// presence and the signals we wrote that nobody read (a candidate written as the
    /// caller cleaned up would outlive the call).
    async fn remove(&self, call: &Call) -> Result<(), CallStoreError> {
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
                self.delete_unread_signals(call, None).await?;
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
            self.delete_all(call, collection, &docs).await?;
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

    /// Deletes the signals we wrote that nobody read yet: all of them, or those to `to`.
    pub(super) async fn delete_unread_signals(
        &self,
        call: &Call,
        to: Option<&PeerId>,
    ) -> Result<(), CallStoreError> {
        let from = call.self_id.to_string();
        let unread = self
            .db
            .fluent()
            .select()
            .from(SIGNALS)
            .parent(call.path.as_ref())
            .filter(|q| {
                q.for_all([
                    q.field("from").eq(from.as_str()),
                    to.and_then(|to| q.field("to").eq(to.as_str())),
                ])
            })
            .query()
            .await?;
        self.delete_all(call, SIGNALS, &unread).await
    }

    /// Deletes `docs` of the call's `collection`, all at once.
    async fn delete_all(
        &self,
        call: &Call,
        collection: &str,
        docs: &[firestore::gcloud_sdk::google::firestore::v1::Document],
    ) -> Result<(), CallStoreError> {
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
        Ok(())
    }
}
