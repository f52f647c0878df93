//! One WebSocket connection to the signaling server: reading, rate-limiting and parsing
//! what its client sends, carrying out what the hub decides, pings, idle timeouts and
//! closing.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, mpsc};

use super::ServerLimits;
use super::hub::{Delivery, Departure, Hub, ResumeRequest};
use super::sfu::{Sfu, Tell};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{
    ChatText, ClientMessage, ErrorCode, PeerId, PeerInfo, ResumeToken, RoomId, ServerMessage,
    VideoLayer,
};
use crate::signaling::turn_credentials::TurnCredentials;

/// WebSocket close code for "message too big" (RFC 6455, 7.4.1).
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
/// WebSocket close code for "policy violation" (a client that cannot keep up, or whose
/// place was taken back by its own `resume` on another connection).
const CLOSE_POLICY_VIOLATION: u16 = 1008;
/// WebSocket close code for "going away" (used for connections silent too long).
const CLOSE_GOING_AWAY: u16 = 1001;
/// Messages queued to one client before it counts as too slow and is dropped.
const OUTBOX_CAPACITY: usize = 256;
/// How long a closing connection gets to flush its last messages.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Messages the server has taken in and sent out, over all connections.
#[derive(Debug, Default)]
pub(super) struct Traffic {
    /// Text frames received from clients.
    pub(super) received: AtomicU64,
    /// Messages written to clients.
    pub(super) sent: AtomicU64,
}

/// What every connection of a server shares.
#[derive(Clone)]
pub(super) struct ServerState {
    /// The rooms, with a mailbox per place.
    pub(super) hub: Arc<Mutex<Hub<Mailbox>>>,
    /// The limits the server enforces.
    pub(super) limits: Arc<ServerLimits>,
    /// Open connections.
    pub(super) connections: Arc<AtomicUsize>,
    /// The id the next connection gets.
    pub(super) next_connection: Arc<AtomicU64>,
    /// TURN servers and their credentials for `welcome`.
    pub(super) turn: Option<Arc<TurnCredentials>>,
    /// Messages in and out.
    pub(super) traffic: Arc<Traffic>,
    /// The bridge to the SFU that rooms past the mesh limit move to, if any.
    pub(super) sfu: Option<Arc<Sfu>>,
}

impl ServerState {
    /// The hub, locked.
    pub(super) fn hub(&self) -> MutexGuard<'_, Hub<Mailbox>> {
        // A panic while holding the lock cannot leave a room half-updated in a way that
        // matters more than losing the whole server, so keep serving.
        self.hub
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `decide` on the hub, then carries out what the hub decided to send, under
    /// the same lock so that each connection gets its messages in the order decided.
    fn with_hub<T>(&self, decide: impl FnOnce(&mut Hub<Mailbox>) -> T) -> T {
        let mut hub = self.hub();
        let decided = decide(&mut hub);
        for delivery in hub.take_deliveries() {
            match delivery {
                Delivery::Message { to, message } => to.deliver(message),
                Delivery::Close { to, reason } => to.kick(reason),
            }
        }
        decided
    }

    /// Tells the SFU that `peer` left `room` (its media there goes), in the background.
    fn left_sfu(&self, room: RoomId, peer: PeerId) {
        if let Some(sfu) = self.sfu.clone() {
            tokio::spawn(async move { sfu.leave(&room, &peer).await });
        }
    }
}

/// The SFU bridge reaches members through the hub (their connection now).
impl Tell for ServerState {
    fn tell(&self, room: &RoomId, peer: &PeerId, message: ServerMessage) {
        self.with_hub(|hub| hub.tell_member(room, peer, &message));
    }

    fn on_sfu(&self, room: &RoomId) -> bool {
        self.hub().is_on_sfu(room)
    }
}

/// One `sfu_signal`, `sfu_resubscribe`, `sfu_layer` or `sfu_leave` for the SFU bridge, from the
/// member `peer` of `room`.
struct SfuStep {
    room: RoomId,
    peer: PeerId,
    request: SfuRequest,
    /// The room was on the SFU when the step came: it may open a room there.
    on_sfu: bool,
}

/// What a member asks of the SFU bridge.
enum SfuRequest {
    /// A description or candidate of its upstream (`feed` none) or of its downstream
    /// of `feed` (`sfu_signal`).
    Signal(Option<PeerId>, SignalPayload),
    /// A fresh downstream of this feed (`sfu_resubscribe`).
    Resubscribe(PeerId),
    /// This feed's camera at this simulcast layer (`sfu_layer`).
    Layer(PeerId, VideoLayer),
    /// Its place on the SFU ends (`sfu_leave`).
    Leave,
}

/// Carries out one connection's `sfu_signal`s in order (a candidate needs its
/// stream's description to have been handled), telling the client what failed.
fn sfu_worker(
    state: ServerState,
    sfu: Arc<Sfu>,
    mailbox: Mailbox,
) -> mpsc::UnboundedSender<SfuStep> {
    let (steps, mut queue) = mpsc::unbounded_channel::<SfuStep>();
    let tell: Arc<dyn Tell> = Arc::new(state);
    tokio::spawn(async move {
        while let Some(step) = queue.recv().await {
            let done = match step.request {
                SfuRequest::Signal(feed, payload) => {
                    sfu.signal(&step.room, &step.peer, feed, payload, step.on_sfu, &tell)
                        .await
                }
                SfuRequest::Resubscribe(feed) => {
                    sfu.resubscribe(&step.room, &step.peer, &feed, &tell).await
                }
                SfuRequest::Layer(feed, layer) => {
                    sfu.choose_layer(&step.room, &step.peer, &feed, layer).await
                }
                SfuRequest::Leave => {
                    sfu.leave(&step.room, &step.peer).await;
                    continue;
                }
            };
            if let Err(error) = done {
                tracing::warn!(%error, room = %step.room, peer = %step.peer, "SFU step failed");
                mailbox.deliver(ServerMessage::Error {
                    code: ErrorCode::SfuFailed,
                    message: error.to_string(),
                });
            }
        }
    });
    steps
}

/// Takes a WebSocket upgrade request and serves the connection.
pub(super) async fn upgrade(
    upgrade: WebSocketUpgrade,
    State(state): State<ServerState>,
) -> Response {
    let max = state.limits.max_message_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve_connection(socket, state))
}

/// What the writer task of one connection sends.
enum Outgoing {
    Message(ServerMessage),
    Ping,
    Close { code: u16, reason: &'static str },
}

/// Why a connection is being dropped by the server.
#[derive(Default)]
struct Kick {
    reason: OnceLock<&'static str>,
    notify: Notify,
}

/// The handle through which others reach one connection.
#[derive(Clone)]
pub(super) struct Mailbox {
    /// The connection's id, unique for the server's life.
    connection: u64,
    outbox: mpsc::Sender<Outgoing>,
    /// Woken when the connection must be dropped.
    kick: Arc<Kick>,
}

impl Mailbox {
    /// Queues a message; a peer too slow to drain its outbox is disconnected.
    fn deliver(&self, message: ServerMessage) {
        if self.outbox.try_send(Outgoing::Message(message)).is_err() {
            self.kick("too slow");
        }
    }

    /// Makes the connection close with `reason` (the first reason given wins).
    fn kick(&self, reason: &'static str) {
        let _ = self.kick.reason.set(reason);
        self.kick.notify.notify_one();
    }
}

/// Two mailboxes are the same when they reach the same connection.
impl PartialEq for Mailbox {
    fn eq(&self, other: &Self) -> bool {
        self.connection == other.connection
    }
}

/// Logs a peer's leaving, as the hub reported it.
fn log_departure(room: &RoomId, peer: &PeerId, departure: Option<Departure>) {
    let Some(departure) = departure else {
        return;
    };
    if departure == Departure::RoomClosed {
        tracing::info!(%room, "room closed");
    }
    tracing::info!(%room, %peer, "peer left");
}

/// A token bucket: `burst` messages at once, refilled at `per_sec`.
struct RateLimiter {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last_refill: Instant,
    last_reported: Option<Instant>,
}

impl RateLimiter {
    fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last_refill: Instant::now(),
            last_reported: None,
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.last_refill = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a dropped message should be reported (at most once a second).
    fn should_report(&mut self, now: Instant) -> bool {
        let due = self
            .last_reported
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if due {
            self.last_reported = Some(now);
        }
        due
    }
}

/// One client's state on the server.
struct Connection {
    state: ServerState,
    mailbox: Mailbox,
    membership: Option<(RoomId, PeerId)>,
    limiter: RateLimiter,
    /// Chat's own, tighter limit: [`CHAT_BURST`] at once, then [`CHAT_PER_SEC`].
    chat_limiter: RateLimiter,
    /// Where this connection's `sfu_signal`s go, once it sent one.
    sfu_steps: Option<mpsc::UnboundedSender<SfuStep>>,
}

/// Chat messages a connection may send at once.
const CHAT_BURST: u32 = 5;
/// Chat messages a second a connection may send after its burst.
const CHAT_PER_SEC: u32 = 1;

/// Messages for people, one per refusal.
fn refusal_text(code: ErrorCode, room: Option<&RoomId>, limits: &ServerLimits) -> String {
    let room = room.map(ToString::to_string).unwrap_or_default();
    match code {
        ErrorCode::RoomNotFound => format!("no room with id {room} exists"),
        ErrorCode::RoomFull => format!("room {room} is full ({} people)", limits.room_capacity),
        ErrorCode::ServerFull => {
            "the server holds as many rooms as it allows; try again later".to_owned()
        }
        ErrorCode::WrongPasscode => format!("room {room} needs its passcode, and that was not it"),
        ErrorCode::ResumeRefused => {
            format!("cannot take that place in room {room} back; join the room again")
        }
        other => other.to_string(),
    }
}

impl Connection {
    fn reply(&self, message: ServerMessage) {
        self.mailbox.deliver(message);
    }

    fn refuse(&self, code: ErrorCode, message: impl Into<String>) {
        self.reply(ServerMessage::Error {
            code,
            message: message.into(),
        });
    }

    fn on_text(&mut self, text: &str) {
        self.state.traffic.received.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if !self.limiter.try_take(now) {
            if self.limiter.should_report(now) {
                self.refuse(
                    ErrorCode::RateLimited,
                    "too many messages; the ones over the limit were dropped",
                );
            }
            return;
        }
        match ClientMessage::decode(text) {
            Ok(message) => self.on_message(message),
            Err(error) => {
                tracing::debug!(%error, "bad message");
                self.refuse(ErrorCode::BadMessage, error.to_string());
            }
        }
    }

    fn on_message(&mut self, message: ClientMessage) {
        match (message, &self.membership) {
            (
                ClientMessage::CreateRoom { .. }
                | ClientMessage::JoinRoom { .. }
                | ClientMessage::Resume { .. },
                Some((room, _)),
            ) => {
                self.refuse(
                    ErrorCode::AlreadyInRoom,
                    format!("already in room {room}; leave it first"),
                );
            }
            (ClientMessage::ListRooms, _) => {
                let rooms = self.state.hub().public_rooms();
                self.reply(ServerMessage::RoomList { rooms });
            }
            (
                ClientMessage::CreateRoom {
                    name,
                    public_title,
                    passcode,
                },
                None,
            ) => {
                let created = self.state.with_hub(|hub| {
                    let created =
                        hub.create(name.clone(), public_title, passcode, self.mailbox.clone());
                    created.map(|(room, peer_id, resume_token)| {
                        self.welcome(hub, &room, &peer_id, Vec::new(), &resume_token);
                        (room, peer_id)
                    })
                });
                match created {
                    Ok((room, peer_id)) => {
                        tracing::info!(%room, peer = %peer_id, %name, "room created");
                        self.membership = Some((room, peer_id));
                    }
                    Err(code) => self.refuse(code, refusal_text(code, None, &self.state.limits)),
                }
            }
            (
                ClientMessage::JoinRoom {
                    room,
                    name,
                    passcode,
                },
                None,
            ) => {
                let joined = self.state.with_hub(|hub| {
                    let joined =
                        hub.join(&room, name.clone(), passcode.as_ref(), self.mailbox.clone());
                    joined.map(|(peer_id, peers, resume_token)| {
                        self.welcome(hub, &room, &peer_id, peers, &resume_token);
                        peer_id
                    })
                });
                match joined {
                    Ok(peer_id) => {
                        tracing::info!(%room, peer = %peer_id, %name, "peer joined");
                        self.membership = Some((room, peer_id));
                    }
                    Err(code) => {
                        self.refuse(code, refusal_text(code, Some(&room), &self.state.limits))
                    }
                }
            }
            (
                ClientMessage::Resume {
                    room,
                    peer_id,
                    resume_token,
                    name,
                    public_title,
                    passcode,
                },
                None,
            ) => {
                let request = ResumeRequest {
                    room: room.clone(),
                    peer: PeerInfo::new(peer_id.clone(), name),
                    resume_token: resume_token.clone(),
                    public_title,
                    passcode,
                };
                let resumed = self.state.with_hub(|hub| {
                    let resumed = hub.resume(request, self.mailbox.clone());
                    resumed.map(|peers| self.welcome(hub, &room, &peer_id, peers, &resume_token))
                });
                match resumed {
                    Ok(()) => {
                        tracing::info!(%room, peer = %peer_id, "peer resumed");
                        self.membership = Some((room.clone(), peer_id.clone()));
                        let moved = self
                            .state
                            .with_hub(|hub| hub.take_owed_sfu_start(&room, &peer_id));
                        if moved {
                            tracing::info!(%room, peer = %peer_id, "the room moved on the SFU while the peer was away");
                            self.reply(ServerMessage::SfuStarted);
                        }
                    }
                    Err(code) => {
                        self.refuse(code, refusal_text(code, Some(&room), &self.state.limits))
                    }
                }
            }
            (ClientMessage::Signal { to, data }, Some((room, from))) => {
                let relayed = self.state.with_hub(|hub| hub.relay(room, from, &to, data));
                if relayed.is_err() {
                    self.refuse(
                        ErrorCode::PeerNotFound,
                        format!("no peer {to} in this room"),
                    );
                }
            }
            (ClientMessage::Pose { pose }, Some((room, from))) => {
                // One that comes too soon is dropped quietly: the next one replaces it.
                self.state
                    .with_hub(|hub| hub.pose(room, from, pose, Instant::now()));
            }
            (ClientMessage::Chat { scope, text }, Some((room, from))) => {
                let text = match ChatText::parse(&text) {
                    Ok(text) => text,
                    Err(error) => return self.refuse(ErrorCode::BadChat, error.to_string()),
                };
                if !self.chat_limiter.try_take(Instant::now()) {
                    return self.refuse_chat_flood();
                }
                self.state.with_hub(|hub| hub.chat(room, from, scope, text));
            }
            (ClientMessage::Hand { raised }, Some((room, from))) => {
                if !self.chat_limiter.try_take(Instant::now()) {
                    return self.refuse_chat_flood();
                }
                self.state.with_hub(|hub| hub.hand(room, from, raised));
            }
            (ClientMessage::Share { sharing, take_over }, Some((room, from))) => {
                if !self.chat_limiter.try_take(Instant::now()) {
                    return self.refuse_chat_flood();
                }
                let claimed = self
                    .state
                    .with_hub(|hub| hub.share(room, from, sharing, take_over));
                if let Err(sharers) = claimed {
                    self.reply(ServerMessage::ShareRefused { sharers });
                }
            }
            (ClientMessage::WatchSpace, Some((room, from))) => {
                // Each answer names up to 200 people: counted with chat.
                if !self.chat_limiter.try_take(Instant::now()) {
                    return self.refuse_chat_flood();
                }
                self.state.with_hub(|hub| hub.watch_space(room, from));
            }
            (ClientMessage::SfuSignal { feed, data }, Some((room, from))) => {
                let payload = match SignalPayload::from_json(&data.to_string()) {
                    Ok(payload) => payload,
                    Err(error) => return self.refuse(ErrorCode::BadMessage, error.to_string()),
                };
                let (room, from) = (room.clone(), from.clone());
                self.sfu_step(room, from, SfuRequest::Signal(feed, payload));
            }
            (ClientMessage::SfuResubscribe { feed }, Some((room, from))) => {
                let (room, from) = (room.clone(), from.clone());
                self.sfu_step(room, from, SfuRequest::Resubscribe(feed));
            }
            (ClientMessage::SfuLayer { feed, layer }, Some((room, from))) => {
                let (room, from) = (room.clone(), from.clone());
                self.sfu_step(room, from, SfuRequest::Layer(feed, layer));
            }
            (ClientMessage::SfuLeave, Some((room, from))) => {
                let (room, from) = (room.clone(), from.clone());
                self.sfu_step(room, from, SfuRequest::Leave);
            }
            (ClientMessage::Leave, Some(_)) => self.leave_room(),
            (
                ClientMessage::Signal { .. }
                | ClientMessage::Leave
                | ClientMessage::Pose { .. }
                | ClientMessage::Chat { .. }
                | ClientMessage::Hand { .. }
                | ClientMessage::Share { .. }
                | ClientMessage::SfuSignal { .. }
                | ClientMessage::SfuResubscribe { .. }
                | ClientMessage::SfuLayer { .. }
                | ClientMessage::SfuLeave
                | ClientMessage::WatchSpace,
                None,
            ) => {
                self.refuse(
                    ErrorCode::NotInRoom,
                    "not in a room; create or join one first",
                );
            }
        }
    }

    /// Hands an `sfu_signal`, `sfu_resubscribe`, `sfu_layer` or `sfu_leave` to this connection's SFU
    /// worker, in order. Only a room on the SFU opens a room there; one going back to a
    /// mesh keeps its streams until its members leave them.
    fn sfu_step(&mut self, room: RoomId, peer: PeerId, request: SfuRequest) {
        let Some(sfu) = self.state.sfu.clone() else {
            return self.refuse(ErrorCode::SfuFailed, "this server has no SFU");
        };
        let step = SfuStep {
            on_sfu: self.state.hub().is_on_sfu(&room),
            room,
            peer,
            request,
        };
        let steps = self
            .sfu_steps
            .get_or_insert_with(|| sfu_worker(self.state.clone(), sfu, self.mailbox.clone()));
        let _ = steps.send(step);
    }

    /// Refuses a chat, hand, share or `watch_space` message past the allowance they
    /// share.
    fn refuse_chat_flood(&mut self) {
        self.refuse(
            ErrorCode::RateLimited,
            format!(
                "too many chat, hand and watch_space messages: at most {CHAT_BURST} at once, \
                 then {CHAT_PER_SEC} a second"
            ),
        );
    }

    /// Welcomes this connection into `room`, from inside the hub's lock (`hub`) that
    /// put it there: whatever the hub tells it next (someone who joins a moment later)
    /// then comes after the welcome, which a client needs first.
    fn welcome(
        &self,
        hub: &Hub<Mailbox>,
        room: &RoomId,
        peer_id: &PeerId,
        peers: Vec<PeerInfo>,
        resume_token: &ResumeToken,
    ) {
        let ice_servers = self
            .state
            .turn
            .iter()
            .map(|turn| turn.issue(peer_id, SystemTime::now()))
            .collect();
        self.reply(ServerMessage::Welcome {
            room: room.clone(),
            peer_id: peer_id.clone(),
            peers,
            resume_token: resume_token.clone(),
            ice_servers,
            sfu: hub.is_on_sfu(room),
        });
    }

    fn leave_room(&mut self) {
        if let Some((room, peer)) = self.membership.take() {
            let departure = self.state.with_hub(|hub| hub.leave(&room, &peer));
            log_departure(&room, &peer, departure);
            self.state.left_sfu(room, peer);
        }
    }

    /// The connection ended without `leave`: keep the place for the grace period.
    fn drop_out(&mut self) {
        let Some((room, peer)) = self.membership.take() else {
            return;
        };
        let dropped = self
            .state
            .with_hub(|hub| hub.drop_out(&room, &peer, &self.mailbox, Instant::now()));
        if !dropped {
            return;
        }
        tracing::info!(%room, %peer, "peer away");
        let state = self.state.clone();
        tokio::spawn(async move {
            let grace = state.limits.resume_grace();
            tokio::time::sleep(grace).await;
            let departure = state.with_hub(|hub| hub.expire(&room, &peer, grace, Instant::now()));
            if departure.is_some() {
                state.left_sfu(room.clone(), peer.clone());
            }
            log_departure(&room, &peer, departure);
        });
    }
}

fn is_capacity_error(error: axum::Error) -> bool {
    matches!(
        error
            .into_inner()
            .downcast_ref::<tokio_tungstenite::tungstenite::Error>(),
        Some(tokio_tungstenite::tungstenite::Error::Capacity(_))
    )
}

async fn serve_connection(socket: WebSocket, state: ServerState) {
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel(OUTBOX_CAPACITY);
    let kick = Arc::new(Kick::default());
    let open_connections = state.connections.clone();
    open_connections.fetch_add(1, Ordering::Relaxed);
    let traffic = state.traffic.clone();
    let writer = tokio::spawn(async move {
        while let Some(item) = outgoing.recv().await {
            let frame = match item {
                Outgoing::Message(message) => match serde_json::to_string(&message) {
                    Ok(json) => {
                        traffic.sent.fetch_add(1, Ordering::Relaxed);
                        Message::Text(json.into())
                    }
                    Err(error) => {
                        tracing::error!(%error, "could not encode a server message");
                        continue;
                    }
                },
                Outgoing::Ping => Message::Ping(Default::default()),
                Outgoing::Close { code, reason } => Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })),
            };
            let closing = matches!(frame, Message::Close(_));
            if sink.send(frame).await.is_err() || closing {
                break;
            }
        }
    });

    let limits = state.limits.clone();
    let mut connection = Connection {
        mailbox: Mailbox {
            connection: state.next_connection.fetch_add(1, Ordering::Relaxed),
            outbox: outbox.clone(),
            kick: kick.clone(),
        },
        state,
        membership: None,
        limiter: RateLimiter::new(limits.rate_per_sec, limits.rate_burst),
        chat_limiter: RateLimiter::new(CHAT_PER_SEC, CHAT_BURST),
        sfu_steps: None,
    };
    let idle_timeout = Duration::from_secs_f64(limits.idle_timeout_secs);
    let mut ping = tokio::time::interval(Duration::from_secs_f64(limits.ping_interval_secs));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = kick.notify.notified() => {
                let reason = kick.reason.get().copied().unwrap_or("dropped");
                tracing::warn!(reason, "dropping a client");
                let _ = outbox.try_send(Outgoing::Close { code: CLOSE_POLICY_VIOLATION, reason });
                break;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= idle_timeout {
                    tracing::info!("dropping a client silent for {idle_timeout:?}");
                    let _ = outbox.try_send(Outgoing::Close { code: CLOSE_GOING_AWAY, reason: "idle" });
                    break;
                }
                let _ = outbox.try_send(Outgoing::Ping);
                continue;
            }
        };
        last_heard = Instant::now();
        match frame {
            Some(Ok(Message::Text(text))) => connection.on_text(text.as_str()),
            Some(Ok(Message::Binary(_))) => connection.refuse(
                ErrorCode::BadMessage,
                "binary frames are not part of the protocol; send JSON text",
            ),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(error)) => {
                if is_capacity_error(error) {
                    connection.refuse(
                        ErrorCode::MessageTooLarge,
                        format!("messages are limited to {} bytes", limits.max_message_bytes),
                    );
                    let _ = outbox.try_send(Outgoing::Close {
                        code: CLOSE_MESSAGE_TOO_BIG,
                        reason: "message too large",
                    });
                }
                break;
            }
        }
    }
    connection.drop_out();
    // The writer ends once every mailbox clone is gone: ours here, the room's on leave.
    drop(connection);
    drop(outbox);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
    open_connections.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_a_burst_then_the_sustained_rate() {
        let mut limiter = RateLimiter::new(10, 5);
        let start = Instant::now();
        assert_eq!((0..8).filter(|_| limiter.try_take(start)).count(), 5);
        // Half a second later, five more tokens have arrived.
        let later = start + Duration::from_millis(500);
        assert_eq!((0..8).filter(|_| limiter.try_take(later)).count(), 5);
        assert!(limiter.should_report(later));
        assert!(!limiter.should_report(later + Duration::from_millis(10)));
        assert!(limiter.should_report(later + Duration::from_secs(1)));
    }
}
