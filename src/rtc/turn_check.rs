//! Asks each TURN server of the configuration for an allocation, once, so that a refused
//! credential or an unreachable server becomes a message a person can act on.
//!
//! webrtc-rs gathers relayed candidates by itself but only logs why an allocation
//! failed; without this check a call with wrong or expired TURN credentials would just
//! never connect. The check uses the same sans-IO TURN client (`rtc::turn`) over its own
//! UDP socket and gives the allocation back at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::rtc::crypto::{RTCCryptoProvider, default_provider};
use ::rtc::sansio::Protocol;
use ::rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use ::rtc::turn::client::{Client, ClientConfig, Event};
use bytes::BytesMut;
use tokio::net::UdpSocket;

use super::ice::TurnProblem;
use crate::signaling::ice_servers::{IceServer, IceServerUrl, TurnTransport};

/// How long one server may take to answer an allocation (its retransmissions included).
pub const TURN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest STUN message we read.
const MAX_DATAGRAM: usize = 1500;

/// Checks every UDP TURN URL of `servers` at once; returns what is wrong with each one
/// that cannot be used (nothing when all work). TCP and TLS URLs are skipped, as the
/// native stack skips them; a list with TURN servers but none over UDP is one problem.
pub async fn check_turn_servers(servers: &[IceServer]) -> Vec<TurnProblem> {
    let (udp, other): (Vec<_>, Vec<_>) = servers
        .iter()
        .flat_map(|server| server.urls.iter().map(move |url| (url, server)))
        .filter(|(url, _)| url.is_turn())
        .partition(|(url, _)| url.turn_transport() == Some(TurnTransport::Udp));
    if udp.is_empty() {
        return other
            .first()
            .map(|(url, _)| TurnProblem::Unsupported {
                url: url.to_string(),
                reason: "the native client reaches TURN servers over UDP only \
                         (turn:HOST:PORT or ?transport=udp)"
                    .to_owned(),
            })
            .into_iter()
            .collect();
    }
    let checks = udp
        .into_iter()
        .map(|(url, server)| check_turn_server(url, server));
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

/// Asks one TURN server over UDP for an allocation with the server entry's credentials.
/// An allocation mismatch (437: the server still holds an allocation for the address a
/// NAT gave us, made by someone before us) is tried once more from another port, as
/// RFC 8656 §7.1 suggests.
async fn check_turn_server(url: &IceServerUrl, server: &IceServer) -> Result<(), TurnProblem> {
    let address = tokio::net::lookup_host(url.host_port())
        .await
        .map_err(|error| unreachable(url, format!("cannot resolve its address: {error}")))?
        .next()
        .ok_or_else(|| unreachable(url, "its name has no address".to_owned()))?;
    match allocate_and_release(url, server, address).await {
        Err(TurnProblem::Refused { reason, .. }) if reason.contains(ALLOCATION_MISMATCH) => {
            tracing::info!(%url, %reason, "an allocation mismatch; trying from another port");
            allocate_and_release(url, server, address).await
        }
        checked => checked,
    }
}

/// A server unreachable for `reason`.
fn unreachable(url: &IceServerUrl, reason: String) -> TurnProblem {
    TurnProblem::Unreachable {
        url: url.to_string(),
        reason,
    }
}

/// How the TURN client words a 437 answer.
const ALLOCATION_MISMATCH: &str = "(error 437";

/// Asks the server at `address` for an allocation from a fresh UDP socket and gives it
/// back at once.
async fn allocate_and_release(
    url: &IceServerUrl,
    server: &IceServer,
    address: SocketAddr,
) -> Result<(), TurnProblem> {
    let unreachable = |reason: String| unreachable(url, reason);
    let socket = UdpSocket::bind(if address.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .await
    .map_err(|error| unreachable(format!("cannot open a UDP socket: {error}")))?;
    let local_addr = socket
        .local_addr()
        .map_err(|error| unreachable(error.to_string()))?;
    let crypto: Arc<dyn RTCCryptoProvider> =
        default_provider().map_err(|error| unreachable(error.to_string()))?;
    let mut client = Client::new(
        ClientConfig {
            turn_serv_addr: address.to_string(),
            local_addr,
            transport_protocol: TransportProtocol::UDP,
            username: server.username.clone().unwrap_or_default(),
            password: server.credential.clone().unwrap_or_default(),
            ..ClientConfig::default()
        },
        crypto,
    )
    .map_err(|error| unreachable(error.to_string()))?;
    let started = Instant::now();
    client
        .allocate(started)
        .map_err(|error| unreachable(error.to_string()))?;
    let deadline = started + TURN_CHECK_TIMEOUT;
    let no_answer = || {
        unreachable(format!(
            "no answer within {} s",
            TURN_CHECK_TIMEOUT.as_secs()
        ))
    };
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        flush(&mut client, &socket).await;
        while let Some(event) = client.poll_event() {
            match event {
                Event::AllocateResponse(_, relayed) => {
                    tracing::info!(%url, %relayed, "the TURN server gave us a relay address");
                    release(&mut client, &socket, relayed).await;
                    return Ok(());
                }
                Event::AllocateError(_, error) => {
                    return Err(refusal(url, &error.to_string()));
                }
                Event::TransactionTimeout(_) => return Err(no_answer()),
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(no_answer());
        }
        let wake = client
            .poll_timeout()
            .map_or(deadline, |at| at.min(deadline));
        tokio::select! {
            received = socket.recv_from(&mut buffer) => {
                let (len, from) = received.map_err(|error| unreachable(error.to_string()))?;
                let message = TaggedBytesMut {
                    now: Instant::now(),
                    transport: TransportContext {
                        local_addr,
                        peer_addr: from,
                        transport_protocol: TransportProtocol::UDP,
                        ecn: None,
                    },
                    message: BytesMut::from(&buffer[..len]),
                };
                if let Err(error) = client.handle_read(message) {
                    tracing::debug!(%error, "ignored a datagram from the TURN server");
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {
                let _ = client.handle_timeout(Instant::now());
            }
        }
    }
}

/// What the server's error answer means for a person.
fn refusal(url: &IceServerUrl, error: &str) -> TurnProblem {
    if error.contains("401") {
        TurnProblem::unauthorized(url.to_string())
    } else {
        TurnProblem::Refused {
            url: url.to_string(),
            reason: error.to_owned(),
        }
    }
}

/// Sends what the client has to send; a lost datagram is retransmitted by the client.
async fn flush(client: &mut Client, socket: &UdpSocket) {
    while let Some(datagram) = client.poll_write() {
        if let Err(error) = socket
            .send_to(&datagram.message, datagram.transport.peer_addr)
            .await
        {
            tracing::debug!(%error, "a datagram to the TURN server was not sent");
        }
    }
}

/// Gives the allocation back (a refresh with lifetime 0), without waiting for the answer.
async fn release(client: &mut Client, socket: &UdpSocket, relayed: SocketAddr) {
    if let Ok(mut relay) = client.relay(relayed) {
        let _ = relay.close(Instant::now());
    }
    flush(client, socket).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(urls: &[&str]) -> IceServer {
        IceServer {
            urls: urls.iter().map(|url| url.parse().unwrap()).collect(),
            username: Some("user".into()),
            credential: Some("pass".into()),
        }
    }

    #[tokio::test]
    async fn stun_alone_needs_no_check_and_tcp_alone_is_unsupported() {
        assert!(
            check_turn_servers(&[server(&["stun:127.0.0.1:9"])])
                .await
                .is_empty()
        );
        let problems =
            check_turn_servers(&[server(&["turn:127.0.0.1:9?transport=tcp", "turns:h"])]).await;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind(), "turn_unsupported");
        assert!(
            problems[0].to_string().contains("over UDP only"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_401_reads_as_refused_credentials() {
        let url: IceServerUrl = "turn:h".parse().unwrap();
        let problem = refusal(&url, "AllocateError response (error 401: Unauthorized)");
        assert_eq!(problem.kind(), "turn_refused");
        assert!(
            problem.to_string().contains("wrong or expired"),
            "{problem}"
        );
    }
}
