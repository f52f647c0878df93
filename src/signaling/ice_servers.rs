//! ICE servers: the STUN and TURN servers a peer connection gathers candidates through,
//! with the credentials a TURN server needs (the W3C `RTCIceServer` shape).
//!
//! They come from the command line (`--ice`, `--ice-username`, `--ice-credential`) or
//! from the signaling server's `welcome` (short-lived TURN credentials,
//! docs/signaling.md); both are validated here, at the edge. They are part of the
//! protocol, so they live with it; `rtc` hands them to the peer connections.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most ICE servers accepted from the signaling server in one `welcome`.
pub const MAX_ICE_SERVERS: usize = 8;
/// Most URLs one ICE server entry may list.
pub const MAX_URLS_PER_SERVER: usize = 8;
/// Longest URL, username or credential accepted (bytes).
pub const MAX_ICE_FIELD_LEN: usize = 512;

/// A STUN or TURN server URL (RFC 7064/7065): `stun:`, `stuns:`, `turn:` or `turns:`, then
/// `host[:port]`, for TURN optionally `?transport=udp|tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IceServerUrl(String);

/// Why an ICE server URL, username or credential was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum IceServerError {
    /// Another scheme.
    #[error("an ICE server URL starts with stun:, stuns:, turn: or turns: (got {0:?})")]
    Scheme(String),
    /// Nothing after the scheme, or white space or control characters inside.
    #[error("an ICE server URL needs a host after the scheme, without spaces")]
    Host,
    /// A `?transport=` other than `udp` or `tcp`, or a query on a STUN URL.
    #[error("{0:?}: only TURN URLs take a query, and only ?transport=udp or ?transport=tcp")]
    Transport(String),
    /// A field longer than [`MAX_ICE_FIELD_LEN`].
    #[error("an ICE server's {0} is longer than {MAX_ICE_FIELD_LEN} bytes")]
    TooLong(&'static str),
    /// A username or credential with control characters.
    #[error("an ICE server's {0} contains control characters")]
    ControlCharacters(&'static str),
    /// More servers or URLs than accepted.
    #[error("more than {MAX_ICE_SERVERS} ICE servers or {MAX_URLS_PER_SERVER} URLs in one")]
    TooMany,
    /// An entry with no URL.
    #[error("an ICE server entry lists no URL")]
    NoUrl,
}

/// How a TURN server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnTransport {
    /// UDP (`turn:` without a transport, or `?transport=udp`).
    Udp,
    /// TCP (`turn:...?transport=tcp`).
    Tcp,
    /// TLS over TCP (`turns:`).
    Tls,
}

impl IceServerUrl {
    /// Whether this is a TURN server (`turn:` or `turns:`) rather than STUN.
    pub fn is_turn(&self) -> bool {
        self.0.starts_with("turn:") || self.0.starts_with("turns:")
    }

    /// How a TURN server is reached; `None` for STUN.
    pub fn turn_transport(&self) -> Option<TurnTransport> {
        if self.0.starts_with("turns:") {
            return Some(TurnTransport::Tls);
        }
        if !self.0.starts_with("turn:") {
            return None;
        }
        Some(if self.0.ends_with("?transport=tcp") {
            TurnTransport::Tcp
        } else {
            TurnTransport::Udp
        })
    }

    /// `host:port` of the server (the scheme's default port when none is given: 3478,
    /// or 5349 for `stuns:`/`turns:`).
    pub fn host_port(&self) -> String {
        let (scheme, rest) = self.0.split_once(':').unwrap_or(("", &self.0));
        let address = rest.split('?').next().unwrap_or(rest);
        let has_port = match address.rfind(']') {
            // [v6]:port
            Some(bracket) => address[bracket..].contains(':'),
            None => address.contains(':'),
        };
        if has_port {
            address.to_owned()
        } else {
            let port = if scheme.ends_with('s') { 5349 } else { 3478 };
            format!("{address}:{port}")
        }
    }
}

impl FromStr for IceServerUrl {
    type Err = IceServerError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        if raw.len() > MAX_ICE_FIELD_LEN {
            return Err(IceServerError::TooLong("URL"));
        }
        let (scheme, rest) = raw
            .split_once(':')
            .ok_or_else(|| IceServerError::Scheme(raw.to_owned()))?;
        if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") {
            return Err(IceServerError::Scheme(raw.to_owned()));
        }
        if rest.is_empty()
            || rest.starts_with(':')
            || rest.starts_with('?')
            || rest.contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(IceServerError::Host);
        }
        if let Some((_, query)) = rest.split_once('?') {
            let turn = scheme.starts_with("turn");
            if !turn || !matches!(query, "transport=udp" | "transport=tcp") {
                return Err(IceServerError::Transport(raw.to_owned()));
            }
        }
        Ok(Self(raw.to_owned()))
    }
}

impl TryFrom<String> for IceServerUrl {
    type Error = IceServerError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

impl From<IceServerUrl> for String {
    fn from(url: IceServerUrl) -> Self {
        url.0
    }
}

impl fmt::Display for IceServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One ICE server entry, as the W3C `RTCIceServer`: its URLs and, for TURN, the
/// username and credential (the same for each of its URLs). On the wire (`welcome`):
/// `{"urls": ["turn:HOST:3478"], "username": "...", "credential": "..."}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// The server's URLs.
    pub urls: Vec<IceServerUrl>,
    /// The TURN username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &self.credential.as_ref().map(|_| ".."))
            .finish()
    }
}

impl IceServer {
    /// Checks what a signaling server sent: at least one URL, at most
    /// [`MAX_URLS_PER_SERVER`], and a username and credential that fit.
    pub fn validate(&self) -> Result<(), IceServerError> {
        if self.urls.is_empty() {
            return Err(IceServerError::NoUrl);
        }
        if self.urls.len() > MAX_URLS_PER_SERVER {
            return Err(IceServerError::TooMany);
        }
        for (field, value) in [
            ("username", &self.username),
            ("credential", &self.credential),
        ] {
            let Some(value) = value else { continue };
            if value.len() > MAX_ICE_FIELD_LEN {
                return Err(IceServerError::TooLong(field));
            }
            if value.chars().any(char::is_control) {
                return Err(IceServerError::ControlCharacters(field));
            }
        }
        Ok(())
    }

    /// Whether any of its URLs is a TURN server.
    pub fn has_turn(&self) -> bool {
        self.urls.iter().any(IceServerUrl::is_turn)
    }

    /// The servers of the command line: every `--ice` URL, the TURN ones with
    /// `username` and `credential` (`--ice-username`, `--ice-credential`).
    pub fn from_flags(
        urls: &[IceServerUrl],
        username: Option<&str>,
        credential: Option<&str>,
    ) -> Vec<Self> {
        let (turn, stun): (Vec<_>, Vec<_>) = urls.iter().cloned().partition(IceServerUrl::is_turn);
        let mut servers = Vec::new();
        if !stun.is_empty() {
            servers.push(Self {
                urls: stun,
                username: None,
                credential: None,
            });
        }
        if !turn.is_empty() {
            servers.push(Self {
                urls: turn,
                username: username.map(str::to_owned),
                credential: credential.map(str::to_owned),
            });
        }
        servers
    }
}

/// Validates a list of ICE servers from the signaling server.
pub fn validate_ice_servers(servers: &[IceServer]) -> Result<(), IceServerError> {
    if servers.len() > MAX_ICE_SERVERS {
        return Err(IceServerError::TooMany);
    }
    servers.iter().try_for_each(IceServer::validate)
}

/// Reads a list of ICE servers and validates it ([`validate_ice_servers`]), for serde's
/// `deserialize_with`.
pub fn deserialize_ice_servers<'de, D>(deserializer: D) -> Result<Vec<IceServer>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let servers = Vec::<IceServer>::deserialize(deserializer)?;
    validate_ice_servers(&servers).map_err(serde::de::Error::custom)?;
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_validated() {
        let url: IceServerUrl = "stun:stun.l.google.com:19302".parse().unwrap();
        assert!(!url.is_turn());
        assert_eq!(url.host_port(), "stun.l.google.com:19302");
        let tcp: IceServerUrl = "turn:turn.example.org?transport=tcp".parse().unwrap();
        assert_eq!(tcp.turn_transport(), Some(TurnTransport::Tcp));
        assert_eq!(tcp.host_port(), "turn.example.org:3478");
        let tls: IceServerUrl = "turns:turn.example.org".parse().unwrap();
        assert_eq!(tls.turn_transport(), Some(TurnTransport::Tls));
        assert_eq!(tls.host_port(), "turn.example.org:5349");
        let v6: IceServerUrl = "turn:[::1]".parse().unwrap();
        assert_eq!(v6.host_port(), "[::1]:3478");
        assert_eq!(
            "turn:10.0.0.1:3478"
                .parse::<IceServerUrl>()
                .unwrap()
                .turn_transport(),
            Some(TurnTransport::Udp)
        );
        assert!(matches!(
            "http://x".parse::<IceServerUrl>(),
            Err(IceServerError::Scheme(_))
        ));
        assert_eq!("stun:".parse::<IceServerUrl>(), Err(IceServerError::Host));
        assert_eq!(
            "turn:a b".parse::<IceServerUrl>(),
            Err(IceServerError::Host)
        );
        assert!(matches!(
            "turn:h?transport=sctp".parse::<IceServerUrl>(),
            Err(IceServerError::Transport(_))
        ));
        assert!(matches!(
            "stun:h?transport=udp".parse::<IceServerUrl>(),
            Err(IceServerError::Transport(_))
        ));
    }

    #[test]
    fn servers_from_the_wire_are_validated() {
        let json = r#"[{"urls":["turn:10.0.0.1:3478?transport=udp"],"username":"1700000000:abc","credential":"c2VjcmV0"}]"#;
        let servers: Vec<IceServer> = serde_json::from_str(json).unwrap();
        assert_eq!(validate_ice_servers(&servers), Ok(()));
        assert_eq!(servers[0].username.as_deref(), Some("1700000000:abc"));
        assert!(!format!("{:?}", servers[0]).contains("c2VjcmV0"));
        assert!(serde_json::from_str::<Vec<IceServer>>(r#"[{"urls":["http://x"]}]"#).is_err());
        let empty = IceServer {
            urls: vec![],
            username: None,
            credential: None,
        };
        assert_eq!(empty.validate(), Err(IceServerError::NoUrl));
        let control = IceServer {
            credential: Some("a\nb".into()),
            ..servers[0].clone()
        };
        assert_eq!(
            control.validate(),
            Err(IceServerError::ControlCharacters("credential"))
        );
        let many = vec![servers[0].clone(); MAX_ICE_SERVERS + 1];
        assert_eq!(validate_ice_servers(&many), Err(IceServerError::TooMany));
    }

    #[test]
    fn flags_give_credentials_to_turn_urls_only() {
        let urls: Vec<IceServerUrl> = ["stun:s:3478", "turn:t:3478", "turns:t:5349"]
            .iter()
            .map(|url| url.parse().unwrap())
            .collect();
        let servers = IceServer::from_flags(&urls, Some("ann"), Some("pw"));
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, urls[..1]);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].urls, urls[1..]);
        assert_eq!(servers[1].credential.as_deref(), Some("pw"));
        assert!(IceServer::from_flags(&[], None, None).is_empty());
    }
}
