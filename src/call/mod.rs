//! The call: its state machine (Idle, Joining, InCall, Leaving), one [`Participant`]
//! entity per remote peer, and the two channels across the async edge:
//! [`CallCommand`]s go from the ECS to the driver task, [`CallEvent`]s come back.
//!
//! Systems write [`CallCommand`] messages; [`CallNotice`] messages tell the UI (or a
//! bot) what happened. Nothing here touches the network.

mod driver;

use std::collections::HashMap;

use bevy::prelude::*;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::config::ClientConfig;
use crate::runtime::AsyncRuntime;
use crate::signaling::protocol::{DisplayName, ErrorCode, PeerId, PeerInfo, RoomId};

/// What the app asks of the call.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum CallCommand {
    /// Make a new room and enter it.
    CreateRoom {
        /// The name others see.
        name: DisplayName,
    },
    /// Enter a room by its id.
    JoinRoom {
        /// The room.
        room: RoomId,
        /// The name others see.
        name: DisplayName,
    },
    /// Hang up and go back to idle.
    Leave,
}

/// What the async side reports back; turned into ECS changes by [`apply_call_events`].
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// We are in `room` as `self_id`, with `peers` already there.
    Joined {
        /// The room.
        room: RoomId,
        /// Our id in it.
        self_id: PeerId,
        /// Who was there before us.
        peers: Vec<PeerInfo>,
    },
    /// A peer entered the room.
    PeerJoined(PeerInfo),
    /// A peer left the room.
    PeerLeft(PeerId),
    /// The call is over (hung up, refused, or lost); back to idle.
    Left,
    /// Something went wrong; [`CallEvent::Left`] follows when the call cannot go on.
    Failed(CallError),
}

/// Why something in a call failed, in words a user understands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    /// The signaling server could not be reached.
    #[error("cannot reach the signaling server: {0}")]
    SignalingUnreachable(String),
    /// The server refused a request (wrong room id, room full, ...).
    #[error("{message}")]
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's words.
        message: String,
    },
    /// The signaling connection dropped during a call.
    #[error("lost the connection to the signaling server: {0}")]
    ConnectionLost(String),
    /// Create or join while a call is going on.
    #[error("already in a call; hang up first")]
    AlreadyInCall,
}

impl CallError {
    /// The server's error code, when the server refused something.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A short machine-readable name: the server's code, or `signaling_unreachable`,
    /// `connection_lost`, `already_in_call`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SignalingUnreachable(_) => "signaling_unreachable",
            Self::Refused { code, .. } => code.as_str(),
            Self::ConnectionLost(_) => "connection_lost",
            Self::AlreadyInCall => "already_in_call",
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::SignalingUnreachable(_) => {
                "check the --signal address, that the server runs, and your network"
            }
            Self::Refused {
                code: ErrorCode::RoomNotFound,
                ..
            } => "check the room id; a room closes when its last participant leaves",
            Self::Refused {
                code: ErrorCode::RoomFull,
                ..
            } => "the room has no free place; ask for a new room",
            Self::Refused { .. } => "try again; if it keeps happening, report it",
            Self::ConnectionLost(_) => "check your network, then join the room again",
            Self::AlreadyInCall => "hang up before creating or joining another room",
        }
    }
}

/// Where the call stands.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub enum CallState {
    /// No call.
    #[default]
    Idle,
    /// Asked to create or join; waiting for the server.
    Joining,
    /// In a room.
    InCall {
        /// The room's id (what to share).
        room: RoomId,
        /// Our id in the room.
        self_id: PeerId,
    },
    /// Hanging up.
    Leaving,
}

/// A remote person in the call; one entity each, spawned on join, despawned on leave.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// Their id in the room.
    pub peer_id: PeerId,
    /// Their display name.
    pub name: DisplayName,
}

/// What happened, for the UI's toasts and for bots.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum CallNotice {
    /// We entered a room.
    Joined(RoomId),
    /// Someone came in.
    PeerJoined(DisplayName),
    /// Someone left.
    PeerLeft(DisplayName),
    /// The call ended.
    Left,
    /// Something failed.
    Failed(CallError),
}

/// The ECS end of the async edge.
#[derive(Resource)]
pub struct CallLink {
    commands: mpsc::UnboundedSender<CallCommand>,
    events: crossbeam_channel::Receiver<CallEvent>,
}

/// Runs calls: adds [`CallState`], the messages, and the systems that bridge to the
/// driver task on the app's [`AsyncRuntime`] (made here if the app has none yet).
pub struct CallPlugin {
    config: ClientConfig,
}

impl CallPlugin {
    /// A call plugin that signals through `config.signal`.
    pub fn new(config: ClientConfig) -> Self {
        Self { config }
    }
}

impl Plugin for CallPlugin {
    fn build(&self, app: &mut App) {
        if !app.world().contains_resource::<AsyncRuntime>() {
            let runtime = AsyncRuntime::new().expect("cannot start the network runtime");
            app.insert_resource(runtime);
        }
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = crossbeam_channel::unbounded();
        app.world()
            .resource::<AsyncRuntime>()
            .handle()
            .spawn(driver::run(
                self.config.signal.clone(),
                command_rx,
                event_tx,
            ));
        app.insert_resource(CallLink {
            commands: command_tx,
            events: event_rx,
        })
        .insert_resource(self.config.clone())
        .init_resource::<CallState>()
        .add_message::<CallCommand>()
        .add_message::<CallNotice>()
        .add_systems(
            PreUpdate,
            (forward_call_commands, apply_call_events).chain(),
        );
    }
}

/// Sends commands that fit the current state to the driver and moves the state on.
pub fn forward_call_commands(
    mut commands: MessageReader<CallCommand>,
    mut state: ResMut<CallState>,
    link: Res<CallLink>,
    mut notices: MessageWriter<CallNotice>,
) {
    for command in commands.read() {
        let next = match (command, &*state) {
            (CallCommand::CreateRoom { .. } | CallCommand::JoinRoom { .. }, CallState::Idle) => {
                CallState::Joining
            }
            (CallCommand::CreateRoom { .. } | CallCommand::JoinRoom { .. }, _) => {
                notices.write(CallNotice::Failed(CallError::AlreadyInCall));
                continue;
            }
            (CallCommand::Leave, CallState::Joining | CallState::InCall { .. }) => {
                CallState::Leaving
            }
            (CallCommand::Leave, CallState::Idle | CallState::Leaving) => continue,
        };
        if link.commands.send(command.clone()).is_err() {
            error!("the call driver has stopped; commands are lost");
            continue;
        }
        *state = next;
    }
}

/// Drains the driver's events and applies them: state, participants, notices.
///
/// `roster` maps peer ids to their entities at once, so a peer that joins and leaves
/// within one frame (before the spawn is applied) is still despawned.
pub fn apply_call_events(
    link: Res<CallLink>,
    mut state: ResMut<CallState>,
    mut roster: Local<HashMap<PeerId, (Entity, DisplayName)>>,
    mut commands: Commands,
    mut notices: MessageWriter<CallNotice>,
) {
    for event in link.events.try_iter() {
        match event {
            CallEvent::Joined {
                room,
                self_id,
                peers,
            } => {
                despawn_all(&mut roster, &mut commands);
                for peer in peers {
                    spawn_participant(&mut roster, &mut commands, peer);
                }
                notices.write(CallNotice::Joined(room.clone()));
                *state = CallState::InCall { room, self_id };
            }
            CallEvent::PeerJoined(peer) => {
                notices.write(CallNotice::PeerJoined(peer.name.clone()));
                spawn_participant(&mut roster, &mut commands, peer);
            }
            CallEvent::PeerLeft(peer_id) => {
                if let Some((entity, name)) = roster.remove(&peer_id) {
                    commands.entity(entity).despawn();
                    notices.write(CallNotice::PeerLeft(name));
                }
            }
            CallEvent::Left => {
                despawn_all(&mut roster, &mut commands);
                notices.write(CallNotice::Left);
                *state = CallState::Idle;
            }
            CallEvent::Failed(error) => {
                notices.write(CallNotice::Failed(error));
            }
        }
    }
}

fn spawn_participant(
    roster: &mut HashMap<PeerId, (Entity, DisplayName)>,
    commands: &mut Commands,
    peer: PeerInfo,
) {
    let entity = commands
        .spawn(Participant {
            peer_id: peer.peer_id.clone(),
            name: peer.name.clone(),
        })
        .id();
    if let Some((stale, _)) = roster.insert(peer.peer_id, (entity, peer.name)) {
        commands.entity(stale).despawn();
    }
}

fn despawn_all(roster: &mut HashMap<PeerId, (Entity, DisplayName)>, commands: &mut Commands) {
    for (_, (entity, _)) in roster.drain() {
        commands.entity(entity).despawn();
    }
}
