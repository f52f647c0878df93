//! What `signal` messages carry between two peers: the WebRTC offers, answers and
//! candidates (docs/signaling.md, "Writing your own client"). The server relays them
//! without reading them; each peer validates them here before they reach its WebRTC
//! stack.

use serde::{Deserialize, Serialize};

/// Longest SDP we accept from a remote peer (bytes). Real offers are 2-10 KB.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Longest ICE candidate line we accept from a remote peer (bytes).
pub const MAX_CANDIDATE_LEN: usize = 1024;
/// Longest `sdpMid` we accept from a remote peer (bytes).
pub const MAX_MID_LEN: usize = 64;
/// One signaling message for a single remote peer, relayed opaquely by the signaling server.
///
/// Serialized as `{"kind":"offer","sdp":"..."}`, `{"kind":"reoffer","sdp":"..."}`,
/// `{"kind":"answer","sdp":"..."}` or
/// `{"kind":"candidate","candidate":"...","sdpMid":"0","sdpMLineIndex":0}`. Unknown fields
/// (browsers add `usernameFragment`) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignalPayload {
    /// An SDP offer.
    Offer {
        /// The session description text.
        sdp: String,
    },
    /// An SDP offer that changes a connection already negotiated (a screen track added
    /// or removed), answered with an [`SignalPayload::Answer`] on the same connection. A
    /// plain offer to a negotiated connection means the peer starts over instead.
    Reoffer {
        /// The session description text.
        sdp: String,
    },
    /// An SDP answer.
    Answer {
        /// The session description text.
        sdp: String,
    },
    /// One trickled ICE candidate.
    Candidate {
        /// The `candidate:...` attribute line; empty means end of candidates.
        candidate: String,
        /// The media section the candidate belongs to.
        #[serde(rename = "sdpMid")]
        sdp_mid: Option<String>,
        /// The index of the media section the candidate belongs to.
        #[serde(rename = "sdpMLineIndex")]
        sdp_mline_index: Option<u16>,
    },
}

/// Why a [`SignalPayload`] received from a remote peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// The payload was not valid JSON of the expected shape.
    #[error("malformed signaling payload: {0}")]
    Malformed(String),
    /// A field exceeded its length bound.
    #[error("{field} is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// An SDP that does not start with `v=0`.
    #[error("{0} SDP does not start with \"v=0\"")]
    NotSdp(&'static str),
    /// A candidate line with control characters (a line break would smuggle SDP lines).
    #[error("ICE candidate contains control characters")]
    BadCandidate,
}

impl SignalPayload {
    /// Whether this is the first offer or an answer (not a candidate, not a reoffer).
    pub fn is_description(&self) -> bool {
        matches!(self, Self::Offer { .. } | Self::Answer { .. })
    }

    /// Parses and validates a payload received from the signaling server.
    pub fn from_json(json: &str) -> Result<Self, SignalError> {
        let payload: Self =
            serde_json::from_str(json).map_err(|e| SignalError::Malformed(e.to_string()))?;
        payload.validate()?;
        Ok(payload)
    }

    /// Serializes the payload for the signaling server.
    pub fn to_json(&self) -> String {
        // Serializing a plain enum of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the bounds every remote payload must meet before it reaches the WebRTC stack.
    pub fn validate(&self) -> Result<(), SignalError> {
        fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), SignalError> {
            if value.len() > max {
                return Err(SignalError::TooLong {
                    field,
                    len: value.len(),
                    max,
                });
            }
            Ok(())
        }
        match self {
            Self::Offer { sdp } | Self::Reoffer { sdp } | Self::Answer { sdp } => {
                let which = match self {
                    Self::Offer { .. } => "offer",
                    Self::Reoffer { .. } => "reoffer",
                    _ => "answer",
                };
                bounded("sdp", sdp, MAX_SDP_LEN)?;
                if !sdp.starts_with("v=0") {
                    return Err(SignalError::NotSdp(which));
                }
            }
            Self::Candidate {
                candidate, sdp_mid, ..
            } => {
                bounded("candidate", candidate, MAX_CANDIDATE_LEN)?;
                if candidate.chars().any(char::is_control) {
                    return Err(SignalError::BadCandidate);
                }
                if let Some(mid) = sdp_mid {
                    bounded("sdpMid", mid, MAX_MID_LEN)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_json_shape() {
        let c = SignalPayload::Candidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        };
        let json = c.to_json();
        assert!(json.contains(r#""kind":"candidate""#), "{json}");
        assert!(json.contains(r#""sdpMid":"0""#), "{json}");
        assert!(json.contains(r#""sdpMLineIndex":0"#), "{json}");
        assert_eq!(SignalPayload::from_json(&json), Ok(c));

        let browser = r#"{"kind":"candidate","candidate":"","sdpMid":null,"sdpMLineIndex":null,"usernameFragment":"x"}"#;
        assert!(SignalPayload::from_json(browser).is_ok());
        let offer = SignalPayload::from_json(r#"{"kind":"offer","sdp":"v=0\r\n"}"#);
        assert_eq!(
            offer,
            Ok(SignalPayload::Offer {
                sdp: "v=0\r\n".into()
            })
        );
        let reoffer = SignalPayload::Reoffer {
            sdp: "v=0\r\n".into(),
        };
        assert!(reoffer.to_json().contains(r#""kind":"reoffer""#));
        assert_eq!(SignalPayload::from_json(&reoffer.to_json()), Ok(reoffer));
        assert!(matches!(
            SignalPayload::from_json(r#"{"kind":"reoffer","sdp":"x"}"#),
            Err(SignalError::NotSdp("reoffer"))
        ));
    }

    #[test]
    fn payload_validation() {
        assert!(matches!(
            SignalPayload::from_json(r#"{"kind":"answer","sdp":"hello"}"#),
            Err(SignalError::NotSdp("answer"))
        ));
        assert!(matches!(
            SignalPayload::from_json(r#"{"kind":"bye"}"#),
            Err(SignalError::Malformed(_))
        ));
        let huge = SignalPayload::Offer {
            sdp: format!("v=0\r\n{}", "a".repeat(MAX_SDP_LEN)),
        };
        assert!(matches!(
            huge.validate(),
            Err(SignalError::TooLong { field: "sdp", .. })
        ));
        let smuggled = SignalPayload::Candidate {
            candidate: "candidate:1 1 udp 1 1.2.3.4 5 typ host\r\na=evil".into(),
            sdp_mid: None,
            sdp_mline_index: None,
        };
        assert_eq!(smuggled.validate(), Err(SignalError::BadCandidate));
    }
}
