//! `meetspace bench`: real calls between headless clients in this process, over an
//! in-process signaling server on 127.0.0.1, with synthetic media or a y4m clip. Prints
//! join-to-first frame, glass-to-glass latency, received fps, bitrate and size, CPU per
//! received frame and stream, memory per peer, and the encode cost per sender for meshes
//! of several sizes (`scripts/compare-chromium.py` sets these beside Chromium's). With
//! `--voice-processing`, the cost and effect of the microphone's voice processing
//! instead; with `--space`, crowds wandering the lobby ([`space`]).

pub mod space;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bevy::prelude::*;

use crate::call::{CallCommand, CallReport, CallState, SendStats};
use crate::config::{BenchArgs, ClientConfig};
use crate::headless::headless_app;
use crate::media::stats::{JoinTimeline, nearest_rank};
use crate::media::voice_processing::{EchoPath, EchoReference, VoiceProcessor};
use crate::media::{
    CallStats, SendSettings, SyntheticVoice, VideoInput, VoiceProcessing, rms_level,
};
use crate::runtime::AsyncRuntime;
use crate::signaling::protocol::DisplayName;
use crate::signaling::server::{ServerLimits, SignalingServer};

/// The figures of one run.
struct RunFigures {
    first_frame_ms: Vec<f64>,
    /// Each connection's steps, each side's view.
    timelines: Vec<JoinTimeline>,
    latency_p50_ms: Vec<f64>,
    latency_p95_ms: Vec<f64>,
    received_fps: Vec<f64>,
    /// Each received stream's video bitrate, kbit/s.
    received_kbps: Vec<f64>,
    /// Each received stream's last picture size.
    received_sizes: Vec<(u32, u32)>,
    frames_received: u64,
    cpu_seconds: f64,
    /// The wall-clock time over which `cpu_seconds` was taken.
    wall_seconds: f64,
    rss_growth_bytes: i64,
    encode_ms_per_frame: Vec<f64>,
    encoders: Vec<u64>,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.voice_processing {
        voice_processing(args.seconds);
        return Ok(());
    }
    if !args.space.is_empty() {
        return space::run(&args.space, args.seconds);
    }
    if let VideoInput::Camera(_) = args.video {
        bail!(
            "the bench runs all its clients in one process, and they cannot share a camera: \
             give it --video synthetic or --video file:PATH"
        );
    }
    let runtime = AsyncRuntime::new().context("cannot start the network runtime")?;
    let server = runtime
        .handle()
        .block_on(SignalingServer::bind(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ServerLimits::default(),
        ))
        .context("cannot start the signaling server")?;
    let url = server.url();
    runtime.handle().spawn(server.run());
    let media = SendSettings {
        width: args.width,
        height: args.height,
        fps: args.fps,
        video_kbps: args.video_kbps,
        video_input: args.video.clone(),
        ..SendSettings::default()
    };
    let size = match &media.video_input {
        VideoInput::Synthetic => format!("{}x{}", media.width, media.height),
        other => other.to_string(),
    };
    println!(
        "meetspace bench: {size}@{} VP8 at most {} kbit/s + Opus, {} s per run, {} runs per size, \
         loopback",
        media.fps, media.video_kbps, args.seconds, args.repeat
    );
    println!(
        "{:>4} {:>18} {:>18} {:>8} {:>10} {:>9} {:>14} {:>11} {:>12} {:>16} {:>8}",
        "N",
        "first frame p50/95",
        "glass-glass p50/95",
        "rx fps",
        "rx kbit/s",
        "rx size",
        "CPU ms/rx fr",
        "CPU/stream",
        "RSS MiB/peer",
        "encode ms/frame",
        "encoders"
    );
    for &peers in &args.mesh {
        if peers < 2 {
            bail!("a mesh needs at least 2 peers, got {peers}");
        }
        let runs = (0..args.repeat)
            .map(|_| run_once(&url, peers, &media, Duration::from_secs_f64(args.seconds)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        print_row(peers, &runs);
    }
    Ok(())
}

fn run_once(
    url: &str,
    peers: usize,
    media: &SendSettings,
    length: Duration,
) -> anyhow::Result<RunFigures> {
    let rss_before = resident_bytes();
    let cpu_before = cpu_seconds();
    let wall_before = Instant::now();
    let mut apps: Vec<App> = (0..peers)
        .map(|i| {
            let config = ClientConfig {
                media: SendSettings {
                    tone_hz: 300.0 + 100.0 * i as f32,
                    ..media.clone()
                },
                ..ClientConfig::synthetic(url.parse()?, DisplayName::parse(&format!("bench-{i}"))?)
            };
            let mut app = headless_app(config);
            app.finish();
            app.cleanup();
            Ok(app)
        })
        .collect::<anyhow::Result<_>>()?;

    let name = apps[0].world().resource::<ClientConfig>().name.clone();
    apps[0].world_mut().write_message(CallCommand::CreateRoom {
        name,
        public_title: None,
    });
    let room = pump(&mut apps, Duration::from_secs(10), |apps| {
        match apps[0].world().resource::<CallState>() {
            CallState::InCall { room, .. } => Some(room.clone()),
            _ => None,
        }
    })
    .context("the first peer could not create a room")?;
    for app in &mut apps[1..] {
        let name = app.world().resource::<ClientConfig>().name.clone();
        app.world_mut().write_message(CallCommand::JoinRoom {
            room: room.clone(),
            name,
        });
    }
    let started = Instant::now();
    pump(&mut apps, length, |_| None::<()>);
    let elapsed = started.elapsed().as_secs_f64();
    for app in &mut apps {
        app.world_mut().write_message(CallCommand::Leave);
    }
    pump(&mut apps, Duration::from_secs(5), |apps| {
        apps.iter()
            .all(|app| *app.world().resource::<CallState>() == CallState::Idle)
            .then_some(())
    });

    let mut figures = RunFigures {
        first_frame_ms: Vec::new(),
        timelines: Vec::new(),
        latency_p50_ms: Vec::new(),
        latency_p95_ms: Vec::new(),
        received_fps: Vec::new(),
        received_kbps: Vec::new(),
        received_sizes: Vec::new(),
        frames_received: 0,
        cpu_seconds: cpu_seconds() - cpu_before,
        wall_seconds: wall_before.elapsed().as_secs_f64(),
        rss_growth_bytes: resident_bytes() - rss_before,
        encode_ms_per_frame: Vec::new(),
        encoders: Vec::new(),
    };
    for app in &apps {
        for (_, stats) in app.world().resource::<CallReport>().peers.values() {
            add_peer(&mut figures, stats, elapsed);
        }
        let sent = app.world().resource::<SendStats>();
        let frames = sent.video_frames.load(Ordering::Relaxed).max(1);
        figures
            .encode_ms_per_frame
            .push(sent.encode_micros.load(Ordering::Relaxed) as f64 / 1000.0 / frames as f64);
        figures
            .encoders
            .push(sent.video_encoders.load(Ordering::Relaxed));
    }
    drop(apps);
    Ok(figures)
}

fn add_peer(figures: &mut RunFigures, stats: &CallStats, elapsed: f64) {
    figures.frames_received += stats.frames_decoded;
    figures
        .received_fps
        .push(stats.frames_decoded as f64 / elapsed);
    figures
        .received_kbps
        .push(stats.video_bytes_received as f64 * 8.0 / 1000.0 / elapsed);
    figures.received_sizes.push((stats.width, stats.height));
    figures.first_frame_ms.extend(stats.first_frame_ms);
    figures.timelines.push(stats.join);
    figures.latency_p50_ms.extend(stats.latency_ms_p50);
    figures.latency_p95_ms.extend(stats.latency_ms_p95);
}

/// Updates every app until `done` gives a value or `limit` passes.
fn pump<T>(
    apps: &mut [App],
    limit: Duration,
    mut done: impl FnMut(&[App]) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        for app in apps.iter_mut() {
            app.update();
        }
        if let Some(value) = done(apps) {
            return Some(value);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn print_row(peers: usize, runs: &[RunFigures]) {
    let all = |pick: fn(&RunFigures) -> &Vec<f64>| -> Vec<f64> {
        runs.iter()
            .flat_map(|run| pick(run).iter().copied())
            .collect()
    };
    let first = all(|run| &run.first_frame_ms);
    let p50s = all(|run| &run.latency_p50_ms);
    let p95s = all(|run| &run.latency_p95_ms);
    let fps = all(|run| &run.received_fps);
    let kbps = all(|run| &run.received_kbps);
    let encode = all(|run| &run.encode_ms_per_frame);
    let frames: u64 = runs.iter().map(|run| run.frames_received).sum();
    let cpu: f64 = runs.iter().map(|run| run.cpu_seconds).sum();
    let stream_seconds: f64 = runs
        .iter()
        .map(|run| run.wall_seconds * run.received_fps.len() as f64)
        .sum();
    let size = most_common(
        runs.iter()
            .flat_map(|run| run.received_sizes.iter().copied()),
    )
    .map_or_else(
        || "-".to_owned(),
        |(width, height)| format!("{width}x{height}"),
    );
    let rss = runs
        .iter()
        .map(|run| run.rss_growth_bytes)
        .max()
        .unwrap_or(0) as f64
        / peers as f64
        / (1024.0 * 1024.0);
    let encoders = runs
        .iter()
        .flat_map(|run| run.encoders.iter())
        .max()
        .copied()
        .unwrap_or(0);
    // Frames from a file carry no capture stamps, so no glass-to-glass figure.
    let glass_to_glass = if p50s.is_empty() {
        "-".to_owned()
    } else {
        format!(
            "{:.1}/{:.1} ms",
            percentile(&p50s, 0.5),
            percentile(&p95s, 0.95)
        )
    };
    println!(
        "{:>4} {:>18} {:>18} {:>8.1} {:>10.0} {:>9} {:>14.2} {:>10.1}% {:>12.1} {:>16.2} {:>8}",
        peers,
        format!(
            "{:.0}/{:.0} ms",
            percentile(&first, 0.5),
            percentile(&first, 0.95)
        ),
        glass_to_glass,
        mean(&fps),
        mean(&kbps),
        size,
        cpu * 1000.0 / frames.max(1) as f64,
        cpu * 100.0 / stream_seconds.max(f64::MIN_POSITIVE),
        rss,
        mean(&encode),
        encoders,
    );
    let timelines: Vec<JoinTimeline> = runs
        .iter()
        .flat_map(|run| run.timelines.iter().copied())
        .collect();
    let mut line = String::from("     join timeline p50/p95 ms from arrival:");
    for (step, (name, _)) in JoinTimeline::default().steps().into_iter().enumerate() {
        let times: Vec<f64> = timelines
            .iter()
            .filter_map(|timeline| timeline.steps()[step].1)
            .collect();
        line += &format!(
            " {name} {:.0}/{:.0},",
            percentile(&times, 0.5),
            percentile(&times, 0.95)
        );
    }
    line += &format!(
        " decoded {:.0}/{:.0}",
        percentile(&first, 0.5),
        percentile(&first, 0.95)
    );
    println!("{line}");
}

/// The value seen most often (the first of equals).
fn most_common<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    for value in values {
        match counts.iter_mut().find(|(seen, _)| *seen == value) {
            Some((_, count)) => *count += 1,
            None => counts.push((value, 1)),
        }
    }
    counts
        .into_iter()
        .rev()
        .max_by_key(|(_, count)| *count)
        .map(|(value, _)| value)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn percentile(values: &[f64], p: f64) -> f64 {
    nearest_rank(&mut values.to_vec(), p).unwrap_or(f64::NAN)
}

/// Runs each part of the voice processing (and all together) over `seconds` of a
/// synthetic voice whose echo comes back 80 ms later at -6 dB; prints the time per 10 ms
/// frame (on one otherwise idle thread: its CPU time) and how much lower the echo is
/// than without processing.
fn voice_processing(seconds: f64) {
    let frames = (seconds * 50.0).ceil().max(100.0) as usize;
    let parts = [
        ("none", VoiceProcessing::NONE),
        (
            "echo cancellation",
            VoiceProcessing {
                echo_cancellation: true,
                ..VoiceProcessing::NONE
            },
        ),
        (
            "noise suppression",
            VoiceProcessing {
                noise_suppression: true,
                ..VoiceProcessing::NONE
            },
        ),
        (
            "auto gain",
            VoiceProcessing {
                auto_gain: true,
                ..VoiceProcessing::NONE
            },
        ),
        ("all", VoiceProcessing::ALL),
    ];
    println!(
        "meetspace bench --voice-processing: {:.0} s of a synthetic voice, echo 80 ms late at -6 dB, \
         48 kHz mono, one thread",
        frames as f64 / 50.0
    );
    println!(
        "{:<18} {:>16} {:>14} {:>22}",
        "processing", "µs per 10 ms", "of real time", "echo left (last 1 s)"
    );
    let mut echo_without = None;
    for (name, parts) in parts {
        let reference = std::sync::Arc::new(EchoReference::default());
        let mut processor = VoiceProcessor::new(parts, reference.clone());
        let mut echo_path = EchoPath::new(4, 0.5);
        let mut voice = SyntheticVoice::default();
        let mut busy = Duration::ZERO;
        let mut last_second = Vec::new();
        for index in 0..frames {
            let played = voice.next_samples();
            reference.record(&played, 1, Duration::from_millis(20));
            let mut frame = echo_path.hear(&played);
            let started = Instant::now();
            processor.process(&mut frame, Duration::from_millis(20));
            busy += started.elapsed();
            if index + 50 >= frames {
                last_second.extend(frame.samples);
            }
        }
        let per_frame_us = busy.as_secs_f64() * 1e6 / (frames * 2) as f64;
        let level = rms_level(&last_second).max(1e-6);
        let without = *echo_without.get_or_insert(level);
        println!(
            "{name:<18} {per_frame_us:>16.1} {:>13.2}% {:>19.1} dB",
            per_frame_us / 10_000.0 * 100.0,
            20.0 * (level / without).log10()
        );
    }
}

/// CPU time (user + system) this process has used, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    cpu_seconds_in(Path::new("/proc/self/stat"))
}

/// CPU time (user + system) in a `/proc` stat file: a process's or one thread's
/// (`/proc/self/task/TID/stat`); 0 when it cannot be read.
fn cpu_seconds_in(stat: &Path) -> f64 {
    let Ok(stat) = std::fs::read_to_string(stat) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and
    // 13th of those, in clock ticks (100 per second on Linux).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident memory of this process, from `/proc/self/status`.
fn resident_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<i64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}
