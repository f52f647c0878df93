//! Settings: the command line (every flag also reads an environment variable where
//! noted) and the resolved [`ClientConfig`] that the rest of the app reads.

#[cfg(not(target_arch = "wasm32"))]
use std::net::SocketAddr;
use std::path::PathBuf;

use bevy::prelude::Resource;
use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::media::{
    AudioInput, DeviceChoice, SendSettings, ShareTarget, VideoInput, VoiceProcessing,
};
use crate::rtc::ice::IceTransportPolicy;
use crate::signaling::SignalUrl;
use crate::signaling::ice_servers::{IceServer, IceServerUrl};
use crate::signaling::protocol::{DisplayName, EARSHOT_M, MAX_POSE_COORDINATE, Passcode, RoomId};
#[cfg(not(target_arch = "wasm32"))]
use crate::signaling::server::ServerLimits;
use crate::space::GraphicsChoice;

/// meetspace: a video call that is also a place.
///
/// With no subcommand, opens the windowed client. Without --signal it hosts its own
/// signaling server on 127.0.0.1, so one machine can hold a call with nothing else
/// running; to call between machines, run `meetspace serve` on one host and give every
/// client `--signal ws://HOST:PORT`.
#[derive(Debug, Parser)]
#[command(name = "meetspace", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to run (the windowed client when omitted).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of the windowed client.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[cfg(not(target_arch = "wasm32"))]
    /// Run the signaling server alone (for a LAN or a public host).
    Serve(Box<ServeArgs>),
    /// A headless participant: joins a room, stays, leaves. For scripts and tests.
    Bot(Box<BotArgs>),
    /// Measure calls between headless clients in this process (loopback, synthetic media).
    Bench(BenchArgs),
}

/// Who we are, how calls connect and what we send; shared by the client and the bot.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// Display name others see.
    #[arg(long, env = "MEETSPACE_NAME", default_value = "Guest", value_parser = DisplayName::parse)]
    pub name: DisplayName,
    /// A STUN or TURN server (repeatable), e.g. `--ice stun:stun.l.google.com:19302`,
    /// `--ice turn:turn.example.org:3478?transport=udp`, `--ice turns:HOST:5349`. None by
    /// default: calls then use host candidates only and nothing leaves the machine or
    /// LAN unless asked, or what the signaling server hands out (`serve --turn-url`).
    /// Given, these replace the server's.
    #[arg(long = "ice", value_name = "URL")]
    pub ice_servers: Vec<IceServerUrl>,
    /// Username for the TURN servers of `--ice`.
    #[arg(long, value_name = "NAME", requires = "ice_credential")]
    pub ice_username: Option<String>,
    /// Password for the TURN servers of `--ice`.
    #[arg(
        long,
        env = "MEETSPACE_ICE_CREDENTIAL",
        value_name = "SECRET",
        requires = "ice_username"
    )]
    pub ice_credential: Option<String>,
    /// `relay`: send all media through a TURN server (only relayed candidates); `all`
    /// (default): the most direct path that works.
    #[arg(long, value_name = "all|relay", default_value = "all")]
    pub ice_transport_policy: IceTransportPolicy,
    /// Size of the video we send, WIDTHxHEIGHT (even numbers, at least 320x240).
    #[arg(long, default_value = "640x480", value_parser = parse_resolution)]
    pub resolution: (u32, u32),
    /// Frames per second we send.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub fps: u32,
    /// Highest VP8 bitrate we send, in kbit/s (and where a call starts).
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u32).range(50..=8000))]
    pub video_kbps: u32,
    /// Lowest VP8 bitrate congestion control may go down to when peers report loss, in
    /// kbit/s (capped at --video-kbps).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(50..=8000))]
    pub min_video_kbps: u32,
    /// Frequency of the synthetic audio tone we send, in Hz.
    #[arg(long, default_value_t = 440.0, value_parser = parse_tone)]
    pub tone_hz: f32,
    /// Also trust the CA certificates in this PEM file for a wss:// signaling server
    /// (besides the platform's), e.g. a self-signed server's own certificate.
    #[arg(long, env = "MEETSPACE_SIGNAL_CA", value_name = "PEM")]
    pub signal_ca: Option<PathBuf>,
    /// Passcode of the rooms we create (joiners must give it) and join.
    #[arg(long, env = "MEETSPACE_PASSCODE", value_name = "SECRET", value_parser = Passcode::parse)]
    pub passcode: Option<Passcode>,
    /// Microphone to send from: `default`, a device's name (or a unique part of it), its
    /// index, `tone` for the synthetic tone, or `file:PATH` for a WAV file played in a
    /// loop. The client uses the default microphone, the bot the tone.
    #[arg(long, value_name = "DEVICE")]
    pub mic: Option<String>,
    /// Speaker to play the others on: `default`, a name (or a unique part), an index, or
    /// `none`. The client plays on the default speaker, the bot on none.
    #[arg(long, value_name = "DEVICE")]
    pub speaker: Option<String>,
    /// What video we send: `synthetic` (the stamped test pattern), `file:PATH` (a y4m
    /// file, 8-bit 4:2:0, played in a loop) or `camera[:NAME|INDEX]` (a camera; alone,
    /// the first one).
    #[arg(long, value_name = "SOURCE", default_value = "synthetic", value_parser = VideoInput::parse)]
    pub video: VideoInput,
    /// The camera to send from, by name (or a unique part of it) or index: the same as
    /// `--video camera:NAME|INDEX`.
    #[arg(long, value_name = "NAME|INDEX", conflicts_with = "video")]
    pub camera: Option<String>,
    /// `none`: use no sound device at all (send the synthetic tone, play nothing), for
    /// machines without one.
    #[arg(long, value_name = "none", value_parser = ["none"], conflicts_with_all = ["mic", "speaker"])]
    pub audio: Option<String>,
    /// Do not remove the echo of our speaker from what the microphone hears (on by
    /// default; off for headphones only if you must).
    #[arg(long)]
    pub no_echo_cancel: bool,
    /// Do not remove steady background noise from the microphone.
    #[arg(long)]
    pub no_noise_suppression: bool,
    /// Do not even out the microphone's level.
    #[arg(long)]
    pub no_auto_gain: bool,
    /// In the lobby, people within this many metres see and hear each other (the
    /// connection closes 2 m further out).
    #[arg(long, value_name = "METRES", default_value_t = EARSHOT_M, value_parser = parse_earshot)]
    pub earshot: f32,
    /// In the lobby, the most people we are connected to at once: the nearest.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_NEARBY, value_parser = parse_max_nearby)]
    pub max_nearby: usize,
    /// Show others a screen or a window from the start of the call: `screen` (the
    /// primary one), `screen:N` or `window:TITLE` (its title or a unique part of it,
    /// else a unique part of its program's name).
    #[arg(long, value_name = "WHAT", value_parser = ShareTarget::parse)]
    pub share: Option<ShareTarget>,
}

impl CallArgs {
    /// Where our audio comes from and where others' goes, from `--mic`, `--speaker`
    /// and `--audio`; without them, the default devices when `devices_by_default`
    /// (the windowed client), else the tone and no playback (the bot).
    pub fn audio_devices(&self, devices_by_default: bool) -> (AudioInput, Option<DeviceChoice>) {
        if self.audio.is_some() {
            return (AudioInput::Tone, None);
        }
        let input = match self.mic.as_deref() {
            Some(tone) if tone.eq_ignore_ascii_case("tone") => AudioInput::Tone,
            Some(file) if file.starts_with("file:") => {
                AudioInput::File(PathBuf::from(&file["file:".len()..]))
            }
            Some(name) => AudioInput::Microphone(DeviceChoice::parse(name)),
            None if devices_by_default => AudioInput::Microphone(DeviceChoice::Default),
            None => AudioInput::Tone,
        };
        let output = match self.speaker.as_deref() {
            Some(none) if none.eq_ignore_ascii_case("none") => None,
            Some(name) => Some(DeviceChoice::parse(name)),
            None => devices_by_default.then_some(DeviceChoice::Default),
        };
        (input, output)
    }
}

impl CallArgs {
    /// The voice processing the `--no-…` flags leave on.
    pub fn voice_processing(&self) -> VoiceProcessing {
        VoiceProcessing {
            echo_cancellation: !self.no_echo_cancel,
            noise_suppression: !self.no_noise_suppression,
            auto_gain: !self.no_auto_gain,
        }
    }

    /// Where our video comes from: `--camera`, else `--video`.
    pub fn video_input(&self) -> VideoInput {
        match &self.camera {
            Some(camera) => VideoInput::Camera(DeviceChoice::parse(camera)),
            None => self.video.clone(),
        }
    }
}

fn parse_resolution(raw: &str) -> Result<(u32, u32), String> {
    let (width, height) = raw
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, got {raw:?}"))?;
    let parse = |side: &str| {
        side.trim()
            .parse::<u32>()
            .map_err(|e| format!("{side:?}: {e}"))
    };
    let (width, height) = (parse(width)?, parse(height)?);
    let fits = width % 2 == 0
        && height % 2 == 0
        && (320..=1920).contains(&width)
        && (240..=1080).contains(&height);
    if fits {
        Ok((width, height))
    } else {
        Err(format!(
            "{width}x{height}: width 320..=1920 and height 240..=1080, both even"
        ))
    }
}

fn parse_seconds(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 3600.0 => Ok(secs),
        Ok(secs) => Err(format!("{secs} s is outside (0, 3600]")),
        Err(error) => Err(error.to_string()),
    }
}

/// Default distance past earshot at which a lobby connection closes, in metres.
pub const DEFAULT_EARSHOT_MARGIN_M: f32 = 2.0;
/// Default number of media connections a client holds in the lobby.
pub const DEFAULT_MAX_NEARBY: usize = 8;

/// Whom to connect to in the lobby: how near is near, and how many at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearbySettings {
    /// Within this distance (metres) a connection opens.
    pub earshot: f32,
    /// Past earshot plus this (metres) it closes.
    pub margin: f32,
    /// At most this many connections: the nearest.
    pub max_connections: usize,
}

impl Default for NearbySettings {
    fn default() -> Self {
        Self {
            earshot: EARSHOT_M,
            margin: DEFAULT_EARSHOT_MARGIN_M,
            max_connections: DEFAULT_MAX_NEARBY,
        }
    }
}

fn parse_earshot(raw: &str) -> Result<f32, String> {
    match raw.parse::<f32>() {
        Ok(metres) if (0.5..=100.0).contains(&metres) => Ok(metres),
        Ok(metres) => Err(format!("{metres} m is outside 0.5..=100")),
        Err(error) => Err(error.to_string()),
    }
}

fn parse_max_nearby(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(count) if (1..=32).contains(&count) => Ok(count),
        Ok(count) => Err(format!("{count} is outside 1..=32")),
        Err(error) => Err(error.to_string()),
    }
}

/// A crowd size for `bench --space`: 2 to 100 people.
fn parse_crowd(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(people) if (2..=100).contains(&people) => Ok(people),
        Ok(people) => Err(format!("{people} people: a crowd has 2 to 100")),
        Err(error) => Err(error.to_string()),
    }
}

/// Default walking speed of a bot, metres per second.
pub const DEFAULT_WALK_SPEED: f32 = 1.4;

/// A spot on a floor: metres along x and z.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spot {
    /// Metres along x.
    pub x: f32,
    /// Metres along z.
    pub z: f32,
}

/// Spots to walk through in turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Route(pub Vec<Spot>);

fn parse_spot(raw: &str) -> Result<Spot, String> {
    let (x, z) = raw
        .split_once(',')
        .ok_or_else(|| format!("{raw:?} is not X,Z"))?;
    let coordinate = |text: &str| match text.trim().parse::<f32>() {
        Ok(value) if value.is_finite() && value.abs() <= MAX_POSE_COORDINATE => Ok(value),
        Ok(value) => Err(format!(
            "{value} is outside -{MAX_POSE_COORDINATE}..={MAX_POSE_COORDINATE} m"
        )),
        Err(error) => Err(format!("{text:?}: {error}")),
    };
    Ok(Spot {
        x: coordinate(x)?,
        z: coordinate(z)?,
    })
}

fn parse_route(raw: &str) -> Result<Route, String> {
    let spots = raw
        .split(';')
        .filter(|part| !part.trim().is_empty())
        .map(parse_spot)
        .collect::<Result<Vec<_>, _>>()?;
    if spots.is_empty() || spots.len() > 100 {
        return Err("a route has 1 to 100 spots".to_owned());
    }
    Ok(Route(spots))
}

fn parse_walk_delay(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(seconds) if (0.0..=3600.0).contains(&seconds) => Ok(seconds),
        Ok(seconds) => Err(format!("{seconds} s is outside 0..=3600")),
        Err(_) => Err(format!("{raw:?} is not a number of seconds")),
    }
}

fn parse_speed(raw: &str) -> Result<f32, String> {
    match raw.parse::<f32>() {
        Ok(speed) if (0.1..=20.0).contains(&speed) => Ok(speed),
        Ok(speed) => Err(format!("{speed} m/s is outside 0.1..=20")),
        Err(error) => Err(error.to_string()),
    }
}

fn parse_tone(raw: &str) -> Result<f32, String> {
    match raw.parse::<f32>() {
        Ok(hz) if (50.0..=4000.0).contains(&hz) => Ok(hz),
        Ok(hz) => Err(format!("{hz} Hz is outside 50..=4000")),
        Err(error) => Err(error.to_string()),
    }
}

/// Where `--demo` opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoPlace {
    /// The lobby, with bots wandering and one walking up to you.
    Lobby,
    /// A public room with the bots in it.
    Room,
}

/// Flags of the windowed client.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Signaling server (ws://HOST:PORT). Omitted: host one in-process on 127.0.0.1.
    #[arg(long, env = "MEETSPACE_SIGNAL", value_name = "URL")]
    pub signal: Option<SignalUrl>,
    /// Join this room right away instead of showing the home panel.
    #[arg(long, value_name = "ID", value_parser = RoomId::parse, requires = "signal")]
    pub room: Option<RoomId>,
    /// A live demo on one machine with nothing else running, with bots of this
    /// process: `lobby` (the default) opens in the lobby where bots wander and one
    /// walks up to you and talks; `room` opens straight into a public room with the
    /// bots in it.
    #[arg(long, value_enum, value_name = "PLACE", num_args = 0..=1,
          default_missing_value = "lobby", conflicts_with = "room")]
    pub demo: Option<DemoPlace>,
    /// With --demo: how many bots join the demo room (in the lobby: how many wander,
    /// beside the one who walks up to you).
    #[arg(long, value_name = "N", default_value_t = 3, requires = "demo",
          value_parser = clap::value_parser!(u16).range(1..=15))]
    pub demo_bots: u16,
    /// Save a PNG of the window to PATH, then exit (repeatable: the next PATH is saved
    /// --frames frames after the previous one). Frames count from the moment the player
    /// is in the room and every participant's video shows on their panel (with --demo:
    /// every bot's; with --room: at least one participant's; with --wait-for-people:
    /// that many people's in the lobby, on their avatars), or from the first frame
    /// otherwise. Next to each PNG, PATH with the extension .json lists every panel's
    /// participant and the rectangle its video screen covers in window pixels. Exits 1
    /// when video did not show within 120 s (the PNGs are still saved), 2 without a GPU.
    #[arg(long, value_name = "PATH")]
    pub screenshot: Vec<PathBuf>,
    /// With --screenshot: frames to run before each screenshot (see --screenshot).
    #[arg(long, value_name = "N", default_value_t = 120, requires = "screenshot",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub frames: u64,
    /// With --screenshot or --frame-stats, out of any room: count frames once at least
    /// N people are in the lobby and every one's video shows on their avatar.
    #[arg(long, value_name = "N", conflicts_with_all = ["room", "demo"],
          value_parser = clap::value_parser!(u16).range(1..=100))]
    pub wait_for_people: Option<u16>,
    /// Measure for SECS seconds once video shows on every panel (as for --screenshot),
    /// then print the median and p95 frame time and how much of a frame goes into
    /// copying video into textures, and exit.
    #[arg(long, value_name = "SECS", conflicts_with = "screenshot", value_parser = parse_seconds)]
    pub frame_stats: Option<f64>,
    /// How much the space draws: `auto` (light on a software renderer such as
    /// llvmpipe), `full` (multisampling, every lamp) or `light` (neither, at half the
    /// resolution). The overlay's Graphics setting changes it while the app runs.
    #[arg(long, value_enum, value_name = "PROFILE", default_value = "auto")]
    pub graphics: GraphicsChoice,
    /// Identity, ICE and media settings.
    #[command(flatten)]
    pub call: CallArgs,
}

#[cfg(not(target_arch = "wasm32"))]
/// Flags of `meetspace serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:8480 for every interface.
    #[arg(long, default_value = "127.0.0.1:8480")]
    pub listen: SocketAddr,
    /// Limits on rooms, peers and messages.
    #[command(flatten)]
    pub limits: ServerLimits,
    /// Certificate chain (PEM, leaf first): with --tls-key, clients use wss://.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve the browser app (the folder `scripts/build-web.sh` fills) at `/`.
    /// Default: `target/web` under the current folder, when it holds an index.html.
    #[arg(long, value_name = "DIR")]
    pub web_root: Option<PathBuf>,
    /// A TURN server the clients should use (repeatable), e.g.
    /// `turn:turn.example.org:3478?transport=udp`: every `welcome` lists them with
    /// credentials made from --turn-secret.
    #[arg(long, value_name = "URL", requires = "turn_secret")]
    pub turn_url: Vec<IceServerUrl>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret` with
    /// `use-auth-secret`): credentials are HMAC-SHA1 of `EXPIRY:PEER_ID` under it.
    #[arg(
        long,
        env = "MEETSPACE_TURN_SECRET",
        value_name = "SECRET",
        requires = "turn_url",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,
    /// How long handed-out TURN credentials are valid, in seconds (renewed on `resume`).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TURN_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(60..=7 * 24 * 3600))]
    pub turn_ttl: u64,
    /// A Janus instance for rooms past the mesh (repeatable; each room lives on the one
    /// holding the fewest): `janus+ws://HOST:8188`, its WebSocket transport.
    #[arg(long = "sfu", value_name = "URL", value_parser = crate::signaling::server::sfu::parse_janus_url)]
    pub sfu: Vec<String>,
    /// A room that reaches this many people moves to the SFU (with --sfu).
    #[arg(long, default_value_t = crate::signaling::server::sfu::DEFAULT_MESH_LIMIT,
          value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub mesh_limit: u64,
    /// Janus's `api_secret`, when it has one.
    #[arg(
        long,
        env = "MEETSPACE_JANUS_API_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub janus_api_secret: Option<String>,
    /// The VideoRoom plugin's `admin_key`, when it has one (rooms are created with it).
    #[arg(
        long,
        env = "MEETSPACE_JANUS_ADMIN_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub janus_admin_key: Option<String>,
}

#[cfg(not(target_arch = "wasm32"))]
/// How long handed-out TURN credentials are valid by default: a working day.
pub const DEFAULT_TURN_TTL_SECS: u64 = 12 * 3600;

#[cfg(not(target_arch = "wasm32"))]
impl ServeArgs {
    /// The folder of the browser app to serve, if any.
    pub fn web_root(&self) -> Option<PathBuf> {
        self.web_root.clone().or_else(|| {
            let built = PathBuf::from(DEFAULT_WEB_ROOT);
            built.join("index.html").is_file().then_some(built)
        })
    }
}

/// Where `scripts/build-web.sh` puts the browser app, relative to the repository.
pub const DEFAULT_WEB_ROOT: &str = "target/web";

/// Flags of `meetspace bot`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["create", "room", "lobby"])))]
pub struct BotArgs {
    /// Signaling server (ws://HOST:PORT).
    #[arg(long, env = "MEETSPACE_SIGNAL", value_name = "URL")]
    pub signal: SignalUrl,
    /// Create a new room (its id is printed as `room <ID>`).
    #[arg(long)]
    pub create: bool,
    /// Join the room with this id.
    #[arg(long, value_name = "ID", value_parser = RoomId::parse)]
    pub room: Option<RoomId>,
    /// With --create: list the room in everyone's lobby under this title.
    #[arg(long, value_name = "TITLE", requires = "create", value_parser = DisplayName::parse)]
    pub public: Option<DisplayName>,
    /// Leave after this many seconds (default: stay until interrupted).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Write per-peer figures to this JSON file every second during the call and on
    /// exit.
    #[arg(long, value_name = "PATH")]
    pub stats_json: Option<PathBuf>,
    /// Save the newest frame of a screen a peer shares to this PNG file, every second
    /// while one is shown.
    #[arg(long, value_name = "PATH")]
    pub save_screen: Option<PathBuf>,
    /// With --share: stop sharing after this many seconds in the call, share again
    /// after as long, and so on (a share that comes and goes, for tests and demos).
    #[arg(long, value_name = "SECS", requires = "share", value_parser = parse_seconds)]
    pub share_toggle: Option<f64>,
    /// Send back what the first peer sends (its encoded video and audio, unchanged)
    /// instead of our own media: a peer sees and hears itself after one round trip.
    #[arg(long)]
    pub echo: bool,
    /// Enter the space's lobby instead of a room: media connects to whoever comes
    /// within earshot (`--earshot`, `--max-nearby`).
    #[arg(long)]
    pub lobby: bool,
    /// Where to stand at first, in metres from the middle of the floor (the lobby's,
    /// or the room's); default: the middle. In a room, a bot that neither stands
    /// anywhere nor walks says nothing of where it is: it waits on the room's circle.
    #[arg(long, value_name = "X,Z", allow_hyphen_values = true, value_parser = parse_spot)]
    pub at: Option<Spot>,
    /// Walk through these spots in turn, then stand.
    #[arg(long, value_name = "X,Z[;X,Z...]", allow_hyphen_values = true,
          value_parser = parse_route, conflicts_with = "wander")]
    pub walk_to: Option<Route>,
    /// Walk about the floor at random, pausing now and then.
    #[arg(long)]
    pub wander: bool,
    /// Stand this many seconds before setting off on `--walk-to` or `--wander` (a
    /// scripted scene: someone walks up once the call is going).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0, value_parser = parse_walk_delay)]
    pub walk_after: f64,
    /// Walking speed, metres per second.
    #[arg(long, value_name = "M_PER_S", default_value_t = DEFAULT_WALK_SPEED,
          value_parser = parse_speed)]
    pub speed: f32,
    /// Identity, ICE and media settings.
    #[command(flatten)]
    pub call: CallArgs,
}

/// Flags of `meetspace bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Length of one run in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Runs per mesh size.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Mesh sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,4,6")]
    pub mesh: Vec<usize>,
    /// Frame width.
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    /// Frame height.
    #[arg(long, default_value_t = 480)]
    pub height: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// What every client sends: `synthetic` (the stamped test pattern) or `file:PATH` (a
    /// y4m file played in a loop; its own size wins over --width and --height).
    #[arg(long, value_name = "SOURCE", default_value = "synthetic", value_parser = VideoInput::parse)]
    pub video: VideoInput,
    /// Highest VP8 bitrate every client sends, in kbit/s.
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u32).range(50..=8000))]
    pub video_kbps: u32,
    /// Measure the voice processing instead (echo cancellation, noise suppression,
    /// gain: CPU per 10 ms frame and the echo removed, on a synthetic voice and echo).
    #[arg(long, conflicts_with = "space")]
    pub voice_processing: bool,
    /// Measure crowds of these sizes wandering one lobby instead (comma-separated):
    /// connections per client, pairs connected, earshot to first frame, server
    /// messages per second, CPU per client.
    #[arg(long, value_delimiter = ',', value_name = "N,...",
          value_parser = parse_crowd)]
    pub space: Vec<usize>,
}

/// What a call client needs to know, resolved from the flags.
#[derive(Debug, Clone, Resource)]
pub struct ClientConfig {
    /// The signaling server.
    pub signal: SignalUrl,
    /// Our display name.
    pub name: DisplayName,
    /// STUN/TURN servers for ICE from the command line; when empty, those the
    /// signaling server hands out in `welcome`.
    pub ice_servers: Vec<IceServer>,
    /// Whether ICE may use every candidate or only relayed ones.
    pub ice_transport_policy: IceTransportPolicy,
    /// What we send.
    pub media: SendSettings,
    /// Send back what the first peer sends us instead of our own media (`bot --echo`).
    pub echo: bool,
    /// Decode the video we receive (false for `--demo`'s bots, which show it nowhere).
    pub decode_video: bool,
    /// The passcode of the rooms we create and join.
    pub passcode: Option<Passcode>,
    /// Extra CA certificates (PEM) to trust for a `wss://` signaling server.
    pub signal_ca: Option<PathBuf>,
    /// Where we play the others' audio; `None`: nowhere.
    pub speaker: Option<DeviceChoice>,
    /// Whom to connect to in the lobby.
    pub nearby: NearbySettings,
    /// What we share from the start of each call (`--share`); the overlay changes it.
    pub share: Option<ShareTarget>,
}

impl ClientConfig {
    /// A config for `name` signaling through `signal` with defaults everywhere else:
    /// synthetic media, no ICE servers, no passcode, no speaker (bots and tests).
    pub fn synthetic(signal: SignalUrl, name: DisplayName) -> Self {
        Self {
            signal,
            name,
            ice_servers: Vec::new(),
            ice_transport_policy: IceTransportPolicy::All,
            media: SendSettings::default(),
            echo: false,
            decode_video: true,
            passcode: None,
            signal_ca: None,
            speaker: None,
            nearby: NearbySettings::default(),
            share: None,
        }
    }

    /// A config for `signal` with the rest from `call`; sound devices as
    /// [`CallArgs::audio_devices`] resolves them.
    pub fn new(signal: SignalUrl, call: CallArgs, devices_by_default: bool) -> Self {
        let (width, height) = call.resolution;
        let (audio_input, speaker) = call.audio_devices(devices_by_default);
        let video_input = call.video_input();
        let voice_processing = call.voice_processing();
        Self {
            signal,
            name: call.name,
            ice_servers: IceServer::from_flags(
                &call.ice_servers,
                call.ice_username.as_deref(),
                call.ice_credential.as_deref(),
            ),
            ice_transport_policy: call.ice_transport_policy,
            media: SendSettings {
                width,
                height,
                fps: call.fps,
                video_kbps: call.video_kbps,
                min_video_kbps: call.min_video_kbps,
                tone_hz: call.tone_hz,
                audio_input,
                video_input,
                voice_processing,
            },
            echo: false,
            decode_video: true,
            passcode: call.passcode,
            signal_ca: call.signal_ca,
            speaker,
            nearby: NearbySettings {
                earshot: call.earshot,
                max_connections: call.max_nearby,
                ..NearbySettings::default()
            },
            share: call.share,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn turn_credentials_come_in_pairs() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        let base = ["meetspace", "bot", "--signal", "ws://h:1", "--create"];
        let with = |extra: &[&'static str]| [&base[..], extra].concat();
        assert!(parse(&with(&["--ice", "turn:h:3478", "--ice-username", "u"])).is_err());
        assert!(parse(&with(&["--ice-transport-policy", "direct"])).is_err());
        let cli = parse(&with(&[
            "--ice",
            "turn:h:3478",
            "--ice",
            "stun:h:3478",
            "--ice-username",
            "u",
            "--ice-credential",
            "p",
            "--ice-transport-policy",
            "relay",
        ]))
        .unwrap();
        let Some(Command::Bot(bot)) = cli.command else {
            panic!("expected the bot subcommand");
        };
        let config = ClientConfig::new(bot.signal.clone(), bot.call.clone(), false);
        assert_eq!(config.ice_transport_policy, IceTransportPolicy::Relay);
        assert_eq!(config.ice_servers.len(), 2);
        assert_eq!(config.ice_servers[1].username.as_deref(), Some("u"));
        let serve = |extra: &[&'static str]| parse(&[&["meetspace", "serve"][..], extra].concat());
        assert!(serve(&["--turn-url", "turn:h:3478"]).is_err());
        assert!(serve(&["--turn-secret", "s"]).is_err());
        assert!(
            serve(&[
                "--turn-url",
                "turn:h",
                "--turn-secret",
                "s",
                "--turn-ttl",
                "5"
            ])
            .is_err()
        );
        assert!(serve(&["--turn-url", "turn:h", "--turn-secret", "s"]).is_ok());
    }

    #[test]
    fn signal_urls_are_validated_and_default_to_the_ws_path() {
        let url: SignalUrl = "ws://127.0.0.1:8480".parse().unwrap();
        assert_eq!(url.to_string(), "ws://127.0.0.1:8480/ws");
        let custom: SignalUrl = "wss://example.org/signal".parse().unwrap();
        assert_eq!(custom.to_string(), "wss://example.org/signal");
        assert!("http://example.org".parse::<SignalUrl>().is_err());
        assert!("not a url".parse::<SignalUrl>().is_err());
    }

    #[test]
    fn resolutions_and_tones_are_validated() {
        assert_eq!(parse_resolution("1280x720"), Ok((1280, 720)));
        assert!(parse_resolution("641x480").is_err());
        assert!(parse_resolution("160x120").is_err());
        assert!(parse_resolution("big").is_err());
        assert_eq!(parse_tone("440"), Ok(440.0));
        assert!(parse_tone("20000").is_err());
    }

    #[test]
    fn bot_needs_exactly_one_of_create_and_room() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        assert!(parse(&["meetspace", "bot", "--signal", "ws://h:1"]).is_err());
        assert!(
            parse(&[
                "meetspace",
                "bot",
                "--signal",
                "ws://h:1",
                "--create",
                "--room",
                "abc"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "meetspace",
                "bot",
                "--signal",
                "ws://h:1",
                "--room",
                "bad id!"
            ])
            .is_err()
        );
        let cli = parse(&[
            "meetspace",
            "bot",
            "--signal",
            "ws://h:1",
            "--room",
            "abc",
            "--name",
            "Ann",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Bot(bot)) => {
                assert_eq!(bot.room.unwrap().as_str(), "abc");
                assert_eq!(bot.call.name.as_str(), "Ann");
            }
            other => panic!("expected the bot subcommand, got {other:?}"),
        }
    }

    #[test]
    fn a_wav_file_microphone_and_the_voice_processing_switches_parse() {
        let cli = Cli::try_parse_from([
            "meetspace",
            "bot",
            "--signal",
            "ws://h:1",
            "--create",
            "--mic",
            "file:/tmp/speech.wav",
            "--no-echo-cancel",
            "--no-auto-gain",
        ])
        .unwrap();
        let Some(Command::Bot(bot)) = cli.command else {
            panic!("expected the bot subcommand");
        };
        let config = ClientConfig::new("ws://h:1".parse().unwrap(), bot.call, false);
        assert_eq!(
            config.media.audio_input,
            AudioInput::File(PathBuf::from("/tmp/speech.wav"))
        );
        assert_eq!(
            config.media.voice_processing,
            VoiceProcessing {
                echo_cancellation: false,
                noise_suppression: true,
                auto_gain: false,
            }
        );
    }
}
