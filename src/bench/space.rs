//! `meetspace bench --space N,...`: crowds of bots wandering one lobby, in this process,
//! over an in-process signaling server on 127.0.0.1. For each crowd: how many media
//! connections each client holds (the most, and the mean), whether every pair that
//! should be connected is (the two are within earshot and each among the other's
//! nearest K, for more than [`SETTLE`]), the time from crossing earshot to the first
//! decoded frame, how long a pose takes from the walker to the others, the server's
//! messages per second and the CPU per client.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use bevy::prelude::*;

use crate::bot::lobby_walker;
use crate::bot::space_report::SpaceReport;
use crate::bot::walk::Walker;
use crate::call::room::nearby;
use crate::call::{CallReport, CallState, ConnectionState, Participant, PoseTrack};
use crate::config::{ClientConfig, NearbySettings};
use crate::media::SendSettings;
use crate::media::stats::nearest_rank;
use crate::rtc::PeerConnectionState;
use crate::signaling::protocol::{DisplayName, PeerId, Pose};
use crate::signaling::server::{ServerLimits, ServerMonitor, SignalingServer};
use crate::space::LOBBY;

use super::{cpu_seconds, cpu_seconds_in, pump};

/// How long a pair must stay due (within earshot, each among the other's nearest)
/// before it counts as one that should be connected.
pub const SETTLE: Duration = Duration::from_secs(3);
/// How often the crowd is looked at.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How fast the crowd walks, metres per second.
const WALK_SPEED: f32 = 1.0;

/// What each bot of a crowd sends: small faces, so that a 2-core machine carries 50.
pub fn crowd_media() -> SendSettings {
    SendSettings {
        width: 160,
        height: 120,
        fps: 15,
        video_kbps: 150,
        ..SendSettings::default()
    }
}

/// The figures of one crowd.
#[derive(Debug, Clone, Default)]
pub struct CrowdFigures {
    /// Bots in the lobby.
    pub people: usize,
    /// Seconds the crowd wandered.
    pub seconds: f64,
    /// The most media connections any client held at once.
    pub max_connections: usize,
    /// Connections per client, averaged over clients and samples.
    pub mean_connections: f64,
    /// Samples of pairs due for longer than [`SETTLE`]...
    pub settled_pairs: u64,
    /// ...and of those, the ones connected (both sides see the connection up).
    pub settled_pairs_connected: u64,
    /// Earshot crossed to the first decoded frame, milliseconds, every opening.
    pub first_frame_ms: Vec<f64>,
    /// From a walker taking a pose to another client having it, milliseconds.
    pub pose_latency_ms: Vec<f64>,
    /// Messages the server received and sent, per second.
    pub server_messages_per_sec: f64,
    /// The signaling server's CPU time, as a share of one core.
    pub server_cpu: f64,
    /// CPU time of this process but the server's, per client, as a share of one core.
    pub cpu_per_client: f64,
}

impl CrowdFigures {
    /// The share of settled pairs that were connected (1 when there were none).
    pub fn connected_share(&self) -> f64 {
        if self.settled_pairs == 0 {
            1.0
        } else {
            self.settled_pairs_connected as f64 / self.settled_pairs as f64
        }
    }
}

/// Runs a crowd of each size in `crowds` for `seconds` and prints the figures.
pub fn run(crowds: &[usize], seconds: f64) -> anyhow::Result<()> {
    let media = crowd_media();
    let nearby = NearbySettings::default();
    println!(
        "meetspace bench --space: bots wandering one 20 x 14 m lobby at {WALK_SPEED} m/s, \
         {}x{}@{} VP8 {} kbit/s + Opus each, earshot {} m, at most {} connections, \
         {seconds} s per crowd, loopback",
        media.width,
        media.height,
        media.fps,
        media.video_kbps,
        nearby.earshot,
        nearby.max_connections
    );
    println!(
        "{:>4} {:>14} {:>14} {:>22} {:>18} {:>12} {:>11} {:>11}",
        "N",
        "conns max/mean",
        "settled linked",
        "earshot->frame p50/95",
        "pose delay p50/95",
        "server msg/s",
        "server CPU",
        "CPU/client"
    );
    for &people in crowds {
        let figures = wander(people, Duration::from_secs_f64(seconds))?;
        println!(
            "{:>4} {:>14} {:>14} {:>22} {:>18} {:>12.0} {:>10.1}% {:>10.1}%",
            people,
            format!(
                "{}/{:.1}",
                figures.max_connections, figures.mean_connections
            ),
            format!("{:.1}%", 100.0 * figures.connected_share()),
            p50_p95(&figures.first_frame_ms),
            p50_p95(&figures.pose_latency_ms),
            figures.server_messages_per_sec,
            100.0 * figures.server_cpu,
            100.0 * figures.cpu_per_client
        );
    }
    Ok(())
}

/// "p50/p95 ms" of `values`.
fn p50_p95(values: &[f64]) -> String {
    let mut values = values.to_vec();
    let p50 = nearest_rank(&mut values, 0.50).unwrap_or(f64::NAN);
    let p95 = nearest_rank(&mut values, 0.95).unwrap_or(f64::NAN);
    format!("{p50:.0}/{p95:.0} ms")
}

/// `people` bots wander one lobby for `length`: their figures.
pub fn wander(people: usize, length: Duration) -> anyhow::Result<CrowdFigures> {
    let limits = ServerLimits {
        lobby_capacity: ServerLimits::default().lobby_capacity.max(people),
        ..ServerLimits::default()
    };
    let server = ServerThread::start(limits)?;
    let url = server.url.clone();

    let mut crowd: Vec<App> = (0..people)
        .map(|index| {
            let name = DisplayName::parse(&format!("Walker {}", index + 1))?;
            let config = ClientConfig {
                media: SendSettings {
                    tone_hz: 200.0 + 10.0 * index as f32,
                    ..crowd_media()
                },
                ..ClientConfig::synthetic(url.parse()?, name)
            };
            Ok(lobby_walker(config, Walker::wanderer(LOBBY, WALK_SPEED)))
        })
        .collect::<anyhow::Result<_>>()?;

    let entered = pump(&mut crowd, Duration::from_secs(30), |crowd| {
        crowd.iter().all(|app| self_id(app).is_some()).then_some(())
    });
    anyhow::ensure!(
        entered.is_some(),
        "not every bot could enter the lobby within 30 s"
    );

    let cpu_before = cpu_seconds();
    let server_cpu_before = server.cpu_seconds();
    let traffic_before = server.monitor.traffic();
    let started = Instant::now();
    let mut watch = PairWatch::default();
    let mut figures = CrowdFigures {
        people,
        ..CrowdFigures::default()
    };
    let mut connection_samples = 0_u64;
    let mut connections_total = 0_u64;
    let mut walks = Walks::new(people);
    while started.elapsed() < length {
        let sampled_at = Instant::now();
        while sampled_at.elapsed() < SAMPLE_EVERY {
            for (index, app) in crowd.iter_mut().enumerate() {
                app.update();
                walks.note(index, app.world().resource::<Walker>().pose());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let look = Look::of(&crowd);
        walks.measure(&crowd, &look, &mut figures.pose_latency_ms);
        for &held in &look.connections {
            figures.max_connections = figures.max_connections.max(held);
            connections_total += held as u64;
            connection_samples += 1;
        }
        let (settled, connected) = watch.sample(&look, sampled_at);
        figures.settled_pairs += settled;
        figures.settled_pairs_connected += connected;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let traffic = server.monitor.traffic();
    figures.seconds = elapsed;
    let server_cpu = server.cpu_seconds() - server_cpu_before;
    figures.server_cpu = server_cpu / elapsed;
    figures.cpu_per_client = (cpu_seconds() - cpu_before - server_cpu) / elapsed / people as f64;
    figures.server_messages_per_sec =
        (traffic.received + traffic.sent - traffic_before.received - traffic_before.sent) as f64
            / elapsed;
    figures.mean_connections = connections_total as f64 / connection_samples.max(1) as f64;
    for app in &crowd {
        if let Some(report) = app.world().get_resource::<SpaceReport>() {
            figures.first_frame_ms.extend(
                report
                    .media_opened
                    .iter()
                    .filter_map(|o| o.ms_to_first_frame),
            );
        }
    }
    drop(crowd);
    Ok(figures)
}

/// The signaling server on a thread of its own, with a runtime of its own, so that its
/// CPU time is told apart from the clients'. Stopped when dropped.
struct ServerThread {
    url: String,
    monitor: ServerMonitor,
    /// The thread's `/proc` stat file.
    stat: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds a server on a free port of 127.0.0.1 and runs it on a new thread.
    fn start(limits: ServerLimits) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("meetspace-signal".to_owned())
            .spawn(move || {
                let started = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the server's runtime")
                    .and_then(|runtime| {
                        let server = runtime
                            .block_on(SignalingServer::bind(
                                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                                limits,
                            ))
                            .context("cannot start the signaling server")?;
                        let stat = std::fs::read_link("/proc/thread-self")
                            .map(|task| PathBuf::from("/proc").join(task).join("stat"))
                            .unwrap_or_default();
                        Ok((runtime, server, stat))
                    });
                let (runtime, server) = match started {
                    Ok((runtime, server, stat)) => {
                        let _ = ready_tx.send(Ok((server.url(), server.monitor(), stat)));
                        (runtime, server)
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async {
                    tokio::select! {
                        result = server.run() => if let Err(error) = result {
                            warn!(%error, "the signaling server stopped");
                        },
                        _ = stopped => {}
                    }
                });
            })
            .context("cannot start the server's thread")?;
        let (url, monitor, stat) = ready_rx
            .recv()
            .context("the server's thread ended before it started")??;
        Ok(Self {
            url,
            monitor,
            stat,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// CPU time the server's thread has used.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds_in(&self.stat)
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn self_id(app: &App) -> Option<PeerId> {
    match app.world().resource::<CallState>() {
        CallState::InCall { self_id, .. } => Some(self_id.clone()),
        _ => None,
    }
}

/// The crowd at one moment: each bot's id, where it stands, whom it sees connected,
/// and how many connections it holds.
struct Look {
    ids: Vec<Option<PeerId>>,
    poses: Vec<Pose>,
    linked: Vec<HashSet<PeerId>>,
    connections: Vec<usize>,
}

impl Look {
    fn of(crowd: &[App]) -> Self {
        let mut look = Look {
            ids: Vec::new(),
            poses: Vec::new(),
            linked: Vec::new(),
            connections: Vec::new(),
        };
        for app in crowd {
            let world = app.world();
            look.ids.push(self_id(app));
            look.poses.push(world.resource::<Walker>().pose());
            look.connections
                .push(world.resource::<CallReport>().media_connections);
            let linked = world
                .try_query::<(&Participant, &ConnectionState)>()
                .map(|mut people| {
                    people
                        .iter(world)
                        .filter(|(_, state)| state.0 == PeerConnectionState::Connected)
                        .map(|(person, _)| person.peer_id.clone())
                        .collect()
                })
                .unwrap_or_default();
            look.linked.push(linked);
        }
        look
    }

    /// Whom bot `index` should want, by the room's own rule on the true poses.
    fn wanted_by(&self, index: usize, settings: &NearbySettings) -> HashSet<PeerId> {
        let others: HashMap<PeerId, Pose> = self
            .ids
            .iter()
            .zip(&self.poses)
            .enumerate()
            .filter(|(other, _)| *other != index)
            .filter_map(|(_, (id, pose))| id.clone().map(|id| (id, *pose)))
            .collect();
        nearby::choose(&self.poses[index], &others, &HashSet::new(), settings)
    }
}

/// Where each walker was when, for the last few seconds, and which poses of whom each
/// client already had measured.
struct Walks {
    taken: Vec<VecDeque<(Instant, Pose)>>,
    measured: HashMap<(usize, PeerId), Pose>,
}

impl Walks {
    /// How long a walker's poses are remembered.
    const KEPT: Duration = Duration::from_secs(3);

    fn new(people: usize) -> Self {
        Self {
            taken: vec![VecDeque::new(); people],
            measured: HashMap::new(),
        }
    }

    /// Walker `index` stands at `pose` now (just after its update, which told it).
    fn note(&mut self, index: usize, pose: Pose) {
        let now = Instant::now();
        let taken = &mut self.taken[index];
        if taken.back().is_none_or(|(_, last)| *last != pose) {
            taken.push_back((now, pose));
        }
        while taken
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > Self::KEPT)
        {
            taken.pop_front();
        }
    }

    /// Adds to `latencies` the delay of each walking pose that a client got since the
    /// last look: from when its walker took it to when it arrived.
    fn measure(&mut self, crowd: &[App], look: &Look, latencies: &mut Vec<f64>) {
        let index_of: HashMap<&PeerId, usize> = look
            .ids
            .iter()
            .enumerate()
            .filter_map(|(index, id)| id.as_ref().map(|id| (id, index)))
            .collect();
        for (receiver, app) in crowd.iter().enumerate() {
            let world = app.world();
            let Some(mut tracks) = world.try_query::<(&Participant, &PoseTrack)>() else {
                continue;
            };
            for (person, track) in tracks.iter(world) {
                let (Some((arrived, pose)), Some(&sender)) =
                    (track.newest(), index_of.get(&person.peer_id))
                else {
                    continue;
                };
                let key = (receiver, person.peer_id.clone());
                if !pose.moving || self.measured.get(&key) == Some(&pose) {
                    continue;
                }
                self.measured.insert(key, pose);
                let taken = self.taken[sender]
                    .iter()
                    .find(|(_, taken)| *taken == pose)
                    .map(|(at, _)| *at);
                if let Some(taken) = taken {
                    latencies.push(arrived.saturating_duration_since(taken).as_secs_f64() * 1e3);
                }
            }
        }
    }
}

/// Since when each pair has been due for a connection.
#[derive(Default)]
struct PairWatch {
    due_since: HashMap<(usize, usize), Instant>,
}

impl PairWatch {
    /// Takes a look at `now`: of the pairs due for longer than [`SETTLE`], how many
    /// there are and how many are connected.
    fn sample(&mut self, look: &Look, now: Instant) -> (u64, u64) {
        let settings = NearbySettings::default();
        let wanted: Vec<HashSet<PeerId>> = (0..look.ids.len())
            .map(|index| look.wanted_by(index, &settings))
            .collect();
        let mut settled = 0;
        let mut connected = 0;
        let mut still_due = HashMap::new();
        for a in 0..look.ids.len() {
            for b in a + 1..look.ids.len() {
                let (Some(id_a), Some(id_b)) = (&look.ids[a], &look.ids[b]) else {
                    continue;
                };
                if !(wanted[a].contains(id_b) && wanted[b].contains(id_a)) {
                    continue;
                }
                let since = *self.due_since.get(&(a, b)).unwrap_or(&now);
                still_due.insert((a, b), since);
                if now.saturating_duration_since(since) > SETTLE {
                    settled += 1;
                    if look.linked[a].contains(id_b) && look.linked[b].contains(id_a) {
                        connected += 1;
                    }
                }
            }
        }
        self.due_since = still_due;
        (settled, connected)
    }
}
