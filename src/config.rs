//! Settings: the command line (every flag also reads an environment variable where
//! noted) and the resolved [`ClientConfig`] that the rest of the app reads.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use bevy::prelude::Resource;
use clap::{ArgGroup, Args, Parser, Subcommand};
use thiserror::Error;

use crate::signaling::SignalUrl;
use crate::signaling::protocol::{DisplayName, RoomId};
use crate::signaling::server::ServerLimits;

/// meetspace: a video call that is also a place.
///
/// With no subcommand, opens the windowed client. Without --signal it hosts its own
/// signaling server on 127.0.0.1, so one machine can hold a call with nothing else
/// running; to call between machines, run `meetspace serve` on one host and give every
/// client `--signal ws://HOST:PORT`.
#[derive(Debug, Parser)]
#[command(name = "meetspace", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to run (the windowed client when omitted).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of the windowed client.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the signaling server alone (for a LAN or a public host).
    Serve(ServeArgs),
    /// A headless participant: joins a room, stays, leaves. For scripts and tests.
    Bot(BotArgs),
}

/// Who we are and how calls connect; shared by the client and the bot.
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// Display name others see.
    #[arg(long, env = "MEETSPACE_NAME", default_value = "Guest", value_parser = DisplayName::parse)]
    pub name: DisplayName,
    /// A STUN or TURN server (repeatable), e.g. `--ice stun:stun.l.google.com:19302`.
    /// None by default: calls then use host candidates only and nothing leaves the
    /// machine or LAN unless asked.
    #[arg(long = "ice", value_name = "URL")]
    pub ice_servers: Vec<IceServerUrl>,
}

/// Flags of the windowed client.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Signaling server (ws://HOST:PORT). Omitted: host one in-process on 127.0.0.1.
    #[arg(long, env = "MEETSPACE_SIGNAL", value_name = "URL")]
    pub signal: Option<SignalUrl>,
    /// Identity and ICE settings.
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// Flags of `meetspace serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:8480 for every interface.
    #[arg(long, default_value = "127.0.0.1:8480")]
    pub listen: SocketAddr,
    /// Limits on rooms, peers and messages.
    #[command(flatten)]
    pub limits: ServerLimits,
}

/// Flags of `meetspace bot`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["create", "room"])))]
pub struct BotArgs {
    /// Signaling server (ws://HOST:PORT).
    #[arg(long, env = "MEETSPACE_SIGNAL", value_name = "URL")]
    pub signal: SignalUrl,
    /// Create a new room (its id is printed as `room <ID>`).
    #[arg(long)]
    pub create: bool,
    /// Join the room with this id.
    #[arg(long, value_name = "ID", value_parser = RoomId::parse)]
    pub room: Option<RoomId>,
    /// Leave after this many seconds (default: stay until interrupted).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Write per-peer figures to this JSON file on exit.
    #[arg(long, value_name = "PATH")]
    pub stats_json: Option<PathBuf>,
    /// Identity and ICE settings.
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// What a call client needs to know, resolved from the flags.
#[derive(Debug, Clone, Resource)]
pub struct ClientConfig {
    /// The signaling server.
    pub signal: SignalUrl,
    /// Our display name.
    pub name: DisplayName,
    /// STUN/TURN servers for ICE.
    pub ice_servers: Vec<IceServerUrl>,
}

impl ClientConfig {
    /// A config for `signal` with the identity from `identity`.
    pub fn new(signal: SignalUrl, identity: IdentityArgs) -> Self {
        Self {
            signal,
            name: identity.name,
            ice_servers: identity.ice_servers,
        }
    }
}

/// A STUN or TURN server URL (`stun:`, `stuns:`, `turn:` or `turns:` then host[:port]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServerUrl(String);

/// Why an `--ice` value was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IceServerUrlError {
    /// Another scheme.
    #[error("an ICE server URL starts with stun:, stuns:, turn: or turns: (got {0:?})")]
    Scheme(String),
    /// Nothing after the scheme, or white space inside.
    #[error("an ICE server URL needs a host after the scheme, without spaces")]
    Host,
}

impl FromStr for IceServerUrl {
    type Err = IceServerUrlError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        let (scheme, rest) = raw
            .split_once(':')
            .ok_or_else(|| IceServerUrlError::Scheme(raw.to_owned()))?;
        if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") {
            return Err(IceServerUrlError::Scheme(raw.to_owned()));
        }
        if rest.is_empty() || rest.starts_with(':') || rest.contains(char::is_whitespace) {
            return Err(IceServerUrlError::Host);
        }
        Ok(Self(raw.to_owned()))
    }
}

impl fmt::Display for IceServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ice_urls_are_validated() {
        assert!(
            "stun:stun.l.google.com:19302"
                .parse::<IceServerUrl>()
                .is_ok()
        );
        assert!(
            "turns:turn.example.org:5349?transport=tcp"
                .parse::<IceServerUrl>()
                .is_ok()
        );
        assert!(matches!(
            "http://x".parse::<IceServerUrl>(),
            Err(IceServerUrlError::Scheme(_))
        ));
        assert_eq!(
            "stun:".parse::<IceServerUrl>(),
            Err(IceServerUrlError::Host)
        );
    }

    #[test]
    fn signal_urls_are_validated_and_default_to_the_ws_path() {
        let url: SignalUrl = "ws://127.0.0.1:8480".parse().unwrap();
        assert_eq!(url.to_string(), "ws://127.0.0.1:8480/ws");
        let custom: SignalUrl = "wss://example.org/signal".parse().unwrap();
        assert_eq!(custom.to_string(), "wss://example.org/signal");
        assert!("http://example.org".parse::<SignalUrl>().is_err());
        assert!("not a url".parse::<SignalUrl>().is_err());
    }

    #[test]
    fn bot_needs_exactly_one_of_create_and_room() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        assert!(parse(&["meetspace", "bot", "--signal", "ws://h:1"]).is_err());
        assert!(
            parse(&[
                "meetspace",
                "bot",
                "--signal",
                "ws://h:1",
                "--create",
                "--room",
                "abc"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "meetspace",
                "bot",
                "--signal",
                "ws://h:1",
                "--room",
                "bad id!"
            ])
            .is_err()
        );
        let cli = parse(&[
            "meetspace",
            "bot",
            "--signal",
            "ws://h:1",
            "--room",
            "abc",
            "--name",
            "Ann",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Bot(bot)) => {
                assert_eq!(bot.room.unwrap().as_str(), "abc");
                assert_eq!(bot.identity.name.as_str(), "Ann");
            }
            other => panic!("expected the bot subcommand, got {other:?}"),
        }
    }
}
