//! Screenshots of the window for tests and documentation (`--screenshot PATH --frames
//! N`), and the moment they count from: [`RoomReady`], when the player is in the room
//! and every participant's video shows on their panel (or, in the lobby, on their
//! avatar).
//!
//! Each screenshot is saved through Bevy's screenshot API (the frame as rendered, not a
//! grab of the screen) together with a JSON file that says where every panel's video
//! screen is in the picture, so a test can check the pixels of each panel.
//! The overlay's main panel starts closed, so that it covers no panel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bevy::camera::CameraUpdateSystems;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::transform::TransformSystems;
use bevy::window::PrimaryWindow;
use serde::Serialize;

use crate::call::{CallState, MediaState, Participant, VideoFeed};
use crate::space::{Location, Panel, PanelParts, PanelRect, PanelView, Player};
use crate::ui::Toasts;

/// How long the room gets to show every participant's video before the screenshots
/// are taken anyway (and the app exits with an error).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What has to show before [`RoomReady`] is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Nothing: ready from the first frame.
    Nothing,
    /// The player in the room with at least this many participants, and every
    /// participant's video on their panel.
    Panels(usize),
    /// The player in the lobby with at least this many people, every one's video on
    /// their avatar's face (avatars walk: they need not stand still).
    Avatars(usize),
}

/// Whether the room shows everyone's video yet, with the panels and the player at
/// rest; latched once reached.
#[derive(Resource, Debug, Clone)]
pub struct RoomReady {
    /// What to wait for.
    pub wait_for: WaitFor,
    /// Frames (updates) run so far.
    pub frame: u64,
    /// The frame at which the room became ready.
    pub ready_at: Option<u64>,
    /// Participants seen at the last check.
    pub participants: usize,
    /// Panels showing their participant's video at the last check.
    pub showing: usize,
    /// Set when [`READY_TIMEOUT`] passed before the room was ready.
    pub timed_out: bool,
}

impl RoomReady {
    /// Not ready yet, waiting for `wait_for`.
    pub fn new(wait_for: WaitFor) -> Self {
        Self {
            wait_for,
            frame: 0,
            ready_at: None,
            participants: 0,
            showing: 0,
            timed_out: false,
        }
    }

    /// Frames run since the room became ready.
    pub fn frames_since_ready(&self) -> Option<u64> {
        self.ready_at.map(|at| self.frame - at)
    }
}

/// Panels and the player: what must stand still before screenshots.
type PanelOrPlayer = Or<(With<Panel>, With<Player>)>;

/// Counts frames and checks whether every panel shows its participant's video and
/// stands still, as does the player.
fn track_room_ready(
    mut ready: ResMut<RoomReady>,
    (location, state): (Res<Location>, Res<CallState>),
    participants: Query<(Entity, &VideoFeed, &MediaState), With<Participant>>,
    panels: Query<(&Panel, &PanelParts)>,
    placed: Query<(Entity, &GlobalTransform), PanelOrPlayer>,
    materials: Res<Assets<StandardMaterial>>,
    mut last_placed: Local<Vec<(Entity, Mat4)>>,
) {
    ready.frame += 1;
    if ready.ready_at.is_some() {
        return;
    }
    let mut now_placed: Vec<(Entity, Mat4)> = placed
        .iter()
        .map(|(entity, transform)| (entity, transform.to_matrix()))
        .collect();
    now_placed.sort_by_key(|(entity, _)| *entity);
    let still = now_placed.len() == last_placed.len()
        && now_placed
            .iter()
            .zip(last_placed.iter())
            .all(|((a, m), (b, n))| a == b && m.abs_diff_eq(*n, 1e-4));
    *last_placed = now_placed;
    let showing = panels
        .iter()
        .filter(|(panel, parts)| {
            participants
                .get(panel.participant)
                .ok()
                .and_then(|(_, feed, media)| {
                    let image = feed.image.as_ref()?;
                    (media.video && feed.frames_shown > 0).then_some(image.id())
                })
                .is_some_and(|image| parts.screen_image(&materials) == Some(image))
        })
        .count();
    let count = participants.iter().count();
    ready.participants = count;
    ready.showing = showing;
    let reached = match ready.wait_for {
        WaitFor::Nothing => true,
        WaitFor::Panels(at_least) => {
            // Panels glide to new places when people arrive: wait until they stand.
            *location == Location::Room && count >= at_least && showing == count && still
        }
        WaitFor::Avatars(at_least) => state.in_lobby() && count >= at_least && showing == count,
    };
    if reached {
        ready.ready_at = Some(ready.frame);
        info!("video shows on all {count} panels at frame {}", ready.frame);
    }
}

/// Screenshots to take: `paths[i]` once `every * (i + 1)` frames have run since the
/// room became ready; the app exits once the last one is saved.
#[derive(Resource, Debug, Clone)]
pub struct ScreenshotPlan {
    /// Where the PNGs go, in order.
    pub paths: Vec<PathBuf>,
    /// Frames between screenshots (and before the first).
    pub every: u64,
    /// Screenshots requested so far.
    pub taken: usize,
    /// Screenshots saved (or failed) so far.
    pub saved: usize,
    /// What went wrong, if anything; the app then exits with an error.
    pub failure: Option<String>,
}

impl ScreenshotPlan {
    /// A plan for `paths`, `every` frames apart.
    pub fn new(paths: Vec<PathBuf>, every: u64) -> Self {
        Self {
            paths,
            every,
            taken: 0,
            saved: 0,
            failure: None,
        }
    }
}

/// `--screenshot`: waits for [`RoomReady`], takes the planned screenshots, exits.
pub struct CapturePlugin {
    /// What the room must show before frames count.
    pub wait_for: WaitFor,
    /// The screenshots; none for an app that only needs [`RoomReady`].
    pub plan: Option<ScreenshotPlan>,
}

impl Plugin for CapturePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(RoomReady::new(self.wait_for))
            .add_systems(PostUpdate, (track_room_ready, give_up_waiting).chain());
        if let Some(plan) = &self.plan {
            app.insert_resource(plan.clone())
                .add_systems(Startup, crate::ui::close_menu)
                .add_systems(
                    PostUpdate,
                    take_screenshots
                        .after(track_room_ready)
                        .after(give_up_waiting)
                        .after(TransformSystems::Propagate)
                        .after(CameraUpdateSystems),
                );
        }
    }
}

/// After [`READY_TIMEOUT`] declares the room ready anyway, so the screenshots show
/// what went wrong; the app then exits with an error.
fn give_up_waiting(
    mut ready: ResMut<RoomReady>,
    time: Res<Time<Real>>,
    plan: Option<ResMut<ScreenshotPlan>>,
) {
    if ready.ready_at.is_some() || time.elapsed() < READY_TIMEOUT {
        return;
    }
    let why = format!(
        "video did not show on every panel, at rest, within {} s ({} of {} panels \
         showing video, waiting for {:?})",
        READY_TIMEOUT.as_secs(),
        ready.showing,
        ready.participants,
        ready.wait_for
    );
    error!("{why}");
    ready.ready_at = Some(ready.frame);
    ready.timed_out = true;
    if let Some(mut plan) = plan {
        plan.failure.get_or_insert(why);
    }
}

/// What the JSON next to a screenshot holds.
#[derive(Debug, Clone, Serialize)]
pub struct ScreenshotInfo {
    /// The window's size in physical pixels (the PNG's size).
    pub window: [u32; 2],
    /// The window's scale factor (logical to physical pixels).
    pub scale_factor: f32,
    /// The frame the screenshot was taken at, counted from the app's start.
    pub frame: u64,
    /// The frame at which video showed on every panel.
    pub ready_frame: Option<u64>,
    /// Every panel, by participant name.
    pub panels: Vec<PanelRect>,
    /// The self-view's bounding box in window pixels, while it shows.
    pub self_view: Option<[f32; 4]>,
    /// The texts of the last toasts shown, faded or not, oldest first.
    pub toasts: Vec<String>,
}

/// Requests the next screenshot when its frame comes, with the panels' rectangles as
/// they are this frame (after transforms propagate, before the frame renders).
fn take_screenshots(
    ready: Res<RoomReady>,
    mut plan: ResMut<ScreenshotPlan>,
    window: Query<&Window, With<PrimaryWindow>>,
    panels: PanelView,
    toasts: Option<Res<Toasts>>,
    mut commands: Commands,
) {
    let Some(since) = ready.frames_since_ready() else {
        return;
    };
    if plan.taken >= plan.paths.len() || since < plan.every * (plan.taken as u64 + 1) {
        return;
    }
    let Ok(window) = window.single() else {
        return;
    };
    let path = plan.paths[plan.taken].clone();
    plan.taken += 1;
    let scale_factor = window.scale_factor();
    let info = ScreenshotInfo {
        window: [window.physical_width(), window.physical_height()],
        scale_factor,
        frame: ready.frame,
        ready_frame: ready.ready_at,
        panels: panels.rects(scale_factor),
        self_view: panels.self_view_rect(scale_factor),
        toasts: toasts.map(|toasts| toasts.history()).unwrap_or_default(),
    };
    if let Err(error) = write_info(&path.with_extension("json"), &info) {
        plan.failure.get_or_insert(error);
    }
    commands
        .spawn(Screenshot::primary_window())
        .observe(save_screenshot(path));
}

fn write_info(path: &Path, info: &ScreenshotInfo) -> Result<(), String> {
    let json = serde_json::to_string_pretty(info).map_err(|error| error.to_string())?;
    std::fs::write(path, json).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// Saves a captured screenshot as a PNG (RGB; the alpha channel is dropped), then exits
/// the app once the last planned one is saved.
fn save_screenshot(
    path: PathBuf,
) -> impl FnMut(On<ScreenshotCaptured>, ResMut<ScreenshotPlan>, MessageWriter<AppExit>) {
    move |captured, mut plan, mut exit| {
        let saved = captured
            .image
            .clone()
            .try_into_dynamic()
            .map_err(|error| error.to_string())
            .and_then(|image| {
                image
                    .to_rgb8()
                    .save_with_format(&path, image::ImageFormat::Png)
                    .map_err(|error| error.to_string())
            });
        match saved {
            Ok(()) => info!("screenshot saved to {}", path.display()),
            Err(error) => {
                plan.failure
                    .get_or_insert(format!("cannot save {}: {error}", path.display()));
            }
        }
        plan.saved += 1;
        if plan.saved == plan.paths.len() {
            exit.write(match &plan.failure {
                None => AppExit::Success,
                Some(why) => {
                    eprintln!("meetspace: {why}");
                    AppExit::error()
                }
            });
        }
    }
}
