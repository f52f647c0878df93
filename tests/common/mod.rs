//! Helpers shared by the integration tests: a real signaling server on 127.0.0.1,
//! headless meetspace clients, and a raw protocol client for poking the server.

#![allow(dead_code)] // each test binary uses its own subset

pub mod checks;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use futures_util::{SinkExt, StreamExt};
use meetspace::call::{
    CallCommand, CallNotice, CallState, Participant, SelfView, SendStats, VideoFeed,
};
use meetspace::config::ClientConfig;
use meetspace::headless::headless_app;
use meetspace::media::SendSettings;
use meetspace::runtime::AsyncRuntime;
use meetspace::signaling::protocol::{DisplayName, RoomId, ServerMessage};
use meetspace::signaling::server::{ServerLimits, ServerMonitor, SignalingServer};
use meetspace::signaling::turn_credentials::TurnCredentials;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A signaling server on a free loopback port; stops when dropped.
pub struct TestServer {
    pub runtime: AsyncRuntime,
    pub url: String,
    pub addr: SocketAddr,
    pub monitor: ServerMonitor,
}

impl TestServer {
    pub fn start() -> Self {
        Self::with_limits(ServerLimits::default())
    }

    pub fn with_limits(limits: ServerLimits) -> Self {
        Self::start_at(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), limits)
    }

    /// A server on `addr` (port 0: a free one); e.g. again on the port of one that
    /// was stopped, to restart it without its state.
    pub fn start_at(addr: SocketAddr, limits: ServerLimits) -> Self {
        Self::start_configured(addr, limits, |server| server)
    }

    /// A server on a free port of 127.0.0.1 that hands out `turn` credentials.
    pub fn with_turn(turn: TurnCredentials) -> Self {
        Self::start_configured(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ServerLimits::default(),
            |server| server.with_turn(turn),
        )
    }

    /// [`TestServer::start_at`], with `configure` applied to the bound server.
    pub fn start_configured(
        addr: SocketAddr,
        limits: ServerLimits,
        configure: impl FnOnce(SignalingServer) -> SignalingServer,
    ) -> Self {
        let runtime = AsyncRuntime::new().unwrap();
        // A server stopped a moment ago may still hold the port for a little while.
        let deadline = Instant::now() + Duration::from_secs(5);
        let server = loop {
            match runtime
                .handle()
                .block_on(SignalingServer::bind(addr, limits.clone()))
            {
                Ok(server) => break server,
                Err(error) if Instant::now() < deadline => {
                    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{error}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => panic!("cannot bind {addr}: {error}"),
            }
        };
        let server = configure(server);
        let url = server.url();
        let monitor = server.monitor();
        let addr = server.local_addr();
        runtime.handle().spawn(server.run());
        Self {
            runtime,
            url,
            addr,
            monitor,
        }
    }

    /// Runs a future on the server's runtime (for raw protocol clients).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.handle().block_on(future)
    }
}

/// Sends the clients' log (the app's filter, or `RUST_LOG`) to the test's output, which
/// the harness shows when the test fails: what a client warned of explains a failure
/// seen only on CI. Set once per test binary; what a thread logs shows in the output of
/// the test that started it.
pub fn log_to_test_output() {
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(meetspace::app::log_filter())
        .with_test_writer()
        .try_init();
}

/// Every [`CallNotice`] an app has seen, in order.
#[derive(Resource, Default)]
pub struct NoticeLog(pub Vec<CallNotice>);

fn record_notices(mut notices: MessageReader<CallNotice>, mut log: ResMut<NoticeLog>) {
    log.0.extend(notices.read().cloned());
}

/// A headless meetspace client calling through `url`, ready for manual `update()`s.
pub fn client(url: &str, name: &str) -> App {
    client_with(url, name, SendSettings::default())
}

/// The settings of a client called `name`, signaling through `url`, sending `media`.
pub fn config(url: &str, name: &str, media: SendSettings) -> ClientConfig {
    ClientConfig {
        media,
        ..ClientConfig::synthetic(url.parse().unwrap(), DisplayName::parse(name).unwrap())
    }
}

/// A headless client sending `media` (its tone tells its audio apart from others').
pub fn client_with(url: &str, name: &str, media: SendSettings) -> App {
    client_from(config(url, name, media))
}

/// Keeps every [`CallNotice`] `app` sees in its [`NoticeLog`] (for [`notices`]).
pub fn log_notices(app: &mut App) {
    app.init_resource::<NoticeLog>()
        .add_systems(Last, record_notices);
}

/// A headless client called `name` with the space (no window, no GPU, the same
/// systems), sending small video.
pub fn space_client(url: &str, name: &str) -> App {
    let media = SendSettings {
        width: 320,
        height: 240,
        video_kbps: 300,
        ..SendSettings::default()
    };
    space_client_with(config(url, name, media))
}

/// A headless client with the space and these settings.
pub fn space_client_with(config: ClientConfig) -> App {
    log_to_test_output();
    let mut app = headless_app(config);
    app.add_plugins(bevy::input::InputPlugin)
        .init_asset::<Mesh>()
        .init_asset::<StandardMaterial>()
        .add_plugins(meetspace::space::SpacePlugin);
    log_notices(&mut app);
    app.finish();
    app.cleanup();
    app
}

/// `meetspace bot` as `name`, signaling through `url`; where it goes (`--room`,
/// `--lobby`, `--create`) and more flags to add.
pub fn bot_command(url: &str, name: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_meetspace"));
    command.args(["bot", "--signal", url, "--name", name]);
    command
}

/// `meetspace bot --lobby` as `name`, signaling through `url`; more flags to add.
pub fn lobby_bot_command(url: &str, name: &str) -> std::process::Command {
    let mut command = bot_command(url, name);
    command.arg("--lobby");
    command
}

/// A headless client with these settings.
pub fn client_from(config: ClientConfig) -> App {
    log_to_test_output();
    let mut app = headless_app(config);
    log_notices(&mut app);
    app.finish();
    app.cleanup();
    app
}

pub fn create_room(app: &mut App) {
    let name = app.world().resource::<ClientConfig>().name.clone();
    app.world_mut().write_message(CallCommand::CreateRoom {
        name,
        public_title: None,
    });
}

pub fn join_room(app: &mut App, room: &RoomId) {
    let name = app.world().resource::<ClientConfig>().name.clone();
    app.world_mut().write_message(CallCommand::JoinRoom {
        room: room.clone(),
        name,
    });
}

pub fn leave(app: &mut App) {
    app.world_mut().write_message(CallCommand::Leave);
}

pub fn state(app: &App) -> CallState {
    app.world().resource::<CallState>().clone()
}

pub fn room_of(app: &App) -> Option<RoomId> {
    match state(app) {
        CallState::InCall { room, .. } => Some(room),
        _ => None,
    }
}

/// Names of the remote participants this app shows, sorted.
pub fn participant_names(app: &mut App) -> Vec<String> {
    let world = app.world_mut();
    let mut names: Vec<String> = world
        .query::<&Participant>()
        .iter(world)
        .map(|p| p.name.to_string())
        .collect();
    names.sort();
    names
}

pub fn notices(app: &App) -> &[CallNotice] {
    &app.world().resource::<NoticeLog>().0
}

/// Frames written into the panel image of the participant called `name` so far.
pub fn frames_shown(app: &mut App, name: &str) -> Option<u64> {
    let world = app.world_mut();
    let mut query = world.query::<(&Participant, &VideoFeed)>();
    query
        .iter(world)
        .find(|(participant, _)| participant.name.as_str() == name)
        .map(|(_, feed)| feed.frames_shown)
}

/// What this process holds: threads, open file descriptors, resident memory (KiB).
#[derive(Debug, Clone, Copy)]
pub struct ProcessFigures {
    pub threads: usize,
    pub fds: usize,
    pub rss_kib: u64,
}

unsafe extern "C" {
    /// glibc: gives the free memory of every heap arena back to the system.
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
}

impl ProcessFigures {
    /// The figures now; resident memory after the allocator gave back what it keeps
    /// free (glibc keeps freed memory in one arena per thread that used it, and how much
    /// depends on how threads were scheduled), so that it counts what is held.
    pub fn now() -> Self {
        // SAFETY: malloc_trim only releases free memory; it is safe at any time.
        unsafe { malloc_trim(0) };
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
        };
        Self {
            threads: usize::try_from(field("Threads:")).unwrap(),
            fds: std::fs::read_dir("/proc/self/fd").unwrap().count(),
            rss_kib: field("VmRSS:"),
        }
    }
}

/// Frames our own capture has put on the self-view so far.
pub fn self_view_frames(app: &mut App) -> u64 {
    let world = app.world_mut();
    let mut query = world.query_filtered::<&VideoFeed, With<SelfView>>();
    query.single(world).expect("one self-view").frames_shown
}

/// Capture sources (camera, microphone, synthetic) the app has open now.
pub fn open_captures(app: &App) -> u64 {
    app.world()
        .resource::<SendStats>()
        .open_captures
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Asserts that the local media sources are released: the count of open capture
/// handles drops to zero, and once what was in flight has landed, not one more
/// captured frame reaches the self-view for a second.
pub fn assert_capture_stopped(app: &mut App) {
    let closed = pump_until(&mut [&mut *app], Duration::from_secs(2), |apps| {
        open_captures(apps[0]) == 0
    });
    assert!(
        closed,
        "{} capture handles still open after the call ended",
        open_captures(app)
    );
    pump_until(&mut [&mut *app], Duration::from_millis(500), |_| false);
    let captured = self_view_frames(app);
    pump_until(&mut [&mut *app], Duration::from_secs(1), |_| false);
    assert_eq!(
        self_view_frames(app),
        captured,
        "capture went on after the call ended"
    );
}

/// Updates every app until `done` holds or `timeout` passes; returns whether it held.
pub fn pump_until(
    apps: &mut [&mut App],
    timeout: Duration,
    mut done: impl FnMut(&mut [&mut App]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        for app in apps.iter_mut() {
            app.update();
        }
        if done(apps) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Creates a room with `host` and returns its id once the host is in it.
pub fn host_room(host: &mut App) -> RoomId {
    create_room(host);
    assert!(
        pump_until(&mut [host], Duration::from_secs(5), |apps| room_of(apps[0])
            .is_some()),
        "the host never entered its room: {:?}",
        notices(host)
    );
    room_of(host).unwrap()
}

/// A client speaking the wire protocol directly, for tests of the server itself.
pub struct RawClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawClient {
    pub async fn connect(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { socket }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.try_send_text(text).await.unwrap();
    }

    /// Sends a text frame; fails if the server has already closed the connection.
    pub async fn try_send_text(
        &mut self,
        text: impl Into<String>,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.socket.send(Message::text(text.into())).await
    }

    pub async fn send_json(&mut self, value: serde_json::Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket.send(Message::binary(bytes)).await.unwrap();
    }

    /// The next frame, or `None` if nothing came within `wait` or the socket closed.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Message> {
        match tokio::time::timeout(wait, self.socket.next()).await {
            Ok(Some(Ok(frame))) => Some(frame),
            _ => None,
        }
    }

    /// The next protocol message (skipping control frames), within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<ServerMessage> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await? {
                Message::Text(text) => return Some(serde_json::from_str(text.as_str()).unwrap()),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    pub async fn recv(&mut self) -> ServerMessage {
        self.recv_within(Duration::from_secs(5))
            .await
            .expect("no message from the server within 5 s")
    }

    /// Creates a room; returns (room id, own peer id).
    pub async fn create(&mut self, name: &str) -> (String, String) {
        self.send_json(serde_json::json!({"type": "create_room", "name": name}))
            .await;
        match self.recv().await {
            ServerMessage::Welcome { room, peer_id, .. } => (room.to_string(), peer_id.to_string()),
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Joins a room; returns the welcome message.
    pub async fn join(&mut self, room: &str, name: &str) -> ServerMessage {
        self.send_json(serde_json::json!({"type": "join_room", "room": room, "name": name}))
            .await;
        self.recv().await
    }

    /// Drops the TCP connection without a WebSocket goodbye.
    pub fn kill(self) {
        drop(self.socket);
    }
}

/// A private PulseAudio daemon with one null sink (no sound card needed), in its own
/// runtime directory; killed when dropped. Clients reach it through `PULSE_SERVER`.
pub struct PulseServer {
    daemon: std::process::Child,
    dir: std::path::PathBuf,
    /// The `PULSE_SERVER` value for clients.
    pub server: String,
}

/// Name of the null sink the test daemon plays into.
pub const TEST_SINK: &str = "meetspace_test";

impl PulseServer {
    /// Starts the daemon and waits until it answers. Panics, saying what to install,
    /// when PulseAudio is missing.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("meetspace-pulse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("native");
        let daemon = std::process::Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=false",
            ])
            .args(["--disable-shm=true", "--log-target=stderr"])
            .arg(format!(
                "--load=module-native-protocol-unix socket={} auth-anonymous=1",
                socket.display()
            ))
            .arg(format!(
                "--load=module-null-sink sink_name={TEST_SINK} rate=48000 channels=2"
            ))
            .env("HOME", &dir)
            .env("XDG_RUNTIME_DIR", &dir)
            .env("XDG_CONFIG_HOME", &dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start pulseaudio ({error}): run ./setup.sh, or apt-get install \
                     pulseaudio pulseaudio-utils libasound2-plugins"
                )
            });
        let server = format!("unix:{}", socket.display());
        let pulse = Self {
            daemon,
            dir,
            server,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pulse.pactl(&["info"]) {
            assert!(
                Instant::now() < deadline,
                "pulseaudio did not start within 10 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pulse
    }

    /// Takes the null sink away, and with it its monitor (the tests' microphone): a
    /// device unplugged.
    pub fn unplug_sink(&self) {
        assert!(
            self.pactl(&["unload-module", "module-null-sink"]),
            "pactl could not unload the null sink"
        );
    }

    /// Runs `pactl ARGS` against this daemon and returns what it printed; panics,
    /// with pactl's words, when it fails.
    pub fn pactl_output(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("pactl")
            .args(args)
            .env("PULSE_SERVER", &self.server)
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run pactl ({error}): apt-get install pulseaudio-utils")
            });
        assert!(
            output.status.success(),
            "pactl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Starts playing the WAV file `path` into `sink` (once).
    pub fn play(&self, sink: &str, path: &std::path::Path) -> std::process::Child {
        std::process::Command::new("paplay")
            .arg(format!("--device={sink}"))
            .arg(path)
            .env("PULSE_SERVER", &self.server)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run paplay ({error}): apt-get install pulseaudio-utils")
            })
    }

    /// Runs `pactl ARGS` against this daemon; whether it succeeded.
    fn pactl(&self, args: &[&str]) -> bool {
        std::process::Command::new("pactl")
            .args(args)
            .env("PULSE_SERVER", &self.server)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|error| {
                panic!("cannot run pactl ({error}): apt-get install pulseaudio-utils")
            })
            .success()
    }

    /// Starts recording what plays into the null sink (its monitor): 48 kHz stereo
    /// s16le on the child's stdout.
    pub fn record(&self) -> std::process::Child {
        std::process::Command::new("parec")
            .arg(format!("--device={TEST_SINK}.monitor"))
            .args([
                "--format=s16le",
                "--rate=48000",
                "--channels=2",
                "--latency-msec=20",
            ])
            .env("PULSE_SERVER", &self.server)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run parec ({error}): apt-get install pulseaudio-utils")
            })
    }
}

/// Left and right channels of what played into the sink while `apps` ran for `span`
/// (the first half second left out: what the sound server still had queued).
pub fn record_playback(
    pulse: &PulseServer,
    apps: &mut [&mut App],
    span: Duration,
) -> (Vec<i16>, Vec<i16>) {
    let mut parec = pulse.record();
    use std::io::Read;
    let mut stdout = parec.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    pump_until(apps, span, |_| false);
    let _ = parec.kill();
    let _ = parec.wait();
    let bytes = reader.join().unwrap();
    let skip = meetspace::media::AUDIO_SAMPLE_RATE as usize / 2;
    let samples: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    let frames: Vec<&[i16]> = samples.chunks_exact(2).skip(skip).collect();
    assert!(
        frames.len() > meetspace::media::AUDIO_SAMPLE_RATE as usize / 2,
        "parec recorded only {} frames",
        frames.len()
    );
    (
        frames.iter().map(|frame| frame[0]).collect(),
        frames.iter().map(|frame| frame[1]).collect(),
    )
}

impl Drop for PulseServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
