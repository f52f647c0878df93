//! Rooms on Janus beside the same rooms as a full mesh:
//! `cargo bench --bench sfu_rooms [-- SIZES [SECONDS]]` (default `4,8,12,16` and 20 s).
//!
//! For each size N, N `meetspace bot`s (320x240 at 15 fps, VP8 and Opus) join one room
//! of an in-process signaling server: once with a Janus of their own behind it (the
//! tests' configuration, in a network namespace; every room moves to it at two people),
//! once more on Janus standing 6 m from the middle of the room on a circle, each asking
//! for the simulcast layers that fit how large the others appear to it (`spread`; the
//! first run's bots stand nowhere, so they take the whole picture of everyone),
//! and, up to the server's usual room capacity (8), once as a full mesh. When every bot
//! decodes every other, SECONDS are measured and one row printed per room: each bot's
//! CPU (mean and highest), the video it receives (kbit/s, and decoded fps per stream),
//! how many connections carry its camera, and Janus's CPU per stream it forwards.
//! Needs root and Debian's `janus` (setup.sh installs it).

#[path = "../tests/janus/mod.rs"]
mod janus;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use janus::{Bot, JANUS_ADMIN_KEY, JANUS_API_SECRET, JanusProcess};
use meetspace::runtime::AsyncRuntime;
use meetspace::signaling::server::sfu::SfuSettings;
use meetspace::signaling::server::{DEFAULT_ROOM_CAPACITY, ServerLimits, SignalingServer};

/// How long the bots of one room may take until each decodes every other.
const JOIN_LIMIT: Duration = Duration::from_secs(120);

/// How far from the middle of the room the bots of a `spread` room stand, in metres.
const SPREAD_RADIUS: f32 = 6.0;

/// How the room's media goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// On Janus, everyone receiving everyone's whole picture.
    Sfu,
    /// On Janus, the bots on a circle, each receiving the layers that fit.
    Spread,
    /// A full mesh.
    Mesh,
}

impl Route {
    /// Its name in the table.
    fn name(self) -> &'static str {
        match self {
            Route::Sfu => "sfu",
            Route::Spread => "spread",
            Route::Mesh => "mesh",
        }
    }

    /// As the bots' figures say it (`sent.via`).
    fn via(self) -> &'static str {
        match self {
            Route::Sfu | Route::Spread => "sfu",
            Route::Mesh => "mesh",
        }
    }
}

/// Where bot `number` of `size` stands in a `spread` room (`--at`).
fn spread_spot(number: usize, size: usize) -> String {
    let angle = std::f32::consts::TAU * number as f32 / size as f32;
    format!(
        "{:.2},{:.2}",
        SPREAD_RADIUS * angle.cos(),
        SPREAD_RADIUS * angle.sin()
    )
}

/// What a room of bots did while measured.
struct RoomFigures {
    /// Each bot's CPU, in % of a core.
    cpu_percent: Vec<f64>,
    /// Each bot's received video, kbit/s.
    received_kbps: Vec<f64>,
    /// Decoded frames per second, per stream.
    fps_per_stream: f64,
    /// Connections carrying each bot's camera (the most of any bot).
    upstreams: u64,
    /// Janus's CPU per forwarded video stream, in % of a core (on the SFU).
    janus_percent_per_stream: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let sizes: Vec<usize> = args
        .first()
        .map_or("4,8,12,16", String::as_str)
        .split(',')
        .map(|size| {
            size.parse()
                .with_context(|| format!("not a room size: {size}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let seconds: f64 = args
        .get(1)
        .map_or(Ok(20.0), |text| text.parse())
        .context("SECONDS is a number")?;
    if sizes.iter().any(|&size| size < 2) {
        bail!("a room needs two people at least");
    }
    let runtime = AsyncRuntime::new().context("cannot start the network runtime")?;
    println!(
        "sfu_rooms: bots sending 320x240 at 15 fps, {seconds} s measured per room; \
         CPU in % of one core"
    );
    println!(
        "{:>3} {:>6} {:>17} {:>18} {:>11} {:>10} {:>19}",
        "N",
        "route",
        "bot CPU mean/max",
        "rx kbit/s per bot",
        "fps/stream",
        "upstreams",
        "Janus CPU/stream"
    );
    for (index, &size) in sizes.iter().enumerate() {
        for route in [Route::Sfu, Route::Spread, Route::Mesh] {
            if route == Route::Mesh && size > DEFAULT_ROOM_CAPACITY {
                continue;
            }
            // A room that does not come together is reported, and the next one runs.
            match measure_room(&runtime, index, size, route, seconds) {
                Ok(figures) => print_row(size, route, &figures),
                Err(error) => println!("{size:>3} {:>6} not measured: {error:#}", route.name()),
            }
        }
    }
    Ok(())
}

/// Runs one room of `size` bots over `route` and measures it for `seconds`; `index`
/// keeps each room's namespace apart.
fn measure_room(
    runtime: &AsyncRuntime,
    index: usize,
    size: usize,
    route: Route,
    seconds: f64,
) -> anyhow::Result<RoomFigures> {
    // Three namespaces per size (their subnets come from the number: below 60).
    let namespace = index * 3 + route as usize;
    let janus = JanusProcess::start(
        u8::try_from(namespace)
            .ok()
            .filter(|n| *n < 60)
            .context("at most 20 sizes")?,
    );
    let limits = ServerLimits {
        room_capacity: size.max(DEFAULT_ROOM_CAPACITY),
        ..ServerLimits::default()
    };
    let url = runtime.handle().block_on(async {
        let server = SignalingServer::bind(SocketAddr::from((janus.namespace.host_ip, 0)), limits)
            .await
            .context("a port for the signaling server")?;
        let server = match route {
            Route::Sfu | Route::Spread => server.with_sfu(SfuSettings {
                instances: vec![janus.url()],
                api_secret: Some(JANUS_API_SECRET.to_owned()),
                admin_key: Some(JANUS_ADMIN_KEY.to_owned()),
                mesh_limit: 2,
            }),
            Route::Mesh => server,
        };
        let url = server.url();
        tokio::spawn(server.run());
        anyhow::Ok(url)
    })?;
    let spot = |number: usize| match route {
        Route::Spread => vec!["--at".to_owned(), spread_spot(number, size)],
        Route::Sfu | Route::Mesh => Vec::new(),
    };
    let first_args: Vec<String> = ["--create".to_owned()].into_iter().chain(spot(0)).collect();
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let (first, room) = Bot::start(&janus, &url, "Bot0", &first_args);
    let room = room.context("the first bot made no room")?;
    let mut bots = vec![first];
    for number in 1..size {
        let args: Vec<String> = ["--room".to_owned(), room.clone()]
            .into_iter()
            .chain(spot(number))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bots.push(Bot::start(&janus, &url, &format!("Bot{number}"), &args).0);
    }
    let via = route.via();
    let started = Instant::now();
    while !bots.iter().all(|bot| {
        let decoded = bot.decoded();
        bot.figures()["sent"]["via"] == via
            && decoded.len() == size - 1
            && decoded.values().all(|frames| *frames >= 15)
    }) {
        if started.elapsed() > JOIN_LIMIT {
            let states: Vec<String> = bots
                .iter()
                .map(|bot| {
                    let sent = &bot.figures()["sent"];
                    format!(
                        "via {} with {} upstream(s), decoded {:?}",
                        sent["via"],
                        sent["upstreams"],
                        bot.decoded()
                    )
                })
                .collect();
            bail!(
                "{size} bots via {via}: not every bot decoded every other within \
                 {JOIN_LIMIT:?}:\n{}",
                states.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    let received = |bot: &Bot| -> u64 {
        bot.per_peer(|peer| peer["video_bytes_received"].as_u64())
            .values()
            .sum()
    };
    let decoded = |bot: &Bot| -> u64 { bot.decoded().values().sum() };
    let before: Vec<(Duration, u64, u64)> = bots
        .iter()
        .map(|bot| (bot.cpu_time(), received(bot), decoded(bot)))
        .collect();
    let janus_before = janus.cpu_time();
    let measured = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let elapsed = measured.elapsed().as_secs_f64();
    let janus_cpu = janus.cpu_time().saturating_sub(janus_before);
    let people = bots[0].decoded();
    if people.len() != size - 1 {
        bail!("the first bot lost someone while measured: {people:?}");
    }

    let mut cpu_percent = Vec::new();
    let mut received_kbps = Vec::new();
    let mut frames = 0;
    let mut upstreams = 0;
    for (bot, (cpu, bytes, decoded_then)) in bots.iter().zip(&before) {
        let cpu = bot.cpu_time().saturating_sub(*cpu);
        cpu_percent.push(100.0 * cpu.as_secs_f64() / elapsed);
        received_kbps.push(received(bot).saturating_sub(*bytes) as f64 * 8.0 / 1000.0 / elapsed);
        frames += decoded(bot).saturating_sub(*decoded_then);
        upstreams = upstreams.max(bot.figures()["sent"]["upstreams"].as_u64().unwrap_or(0));
    }
    let streams = (size * (size - 1)) as f64;
    let figures = RoomFigures {
        cpu_percent,
        received_kbps,
        fps_per_stream: frames as f64 / elapsed / streams,
        upstreams,
        janus_percent_per_stream: (route != Route::Mesh)
            .then(|| 100.0 * janus_cpu.as_secs_f64() / elapsed / streams),
    };
    Ok(figures)
}

fn print_row(size: usize, route: Route, figures: &RoomFigures) {
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let max = |values: &[f64]| values.iter().copied().fold(0.0, f64::max);
    println!(
        "{size:>3} {:>6} {:>11.0} / {:>3.0} {:>18.0} {:>11.1} {:>10} {:>19}",
        route.name(),
        mean(&figures.cpu_percent),
        max(&figures.cpu_percent),
        mean(&figures.received_kbps),
        figures.fps_per_stream,
        figures.upstreams,
        figures
            .janus_percent_per_stream
            .map_or("-".to_owned(), |percent| format!("{percent:.2} %")),
    );
}
