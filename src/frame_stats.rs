//! `--frame-stats SECS`: how long the windowed app's frames take in the room once video
//! shows on every panel, and how much of a frame goes into getting video into textures.
//!
//! Measured for SECS seconds, then printed to stdout:
//! - frame time: the interval between frames (`Time<Real>`'s delta), median and p95;
//! - the CPU-side copy: the time in [`show_newest_frames`], which puts each newly
//!   decoded frame into its participant's `Image` (timed through [`VideoCopyTiming`]);
//! - the render-side upload: the CPU time of Bevy's render world in asset extraction
//!   (moving changed assets, here the video images, into the render world) and in
//!   `prepare_assets::<GpuImage>` (writing them into GPU textures with
//!   `Queue::write_texture`). The copy the GPU driver makes when the queue is submitted
//!   is part of the frame time but not of these figures.
//!
//! [`show_newest_frames`]: crate::call::show_newest_frames

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::render::render_asset::{AssetExtractionSystems, prepare_assets};
use bevy::render::renderer::RenderAdapterInfo;
use bevy::render::texture::GpuImage;
use bevy::render::{ExtractSchedule, Render, RenderApp};

use crate::call::{Participant, VideoCopyTiming};
use crate::capture::RoomReady;
use crate::space::Graphics;

/// `--frame-stats`: measures for `seconds` once [`RoomReady`] is reached, prints, exits.
pub struct FrameStatsPlugin {
    /// How long to measure.
    pub seconds: f64,
}

/// Render-world timings, shared with the main world.
#[derive(Debug, Default)]
struct RenderSamples {
    /// Collect samples (set while measuring).
    active: bool,
    extract: Vec<Duration>,
    prepare: Vec<Duration>,
}

type SharedSamples = Arc<Mutex<RenderSamples>>;

fn lock(samples: &SharedSamples) -> std::sync::MutexGuard<'_, RenderSamples> {
    samples.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The render world's stopwatch.
#[derive(Resource)]
struct RenderClock {
    samples: SharedSamples,
    extract_started: Option<Instant>,
    prepare_started: Option<Instant>,
}

/// What the main world collects.
#[derive(Resource)]
struct FrameSamples {
    seconds: f64,
    started: Option<Instant>,
    frames: Vec<Duration>,
    copies: Vec<Duration>,
    copied_frames: u64,
    panels: usize,
    render: SharedSamples,
}

impl Plugin for FrameStatsPlugin {
    fn build(&self, app: &mut App) {
        let render = SharedSamples::default();
        app.insert_resource(VideoCopyTiming::default())
            .insert_resource(FrameSamples {
                seconds: self.seconds,
                started: None,
                frames: Vec::new(),
                copies: Vec::new(),
                copied_frames: 0,
                panels: 0,
                render: render.clone(),
            })
            .add_systems(Last, collect);
        if let Some(render_app) = app.get_sub_app_mut(RenderApp) {
            render_app
                .insert_resource(RenderClock {
                    samples: render,
                    extract_started: None,
                    prepare_started: None,
                })
                .add_systems(
                    ExtractSchedule,
                    (
                        start_extract.before(AssetExtractionSystems),
                        stop_extract.after(AssetExtractionSystems),
                    ),
                )
                .add_systems(
                    Render,
                    (
                        start_prepare.before(prepare_assets::<GpuImage>),
                        stop_prepare.after(prepare_assets::<GpuImage>),
                    ),
                );
        }
    }
}

fn start_extract(mut clock: ResMut<RenderClock>) {
    clock.extract_started = Some(Instant::now());
}

fn stop_extract(mut clock: ResMut<RenderClock>) {
    if let Some(started) = clock.extract_started.take() {
        let mut samples = lock(&clock.samples);
        if samples.active {
            samples.extract.push(started.elapsed());
        }
    }
}

fn start_prepare(mut clock: ResMut<RenderClock>) {
    clock.prepare_started = Some(Instant::now());
}

fn stop_prepare(mut clock: ResMut<RenderClock>) {
    if let Some(started) = clock.prepare_started.take() {
        let mut samples = lock(&clock.samples);
        if samples.active {
            samples.prepare.push(started.elapsed());
        }
    }
}

/// Collects one frame's figures while measuring; prints and exits at the end.
fn collect(
    ready: Res<RoomReady>,
    mut samples: ResMut<FrameSamples>,
    mut copy: ResMut<VideoCopyTiming>,
    time: Res<Time<Real>>,
    participants: Query<(), With<Participant>>,
    (adapter, graphics): (Option<Res<RenderAdapterInfo>>, Res<Graphics>),
    mut exit: MessageWriter<AppExit>,
) {
    let copied = std::mem::take(&mut *copy);
    if ready.timed_out {
        eprintln!(
            "meetspace: frame stats not measured: video did not show on every panel within {} s \
             ({} of {} panels showing video)",
            crate::capture::READY_TIMEOUT.as_secs(),
            ready.showing,
            ready.participants
        );
        exit.write(AppExit::error());
        return;
    }
    if ready.frames_since_ready().is_none_or(|frames| frames < 2) {
        return;
    }
    let Some(started) = samples.started else {
        samples.started = Some(Instant::now());
        lock(&samples.render).active = true;
        return;
    };
    samples.frames.push(time.delta());
    samples.copies.push(copied.spent);
    samples.copied_frames += copied.frames;
    samples.panels = participants.iter().count();
    if started.elapsed().as_secs_f64() < samples.seconds {
        return;
    }
    let render = {
        let mut render = lock(&samples.render);
        render.active = false;
        std::mem::take(&mut *render)
    };
    let adapter = adapter.map_or_else(
        || "unknown adapter".to_owned(),
        |info| format!("{} ({:?})", info.name, info.backend),
    );
    let adapter = format!("{adapter}, graphics {}", graphics.describe());
    println!("{}", report(&samples, &render, &adapter));
    exit.write(AppExit::Success);
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The `q` quantile of `samples` (the sample at rank `q·(n−1)`, rounded), in
/// milliseconds.
fn quantile(samples: &[Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    millis(sorted[rank])
}

fn mean(samples: &[Duration]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    millis(samples.iter().sum::<Duration>()) / samples.len() as f64
}

fn report(samples: &FrameSamples, render: &RenderSamples, adapter: &str) -> String {
    let frames = samples.frames.len();
    let seconds = samples.frames.iter().sum::<Duration>().as_secs_f64();
    let median = quantile(&samples.frames, 0.5);
    let upload_median = quantile(&render.extract, 0.5) + quantile(&render.prepare, 0.5);
    let upload_mean = mean(&render.extract) + mean(&render.prepare);
    format!(
        "frame stats: {panels} panels, {frames} frames in {seconds:.1} s on {adapter}\n\
         frame time: median {median:.2} ms, p95 {p95:.2} ms, mean {frame_mean:.2} ms ({fps:.1} fps)\n\
         video frames copied into Images: {copied} ({per_frame:.2} per app frame)\n\
         CPU copy into Images (show_newest_frames): median {copy_median:.2} ms, mean {copy_mean:.2} ms per frame ({copy_share:.1}% of the mean frame)\n\
         render-side upload (asset extraction {extract:.2} ms + prepare_assets::<GpuImage> {prepare:.2} ms, medians): {upload_median:.2} ms per frame, mean {upload_mean:.2} ms ({upload_share:.1}% of the mean frame)",
        panels = samples.panels,
        p95 = quantile(&samples.frames, 0.95),
        frame_mean = mean(&samples.frames),
        fps = frames as f64 / seconds.max(f64::EPSILON),
        copied = samples.copied_frames,
        per_frame = samples.copied_frames as f64 / frames.max(1) as f64,
        copy_median = quantile(&samples.copies, 0.5),
        copy_mean = mean(&samples.copies),
        copy_share = 100.0 * mean(&samples.copies) / mean(&samples.frames),
        extract = quantile(&render.extract, 0.5),
        prepare = quantile(&render.prepare, 0.5),
        upload_share = 100.0 * upload_mean / mean(&samples.frames),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.5), 51.0);
        assert_eq!(quantile(&samples, 0.95), 95.0);
        assert!(quantile(&[], 0.5).is_nan());
        assert_eq!(mean(&samples), 50.5);
    }
}
