//! The 3D meeting space: a lobby with a door per public room (plus "New room" and
//! "Join by id") and rooms behind them, where everyone else is an avatar carrying
//! their video and standing where they walk (in a room, [`RoomView::Gallery`] puts
//! everyone's panel on a circle instead), the player who walks between them, a mirrored self-view in the corner of their view, and spatial audio
//! (each voice from its panel or avatar).
//!
//! The space never touches the network: it reads [`CallState`], [`PublicRooms`] and
//! the participants' components, and writes [`CallCommand`]s. Out of any room the
//! client is in the lobby, which it enters by itself (`presence`), telling the call
//! where the player walks. Where the player is follows the call: joining a room (from
//! a door, the overlay or `--room`) takes them into the room; the call ending (exit
//! door, hang-up, error) brings them back to the lobby.
//!
//! The room is a second enclosure far along +X ([`ROOM`]), not the lobby reused: both
//! stay built, so entering or leaving is a move of the camera and nothing is rebuilt.

mod apparent;
mod audio;
mod avatars;
mod graphics;
mod layout;
mod lobby;
mod overhead;
mod panel_view;
mod panels;
mod player;
mod presence;
mod reduced_resolution;
mod scenery;
mod self_view;
mod sign_material;
mod tone_mapping;
mod wall_screen;

use std::time::Duration;

use bevy::prelude::*;

pub use apparent::{TELL_SIZES_EVERY, seen_height};
pub use audio::{SpatialAudio, roll_off_in};
pub use avatars::AVATAR_SCALE;
pub use graphics::{Graphics, GraphicsChoice};
pub use layout::{
    Area, DoorPlacement, PanelSlot, SPEAKING_LEVEL, approach_fraction, keep_clear, panel_slots,
    ring_glow,
};
pub use lobby::{Door, DoorKind, room_title};
pub use overhead::{BUBBLE_SHOWN, Overhead, bubble_lines};
pub use panel_view::{PanelRect, PanelView};
pub use panels::{Panel, PanelParts, PanelScreen};
pub use player::Player;
pub use tone_mapping::ToneMappingTablePlugin;
pub use wall_screen::{WallScreen, wall_screen_center, wall_screen_size};

use crate::call::{CallCommand, CallState, CallSystems};
use crate::media::SignPainter;

/// The lobby's floor.
pub const LOBBY: Area = Area {
    center: Vec2::ZERO,
    half_extents: Vec2::new(10.0, 7.0),
};

/// The room's floor, far enough from the lobby that neither is seen from the other.
pub const ROOM: Area = Area {
    center: Vec2::new(60.0, 0.0),
    half_extents: Vec2::new(7.5, 7.5),
};

/// How often the lobby asks the server for its public rooms while not in a call.
const ROOM_LIST_INTERVAL: Duration = Duration::from_secs(3);

/// Where the player is.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Location {
    /// In the lobby, among the doors.
    #[default]
    Lobby,
    /// In the room, among the panels.
    Room,
}

impl Location {
    /// The floor of this place.
    pub fn area(self) -> Area {
        match self {
            Self::Lobby => LOBBY,
            Self::Room => ROOM,
        }
    }

    /// Where the player appears on arrival, and the yaw they face.
    pub fn arrival(self) -> (Vec2, f32) {
        match self {
            // Facing the back wall with the public rooms' doors.
            Self::Lobby => (LOBBY.center + Vec2::new(0.0, 3.5), 0.0),
            // Facing the panels, with the exit behind.
            Self::Room => (ROOM.center + Vec2::new(0.0, 2.5), 0.0),
        }
    }
}

/// How the people of a room behind a door are shown (the lobby always shows avatars).
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RoomView {
    /// Each person an avatar standing where they walk, as in the lobby.
    #[default]
    Avatars,
    /// Everyone's panel at full size on a circle, as in a video gallery.
    Gallery,
}

/// Whether people are avatars standing where they are (the lobby, or a room in the
/// avatar view) rather than panels on the gallery's circle.
pub fn shows_avatars(state: &CallState, view: RoomView) -> bool {
    state.in_lobby() || view == RoomView::Avatars
}

/// Set when the player walks through the "Join by id" door; the overlay shows its
/// room-id form when it sees `true` and sets it back to `false`.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinByIdRequested(pub bool);

/// The meeting space: builds the lobby and the room, owns the one 3D camera (the
/// player), and keeps doors and panels in step with the call.
pub struct SpacePlugin;

impl Plugin for SpacePlugin {
    fn build(&self, app: &mut App) {
        match SignPainter::new() {
            Ok(painter) => {
                app.insert_resource(painter);
            }
            Err(error) => warn!("signs will be blank: {error}"),
        }
        reduced_resolution::add_stretch_pass(app);
        app.init_resource::<Location>()
            .init_resource::<JoinByIdRequested>()
            .init_resource::<RoomView>()
            .init_resource::<SpatialAudio>()
            .init_resource::<presence::LobbyEntry>()
            .init_resource::<Graphics>()
            // Set by `graphics`; here too for apps without Bevy's lights (the tests').
            .init_resource::<GlobalAmbientLight>()
            .insert_resource(ClearColor(Color::srgb(0.55, 0.62, 0.7)))
            .add_systems(
                PreUpdate,
                presence::enter_lobby.before(CallSystems::Commands),
            )
            .add_systems(
                Startup,
                (
                    lobby::build_lobby,
                    lobby::build_room,
                    player::spawn_player,
                    panels::init_panel_kit,
                    overhead::init_overhead_kit,
                ),
            )
            .add_systems(
                Update,
                (
                    (
                        follow_call_state,
                        player::arrive,
                        player::steer,
                        player::walk,
                        lobby::enter_doors,
                    )
                        .chain(),
                    (refresh_public_rooms, lobby::show_public_rooms).chain(),
                    presence::tell_pose.after(player::walk),
                    (
                        panels::spawn_panels,
                        panels::despawn_panels,
                        panels::arrange_panels,
                        avatars::place_avatars.after(player::walk),
                        avatars::show_bodies,
                        panels::show_video,
                        panels::show_status,
                        overhead::spawn_overhead,
                        overhead::show_hands,
                        overhead::show_bubbles,
                        wall_screen::show_shared_screen,
                    )
                        .chain(),
                    (self_view::spawn_self_view, self_view::show_self_view).chain(),
                    audio::place_voices.after(player::walk),
                    apparent::tell_shown_sizes,
                    (
                        graphics::note_renderer,
                        graphics::apply_graphics,
                        graphics::swap_shaders,
                        reduced_resolution::follow_window,
                    )
                        .chain(),
                ),
            );
    }
}

/// Moves the player to the room once they are in one (whoever started the call) and
/// back to the lobby when it ends or the lobby is entered.
fn follow_call_state(state: Res<CallState>, mut location: ResMut<Location>) {
    let next = match (&*state, *location) {
        (CallState::Idle, Location::Room) => Location::Lobby,
        (CallState::InCall { .. }, Location::Room) if state.in_lobby() => Location::Lobby,
        (CallState::InCall { .. }, Location::Lobby) if state.is_changed() && !state.in_lobby() => {
            Location::Room
        }
        _ => return,
    };
    *location = next;
}

/// Asks the server for its public rooms every few seconds while out of any room.
fn refresh_public_rooms(
    state: Res<CallState>,
    time: Res<Time<Real>>,
    mut last: Local<Option<Duration>>,
    mut commands: MessageWriter<CallCommand>,
) {
    if *state != CallState::Idle && !state.in_lobby() {
        return;
    }
    let now = time.elapsed();
    if last.is_none_or(|sent| now.saturating_sub(sent) >= ROOM_LIST_INTERVAL) {
        commands.write(CallCommand::ListRooms);
        *last = Some(now);
    }
}
