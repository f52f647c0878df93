//! Where the panels' video screens, the self-view and the wall's shared screen are in
//! the window: for screenshots ([`crate::capture`]) and the browser build's test hooks.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use serde::Serialize;

use super::panels::{Panel, PanelScreen, SCREEN_SIZE};
use super::player::Player;
use super::self_view::{self, SelfViewScreen};
use super::wall_screen::WallScreen;
use crate::call::{Participant, VideoFeed};
use crate::signaling::protocol::PeerId;

/// Where a panel's video screen is in a screenshot.
#[derive(Debug, Clone, Serialize)]
pub struct PanelRect {
    /// The participant's display name.
    pub name: String,
    /// Their peer id.
    pub peer_id: String,
    /// Video frames shown on the panel so far.
    pub frames_shown: u64,
    /// The screen's corners in window pixels (top-left, top-right, bottom-right,
    /// bottom-left as seen from the front); absent if a corner is behind the camera.
    pub corners: Option<[[f32; 2]; 4]>,
    /// The bounding box of the corners, `[x_min, y_min, x_max, y_max]` in window pixels.
    pub rect: Option<[f32; 4]>,
}

/// Projects the corners of a `size` quad (a panel screen, the self-view) into window
/// pixels.
fn screen_corners(
    camera: &Camera,
    camera_transform: &GlobalTransform,
    screen: &GlobalTransform,
    size: Vec2,
    scale_factor: f32,
) -> Option<[[f32; 2]; 4]> {
    let half = size / 2.0;
    let local = [
        Vec3::new(-half.x, half.y, 0.0),
        Vec3::new(half.x, half.y, 0.0),
        Vec3::new(half.x, -half.y, 0.0),
        Vec3::new(-half.x, -half.y, 0.0),
    ];
    let mut corners = [[0.0; 2]; 4];
    for (corner, point) in corners.iter_mut().zip(local) {
        let world = screen.transform_point(point);
        let viewport = camera.world_to_viewport(camera_transform, world).ok()?;
        *corner = (viewport * scale_factor).to_array();
    }
    Some(corners)
}

fn bounding_box(corners: &[[f32; 2]; 4]) -> [f32; 4] {
    corners.iter().fold(
        [f32::MAX, f32::MAX, f32::MIN, f32::MIN],
        |[x0, y0, x1, y1], [x, y]| [x0.min(*x), y0.min(*y), x1.max(*x), y1.max(*y)],
    )
}

/// The panels' video screens as the player's camera sees them; read by screenshots
/// and by the browser build's test hooks.
#[derive(SystemParam)]
pub struct PanelView<'w, 's> {
    camera: Query<'w, 's, (&'static Camera, &'static GlobalTransform), With<Player>>,
    panels: Query<'w, 's, (&'static Panel, &'static Children)>,
    screens: Query<'w, 's, &'static GlobalTransform, With<PanelScreen>>,
    participants: Query<'w, 's, (&'static Participant, &'static VideoFeed)>,
    self_view: Query<'w, 's, (&'static GlobalTransform, &'static Visibility), With<SelfViewScreen>>,
    walls: Query<'w, 's, &'static GlobalTransform, With<WallScreen>>,
}

impl PanelView<'_, '_> {
    /// Every panel's participant, with its video feed and its screen's corners in
    /// window pixels (`scale_factor` turns the camera's logical pixels into physical
    /// ones; none when a corner is behind the camera).
    fn panel_corners(
        &self,
        scale_factor: f32,
    ) -> impl Iterator<Item = (&Participant, &VideoFeed, Option<[[f32; 2]; 4]>)> {
        let camera = self.camera.single().ok();
        self.panels.iter().filter_map(move |(panel, children)| {
            let (participant, feed) = self.participants.get(panel.participant).ok()?;
            let screen = children
                .iter()
                .find_map(|child| self.screens.get(child).ok())?;
            let corners = camera.and_then(|(camera, transform)| {
                screen_corners(camera, transform, screen, SCREEN_SIZE, scale_factor)
            });
            Some((participant, feed, corners))
        })
    }

    /// Every panel with its screen's place in window pixels (`scale_factor` turns the
    /// camera's logical pixels into physical ones), sorted by name.
    pub fn rects(&self, scale_factor: f32) -> Vec<PanelRect> {
        let mut rects: Vec<PanelRect> = self
            .panel_corners(scale_factor)
            .map(|(participant, feed, corners)| PanelRect {
                name: participant.name.as_str().to_owned(),
                peer_id: participant.peer_id.as_str().to_owned(),
                frames_shown: feed.frames_shown,
                rect: corners.as_ref().map(bounding_box),
                corners,
            })
            .collect();
        rects.sort_by(|a, b| a.name.cmp(&b.name));
        rects
    }

    /// How many pixels high each participant's panel screen shows now, on a window of
    /// `window` physical pixels: the part of it inside the window, 0 when it is out of
    /// view or behind the camera.
    pub fn shown_heights(&self, window: Vec2, scale_factor: f32) -> Vec<(PeerId, f32)> {
        self.panel_corners(scale_factor)
            .map(|(participant, _, corners)| {
                let height = corners.map_or(0.0, |corners| {
                    let [x_min, y_min, x_max, y_max] = bounding_box(&corners);
                    let inside_x = x_max.min(window.x) > x_min.max(0.0);
                    let visible = y_max.min(window.y) - y_min.max(0.0);
                    if inside_x { visible.max(0.0) } else { 0.0 }
                });
                (participant.peer_id.clone(), height)
            })
            .collect()
    }

    /// The corners of the shared screen on the wall in window pixels (as
    /// [`PanelRect::corners`]), while one hangs there and the camera sees all of it.
    pub fn wall_corners(&self, scale_factor: f32) -> Option<[[f32; 2]; 4]> {
        let (camera, camera_transform) = self.camera.single().ok()?;
        let wall = self.walls.single().ok()?;
        // The wall's quad is a unit one, scaled to the picture's size.
        screen_corners(camera, camera_transform, wall, Vec2::ONE, scale_factor)
    }

    /// The self-view's bounding box in window pixels, while it shows.
    pub fn self_view_rect(&self, scale_factor: f32) -> Option<[f32; 4]> {
        let (camera, camera_transform) = self.camera.single().ok()?;
        let (screen, visibility) = self.self_view.single().ok()?;
        if *visibility == Visibility::Hidden {
            return None;
        }
        screen_corners(
            camera,
            camera_transform,
            screen,
            self_view::SIZE,
            scale_factor,
        )
        .as_ref()
        .map(bounding_box)
    }
}
