//! What ICE does with the servers it is given (`signaling::ice_servers`): whether to
//! relay everything (`--ice-transport-policy`), the candidate pair it chose, and why a
//! TURN server could not be used.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use thiserror::Error;

/// Which candidates ICE may use (the W3C `RTCIceTransportPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IceTransportPolicy {
    /// Host, server-reflexive and relayed candidates: the most direct path wins.
    #[default]
    All,
    /// Relayed candidates only: all media goes through a TURN server (hides our
    /// addresses from the peers; tests the relay).
    Relay,
}

impl FromStr for IceTransportPolicy {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "all" => Ok(Self::All),
            "relay" => Ok(Self::Relay),
            other => Err(format!("expected all or relay, got {other:?}")),
        }
    }
}

/// The kind of an ICE candidate (RFC 8445): how its address was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CandidateKind {
    /// An address of one of our interfaces.
    Host,
    /// Our address as a STUN server saw it (outside our NAT).
    Srflx,
    /// Our address as the peer saw it during the checks.
    Prflx,
    /// An address on a TURN server that relays for us.
    Relay,
}

impl CandidateKind {
    /// Parses the `typ` of a candidate line or a stats report (`host`, `srflx`, ...).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "host" => Some(Self::Host),
            "srflx" => Some(Self::Srflx),
            "prflx" => Some(Self::Prflx),
            "relay" => Some(Self::Relay),
            _ => None,
        }
    }
}

/// How packets of a candidate pair travel: for a relayed local candidate, the transport
/// to the TURN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PairProtocol {
    /// Plain UDP.
    Udp,
    /// TCP (ICE-TCP, or TURN over TCP).
    Tcp,
    /// TURN over TLS.
    Tls,
}

impl PairProtocol {
    /// Parses `udp`, `tcp` or `tls` (any case).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "udp" => Some(Self::Udp),
            "tcp" => Some(Self::Tcp),
            "tls" => Some(Self::Tls),
            _ => None,
        }
    }
}

/// The candidate pair a connection sends its media over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CandidatePair {
    /// Our side.
    pub local: CandidateKind,
    /// The peer's side.
    pub remote: CandidateKind,
    /// How our packets travel (to the TURN server, for a relayed local side).
    pub protocol: PairProtocol,
}

impl fmt::Display for CandidatePair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |kind: CandidateKind| match kind {
            CandidateKind::Host => "host",
            CandidateKind::Srflx => "srflx",
            CandidateKind::Prflx => "prflx",
            CandidateKind::Relay => "relay",
        };
        let protocol = match self.protocol {
            PairProtocol::Udp => "UDP",
            PairProtocol::Tcp => "TCP",
            PairProtocol::Tls => "TLS",
        };
        write!(
            f,
            "{} - {} ({protocol})",
            name(self.local),
            name(self.remote)
        )
    }
}

/// Why a TURN server could not be used; the call goes on with what else ICE finds.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TurnProblem {
    /// The server answered, but refused us: our username and credential (wrong, or
    /// expired: 401), or an allocation (a quota, say).
    #[error("the TURN server {url} refused us: {reason}")]
    Refused {
        /// The server's URL.
        url: String,
        /// What it answered.
        reason: String,
    },
    /// No answer from the server (wrong address, a firewall, the server down).
    #[error("cannot reach the TURN server {url}: {reason}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// This client cannot use the server's transport.
    #[error("the TURN server {url} cannot be used by this client: {reason}")]
    Unsupported {
        /// The server's URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl TurnProblem {
    /// The server answered 401 Unauthorized: wrong or expired credentials.
    pub fn unauthorized(url: String) -> Self {
        Self::Refused {
            url,
            reason: "401 Unauthorized: the username or credential is wrong or expired".to_owned(),
        }
    }

    /// A short machine-readable name: `turn_refused`, `turn_unreachable` or
    /// `turn_unsupported`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Refused { .. } => "turn_refused",
            Self::Unreachable { .. } => "turn_unreachable",
            Self::Unsupported { .. } => "turn_unsupported",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_print_as_people_read_them() {
        let pair = CandidatePair {
            local: CandidateKind::Relay,
            remote: CandidateKind::Srflx,
            protocol: PairProtocol::Udp,
        };
        assert_eq!(pair.to_string(), "relay - srflx (UDP)");
        assert_eq!(
            serde_json::to_value(pair).unwrap(),
            serde_json::json!({"local": "relay", "remote": "srflx", "protocol": "udp"})
        );
        assert_eq!(CandidateKind::parse("prflx"), Some(CandidateKind::Prflx));
        assert_eq!(PairProtocol::parse("TCP"), Some(PairProtocol::Tcp));
    }
}
