//! The room protocol of a call as a sans-IO state machine: one piece of logic that the
//! native and the browser drivers both run.
//!
//! Inputs are method calls (a command from the app, a message or the end of the
//! signaling connection, a peer connection's new state or outgoing signal, and the time
//! `now`); outputs are [`RoomAction`]s the driver carries out for its target (open the
//! signaling connection, send this message, open or close a peer connection, start the
//! media, tell the app). Nothing here awaits, reads a clock or owns a channel, so every
//! rule can be tested with scripted inputs and a fake clock (see the tests below).
//!
//! The rules (docs/signaling.md, "Writing your own client", describes them for other
//! clients):
//! - **Who offers.** The newcomer offers to everyone listed in `welcome`; those in the
//!   room answer. After a failed connection, each side that notices offers a fresh
//!   connection (the peer may not have noticed: its side can look fine); after `resume`,
//!   the resumer offers to every peer it has no working connection with.
//! - **An offer on a negotiated connection means "start over"**: it is answered on a
//!   fresh connection.
//! - **Glare**: when both sides offered at once, the peer with the smaller id keeps its
//!   offer (ids compare as strings) and the other answers on a fresh connection.
//! - **Failed connections**: a connection that has not connected and not moved on
//!   for [`CONNECT_LIMIT`] counts as failed, and so does one the peer closed; a peer whose
//!   connection does not connect again within [`PEER_RECONNECT_LIMIT`] is dropped (with
//!   "no route" when nothing ever connected). A dropped peer still in the room that
//!   offers again is shown and answered again.
//!   A connection that replaces one that never connected relays through TURN only.
//! - **One screen on the wall**: a share starts only once the server gave us the wall
//!   (`sharers` names us); while it shows as many screens as the room allows, the
//!   claim is refused and the user is asked whether to take over; a sharer the
//!   `sharers` list no longer names was taken over and stops. A claim goes again after
//!   a resume (the server may have restarted).
//! - **Signaling drops**: media goes on; the driver reconnects with backoff and asks for
//!   our place back with the resume token; signals meanwhile are queued (the oldest go
//!   past [`MAX_QUEUED_SIGNALS`]) and go out in order once we are back. After
//!   [`RESUME_LIMIT`] the call ends.
//! - **Peers away**: a peer whose own signaling dropped stays while its media path
//!   works, and is dropped when it has none.
//! - **Early candidates**: a bounded number before a connection's remote
//!   description ([`MAX_EARLY_CANDIDATES`]); more are dropped.
//! - **Poses**, in any room: ours goes through the server (at most every
//!   [`POSE_EVERY`]) and on our connections' data channels; a peer's pose from its data
//!   channel outranks the server's for [`DIRECT_POSES_LAST`].
//! - **The lobby** (room [`RoomId::lobby`]): everyone in it is shown from the welcome
//!   on. Media follows distance ([`nearby`]): each side wants the nearest people within
//!   earshot; it starts its media when it first wants someone, then tells each wanted
//!   peer it is ready (`PeerControl::Nearby`). A connection opens when both sides are ready for
//!   each other, offered by the side with the smaller id, and closes when either one
//!   no longer wants it (the person stays, without media). Our media stops after
//!   [`ALONE_LIMIT`] without anyone wanted, releasing the camera and microphone.
//! - **Rooms on the SFU** (`sfu.rs`): once the server moves our room (or welcomes us
//!   onto it), we publish once and take the downstreams it offers; each member's mesh
//!   connection goes once the SFU carries media both ways between us (our downstream
//!   connected, and the member's `PeerControl::SfuCarries`), and is not started again.

pub mod nearby;
mod sfu;

pub use sfu::Route;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use bevy::platform::time::Instant;
use serde::Deserialize;

use super::{CallCommand, CallError, ChatLine, MediaState, PeerControl, SpaceNews};
use crate::config::NearbySettings;
use crate::media::ShareTarget;
use crate::rtc::{MAX_EARLY_CANDIDATES, PeerConnectionState, Role};
use crate::signaling::ice_servers::IceServer;
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{
    ChatScope, ChatText, ClientMessage, DisplayName, ErrorCode, Passcode, PeerId, PeerInfo, Pose,
    ResumeToken, RoomId, RoomSummary, ServerMessage,
};
use crate::signaling::reconnect::Backoff;

/// How long a peer whose connection failed may take to connect again before it is
/// dropped from the call.
pub const PEER_RECONNECT_LIMIT: Duration = Duration::from_secs(10);
/// How long the signaling connection may stay lost before the call ends.
pub const RESUME_LIMIT: Duration = Duration::from_secs(60);
/// How long a new connection may go without moving on (a description or candidate of
/// the peer, a new state) before it counts as failed: a negotiation that never
/// completes, such as an offer the peer refused, fails no other way.
pub const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// Signaling messages kept for sending while the connection is down (the oldest go).
pub const MAX_QUEUED_SIGNALS: usize = 1024;
/// Least time between two of our poses sent through the server (5 a second).
pub const POSE_EVERY: Duration = Duration::from_millis(200);
/// How long our media runs in the lobby without anyone near before it stops.
pub const ALONE_LIMIT: Duration = Duration::from_secs(5);
/// How long a peer's poses from its data channel outrank those through the server
/// (it sends one at least every second while connected).
pub const DIRECT_POSES_LAST: Duration = Duration::from_secs(2);

/// What the driver does for the room, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomAction {
    /// Open a signaling connection and send `request` (create or join) over it; report
    /// [`Room::link_opened`] or [`Room::link_failed`].
    OpenLink(ClientMessage),
    /// After `after`, open a new signaling connection; report [`Room::link_opened`] or
    /// [`Room::reconnect_failed`].
    Reconnect {
        /// The wait before the attempt.
        after: Duration,
    },
    /// Send a message over the open signaling connection.
    Send(ClientMessage),
    /// Close the signaling connection (and stop any reconnection attempt).
    CloseLink,
    /// Ask for the public rooms over a short-lived connection of its own.
    ListRoomsApart,
    /// Use these ICE servers for connections from now on (the server's TURN credentials).
    UseIceServers(Vec<IceServer>),
    /// Start our media (camera, microphone, encoders, speaker); report
    /// [`Room::media_started`] or [`Room::media_failed`].
    StartMedia,
    /// Apply our switches to what we send.
    ApplyMedia(MediaState),
    /// Show this screen or window to everyone in the call, or stop sharing (`None`):
    /// the room gave us its wall, or took it back.
    ShareScreen(Option<ShareTarget>),
    /// Send our pose to every connected peer on the pose data channel.
    SharePose(Pose),
    /// Close every peer connection and stop our media, releasing the devices.
    StopMedia,
    /// Open connection `epoch` to `peer` in `role`, replacing any other.
    Connect {
        /// The peer.
        peer: PeerId,
        /// Which of the successive connections to the peer this is.
        epoch: u64,
        /// Our side of its offer/answer.
        role: Role,
        /// Gather and use relayed (TURN) candidates only.
        relay_only: bool,
    },
    /// Hand a payload from the peer to connection `epoch`.
    Deliver {
        /// The peer.
        peer: PeerId,
        /// The connection it is for.
        epoch: u64,
        /// The offer, answer or candidate.
        payload: SignalPayload,
    },
    /// Open our upstream to the SFU (`feed` none: we offer our media) or our downstream
    /// of `feed`'s media (we answer the SFU's offer, delivered next), replacing any other.
    OpenSfu {
        /// Whose media the downstream brings; none for our upstream.
        feed: Option<PeerId>,
        /// Which of the successive streams this is.
        epoch: u64,
    },
    /// Hand a payload from the SFU to stream `epoch`.
    DeliverSfu {
        /// The stream's member; none for our upstream.
        feed: Option<PeerId>,
        /// The stream it is for.
        epoch: u64,
        /// The answer, offer or candidate.
        payload: SignalPayload,
    },
    /// Close our downstream of `feed` (its member left).
    CloseSfu {
        /// The stream's member.
        feed: Option<PeerId>,
    },
    /// Close connection `epoch` to `peer` in the background: a fresh one replaces it.
    Retire {
        /// The peer.
        peer: PeerId,
        /// The replaced connection.
        epoch: u64,
    },
    /// The peer is gone: close its connection and stop playing it.
    Close(PeerId),
    /// We are in `room` as `self_id` with `peers`: show them.
    Joined {
        /// The room.
        room: RoomId,
        /// Our id in it.
        self_id: PeerId,
        /// Who was there before us.
        peers: Vec<PeerInfo>,
    },
    /// A peer to show.
    PeerJoined(PeerInfo),
    /// Tell the app (never [`super::CallEvent::Joined`] or `PeerJoined`, which carry
    /// the driver's video channels: see [`RoomAction::Joined`], [`RoomAction::PeerJoined`]).
    Emit(RoomEvent),
}

/// What the room tells the app, beside the joins.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// A peer left, or its connection failed for good.
    PeerLeft(PeerId),
    /// A peer turned its microphone or camera on or off.
    PeerMedia(PeerId, MediaState),
    /// Our own switches changed without being asked (no microphone: we are muted).
    OwnMedia(MediaState),
    /// Where a peer in the lobby stands now.
    PeerPose(PeerId, Pose),
    /// A peer raised (true) or lowered its hand.
    PeerHand(PeerId, bool),
    /// Our claim of the wall was refused: these people share (ask whether to take
    /// over).
    ShareRefused(Vec<DisplayName>),
    /// Someone (by name, when known) took the wall over: our share stopped.
    ShareTakenOver(Option<DisplayName>),
    /// In the lobby, a peer came within earshot (`near`: we want media with it) or
    /// went out of it, `distance_m` away.
    Nearby {
        /// Who.
        peer: PeerId,
        /// How far, in metres, when it crossed.
        distance_m: f32,
        /// Whether it is near now.
        near: bool,
    },
    /// A chat message from someone in the space.
    Chat(ChatLine),
    /// The server's list of public rooms.
    RoomList(Vec<RoomSummary>),
    /// Who is where in the space.
    Space(SpaceNews),
    /// The signaling connection dropped during the call (why); reconnecting.
    Reconnecting(String),
    /// The signaling connection is back and we have our place again.
    Reconnected,
    /// The call is over.
    Left,
    /// Something went wrong.
    Failed(CallError),
}

/// How the room's signaling connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// None.
    Down,
    /// Being opened (a create/join or a reconnection).
    Opening,
    /// Open; `welcomed` once the server has us in the room over it.
    Open { welcomed: bool },
}

/// Our place in a room: what `resume` needs to take it back.
#[derive(Debug, Clone)]
struct Place {
    room: RoomId,
    self_id: PeerId,
    resume_token: ResumeToken,
    public_title: Option<DisplayName>,
}

/// Getting the signaling connection back after it dropped during a call.
#[derive(Debug)]
struct Reconnecting {
    since: Instant,
    backoff: Backoff,
}

/// One remote peer and our connection to it now.
#[derive(Debug, Clone)]
struct PeerSlot {
    epoch: u64,
    role: Role,
    state: PeerConnectionState,
    /// When this connection was opened or last moved on (a description or candidate
    /// of the peer handed to it, a new state): on a slow machine a negotiation that
    /// still moves on is given time.
    progress_at: Instant,
    /// Signaling says the peer's own connection to the server dropped.
    away: bool,
    /// When the connection failed, until it connects again.
    failed_at: Option<Instant>,
    /// An offer or answer has been handed to this connection.
    described: bool,
    /// Candidates handed to it before that.
    early_candidates: usize,
    /// Some connection to this peer has connected.
    ever_connected: bool,
}

impl PeerSlot {
    /// When this connection counts as failed if it has not connected by then: only
    /// for one still negotiating or connecting, and not failed already.
    fn connect_deadline(&self) -> Option<Instant> {
        let negotiating = matches!(
            self.state,
            PeerConnectionState::New | PeerConnectionState::Connecting
        );
        (negotiating && self.failed_at.is_none()).then_some(self.progress_at + CONNECT_LIMIT)
    }
}

/// The media side of the call, as far as the room knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    /// Not started.
    Off,
    /// Asked for, waiting for [`Room::media_started`].
    Starting,
    /// Running.
    On,
}

/// Who the call is made as: the part of the configuration the room protocol needs.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    /// Our display name.
    pub name: DisplayName,
    /// The passcode for locked rooms.
    pub passcode: Option<Passcode>,
    /// ICE servers given on the command line or page address; when empty, the
    /// server's (from `welcome`) are used.
    pub ice_servers: Vec<IceServer>,
    /// Whom to connect to in the lobby.
    pub nearby: NearbySettings,
    /// What we share from the start of each call (`--share`).
    pub share: Option<ShareTarget>,
}

/// Where everyone in our room stands (the lobby or a room behind a door), and what
/// we told of our own pose.
#[derive(Debug, Default)]
struct Poses {
    /// Where the others stand, as last told.
    of: HashMap<PeerId, Pose>,
    /// When our pose last went to the server.
    sent_at: Option<Instant>,
    /// Our pose changed since.
    pending: bool,
    /// When each peer's pose last came on its data channel: its poses through the
    /// server, later and older, are ignored meanwhile.
    direct: HashMap<PeerId, Instant>,
}

impl Poses {
    /// Forgets `peer`, who left.
    fn forget(&mut self, peer: &PeerId) {
        self.of.remove(peer);
        self.direct.remove(peer);
    }
}

/// What the room knows of the lobby while we are in it.
#[derive(Debug, Default)]
struct Lobby {
    /// Whom we want media with now.
    wanted: HashSet<PeerId>,
    /// Who told us they are ready for media with us.
    ready_from: HashSet<PeerId>,
    /// Since when our media runs with nobody wanted.
    alone_since: Option<Instant>,
}

/// The room protocol of one client: see the module documentation.
#[derive(Debug)]
pub struct Room {
    settings: RoomSettings,
    /// Whether the ICE servers in use include a TURN server.
    has_turn: bool,
    /// Our microphone and camera switches; they outlast calls.
    media_state: MediaState,
    media: Media,
    link: LinkState,
    reconnecting: Option<Reconnecting>,
    /// The lobby title asked for with the room being created.
    asked_title: Option<DisplayName>,
    place: Option<Place>,
    /// Who was in the room when we were welcomed, until our media runs.
    arriving: Vec<PeerInfo>,
    /// Who joined after our welcome while our media was starting: shown (and connected
    /// to) once it runs.
    joined_while_starting: Vec<PeerInfo>,
    peers: HashMap<PeerId, PeerSlot>,
    /// Peers we offered to ahead of their arrival (Firestore's 1:1 flow).
    awaited: HashSet<PeerId>,
    /// Who is in the room as far as we know (whether or not we have a connection to
    /// them), by name.
    members: HashMap<PeerId, DisplayName>,
    queued: VecDeque<ClientMessage>,
    /// Where we stand, once the app said.
    own_pose: Option<Pose>,
    /// Where the others in our room stand.
    poses: Poses,
    /// Whether our hand is raised; it outlasts calls.
    hand_raised: bool,
    /// Set while we are in the lobby.
    lobby: Option<Lobby>,
    /// Set while our room is on the SFU.
    sfu: Option<sfu::SfuLinks>,
    /// Our shared screen: what we want to show (it outlasts calls), and whether the
    /// room gave us its wall (the driver shares only then).
    share: Option<ShareTarget>,
    share_granted: bool,
    next_epoch: u64,
    actions: VecDeque<RoomAction>,
    /// The time of the input being handled.
    now: Instant,
}

impl Room {
    /// A room protocol, idle, at `now`.
    pub fn new(settings: RoomSettings, now: Instant) -> Self {
        Self {
            share: settings.share.clone(),
            has_turn: has_turn(&settings.ice_servers),
            settings,
            media_state: MediaState::default(),
            media: Media::Off,
            link: LinkState::Down,
            reconnecting: None,
            asked_title: None,
            place: None,
            arriving: Vec::new(),
            joined_while_starting: Vec::new(),
            peers: HashMap::new(),
            awaited: HashSet::new(),
            members: HashMap::new(),
            queued: VecDeque::new(),
            own_pose: None,
            poses: Poses::default(),
            hand_raised: false,
            lobby: None,
            sfu: None,
            share_granted: false,
            next_epoch: 0,
            actions: VecDeque::new(),
            now,
        }
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<RoomAction> {
        self.actions.pop_front()
    }

    /// When [`Room::tick`] has something to decide next, if anything.
    pub fn next_deadline(&self) -> Option<Instant> {
        let peers = self.peers.values().filter_map(|slot| {
            let reconnect = slot.failed_at.map(|at| at + PEER_RECONNECT_LIMIT);
            reconnect.into_iter().chain(slot.connect_deadline()).min()
        });
        let resume = self
            .reconnecting
            .as_ref()
            .map(|reconnecting| reconnecting.since + RESUME_LIMIT);
        let pose = (self.place.is_some() && self.poses.pending)
            .then(|| self.poses.sent_at.map(|at| at + POSE_EVERY))
            .flatten();
        let alone = self
            .lobby
            .as_ref()
            .and_then(|lobby| lobby.alone_since.map(|since| since + ALONE_LIMIT));
        peers.chain(resume).chain(pose).chain(alone).min()
    }

    /// Whether a call is on (from the request until it ends).
    fn in_call(&self) -> bool {
        self.link != LinkState::Down || self.media != Media::Off || self.place.is_some()
    }

    fn act(&mut self, action: RoomAction) {
        self.actions.push_back(action);
    }

    fn emit(&mut self, event: RoomEvent) {
        self.act(RoomAction::Emit(event));
    }

    // --- commands -------------------------------------------------------------------

    /// Applies a command of the app at `now`. The device commands (switching and
    /// listing devices) are the driver's own: they come back.
    pub fn command(&mut self, command: CallCommand, now: Instant) -> Option<CallCommand> {
        self.now = now;
        match command {
            CallCommand::CreateRoom { name, public_title } => self.create(name, public_title),
            CallCommand::JoinRoom { room, name } => self.join(room, name),
            CallCommand::Leave => self.leave(),
            CallCommand::SetMicrophone(audio) => self.set_media(MediaState {
                audio,
                ..self.media_state
            }),
            CallCommand::SetCamera(video) => self.set_media(MediaState {
                video,
                ..self.media_state
            }),
            CallCommand::ListRooms => self.list_rooms(),
            CallCommand::SetPose(pose) => self.set_pose(pose),
            CallCommand::ShowSizes(sizes) => self.shown_sizes(&sizes),
            CallCommand::SendChat { scope, text } => self.send_chat(scope, text),
            CallCommand::RaiseHand(raised) => self.raise_hand(raised),
            CallCommand::ShareScreen(target) => self.share_screen(target),
            CallCommand::TakeOverScreen => self.claim_wall(true),
            CallCommand::SwitchVideo(_)
            | CallCommand::SwitchMicrophone(_)
            | CallCommand::SwitchSpeaker(_)
            | CallCommand::SetVoiceProcessing(_)
            | CallCommand::ListDevices => return Some(command),
        }
        None
    }

    /// How many peer connections we hold now.
    pub fn connection_count(&self) -> usize {
        self.peers.len() + self.sfu_connection_count()
    }

    /// The name we are shown under.
    pub fn name(&self) -> &DisplayName {
        &self.settings.name
    }

    /// Make a room and enter it.
    pub fn create(&mut self, name: DisplayName, public_title: Option<DisplayName>) {
        if self.refuse_second_call() {
            return;
        }
        self.asked_title.clone_from(&public_title);
        self.settings.name = name.clone();
        self.open_link(ClientMessage::CreateRoom {
            name,
            public_title,
            passcode: self.settings.passcode.clone(),
        });
    }

    /// Enter a room by its id.
    pub fn join(&mut self, room: RoomId, name: DisplayName) {
        if self.refuse_second_call() {
            return;
        }
        self.asked_title = None;
        self.settings.name = name.clone();
        self.open_link(ClientMessage::JoinRoom {
            room,
            name,
            passcode: self.settings.passcode.clone(),
        });
    }

    /// Refuses a second call, except from the lobby, which we leave for it (without
    /// telling the app the call ended: the next call's welcome replaces the lobby).
    fn refuse_second_call(&mut self) -> bool {
        if self.lobby.is_some() {
            if matches!(self.link, LinkState::Open { .. }) {
                self.act(RoomAction::Send(ClientMessage::Leave));
            }
            self.wind_down();
            return false;
        }
        let busy = self.in_call();
        if busy {
            self.emit(RoomEvent::Failed(CallError::AlreadyInCall));
        }
        busy
    }

    fn open_link(&mut self, request: ClientMessage) {
        self.link = LinkState::Opening;
        self.act(RoomAction::OpenLink(request));
    }

    /// Hang up: the server and the peers are told, everything is released.
    pub fn leave(&mut self) {
        if matches!(self.link, LinkState::Open { .. }) {
            self.act(RoomAction::Send(ClientMessage::Leave));
        }
        self.finish_call();
    }

    /// Our microphone and camera switches: applied and told to every peer.
    fn set_media(&mut self, media_state: MediaState) {
        self.media_state = media_state;
        if self.media == Media::Off {
            return;
        }
        self.act(RoomAction::ApplyMedia(media_state));
        let mut peers: Vec<PeerId> = self.peers.keys().cloned().collect();
        peers.sort();
        for peer in peers {
            self.tell_media_state(peer);
        }
    }

    /// Sends a chat message through the server; without a connection to it, says so.
    fn send_chat(&mut self, scope: ChatScope, text: ChatText) {
        if self.link == (LinkState::Open { welcomed: true }) {
            let text = text.into();
            self.act(RoomAction::Send(ClientMessage::Chat { scope, text }));
        } else {
            self.emit(RoomEvent::Failed(CallError::ConnectionLost(
                "the message was not sent: not connected to the signaling server".to_owned(),
            )));
        }
    }

    /// Raises or lowers our hand: told to the room now if we are in one, and to each
    /// room we enter while it is raised.
    fn raise_hand(&mut self, raised: bool) {
        self.hand_raised = raised;
        if self.link == (LinkState::Open { welcomed: true }) {
            self.act(RoomAction::Send(ClientMessage::Hand { raised }));
        }
    }

    /// Shows `target` to the room (once the server gives us the wall) or stops sharing
    /// (`None`); outside a call, from the next one on.
    fn share_screen(&mut self, target: Option<ShareTarget>) {
        self.share.clone_from(&target);
        if self.link != (LinkState::Open { welcomed: true }) {
            return;
        }
        match target {
            None => {
                self.act(RoomAction::Send(ClientMessage::Share {
                    sharing: false,
                    take_over: false,
                }));
                if self.share_granted {
                    self.share_granted = false;
                    self.act(RoomAction::ShareScreen(None));
                }
            }
            // The wall is ours: only what is on it changes.
            Some(target) if self.share_granted => {
                self.act(RoomAction::ShareScreen(Some(target)));
            }
            Some(_) => self.claim_wall(false),
        }
    }

    /// Asks the server for the wall for the share we want, from whoever holds it when
    /// `take_over`.
    fn claim_wall(&mut self, take_over: bool) {
        if self.share.is_some() && self.link == (LinkState::Open { welcomed: true }) {
            self.act(RoomAction::Send(ClientMessage::Share {
                sharing: true,
                take_over,
            }));
        }
    }

    /// The server says who shows a screen in our room now: our share starts when we
    /// are named, and stops when someone took the wall over.
    fn sharers(&mut self, sharers: &[PeerId]) {
        let Some(place) = &self.place else { return };
        let ours = sharers.contains(&place.self_id);
        match (ours, self.share_granted, &self.share) {
            (true, false, Some(target)) => {
                self.share_granted = true;
                self.act(RoomAction::ShareScreen(Some(target.clone())));
            }
            // We stopped while the claim was on its way.
            (true, false, None) => self.act(RoomAction::Send(ClientMessage::Share {
                sharing: false,
                take_over: false,
            })),
            (false, true, _) => {
                let by = sharers
                    .last()
                    .and_then(|peer| self.members.get(peer))
                    .cloned();
                self.lose_wall(by);
            }
            _ => {}
        }
    }

    /// Our share stops because someone else has the wall (`by`, when known).
    fn lose_wall(&mut self, by: Option<DisplayName>) {
        self.share_granted = false;
        self.share = None;
        self.act(RoomAction::ShareScreen(None));
        self.emit(RoomEvent::ShareTakenOver(by));
    }

    /// Our claim was refused: `sharers` have the wall. A share that was running (the
    /// claim went again after a resume) stops; otherwise the user is asked whether to
    /// take over.
    fn share_refused(&mut self, sharers: &[PeerId]) {
        let names: Vec<DisplayName> = sharers
            .iter()
            .filter_map(|peer| self.members.get(peer).cloned())
            .collect();
        if self.share_granted {
            self.lose_wall(names.last().cloned());
        } else if self.share.is_some() {
            self.emit(RoomEvent::ShareRefused(names));
        }
    }

    /// Where we stand now: on the data channels of our connections, through the
    /// server (at most every [`POSE_EVERY`]), and in the lobby who is near follows.
    fn set_pose(&mut self, pose: Pose) {
        self.own_pose = Some(pose);
        self.poses.pending = true;
        if self.media == Media::On && self.place.is_some() {
            self.act(RoomAction::SharePose(pose));
        }
        self.send_pose_when_due();
        self.reconsider_nearby();
    }

    /// Sends our pose to the server if it changed and the last one went long enough
    /// ago.
    fn send_pose_when_due(&mut self) {
        let now = self.now;
        let welcomed = self.link == LinkState::Open { welcomed: true };
        let Some(pose) = self.own_pose.filter(|_| self.place.is_some()) else {
            return;
        };
        let due = self
            .poses
            .sent_at
            .is_none_or(|at| now.saturating_duration_since(at) >= POSE_EVERY);
        if !self.poses.pending || !due || !welcomed {
            return;
        }
        self.poses.pending = false;
        self.poses.sent_at = Some(now);
        self.act(RoomAction::Send(ClientMessage::Pose { pose }));
    }

    /// Decides again whom we want media with in the lobby: tells those who came near
    /// or went away, starts or stops our media, opens and closes connections.
    fn reconsider_nearby(&mut self) {
        let now = self.now;
        let media_on = self.media == Media::On;
        let held: HashSet<PeerId> = self.peers.keys().cloned().collect();
        let settings = self.settings.nearby;
        let (Some(lobby), Some(own)) = (&mut self.lobby, self.own_pose) else {
            return;
        };
        let wanted = nearby::choose(&own, &self.poses.of, &held, &settings);
        let mut came: Vec<PeerId> = wanted.difference(&lobby.wanted).cloned().collect();
        let mut went: Vec<PeerId> = lobby.wanted.difference(&wanted).cloned().collect();
        came.sort();
        went.sort();
        let poses = &self.poses.of;
        let distance = |peer: &PeerId| {
            poses
                .get(peer)
                .map_or(f32::INFINITY, |pose| own.distance(pose))
        };
        let crossings: Vec<(PeerId, f32, bool)> = came
            .iter()
            .map(|peer| (peer.clone(), distance(peer), true))
            .chain(
                went.iter()
                    .map(|peer| (peer.clone(), distance(peer), false)),
            )
            .collect();
        lobby.wanted = wanted;
        let start_media = !lobby.wanted.is_empty() && self.media == Media::Off;
        for (peer, distance_m, near) in crossings {
            self.emit(RoomEvent::Nearby {
                peer: peer.clone(),
                distance_m,
                near,
            });
            if near && !media_on {
                continue; // told once our media runs
            }
            self.tell_ready(peer.clone(), near);
            if !near {
                self.close_media(&peer);
            }
        }
        if start_media {
            self.media = Media::Starting;
            self.act(RoomAction::StartMedia);
        }
        self.connect_nearby();
        let nobody = self.peers.is_empty();
        if let Some(lobby) = &mut self.lobby {
            lobby.alone_since = (nobody && lobby.wanted.is_empty() && media_on)
                .then(|| lobby.alone_since.unwrap_or(now));
        }
    }

    /// Where a peer of our room stands, from its pose data channel.
    pub fn peer_pose(&mut self, peer: &PeerId, pose: Pose, now: Instant) {
        self.now = now;
        if !self.members.contains_key(peer) {
            return;
        }
        self.poses.direct.insert(peer.clone(), now);
        self.take_pose(peer.clone(), pose);
    }

    /// Takes where a peer of our room stands now: shown, and in the lobby who is near
    /// follows.
    fn take_pose(&mut self, peer: PeerId, pose: Pose) {
        if !self.members.contains_key(&peer) {
            return;
        }
        self.poses.of.insert(peer.clone(), pose);
        self.emit(RoomEvent::PeerPose(peer, pose));
        self.reconsider_nearby();
    }

    /// Tells every peer we want media with in the lobby that we are ready for it.
    fn tell_wanted_ready(&mut self) {
        let mut wanted: Vec<PeerId> = self
            .lobby
            .as_ref()
            .map(|lobby| lobby.wanted.iter().cloned().collect())
            .unwrap_or_default();
        wanted.sort();
        for peer in wanted {
            self.tell_ready(peer, true);
        }
    }

    /// Tells `peer` whether we are ready for media with it.
    fn tell_ready(&mut self, to: PeerId, ready: bool) {
        let pose = self.own_pose.filter(|_| ready);
        let data = PeerControl::Nearby { ready, pose }.to_json();
        self.send_signal(ClientMessage::Signal { to, data });
    }

    /// Offers to each peer in the lobby that both sides want media with and that we
    /// have no connection to, where ours is the smaller id.
    fn connect_nearby(&mut self) {
        let (Some(lobby), Some(place)) = (&self.lobby, &self.place) else {
            return;
        };
        if self.media != Media::On {
            return;
        }
        let mut due: Vec<PeerId> = lobby
            .wanted
            .intersection(&lobby.ready_from)
            .filter(|peer| !self.peers.contains_key(*peer) && place.self_id < **peer)
            .cloned()
            .collect();
        due.sort();
        for peer in due {
            self.connect(peer, Role::Offerer);
        }
    }

    /// Whether we and `peer` both want media with each other (always, outside the
    /// lobby).
    fn both_want(&self, peer: &PeerId) -> bool {
        self.lobby
            .as_ref()
            .is_none_or(|lobby| lobby.wanted.contains(peer) && lobby.ready_from.contains(peer))
    }

    /// Closes our connection to `peer` in the lobby: the person stays, without media.
    /// Outside the lobby the peer is dropped from the call.
    fn close_media(&mut self, peer: &PeerId) {
        if self.lobby.is_none() {
            self.remove_peer(peer);
        } else if self.peers.remove(peer).is_some() {
            self.act(RoomAction::Close(peer.clone()));
        }
    }

    /// Ask for the public rooms: over the call's connection, or one of their own.
    fn list_rooms(&mut self) {
        if matches!(self.link, LinkState::Open { .. }) {
            self.act(RoomAction::Send(ClientMessage::ListRooms));
        } else {
            self.act(RoomAction::ListRoomsApart);
        }
    }

    // --- the signaling connection ---------------------------------------------------

    /// The connection asked for by [`RoomAction::OpenLink`] or [`RoomAction::Reconnect`]
    /// is open (its request sent, for the former).
    pub fn link_opened(&mut self) {
        if self.link != LinkState::Opening {
            return;
        }
        self.link = LinkState::Open { welcomed: false };
        if self.reconnecting.is_none() {
            return;
        }
        let Some(place) = &self.place else { return };
        let resume = ClientMessage::Resume {
            room: place.room.clone(),
            peer_id: place.self_id.clone(),
            resume_token: place.resume_token.clone(),
            name: self.settings.name.clone(),
            public_title: place.public_title.clone(),
            passcode: self.settings.passcode.clone(),
        };
        self.act(RoomAction::Send(resume));
    }

    /// The connection of a create or join could not be opened: the call is over.
    pub fn link_failed(&mut self, reason: String) {
        if self.link != LinkState::Opening || self.reconnecting.is_some() {
            return;
        }
        self.link = LinkState::Down;
        self.emit(RoomEvent::Failed(CallError::SignalingUnreachable(reason)));
        self.finish_call();
    }

    /// A reconnection attempt failed: the next one is asked for.
    pub fn reconnect_failed(&mut self) {
        let Some(reconnecting) = &mut self.reconnecting else {
            return;
        };
        let after = reconnecting.backoff.next_delay();
        self.link = LinkState::Opening;
        self.act(RoomAction::Reconnect { after });
    }

    /// The signaling connection ended (why).
    pub fn link_closed(&mut self, reason: String, now: Instant) {
        self.now = now;
        if self.link == LinkState::Down {
            return;
        }
        self.link = LinkState::Down;
        let placed = self.media == Media::On || self.lobby.is_some();
        if self.place.is_some() && placed {
            tracing::info!(%reason, "signaling lost; reconnecting");
            if self.reconnecting.is_none() {
                self.emit(RoomEvent::Reconnecting(reason));
                self.reconnecting = Some(Reconnecting {
                    since: now,
                    backoff: Backoff::default(),
                });
            }
            self.reconnect_failed();
        } else {
            self.emit(RoomEvent::Failed(CallError::ConnectionLost(reason)));
            self.finish_call();
        }
    }

    /// Firestore's 1:1 flow: offer to `peer` now; it is shown when it arrives.
    pub fn offer_ahead(&mut self, peer: PeerId, now: Instant) {
        self.now = now;
        if self.media != Media::On {
            return;
        }
        self.awaited.insert(peer.clone());
        self.connect(peer, Role::Offerer);
    }

    /// A message from the server.
    pub fn server_message(&mut self, message: ServerMessage, now: Instant) {
        self.now = now;
        match message {
            ServerMessage::Welcome {
                room,
                peer_id,
                peers,
                resume_token,
                ice_servers,
                sfu,
            } => {
                // A resume's welcome keeps the streams we have through the SFU, or
                // says that the room went back to a mesh while we were away.
                let was_on_sfu = self.on_sfu();
                if sfu && !was_on_sfu {
                    self.sfu_started();
                }
                self.welcome(room, peer_id, peers, resume_token, ice_servers);
                if !sfu && was_on_sfu {
                    self.sfu_ended();
                }
            }
            ServerMessage::PeerJoined { peer } if self.lobby.is_some() => {
                self.members.insert(peer.peer_id.clone(), peer.name.clone());
                self.note_pose(&peer);
                self.act(RoomAction::PeerJoined(peer));
                self.reconsider_nearby();
            }
            ServerMessage::PeerJoined { peer } => {
                if self.awaited.remove(&peer.peer_id) {
                    // We offered already (Firestore's 1:1 flow); now they are here.
                    self.members.insert(peer.peer_id.clone(), peer.name.clone());
                    self.act(RoomAction::PeerJoined(peer));
                } else if self.media == Media::On && self.on_sfu() {
                    self.show_sfu_member(peer);
                } else if self.media == Media::On {
                    self.add_peer(peer, Role::Answerer);
                } else if self.media == Media::Starting {
                    self.joined_while_starting.push(peer);
                }
            }
            ServerMessage::PeerLeft { peer_id } => {
                let member = self.members.remove(&peer_id).is_some();
                for waiting in [&mut self.arriving, &mut self.joined_while_starting] {
                    waiting.retain(|peer| peer.peer_id != peer_id);
                }
                self.poses.forget(&peer_id);
                if let Some(lobby) = &mut self.lobby {
                    lobby.wanted.remove(&peer_id);
                    lobby.ready_from.remove(&peer_id);
                    // Shown from the welcome on, with a connection or not.
                    if member && !self.peers.contains_key(&peer_id) {
                        self.emit(RoomEvent::PeerLeft(peer_id.clone()));
                    }
                }
                self.remove_peer(&peer_id);
                self.reconsider_nearby();
            }
            ServerMessage::PeerPose { peer_id, pose } => {
                let direct = self.poses.direct.get(&peer_id);
                if direct.is_some_and(|at| now.saturating_duration_since(*at) < DIRECT_POSES_LAST) {
                    return;
                }
                self.take_pose(peer_id, pose);
            }
            ServerMessage::PeerAway { peer_id } => {
                // Away with no media path either (never connected, or failed): gone.
                // Connected or disconnected ("reconnecting"): ICE decides, and so it
                // does for the SFU's stream of the peer.
                let carried = self.sfu_carries(&peer_id);
                let gone = self.peers.get_mut(&peer_id).is_some_and(|slot| {
                    slot.away = true;
                    !has_media_path(slot.state) && !carried
                });
                if gone {
                    self.close_media(&peer_id);
                }
            }
            ServerMessage::PeerBack { peer } => match self.peers.get_mut(&peer.peer_id) {
                Some(slot) => slot.away = false,
                // In the lobby it is still shown; media follows distance.
                None if self.lobby.is_some() => self.show_member(peer),
                // New to us (we had dropped it): it offers, as a newcomer does.
                None if self.media == Media::On => self.add_peer(peer, Role::Answerer),
                None => {}
            },
            ServerMessage::Signal { from, data } => self.on_signal(from, &data),
            ServerMessage::Chat {
                from,
                name,
                scope,
                text,
            } => self.emit(RoomEvent::Chat(ChatLine {
                from,
                name,
                scope,
                text,
            })),
            ServerMessage::Sharers { peers } => self.sharers(&peers),
            ServerMessage::SfuStarted => self.sfu_started(),
            ServerMessage::SfuEnded => self.sfu_ended(),
            ServerMessage::SfuSignal { feed, data } => self.sfu_signal(feed, &data),
            ServerMessage::ShareRefused { sharers } => self.share_refused(&sharers),
            ServerMessage::PeerHand { peer_id, raised } => {
                if self.members.contains_key(&peer_id) {
                    self.emit(RoomEvent::PeerHand(peer_id, raised));
                }
            }
            ServerMessage::RoomList { rooms } => self.emit(RoomEvent::RoomList(rooms)),
            ServerMessage::Space { people, total } => {
                self.emit(RoomEvent::Space(SpaceNews::Everyone { people, total }));
            }
            ServerMessage::PersonEntered { person } => {
                self.emit(RoomEvent::Space(SpaceNews::Entered(person)));
            }
            ServerMessage::PersonLeft { peer_id } => {
                self.emit(RoomEvent::Space(SpaceNews::Left(peer_id)));
            }
            ServerMessage::Error { code, message } => {
                let welcomed = self.link == LinkState::Open { welcomed: true };
                self.emit(RoomEvent::Failed(CallError::Refused { code, message }));
                if !welcomed || code == ErrorCode::MessageTooLarge {
                    self.finish_call();
                }
            }
        }
    }

    fn welcome(
        &mut self,
        room: RoomId,
        self_id: PeerId,
        peers: Vec<PeerInfo>,
        resume_token: ResumeToken,
        ice_servers: Vec<IceServer>,
    ) {
        self.link = LinkState::Open { welcomed: true };
        // Who else is in the space, now and as it changes (again after a resume).
        self.act(RoomAction::Send(ClientMessage::WatchSpace));
        if self.hand_raised {
            self.act(RoomAction::Send(ClientMessage::Hand { raised: true }));
        }
        // The wall for our share: claimed at the start of each call, and again after a
        // resume (a restarted server forgot it).
        self.claim_wall(false);
        // The server's TURN credentials (fresh ones on every resume), unless we were
        // given ICE servers of our own.
        if self.settings.ice_servers.is_empty() {
            self.has_turn = has_turn(&ice_servers);
            self.act(RoomAction::UseIceServers(ice_servers));
        }
        let public_title = self
            .place
            .take()
            .map_or_else(|| self.asked_title.clone(), |place| place.public_title);
        let lobby = room.is_lobby();
        self.place = Some(Place {
            room: room.clone(),
            self_id: self_id.clone(),
            resume_token,
            public_title,
        });
        if self.reconnecting.is_some() {
            self.resumed(peers);
            return;
        }
        self.poses = Poses {
            pending: true,
            ..Poses::default()
        };
        self.send_pose_when_due();
        if lobby {
            // Everyone in the lobby is shown at once; media waits for someone near.
            self.lobby = Some(Lobby::default());
            for peer in &peers {
                self.members.insert(peer.peer_id.clone(), peer.name.clone());
                self.note_pose(peer);
            }
            self.act(RoomAction::Joined {
                room,
                self_id,
                peers,
            });
            self.reconsider_nearby();
        } else {
            self.arriving = peers;
            self.media = Media::Starting;
            self.act(RoomAction::StartMedia);
        }
    }

    /// We have our place back. `peers` are those in the room now: we connect afresh (as
    /// the newcomer, offering) to each one we have no working connection with. Peers
    /// not listed may simply not have resumed yet (after a server restart): they count
    /// as away, and are dropped if their connection is not working.
    fn resumed(&mut self, peers: Vec<PeerInfo>) {
        self.reconnecting = None;
        self.emit(RoomEvent::Reconnected);
        for message in std::mem::take(&mut self.queued) {
            self.act(RoomAction::Send(message));
        }
        // The server forgot where we stand if it restarted: told again.
        self.poses.pending = true;
        self.poses.sent_at = None;
        self.send_pose_when_due();
        if self.lobby.is_some() {
            self.lobby_resumed(peers);
            return;
        }
        let listed: HashSet<PeerId> = peers.iter().map(|peer| peer.peer_id.clone()).collect();
        let on_sfu = self.on_sfu();
        for info in peers {
            if self.sfu_carries(&info.peer_id) {
                continue;
            }
            match self.peers.get_mut(&info.peer_id) {
                None if on_sfu => {
                    if !self.members.contains_key(&info.peer_id) {
                        self.show_sfu_member(info);
                    }
                }
                Some(slot) => {
                    slot.away = false;
                    if slot.state != PeerConnectionState::Connected {
                        self.connect(info.peer_id, Role::Offerer);
                    }
                }
                None => self.add_peer(info, Role::Offerer),
            }
        }
        let mut unlisted: Vec<(PeerId, bool)> = self
            .peers
            .iter()
            .filter(|(peer_id, _)| !listed.contains(*peer_id))
            .map(|(peer_id, slot)| {
                (
                    peer_id.clone(),
                    slot.state == PeerConnectionState::Connected,
                )
            })
            .collect();
        unlisted.sort();
        for (peer_id, working) in unlisted {
            if working {
                if let Some(slot) = self.peers.get_mut(&peer_id) {
                    slot.away = true;
                }
            } else {
                self.remove_peer(&peer_id);
            }
        }
    }

    /// Back in the lobby: newcomers are shown, those gone are dropped, our pose and
    /// readiness are told again, and connections follow distance as before.
    fn lobby_resumed(&mut self, peers: Vec<PeerInfo>) {
        let listed: HashSet<PeerId> = peers.iter().map(|peer| peer.peer_id.clone()).collect();
        for peer in peers {
            self.note_pose(&peer);
            self.show_member(peer);
        }
        let mut gone: Vec<PeerId> = self
            .members
            .keys()
            .filter(|peer| !listed.contains(*peer))
            .cloned()
            .collect();
        gone.sort();
        for peer_id in gone {
            self.server_message(ServerMessage::PeerLeft { peer_id }, self.now);
        }
        if self.media == Media::On {
            self.tell_wanted_ready();
        }
        self.reconsider_nearby();
    }

    /// Shows a lobby peer we did not know of.
    fn show_member(&mut self, peer: PeerInfo) {
        if !self.members.contains_key(&peer.peer_id) {
            self.members.insert(peer.peer_id.clone(), peer.name.clone());
            self.act(RoomAction::PeerJoined(peer));
        }
    }

    /// Keeps where a peer of our room stands, when its info says.
    fn note_pose(&mut self, peer: &PeerInfo) {
        if let Some(pose) = peer.pose {
            self.poses.of.insert(peer.peer_id.clone(), pose);
        }
    }

    // --- media ----------------------------------------------------------------------

    /// Our media runs (`microphone_missing`: it runs without a microphone, so we are
    /// muted): we show the room and offer to everyone already there.
    pub fn media_started(&mut self, microphone_missing: bool, now: Instant) {
        self.now = now;
        if self.media != Media::Starting {
            return;
        }
        self.media = Media::On;
        if microphone_missing && self.media_state.audio {
            self.media_state.audio = false;
            self.emit(RoomEvent::OwnMedia(self.media_state));
        }
        self.act(RoomAction::ApplyMedia(self.media_state));
        if let Some(pose) = self.own_pose {
            self.act(RoomAction::SharePose(pose));
        }
        if self.lobby.is_some() {
            // Shown already: tell those near that we are ready, and offer.
            self.tell_wanted_ready();
            self.reconsider_nearby();
            return;
        }
        let Some(place) = &self.place else { return };
        let (room, self_id) = (place.room.clone(), place.self_id.clone());
        let peers = std::mem::take(&mut self.arriving);
        for peer in &peers {
            self.members.insert(peer.peer_id.clone(), peer.name.clone());
            self.note_pose(peer);
        }
        let offer_to: Vec<PeerId> = peers.iter().map(|peer| peer.peer_id.clone()).collect();
        self.act(RoomAction::Joined {
            room,
            self_id,
            peers,
        });
        let late = std::mem::take(&mut self.joined_while_starting);
        if self.on_sfu() {
            // Nobody to offer to: the SFU brings everyone.
            self.publish();
            for peer in late {
                self.show_sfu_member(peer);
            }
            return;
        }
        for peer in offer_to {
            self.connect(peer, Role::Offerer);
        }
        // Those who came while our media started offer to us, as to everyone there
        // (one that came too early is made again when their attempt runs out).
        for peer in late {
            self.add_peer(peer, Role::Answerer);
        }
    }

    /// Our media could not be started: the call is over.
    pub fn media_failed(&mut self, error: CallError) {
        if self.media != Media::Starting {
            return;
        }
        self.emit(RoomEvent::Failed(error));
        if self.lobby.is_some() {
            // Still in the lobby, seen and seeing who is there; near people try again.
            self.media = Media::Off;
            return;
        }
        self.leave();
    }

    // --- peers ----------------------------------------------------------------------

    /// A connection wants `message` sent through signaling: now, or once the
    /// connection is back.
    pub fn send_signal(&mut self, message: ClientMessage) {
        if self.link == (LinkState::Open { welcomed: true }) {
            self.act(RoomAction::Send(message));
            return;
        }
        if self.media == Media::Off {
            return;
        }
        if self.queued.len() >= MAX_QUEUED_SIGNALS {
            self.queued.pop_front();
        }
        self.queued.push_back(message);
    }

    /// Connection `epoch` to `peer` could not be opened: the peer is dropped.
    pub fn connect_failed(&mut self, peer: &PeerId, epoch: u64, error: CallError) {
        if self.peers.get(peer).is_none_or(|slot| slot.epoch != epoch) {
            return;
        }
        tracing::warn!(%peer, %error, "cannot connect to a peer");
        self.emit(RoomEvent::Failed(error));
        self.close_media(peer);
    }

    /// Connection `epoch` to `peer` changed state: a failed one is replaced while the
    /// peer is in the room (its offerer offers again), dropped when signaling says the
    /// peer is away too; a closed one means the peer hung up.
    pub fn peer_state(
        &mut self,
        peer: &PeerId,
        epoch: u64,
        state: PeerConnectionState,
        now: Instant,
    ) {
        self.now = now;
        let Some(slot) = self.peers.get_mut(peer).filter(|slot| slot.epoch == epoch) else {
            return; // a replaced connection's last words
        };
        slot.state = state;
        slot.progress_at = now;
        match state {
            PeerConnectionState::Connected => {
                slot.failed_at = None;
                slot.ever_connected = true;
                self.meshed(peer);
            }
            // A closed connection is no goodbye (that is `peer_left`): the peer may have
            // retired it to start over, and its fresh offer may still be on its way.
            PeerConnectionState::Failed | PeerConnectionState::Closed => self.failed(peer),
            _ => {}
        }
    }

    /// The connection to `peer` failed: replaced while the peer is in the room (we
    /// offer a fresh one, whichever side we were: the peer may not have noticed), the
    /// peer dropped when signaling says it is away too.
    fn failed(&mut self, peer: &PeerId) {
        let signaling_up = self.link == LinkState::Open { welcomed: true };
        let now = self.now;
        if self.sfu_carries(peer) {
            // Our mesh connection's other end moved to the SFU first.
            if let Some(slot) = self.peers.remove(peer) {
                self.act(RoomAction::Retire {
                    peer: peer.clone(),
                    epoch: slot.epoch,
                });
            }
            return;
        }
        let Some(slot) = self.peers.get_mut(peer) else {
            return;
        };
        slot.failed_at.get_or_insert(now);
        if slot.away || !self.both_want(peer) {
            self.close_media(peer);
        } else if signaling_up {
            tracing::info!(%peer, "connection failed; offering a fresh one");
            self.connect(peer.clone(), Role::Offerer);
        }
        // Otherwise our resume will offer.
    }

    /// Fails connections that did not connect in time, drops peers that did not
    /// reconnect in time, and ends the call when signaling stayed lost for too long.
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
        let mut stuck: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, slot)| slot.connect_deadline().is_some_and(|at| now >= at))
            .map(|(peer_id, _)| peer_id.clone())
            .collect();
        stuck.sort();
        for peer_id in stuck {
            tracing::info!(peer = %peer_id, "the connection did not connect in time");
            self.failed(&peer_id);
        }
        let mut overdue: Vec<(PeerId, bool)> = self
            .peers
            .iter()
            .filter(|(_, slot)| {
                slot.failed_at
                    .is_some_and(|at| now.saturating_duration_since(at) >= PEER_RECONNECT_LIMIT)
            })
            .map(|(peer_id, slot)| (peer_id.clone(), slot.ever_connected))
            .collect();
        overdue.sort();
        for (peer_id, ever_connected) in overdue {
            tracing::info!(peer = %peer_id, "the peer did not reconnect in time");
            if !ever_connected {
                let error = CallError::NoRoute {
                    peer: self.name_of(&peer_id),
                    through_turn: self.has_turn,
                };
                self.emit(RoomEvent::Failed(error));
            }
            self.close_media(&peer_id);
        }
        let lost_too_long = self.reconnecting.as_ref().is_some_and(|reconnecting| {
            now.saturating_duration_since(reconnecting.since) >= RESUME_LIMIT
        });
        if lost_too_long {
            self.emit(RoomEvent::Failed(CallError::ConnectionLost(format!(
                "the signaling server stayed unreachable for {} s",
                RESUME_LIMIT.as_secs()
            ))));
            self.finish_call();
        }
        self.send_pose_when_due();
        let stay_alone = self
            .lobby
            .as_ref()
            .and_then(|lobby| lobby.alone_since)
            .is_some_and(|since| now.saturating_duration_since(since) >= ALONE_LIMIT);
        if stay_alone && self.media == Media::On {
            tracing::info!("nobody near; stopping our media");
            self.media = Media::Off;
            if let Some(lobby) = &mut self.lobby {
                lobby.alone_since = None;
            }
            self.act(RoomAction::StopMedia);
        }
    }

    /// A signal from a peer: its switches, or a payload for its connection.
    fn on_signal(&mut self, from: PeerId, data: &serde_json::Value) {
        // Deserializing from a reference: an SDP payload is not copied to be tried.
        match PeerControl::deserialize(data) {
            Ok(PeerControl::MediaState(state)) => {
                self.emit(RoomEvent::PeerMedia(from, state));
                return;
            }
            Ok(PeerControl::Nearby { ready, pose }) => {
                if let Some(pose) = pose {
                    self.take_pose(from.clone(), pose);
                }
                self.peer_ready(from, ready);
                return;
            }
            Ok(PeerControl::SfuCarries) => {
                self.sfu_carries_us(from);
                return;
            }
            Err(_) => {}
        }
        let payload = match SignalPayload::deserialize(data) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(peer = %from, %error, "ignoring a signal we do not understand");
                return;
            }
        };
        if let Err(error) = payload.validate() {
            tracing::warn!(peer = %from, %error, "ignoring an invalid signal");
            return;
        }
        if matches!(payload, SignalPayload::Offer { .. }) && !self.accept_offer(&from) {
            return;
        }
        let Some(slot) = self.peers.get_mut(&from) else {
            tracing::debug!(peer = %from, "signal from a peer we have no connection with");
            return;
        };
        match &payload {
            SignalPayload::Reoffer { .. } if !slot.described => {
                // A change to a connection that was never negotiated: nothing to change.
                tracing::debug!(peer = %from, "ignoring a reoffer before the first offer");
                return;
            }
            SignalPayload::Reoffer { .. } => {}
            SignalPayload::Offer { .. } | SignalPayload::Answer { .. } => slot.described = true,
            SignalPayload::Candidate { .. } if !slot.described => {
                if slot.early_candidates == MAX_EARLY_CANDIDATES {
                    tracing::warn!(peer = %from, "too many early ICE candidates; dropping one");
                    return;
                }
                slot.early_candidates += 1;
            }
            SignalPayload::Candidate { .. } => {}
        }
        slot.progress_at = self.now;
        let epoch = slot.epoch;
        self.act(RoomAction::Deliver {
            peer: from,
            epoch,
            payload,
        });
    }

    /// A lobby peer is ready for media with us, or no longer.
    fn peer_ready(&mut self, from: PeerId, ready: bool) {
        let Some(lobby) = &mut self.lobby else { return };
        if !self.members.contains_key(&from) {
            return;
        }
        if ready {
            lobby.ready_from.insert(from);
            self.connect_nearby();
        } else {
            lobby.ready_from.remove(&from);
            self.close_media(&from);
        }
    }

    /// Decides what a new offer from `from` means. To a connection that has not been
    /// negotiated and waits for it: the offer. To one already negotiated: the peer
    /// starts over (its connection failed, or it came back), so a fresh connection
    /// answers it. When both sides offered at once, the peer with the smaller id keeps
    /// its own offer (false: ignore theirs) and the other answers.
    fn accept_offer(&mut self, from: &PeerId) -> bool {
        if self.sfu_carries(from) {
            tracing::debug!(peer = %from, "a mesh offer from a peer the SFU carries");
            return false;
        }
        if let Some(lobby) = &mut self.lobby {
            // In the lobby an offer also says the peer is ready; we answer one only
            // while we want it too and our media runs.
            lobby.ready_from.insert(from.clone());
            if !lobby.wanted.contains(from) || self.media != Media::On {
                tracing::debug!(peer = %from, "an offer from a peer we do not want now");
                return false;
            }
            if !self.peers.contains_key(from) {
                self.connect(from.clone(), Role::Answerer);
                return true;
            }
        }
        let self_id = self.place.as_ref().map(|place| &place.self_id);
        let Some(slot) = self.peers.get(from) else {
            if self.on_sfu() {
                // The SFU brings it: no new mesh connection (nothing would retire it).
                tracing::debug!(peer = %from, "a mesh offer in a room on the SFU");
                return false;
            }
            // A peer we dropped (its connection failed, or we thought it hung up) that
            // is still in the room starts over: it is shown again and answered.
            if let Some(name) = self.members.get(from) {
                let info = PeerInfo::new(from.clone(), name.clone());
                tracing::info!(peer = %from, "a peer we had dropped starts over");
                self.add_peer(info, Role::Answerer);
            }
            return true;
        };
        let start_over = match slot.role {
            Role::Answerer => slot.described,
            Role::Offerer if slot.described => true,
            Role::Offerer => {
                if self_id.is_some_and(|own| own < from) {
                    return false;
                }
                true
            }
        };
        if start_over {
            tracing::info!(peer = %from, "the peer starts over; answering on a fresh connection");
            self.connect(from.clone(), Role::Answerer);
        }
        true
    }

    /// A peer to show and connect to: the newcomer offers, the others answer.
    fn add_peer(&mut self, info: PeerInfo, role: Role) {
        self.members.insert(info.peer_id.clone(), info.name.clone());
        self.note_pose(&info);
        let peer = info.peer_id.clone();
        self.act(RoomAction::PeerJoined(info));
        self.connect(peer, role);
    }

    /// Opens a fresh connection to `peer`, replacing the one it has (whose failure time
    /// and presence carry over), and tells it our switches.
    fn connect(&mut self, peer: PeerId, role: Role) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let previous = self.peers.remove(&peer);
        // A connection that replaces one that never connected goes through the TURN
        // relay only, on both sides (the offerer after the failure, the answerer when
        // the fresh offer comes). webrtc-rs 0.21 relays to one remote address per
        // allocation well, but ICE between two peers behind NATs that also offer their
        // host candidates fails (see docs/signaling.md, TURN credentials).
        let relay_only = previous
            .as_ref()
            .is_some_and(|slot| !slot.ever_connected && self.has_turn);
        if relay_only {
            tracing::info!(%peer, "no path so far; connecting through the TURN relay only");
        }
        let (away, failed_at, ever_connected) =
            previous.as_ref().map_or((false, None, false), |slot| {
                (slot.away, slot.failed_at, slot.ever_connected)
            });
        if let Some(previous) = previous {
            self.act(RoomAction::Retire {
                peer: peer.clone(),
                epoch: previous.epoch,
            });
        }
        self.peers.insert(
            peer.clone(),
            PeerSlot {
                epoch,
                role,
                state: PeerConnectionState::New,
                progress_at: self.now,
                away,
                failed_at,
                described: false,
                early_candidates: 0,
                ever_connected,
            },
        );
        self.act(RoomAction::Connect {
            peer: peer.clone(),
            epoch,
            role,
            relay_only,
        });
        self.tell_media_state(peer);
    }

    fn tell_media_state(&mut self, to: PeerId) {
        let data = PeerControl::MediaState(self.media_state).to_json();
        self.send_signal(ClientMessage::Signal { to, data });
    }

    /// The peer is gone from the call: its connection closes and its panel goes.
    fn remove_peer(&mut self, peer: &PeerId) {
        self.awaited.remove(peer);
        let meshed = self.peers.remove(peer).is_some();
        if meshed {
            self.act(RoomAction::Close(peer.clone()));
        }
        // After the mesh connection: the stream through the SFU has the last figures.
        if self.close_downstream(peer) || meshed {
            self.emit(RoomEvent::PeerLeft(peer.clone()));
        }
        // Going back to a mesh, it may have been the last one the SFU brought.
        self.leave_sfu_when_meshed();
    }

    /// The peer's name, or its id when we never learnt the name.
    fn name_of(&self, peer: &PeerId) -> String {
        self.members
            .get(peer)
            .map_or_else(|| peer.to_string(), ToString::to_string)
    }

    /// Ends the call: media stopped, our place forgotten, back to idle.
    fn finish_call(&mut self) {
        self.wind_down();
        self.emit(RoomEvent::Left);
    }

    /// Closes the signaling connection and the media, and forgets the room.
    fn wind_down(&mut self) {
        if self.link != LinkState::Down || self.reconnecting.is_some() {
            self.act(RoomAction::CloseLink);
        }
        if self.media != Media::Off {
            self.act(RoomAction::StopMedia);
        }
        self.link = LinkState::Down;
        self.media = Media::Off;
        self.place = None;
        self.reconnecting = None;
        self.arriving.clear();
        self.joined_while_starting.clear();
        // Where we stood belongs to the place we leave.
        self.own_pose = None;
        self.poses = Poses::default();
        self.peers.clear();
        self.awaited.clear();
        self.members.clear();
        self.queued.clear();
        self.lobby = None;
        self.sfu = None;
        // The driver's share ends with the media; the next call claims the wall again.
        self.share_granted = false;
    }
}

/// Whether a connection in `state` still carries media (or may again by itself).
fn has_media_path(state: PeerConnectionState) -> bool {
    matches!(
        state,
        PeerConnectionState::Connected | PeerConnectionState::Disconnected
    )
}

fn has_turn(servers: &[IceServer]) -> bool {
    servers.iter().any(IceServer::has_turn)
}

#[cfg(test)]
mod tests;
