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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

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
    ClientMessage, DisplayName, ErrorCode, Passcode, PeerId, PeerInfo, ResumeToken, RoomId,
    RoomSummary, ServerMessage,
};
use super::tls::TlsListener;
use super::turn_credentials::TurnCredentials;

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
/// Default time a dropped peer's place is kept for its `resume`, in seconds.
pub const DEFAULT_RESUME_GRACE_SECS: f64 = 30.0;
/// Default time between the server's WebSocket pings, in seconds.
pub const DEFAULT_PING_INTERVAL_SECS: f64 = 15.0;
/// Default silence after which a connection counts as dead, in seconds.
pub const DEFAULT_IDLE_TIMEOUT_SECS: f64 = 45.0;

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
    /// Seconds a peer's place is kept after its connection drops, for its `resume`;
    /// then the others get `peer_left`.
    #[arg(long = "resume-grace", value_name = "SECS", default_value_t = DEFAULT_RESUME_GRACE_SECS,
          value_parser = positive_seconds)]
    pub resume_grace_secs: f64,
    /// Seconds between WebSocket pings to every connection.
    #[arg(long = "ping-interval", value_name = "SECS", default_value_t = DEFAULT_PING_INTERVAL_SECS,
          value_parser = positive_seconds)]
    pub ping_interval_secs: f64,
    /// Seconds without any frame from a client (pongs count) before it is dropped.
    #[arg(long = "idle-timeout", value_name = "SECS", default_value_t = DEFAULT_IDLE_TIMEOUT_SECS,
          value_parser = positive_seconds)]
    pub idle_timeout_secs: f64,
}

fn positive_seconds(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(secs),
        Ok(secs) => Err(format!("{secs} s is outside (0, 86400]")),
        Err(error) => Err(error.to_string()),
    }
}

impl ServerLimits {
    fn resume_grace(&self) -> Duration {
        Duration::from_secs_f64(self.resume_grace_secs)
    }
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
            resume_grace_secs: DEFAULT_RESUME_GRACE_SECS,
            ping_interval_secs: DEFAULT_PING_INTERVAL_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
        }
    }
}

/// A server bound to its port and ready to [`run`](Self::run).
pub struct SignalingServer {
    listener: TcpListener,
    state: ServerState,
    /// Set: clients connect with `wss://`.
    tls: Option<Arc<rustls::ServerConfig>>,
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
                connections: Arc::new(AtomicUsize::new(0)),
                next_connection: Arc::new(AtomicU64::new(0)),
                turn: None,
            },
            tls: None,
            web_root: None,
        })
    }

    /// Serves over TLS (`wss://`) with these settings (see [`super::tls::server_config`]).
    #[must_use]
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Hands every client TURN servers with short-lived credentials in `welcome`.
    #[must_use]
    pub fn with_turn(mut self, turn: TurnCredentials) -> Self {
        self.state.turn = Some(Arc::new(turn));
        self
    }

    /// A handle that reports the server's sizes while it runs.
    pub fn monitor(&self) -> ServerMonitor {
        ServerMonitor(self.state.clone())
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// The URL clients connect to (`ws://ADDR/ws`, or `wss://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.local_addr())
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
        match self.tls {
            Some(config) => axum::serve(TlsListener::new(self.listener, config), app).await,
            None => axum::serve(self.listener, app).await,
        }
    }
}

/// Reads how much a running server holds (for churn figures and tests).
#[derive(Clone)]
pub struct ServerMonitor(ServerState);

/// What a server holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSizes {
    /// Open WebSocket connections.
    pub connections: usize,
    /// Rooms.
    pub rooms: usize,
    /// Places in rooms, away ones included.
    pub members: usize,
    /// Places kept for peers whose connection dropped.
    pub away: usize,
}

impl ServerMonitor {
    /// The sizes now.
    pub fn sizes(&self) -> ServerSizes {
        let hub = self.0.hub();
        let members = hub.rooms.values().flat_map(|room| &room.members);
        ServerSizes {
            connections: self.0.connections.load(Ordering::Relaxed),
            rooms: hub.rooms.len(),
            members: members.clone().count(),
            away: members.filter(|m| m.attachment.is_none()).count(),
        }
    }
}

#[derive(Clone)]
struct ServerState {
    hub: Arc<Mutex<Hub>>,
    limits: Arc<ServerLimits>,
    /// Open connections.
    connections: Arc<AtomicUsize>,
    /// The id the next connection gets.
    next_connection: Arc<AtomicU64>,
    /// TURN servers and their credentials for `welcome`.
    turn: Option<Arc<TurnCredentials>>,
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
struct Mailbox {
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

/// One place in a room.
struct Member {
    info: PeerInfo,
    /// The secret that takes this place back.
    resume_token: ResumeToken,
    /// The connection holding the place; `None` while its peer is away.
    attachment: Option<Mailbox>,
    /// When the peer went away.
    away_since: Option<Instant>,
}

impl Member {
    fn new(info: PeerInfo, resume_token: ResumeToken, mailbox: Mailbox) -> Self {
        Self {
            info,
            resume_token,
            attachment: Some(mailbox),
            away_since: None,
        }
    }
}

/// What a `resume` asks for.
struct ResumeRequest {
    room: RoomId,
    peer: PeerInfo,
    resume_token: ResumeToken,
    public_title: Option<DisplayName>,
    passcode: Option<Passcode>,
}

/// Most rooms one `room_list` names.
const MAX_LISTED_ROOMS: usize = 100;

/// Peers of one room, oldest first.
struct Room {
    members: Vec<Member>,
    /// The lobby title of a public room; private rooms have none.
    public_title: Option<DisplayName>,
    /// What joiners must give, when the creator locked the room.
    passcode: Option<Passcode>,
}

impl Room {
    fn broadcast(&self, except: &PeerId, message: &ServerMessage) {
        for member in self.members.iter().filter(|m| &m.info.peer_id != except) {
            if let Some(mailbox) = &member.attachment {
                mailbox.deliver(message.clone());
            }
        }
    }

    fn others(&self, except: &PeerId) -> Vec<PeerInfo> {
        self.members
            .iter()
            .filter(|m| &m.info.peer_id != except)
            .map(|m| m.info.clone())
            .collect()
    }

    fn admits(&self, passcode: Option<&Passcode>) -> bool {
        self.passcode
            .as_ref()
            .is_none_or(|locked| locked.admits(passcode))
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
        passcode: Option<Passcode>,
        mailbox: Mailbox,
    ) -> Result<(RoomId, PeerId, ResumeToken), ErrorCode> {
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
        let token = ResumeToken::random();
        let info = PeerInfo {
            peer_id: peer_id.clone(),
            name,
        };
        let room = Room {
            members: vec![Member::new(info, token.clone(), mailbox)],
            public_title,
            passcode,
        };
        self.rooms.insert(room_id.clone(), room);
        Ok((room_id, peer_id, token))
    }

    fn join(
        &mut self,
        limits: &ServerLimits,
        room_id: &RoomId,
        name: DisplayName,
        passcode: Option<&Passcode>,
        mailbox: Mailbox,
    ) -> Result<(PeerId, Vec<PeerInfo>, ResumeToken), ErrorCode> {
        let room = self.rooms.get_mut(room_id).ok_or(ErrorCode::RoomNotFound)?;
        if !room.admits(passcode) {
            return Err(ErrorCode::WrongPasscode);
        }
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
        let present = room.others(&peer_id);
        room.broadcast(&peer_id, &ServerMessage::PeerJoined { peer: info.clone() });
        let token = ResumeToken::random();
        room.members.push(Member::new(info, token.clone(), mailbox));
        Ok((peer_id, present, token))
    }

    /// Gives a peer its place back (see `resume` in docs/signaling.md); returns the
    /// others in the room. The connection that held the place before, if any, is
    /// closed.
    fn resume(
        &mut self,
        limits: &ServerLimits,
        request: ResumeRequest,
        mailbox: Mailbox,
    ) -> Result<Vec<PeerInfo>, ErrorCode> {
        let peer_id = request.peer.peer_id.clone();
        let Some(room) = self.rooms.get_mut(&request.room) else {
            // The server lost the room (it restarted): make it again as it was.
            if self.rooms.len() >= limits.max_rooms {
                return Err(ErrorCode::ServerFull);
            }
            let room = Room {
                members: vec![Member::new(request.peer, request.resume_token, mailbox)],
                public_title: request.public_title,
                passcode: request.passcode,
            };
            self.rooms.insert(request.room, room);
            return Ok(Vec::new());
        };
        match room.members.iter_mut().find(|m| m.info.peer_id == peer_id) {
            Some(member) => {
                if !member.resume_token.matches(&request.resume_token) {
                    return Err(ErrorCode::ResumeRefused);
                }
                if let Some(previous) = member.attachment.replace(mailbox) {
                    previous.kick("resumed on another connection");
                }
                member.away_since = None;
                member.info.name = request.peer.name.clone();
            }
            None => {
                if !room.admits(request.passcode.as_ref()) {
                    return Err(ErrorCode::WrongPasscode);
                }
                if room.members.len() >= limits.room_capacity {
                    return Err(ErrorCode::RoomFull);
                }
                room.members.push(Member::new(
                    request.peer.clone(),
                    request.resume_token,
                    mailbox,
                ));
            }
        }
        room.broadcast(&peer_id, &ServerMessage::PeerBack { peer: request.peer });
        Ok(room.others(&peer_id))
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
        // A peer that is away misses what is sent meanwhile; it renegotiates on return.
        let Some(mailbox) = &target.attachment else {
            return Ok(());
        };
        mailbox.deliver(ServerMessage::Signal {
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

    /// The connection `connection` holding `peer_id`'s place dropped: the place is
    /// kept, the others are told the peer is away. False if that connection no longer
    /// held the place (its peer resumed elsewhere).
    fn drop_out(&mut self, room_id: &RoomId, peer_id: &PeerId, connection: u64) -> bool {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return false;
        };
        let Some(member) = room.members.iter_mut().find(|m| &m.info.peer_id == peer_id) else {
            return false;
        };
        if member
            .attachment
            .as_ref()
            .is_none_or(|held| held.connection != connection)
        {
            return false;
        }
        member.attachment = None;
        member.away_since = Some(Instant::now());
        room.broadcast(
            peer_id,
            &ServerMessage::PeerAway {
                peer_id: peer_id.clone(),
            },
        );
        tracing::info!(room = %room_id, peer = %peer_id, "peer away");
        true
    }

    /// Ends a place kept for a peer that did not come back within `grace`.
    fn expire(&mut self, room_id: &RoomId, peer_id: &PeerId, grace: Duration) {
        let overdue = self.rooms.get(room_id).is_some_and(|room| {
            room.members.iter().any(|m| {
                &m.info.peer_id == peer_id && m.away_since.is_some_and(|t| t.elapsed() >= grace)
            })
        });
        if overdue {
            self.leave(room_id, peer_id);
        }
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
                let rooms = self
                    .state
                    .hub()
                    .public_rooms(self.state.limits.room_capacity);
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
                let created = self.state.hub().create(
                    &self.state.limits,
                    name.clone(),
                    public_title,
                    passcode,
                    self.mailbox.clone(),
                );
                match created {
                    Ok((room, peer_id, resume_token)) => {
                        tracing::info!(%room, peer = %peer_id, %name, "room created");
                        self.welcome(room, peer_id, Vec::new(), resume_token);
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
                let joined = self.state.hub().join(
                    &self.state.limits,
                    &room,
                    name.clone(),
                    passcode.as_ref(),
                    self.mailbox.clone(),
                );
                match joined {
                    Ok((peer_id, peers, resume_token)) => {
                        tracing::info!(%room, peer = %peer_id, %name, "peer joined");
                        self.welcome(room, peer_id, peers, resume_token);
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
                    peer: PeerInfo {
                        peer_id: peer_id.clone(),
                        name,
                    },
                    resume_token: resume_token.clone(),
                    public_title,
                    passcode,
                };
                let resumed =
                    self.state
                        .hub()
                        .resume(&self.state.limits, request, self.mailbox.clone());
                match resumed {
                    Ok(peers) => {
                        tracing::info!(%room, peer = %peer_id, "peer resumed");
                        self.welcome(room, peer_id, peers, resume_token);
                    }
                    Err(code) => {
                        self.refuse(code, refusal_text(code, Some(&room), &self.state.limits))
                    }
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

    fn welcome(
        &mut self,
        room: RoomId,
        peer_id: PeerId,
        peers: Vec<PeerInfo>,
        resume_token: ResumeToken,
    ) {
        self.membership = Some((room.clone(), peer_id.clone()));
        let ice_servers = self
            .state
            .turn
            .iter()
            .map(|turn| turn.issue(&peer_id, SystemTime::now()))
            .collect();
        self.reply(ServerMessage::Welcome {
            room,
            peer_id,
            peers,
            resume_token,
            ice_servers,
        });
    }

    fn leave_room(&mut self) {
        if let Some((room, peer)) = self.membership.take() {
            self.state.hub().leave(&room, &peer);
        }
    }

    /// The connection ended without `leave`: keep the place for the grace period.
    fn drop_out(&mut self) {
        let Some((room, peer)) = self.membership.take() else {
            return;
        };
        let connection = self.mailbox.connection;
        if !self.state.hub().drop_out(&room, &peer, connection) {
            return;
        }
        let state = self.state.clone();
        tokio::spawn(async move {
            let grace = state.limits.resume_grace();
            tokio::time::sleep(grace).await;
            state.hub().expire(&room, &peer, grace);
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
