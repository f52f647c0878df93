//! What both drivers tell the app about the room: the [`CallEvent`]s, and the channel
//! each peer's decoded video travels on, kept across its successive connections so
//! that a fresh connection feeds the same panel.

use std::collections::HashMap;

use crossbeam_channel::Sender;

use super::room::RoomEvent;
use super::{CallEvent, JoiningPeer};
use crate::media::{FrameReceiver, FrameSender, frame_channel};
use crate::signaling::protocol::{PeerId, PeerInfo, RoomId};

/// One peer's video channel: the sending end for its connections, the receiving end
/// until the app is told of the peer.
struct PeerVideo {
    sender: FrameSender,
    unclaimed: Option<FrameReceiver>,
}

/// The app's view of the room, as a driver reports it.
pub(super) struct Roster {
    events: Sender<CallEvent>,
    video: HashMap<PeerId, PeerVideo>,
    /// Our id in the room, once joined.
    self_id: Option<PeerId>,
}

impl Roster {
    /// Reports to `events`.
    pub(super) fn new(events: Sender<CallEvent>) -> Self {
        Self {
            events,
            video: HashMap::new(),
            self_id: None,
        }
    }

    /// Tells the app `event` (a stopped app is no longer listening: nothing to do).
    pub(super) fn emit(&self, event: CallEvent) {
        let _ = self.events.send(event);
    }

    /// A copy of the sender, for work that reports on its own.
    pub(super) fn events(&self) -> Sender<CallEvent> {
        self.events.clone()
    }

    /// Our id in the room we joined last.
    pub(super) fn self_id(&self) -> Option<PeerId> {
        self.self_id.clone()
    }

    /// Where the decoded video of `peer` goes.
    pub(super) fn frames(&mut self, peer: &PeerId) -> FrameSender {
        self.channel(peer).sender.clone()
    }

    fn channel(&mut self, peer: &PeerId) -> &mut PeerVideo {
        self.video.entry(peer.clone()).or_insert_with(|| {
            let (sender, receiver) = frame_channel();
            PeerVideo {
                sender,
                unclaimed: Some(receiver),
            }
        })
    }

    fn joining(&mut self, info: PeerInfo) -> JoiningPeer {
        let channel = self.channel(&info.peer_id);
        let video = channel.unclaimed.take().unwrap_or_else(|| {
            // Shown before: a new panel gets a channel of its own.
            let (sender, receiver) = frame_channel();
            channel.sender = sender;
            receiver
        });
        JoiningPeer { info, video }
    }

    /// We are in `room` as `self_id`, with `peers` there before us.
    pub(super) fn joined(&mut self, room: RoomId, self_id: PeerId, peers: Vec<PeerInfo>) {
        self.self_id = Some(self_id.clone());
        let peers = peers.into_iter().map(|info| self.joining(info)).collect();
        self.emit(CallEvent::Joined {
            room,
            self_id,
            peers,
        });
    }

    /// A peer to show.
    pub(super) fn peer_joined(&mut self, info: PeerInfo) {
        let peer = self.joining(info);
        self.emit(CallEvent::PeerJoined(peer));
    }

    /// The room's own news: a peer that left loses its channel.
    pub(super) fn room_event(&mut self, event: RoomEvent) {
        let event = match event {
            RoomEvent::PeerLeft(peer) => {
                self.video.remove(&peer);
                CallEvent::PeerLeft(peer)
            }
            RoomEvent::PeerMedia(peer, media) => CallEvent::PeerMedia(peer, media),
            RoomEvent::OwnMedia(media) => CallEvent::OwnMedia(media),
            RoomEvent::PeerPose(peer, pose) => CallEvent::PeerPose(peer, pose),
            RoomEvent::PeerHand(peer, raised) => CallEvent::PeerHand(peer, raised),
            RoomEvent::ShareRefused(sharers) => CallEvent::ShareRefused(sharers),
            RoomEvent::ShareTakenOver(by) => CallEvent::ShareTakenOver(by),
            RoomEvent::Chat(line) => CallEvent::Chat(line),
            RoomEvent::Nearby {
                peer,
                distance_m,
                near,
            } => CallEvent::Nearby {
                peer,
                distance_m,
                near,
            },
            RoomEvent::RoomList(rooms) => CallEvent::RoomList(rooms),
            RoomEvent::Space(news) => CallEvent::Space(news),
            RoomEvent::Reconnecting(reason) => CallEvent::Reconnecting(reason),
            RoomEvent::Reconnected => CallEvent::Reconnected,
            RoomEvent::Left => {
                self.video.clear();
                CallEvent::Left
            }
            RoomEvent::Failed(error) => CallEvent::Failed(error),
        };
        self.emit(event);
    }
}
