//! The space's lobby with real bots (processes of the `meetspace` binary) and a real
//! signaling server: media connections follow distance.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::TestServer;
use serde_json::Value;

/// Starts `meetspace bot --lobby` as `name` with `extra` flags, writing its figures to
/// `stats` when it leaves after `seconds`.
fn lobby_bot(url: &str, name: &str, seconds: u32, stats: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meetspace"))
        .args(["bot", "--signal", url, "--lobby", "--name", name])
        .args(["--resolution", "320x240", "--video-kbps", "300"])
        .args(["--duration", &seconds.to_string()])
        .arg("--stats-json")
        .arg(stats)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the meetspace binary starts")
}

fn read_stats(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).expect("the stats are JSON")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meetspace-lobby-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir.join(name)
}

/// One side's view of the other: its opening, closing, poses and received media.
fn check_side(stats: &Value, other: &str, earshot: f64, margin: f64) -> f64 {
    let space = &stats["space"];
    assert_eq!(space["max_media_connections"], 1, "{stats:#}");
    let opened = space["media_opened"].as_array().expect("media_opened");
    assert_eq!(opened.len(), 1, "one walk up: {stats:#}");
    let distance = opened[0]["distance_m"].as_f64().expect("a distance");
    assert!(
        distance <= earshot + 0.5,
        "opened {distance} m away: {stats:#}"
    );
    let first_frame_ms = opened[0]["ms_to_first_frame"]
        .as_f64()
        .unwrap_or_else(|| panic!("no frame came from {other}: {stats:#}"));
    let closed = space["media_closed"].as_array().expect("media_closed");
    assert_eq!(closed.len(), 1, "one walk away: {stats:#}");
    assert!(
        closed[0]["distance_m"].as_f64() > Some(earshot + margin),
        "closed too near: {stats:#}"
    );
    let peer = stats["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|peer| peer["name"] == other))
        .unwrap_or_else(|| panic!("{other} is not among the peers: {stats:#}"));
    assert!(peer["frames_decoded"].as_u64() > Some(10), "{peer:#}");
    assert!(peer["audio_packets"].as_u64() > Some(10), "{peer:#}");
    first_frame_ms
}

#[test]
fn a_walk_up_opens_the_media_and_the_walk_back_closes_it() {
    let server = TestServer::start();
    let (standing_stats, walking_stats) = (scratch("standing.json"), scratch("walking.json"));
    let mut standing = lobby_bot(
        &server.url,
        "Standing",
        24,
        &standing_stats,
        &["--at", "0,0"],
    );
    let mut walking = lobby_bot(
        &server.url,
        "Walking",
        24,
        &walking_stats,
        &["--at", "20,0", "--walk-to", "1,0;20,0", "--speed", "2"],
    );
    for bot in [&mut standing, &mut walking] {
        let status = bot.wait().expect("the bot runs");
        assert!(status.success(), "a bot failed: {status}");
    }
    let (standing, walking) = (read_stats(&standing_stats), read_stats(&walking_stats));
    let standing_ms = check_side(&standing, "Walking", 5.0, 2.0);
    let walking_ms = check_side(&walking, "Standing", 5.0, 2.0);
    // The walker's poses go through the server 5 times a second for its whole walk.
    let poses = standing["space"]["poses_received"]
        .as_object()
        .and_then(|poses| poses.values().next())
        .and_then(Value::as_u64)
        .unwrap_or(0);
    assert!(
        poses >= 60,
        "the standing bot received {poses} poses: {standing:#}"
    );
    println!(
        "earshot crossed to the first decoded frame: {standing_ms:.0} ms (standing bot), \
         {walking_ms:.0} ms (walking bot); {poses} poses received from the walker"
    );
}
