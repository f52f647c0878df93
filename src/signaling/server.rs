//! The signaling server: rooms of peers that relay offers, answers and ICE candidates
//! to each other over WebSocket (`GET /ws`).
//!
//! It runs alone (`meetspace serve`) or inside the client (`meetspace` with no
//! `--signal`). Every frame a client sends is untrusted: it is size-limited by the
//! WebSocket layer, rate-limited per connection, and parsed into a typed message; a bad
//! one gets a typed error and never affects another connection or room.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tower_http::services::ServeDir;

use super::protocol::{
    ClientMessage, DisplayName, ErrorCode, PeerId, PeerInfo, RoomId, RoomSummary, ServerMessage,
};

/// Default number of peers one room holds.
pub const DEFAULT_ROOM_CAPACITY: usize = 8;
/// Default number of rooms one server holds.
pub const DEFAULT_MAX_ROOMS: usize = 10_000;
/// Default largest message, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Default sustained messages per second per connection.
pub const DEFAULT_RATE_PER_SEC: u32 = 50;
/// Default burst of messages a connection may send at once.
pub const DEFAULT_RATE_BURST: u32 = 200;

/// WebSocket close code for "message too big" (RFC 6455, 7.4.1).
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
/// WebSocket close code for "policy violation" (used when a client cannot keep up).
const CLOSE_POLICY_VIOLATION: u16 = 1008;
/// Messages queued to one client before it counts as too slow and is dropped.
const OUTBOX_CAPACITY: usize = 256;
/// How long a closing connection gets to flush its last messages.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The limits a server enforces; each is a flag of `meetspace serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerLimits {
    /// Peers one room holds; the next joiner gets `room_full`.
    #[arg(long, default_value_t = DEFAULT_ROOM_CAPACITY, value_parser = at_least_one)]
    pub room_capacity: usize,
    /// Rooms the server holds at once; the next create gets `server_full`.
    #[arg(long, default_value_t = DEFAULT_MAX_ROOMS)]
    pub max_rooms: usize,
    /// Largest message in bytes; a larger one closes the connection (code 1009).
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Sustained messages per second per connection; the excess gets `rate_limited`.
    #[arg(long, default_value_t = DEFAULT_RATE_PER_SEC)]
    pub rate_per_sec: u32,
    /// Messages a connection may send in one burst before the rate limit applies.
    #[arg(long, default_value_t = DEFAULT_RATE_BURST)]
    pub rate_burst: u32,
}

fn at_least_one(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            room_capacity: DEFAULT_ROOM_CAPACITY,
            max_rooms: DEFAULT_MAX_ROOMS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            rate_per_sec: DEFAULT_RATE_PER_SEC,
            rate_burst: DEFAULT_RATE_BURST,
        }
    }
}

/// A server bound to its port and ready to [`run`](Self::run).
pub struct SignalingServer {
    listener: TcpListener,
    state: ServerState,
    /// The browser app's folder, served at `/`.
    web_root: Option<PathBuf>,
}

impl SignalingServer {
    /// Binds the listening socket (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, limits: ServerLimits) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            state: ServerState {
                hub: Arc::new(Mutex::new(Hub::default())),
                limits: Arc::new(limits),
            },
            web_root: None,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// The URL clients connect to (`ws://ADDR/ws`).
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.local_addr())
    }

    /// Also serves the browser app from `root` (its index.html at `/`), so one
    /// address hosts both the page and the signaling it connects to.
    pub fn serve_web_app(mut self, root: PathBuf) -> Self {
        self.web_root = Some(root);
        self
    }

    /// Serves until the task is dropped or the listener fails.
    pub async fn run(self) -> std::io::Result<()> {
        let signaling = Router::new().route("/ws", get(upgrade));
        let app = match self.web_root {
            Some(root) => signaling.fallback_service(ServeDir::new(root)),
            None => signaling.route(
                "/",
                get(|| async { "meetspace signaling server: connect to /ws\n" }),
            ),
        }
        .with_state(self.state);
        axum::serve(self.listener, app).await
    }
}

#[derive(Clone)]
struct ServerState {
    hub: Arc<Mutex<Hub>>,
    limits: Arc<ServerLimits>,
}

impl ServerState {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock cannot leave a room half-updated in a way that
        // matters more than losing the whole server, so keep serving.
        self.hub
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn upgrade(upgrade: WebSocketUpgrade, State(state): State<ServerState>) -> Response {
    let max = state.limits.max_message_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve_connection(socket, state))
}

/// What the writer task of one connection sends.
enum Outgoing {
    Message(ServerMessage),
    Close { code: u16, reason: &'static str },
}

/// The handle through which others reach one connection.
#[derive(Clone)]
struct Mailbox {
    outbox: mpsc::Sender<Outgoing>,
    /// Woken when the connection must be dropped (its outbox overflowed).
    kick: Arc<Notify>,
}

impl Mailbox {
    /// Queues a message; a peer too slow to drain its outbox is disconnected.
    fn deliver(&self, message: ServerMessage) {
        if self.outbox.try_send(Outgoing::Message(message)).is_err() {
            self.kick.notify_one();
        }
    }
}

struct Member {
    info: PeerInfo,
    mailbox: Mailbox,
}

/// Most rooms one `room_list` names.
const MAX_LISTED_ROOMS: usize = 100;

/// Peers of one room, oldest first.
struct Room {
    members: Vec<Member>,
    /// The lobby title of a public room; private rooms have none.
    public_title: Option<DisplayName>,
}

impl Room {
    fn broadcast(&self, except: &PeerId, message: &ServerMessage) {
        for member in self.members.iter().filter(|m| &m.info.peer_id != except) {
            member.mailbox.deliver(message.clone());
        }
    }
}

#[derive(Default)]
struct Hub {
    rooms: HashMap<RoomId, Room>,
}

impl Hub {
    fn create(
        &mut self,
        limits: &ServerLimits,
        name: DisplayName,
        public_title: Option<DisplayName>,
        mailbox: Mailbox,
    ) -> Result<(RoomId, PeerId), ErrorCode> {
        if self.rooms.len() >= limits.max_rooms {
            return Err(ErrorCode::ServerFull);
        }
        let room_id = loop {
            let candidate = RoomId::random();
            if !self.rooms.contains_key(&candidate) {
                break candidate;
            }
        };
        let peer_id = PeerId::random();
        let room = Room {
            members: vec![Member {
                info: PeerInfo {
                    peer_id: peer_id.clone(),
                    name,
                },
                mailbox,
            }],
            public_title,
        };
        self.rooms.insert(room_id.clone(), room);
        Ok((room_id, peer_id))
    }

    fn join(
        &mut self,
        limits: &ServerLimits,
        room_id: &RoomId,
        name: DisplayName,
        mailbox: Mailbox,
    ) -> Result<(PeerId, Vec<PeerInfo>), ErrorCode> {
        let room = self.rooms.get_mut(room_id).ok_or(ErrorCode::RoomNotFound)?;
        if room.members.len() >= limits.room_capacity {
            return Err(ErrorCode::RoomFull);
        }
        let peer_id = loop {
            let candidate = PeerId::random();
            if room.members.iter().all(|m| m.info.peer_id != candidate) {
                break candidate;
            }
        };
        let info = PeerInfo {
            peer_id: peer_id.clone(),
            name,
        };
        let present = room.members.iter().map(|m| m.info.clone()).collect();
        room.broadcast(&peer_id, &ServerMessage::PeerJoined { peer: info.clone() });
        room.members.push(Member { info, mailbox });
        Ok((peer_id, present))
    }

    fn relay(
        &self,
        room_id: &RoomId,
        from: &PeerId,
        to: &PeerId,
        data: serde_json::Value,
    ) -> Result<(), ErrorCode> {
        let target = self
            .rooms
            .get(room_id)
            .and_then(|room| room.members.iter().find(|m| &m.info.peer_id == to))
            .filter(|_| from != to)
            .ok_or(ErrorCode::PeerNotFound)?;
        target.mailbox.deliver(ServerMessage::Signal {
            from: from.clone(),
            data,
        });
        Ok(())
    }

    fn public_rooms(&self, capacity: usize) -> Vec<RoomSummary> {
        let mut rooms: Vec<RoomSummary> = self
            .rooms
            .iter()
            .filter_map(|(room, state)| {
                Some(RoomSummary {
                    room: room.clone(),
                    title: state.public_title.clone()?,
                    participants: state.members.len(),
                    capacity,
                })
            })
            .collect();
        rooms.sort_by(|a, b| {
            b.participants
                .cmp(&a.participants)
                .then(a.title.as_str().cmp(b.title.as_str()))
        });
        rooms.truncate(MAX_LISTED_ROOMS);
        rooms
    }

    fn leave(&mut self, room_id: &RoomId, peer_id: &PeerId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        room.members.retain(|m| &m.info.peer_id != peer_id);
        if room.members.is_empty() {
            self.rooms.remove(room_id);
            tracing::info!(room = %room_id, "room closed");
        } else {
            room.broadcast(
                peer_id,
                &ServerMessage::PeerLeft {
                    peer_id: peer_id.clone(),
                },
            );
        }
        tracing::info!(room = %room_id, peer = %peer_id, "peer left");
    }
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
                ClientMessage::CreateRoom { .. } | ClientMessage::JoinRoom { .. },
                Some((room, _)),
            ) => {
                self.refuse(
                    ErrorCode::AlreadyInRoom,
                    format!("already in room {room}; leave it first"),
                );
            }
            (ClientMessage::ListRooms, _) => {
                let rooms = self
                    .state
                    .hub()
                    .public_rooms(self.state.limits.room_capacity);
                self.reply(ServerMessage::RoomList { rooms });
            }
            (ClientMessage::CreateRoom { name, public_title }, None) => {
                let created = self.state.hub().create(
                    &self.state.limits,
                    name.clone(),
                    public_title,
                    self.mailbox.clone(),
                );
                match created {
                    Ok((room, peer_id)) => {
                        tracing::info!(%room, peer = %peer_id, %name, "room created");
                        self.membership = Some((room.clone(), peer_id.clone()));
                        self.reply(ServerMessage::Welcome {
                            room,
                            peer_id,
                            peers: Vec::new(),
                        });
                    }
                    Err(code) => self.refuse(
                        code,
                        "the server holds as many rooms as it allows; try again later",
                    ),
                }
            }
            (ClientMessage::JoinRoom { room, name }, None) => {
                let joined = self.state.hub().join(
                    &self.state.limits,
                    &room,
                    name.clone(),
                    self.mailbox.clone(),
                );
                match joined {
                    Ok((peer_id, peers)) => {
                        tracing::info!(%room, peer = %peer_id, %name, "peer joined");
                        self.membership = Some((room.clone(), peer_id.clone()));
                        self.reply(ServerMessage::Welcome {
                            room,
                            peer_id,
                            peers,
                        });
                    }
                    Err(ErrorCode::RoomFull) => self.refuse(
                        ErrorCode::RoomFull,
                        format!(
                            "room {room} is full ({} people)",
                            self.state.limits.room_capacity
                        ),
                    ),
                    Err(code) => self.refuse(code, format!("no room with id {room} exists")),
                }
            }
            (ClientMessage::Signal { to, data }, Some((room, from))) => {
                if self.state.hub().relay(room, from, &to, data).is_err() {
                    self.refuse(
                        ErrorCode::PeerNotFound,
                        format!("no peer {to} in this room"),
                    );
                }
            }
            (ClientMessage::Leave, Some(_)) => self.leave_room(),
            (ClientMessage::Signal { .. } | ClientMessage::Leave, None) => {
                self.refuse(
                    ErrorCode::NotInRoom,
                    "not in a room; create or join one first",
                );
            }
        }
    }

    fn leave_room(&mut self) {
        if let Some((room, peer)) = self.membership.take() {
            self.state.hub().leave(&room, &peer);
        }
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
    let kick = Arc::new(Notify::new());
    let writer = tokio::spawn(async move {
        while let Some(item) = outgoing.recv().await {
            let frame = match item {
                Outgoing::Message(message) => match serde_json::to_string(&message) {
                    Ok(json) => Message::Text(json.into()),
                    Err(error) => {
                        tracing::error!(%error, "could not encode a server message");
                        continue;
                    }
                },
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
        state,
        mailbox: Mailbox {
            outbox: outbox.clone(),
            kick: kick.clone(),
        },
        membership: None,
        limiter: RateLimiter::new(limits.rate_per_sec, limits.rate_burst),
    };
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = kick.notified() => {
                tracing::warn!("dropping a client that does not read its messages");
                let _ = outbox.try_send(Outgoing::Close { code: CLOSE_POLICY_VIOLATION, reason: "too slow" });
                break;
            }
        };
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
    connection.leave_room();
    // The writer ends once every mailbox clone is gone: ours here, the room's on leave.
    drop(connection);
    drop(outbox);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
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
