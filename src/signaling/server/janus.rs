//! A client of Janus's WebSocket API (`janus-protocol`), as much of it as the
//! VideoRoom bridge needs: sessions kept alive, plugin handles, requests answered by
//! transaction (synchronous ones at once, asynchronous ones by a later `event`), and
//! trickled candidates.
//!
//! One [`Janus`] is one WebSocket connection to one Janus instance; every session of
//! the server on that instance shares it. When the connection drops, every request in
//! flight fails with [`JanusError::Gone`] and [`Janus::closed`] resolves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// How long Janus gets to answer a request (an asynchronous one: until its event).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening the WebSocket connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often each session says it is alive (Janus drops sessions silent for 60 s).
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);

/// What went wrong talking to Janus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JanusError {
    /// The WebSocket connection could not be opened.
    #[error("cannot reach Janus at {url}: {reason}")]
    Unreachable {
        /// The instance.
        url: String,
        /// Why.
        reason: String,
    },
    /// The connection to Janus is gone (Janus stopped or restarted).
    #[error("the connection to Janus is gone")]
    Gone,
    /// Janus did not answer in time.
    #[error("Janus did not answer {request} within {REQUEST_TIMEOUT:?}")]
    Timeout {
        /// The request.
        request: String,
    },
    /// Janus (or its plugin) refused the request.
    #[error("Janus refused {request}: {reason}")]
    Refused {
        /// The request.
        request: String,
        /// Its error text.
        reason: String,
    },
}

/// A Janus answer: the message, and the SDP it carries, if any.
#[derive(Debug, Clone)]
pub struct JanusReply {
    /// The plugin's data (`plugindata.data`), or the core's `data`.
    pub data: Value,
    /// The `jsep` object (`type` and `sdp`), when the answer carries a description.
    pub jsep: Option<Value>,
}

impl JanusReply {
    /// The SDP the reply carries, or a refusal of `request` saying that none came.
    pub fn sdp(&self, request: &str) -> Result<&str, JanusError> {
        self.jsep
            .as_ref()
            .and_then(|jsep| jsep["sdp"].as_str())
            .ok_or_else(|| JanusError::Refused {
                request: request.to_owned(),
                reason: "no description came with the reply".to_owned(),
            })
    }
}

/// Waiters for answers, by transaction.
type Pending = HashMap<String, oneshot::Sender<Result<JanusReply, JanusError>>>;

/// Where each session's notices go (`webrtcup`, `hangup`, ...), by session id.
type Notices = HashMap<u64, mpsc::UnboundedSender<Value>>;

/// One WebSocket connection to a Janus instance.
pub struct Janus {
    url: String,
    api_secret: Option<String>,
    outgoing: mpsc::UnboundedSender<Value>,
    pending: Arc<Mutex<Pending>>,
    notices: Arc<Mutex<Notices>>,
    next_transaction: AtomicU64,
    alive: watch::Receiver<bool>,
}

impl Janus {
    /// Connects to `url` (`ws://HOST:PORT`), sending `api_secret` with every request.
    pub async fn connect(url: &str, api_secret: Option<String>) -> Result<Self, JanusError> {
        let unreachable = |reason: String| JanusError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| unreachable(e.to_string()))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        // An instance that went away may leave its address silent rather than refusing.
        let (socket, _) =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
                .map_err(|e| unreachable(e.to_string()))?;
        let (mut write, mut read) = socket.split();
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<Value>();
        let pending: Arc<Mutex<Pending>> = Arc::default();
        let (alive_tx, alive) = watch::channel(true);
        let answers = Arc::clone(&pending);
        let notices: Arc<Mutex<Notices>> = Arc::default();
        let notices_to = Arc::clone(&notices);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = to_send.recv() => {
                        let Some(message) = message else { break };
                        if write.send(Message::text(message.to_string())).await.is_err() {
                            break;
                        }
                    }
                    frame = read.next() => match frame {
                        Some(Ok(Message::Text(text))) => answer(&answers, &notices_to, &text),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
            let waiting: Vec<_> = lock(&answers).drain().collect();
            for (_, waiter) in waiting {
                let _ = waiter.send(Err(JanusError::Gone));
            }
            lock(&notices_to).clear();
            let _ = alive_tx.send(false);
        });
        Ok(Self {
            url: url.to_owned(),
            api_secret,
            outgoing,
            pending,
            notices,
            next_transaction: AtomicU64::new(1),
            alive,
        })
    }

    /// The instance's address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the connection is still up.
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Resolves once the connection is down (at once if it is).
    pub async fn closed(&self) {
        let mut alive = self.alive.clone();
        let _ = alive.wait_for(|alive| !alive).await;
    }

    /// Sends `message` (a `janus` request without its transaction) and waits for its
    /// answer: `success`, or, after an `ack`, the `event` that carries the result.
    pub async fn request(&self, mut message: Value) -> Result<JanusReply, JanusError> {
        let name = describe(&message);
        let number = self.next_transaction.fetch_add(1, Ordering::Relaxed);
        let transaction = match message["janus"].as_str() {
            Some("message") => format!("t{number}m"),
            _ => format!("t{number}"),
        };
        message["transaction"] = json!(transaction);
        if let Some(secret) = &self.api_secret {
            message["apisecret"] = json!(secret);
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(transaction.clone(), tx);
        if self.outgoing.send(message).is_err() {
            lock(&self.pending).remove(&transaction);
            return Err(JanusError::Gone);
        }
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, rx).await;
        lock(&self.pending).remove(&transaction);
        match reply {
            Ok(Ok(Err(JanusError::Refused { reason, .. }))) => Err(JanusError::Refused {
                request: name,
                reason,
            }),
            Ok(Ok(reply)) => reply.and_then(|reply| plugin_error(&name, reply)),
            Ok(Err(_)) => Err(JanusError::Gone),
            Err(_) => Err(JanusError::Timeout { request: name }),
        }
    }

    /// Makes a session, kept alive until the returned handle is dropped, and where its
    /// notices (frames about its handles that answer no request) go.
    pub async fn session(
        self: &Arc<Self>,
    ) -> Result<(JanusSession, mpsc::UnboundedReceiver<Value>), JanusError> {
        let reply = self.request(json!({"janus": "create"})).await?;
        let id = reply.data["id"]
            .as_u64()
            .ok_or_else(|| JanusError::Refused {
                request: "create".to_owned(),
                reason: "no session id in the answer".to_owned(),
            })?;
        let (notices_tx, notices) = mpsc::unbounded_channel();
        lock(&self.notices).insert(id, notices_tx);
        let janus = Arc::clone(self);
        let keepalive = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(KEEPALIVE_EVERY);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let alive = janus
                    .request(json!({"janus": "keepalive", "session_id": id}))
                    .await;
                if matches!(alive, Err(JanusError::Gone)) {
                    break;
                }
            }
        });
        let session = JanusSession {
            janus: Arc::clone(self),
            id,
            keepalive,
        };
        Ok((session, notices))
    }
}

/// A session on a Janus instance; dropping it destroys it (and its handles) there.
pub struct JanusSession {
    janus: Arc<Janus>,
    id: u64,
    keepalive: tokio::task::JoinHandle<()>,
}

impl JanusSession {
    /// Attaches a handle to the VideoRoom plugin.
    pub async fn attach_videoroom(&self) -> Result<u64, JanusError> {
        let reply = self
            .janus
            .request(json!({
                "janus": "attach",
                "session_id": self.id,
                "plugin": "janus.plugin.videoroom",
            }))
            .await?;
        reply.data["id"]
            .as_u64()
            .ok_or_else(|| JanusError::Refused {
                request: "attach".to_owned(),
                reason: "no handle id in the answer".to_owned(),
            })
    }

    /// Sends a plugin message (`body`, with a description when `jsep` is given) on
    /// `handle` and waits for the plugin's answer.
    pub async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<JanusReply, JanusError> {
        let mut message = json!({
            "janus": "message",
            "session_id": self.id,
            "handle_id": handle,
            "body": body,
        });
        if let Some(jsep) = jsep {
            message["jsep"] = jsep;
        }
        self.janus.request(message).await
    }

    /// Trickles one of our ICE candidates to `handle` (`None`: no more).
    pub async fn trickle(&self, handle: u64, candidate: Option<Value>) -> Result<(), JanusError> {
        let candidate = candidate.unwrap_or_else(|| json!({"completed": true}));
        self.janus
            .request(json!({
                "janus": "trickle",
                "session_id": self.id,
                "handle_id": handle,
                "candidate": candidate,
            }))
            .await
            .map(drop)
    }

    /// Detaches `handle` (its peer connection there closes).
    pub async fn detach(&self, handle: u64) -> Result<(), JanusError> {
        self.janus
            .request(json!({"janus": "detach", "session_id": self.id, "handle_id": handle}))
            .await
            .map(drop)
    }
}

impl Drop for JanusSession {
    fn drop(&mut self) {
        self.keepalive.abort();
        lock(&self.janus.notices).remove(&self.id);
        let janus = Arc::clone(&self.janus);
        let id = self.id;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = janus
                    .request(json!({"janus": "destroy", "session_id": id}))
                    .await;
            });
        }
    }
}

/// A table of the connection; a panicked holder leaves it usable.
fn lock<T>(table: &Mutex<T>) -> MutexGuard<'_, T> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request's name for messages: `message/join`, `trickle`, ...
fn describe(message: &Value) -> String {
    let kind = message["janus"].as_str().unwrap_or("request");
    match message["body"]["request"].as_str() {
        Some(request) => format!("{kind}/{request}"),
        None => kind.to_owned(),
    }
}

/// Hands one frame from Janus to the request it answers, or, answering none, to its
/// session's notices. An `ack` of a plugin message only says that the answer comes
/// later, as an `event`.
fn answer(pending: &Mutex<Pending>, notices: &Mutex<Notices>, text: &str) {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        tracing::debug!("an unreadable frame from Janus");
        return;
    };
    let waited = frame["transaction"]
        .as_str()
        .filter(|transaction| lock(pending).contains_key(*transaction));
    let Some(transaction) = waited else {
        let session = frame["session_id"].as_u64().unwrap_or_default();
        if let Some(notices) = lock(notices).get(&session) {
            let _ = notices.send(frame);
        }
        return;
    };
    let reply = match frame["janus"].as_str().unwrap_or_default() {
        // A plugin message's ack only says that its answer comes later, as an event.
        "ack" if wants_event(transaction) => return,
        "ack" => Ok(JanusReply {
            data: Value::Null,
            jsep: None,
        }),
        "success" => Ok(JanusReply {
            data: frame
                .pointer("/plugindata/data")
                .or_else(|| frame.get("data"))
                .cloned()
                .unwrap_or(Value::Null),
            jsep: None,
        }),
        "event" => Ok(JanusReply {
            data: frame
                .pointer("/plugindata/data")
                .cloned()
                .unwrap_or(Value::Null),
            jsep: frame.get("jsep").cloned(),
        }),
        "error" => Err(JanusError::Refused {
            request: "request".to_owned(),
            reason: frame["error"]["reason"]
                .as_str()
                .unwrap_or("no reason given")
                .to_owned(),
        }),
        _ => return,
    };
    if let Some(waiter) = lock(pending).remove(transaction) {
        let _ = waiter.send(reply);
    }
}

/// Whether the request of `transaction` is a plugin message (answered by an event
/// after its ack, or at once by `success`): their transactions end in `m`.
fn wants_event(transaction: &str) -> bool {
    transaction.ends_with('m')
}

/// Turns a plugin's error answer (`error_code` in its data) into a refusal.
fn plugin_error(request: &str, reply: JanusReply) -> Result<JanusReply, JanusError> {
    match reply.data.get("error") {
        Some(reason) => Err(JanusError::Refused {
            request: request.to_owned(),
            reason: reason.as_str().unwrap_or("no reason given").to_owned(),
        }),
        None => Ok(reply),
    }
}
