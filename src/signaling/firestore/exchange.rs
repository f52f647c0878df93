//! The offer/answer exchange: our signals written where the other side reads them (the
//! Flutter layout's fields and candidate collections, or signal documents), and theirs
//! read back as `signal` messages.

use std::future::Future;
use std::time::Duration;

use firestore::errors::FirestoreError;
use firestore::{FirestoreDb, FirestoreWritePrecondition, ParentPathBuilder};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

use super::documents::{
    Answer, CALLEE, CALLER, CandidateDoc, Description, NewCall, SIGNALS, SignalDoc, auto_id,
    doc_id, peer,
};
use super::{CallStoreError, Part, Session};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{ErrorCode, PeerId, ServerMessage};

/// The waits before each new try of a write that failed in a way a retry may fix (the
/// service unavailable, a request out of time): one lost write would otherwise end a
/// call whose media works.
const WRITE_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

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
                    let db = &self.db;
                    let calls = self.layout.calls();
                    with_retries(&WRITE_RETRY_DELAYS, || {
                        db.fluent()
                            .insert()
                            .into(calls)
                            .document_id(&call.id)
                            .object(&doc)
                            .execute()
                    })
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
                    let db = &self.db;
                    let calls = self.layout.calls();
                    with_retries(&WRITE_RETRY_DELAYS, || {
                        db.fluent()
                            .update()
                            .fields(["answer", "calleeName"])
                            .in_col(calls)
                            .precondition(FirestoreWritePrecondition::Exists(true))
                            .document_id(&call.id)
                            .object(&doc)
                            .execute()
                    })
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
                    insert_new(&self.db, collection, &call.path, &doc).await?;
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
        insert_new(&self.db, SIGNALS, &call.path, &doc).await?;
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

/// Adds `doc` to the call's `collection` (under `path`) as a new document, made again
/// while it fails in a way a retry may fix.
async fn insert_new<T>(
    db: &FirestoreDb,
    collection: &str,
    path: &ParentPathBuilder,
    doc: &T,
) -> Result<(), FirestoreError>
where
    T: Serialize + DeserializeOwned + Sync + Send,
{
    // Chosen here, so that a retry makes the same document.
    let id = auto_id();
    with_retries(&WRITE_RETRY_DELAYS, || {
        db.fluent()
            .insert()
            .into(collection)
            .document_id(&id)
            .parent(path.as_ref())
            .object(doc)
            .execute()
    })
    .await
}

/// Makes `write` (the same write each time, to the same document) until it lands, trying
/// again after each of `delays` (in calls, [`WRITE_RETRY_DELAYS`]) while it fails in a
/// way a retry may fix.
/// A retried insert that finds its document made already counts as landed: the try before
/// it did land, and only its answer was lost.
async fn with_retries<W, F>(delays: &[Duration], mut write: W) -> Result<(), FirestoreError>
where
    W: FnMut() -> F,
    F: Future<Output = Result<IgnoredAny, FirestoreError>>,
{
    let mut delays = delays.iter();
    let mut retried = false;
    loop {
        match write().await {
            Ok(_) => return Ok(()),
            Err(FirestoreError::DataConflictError(_)) if retried => return Ok(()),
            Err(FirestoreError::DatabaseError(error)) if error.retry_possible => {
                let Some(delay) = delays.next() else {
                    return Err(FirestoreError::DatabaseError(error));
                };
                tracing::warn!(%error, ?delay, "a Firestore write failed; trying again");
                tokio::time::sleep(*delay).await;
                retried = true;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use firestore::errors::{
        FirestoreDataConflictError, FirestoreDatabaseError, FirestoreErrorPublicGenericDetails,
    };

    use super::*;

    fn database_error(code: &str, retry_possible: bool) -> FirestoreError {
        FirestoreError::DatabaseError(FirestoreDatabaseError::new(
            FirestoreErrorPublicGenericDetails::new(code.into()),
            format!("{code} from the test"),
            retry_possible,
        ))
    }

    fn conflict() -> FirestoreError {
        FirestoreError::DataConflictError(FirestoreDataConflictError::new(
            FirestoreErrorPublicGenericDetails::new("AlreadyExists".into()),
            "the document exists".into(),
        ))
    }

    /// The test's waits between tries: as many as in calls, shorter.
    const DELAYS: [Duration; WRITE_RETRY_DELAYS.len()] =
        [Duration::from_millis(1); WRITE_RETRY_DELAYS.len()];

    /// Runs `with_retries` over `answers` (one per try, in order); returns its outcome
    /// and how many tries it made.
    fn run(answers: Vec<Result<(), FirestoreError>>) -> (Result<(), FirestoreError>, usize) {
        let answers = Mutex::new(answers.into_iter());
        let tries = Mutex::new(0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let outcome = runtime.block_on(with_retries(&DELAYS, || {
            *tries.lock().unwrap() += 1;
            let answer = answers.lock().unwrap().next().expect("no more tries");
            async move { answer.map(|()| IgnoredAny) }
        }));
        (outcome, tries.into_inner().unwrap())
    }

    #[test]
    fn a_write_that_fails_for_a_while_is_made_again_until_it_lands() {
        let (outcome, tries) = run(vec![
            Err(database_error("Unavailable", true)),
            Err(database_error("DeadlineExceeded", true)),
            Ok(()),
        ]);
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(tries, 3);
    }

    #[test]
    fn a_write_that_keeps_failing_gives_up_after_the_last_retry() {
        let (outcome, tries) = run((0..4)
            .map(|_| Err(database_error("Unavailable", true)))
            .collect());
        assert!(matches!(outcome, Err(FirestoreError::DatabaseError(_))));
        assert_eq!(tries, 1 + WRITE_RETRY_DELAYS.len());
    }

    #[test]
    fn a_write_a_retry_cannot_fix_fails_at_once() {
        let (outcome, tries) = run(vec![Err(database_error("PermissionDenied", false))]);
        assert!(matches!(outcome, Err(FirestoreError::DatabaseError(_))));
        assert_eq!(tries, 1);
    }

    #[test]
    fn an_insert_found_made_on_a_retry_has_landed_but_not_on_the_first_try() {
        let (outcome, tries) = run(vec![
            Err(database_error("Unavailable", true)),
            Err(conflict()),
        ]);
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(tries, 2);
        let (outcome, tries) = run(vec![Err(conflict())]);
        assert!(matches!(outcome, Err(FirestoreError::DataConflictError(_))));
        assert_eq!(tries, 1);
    }
}
