//! The call driver: the async task that owns the signaling connection of the current
//! call, turns [`CallCommand`]s into protocol messages and server messages into
//! [`CallEvent`]s. One fresh connection per call, closed when the call ends.

use crossbeam_channel::Sender;
use tokio::sync::mpsc;

use super::{CallCommand, CallError, CallEvent};
use crate::signaling::protocol::{ClientMessage, ErrorCode, ServerMessage};
use crate::signaling::{self, LinkEvent, SignalUrl, SignalingLink};

/// The signaling connection of the call in progress.
struct Session {
    link: SignalingLink,
    /// Whether the server has welcomed us into the room yet.
    welcomed: bool,
}

/// Runs until the ECS side drops its command sender.
pub(super) async fn run(
    signal: SignalUrl,
    mut commands: mpsc::UnboundedReceiver<CallCommand>,
    events: Sender<CallEvent>,
) {
    let mut session: Option<Session> = None;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => session = on_command(&signal, session, command, &events).await,
                None => break,
            },
            Some(event) = next_link_event(&mut session) => {
                session = on_link_event(session, event, &events);
            }
        }
    }
}

async fn next_link_event(session: &mut Option<Session>) -> Option<LinkEvent> {
    match session {
        Some(session) => session.link.incoming.recv().await,
        None => std::future::pending().await,
    }
}

async fn on_command(
    signal: &SignalUrl,
    session: Option<Session>,
    command: CallCommand,
    events: &Sender<CallEvent>,
) -> Option<Session> {
    let request = match command {
        CallCommand::CreateRoom { name } => ClientMessage::CreateRoom { name },
        CallCommand::JoinRoom { room, name } => ClientMessage::JoinRoom { room, name },
        CallCommand::Leave => {
            if let Some(session) = session {
                let _ = session.link.outgoing.send(ClientMessage::Leave);
            }
            let _ = events.send(CallEvent::Left);
            return None;
        }
    };
    if session.is_some() {
        // The ECS state machine only forwards create/join when idle.
        let _ = events.send(CallEvent::Failed(CallError::AlreadyInCall));
        return session;
    }
    match signaling::connect(signal).await {
        Ok(link) => {
            let _ = link.outgoing.send(request);
            Some(Session {
                link,
                welcomed: false,
            })
        }
        Err(error) => {
            tracing::warn!(%error, "signaling connection failed");
            let _ = events.send(CallEvent::Failed(CallError::SignalingUnreachable(
                error.to_string(),
            )));
            let _ = events.send(CallEvent::Left);
            None
        }
    }
}

fn on_link_event(
    session: Option<Session>,
    event: LinkEvent,
    events: &Sender<CallEvent>,
) -> Option<Session> {
    let mut session = session?;
    match event {
        LinkEvent::Message(ServerMessage::Welcome {
            room,
            peer_id,
            peers,
        }) => {
            session.welcomed = true;
            let _ = events.send(CallEvent::Joined {
                room,
                self_id: peer_id,
                peers,
            });
        }
        LinkEvent::Message(ServerMessage::PeerJoined { peer }) => {
            let _ = events.send(CallEvent::PeerJoined(peer));
        }
        LinkEvent::Message(ServerMessage::PeerLeft { peer_id }) => {
            let _ = events.send(CallEvent::PeerLeft(peer_id));
        }
        LinkEvent::Message(ServerMessage::Signal { from, .. }) => {
            tracing::debug!(%from, "signal received; no media session takes it yet");
        }
        LinkEvent::Message(ServerMessage::Error { code, message }) => {
            let fatal = !session.welcomed || code == ErrorCode::MessageTooLarge;
            let _ = events.send(CallEvent::Failed(CallError::Refused { code, message }));
            if fatal {
                let _ = events.send(CallEvent::Left);
                return None;
            }
        }
        LinkEvent::Closed { reason } => {
            let _ = events.send(CallEvent::Failed(CallError::ConnectionLost(reason)));
            let _ = events.send(CallEvent::Left);
            return None;
        }
    }
    Some(session)
}
