//! The signaling connection of a call, as both call drivers (native and browser) open
//! and keep it.

use crossbeam_channel::Sender;

use super::{CallError, CallEvent};
use crate::config::ClientConfig;
use crate::signaling::protocol::ClientMessage;
use crate::signaling::{self, SignalingLink};

/// The signaling connection of the call in progress.
pub(super) struct Link {
    pub(super) signaling: SignalingLink,
    /// Whether the server has welcomed us into the room yet.
    pub(super) welcomed: bool,
}

impl Link {
    /// Connects to `config.signal` and sends `request` (create or join). When the server
    /// cannot be reached the user is told through `events`, and the call is over.
    pub(super) async fn open(
        config: &ClientConfig,
        request: ClientMessage,
        events: &Sender<CallEvent>,
    ) -> Option<Self> {
        match signaling::connect(&config.signal, config.signal_ca.as_deref()).await {
            Ok(signaling) => {
                let _ = signaling.outgoing.send(request);
                Some(Self {
                    signaling,
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
}
