//! Being somewhere in the space: out of any room, the client is in the lobby (it
//! enters it by itself, and again after a failure, waiting longer each time), and it
//! tells the call where the player stands as they walk, there or in a room.

use std::time::Duration;

use bevy::platform::time::Instant;
use bevy::prelude::*;

use super::player::{Player, floor_of};
use crate::call::poses::SEND_EVERY;
use crate::call::{CallCommand, CallState};
use crate::config::ClientConfig;
use crate::signaling::protocol::{Pose, RoomId};

/// The first wait before entering the lobby again after it failed.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// The longest wait between two attempts.
const LONGEST_RETRY: Duration = Duration::from_secs(30);
/// Smaller moves than this (metres, or radians of heading) are not news.
const POSE_STEP: f32 = 0.01;

/// Entering the lobby: when we last tried, and when to try next.
#[derive(Resource, Debug, Default)]
pub(super) struct LobbyEntry {
    /// The wait before the next attempt, doubled by each failure.
    retry: Option<Duration>,
    last_attempt: Option<Instant>,
}

/// Enters the lobby when the call is idle: with our pose first, so the others see us
/// where we stand. Runs just before the call takes the frame's commands (in
/// `PreUpdate`), so that the join goes out in the frame it is decided, not a frame later
/// (on a software renderer the first frames take most of a second each). A join or
/// room asked for meanwhile (`--room`, the demo, the page's `#room=`, the overlay) goes
/// instead.
pub(super) fn enter_lobby(
    state: Res<CallState>,
    config: Res<ClientConfig>,
    players: Query<(&Player, &Transform)>,
    mut entry: ResMut<LobbyEntry>,
    mut commands: MessageMutator<CallCommand>,
) {
    let room_asked = commands.read().any(|command| {
        matches!(
            command,
            CallCommand::JoinRoom { .. } | CallCommand::CreateRoom { .. }
        )
    });
    if room_asked {
        return;
    }
    let now = Instant::now();
    if state.in_lobby() {
        entry.retry = None;
    }
    if *state != CallState::Idle {
        return;
    }
    let backed_off = match (entry.last_attempt, entry.retry) {
        (Some(at), Some(retry)) => now.saturating_duration_since(at) >= retry,
        _ => true,
    };
    if !backed_off {
        return;
    }
    // Idle again after an attempt: it failed (or we were sent out); wait longer.
    if entry.last_attempt.is_some() {
        entry.retry = Some(
            entry
                .retry
                .map_or(FIRST_RETRY, |retry| (retry * 2).min(LONGEST_RETRY)),
        );
    }
    entry.last_attempt = Some(now);
    if let Ok((player, transform)) = players.single() {
        commands.write(CallCommand::SetPose(pose_of(player, transform, false)));
    }
    commands.write(CallCommand::JoinRoom {
        room: RoomId::lobby(),
        name: config.name.clone(),
    });
}

/// The pose of the player standing at `transform`.
fn pose_of(player: &Player, transform: &Transform, moving: bool) -> Pose {
    let spot = floor_of(transform);
    Pose::new(spot.x, spot.y, player.yaw, moving).unwrap_or_default()
}

/// What was told last, and when.
#[derive(Default)]
pub(super) struct ToldPose {
    pose: Option<Pose>,
    at: Option<Instant>,
}

/// Tells the call where the player stands, in the lobby or a room: on arrival, each
/// change at most every [`SEND_EVERY`], and once more when they stop.
pub(super) fn tell_pose(
    state: Res<CallState>,
    players: Query<(&Player, &Transform)>,
    mut told: Local<ToldPose>,
    mut commands: MessageWriter<CallCommand>,
) {
    let Ok((player, transform)) = players.single() else {
        return;
    };
    let now = Instant::now();
    let still = pose_of(player, transform, false);
    let arrived = state.is_changed() && matches!(*state, CallState::InCall { .. });
    let last = match told.pose {
        Some(last) if !arrived => last,
        _ => {
            // A new place (which forgot where we stood): where we stand now.
            told.pose = Some(still);
            told.at = Some(now);
            commands.write(CallCommand::SetPose(still));
            return;
        }
    };
    let moved = (still.x - last.x).hypot(still.z - last.z) >= POSE_STEP
        || (still.yaw - last.yaw).abs() >= POSE_STEP;
    let due = told
        .at
        .is_none_or(|at| now.saturating_duration_since(at) >= SEND_EVERY);
    let pose = if moved {
        Pose {
            moving: true,
            ..still
        }
    } else if last.moving {
        still // stopped: say so once
    } else {
        return;
    };
    if due {
        told.pose = Some(pose);
        told.at = Some(now);
        commands.write(CallCommand::SetPose(pose));
    }
}

#[cfg(test)]
mod tests {
    use bevy::ecs::message::Messages;

    use super::*;
    use crate::signaling::protocol::DisplayName;

    /// An idle call with the lobby entry, and what was asked before the frame.
    fn frame_asking(before: Option<CallCommand>) -> Vec<CallCommand> {
        let mut app = App::new();
        let name = DisplayName::parse("Ada").expect("a valid name");
        let signal = "ws://127.0.0.1:9/ws".parse().expect("a valid address");
        app.add_message::<CallCommand>()
            .init_resource::<CallState>()
            .init_resource::<LobbyEntry>()
            .insert_resource(ClientConfig::synthetic(signal, name))
            .add_systems(PreUpdate, enter_lobby);
        if let Some(command) = before {
            app.world_mut().write_message(command);
        }
        app.update();
        app.world_mut()
            .resource_mut::<Messages<CallCommand>>()
            .drain()
            .collect()
    }

    #[test]
    fn an_idle_call_enters_the_lobby_unless_a_room_was_asked_for() {
        let name = DisplayName::parse("Ada").expect("a valid name");
        let lobby = CallCommand::JoinRoom {
            room: RoomId::lobby(),
            name: name.clone(),
        };
        assert_eq!(frame_asking(None), vec![lobby]);
        let room = CallCommand::JoinRoom {
            room: RoomId::parse("k3m9px2q7rabcdefghjk").expect("a valid room id"),
            name,
        };
        assert_eq!(frame_asking(Some(room.clone())), vec![room]);
    }
}
