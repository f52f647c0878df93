//! The native WebSocket signaling client (tokio-tungstenite).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::protocol::ServerMessage;
use super::server::DEFAULT_MAX_MESSAGE_BYTES;
use super::{LinkEvent, SignalUrl, SignalingError, SignalingLink};

/// How long connecting (TCP + WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn connect(url: &SignalUrl) -> Result<SignalingLink, SignalingError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(4 * DEFAULT_MAX_MESSAGE_BYTES))
        .max_frame_size(Some(4 * DEFAULT_MAX_MESSAGE_BYTES));
    let handshake =
        tokio_tungstenite::connect_async_with_config(url.0.as_str(), Some(config), true);
    let (socket, _response) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| SignalingError::Timeout {
            url: url.clone(),
            seconds: CONNECT_TIMEOUT.as_secs(),
        })?
        .map_err(|error| SignalingError::Unreachable {
            url: url.clone(),
            reason: error.to_string(),
        })?;
    let (mut sink, mut stream) = socket.split();
    let (outgoing, mut to_send) = mpsc::unbounded_channel();
    let (received, incoming) = mpsc::unbounded_channel();

    tokio::spawn(async move {
        while let Some(message) = to_send.recv().await {
            let json = match serde_json::to_string(&message) {
                Ok(json) => json,
                Err(error) => {
                    tracing::error!(%error, "could not encode a signaling message");
                    continue;
                }
            };
            if sink.send(Message::text(json)).await.is_err() {
                return;
            }
        }
        // The link was dropped: say goodbye properly.
        let _ = sink.close().await;
    });

    tokio::spawn(async move {
        let reason = loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<ServerMessage>(text.as_str()) {
                        Ok(message) => {
                            if received.send(LinkEvent::Message(message)).is_err() {
                                return;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "ignoring a signaling message we do not understand");
                        }
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    break frame.map_or_else(
                        || "the server closed the connection".to_owned(),
                        |frame| format!("the server closed the connection ({})", frame.reason),
                    );
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => break error.to_string(),
                None => break "the connection ended".to_owned(),
            }
        };
        let _ = received.send(LinkEvent::Closed { reason });
    });

    Ok(SignalingLink { outgoing, incoming })
}
