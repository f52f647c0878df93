//! The offer/answer exchange: our signals written where the other side reads them (the
//! Flutter layout's fields and candidate collections, or signal documents), and theirs
//! read back as `signal` messages.

use firestore::{FirestoreDb, FirestoreWritePrecondition};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::documents::{
    Answer, CALLEE, CALLER, CandidateDoc, Description, NewCall, SIGNALS, SignalDoc, doc_id, peer,
};
use super::{CallStoreError, Part, Session};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{ErrorCode, PeerId, ServerMessage};

/// Where the caller's and callee's signals to each other go. The Flutter layout has one
/// offer, one answer and their candidates: a connection started over (after it failed)
/// needs the signal documents, which only meetspace peers read (`mesh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exchange {
    /// Our offer (caller) or answer (callee) is not written yet.
    Pending,
    /// It is in the call document; candidates go to the Flutter layout's collections.
    InLayout,
    /// The connection was started over: everything goes through signal documents.
    InSignals,
}

impl Session {
    /// Passes a signal from the driver on: the Flutter layout's fields where the
    /// original app reads them, else (group calls, `media_state`, a connection started
    /// over) a signal document.
    pub(super) async fn send_signal(
        &mut self,
        to: PeerId,
        data: serde_json::Value,
    ) -> Result<(), CallStoreError> {
        let Some(call) = &mut self.call else {
            self.refuse(ErrorCode::NotInRoom, "not in a call".into());
            return Ok(());
        };
        if call.left.contains(&to) {
            tracing::debug!(peer = %to, "signal to a peer that left dropped");
            return Ok(());
        }
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

    /// A signal document addressed to us: passed on as `signal`, then deleted.
    pub(super) fn on_signal_document(
        &mut self,
        doc: &firestore::gcloud_sdk::google::firestore::v1::Document,
    ) -> Result<(), CallStoreError> {
        let Some(call) = &mut self.call else {
            return Ok(());
        };
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
        Ok(())
    }

    /// A candidate document of the other side (1:1 exchange): passed on as `signal`.
    pub(super) fn on_candidate_document(
        &mut self,
        doc: &firestore::gcloud_sdk::google::firestore::v1::Document,
    ) -> Result<(), CallStoreError> {
        let Some(call) = &mut self.call else {
            return Ok(());
        };
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
        Ok(())
    }
}
