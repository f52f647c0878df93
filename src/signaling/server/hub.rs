//! The hub: a signaling server's rooms and every decision about them (who gets in, who
//! is refused, who is told what, whose place is kept and for how long). Pure: no I/O,
//! no tasks, no clock (the time is an argument). It names connections by a handle `C`
//! and leaves what it decided to send as [`Delivery`]s, which the connections carry out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::signaling::protocol::{
    ChatScope, ChatText, DisplayName, EARSHOT_M, ErrorCode, Passcode, PeerId, PeerInfo, Pose,
    ResumeToken, RoomId, RoomSummary, ServerMessage, SpaceArea, SpacePerson,
};

/// Most rooms one `room_list` names.
const MAX_LISTED_ROOMS: usize = 100;
/// Most people one `space` message names.
const MAX_SPACE_LISTED: usize = 200;
/// Least time between two relayed poses of one peer: a client sends at most 5 a second,
/// and one that arrives sooner after the last relayed one is dropped.
pub const MIN_POSE_INTERVAL: Duration = Duration::from_millis(150);

/// What the hub decided a connection must get; `C` is the handle naming the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery<C> {
    /// Send `message` to the connection `to`.
    Message {
        /// The connection.
        to: C,
        /// What it gets.
        message: ServerMessage,
    },
    /// Close the connection `to`, saying `reason`.
    Close {
        /// The connection.
        to: C,
        /// Why, for its close frame.
        reason: &'static str,
    },
}

/// What became of a room that a peer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Others are still in the room; they were told.
    OthersRemain,
    /// The peer was the last one: the room is gone.
    RoomClosed,
}

/// What a `resume` asks for.
pub struct ResumeRequest {
    /// The room to go back to.
    pub room: RoomId,
    /// Who, under which name now.
    pub peer: PeerInfo,
    /// The secret that takes the place back.
    pub resume_token: ResumeToken,
    /// The room's lobby title, for recreating it when the server lost it.
    pub public_title: Option<DisplayName>,
    /// The room's passcode, for recreating it (and for entering it as a newcomer).
    pub passcode: Option<Passcode>,
}

/// One place in a room.
struct Member<C> {
    info: PeerInfo,
    /// The secret that takes this place back.
    resume_token: ResumeToken,
    /// The connection holding the place; `None` while its peer is away.
    attachment: Option<C>,
    /// When the peer went away.
    away_since: Option<Instant>,
    /// When its last pose was relayed.
    posed_at: Option<Instant>,
    /// Whether its peer asked to be told who enters and leaves the space.
    watches_space: bool,
    /// The room moved to another SFU instance while its peer was away: it hears
    /// `sfu_started` when it comes back.
    sfu_start_owed: bool,
}

impl<C> Member<C> {
    fn new(info: PeerInfo, resume_token: ResumeToken, connection: C) -> Self {
        Self {
            info,
            resume_token,
            attachment: Some(connection),
            away_since: None,
            posed_at: None,
            watches_space: false,
            sfu_start_owed: false,
        }
    }
}

/// Peers of one room, oldest first.
struct Room<C> {
    members: Vec<Member<C>>,
    /// The lobby title of a public room; private rooms have none.
    public_title: Option<DisplayName>,
    /// What joiners must give, when the creator locked the room.
    passcode: Option<Passcode>,
    /// Who shares a screen, earliest first.
    sharers: Vec<PeerId>,
    /// The room has moved to the SFU (it stays there until it closes).
    on_sfu: bool,
}

impl<C: Clone> Room<C> {
    /// A room nobody is in yet, open to all (the lobby).
    fn open() -> Self {
        Self {
            members: Vec::new(),
            public_title: None,
            passcode: None,
            sharers: Vec::new(),
            on_sfu: false,
        }
    }

    /// Sends `message` to the member `to`, if it is connected.
    fn tell(&self, to: &PeerId, message: &ServerMessage, out: &mut Vec<Delivery<C>>) {
        let member = self.members.iter().find(|m| &m.info.peer_id == to);
        if let Some(connection) = member.and_then(|m| m.attachment.as_ref()) {
            out.push(Delivery::Message {
                to: connection.clone(),
                message: message.clone(),
            });
        }
    }

    fn broadcast(&self, except: &PeerId, message: &ServerMessage, out: &mut Vec<Delivery<C>>) {
        self.tell_each(|m| &m.info.peer_id != except, message, out);
    }

    /// Sends `message` to each connected member that `picked` picks.
    fn tell_each(
        &self,
        picked: impl Fn(&Member<C>) -> bool,
        message: &ServerMessage,
        out: &mut Vec<Delivery<C>>,
    ) {
        for member in self.members.iter().filter(|m| picked(m)) {
            if let Some(connection) = &member.attachment {
                out.push(Delivery::Message {
                    to: connection.clone(),
                    message: message.clone(),
                });
            }
        }
    }

    fn others(&self, except: &PeerId) -> Vec<PeerInfo> {
        self.members
            .iter()
            .filter(|m| &m.info.peer_id != except)
            .map(|m| m.info.clone())
            .collect()
    }

    fn admits(&self, passcode: Option<&Passcode>) -> bool {
        self.passcode
            .as_ref()
            .is_none_or(|locked| locked.admits(passcode))
    }

    /// What this room (`id`) is in the space, as others are told.
    fn area(&self, id: &RoomId) -> SpaceArea {
        if id.is_lobby() {
            return SpaceArea::Lobby;
        }
        match &self.public_title {
            Some(title) => SpaceArea::Room {
                room: id.clone(),
                title: title.clone(),
            },
            None => SpaceArea::Private,
        }
    }
}

/// The rooms of a server, with the places in them held by connections `C`.
pub struct Hub<C> {
    rooms: HashMap<RoomId, Room<C>>,
    /// Peers one room holds.
    room_capacity: usize,
    /// Peers the lobby holds.
    lobby_capacity: usize,
    /// Rooms the hub holds at once.
    max_rooms: usize,
    /// Screens one room shows at once.
    room_sharers: usize,
    /// A room (not the lobby) with this many people moves to the SFU; `None`: no SFU.
    mesh_limit: Option<usize>,
    /// What was decided and not yet taken by [`Hub::take_deliveries`].
    deliveries: Vec<Delivery<C>>,
}

impl<C: Clone + PartialEq> Hub<C> {
    /// No rooms yet; rooms of at most `room_capacity` peers, at most `max_rooms` of them,
    /// and a lobby of as many as rooms until [`Hub::with_lobby_capacity`] says otherwise.
    pub fn new(room_capacity: usize, max_rooms: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            room_capacity,
            lobby_capacity: room_capacity,
            max_rooms,
            room_sharers: 1,
            mesh_limit: None,
            deliveries: Vec::new(),
        }
    }

    /// Rooms (not the lobby) that reach `limit` people move to the SFU.
    pub fn set_mesh_limit(&mut self, limit: usize) {
        self.mesh_limit = Some(limit);
    }

    /// Whether `room_id` runs on the SFU.
    pub fn is_on_sfu(&self, room_id: &RoomId) -> bool {
        self.rooms.get(room_id).is_some_and(|room| room.on_sfu)
    }

    /// Tells `peer` of `room_id` `message`, if it is there and connected. One that is
    /// away misses it, except `sfu_started` (its room moved to another SFU instance and
    /// its streams went with the old one), which waits for its return.
    pub fn tell_member(&mut self, room_id: &RoomId, peer: &PeerId, message: &ServerMessage) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if let Some(member) = room.members.iter_mut().find(|m| &m.info.peer_id == peer)
            && member.attachment.is_none()
            && matches!(message, ServerMessage::SfuStarted)
        {
            member.sfu_start_owed = true;
            return;
        }
        room.tell(peer, message, &mut self.deliveries);
    }

    /// Whether `peer`, back in `room_id`, is owed an `sfu_started` (see `tell_member`)
    /// that still holds: the room is on the SFU. It is told once.
    pub fn take_owed_sfu_start(&mut self, room_id: &RoomId, peer: &PeerId) -> bool {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return false;
        };
        let on_sfu = room.on_sfu;
        let owed = room
            .members
            .iter_mut()
            .find(|m| &m.info.peer_id == peer)
            .is_some_and(|member| std::mem::take(&mut member.sfu_start_owed));
        owed && on_sfu
    }

    /// A room shows at most `sharers` shared screens at once (1 until this says).
    pub fn with_room_sharers(mut self, sharers: usize) -> Self {
        self.room_sharers = sharers;
        self
    }

    /// The lobby holds at most `capacity` peers.
    pub fn with_lobby_capacity(mut self, capacity: usize) -> Self {
        self.lobby_capacity = capacity;
        self
    }

    /// Peers the room `room_id` holds.
    fn capacity_of(&self, room_id: &RoomId) -> usize {
        if room_id.is_lobby() {
            self.lobby_capacity
        } else {
            self.room_capacity
        }
    }

    /// What the hub decided to send or close since the last call, in order.
    pub fn take_deliveries(&mut self) -> Vec<Delivery<C>> {
        std::mem::take(&mut self.deliveries)
    }

    /// Rooms now.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Places in rooms now, away ones included.
    pub fn place_count(&self) -> usize {
        self.rooms.values().map(|room| room.members.len()).sum()
    }

    /// Places kept for peers whose connection dropped.
    pub fn away_count(&self) -> usize {
        self.rooms
            .values()
            .flat_map(|room| &room.members)
            .filter(|m| m.attachment.is_none())
            .count()
    }

    /// Makes a room with `connection` as its first peer; returns the room, the peer's id
    /// and its resume token.
    pub fn create(
        &mut self,
        name: DisplayName,
        public_title: Option<DisplayName>,
        passcode: Option<Passcode>,
        connection: C,
    ) -> Result<(RoomId, PeerId, ResumeToken), ErrorCode> {
        if self.rooms.len() >= self.max_rooms {
            return Err(ErrorCode::ServerFull);
        }
        let room_id = loop {
            let candidate = RoomId::random();
            if !self.rooms.contains_key(&candidate) {
                break candidate;
            }
        };
        let peer_id = self.fresh_peer_id();
        let token = ResumeToken::random();
        let info = PeerInfo::new(peer_id.clone(), name);
        let room = Room {
            members: vec![Member::new(info, token.clone(), connection)],
            public_title,
            passcode,
            sharers: Vec::new(),
            on_sfu: self.mesh_limit == Some(1),
        };
        self.rooms.insert(room_id.clone(), room);
        self.announce_entered(&room_id, &peer_id);
        Ok((room_id, peer_id, token))
    }

    /// Adds `connection` to a room as a new peer, telling the others; returns the
    /// peer's id, the others in the room and the peer's resume token.
    pub fn join(
        &mut self,
        room_id: &RoomId,
        name: DisplayName,
        passcode: Option<&Passcode>,
        connection: C,
    ) -> Result<(PeerId, Vec<PeerInfo>, ResumeToken), ErrorCode> {
        let capacity = self.capacity_of(room_id);
        if room_id.is_lobby() {
            // The lobby is there for anyone who enters it.
            self.rooms.entry(room_id.clone()).or_insert_with(Room::open);
        }
        let peer_id = self.fresh_peer_id();
        let room = self.rooms.get_mut(room_id).ok_or(ErrorCode::RoomNotFound)?;
        if !room.admits(passcode) {
            return Err(ErrorCode::WrongPasscode);
        }
        if room.members.len() >= capacity {
            return Err(ErrorCode::RoomFull);
        }
        let info = PeerInfo::new(peer_id.clone(), name);
        let present = room.others(&peer_id);
        let token = ResumeToken::random();
        room.members
            .push(Member::new(info.clone(), token.clone(), connection));
        // Those there hear of the move first: a newcomer on the SFU never offers, so
        // they must not wait for its offer.
        self.move_to_sfu_when_grown(room_id, &peer_id);
        if let Some(room) = self.rooms.get_mut(room_id) {
            room.broadcast(
                &peer_id,
                &ServerMessage::PeerJoined { peer: info },
                &mut self.deliveries,
            );
        }
        self.announce_entered(room_id, &peer_id);
        Ok((peer_id, present, token))
    }

    /// Moves `room_id` to the SFU once it holds the mesh limit's people, telling all but
    /// `newcomer` (who hears it in its welcome). The lobby stays peer to peer.
    fn move_to_sfu_when_grown(&mut self, room_id: &RoomId, newcomer: &PeerId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let grown = self
            .mesh_limit
            .is_some_and(|limit| room.members.len() >= limit);
        if grown && !room.on_sfu && !room_id.is_lobby() {
            room.on_sfu = true;
            room.broadcast(newcomer, &ServerMessage::SfuStarted, &mut self.deliveries);
        }
    }

    /// Moves `room_id` back to a mesh once it holds two fewer than the mesh limit (one
    /// fewer would flap with each person at the door), telling everyone there.
    fn move_to_mesh_when_shrunk(&mut self, room_id: &RoomId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let shrunk = self
            .mesh_limit
            .is_some_and(|limit| room.members.len() + 2 <= limit);
        if shrunk && room.on_sfu {
            room.on_sfu = false;
            // One away now hears it in its resume's welcome (`"sfu": false`).
            room.tell_each(|_| true, &ServerMessage::SfuEnded, &mut self.deliveries);
        }
    }

    /// A peer id nobody in the space has (ids name people space-wide in `space`).
    fn fresh_peer_id(&self) -> PeerId {
        loop {
            let candidate = PeerId::random();
            let taken = self
                .rooms
                .values()
                .flat_map(|room| &room.members)
                .any(|m| m.info.peer_id == candidate);
            if !taken {
                return candidate;
            }
        }
    }

    /// Sends `message` to every peer in the space that watches it, but `except`.
    fn tell_space(&mut self, except: &PeerId, message: &ServerMessage) {
        let watchers = self
            .rooms
            .values()
            .flat_map(|room| &room.members)
            .filter(|m| m.watches_space && &m.info.peer_id != except);
        for member in watchers {
            if let Some(connection) = &member.attachment {
                self.deliveries.push(Delivery::Message {
                    to: connection.clone(),
                    message: message.clone(),
                });
            }
        }
    }

    /// Tells the space's watchers that `peer_id` entered `room_id`.
    fn announce_entered(&mut self, room_id: &RoomId, peer_id: &PeerId) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let Some(member) = room.members.iter().find(|m| &m.info.peer_id == peer_id) else {
            return;
        };
        let person = SpacePerson {
            peer_id: peer_id.clone(),
            name: member.info.name.clone(),
            area: room.area(room_id),
        };
        self.tell_space(peer_id, &ServerMessage::PersonEntered { person });
    }

    /// `peer` of `room_id` watches the space from now on: it gets everyone else in the
    /// space now, the lobby first, at most [`MAX_SPACE_LISTED`] of them.
    pub fn watch_space(&mut self, room_id: &RoomId, peer: &PeerId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(member) = room.members.iter_mut().find(|m| &m.info.peer_id == peer) else {
            return;
        };
        member.watches_space = true;
        let Some(connection) = member.attachment.clone() else {
            return;
        };
        let mut people: Vec<SpacePerson> = self
            .rooms
            .iter()
            .flat_map(|(id, room)| {
                let area = room.area(id);
                room.members
                    .iter()
                    .filter(|m| &m.info.peer_id != peer)
                    .map(move |m| SpacePerson {
                        peer_id: m.info.peer_id.clone(),
                        name: m.info.name.clone(),
                        area: area.clone(),
                    })
            })
            .collect();
        let total = people.len();
        people.sort_by_key(|person| person.area != SpaceArea::Lobby);
        people.truncate(MAX_SPACE_LISTED);
        self.deliveries.push(Delivery::Message {
            to: connection,
            message: ServerMessage::Space { people, total },
        });
    }

    /// Gives a peer its place back (see `resume` in docs/signaling.md); returns the
    /// others in the room. The connection that held the place before, if any, is
    /// closed.
    pub fn resume(
        &mut self,
        request: ResumeRequest,
        connection: C,
    ) -> Result<Vec<PeerInfo>, ErrorCode> {
        let peer_id = request.peer.peer_id.clone();
        let capacity = self.capacity_of(&request.room);
        let Some(room) = self.rooms.get_mut(&request.room) else {
            // The server lost the room (it restarted): make it again as it was.
            if self.rooms.len() >= self.max_rooms {
                return Err(ErrorCode::ServerFull);
            }
            // Nobody shares until they claim the wall again.
            let info = PeerInfo {
                sharing: false,
                ..request.peer
            };
            let room = Room {
                members: vec![Member::new(info, request.resume_token, connection)],
                public_title: request.public_title,
                passcode: request.passcode,
                sharers: Vec::new(),
                on_sfu: self.mesh_limit == Some(1),
            };
            self.rooms.insert(request.room.clone(), room);
            self.announce_entered(&request.room, &peer_id);
            return Ok(Vec::new());
        };
        let mut newcomer = false;
        match room.members.iter_mut().find(|m| m.info.peer_id == peer_id) {
            Some(member) => {
                if !member.resume_token.matches(&request.resume_token) {
                    return Err(ErrorCode::ResumeRefused);
                }
                if let Some(previous) = member.attachment.replace(connection) {
                    self.deliveries.push(Delivery::Close {
                        to: previous,
                        reason: "resumed on another connection",
                    });
                }
                member.away_since = None;
                member.info.name = request.peer.name.clone();
            }
            None => {
                if !room.admits(request.passcode.as_ref()) {
                    return Err(ErrorCode::WrongPasscode);
                }
                if room.members.len() >= capacity {
                    return Err(ErrorCode::RoomFull);
                }
                room.members.push(Member::new(
                    request.peer.clone(),
                    request.resume_token,
                    connection,
                ));
                newcomer = true;
            }
        }
        room.broadcast(
            &peer_id,
            &ServerMessage::PeerBack { peer: request.peer },
            &mut self.deliveries,
        );
        let others = room.others(&peer_id);
        if newcomer {
            self.move_to_sfu_when_grown(&request.room, &peer_id);
            self.announce_entered(&request.room, &peer_id);
        }
        Ok(others)
    }

    /// Passes `data` from one peer of a room to another.
    pub fn relay(
        &mut self,
        room_id: &RoomId,
        from: &PeerId,
        to: &PeerId,
        data: serde_json::Value,
    ) -> Result<(), ErrorCode> {
        let target = self
            .rooms
            .get(room_id)
            .and_then(|room| room.members.iter().find(|m| &m.info.peer_id == to))
            .filter(|_| from != to)
            .ok_or(ErrorCode::PeerNotFound)?;
        // A peer that is away misses what is sent meanwhile; it renegotiates on return.
        let Some(connection) = &target.attachment else {
            return Ok(());
        };
        self.deliveries.push(Delivery::Message {
            to: connection.clone(),
            message: ServerMessage::Signal {
                from: from.clone(),
                data,
            },
        });
        Ok(())
    }

    /// Takes `pose` as where `peer` stands now and tells the others in its room, unless
    /// its last pose was relayed less than [`MIN_POSE_INTERVAL`] ago (then it is
    /// dropped: false).
    pub fn pose(&mut self, room_id: &RoomId, peer: &PeerId, pose: Pose, now: Instant) -> bool {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return false;
        };
        let Some(member) = room.members.iter_mut().find(|m| &m.info.peer_id == peer) else {
            return false;
        };
        let too_soon = member
            .posed_at
            .is_some_and(|at| now.saturating_duration_since(at) < MIN_POSE_INTERVAL);
        if too_soon {
            return false;
        }
        member.posed_at = Some(now);
        member.info.pose = Some(pose);
        let message = ServerMessage::PeerPose {
            peer_id: peer.clone(),
            pose,
        };
        room.broadcast(peer, &message, &mut self.deliveries);
        true
    }

    /// Takes `peer`'s hand as `raised` (newcomers see it in its info) and tells the
    /// others in its room, unless it already was.
    pub fn hand(&mut self, room_id: &RoomId, peer: &PeerId, raised: bool) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(member) = room.members.iter_mut().find(|m| &m.info.peer_id == peer) else {
            return;
        };
        if member.info.hand_raised == raised {
            return;
        }
        member.info.hand_raised = raised;
        let message = ServerMessage::PeerHand {
            peer_id: peer.clone(),
            raised,
        };
        room.broadcast(peer, &message, &mut self.deliveries);
    }

    /// `peer` of `room_id` claims the room's wall for its shared screen (`sharing`) or
    /// gives it up (`share`): everyone in the room hears who shares
    /// now (`sharers`). A claim while the room shows as many screens as it allows is
    /// refused with the sharers, unless it asks to `take_over`: then the earliest gives
    /// way. A claim the peer holds already is confirmed to it alone.
    pub fn share(
        &mut self,
        room_id: &RoomId,
        peer: &PeerId,
        sharing: bool,
        take_over: bool,
    ) -> Result<(), Vec<PeerId>> {
        let limit = self.room_sharers;
        let Some(room) = self.rooms.get_mut(room_id) else {
            return Ok(());
        };
        if !room.members.iter().any(|m| &m.info.peer_id == peer) {
            return Ok(());
        }
        if room.sharers.contains(peer) == sharing {
            if sharing {
                let sharers = ServerMessage::Sharers {
                    peers: room.sharers.clone(),
                };
                room.tell(peer, &sharers, &mut self.deliveries);
            }
            return Ok(());
        }
        if sharing {
            if room.sharers.len() >= limit {
                if !take_over || limit == 0 {
                    return Err(room.sharers.clone());
                }
                room.sharers.remove(0);
            }
            room.sharers.push(peer.clone());
        } else {
            room.sharers.retain(|sharer| sharer != peer);
        }
        for member in &mut room.members {
            member.info.sharing = room.sharers.contains(&member.info.peer_id);
        }
        let sharers = ServerMessage::Sharers {
            peers: room.sharers.clone(),
        };
        for member in &room.members {
            room.tell(&member.info.peer_id, &sharers, &mut self.deliveries);
        }
        Ok(())
    }

    /// Delivers a chat message from `from` in `room_id` to its `scope`: its room, those
    /// within [`EARSHOT_M`] of it (in a room without poses: the room), or everyone
    /// in every room. Nobody gets their own message back.
    pub fn chat(&mut self, room_id: &RoomId, from: &PeerId, scope: ChatScope, text: ChatText) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let Some(sender) = room.members.iter().find(|m| &m.info.peer_id == from) else {
            return;
        };
        let message = ServerMessage::Chat {
            from: from.clone(),
            name: sender.info.name.clone(),
            scope,
            text,
        };
        let origin = sender.info.pose;
        let within_earshot = |member: &Member<C>| match (origin, member.info.pose) {
            (Some(origin), Some(pose)) => origin.distance(&pose) <= EARSHOT_M,
            // Where nobody says where they stand, the room is near.
            (None, None) => true,
            _ => false,
        };
        let recipients: Vec<&Member<C>> = match scope {
            ChatScope::Room => room.members.iter().collect(),
            ChatScope::Near => room.members.iter().filter(|m| within_earshot(m)).collect(),
            ChatScope::Space => self.rooms.values().flat_map(|r| &r.members).collect(),
        };
        for member in recipients {
            let sender_itself = std::ptr::eq(member, sender);
            if let (false, Some(connection)) = (sender_itself, &member.attachment) {
                self.deliveries.push(Delivery::Message {
                    to: connection.clone(),
                    message: message.clone(),
                });
            }
        }
    }

    /// The public rooms, fullest first (then by title), at most [`MAX_LISTED_ROOMS`].
    pub fn public_rooms(&self) -> Vec<RoomSummary> {
        let mut rooms: Vec<RoomSummary> = self
            .rooms
            .iter()
            .filter_map(|(room, state)| {
                Some(RoomSummary {
                    room: room.clone(),
                    title: state.public_title.clone()?,
                    participants: state.members.len(),
                    capacity: self.room_capacity,
                })
            })
            .collect();
        rooms.sort_by(|a, b| {
            b.participants
                .cmp(&a.participants)
                .then(a.title.as_str().cmp(b.title.as_str()))
        });
        rooms.truncate(MAX_LISTED_ROOMS);
        rooms
    }

    /// The connection `connection` holding `peer_id`'s place dropped at `now`: the
    /// place is kept, the others are told the peer is away. False if that connection
    /// no longer held the place (its peer resumed elsewhere).
    pub fn drop_out(
        &mut self,
        room_id: &RoomId,
        peer_id: &PeerId,
        connection: &C,
        now: Instant,
    ) -> bool {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return false;
        };
        let Some(member) = room.members.iter_mut().find(|m| &m.info.peer_id == peer_id) else {
            return false;
        };
        if member
            .attachment
            .as_ref()
            .is_none_or(|held| held != connection)
        {
            return false;
        }
        member.attachment = None;
        member.away_since = Some(now);
        room.broadcast(
            peer_id,
            &ServerMessage::PeerAway {
                peer_id: peer_id.clone(),
            },
            &mut self.deliveries,
        );
        true
    }

    /// Ends a place kept for a peer that, at `now`, has not come back within `grace`;
    /// `None` if it came back (or left).
    pub fn expire(
        &mut self,
        room_id: &RoomId,
        peer_id: &PeerId,
        grace: Duration,
        now: Instant,
    ) -> Option<Departure> {
        let overdue = self.rooms.get(room_id).is_some_and(|room| {
            room.members.iter().any(|m| {
                &m.info.peer_id == peer_id
                    && m.away_since.is_some_and(|t| now.duration_since(t) >= grace)
            })
        });
        if overdue {
            self.leave(room_id, peer_id)
        } else {
            None
        }
    }

    /// Takes `peer_id` out of a room, telling the others; the last one out closes the
    /// room. `None` if there is no such room.
    pub fn leave(&mut self, room_id: &RoomId, peer_id: &PeerId) -> Option<Departure> {
        let room = self.rooms.get_mut(room_id)?;
        let before = room.members.len();
        room.members.retain(|m| &m.info.peer_id != peer_id);
        // The others see its screen go with it (`peer_left`).
        room.sharers.retain(|sharer| sharer != peer_id);
        if room.members.len() < before {
            let left = ServerMessage::PersonLeft {
                peer_id: peer_id.clone(),
            };
            self.tell_space(peer_id, &left);
        }
        let room = self.rooms.get_mut(room_id)?;
        if room.members.is_empty() {
            self.rooms.remove(room_id);
            Some(Departure::RoomClosed)
        } else {
            room.broadcast(
                peer_id,
                &ServerMessage::PeerLeft {
                    peer_id: peer_id.clone(),
                },
                &mut self.deliveries,
            );
            self.move_to_mesh_when_shrunk(room_id);
            Some(Departure::OthersRemain)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections are named by a number in these tests.
    type TestHub = Hub<u32>;

    fn name(raw: &str) -> DisplayName {
        DisplayName::parse(raw).unwrap()
    }

    fn passcode(raw: &str) -> Passcode {
        Passcode::parse(raw).unwrap()
    }

    /// The messages decided since the last call, by connection (closes left out).
    fn messages(hub: &mut TestHub) -> Vec<(u32, ServerMessage)> {
        hub.take_deliveries()
            .into_iter()
            .filter_map(|delivery| match delivery {
                Delivery::Message { to, message } => Some((to, message)),
                Delivery::Close { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_room_shows_one_screen_and_a_take_over_moves_the_wall() {
        let mut hub = TestHub::new(8, 10);
        let (room, alice, _) = hub.create(name("Alice"), None, None, 1).unwrap();
        let (bob, _, _) = hub.join(&room, name("Bob"), None, 2).unwrap();
        messages(&mut hub);
        let sharers = |peer: &PeerId| ServerMessage::Sharers {
            peers: vec![peer.clone()],
        };
        assert_eq!(hub.share(&room, &alice, true, false), Ok(()));
        assert_eq!(
            messages(&mut hub),
            vec![(1, sharers(&alice)), (2, sharers(&alice))],
            "everyone hears who shares, the sharer too"
        );
        assert_eq!(
            hub.share(&room, &bob, true, false),
            Err(vec![alice.clone()]),
            "a second sharer is refused"
        );
        assert!(messages(&mut hub).is_empty());
        let (_, present, _) = hub.join(&room, name("Carol"), None, 3).unwrap();
        assert!(
            present.iter().any(|p| p.peer_id == alice && p.sharing),
            "newcomers see who shares"
        );
        messages(&mut hub);
        assert_eq!(hub.share(&room, &bob, true, true), Ok(()));
        assert_eq!(
            messages(&mut hub),
            vec![(1, sharers(&bob)), (2, sharers(&bob)), (3, sharers(&bob))],
            "a take-over moves the wall"
        );
        assert_eq!(hub.share(&room, &bob, true, false), Ok(()));
        assert_eq!(
            messages(&mut hub),
            vec![(2, sharers(&bob))],
            "a claim held already is confirmed to its holder alone"
        );
        hub.leave(&room, &bob);
        messages(&mut hub);
        assert_eq!(
            hub.share(&room, &alice, true, false),
            Ok(()),
            "leaving frees the wall"
        );
    }

    #[test]
    fn a_room_that_reaches_the_mesh_limit_moves_to_the_sfu_and_the_lobby_never_does() {
        let mut hub = TestHub::new(8, 10);
        hub.set_mesh_limit(3);
        let (room, _, _) = hub.create(name("Alice"), None, None, 1).unwrap();
        hub.join(&room, name("Bob"), None, 2).unwrap();
        assert!(!hub.is_on_sfu(&room));
        messages(&mut hub);
        hub.join(&room, name("Carol"), None, 3).unwrap();
        assert!(hub.is_on_sfu(&room));
        let told = messages(&mut hub);
        let moved: Vec<u32> = told
            .iter()
            .filter(|(_, message)| *message == ServerMessage::SfuStarted)
            .map(|(to, _)| *to)
            .collect();
        assert_eq!(
            moved,
            vec![1, 2],
            "those there hear it; the newcomer's welcome says it"
        );
        for member in [1, 2] {
            let kinds: Vec<&ServerMessage> = told
                .iter()
                .filter(|(to, _)| *to == member)
                .map(|(_, message)| message)
                .collect();
            assert!(
                matches!(
                    kinds.as_slice(),
                    [ServerMessage::SfuStarted, ServerMessage::PeerJoined { .. }]
                ),
                "the move comes before the newcomer (who never offers): {kinds:?}"
            );
        }
        hub.join(&room, name("Dan"), None, 4).unwrap();
        assert!(
            !messages(&mut hub).contains(&(1, ServerMessage::SfuStarted)),
            "said once"
        );
        for connection in 5..9 {
            hub.join(&RoomId::lobby(), name("Walker"), None, connection)
                .unwrap();
        }
        assert!(!hub.is_on_sfu(&RoomId::lobby()));
    }

    #[test]
    fn a_room_on_the_sfu_goes_back_to_a_mesh_at_two_below_the_limit() {
        let mut hub = TestHub::new(8, 10);
        hub.set_mesh_limit(4);
        let (room, alice, _) = hub.create(name("Alice"), None, None, 1).unwrap();
        let mut joined = Vec::new();
        for (connection, who) in [(2, "Bob"), (3, "Carol"), (4, "Dan")] {
            joined.push(hub.join(&room, name(who), None, connection).unwrap().0);
        }
        assert!(hub.is_on_sfu(&room));
        messages(&mut hub);
        hub.leave(&room, &joined[2]);
        assert!(hub.is_on_sfu(&room), "one below the limit stays");
        assert!(!messages(&mut hub).contains(&(1, ServerMessage::SfuEnded)));
        hub.leave(&room, &joined[1]);
        assert!(!hub.is_on_sfu(&room));
        let ended: Vec<u32> = messages(&mut hub)
            .into_iter()
            .filter(|(_, message)| *message == ServerMessage::SfuEnded)
            .map(|(to, _)| to)
            .collect();
        assert_eq!(ended, vec![1, 2], "everyone left hears it");
        hub.leave(&room, &alice);
        assert!(
            !messages(&mut hub).contains(&(2, ServerMessage::SfuEnded)),
            "said once"
        );
    }

    #[test]
    fn joining_tells_the_others_and_lists_them() {
        let mut hub = TestHub::new(8, 10);
        let (room, alice, _) = hub.create(name("Alice"), None, None, 1).unwrap();
        assert!(hub.take_deliveries().is_empty());
        let (bob, present, _) = hub.join(&room, name("Bob"), None, 2).unwrap();
        assert_ne!(alice, bob);
        assert_eq!(present.len(), 1);
        assert_eq!(present[0].peer_id, alice);
        let told = messages(&mut hub);
        assert_eq!(told.len(), 1);
        assert!(matches!(&told[0], (1, ServerMessage::PeerJoined { peer }) if peer.peer_id == bob));
        assert_eq!(
            hub.join(&RoomId::random(), name("Carol"), None, 3),
            Err(ErrorCode::RoomNotFound)
        );
        assert_eq!((hub.room_count(), hub.place_count()), (1, 2));
    }

    #[test]
    fn a_full_room_and_a_full_server_refuse() {
        let mut hub = TestHub::new(2, 1);
        let (room, _, _) = hub.create(name("A"), None, None, 1).unwrap();
        hub.join(&room, name("B"), None, 2).unwrap();
        assert_eq!(
            hub.join(&room, name("C"), None, 3).map(|_| ()),
            Err(ErrorCode::RoomFull)
        );
        assert_eq!(
            hub.create(name("D"), None, None, 4).map(|_| ()),
            Err(ErrorCode::ServerFull)
        );
        assert_eq!(hub.place_count(), 2);
    }

    #[test]
    fn a_locked_room_takes_only_its_passcode() {
        let mut hub = TestHub::new(8, 10);
        let (room, _, _) = hub
            .create(name("A"), None, Some(passcode("open sesame")), 1)
            .unwrap();
        assert_eq!(
            hub.join(&room, name("B"), None, 2).map(|_| ()),
            Err(ErrorCode::WrongPasscode)
        );
        assert_eq!(
            hub.join(&room, name("B"), Some(&passcode("sesame")), 2)
                .map(|_| ()),
            Err(ErrorCode::WrongPasscode)
        );
        assert!(
            hub.join(&room, name("B"), Some(&passcode("open sesame")), 2)
                .is_ok()
        );
    }

    #[test]
    fn leaving_tells_the_others_and_the_last_one_out_closes_the_room() {
        let mut hub = TestHub::new(8, 10);
        let (room, alice, _) = hub.create(name("Alice"), None, None, 1).unwrap();
        let (bob, _, _) = hub.join(&room, name("Bob"), None, 2).unwrap();
        hub.take_deliveries();
        assert_eq!(hub.leave(&room, &bob), Some(Departure::OthersRemain));
        let told = messages(&mut hub);
        assert!(matches!(&told[..], [(1, ServerMessage::PeerLeft { peer_id })] if *peer_id == bob));
        assert_eq!(hub.leave(&room, &alice), Some(Departure::RoomClosed));
        assert!(hub.take_deliveries().is_empty());
        assert_eq!(hub.room_count(), 0);
        assert_eq!(hub.leave(&room, &alice), None);
    }

    #[test]
    fn a_dropped_peer_is_away_until_it_resumes_or_its_grace_ends() {
        let mut hub = TestHub::new(8, 10);
        let start = Instant::now();
        let grace = Duration::from_secs(30);
        let (room, alice, _) = hub.create(name("Alice"), None, None, 1).unwrap();
        let (bob, _, bob_token) = hub.join(&room, name("Bob"), None, 2).unwrap();
        hub.take_deliveries();

        // Only the connection holding the place can drop out of it.
        assert!(!hub.drop_out(&room, &bob, &7, start));
        assert!(hub.drop_out(&room, &bob, &2, start));
        let told = messages(&mut hub);
        assert!(matches!(&told[..], [(1, ServerMessage::PeerAway { peer_id })] if *peer_id == bob));
        assert_eq!(hub.away_count(), 1);
        // Nothing reaches an away peer, and nothing fails either.
        assert_eq!(hub.relay(&room, &alice, &bob, serde_json::json!(1)), Ok(()));
        assert!(hub.take_deliveries().is_empty());
        // Within the grace the place is kept.
        assert_eq!(hub.expire(&room, &bob, grace, start + grace / 2), None);
        assert_eq!(hub.place_count(), 2);

        // Back, under a new name, on connection 3.
        let request = ResumeRequest {
            room: room.clone(),
            peer: PeerInfo::new(bob.clone(), name("Robert")),
            resume_token: bob_token,
            public_title: None,
            passcode: None,
        };
        let others = hub.resume(request, 3).unwrap();
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].peer_id, alice);
        let told = messages(&mut hub);
        assert!(matches!(&told[..], [(1, ServerMessage::PeerBack { peer })]
            if peer.peer_id == bob && peer.name.as_str() == "Robert"));
        assert_eq!(hub.away_count(), 0);
        // A peer that came back does not expire.
        assert_eq!(hub.expire(&room, &bob, grace, start + grace * 2), None);

        // Away again, and past the grace this time.
        assert!(hub.drop_out(&room, &bob, &3, start + grace));
        hub.take_deliveries();
        assert_eq!(
            hub.expire(&room, &bob, grace, start + grace * 2),
            Some(Departure::OthersRemain)
        );
        let told = messages(&mut hub);
        assert!(matches!(&told[..], [(1, ServerMessage::PeerLeft { peer_id })] if *peer_id == bob));
        assert_eq!(hub.place_count(), 1);
    }

    #[test]
    fn a_peer_away_as_its_room_moves_on_the_sfu_hears_it_when_back() {
        let mut hub = TestHub::new(8, 10);
        hub.set_mesh_limit(4);
        let start = Instant::now();
        let (room, alice, _) = hub.create(name("Alice"), None, None, 1).unwrap();
        let (bob, _, bob_token) = hub.join(&room, name("Bob"), None, 2).unwrap();
        let (carol, _, _) = hub.join(&room, name("Carol"), None, 3).unwrap();
        let (dan, _, _) = hub.join(&room, name("Dan"), None, 4).unwrap();
        assert!(hub.is_on_sfu(&room));
        assert!(hub.drop_out(&room, &bob, &2, start));
        hub.take_deliveries();
        let resume = |connection| {
            let request = ResumeRequest {
                room: room.clone(),
                peer: PeerInfo::new(bob.clone(), name("Bob")),
                resume_token: bob_token.clone(),
                public_title: None,
                passcode: None,
            };
            (request, connection)
        };

        // The SFU instance holding the room went: Alice hears it now, Bob later.
        hub.tell_member(&room, &alice, &ServerMessage::SfuStarted);
        hub.tell_member(&room, &bob, &ServerMessage::SfuStarted);
        assert_eq!(messages(&mut hub), [(1, ServerMessage::SfuStarted)]);
        // Other news is missed while away, as before.
        hub.tell_member(&room, &bob, &ServerMessage::SfuEnded);
        assert!(hub.take_deliveries().is_empty());
        assert!(!hub.take_owed_sfu_start(&room, &alice));
        let (request, connection) = resume(5);
        hub.resume(request, connection).unwrap();
        assert!(hub.take_owed_sfu_start(&room, &bob));
        assert!(!hub.take_owed_sfu_start(&room, &bob), "told once");
        // Connected, it hears the next move at once.
        hub.take_deliveries();
        hub.tell_member(&room, &bob, &ServerMessage::SfuStarted);
        assert_eq!(messages(&mut hub), [(5, ServerMessage::SfuStarted)]);
        assert!(!hub.take_owed_sfu_start(&room, &bob));

        // Away during a move again, but the room is back to a mesh when it returns: its
        // welcome says so, and there is nothing to publish.
        assert!(hub.drop_out(&room, &bob, &5, start));
        hub.tell_member(&room, &bob, &ServerMessage::SfuStarted);
        hub.leave(&room, &carol);
        hub.leave(&room, &dan);
        assert!(!hub.is_on_sfu(&room));
        let (request, connection) = resume(6);
        hub.resume(request, connection).unwrap();
        assert!(!hub.take_owed_sfu_start(&room, &bob));
    }

    #[test]
    fn resuming_needs_the_right_token_and_closes_the_old_connection() {
        let mut hub = TestHub::new(8, 10);
        let (room, alice, alice_token) = hub.create(name("Alice"), None, None, 1).unwrap();
        let request = |token: ResumeToken| ResumeRequest {
            room: room.clone(),
            peer: PeerInfo::new(alice.clone(), name("Alice")),
            resume_token: token,
            public_title: None,
            passcode: None,
        };
        assert_eq!(
            hub.resume(request(ResumeToken::random()), 2),
            Err(ErrorCode::ResumeRefused)
        );
        assert!(hub.take_deliveries().is_empty());
        // The place is taken back even from a connection that still holds it.
        assert_eq!(hub.resume(request(alice_token), 2), Ok(Vec::new()));
        assert_eq!(
            hub.take_deliveries(),
            vec![Delivery::Close {
                to: 1,
                reason: "resumed on another connection"
            }]
        );
        // The old connection dropping now changes nothing.
        assert!(!hub.drop_out(&room, &alice, &1, Instant::now()));
    }

    #[test]
    fn resuming_into_a_room_the_server_lost_makes_it_again() {
        let mut hub = TestHub::new(8, 10);
        let room = RoomId::random();
        let peer_id = PeerId::random();
        let token = ResumeToken::random();
        let request = |peer: &PeerId, token: &ResumeToken| ResumeRequest {
            room: room.clone(),
            peer: PeerInfo::new(peer.clone(), name("Alice")),
            resume_token: token.clone(),
            public_title: Some(name("Standup")),
            passcode: Some(passcode("secret")),
        };
        assert_eq!(hub.resume(request(&peer_id, &token), 1), Ok(Vec::new()));
        assert_eq!(hub.room_count(), 1);
        // Made as it was: public under its title, and locked.
        assert_eq!(hub.public_rooms()[0].title.as_str(), "Standup");
        assert_eq!(
            hub.join(&room, name("Bob"), None, 2).map(|_| ()),
            Err(ErrorCode::WrongPasscode)
        );
        // Another peer coming back after the restart takes a new place, told to Alice.
        let carol = PeerId::random();
        let others = hub.resume(request(&carol, &ResumeToken::random()), 3);
        assert_eq!(others.map(|o| o.len()), Ok(1));
        let told = messages(&mut hub);
        assert!(
            matches!(&told[..], [(1, ServerMessage::PeerBack { peer })] if peer.peer_id == carol)
        );
    }

    #[test]
    fn the_lobby_is_there_for_anyone_and_holds_its_own_capacity() {
        let mut hub = TestHub::new(2, 1).with_lobby_capacity(3);
        let lobby = RoomId::lobby();
        for connection in 1..=3 {
            hub.join(&lobby, name("Walker"), None, connection).unwrap();
        }
        assert_eq!(
            hub.join(&lobby, name("Walker"), None, 4),
            Err(ErrorCode::RoomFull)
        );
        assert!(hub.public_rooms().is_empty(), "the lobby is never listed");
        // It counts as one of the rooms, and is made again after the last one left.
        assert_eq!(hub.room_count(), 1);
    }

    #[test]
    fn poses_reach_the_others_at_most_every_150_ms_and_join_the_listing() {
        let mut hub = TestHub::new(8, 10);
        let lobby = RoomId::lobby();
        let (alice, _, _) = hub.join(&lobby, name("Alice"), None, 1).unwrap();
        hub.join(&lobby, name("Bob"), None, 2).unwrap();
        hub.take_deliveries();
        let start = Instant::now();
        let pose = |x| Pose::new(x, 1.0, 0.5, true).unwrap();
        assert!(hub.pose(&lobby, &alice, pose(1.0), start));
        assert!(!hub.pose(
            &lobby,
            &alice,
            pose(2.0),
            start + Duration::from_millis(100)
        ));
        assert!(hub.pose(&lobby, &alice, pose(3.0), start + MIN_POSE_INTERVAL));
        let told = messages(&mut hub);
        assert_eq!(
            told,
            vec![
                (
                    2,
                    ServerMessage::PeerPose {
                        peer_id: alice.clone(),
                        pose: pose(1.0)
                    }
                ),
                (
                    2,
                    ServerMessage::PeerPose {
                        peer_id: alice.clone(),
                        pose: pose(3.0)
                    }
                ),
            ]
        );
        let (_, present, _) = hub.join(&lobby, name("Carol"), None, 3).unwrap();
        assert_eq!(
            present[0].pose,
            Some(pose(3.0)),
            "newcomers learn where people stand"
        );
    }

    #[test]
    fn a_raised_hand_reaches_the_room_once_and_newcomers_see_it() {
        let mut hub = TestHub::new(8, 10);
        let (room, alice, _) = hub.create(name("Alice"), None, None, 1).unwrap();
        hub.join(&room, name("Bob"), None, 2).unwrap();
        hub.join(&RoomId::lobby(), name("Elsewhere"), None, 3)
            .unwrap();
        hub.take_deliveries();
        hub.hand(&room, &alice, true);
        hub.hand(&room, &alice, true);
        assert_eq!(
            messages(&mut hub),
            vec![(
                2,
                ServerMessage::PeerHand {
                    peer_id: alice.clone(),
                    raised: true
                }
            )],
            "once, to the room only"
        );
        let (_, present, _) = hub.join(&room, name("Carol"), None, 4).unwrap();
        assert!(present[0].hand_raised, "newcomers see the raised hand");
        hub.take_deliveries();
        hub.hand(&room, &alice, false);
        assert_eq!(messages(&mut hub).len(), 2, "Bob and Carol see it lowered");
    }

    #[test]
    fn chat_reaches_its_room_those_near_or_the_whole_space() {
        let mut hub = TestHub::new(8, 10);
        let lobby = RoomId::lobby();
        let at = |x: f32| Pose::new(x, 0.0, 0.0, false).unwrap();
        let start = Instant::now();
        let (alice, _, _) = hub.join(&lobby, name("Alice"), None, 1).unwrap();
        let (bob, _, _) = hub.join(&lobby, name("Bob"), None, 2).unwrap();
        let (carol, _, _) = hub.join(&lobby, name("Carol"), None, 3).unwrap();
        hub.pose(&lobby, &alice, at(0.0), start);
        hub.pose(&lobby, &bob, at(4.0), start);
        hub.pose(&lobby, &carol, at(12.0), start);
        let (room, dave, _) = hub.create(name("Dave"), None, None, 4).unwrap();
        hub.join(&room, name("Erin"), None, 5).unwrap();
        hub.take_deliveries();
        let text = ChatText::parse("hello").unwrap();
        let reached = |hub: &mut TestHub| -> Vec<u32> {
            messages(hub).into_iter().map(|(to, _)| to).collect()
        };
        hub.chat(&lobby, &alice, ChatScope::Near, text.clone());
        assert_eq!(reached(&mut hub), vec![2], "Bob is near, Carol is not");
        hub.chat(&lobby, &alice, ChatScope::Room, text.clone());
        assert_eq!(reached(&mut hub), vec![2, 3]);
        hub.chat(&room, &dave, ChatScope::Near, text.clone());
        assert_eq!(
            reached(&mut hub),
            vec![5],
            "no poses in a room: the room is near"
        );
        hub.chat(&room, &dave, ChatScope::Space, text.clone());
        let mut everyone = reached(&mut hub);
        everyone.sort_unstable();
        assert_eq!(everyone, vec![1, 2, 3, 5]);
        hub.chat(&lobby, &carol, ChatScope::Room, text);
        let told = messages(&mut hub);
        assert!(matches!(
            &told[0].1,
            ServerMessage::Chat { from, name, scope: ChatScope::Room, .. }
                if from == &carol && name.as_str() == "Carol"
        ));
    }

    #[test]
    fn watchers_learn_who_is_where_in_the_space_and_every_entry_and_exit() {
        let mut hub = TestHub::new(8, 10);
        let lobby = RoomId::lobby();
        let (ann, _, _) = hub.join(&lobby, name("Ann"), None, 1).unwrap();
        let (standup, bo, _) = hub
            .create(name("Bo"), Some(name("Standup")), None, 2)
            .unwrap();
        let (secret, cy, _) = hub.create(name("Cy"), None, None, 3).unwrap();
        hub.take_deliveries();
        // Ann watches: she hears of the two others and where they are, not of herself.
        hub.watch_space(&lobby, &ann);
        let told = messages(&mut hub);
        let [(1, ServerMessage::Space { people, total: 2 })] = told.as_slice() else {
            panic!("one space message for Ann: {told:?}");
        };
        let area_of = |peer: &PeerId| {
            people
                .iter()
                .find(|p| &p.peer_id == peer)
                .map(|p| p.area.clone())
        };
        let standup_area = SpaceArea::Room {
            room: standup.clone(),
            title: name("Standup"),
        };
        assert_eq!(area_of(&bo), Some(standup_area.clone()));
        assert_eq!(
            area_of(&cy),
            Some(SpaceArea::Private),
            "a private room is not named"
        );
        assert_eq!(area_of(&ann), None);
        // Dee enters the standup: Ann (watching) is told, Cy (not watching) is not; Bo
        // hears of it as a room member does.
        let (dee, _, _) = hub.join(&standup, name("Dee"), None, 4).unwrap();
        let told = messages(&mut hub);
        let to_ann: Vec<&ServerMessage> = told
            .iter()
            .filter(|(to, _)| *to == 1)
            .map(|(_, message)| message)
            .collect();
        assert!(
            matches!(to_ann.as_slice(), [ServerMessage::PersonEntered { person }]
                if person.peer_id == dee && person.area == standup_area),
            "{told:?}"
        );
        assert!(told.iter().all(|(to, _)| *to != 3), "{told:?}");
        // Cy leaves (its room closes with it): Ann is told.
        hub.leave(&secret, &cy);
        assert_eq!(
            messages(&mut hub),
            vec![(1, ServerMessage::PersonLeft { peer_id: cy })]
        );
    }

    #[test]
    fn the_public_listing_names_public_rooms_fullest_first() {
        let mut hub = TestHub::new(8, 200);
        hub.create(name("A"), None, None, 0).unwrap();
        let (quiet, _, _) = hub.create(name("B"), Some(name("Quiet")), None, 1).unwrap();
        let (busy, _, _) = hub.create(name("C"), Some(name("Busy")), None, 2).unwrap();
        hub.join(&busy, name("D"), None, 3).unwrap();
        hub.create(name("E"), Some(name("Another")), None, 4)
            .unwrap();
        let listed = hub.public_rooms();
        let titles: Vec<&str> = listed.iter().map(|r| r.title.as_str()).collect();
        assert_eq!(titles, ["Busy", "Another", "Quiet"]);
        assert_eq!(listed[0].room, busy);
        assert_eq!(listed[0].participants, 2);
        assert_eq!(listed[2].room, quiet);
        assert!(listed.iter().all(|r| r.capacity == 8));
        for n in 0..150 {
            hub.create(name("F"), Some(name("Many")), None, 10 + n)
                .unwrap();
        }
        assert_eq!(hub.public_rooms().len(), MAX_LISTED_ROOMS);
    }
}
