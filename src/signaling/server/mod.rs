//! The signaling server: rooms of peers that relay offers, answers and ICE candidates
//! to each other over WebSocket (`GET /ws`).
//!
//! It runs alone (`meetspace serve`) or inside the client (`meetspace` with no
//! `--signal`). Every frame a client sends is untrusted: it is size-limited by the
//! WebSocket layer, rate-limited per connection, and parsed into a typed message; a bad
//! one gets a typed error and never affects another connection or room.
//!
//! The rooms and their rules are the hub (`hub.rs`: pure, no I/O); each connection's
//! WebSocket side (`connection.rs`) feeds it what its client asks and sends what it
//! decides.

mod connection;
mod hub;
pub mod janus;
pub mod sfu;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeader;

use self::connection::{ServerState, upgrade};
use self::hub::Hub;
use self::sfu::{Sfu, SfuSettings};
use super::tls::TlsListener;
use super::turn_credentials::TurnCredentials;

/// Default number of peers one room holds.
pub const DEFAULT_ROOM_CAPACITY: usize = 8;
/// Default number of peers the space's lobby holds.
pub const DEFAULT_LOBBY_CAPACITY: usize = 100;
/// Shared screens one room shows at once: one, and a second sharer is asked whether
/// to take over.
pub const DEFAULT_ROOM_SHARERS: usize = 1;
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

/// The limits a server enforces; each is a flag of `meetspace serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerLimits {
    /// Peers one room holds; the next joiner gets `room_full`.
    #[arg(long, default_value_t = DEFAULT_ROOM_CAPACITY, value_parser = at_least_one)]
    pub room_capacity: usize,
    /// Peers the space's lobby (room `lobby`) holds; the next one gets `room_full`.
    #[arg(long, default_value_t = DEFAULT_LOBBY_CAPACITY, value_parser = at_least_one)]
    pub lobby_capacity: usize,
    /// Screens one room shows at once; the next sharer gets `share_refused` (and may
    /// take over from the earliest).
    #[arg(long, default_value_t = DEFAULT_ROOM_SHARERS, value_parser = at_least_one)]
    pub room_sharers: usize,
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
            lobby_capacity: DEFAULT_LOBBY_CAPACITY,
            room_sharers: DEFAULT_ROOM_SHARERS,
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
                hub: Arc::new(Mutex::new(
                    Hub::new(limits.room_capacity, limits.max_rooms)
                        .with_lobby_capacity(limits.lobby_capacity)
                        .with_room_sharers(limits.room_sharers),
                )),
                limits: Arc::new(limits),
                connections: Arc::new(AtomicUsize::new(0)),
                next_connection: Arc::new(AtomicU64::new(0)),
                turn: None,
                traffic: Arc::default(),
                sfu: None,
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

    /// Moves rooms that reach `settings.mesh_limit` people to the SFU (Janus).
    #[must_use]
    pub fn with_sfu(mut self, settings: SfuSettings) -> Self {
        self.state.hub().set_mesh_limit(settings.mesh_limit);
        self.state.sfu = Some(Arc::new(Sfu::new(settings)));
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
            Some(root) => signaling.fallback_service(web_app(root)),
            None => signaling.route(
                "/",
                get(|| async { "meetspace signaling server: connect to /ws\n" }),
            ),
        }
        .with_state(self.state);
        match self.tls {
            Some(config) => axum::serve(TlsListener::new(self.listener, config), app).await,
            None => axum::serve(self.listener.tap_io(send_at_once), app).await,
        }
    }
}

/// Turns off Nagle's algorithm on an accepted connection: signaling messages are small and
/// come in bursts (an offer, then its candidates), and held back until the previous one is
/// acknowledged, each waited out the peer's delayed ACK (about 40 ms a message on Linux).
pub(super) fn send_at_once(tcp: &mut tokio::net::TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
    }
}

/// The browser app's files under `root`. A browser that accepts brotli or gzip gets a
/// file's `.br` or `.gz` twin when there is one (`scripts/build-web.sh` writes gzip
/// twins, and brotli ones for `--release`: the bundle is a quarter of its size or less
/// so), and every answer says `Cache-Control: no-cache`: browsers keep the bundle but
/// ask whether it changed (`If-Modified-Since`, answered 304) before using it, as its
/// file names stay the same from one build to the next.
fn web_app(root: PathBuf) -> SetResponseHeader<ServeDir, HeaderValue> {
    SetResponseHeader::overriding(
        ServeDir::new(root).precompressed_br().precompressed_gzip(),
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    )
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

/// Messages a server has handled since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerTraffic {
    /// Received from clients.
    pub received: u64,
    /// Sent to clients.
    pub sent: u64,
}

impl ServerMonitor {
    /// The messages handled so far.
    pub fn traffic(&self) -> ServerTraffic {
        ServerTraffic {
            received: self.0.traffic.received.load(Ordering::Relaxed),
            sent: self.0.traffic.sent.load(Ordering::Relaxed),
        }
    }

    /// The sizes now.
    pub fn sizes(&self) -> ServerSizes {
        let hub = self.0.hub();
        ServerSizes {
            connections: self.0.connections.load(Ordering::Relaxed),
            rooms: hub.room_count(),
            members: hub.place_count(),
            away: hub.away_count(),
        }
    }
}
