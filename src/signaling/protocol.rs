//! The signaling protocol: JSON messages over WebSocket, one object per text frame,
//! tagged by `"type"`. `docs/signaling.md` describes every message with an example.
//!
//! Everything a peer sends is untrusted: ids and names are validated when they are
//! deserialized, so a handler never sees a malformed one.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::signaling::ice_servers::{IceServer, deserialize_ice_servers};

/// Longest room id accepted from anyone (our ids are 20 characters, Firestore's too).
pub const MAX_ROOM_ID_LEN: usize = 64;
/// Longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Name used when a peer gives none.
pub const DEFAULT_NAME: &str = "Guest";

/// Characters of server-made ids: lowercase letters and digits without the easily
/// confused `l`, `o`, `0` and `1`. 32 symbols, so each one carries 5 random bits.
const ID_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
/// Length of a server-made room id: 20 symbols = 100 random bits.
const ROOM_ID_SYMBOLS: usize = 20;
/// Length of a server-made peer id: 10 symbols = 50 random bits (unique per room).
const PEER_ID_SYMBOLS: usize = 10;
/// Length of a resume token: 26 symbols = 130 random bits.
const RESUME_TOKEN_SYMBOLS: usize = 26;
/// Longest room passcode accepted, in characters.
pub const MAX_PASSCODE_CHARS: usize = 64;
/// Farthest from the space's middle a pose may stand, in metres along each axis.
pub const MAX_POSE_COORDINATE: f32 = 500.0;
/// How near is near in the lobby, in metres: clients connect within it by default
/// (`--earshot`), and the server delivers `near` chat messages within it.
pub const EARSHOT_M: f32 = 5.0;
/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 1000;
/// The id of the space's lobby: the room everyone in the space shares, which the
/// server keeps without anyone creating it and never lists.
pub const LOBBY_ID: &str = "lobby";

/// Why an id or a name from the outside was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidInput {
    /// The id was empty after trimming.
    #[error("the id is empty")]
    EmptyId,
    /// The id was longer than [`MAX_ROOM_ID_LEN`].
    #[error("the id is longer than {MAX_ROOM_ID_LEN} characters")]
    IdTooLong,
    /// The id held something other than letters, digits, `-` and `_`.
    #[error("the id may only hold letters, digits, '-' and '_'")]
    IdCharacters,
    /// The name was longer than [`MAX_NAME_CHARS`].
    #[error("the name is longer than {MAX_NAME_CHARS} characters")]
    NameTooLong,
    /// The name held control characters.
    #[error("the name may not hold control characters")]
    NameCharacters,
    /// The passcode was empty or longer than [`MAX_PASSCODE_CHARS`].
    #[error("a passcode has 1 to {MAX_PASSCODE_CHARS} characters")]
    PasscodeLength,
    /// The passcode held control characters.
    #[error("the passcode may not hold control characters")]
    PasscodeCharacters,
    /// An empty chat message, or one over [`MAX_CHAT_CHARS`] characters.
    #[error("a chat message has 1 to {MAX_CHAT_CHARS} characters")]
    ChatLength,
    /// A chat message with control characters.
    #[error("a chat message has no control characters")]
    ChatCharacters,
    /// Bytes on the pose data channel that are no pose of this version.
    #[error("a pose on the data channel is {POSE_WIRE_BYTES} bytes starting with version 1")]
    PoseWire,
    /// A pose with a coordinate that is not a number or lies outside the space.
    #[error("a pose stands within {MAX_POSE_COORDINATE} m of the middle, in numbers")]
    PoseOutside,
}

fn random_id(symbols: usize) -> String {
    let mut bytes = vec![0u8; symbols];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    // 256 is a multiple of 32, so masking keeps every symbol equally likely.
    bytes
        .iter()
        .map(|b| ID_ALPHABET[(b & 31) as usize] as char)
        .collect()
}

/// Whether two secrets are equal, taking the same time wherever they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn validate_id(raw: &str) -> Result<String, InvalidInput> {
    let id = raw.trim();
    if id.is_empty() {
        return Err(InvalidInput::EmptyId);
    }
    if id.len() > MAX_ROOM_ID_LEN {
        return Err(InvalidInput::IdTooLong);
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(InvalidInput::IdCharacters);
    }
    Ok(id.to_owned())
}

/// The id of a room: what a user shares so that others can join.
///
/// Server-made ids are 20 symbols of [`ID_ALPHABET`] (100 random bits); any id of
/// letters, digits, `-` and `_` up to 64 characters is accepted, so other backends
/// (Firestore's 20-character auto ids) fit the same type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomId(String);

impl RoomId {
    /// Makes a fresh, unguessable room id.
    pub fn random() -> Self {
        Self(random_id(ROOM_ID_SYMBOLS))
    }

    /// Validates an id typed or pasted by a user (surrounding white space is dropped).
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        validate_id(raw).map(Self)
    }

    /// The space's lobby ([`LOBBY_ID`]).
    pub fn lobby() -> Self {
        Self(LOBBY_ID.to_owned())
    }

    /// Whether this is the space's lobby, where connections follow distance.
    pub fn is_lobby(&self) -> bool {
        self.0 == LOBBY_ID
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id the server gives a peer inside one room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PeerId(String);

impl PeerId {
    /// Makes a fresh peer id.
    pub fn random() -> Self {
        Self(random_id(PEER_ID_SYMBOLS))
    }

    /// Validates a peer id received from the outside.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        validate_id(raw).map(Self)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_conversions {
    ($ty:ty) => {
        impl TryFrom<String> for $ty {
            type Error = InvalidInput;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_conversions!(RoomId);
string_conversions!(PeerId);
string_conversions!(DisplayName);
string_conversions!(ResumeToken);
string_conversions!(Passcode);
string_conversions!(ChatText);

/// The secret that lets a peer take its place in a room back after its signaling
/// connection dropped (see `resume` in docs/signaling.md). Made by the server in
/// `welcome`; only that peer and the server know it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResumeToken(String);

impl ResumeToken {
    /// Makes a fresh, unguessable token.
    pub fn random() -> Self {
        Self(random_id(RESUME_TOKEN_SYMBOLS))
    }

    /// Validates a token received from the outside (same rules as ids).
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        validate_id(raw).map(Self)
    }

    /// Whether `other` is the same token, compared in time independent of where they
    /// differ (a wrong guess tells nothing about the right one).
    pub fn matches(&self, other: &Self) -> bool {
        same_secret(&self.0, &other.0)
    }
}

impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken(..)")
    }
}

/// A room's passcode: set by whoever creates the room, asked of everyone who joins.
/// 1 to 64 characters, no control characters; compared exactly.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Passcode(String);

impl Passcode {
    /// Validates a passcode typed by a user or received from a peer.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let count = raw.chars().count();
        if count == 0 || count > MAX_PASSCODE_CHARS {
            return Err(InvalidInput::PasscodeLength);
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidInput::PasscodeCharacters);
        }
        Ok(Self(raw.to_owned()))
    }

    /// Whether `given` opens a room locked with this passcode (time independent of
    /// where they differ).
    pub fn admits(&self, given: Option<&Self>) -> bool {
        given.is_some_and(|given| same_secret(&self.0, &given.0))
    }
}

impl fmt::Debug for Passcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passcode(..)")
    }
}

/// A participant's display name: at most 64 characters, no control characters; an
/// empty name becomes [`DEFAULT_NAME`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    /// Validates a name typed by a user or received from a peer.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let name = raw.trim();
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(InvalidInput::NameTooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidInput::NameCharacters);
        }
        Ok(Self(if name.is_empty() {
            DEFAULT_NAME.to_owned()
        } else {
            name.to_owned()
        }))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for DisplayName {
    fn default() -> Self {
        Self(DEFAULT_NAME.to_owned())
    }
}

/// Where someone stands in the space and where they face: floor coordinates in metres
/// (x to the right, z towards the viewer of the lobby's arrival), the heading about the
/// vertical axis in radians (0 faces -z), and whether they are walking.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawPose")]
pub struct Pose {
    /// Metres along x.
    pub x: f32,
    /// Metres along z.
    pub z: f32,
    /// Heading in radians, in (-pi, pi].
    pub yaw: f32,
    /// Whether they are walking.
    #[serde(default)]
    pub moving: bool,
}

/// A pose as it arrives, before validation.
#[derive(Deserialize)]
struct RawPose {
    x: f32,
    z: f32,
    yaw: f32,
    #[serde(default)]
    moving: bool,
}

impl TryFrom<RawPose> for Pose {
    type Error = InvalidInput;
    fn try_from(raw: RawPose) -> Result<Self, Self::Error> {
        Self::new(raw.x, raw.z, raw.yaw, raw.moving)
    }
}

impl Pose {
    /// A validated pose: both coordinates finite and within [`MAX_POSE_COORDINATE`], a
    /// finite heading (brought into (-pi, pi]).
    pub fn new(x: f32, z: f32, yaw: f32, moving: bool) -> Result<Self, InvalidInput> {
        let inside = |c: f32| c.is_finite() && c.abs() <= MAX_POSE_COORDINATE;
        if !inside(x) || !inside(z) || !yaw.is_finite() {
            return Err(InvalidInput::PoseOutside);
        }
        let turns = (yaw / std::f32::consts::TAU).round();
        Ok(Self {
            x,
            z,
            yaw: yaw - turns * std::f32::consts::TAU,
            moving,
        })
    }

    /// Metres between this pose and `other` on the floor.
    pub fn distance(&self, other: &Self) -> f32 {
        (self.x - other.x).hypot(self.z - other.z)
    }

    /// The pose as it travels on the pose data channel: [`POSE_WIRE_BYTES`] bytes, the
    /// version (1), then x, z and yaw as little-endian f32, then flags (bit 0: moving).
    pub fn to_wire(&self) -> [u8; POSE_WIRE_BYTES] {
        let mut bytes = [0u8; POSE_WIRE_BYTES];
        bytes[0] = POSE_WIRE_VERSION;
        bytes[1..5].copy_from_slice(&self.x.to_le_bytes());
        bytes[5..9].copy_from_slice(&self.z.to_le_bytes());
        bytes[9..13].copy_from_slice(&self.yaw.to_le_bytes());
        bytes[13] = u8::from(self.moving);
        bytes
    }

    /// A pose from the pose data channel, validated as [`Pose::new`] does.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, InvalidInput> {
        let [
            version,
            x0,
            x1,
            x2,
            x3,
            z0,
            z1,
            z2,
            z3,
            y0,
            y1,
            y2,
            y3,
            flags,
        ] = *bytes
        else {
            return Err(InvalidInput::PoseWire);
        };
        if version != POSE_WIRE_VERSION {
            return Err(InvalidInput::PoseWire);
        }
        let x = f32::from_le_bytes([x0, x1, x2, x3]);
        let z = f32::from_le_bytes([z0, z1, z2, z3]);
        let yaw = f32::from_le_bytes([y0, y1, y2, y3]);
        Self::new(x, z, yaw, flags & 1 == 1)
    }
}

/// Length of a pose on the pose data channel.
pub const POSE_WIRE_BYTES: usize = 14;
/// The first byte of a pose on the pose data channel.
const POSE_WIRE_VERSION: u8 = 1;

/// Which simulcast layer of someone's camera a client wants through the SFU: the one
/// that fits how large that person appears on its screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoLayer {
    /// A quarter of the picture's width and height.
    Small,
    /// Half its width and height.
    Medium,
    /// The whole picture.
    Large,
}

impl VideoLayer {
    /// The layer's number among the sender's simulcast streams, smallest first (Janus's
    /// `substream`).
    pub fn substream(self) -> u8 {
        self as u8
    }
}

/// Whom a chat message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatScope {
    /// Everyone in the sender's room (or the lobby).
    Room,
    /// Those within earshot of the sender in the lobby; in a room, everyone in it.
    Near,
    /// Everyone connected to the server, in the lobby or any room.
    Space,
}

/// A chat message's text: 1 to [`MAX_CHAT_CHARS`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChatText(String);

impl ChatText {
    /// Validates a message typed by a user or received from a client.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let count = raw.chars().count();
        if count == 0 || count > MAX_CHAT_CHARS {
            return Err(InvalidInput::ChatLength);
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidInput::ChatCharacters);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who is in a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's id in this room.
    pub peer_id: PeerId,
    /// The peer's display name.
    pub name: DisplayName,
    /// Where the peer stands, once it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose: Option<Pose>,
    /// Whether the peer's hand is raised.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hand_raised: bool,
    /// Whether the peer shares a screen (see `sharers`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sharing: bool,
}

impl PeerInfo {
    /// A peer whose pose is not known, hand down.
    pub fn new(peer_id: PeerId, name: DisplayName) -> Self {
        Self {
            peer_id,
            name,
            pose: None,
            hand_raised: false,
            sharing: false,
        }
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Make a new room and enter it.
    CreateRoom {
        /// The creator's display name.
        #[serde(default)]
        name: DisplayName,
        /// Shown in everyone's lobby (`list_rooms`) under this title when set; a room
        /// without one is private: only its id lets anyone in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_title: Option<DisplayName>,
        /// Locks the room: `join_room` must give the same passcode.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passcode: Option<Passcode>,
    },
    /// Enter an existing room by its id.
    JoinRoom {
        /// The room to enter.
        room: RoomId,
        /// The joiner's display name.
        #[serde(default)]
        name: DisplayName,
        /// The room's passcode, when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passcode: Option<Passcode>,
    },
    /// Take our place in a room back after the signaling connection dropped: same
    /// room, same peer id. If the server no longer knows the room (it restarted), it
    /// makes it again with this id, title and passcode.
    Resume {
        /// The room we were in.
        room: RoomId,
        /// Our id in it.
        peer_id: PeerId,
        /// The token `welcome` gave us.
        resume_token: ResumeToken,
        /// Our display name.
        #[serde(default)]
        name: DisplayName,
        /// The room's lobby title, for making the room again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_title: Option<DisplayName>,
        /// The room's passcode, when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passcode: Option<Passcode>,
    },
    /// Relay `data` to one peer of the same room. The server does not look inside.
    Signal {
        /// The peer to deliver to.
        to: PeerId,
        /// Opaque payload (an SDP offer or answer, an ICE candidate, ...).
        data: serde_json::Value,
    },
    /// Leave the room; the connection stays open and may create or join again.
    Leave,
    /// Ask for the public rooms (answered with `room_list`), in a room or not.
    ListRooms,
    /// Where we stand now, for everyone in the room (the lobby's avatars and
    /// distances). At most 5 a second count; the server drops those sooner.
    Pose {
        /// Our pose.
        pose: Pose,
    },
    /// A chat message for `scope`. The text is checked by the server (`bad_chat`), and
    /// a sender gets `rate_limited` past 5 messages at once or 1 a second after.
    Chat {
        /// Whom it is for.
        scope: ChatScope,
        /// What it says, as typed (validated into a [`ChatText`] by the server).
        text: String,
    },
    /// Raise (or lower) our hand, for everyone in our room to see. Counted with chat
    /// against its rate limit.
    Hand {
        /// Raised (true) or lowered.
        raised: bool,
    },
    /// Tell us who is in the space now (`space`) and then whenever someone enters or
    /// leaves an area (`person_entered`, `person_left`), until we leave our room.
    WatchSpace,
    /// Claim the room's wall for our shared screen (`sharing`), or give it up. While
    /// the room's sharers are as many as it allows, a claim is refused
    /// (`share_refused`) unless it asks to `take_over`: then the earliest sharer gives
    /// way. Everyone in the room, us included, hears the outcome (`sharers`).
    Share {
        /// Claim (true) or give up.
        sharing: bool,
        /// Take the wall from the earliest sharer if it is full.
        #[serde(default, skip_serializing_if = "is_false")]
        take_over: bool,
    },
    /// In a room on the SFU: a description or candidate of our upstream (`feed`
    /// absent: the offer publishing our camera and microphone, and its candidates) or
    /// of our downstream of `feed`'s media (our answer to the server's offer, and its
    /// candidates). The payload is as in `signal`.
    SfuSignal {
        /// Whose media the downstream carries; absent for our upstream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        feed: Option<PeerId>,
        /// The offer, answer or candidate.
        data: serde_json::Value,
    },
    /// In a room on the SFU: our downstream of `feed`'s media failed; the server
    /// subscribes us to it afresh and offers the new stream with `sfu_signal`.
    SfuResubscribe {
        /// Whose media the failed downstream carried.
        feed: PeerId,
    },
    /// In a room on the SFU: forward `feed`'s camera to us at `layer` (it appears that
    /// large on our screen).
    SfuLayer {
        /// Whose camera.
        feed: PeerId,
        /// The simulcast layer wanted.
        layer: VideoLayer,
    },
    /// After `sfu_ended`: our mesh carries everyone now, so our streams through the SFU
    /// have been closed; the server ends our place there.
    SfuLeave,
}

/// A public room as the lobby lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// The room's id.
    pub room: RoomId,
    /// Its title.
    pub title: DisplayName,
    /// How many people are in it.
    pub participants: usize,
    /// How many it holds.
    pub capacity: usize,
}

/// Where in the space someone is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SpaceArea {
    /// On the lobby's open floor.
    Lobby,
    /// In a public room, behind its door in the lobby.
    Room {
        /// The room's id.
        room: RoomId,
        /// Its title.
        title: DisplayName,
    },
    /// In a private room (which is not named).
    Private,
}

/// Someone in the space, as `space` and `person_entered` tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpacePerson {
    /// Their id in their area's room.
    pub peer_id: PeerId,
    /// Their display name.
    pub name: DisplayName,
    /// Where they are.
    pub area: SpaceArea,
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// You are in `room` as `peer_id`; `peers` were there before you. You send the
    /// offers to each of them (see the offer rule in `docs/signaling.md`).
    Welcome {
        /// The room entered.
        room: RoomId,
        /// Your id in that room.
        peer_id: PeerId,
        /// Everyone already in the room, oldest first.
        peers: Vec<PeerInfo>,
        /// The secret for taking this place back with `resume`.
        resume_token: ResumeToken,
        /// STUN/TURN servers to use, with short-lived TURN credentials (the server's
        /// `--turn-url`); absent when the server has none.
        #[serde(
            default,
            skip_serializing_if = "Vec::is_empty",
            deserialize_with = "deserialize_ice_servers"
        )]
        ice_servers: Vec<IceServer>,
        /// The room runs on the SFU (see `sfu_started`): publish there, and offer to
        /// nobody.
        #[serde(default, skip_serializing_if = "is_false")]
        sfu: bool,
    },
    /// Your room has grown past the mesh (the server's `--mesh-limit`) and moves to the
    /// SFU: publish your media with `sfu_signal`; the server offers you everyone's
    /// media the same way. Keep the mesh connections until those streams show.
    SfuStarted,
    /// Your room on the SFU has shrunk well below the mesh limit and goes back to a
    /// mesh: connect peer to peer to everyone (the smaller peer id offers), close each
    /// member's stream through the SFU once the mesh connection to it has connected,
    /// and say `sfu_leave` once none is left.
    SfuEnded,
    /// From the SFU, through the server: the answer to our upstream's offer (`feed`
    /// absent), or the offer of `feed`'s media to us (answer it with `sfu_signal`).
    SfuSignal {
        /// Whose media the downstream carries; absent for our upstream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        feed: Option<PeerId>,
        /// The offer or answer.
        data: serde_json::Value,
    },
    /// Someone entered your room; they will send you an offer.
    PeerJoined {
        /// The newcomer.
        peer: PeerInfo,
    },
    /// A peer's signaling connection dropped; the server keeps its place for a grace
    /// period (`peer_left` follows if it does not come back). Its media may still flow.
    PeerAway {
        /// Who.
        peer_id: PeerId,
    },
    /// A peer took its place back with `resume`. If you have no connection to it, it
    /// will send you an offer, as a newcomer would.
    PeerBack {
        /// Who.
        peer: PeerInfo,
    },
    /// Someone left your room (cleanly or because their connection dropped).
    PeerLeft {
        /// Who left.
        peer_id: PeerId,
    },
    /// A payload relayed from another peer of your room.
    Signal {
        /// The sender.
        from: PeerId,
        /// The payload as the sender wrote it.
        data: serde_json::Value,
    },
    /// Where a peer of your room stands now (relayed `pose`).
    PeerPose {
        /// Who.
        peer_id: PeerId,
        /// Where.
        pose: Pose,
    },
    /// Who shares a screen in your room now, earliest first: sent to everyone in the
    /// room whenever it changes (a `share`, someone leaving). A sharer missing from it
    /// was taken over and stops sharing.
    Sharers {
        /// The sharers.
        peers: Vec<PeerId>,
    },
    /// Your `share` was refused: these share already, as many as the room allows. Ask
    /// again with `take_over` to show yours instead.
    ShareRefused {
        /// The sharers.
        sharers: Vec<PeerId>,
    },
    /// A peer of your room raised or lowered its hand (relayed `hand`).
    PeerHand {
        /// Who.
        peer_id: PeerId,
        /// Raised (true) or lowered.
        raised: bool,
    },
    /// A chat message from someone in the space.
    Chat {
        /// The sender's id in its room.
        from: PeerId,
        /// The sender's name.
        name: DisplayName,
        /// Whom it was for.
        scope: ChatScope,
        /// What it says.
        text: ChatText,
    },
    /// Everyone else in the space now (at most 200, the lobby first), answering
    /// `watch_space`; `total` counts them all.
    Space {
        /// Who is where.
        people: Vec<SpacePerson>,
        /// How many people there are, those left out of `people` included.
        total: usize,
    },
    /// Someone entered an area of the space (the server, the lobby or a room), for a
    /// client that watches the space. Going through a door is leaving one area and
    /// entering another, under a new id.
    PersonEntered {
        /// Who, and where.
        person: SpacePerson,
    },
    /// Someone left their area (and the space, unless they enter another).
    PersonLeft {
        /// Their id in the area they left.
        peer_id: PeerId,
    },
    /// The public rooms, answering `list_rooms` (at most 100, fullest first).
    RoomList {
        /// The rooms.
        rooms: Vec<RoomSummary>,
    },
    /// Something you asked for could not be done.
    Error {
        /// What went wrong, for programs.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
    },
}

/// The typed reasons the server refuses something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No room has that id (it never existed, or everyone left).
    RoomNotFound,
    /// The room already holds as many peers as the server allows.
    RoomFull,
    /// The server holds as many rooms as it allows.
    ServerFull,
    /// The message was not JSON, had an unknown type, or had invalid fields.
    BadMessage,
    /// The message was larger than the server accepts; the server closes the connection.
    MessageTooLarge,
    /// Too many messages too fast; the ones over the limit were dropped.
    RateLimited,
    /// Create or join while already in a room.
    AlreadyInRoom,
    /// A signal or leave while in no room.
    NotInRoom,
    /// A signal to a peer that is not in your room.
    PeerNotFound,
    /// `join_room` without the room's passcode, or with a wrong one.
    WrongPasscode,
    /// `resume` with a token that does not match the place asked for, or a place
    /// another peer holds now.
    ResumeRefused,
    /// A chat message that is empty, too long, or has control characters.
    BadChat,
    /// The SFU could not carry out an `sfu_signal` (unreachable, or it refused).
    SfuFailed,
}

impl ErrorCode {
    /// The code as it appears on the wire (`room_not_found`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoomNotFound => "room_not_found",
            Self::RoomFull => "room_full",
            Self::ServerFull => "server_full",
            Self::BadMessage => "bad_message",
            Self::MessageTooLarge => "message_too_large",
            Self::RateLimited => "rate_limited",
            Self::AlreadyInRoom => "already_in_room",
            Self::NotInRoom => "not_in_room",
            Self::PeerNotFound => "peer_not_found",
            Self::WrongPasscode => "wrong_passcode",
            Self::ResumeRefused => "resume_refused",
            Self::BadChat => "bad_chat",
            Self::SfuFailed => "sfu_failed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text frame is not a valid [`ClientMessage`].
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON without a string `type` field.
    #[error("the message has no \"type\" field")]
    MissingType,
    /// A `type` this protocol does not have.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A known type with missing or invalid fields.
    #[error("invalid {kind:?} message: {source}")]
    InvalidFields {
        /// The message type.
        kind: String,
        /// What serde said.
        source: serde_json::Error,
    },
}

const CLIENT_MESSAGE_TYPES: [&str; 15] = [
    "create_room",
    "join_room",
    "resume",
    "signal",
    "leave",
    "list_rooms",
    "pose",
    "chat",
    "hand",
    "watch_space",
    "share",
    "sfu_signal",
    "sfu_resubscribe",
    "sfu_layer",
    "sfu_leave",
];

impl ClientMessage {
    /// Parses one text frame, telling apart broken JSON, unknown types and bad fields.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(DecodeError::NotJson)?;
        let kind = value
            .get("type")
            .and_then(serde_json::Value::as_str)
            .ok_or(DecodeError::MissingType)?
            .to_owned();
        if !CLIENT_MESSAGE_TYPES.contains(&kind.as_str()) {
            return Err(DecodeError::UnknownType(kind));
        }
        serde_json::from_value(value).map_err(|source| DecodeError::InvalidFields { kind, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_room_ids_are_long_distinct_and_valid() {
        let a = RoomId::random();
        let b = RoomId::random();
        assert_eq!(a.as_str().len(), ROOM_ID_SYMBOLS);
        assert_ne!(a, b);
        assert_eq!(RoomId::parse(a.as_str()).unwrap(), a);
        assert!(a.as_str().bytes().all(|c| ID_ALPHABET.contains(&c)));
    }

    #[test]
    fn room_id_validation() {
        assert_eq!(RoomId::parse("  abc-DEF_9 ").unwrap().as_str(), "abc-DEF_9");
        assert_eq!(RoomId::parse("   "), Err(InvalidInput::EmptyId));
        assert_eq!(RoomId::parse("a/b"), Err(InvalidInput::IdCharacters));
        assert_eq!(RoomId::parse("ünï"), Err(InvalidInput::IdCharacters));
        assert_eq!(RoomId::parse(&"a".repeat(65)), Err(InvalidInput::IdTooLong));
    }

    #[test]
    fn names_default_and_reject_control_characters() {
        assert_eq!(DisplayName::parse("").unwrap().as_str(), DEFAULT_NAME);
        assert_eq!(DisplayName::parse(" Zoë ").unwrap().as_str(), "Zoë");
        assert_eq!(
            DisplayName::parse("a\nb"),
            Err(InvalidInput::NameCharacters)
        );
        assert_eq!(
            DisplayName::parse(&"é".repeat(65)),
            Err(InvalidInput::NameTooLong)
        );
    }

    #[test]
    fn passcodes_and_resume_tokens() {
        assert_eq!(Passcode::parse(""), Err(InvalidInput::PasscodeLength));
        assert_eq!(
            Passcode::parse(&"x".repeat(65)),
            Err(InvalidInput::PasscodeLength)
        );
        assert_eq!(
            Passcode::parse("a\tb"),
            Err(InvalidInput::PasscodeCharacters)
        );
        let locked = Passcode::parse("blue heron").unwrap();
        assert!(locked.admits(Some(&Passcode::parse("blue heron").unwrap())));
        assert!(!locked.admits(Some(&Passcode::parse("blue heron ").unwrap())));
        assert!(!locked.admits(None));
        assert_eq!(
            format!("{locked:?}"),
            "Passcode(..)",
            "secrets stay out of logs"
        );

        let token = ResumeToken::random();
        assert_eq!(token.0.len(), RESUME_TOKEN_SYMBOLS);
        assert!(token.matches(&ResumeToken::parse(&token.0).unwrap()));
        assert!(!token.matches(&ResumeToken::random()));
        assert_eq!(format!("{token:?}"), "ResumeToken(..)");
    }

    #[test]
    fn wire_format_matches_the_documentation() {
        let join = ClientMessage::decode(
            r#"{"type":"join_room","room":"k3m9px2q7rabcdefghjk","name":"Bob"}"#,
        )
        .unwrap();
        assert_eq!(
            join,
            ClientMessage::JoinRoom {
                room: RoomId::parse("k3m9px2q7rabcdefghjk").unwrap(),
                name: DisplayName::parse("Bob").unwrap(),
                passcode: None,
            }
        );
        let error = ServerMessage::Error {
            code: ErrorCode::RoomNotFound,
            message: "no such room".into(),
        };
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"type":"error","code":"room_not_found","message":"no such room"}"#
        );
        assert_eq!(
            serde_json::to_string(&ClientMessage::Leave).unwrap(),
            r#"{"type":"leave"}"#
        );
    }

    #[test]
    fn welcome_carries_validated_ice_servers() {
        let documented = r#"{"type": "welcome", "room": "k3m9px2q7rabcdefghjk", "peer_id": "c4d8n2w6ze",
 "peers": [], "resume_token": "q8w2e4r6t8y2u4i6o8p2a4s6d8",
 "ice_servers": [{"urls": ["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp"],
                  "username": "1764345600:c4d8n2w6ze", "credential": "kTyHnMY2ngyvz5IkOaBnqS3uVyA="}]}"#;
        let ServerMessage::Welcome { ice_servers, .. } =
            serde_json::from_str::<ServerMessage>(documented).unwrap()
        else {
            panic!("expected welcome");
        };
        assert_eq!(ice_servers.len(), 1);
        assert_eq!(ice_servers[0].urls.len(), 2);
        let without = r#"{"type":"welcome","room":"r","peer_id":"p","peers":[],"resume_token":"q8w2e4r6t8y2u4i6o8p2a4s6d8"}"#;
        let welcome = serde_json::from_str::<ServerMessage>(without).unwrap();
        assert!(
            !serde_json::to_string(&welcome)
                .unwrap()
                .contains("ice_servers")
        );
        let hostile = documented.replace("\"username\": \"1764345600", "\"username\": \"\\u0007");
        assert!(serde_json::from_str::<ServerMessage>(&hostile).is_err());
        let ftp = documented.replace("turn:turn.example.org:3478?transport=udp", "ftp://x");
        assert!(serde_json::from_str::<ServerMessage>(&ftp).is_err());
    }

    #[test]
    fn poses_are_validated_and_their_heading_wrapped() {
        let pose = ClientMessage::decode(
            r#"{"type":"pose","pose":{"x":3.5,"z":-2.0,"yaw":7.0,"moving":true}}"#,
        )
        .unwrap();
        let ClientMessage::Pose { pose } = pose else {
            panic!("expected a pose: {pose:?}");
        };
        assert_eq!((pose.x, pose.z, pose.moving), (3.5, -2.0, true));
        assert!((pose.yaw - (7.0 - std::f32::consts::TAU)).abs() < 1e-5);
        for bad in [
            r#"{"type":"pose","pose":{"x":501,"z":0,"yaw":0}}"#,
            r#"{"type":"pose","pose":{"x":0,"z":-1e30,"yaw":0}}"#,
            r#"{"type":"pose","pose":{"x":0,"z":0}}"#,
            r#"{"type":"pose","pose":{"x":"a","z":0,"yaw":0}}"#,
        ] {
            assert!(
                matches!(
                    ClientMessage::decode(bad),
                    Err(DecodeError::InvalidFields { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            Pose::new(f32::NAN, 0.0, 0.0, false),
            Err(InvalidInput::PoseOutside)
        );
        assert_eq!(
            Pose::new(0.0, 0.0, f32::INFINITY, false),
            Err(InvalidInput::PoseOutside)
        );
        let a = Pose::new(0.0, 0.0, 0.0, false).unwrap();
        let b = Pose::new(3.0, 4.0, 0.0, false).unwrap();
        assert_eq!(a.distance(&b), 5.0);
        let walking = Pose::new(-3.25, 7.5, 1.0, true).unwrap();
        let wire = walking.to_wire();
        assert_eq!(wire[0], 1);
        assert_eq!(Pose::from_wire(&wire), Ok(walking));
        assert_eq!(Pose::from_wire(&wire[..13]), Err(InvalidInput::PoseWire));
        let mut future = wire;
        future[0] = 2;
        assert_eq!(Pose::from_wire(&future), Err(InvalidInput::PoseWire));
        let mut far = wire;
        far[1..5].copy_from_slice(&1e9f32.to_le_bytes());
        assert_eq!(Pose::from_wire(&far), Err(InvalidInput::PoseOutside));
    }

    #[test]
    fn decode_tells_failures_apart() {
        assert!(matches!(
            ClientMessage::decode("{not json"),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(
            ClientMessage::decode(r#"{"room":"x"}"#),
            Err(DecodeError::MissingType)
        ));
        assert!(matches!(
            ClientMessage::decode(r#"{"type":"launch_rockets"}"#),
            Err(DecodeError::UnknownType(t)) if t == "launch_rockets"
        ));
        assert!(matches!(
            ClientMessage::decode(r#"{"type":"join_room","room":"../etc"}"#),
            Err(DecodeError::InvalidFields { .. })
        ));
        assert!(matches!(
            ClientMessage::decode(r#"{"type":"signal","to":"abc"}"#),
            Err(DecodeError::InvalidFields { .. })
        ));
    }
}
