//! Short-lived TURN credentials that the signaling server hands out in `welcome`, in the
//! TURN REST API scheme that coturn checks with `use-auth-secret`
//! (draft-uberti-behave-turn-rest): the username is `EXPIRY:PEER_ID` (EXPIRY in Unix
//! seconds), the credential the base64 of HMAC-SHA1 of the username under a secret the
//! signaling server shares with the TURN server. The TURN server needs no user database
//! and refuses the credentials once EXPIRY has passed.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

use super::protocol::PeerId;
use crate::signaling::ice_servers::{IceServer, IceServerUrl};

/// The TURN servers the signaling server tells clients to use, and how it signs their
/// credentials.
#[derive(Clone)]
pub struct TurnCredentials {
    urls: Vec<IceServerUrl>,
    key: hmac::Key,
    ttl: Duration,
}

impl fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TurnCredentials {
    /// Credentials for `urls`, signed with `secret` and valid for `ttl` from when they
    /// are issued.
    pub fn new(urls: Vec<IceServerUrl>, secret: &str, ttl: Duration) -> Self {
        Self {
            urls,
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes()),
            ttl,
        }
    }

    /// The ICE server entry for `peer_id`, valid until `now` + the time to live.
    pub fn issue(&self, peer_id: &PeerId, now: SystemTime) -> IceServer {
        let expiry = now
            .checked_add(self.ttl)
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_secs());
        let username = format!("{expiry}:{peer_id}");
        let credential = BASE64.encode(hmac::sign(&self.key, username.as_bytes()).as_ref());
        IceServer {
            urls: self.urls.clone(),
            username: Some(username),
            credential: Some(credential),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        let urls = vec!["turn:10.0.0.1:3478".parse().unwrap()];
        let turn = TurnCredentials::new(urls.clone(), "north", Duration::from_secs(600));
        let peer = PeerId::parse("c4d8n2w6ze").unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let server = turn.issue(&peer, now);
        assert_eq!(server.urls, urls);
        assert_eq!(server.username.as_deref(), Some("1700000600:c4d8n2w6ze"));
        // python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(
        //   b"north", b"1700000600:c4d8n2w6ze", hashlib.sha1).digest()).decode())'
        assert_eq!(
            server.credential.as_deref(),
            Some("XwsxtLqyfi7dY1ethEG6SitcaC4=")
        );
        assert!(!format!("{turn:?}").contains("north"));
    }
}
