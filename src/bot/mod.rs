//! `meetspace bot`: a headless participant for scripts and tests.
//!
//! Its first line on stdout is `room <ID>` once it is in the room (`room lobby` in the
//! space's lobby, where it can stand, walk a route or wander: [`walk`]). A failure
//! before that, or a TURN server that cannot be used, exits non-zero with one line on
//! stderr naming the reason (see [`exit_code`]).

pub mod space_report;
pub mod walk;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use serde::Serialize;

use crate::call::{
    CallCommand, CallError, CallNotice, CallReport, CallState, Participant, PoseTrack, SendStats,
    SharedScreen, VideoFeed,
};
use crate::config::{BotArgs, ClientConfig, Spot};
use crate::headless::headless_app;
use crate::media::camera::find_camera;
use crate::media::{CallStats, SendSettings, ShareTarget, VideoInput};
use crate::runtime::AsyncRuntime;
use crate::signaling::SignalUrl;
use crate::signaling::protocol::{DisplayName, ErrorCode, PeerId, RoomId};
use crate::space::{LOBBY, ROOM, TELL_SIZES_EVERY, seen_height};
use space_report::SpaceReport;
use std::collections::BTreeMap;
use walk::{Plan, Walker};

/// Exit code when the room id does not exist.
pub const EXIT_ROOM_NOT_FOUND: u8 = 3;
/// Exit code when the room is full.
pub const EXIT_ROOM_FULL: u8 = 4;
/// Exit code when the signaling server cannot be reached or the connection drops.
pub const EXIT_SIGNALING: u8 = 5;
/// Exit code when a TURN server refuses our credentials, cannot be reached, or cannot
/// be used.
pub const EXIT_TURN: u8 = 6;
/// Exit code when ICE found no path to a peer.
pub const EXIT_NO_ROUTE: u8 = 7;
/// Exit code for any other failure.
pub const EXIT_OTHER: u8 = 1;

/// The process exit code for a call failure.
pub fn exit_code(error: &CallError) -> u8 {
    match error {
        CallError::Refused {
            code: ErrorCode::RoomNotFound,
            ..
        } => EXIT_ROOM_NOT_FOUND,
        CallError::Refused {
            code: ErrorCode::RoomFull,
            ..
        } => EXIT_ROOM_FULL,
        CallError::SignalingUnreachable(_) | CallError::ConnectionLost(_) => EXIT_SIGNALING,
        CallError::Turn(_) => EXIT_TURN,
        CallError::NoRoute { .. } => EXIT_NO_ROUTE,
        CallError::Refused { .. }
        | CallError::AlreadyInCall
        | CallError::Media(_)
        | CallError::Device(_)
        | CallError::DevicesUnavailable(_) => EXIT_OTHER,
    }
}

/// Runs the bot until it leaves; returns how the app ended. Fails at once when the
/// camera it is told to send from is not there.
pub fn run(args: BotArgs) -> anyhow::Result<AppExit> {
    let config = ClientConfig {
        echo: args.echo,
        ..ClientConfig::new(args.signal.clone(), args.call.clone(), false)
    };
    if let VideoInput::Camera(choice) = &config.media.video_input {
        find_camera(choice)?;
    }
    let first_command = match args.room {
        Some(room) => CallCommand::JoinRoom {
            room,
            name: args.call.name.clone(),
        },
        None if args.lobby => CallCommand::JoinRoom {
            room: RoomId::lobby(),
            name: args.call.name.clone(),
        },
        None => CallCommand::CreateRoom {
            name: args.call.name.clone(),
            public_title: args.public.clone(),
        },
    };
    let toggle = args
        .share_toggle
        .zip(config.share.clone())
        .map(|(secs, target)| ShareToggle {
            target,
            every: Duration::from_secs_f64(secs),
            sharing: true,
            next: None,
        });
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut app = bot_app(config, first_command, Announce::Stdout, interrupted.clone());
    if let Some(toggle) = toggle {
        app.insert_resource(toggle)
            .add_systems(Update, toggle_share.after(follow_call));
    }
    app.world()
        .resource::<AsyncRuntime>()
        .handle()
        .spawn(watch_for_interrupt(interrupted));
    app.world_mut().resource_mut::<Bot>().stay_for = args.duration.map(Duration::from_secs_f64);
    app.world_mut().resource_mut::<Bot>().stats_json = args.stats_json;
    app.world_mut().resource_mut::<Bot>().save_screen = args.save_screen;
    let walks = args.at.is_some() || args.walk_to.is_some() || args.wander;
    if args.lobby || walks {
        let floor = if args.lobby { LOBBY } else { ROOM };
        let plan = Walker::plan_of(args.walk_to.as_ref(), args.wander);
        let walker = Walker::new(floor, args.at, plan, args.speed)
            .starting_after(Duration::from_secs_f64(args.walk_after));
        walk_with(&mut app, walker);
    }
    Ok(app.run())
}

/// Makes the bot of `app` walk as `walker` says, and report what it sees of the space.
fn walk_with(app: &mut App, walker: Walker) {
    app.insert_resource(walker).init_resource::<SpaceReport>();
}

/// The height of the window a bot sees the space as (a 720p player's).
const SEEN_VIEW_HEIGHT: f32 = 720.0;

/// Tells the call how large each person appears to the bot, as to a player standing
/// where it stands ([`seen_height`]), every [`TELL_SIZES_EVERY`]: through the SFU, the
/// layer it receives of their camera follows, as a player's does.
fn tell_seen_sizes(
    walker: Res<Walker>,
    state: Res<CallState>,
    people: Query<(&Participant, &PoseTrack)>,
    mut told_at: Local<Option<Instant>>,
    mut commands: MessageWriter<CallCommand>,
) {
    if !matches!(*state, CallState::InCall { .. })
        || told_at.is_some_and(|at| at.elapsed() < TELL_SIZES_EVERY)
    {
        return;
    }
    *told_at = Some(Instant::now());
    let eye = walker.pose();
    let sizes: Vec<(PeerId, f32)> = people
        .iter()
        .filter_map(|(participant, track)| {
            let pose = track.latest()?;
            let height = seen_height(&eye, &pose, SEEN_VIEW_HEIGHT);
            Some((participant.peer_id.clone(), height))
        })
        .collect();
    if !sizes.is_empty() {
        commands.write(CallCommand::ShowSizes(sizes));
    }
}

/// Where the lobby demo's guide walks to: in front of where the player arrives.
const GUIDE_SPOT: Vec2 = Vec2::new(0.0, 1.2);
/// Where the guide starts: a far corner, out of earshot.
const GUIDE_START: Spot = Spot { x: -8.0, z: -5.0 };
/// How fast the demo's bots walk, metres per second.
const DEMO_WALK_SPEED: f32 = 1.2;

/// What the lobby demo's bots send: small faces need no more, and the lobby's bots
/// connect among themselves too, so every encoder counts on a small machine.
fn lobby_demo_media() -> SendSettings {
    SendSettings {
        width: 320,
        height: 240,
        fps: 15,
        video_kbps: 300,
        ..SendSettings::default()
    }
}

/// Starts the lobby's demo on threads of this process: `wanderers` bots walking about
/// the lobby at random, and a guide who walks up to where the player arrives and
/// stays there, talking. Returns once the first is in the lobby. The bots stay until
/// the process ends (for `meetspace --demo`).
pub fn spawn_lobby_demo(signal: &SignalUrl, wanderers: usize) -> anyhow::Result<()> {
    let (lobby_tx, lobby_rx) = crossbeam_channel::bounded(wanderers + 1);
    let guide = (
        DisplayName::parse("Demo guide")?,
        Walker::new(
            LOBBY,
            Some(GUIDE_START),
            Plan::Route(vec![GUIDE_SPOT]),
            DEMO_WALK_SPEED,
        ),
    );
    let wandering = (0..wanderers).map(|index| -> anyhow::Result<_> {
        let name = DisplayName::parse(&format!("Demo bot {}", index + 1))?;
        Ok((
            name,
            Walker::new(LOBBY, None, Plan::Wander, DEMO_WALK_SPEED),
        ))
    });
    let bots = std::iter::once(Ok(guide)).chain(wandering);
    for (index, bot) in bots.enumerate() {
        let (name, walker) = bot?;
        let first_command = CallCommand::JoinRoom {
            room: RoomId::lobby(),
            name: name.clone(),
        };
        let announce = Announce::Channel(lobby_tx.clone());
        let bot = DemoBot {
            name,
            media: lobby_demo_media(),
            walker: Some(walker),
        };
        spawn_demo_bot(signal, index, bot, first_command, announce)?;
    }
    lobby_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the demo bots could not enter the lobby")?;
    Ok(())
}

/// Who a demo bot is, what it sends, and how it walks.
struct DemoBot {
    name: DisplayName,
    media: SendSettings,
    /// `None`: it stands where its room puts it.
    walker: Option<Walker>,
}

/// Starts demo bot number `index` on a thread of this process.
fn spawn_demo_bot(
    signal: &SignalUrl,
    index: usize,
    bot: DemoBot,
    first_command: CallCommand,
    announce: Announce,
) -> anyhow::Result<()> {
    let DemoBot {
        name,
        media,
        walker,
    } = bot;
    let mut config = ClientConfig {
        // Nobody looks at a demo bot's screen: decoding would only take CPU from the
        // client.
        decode_video: false,
        media,
        ..ClientConfig::synthetic(signal.clone(), name)
    };
    // Each bot hums its own note, so spatial audio can tell them apart.
    config.media.tone_hz = 330.0 + 110.0 * index as f32;
    std::thread::Builder::new()
        .name(format!("meetspace-demo-bot-{index}"))
        .spawn(move || {
            let mut app = bot_app(config, first_command, announce, Arc::default());
            if let Some(walker) = walker {
                walk_with(&mut app, walker);
            }
            app.run();
        })
        .context("cannot start a demo bot")?;
    Ok(())
}

/// Starts `count` bots on threads of this process, the first creating a public room
/// titled `title` and the others joining it; returns the room's id once the first is in
/// it. The bots stay until the process ends (for `meetspace --demo`).
pub fn spawn_in_process(
    signal: &SignalUrl,
    title: &DisplayName,
    count: usize,
) -> anyhow::Result<RoomId> {
    let (room_tx, room_rx) = crossbeam_channel::bounded(1);
    let mut room: Option<RoomId> = None;
    for index in 0..count {
        let name = DisplayName::parse(&format!("Demo bot {}", index + 1))?;
        let first_command = match &room {
            None => CallCommand::CreateRoom {
                name: name.clone(),
                public_title: Some(title.clone()),
            },
            Some(room) => CallCommand::JoinRoom {
                room: room.clone(),
                name: name.clone(),
            },
        };
        let announce = Announce::Channel(room_tx.clone());
        let bot = DemoBot {
            name,
            media: SendSettings::default(),
            walker: None,
        };
        spawn_demo_bot(signal, index, bot, first_command, announce)?;
        if room.is_none() {
            let created = room_rx
                .recv_timeout(Duration::from_secs(10))
                .context("the first demo bot could not create a room")?;
            room = Some(created);
        }
    }
    room.context("no demo bots were asked for")
}

/// A bot that enters the lobby and walks as `walker` says, ready to be updated by its
/// owner (who reads its state: the crowd benchmark and tests).
pub fn lobby_walker(config: ClientConfig, walker: Walker) -> App {
    let first_command = CallCommand::JoinRoom {
        room: RoomId::lobby(),
        name: config.name.clone(),
    };
    let mut app = bot_app(config, first_command, Announce::Nowhere, Arc::default());
    walk_with(&mut app, walker);
    app.finish();
    app.cleanup();
    app
}

/// How a bot tells the world it is in its room.
enum Announce {
    /// It does not: its owner reads its state.
    Nowhere,
    /// Print `room <ID>` as the first line of stdout (for scripts).
    Stdout,
    /// Send the id (for the in-process demo).
    Channel(crossbeam_channel::Sender<RoomId>),
}

fn bot_app(
    config: ClientConfig,
    first_command: CallCommand,
    announce: Announce,
    interrupted: Arc<AtomicBool>,
) -> App {
    let mut app = headless_app(config);
    app.insert_resource(Bot {
        first_command,
        announce,
        stay_for: None,
        stats_json: None,
        save_screen: None,
        interrupted,
        joined_at: None,
        stats_written_at: None,
        leaving: false,
        failure: None,
        shown_gaps: BTreeMap::new(),
    })
    .add_systems(Startup, start_call)
    .add_systems(
        Update,
        (
            walk::walk.run_if(resource_exists::<Walker>),
            tell_seen_sizes.run_if(resource_exists::<Walker>),
            follow_call,
            space_report::follow_space.run_if(resource_exists::<SpaceReport>),
            note_shown_gaps,
            react_to_notices,
            write_stats_during_call,
        )
            .chain(),
    );
    app
}

async fn watch_for_interrupt(flag: Arc<AtomicBool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    flag.store(true, Ordering::SeqCst);
}

#[derive(Resource)]
struct Bot {
    first_command: CallCommand,
    announce: Announce,
    stay_for: Option<Duration>,
    stats_json: Option<PathBuf>,
    /// Where the newest frame of a peer's shared screen is saved (`--save-screen`).
    save_screen: Option<PathBuf>,
    interrupted: Arc<AtomicBool>,
    joined_at: Option<Instant>,
    /// When the `--stats-json` file was last written during the call.
    stats_written_at: Option<Instant>,
    leaving: bool,
    failure: Option<CallError>,
    /// The longest time between two frames shown of each peer.
    shown_gaps: BTreeMap<PeerId, Duration>,
}

/// Tells the call where we stand (when it walks), then enters.
fn start_call(
    bot: Res<Bot>,
    walker: Option<Res<Walker>>,
    mut commands: MessageWriter<CallCommand>,
) {
    if let Some(walker) = walker {
        commands.write(CallCommand::SetPose(walker.pose()));
    }
    commands.write(bot.first_command.clone());
}

fn follow_call(
    mut bot: ResMut<Bot>,
    state: Res<CallState>,
    mut commands: MessageWriter<CallCommand>,
) {
    let CallState::InCall { room, .. } = &*state else {
        return;
    };
    let joined_at = match bot.joined_at {
        Some(at) => at,
        None => {
            match &bot.announce {
                Announce::Stdout => {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "room {room}");
                    let _ = stdout.flush();
                }
                Announce::Channel(sender) => {
                    let _ = sender.try_send(room.clone());
                }
                Announce::Nowhere => {}
            }
            *bot.joined_at.insert(Instant::now())
        }
    };
    let time_is_up = bot.stay_for.is_some_and(|stay| joined_at.elapsed() >= stay);
    if (time_is_up || bot.interrupted.load(Ordering::SeqCst)) && !bot.leaving {
        bot.leaving = true;
        commands.write(CallCommand::Leave);
    }
}

/// `--share-toggle`: the share goes off and on again every `every` of the call.
#[derive(Resource)]
struct ShareToggle {
    target: ShareTarget,
    every: Duration,
    sharing: bool,
    /// When it switches next, once in the call.
    next: Option<Instant>,
}

/// Switches the share of `--share-toggle` when it is due.
fn toggle_share(
    bot: Res<Bot>,
    mut toggle: ResMut<ShareToggle>,
    mut commands: MessageWriter<CallCommand>,
) {
    let Some(joined_at) = bot.joined_at else {
        return;
    };
    let every = toggle.every;
    let due = *toggle.next.get_or_insert(joined_at + every);
    if bot.leaving || Instant::now() < due {
        return;
    }
    toggle.sharing = !toggle.sharing;
    toggle.next = Some(due + every);
    let share = toggle.sharing.then(|| toggle.target.clone());
    commands.write(CallCommand::ShareScreen(share));
}

fn react_to_notices(
    mut bot: ResMut<Bot>,
    figures: BotFigures,
    mut notices: MessageReader<CallNotice>,
    mut exit: MessageWriter<AppExit>,
) {
    for notice in notices.read() {
        match notice {
            // A TURN server that cannot be used ends a bot at once, even in the room: a
            // script must not take a call that may never connect for a working one.
            CallNotice::Failed(error)
                if bot.joined_at.is_none() || matches!(error, CallError::Turn(_)) =>
            {
                eprintln!("meetspace bot: {}: {error}", error.kind());
                exit.write(AppExit::from_code(exit_code(error)));
            }
            CallNotice::Failed(error) => {
                warn!("{}: {error}", error.kind());
                bot.failure = Some(error.clone());
            }
            CallNotice::Left if bot.joined_at.is_some() => {
                if let Some(path) = &bot.stats_json
                    && let Err(error) = figures.write(path, &bot.shown_gaps)
                {
                    eprintln!("meetspace bot: {error:#}");
                    exit.write(AppExit::from_code(EXIT_OTHER));
                    continue;
                }
                match (&bot.failure, bot.leaving) {
                    (Some(error), false) => {
                        eprintln!("meetspace bot: {}: {error}", error.kind());
                        exit.write(AppExit::from_code(exit_code(error)));
                    }
                    _ => {
                        exit.write(AppExit::Success);
                    }
                }
            }
            _ => {}
        }
    }
}

/// How often the `--stats-json` file is written during the call.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Writes the `--stats-json` file (and the `--save-screen` picture) every
/// [`STATS_EVERY`] while in the call, so that a script can follow the figures (the
/// last write comes when the call ends).
fn write_stats_during_call(
    mut bot: ResMut<Bot>,
    figures: BotFigures,
    screens: Query<&VideoFeed, With<SharedScreen>>,
    images: Res<Assets<Image>>,
) {
    let due = bot
        .stats_written_at
        .is_none_or(|at| at.elapsed() >= STATS_EVERY);
    if bot.joined_at.is_none() || bot.leaving || !due {
        return;
    }
    bot.stats_written_at = Some(Instant::now());
    if let Some(path) = &bot.stats_json
        && let Err(error) = figures.write(path, &bot.shown_gaps)
    {
        warn!("{error:#}");
    }
    let shown = screens
        .iter()
        .find_map(|feed| images.get(feed.image.as_ref()?));
    if let (Some(path), Some(image)) = (&bot.save_screen, shown)
        && let Err(error) = save_png(path, image)
    {
        warn!("{error:#}");
    }
}

/// Saves `image` (RGBA, as frames are shown) as a PNG at `path`, whole or not at all.
fn save_png(path: &Path, image: &Image) -> anyhow::Result<()> {
    let pixels = image
        .data
        .clone()
        .context("the shared screen's image has no pixels")?;
    let picture = image::RgbaImage::from_raw(image.width(), image.height(), pixels)
        .context("the shared screen's image is not RGBA")?;
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial.png");
    picture
        .save(&partial)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Keeps the longest gap between frames shown of each peer (it outlives the peer's
/// panel, for the last figures).
fn note_shown_gaps(mut bot: ResMut<Bot>, feeds: Query<(&Participant, &VideoFeed)>) {
    for (participant, feed) in &feeds {
        bot.shown_gaps
            .insert(participant.peer_id.clone(), feed.longest_gap);
    }
}

/// One remote peer in the `--stats-json` file: who, and what we received from them.
#[derive(Debug, Serialize)]
struct PeerStats<'a> {
    peer_id: &'a PeerId,
    name: &'a DisplayName,
    /// The longest time between two of its frames shown, over its connections.
    longest_shown_gap_ms: Option<f64>,
    #[serde(flatten)]
    received: &'a CallStats,
}

/// What we sent, in the `--stats-json` file.
#[derive(Debug, Serialize)]
struct SentStats {
    /// Video frames encoded.
    video_frames: u64,
    /// Of those, keyframes.
    video_keyframes: u64,
    /// The encoder's bitrate when we left (congestion control's lowest peer target).
    video_target_kbps: u64,
    /// Frames of our shared screen encoded.
    screen_frames: u64,
    /// How our camera goes out: `sfu` (one upstream to the SFU) or `mesh`.
    via: &'static str,
    /// Over how many connections our camera goes out (1 on the SFU, N-1 in a mesh).
    upstreams: usize,
    /// Frames of the camera's smaller simulcast layers encoded (for the SFU).
    simulcast_frames: u64,
}

/// The `--stats-json` file.
#[derive(Debug, Serialize)]
struct BotStats<'a> {
    sent: SentStats,
    peers: Vec<PeerStats<'a>>,
    /// In the lobby: what the bot saw of the space.
    #[serde(skip_serializing_if = "Option::is_none")]
    space: Option<&'a SpaceReport>,
    /// When a walking bot last reached a spot, in milliseconds since the UNIX epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    arrived_unix_ms: Option<u64>,
}

/// What the `--stats-json` file is made of.
#[derive(SystemParam)]
struct BotFigures<'w> {
    sent: Res<'w, SendStats>,
    report: Res<'w, CallReport>,
    space: Option<Res<'w, SpaceReport>>,
    walker: Option<Res<'w, Walker>>,
}

impl BotFigures<'_> {
    /// Writes the `--stats-json` file to `path`, with the longest gap between frames
    /// shown of each peer (`shown_gaps`).
    fn write(&self, path: &Path, shown_gaps: &BTreeMap<PeerId, Duration>) -> anyhow::Result<()> {
        let (counters, report) = (&self.sent.0, &*self.report);
        let stats = BotStats {
            sent: SentStats {
                video_frames: counters.video_frames.load(Ordering::Relaxed),
                video_keyframes: counters.video_keyframes.load(Ordering::Relaxed),
                video_target_kbps: counters.video_target_kbps.load(Ordering::Relaxed),
                screen_frames: counters.screen_frames.load(Ordering::Relaxed),
                via: if report.via_sfu { "sfu" } else { "mesh" },
                upstreams: report.upstreams,
                simulcast_frames: counters.simulcast_frames.load(Ordering::Relaxed),
            },
            peers: report
                .peers
                .iter()
                .map(|(peer_id, (name, received))| PeerStats {
                    peer_id,
                    name,
                    longest_shown_gap_ms: shown_gaps
                        .get(peer_id)
                        .map(|gap| gap.as_secs_f64() * 1000.0),
                    received,
                })
                .collect(),
            space: self.space.as_deref(),
            arrived_unix_ms: self
                .walker
                .as_ref()
                .and_then(|walker| walker.arrived_unix_ms()),
        };
        let json = serde_json::to_string_pretty(&stats)?;
        // Whole files only: a reader never sees one half written.
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        std::fs::write(&partial, json)
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
    }
}
