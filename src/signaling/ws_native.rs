//! The native WebSocket signaling client (tokio-tungstenite; `wss://` through rustls).

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::link::{LinkEvent, SignalUrl, SignalingError, SignalingLink};
use super::protocol::ServerMessage;
use super::server::DEFAULT_MAX_MESSAGE_BYTES;
use super::tls;

/// How long connecting (TCP + WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often we ping the server, so that a dead path shows even when nobody talks.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Silence from the server (its pongs count) after which the connection counts as lost.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);

/// A byte stream to the server: plain TCP or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens TCP (and, for `wss://`, TLS) to the server of `url`.
async fn open_stream(
    url: &SignalUrl,
    extra_ca: Option<&Path>,
) -> Result<Box<dyn Stream>, SignalingError> {
    let unreachable = |reason: String| SignalingError::Unreachable {
        url: url.clone(),
        reason,
    };
    let host = url.0.host_str().unwrap_or_default();
    let port = url.0.port_or_known_default().unwrap_or(80);
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    if url.0.scheme() != "wss" {
        return Ok(Box::new(tcp));
    }
    let config = tls::client_config(extra_ca).map_err(|source| SignalingError::Tls {
        url: url.clone(),
        source,
    })?;
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
        .map_err(|e| unreachable(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| unreachable(format!("TLS: {e}")))?;
    Ok(Box::new(tls))
}

pub(super) async fn connect(
    url: &SignalUrl,
    extra_ca: Option<&Path>,
) -> Result<SignalingLink, SignalingError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(4 * DEFAULT_MAX_MESSAGE_BYTES))
        .max_frame_size(Some(4 * DEFAULT_MAX_MESSAGE_BYTES));
    let handshake = async {
        let stream = open_stream(url, extra_ca).await?;
        tokio_tungstenite::client_async_with_config(url.0.as_str(), stream, Some(config))
            .await
            .map_err(|error| SignalingError::Unreachable {
                url: url.clone(),
                reason: error.to_string(),
            })
    };
    let (socket, _response) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| SignalingError::Timeout {
            url: url.clone(),
            seconds: CONNECT_TIMEOUT.as_secs(),
        })??;
    let (mut sink, mut stream) = socket.split();
    let (outgoing, mut to_send) = mpsc::unbounded_channel();
    let (received, incoming) = mpsc::unbounded_channel();

    tokio::spawn(async move {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            let frame = tokio::select! {
                message = to_send.recv() => match message {
                    Some(message) => match serde_json::to_string(&message) {
                        Ok(json) => Message::text(json),
                        Err(error) => {
                            tracing::error!(%error, "could not encode a signaling message");
                            continue;
                        }
                    },
                    None => break,
                },
                _ = ping.tick() => Message::Ping(Default::default()),
            };
            if sink.send(frame).await.is_err() {
                return;
            }
        }
        // The link was dropped: say goodbye properly.
        let _ = sink.close().await;
    });

    tokio::spawn(async move {
        let reason = loop {
            let Ok(frame) = tokio::time::timeout(SILENCE_LIMIT, stream.next()).await else {
                break format!("no word from the server in {} s", SILENCE_LIMIT.as_secs());
            };
            match frame {
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
