//! The statistics window: per participant what we receive, like a small
//! webrtc-internals. Toggled with I or the overlay's button.

use bevy::prelude::*;
use bevy_egui::{EguiContexts, egui};

use super::OverlayToggles;
use crate::call::Participant;
use crate::media::CallStats;

/// Shows the statistics window while it is toggled on.
pub(super) fn stats_window(
    mut contexts: EguiContexts,
    mut toggles: ResMut<OverlayToggles>,
    participants: Query<(&Participant, Option<&CallStats>)>,
) -> Result {
    if !toggles.stats {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    egui::Window::new("Call statistics")
        .open(&mut toggles.stats)
        .default_pos([380.0, 12.0])
        .show(ctx, |ui| {
            if participants.is_empty() {
                ui.label("Nobody else is in the call.");
            }
            for (participant, stats) in &participants {
                ui.heading(participant.name.as_str());
                match stats {
                    Some(stats) => stats_grid(ui, participant, stats),
                    None => {
                        ui.label("measuring…");
                    }
                }
                ui.separator();
            }
        });
    Ok(())
}

fn optional(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.1} {unit}"))
}

fn stats_grid(ui: &mut egui::Ui, participant: &Participant, stats: &CallStats) {
    let total = stats.packets_received + stats.packets_lost;
    let loss = if total == 0 {
        0.0
    } else {
        stats.packets_lost as f64 * 100.0 / total as f64
    };
    let rows = [
        ("codec", format!("{} / Opus", stats.video_codec)),
        ("resolution", format!("{}x{}", stats.width, stats.height)),
        ("frame rate", format!("{:.1} fps", stats.fps)),
        ("video bitrate", format!("{:.0} kbit/s", stats.video_kbps)),
        (
            "path",
            stats
                .candidate_pair
                .map_or_else(|| "—".to_owned(), |pair| pair.to_string()),
        ),
        ("round trip", optional(stats.rtt_ms, "ms")),
        (
            "packet loss",
            format!("{loss:.1} % ({} packets)", stats.packets_lost),
        ),
        ("frames lost", stats.frames_lost.to_string()),
        ("decode errors", stats.decode_errors.to_string()),
        (
            "latency p50 / p95",
            format!(
                "{} / {}",
                optional(stats.latency_ms_p50, "ms"),
                optional(stats.latency_ms_p95, "ms")
            ),
        ),
        ("first frame after", optional(stats.first_frame_ms, "ms")),
        ("audio packets", stats.audio_packets.to_string()),
        ("audio level", format!("{:.2}", stats.audio_level)),
    ];
    egui::Grid::new(("stats", participant.peer_id.as_str()))
        .num_columns(2)
        .show(ui, |ui| {
            for (label, value) in rows {
                ui.label(label);
                ui.monospace(value);
                ui.end_row();
            }
        });
}
