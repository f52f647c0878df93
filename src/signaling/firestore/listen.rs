//! Listening to a call: Firestore's real-time listen on the documents this client
//! reads, and what each change means (an answer, a newcomer, a hang-up, a signal).

use std::time::Duration;

use firestore::{
    FirestoreDb, FirestoreListenEvent, FirestoreListener, FirestoreListenerParams,
    FirestoreListenerTarget, FirestoreMemListenStateStorage,
};
use serde::de::IgnoredAny;
use tokio::sync::mpsc;

use super::documents::{
    CALLEE, CALLER, CallDoc, Mesh, PEERS, Presence, SIGNALS, display_name, doc_id, peer,
};
use super::{Call, CallStoreError, Part, Session};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{PeerId, PeerInfo, ServerMessage};

/// How long a listen stream that broke waits before it reconnects and resumes from its
/// last token. The crate's default, 5 s, would leave a hang-up unseen for that long; the
/// emulator was seen to break a stream mid-call ("failed to decode Protobuf message").
const LISTEN_RETRY_DELAY: Duration = Duration::from_millis(250);

impl Session {
    /// Listens (Firestore's real-time listen) to what this client reads of the call: the
    /// call document, the other side's candidates, and in group calls the presence
    /// documents and the signals addressed to us.
    pub(super) async fn listen(
        &self,
        call: &Call,
        changes: &mpsc::UnboundedSender<FirestoreListenEvent>,
    ) -> Result<FirestoreListener<FirestoreDb, FirestoreMemListenStateStorage>, CallStoreError>
    {
        let mut listener = self
            .db
            .create_listener_with_params(
                FirestoreMemListenStateStorage::new(),
                FirestoreListenerParams::new().with_retry_delay(LISTEN_RETRY_DELAY),
            )
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

    /// One change the listener saw.
    pub(super) async fn on_change(&mut self, change: FirestoreListenEvent) {
        use firestore::gcloud_sdk::google::firestore::v1::listen_response::ResponseType;
        match change {
            ResponseType::DocumentChange(change) => {
                let Some(doc) = change.document else { return };
                if change.target_ids.is_empty() {
                    self.on_gone(&doc.name).await;
                } else if let Err(error) = self.on_document(&doc).await {
                    tracing::warn!(%error, document = %doc.name, "a call document could not be read");
                }
            }
            ResponseType::DocumentDelete(delete) => self.on_gone(&delete.document).await,
            ResponseType::DocumentRemove(remove) => self.on_gone(&remove.document).await,
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

    /// A document of the call was made or changed.
    async fn on_document(
        &mut self,
        doc: &firestore::gcloud_sdk::google::firestore::v1::Document,
    ) -> Result<(), CallStoreError> {
        let Some(location) = self.locate(&doc.name) else {
            return Ok(());
        };
        match location {
            None => {
                let fields: CallDoc = FirestoreDb::deserialize_doc_to(doc)?;
                self.on_call_document(fields).await?;
            }
            Some(PEERS) => self.on_presence(doc)?,
            Some(SIGNALS) => self.on_signal_document(doc)?,
            Some(_candidates) => self.on_candidate_document(doc)?,
        }
        Ok(())
    }

    /// A presence document: a newcomer to the group call is announced as `peer_joined`.
    fn on_presence(
        &mut self,
        doc: &firestore::gcloud_sdk::google::firestore::v1::Document,
    ) -> Result<(), CallStoreError> {
        let Some(call) = &mut self.call else {
            return Ok(());
        };
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
                peer: PeerInfo::new(peer_id, name),
            });
        }
        Ok(())
    }

    /// The call document changed: the callee's answer (we are the caller), or a hang-up.
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
                        peer: PeerInfo::new(callee.clone(), name),
                    });
                    self.deliver(ServerMessage::Signal {
                        from: callee.clone(),
                        data: serde_json::to_value(SignalPayload::Answer { sdp: answer.sdp })
                            .unwrap_or_default(),
                    });
                }
                if doc.hung_up.as_deref() == Some(CALLEE) {
                    self.forget(&callee).await;
                }
            }
            Part::Callee => {
                if doc.hung_up.as_deref() == Some(CALLER) {
                    self.forget(&caller).await;
                }
            }
            Part::Member => match doc.hung_up.as_deref() {
                Some(CALLER) => self.forget(&caller).await,
                Some(CALLEE) => self.forget(&callee).await,
                _ => {}
            },
        }
        Ok(())
    }

    /// A document left the listened set (deleted, or no longer matching).
    async fn on_gone(&mut self, name: &str) {
        let Some(location) = self.locate(name) else {
            return;
        };
        match location {
            None => self.forget(&peer(CALLER)).await,
            Some(PEERS) => {
                if let Some(peer_id) = doc_id(name).and_then(|id| PeerId::parse(id).ok()) {
                    self.forget(&peer_id).await;
                }
            }
            Some(_) => {}
        }
    }

    /// `peer_id` left: tell the driver once, and take back the signals we wrote to it
    /// that it never read (one written as the caller cleaned up would outlive the call).
    async fn forget(&mut self, peer_id: &PeerId) {
        let Some(call) = &mut self.call else { return };
        if !call.known.remove(peer_id) {
            return;
        }
        call.left.insert(peer_id.clone());
        self.deliver(ServerMessage::PeerLeft {
            peer_id: peer_id.clone(),
        });
        let Some(call) = &self.call else { return };
        if call.mesh
            && let Err(error) = self.delete_unread_signals(call, Some(peer_id)).await
        {
            tracing::warn!(%error, peer = %peer_id, "could not delete our signals to a peer that left");
        }
    }
}
