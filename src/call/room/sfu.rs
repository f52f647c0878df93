//! Rooms on the SFU: our upstream (our camera and microphone, published once) and a
//! downstream per member, all through the server's `sfu_signal` (docs/signaling.md,
//! "Rooms on the SFU").
//!
//! The switch is make before break on both ends: the mesh connection to a member
//! carries media both ways, so it stays until our downstream of that member has
//! connected and the member has said that its downstream of us has
//! (`PeerControl::SfuCarries`); then it is retired. Once the SFU carries a member to
//! us, a mesh connection to it that fails or closes is let go instead of being offered
//! again, and the member's offers are not answered.

use std::collections::{HashMap, HashSet};

use bevy::platform::time::Instant;
use serde::Deserialize;

use super::{LinkState, Media, Room, RoomAction};
use crate::call::PeerControl;
use crate::rtc::{PeerConnectionState, Role};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{ClientMessage, PeerId, PeerInfo, VideoLayer};

/// The height on our screen, in pixels, up to which each smaller simulcast layer is
/// enough (a 640x480 camera's layers are 120, 240 and 480 lines high); past the last,
/// the whole picture.
const LAYER_LIMITS: [(VideoLayer, f32); 2] =
    [(VideoLayer::Small, 150.0), (VideoLayer::Medium, 300.0)];
/// How far past a limit someone's size must go before we change layers, as a share of
/// the limit: someone standing at the edge does not flip between two.
const LAYER_MARGIN: f32 = 0.1;

/// The layer that fits a person `pixels` high on our screen, with `current` kept while
/// the size stays within [`LAYER_MARGIN`] of a limit.
pub(super) fn layer_for_height(pixels: f32, current: VideoLayer) -> VideoLayer {
    let fitting = |scale: f32| {
        LAYER_LIMITS
            .iter()
            .find(|(_, limit)| pixels <= limit * scale)
            .map_or(VideoLayer::Large, |(layer, _)| *layer)
    };
    let larger = fitting(1.0 + LAYER_MARGIN);
    let smaller = fitting(1.0 - LAYER_MARGIN);
    if larger > current {
        larger
    } else if smaller < current {
        smaller
    } else {
        current
    }
}

/// Which of a call's connections a peer connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Peer to peer, with the member it is to.
    Mesh,
    /// Our upstream to the SFU: what we send, once for everyone.
    SfuUp,
    /// Our downstream from the SFU of the member it is named after.
    SfuDown,
}

/// One of our streams through the SFU.
#[derive(Debug, Clone, Copy)]
struct SfuStream {
    epoch: u64,
    state: PeerConnectionState,
    /// The simulcast layer the server was told to forward on it (a downstream; the SFU
    /// starts with the largest).
    layer: VideoLayer,
}

impl SfuStream {
    fn new(epoch: u64) -> Self {
        Self {
            epoch,
            state: PeerConnectionState::New,
            layer: VideoLayer::Large,
        }
    }
}

/// Our streams through the SFU while our room is on it.
#[derive(Debug, Default)]
pub(super) struct SfuLinks {
    upstream: Option<SfuStream>,
    downstreams: HashMap<PeerId, SfuStream>,
    /// The members that said the SFU brings them our media.
    carried_at: HashSet<PeerId>,
    /// The simulcast layer of each member's camera that fits how large they appear on
    /// our screen (the largest for those not told of).
    wanted_layers: HashMap<PeerId, VideoLayer>,
    /// The room goes back to a mesh (`sfu_ended`): these streams close as the mesh
    /// takes over.
    ending: bool,
}

#[cfg(test)]
impl SfuLinks {
    /// Our upstream's epoch, if it is open.
    pub(super) fn upstream_epoch(&self) -> Option<u64> {
        self.upstream.map(|stream| stream.epoch)
    }
}

impl Room {
    /// The server moved our room to the SFU, or welcomed us onto it: we publish once
    /// our media runs. Told again when the SFU instance that held the room went: our
    /// streams through it close, and we publish afresh (the room opens on another).
    pub(super) fn sfu_started(&mut self) {
        if self.lobby.is_some() {
            return;
        }
        match self.sfu.take() {
            Some(gone) => {
                tracing::info!("the room moves to another SFU instance; publishing again");
                if gone.upstream.is_some() {
                    self.act(RoomAction::CloseSfu { feed: None });
                }
                let mut owners: Vec<PeerId> = gone.downstreams.into_keys().collect();
                owners.sort();
                for owner in owners {
                    self.act(RoomAction::CloseSfu { feed: Some(owner) });
                }
            }
            None => tracing::info!("the room moved to the SFU"),
        }
        self.sfu = Some(SfuLinks::default());
        if self.media == Media::On {
            self.publish();
        }
    }

    /// Whether our room is on the SFU (and not going back to a mesh).
    pub(super) fn on_sfu(&self) -> bool {
        self.sfu.as_ref().is_some_and(|sfu| !sfu.ending)
    }

    /// The server moved our room back to a mesh: we connect peer to peer to everyone
    /// (the smaller id offers) and keep each member's stream through the SFU until our
    /// mesh connection to it has connected.
    pub(super) fn sfu_ended(&mut self) {
        let Some(sfu) = &mut self.sfu else { return };
        if sfu.ending {
            return;
        }
        tracing::info!("the room goes back to a mesh");
        sfu.ending = true;
        let own = self.place.as_ref().map(|place| place.self_id.clone());
        let (Some(own), Media::On) = (own, self.media) else {
            // Nothing published yet: the mesh starts as our media does.
            self.sfu = None;
            return;
        };
        let mut unmeshed: Vec<PeerId> = self
            .members
            .keys()
            .filter(|member| !self.peers.contains_key(*member))
            .cloned()
            .collect();
        unmeshed.sort();
        for member in unmeshed {
            let role = if own < member {
                Role::Offerer
            } else {
                Role::Answerer
            };
            self.connect(member, role);
        }
        self.leave_sfu_when_meshed();
    }

    /// Our mesh connection to `peer` connected: while going back to a mesh, its stream
    /// through the SFU goes, and the SFU with the last one.
    pub(super) fn meshed(&mut self, peer: &PeerId) {
        if self.sfu.as_ref().is_some_and(|sfu| sfu.ending) {
            self.close_downstream(peer);
            self.leave_sfu_when_meshed();
        }
    }

    /// Leaves the SFU once the mesh carries everyone, going back to a mesh: no member
    /// comes through the SFU any more (each downstream closed as its mesh connected, or
    /// its member went) and every mesh connection has connected; our upstream closes
    /// and the server hears `sfu_leave`.
    pub(super) fn leave_sfu_when_meshed(&mut self) {
        let Some(sfu) = &self.sfu else { return };
        let meshed = sfu.downstreams.is_empty()
            && self
                .peers
                .values()
                .all(|slot| slot.state == PeerConnectionState::Connected);
        if !sfu.ending || !meshed {
            return;
        }
        if self.sfu.take().is_some_and(|sfu| sfu.upstream.is_some()) {
            self.act(RoomAction::CloseSfu { feed: None });
        }
        tracing::info!("the mesh carries everyone; we leave the SFU");
        self.send_signal(ClientMessage::SfuLeave);
    }

    /// Opens our upstream (afresh, replacing one that failed).
    pub(super) fn publish(&mut self) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let Some(sfu) = &mut self.sfu else { return };
        sfu.upstream = Some(SfuStream::new(epoch));
        self.act(RoomAction::OpenSfu { feed: None, epoch });
    }

    /// How our camera goes out now: whether through the SFU, and over how many
    /// connected connections (1 on the SFU; one per peer in a mesh).
    pub fn upstreams(&self) -> (bool, usize) {
        let upstream = self
            .sfu
            .as_ref()
            .and_then(|sfu| sfu.upstream)
            .is_some_and(|stream| stream.state == PeerConnectionState::Connected);
        let mesh = self
            .peers
            .values()
            .filter(|slot| slot.state == PeerConnectionState::Connected)
            .count();
        (upstream, mesh + usize::from(upstream))
    }

    /// How many members the SFU brings us.
    pub(super) fn sfu_connection_count(&self) -> usize {
        self.sfu.as_ref().map_or(0, |sfu| sfu.downstreams.len())
    }

    /// Whether the SFU carries `peer`'s media to us now (the mesh may go); never while
    /// going back to a mesh.
    pub(super) fn sfu_carries(&self, peer: &PeerId) -> bool {
        self.sfu.as_ref().is_some_and(|sfu| {
            !sfu.ending
                && sfu
                    .downstreams
                    .get(peer)
                    .is_some_and(|stream| stream.state == PeerConnectionState::Connected)
        })
    }

    /// A description from the SFU: the answer to our upstream, or the offer of a
    /// member's media (a fresh downstream); or, when it comes, a candidate.
    pub(super) fn sfu_signal(&mut self, feed: Option<PeerId>, data: &serde_json::Value) {
        let payload = match SignalPayload::deserialize(data) {
            Ok(payload) if payload.validate().is_ok() => payload,
            _ => {
                tracing::warn!(?feed, "ignoring an SFU signal we do not understand");
                return;
            }
        };
        if self.media != Media::On {
            return;
        }
        let next_epoch = self.next_epoch;
        let members = &self.members;
        let Some(sfu) = &mut self.sfu else { return };
        let epoch = match (&feed, &payload) {
            (Some(owner), SignalPayload::Offer { .. }) => {
                if sfu.ending {
                    tracing::debug!(%owner, "an SFU offer while going back to a mesh");
                    return;
                }
                if !members.contains_key(owner) {
                    tracing::debug!(%owner, "an SFU offer of someone not in the room");
                    return;
                }
                self.next_epoch += 1;
                sfu.downstreams
                    .insert(owner.clone(), SfuStream::new(next_epoch));
                self.act(RoomAction::OpenSfu {
                    feed: feed.clone(),
                    epoch: next_epoch,
                });
                next_epoch
            }
            (None, _) => match sfu.upstream {
                Some(stream) => stream.epoch,
                None => return,
            },
            (Some(owner), _) => match sfu.downstreams.get(owner) {
                Some(stream) => stream.epoch,
                None => return,
            },
        };
        self.act(RoomAction::DeliverSfu {
            feed,
            epoch,
            payload,
        });
    }

    /// Stream `epoch` through the SFU (`feed` none: our upstream) changed state. A
    /// downstream that connects takes over from the mesh connection to its member, one
    /// that fails is asked for again (`sfu_resubscribe`); an upstream that fails is
    /// published afresh.
    pub fn sfu_state(
        &mut self,
        feed: Option<&PeerId>,
        epoch: u64,
        state: PeerConnectionState,
        now: Instant,
    ) {
        self.now = now;
        let signaling_up = self.link == LinkState::Open { welcomed: true };
        let Some(sfu) = &mut self.sfu else { return };
        let stream = match feed {
            None => sfu.upstream.as_mut(),
            Some(owner) => sfu.downstreams.get_mut(owner),
        };
        let Some(stream) = stream.filter(|stream| stream.epoch == epoch) else {
            return; // a replaced stream's last words
        };
        stream.state = state;
        match (feed, state) {
            (Some(owner), PeerConnectionState::Connected) => {
                if self.peers.contains_key(owner) {
                    self.send_signal(ClientMessage::Signal {
                        to: owner.clone(),
                        data: PeerControl::SfuCarries.to_json(),
                    });
                }
                self.retire_mesh_when_carried(owner);
                self.tell_layers();
            }
            (None, PeerConnectionState::Failed | PeerConnectionState::Closed)
                if signaling_up && self.on_sfu() =>
            {
                tracing::info!("our upstream to the SFU failed; publishing again");
                self.publish();
            }
            (Some(owner), PeerConnectionState::Failed | PeerConnectionState::Closed)
                if signaling_up && self.on_sfu() && self.members.contains_key(owner) =>
            {
                tracing::info!(peer = %owner, "our stream of the peer from the SFU failed; asking for it again");
                self.send_signal(ClientMessage::SfuResubscribe {
                    feed: owner.clone(),
                });
            }
            (Some(owner), PeerConnectionState::Failed | PeerConnectionState::Closed) => {
                tracing::info!(peer = %owner, "our stream of the peer from the SFU ended");
            }
            _ => {}
        }
    }

    /// How large each person appears on our screen now (pixels high): on the SFU, we
    /// ask for the layer of their camera that fits.
    pub(super) fn shown_sizes(&mut self, sizes: &[(PeerId, f32)]) {
        let Some(sfu) = &mut self.sfu else { return };
        for (peer, pixels) in sizes {
            let current = sfu
                .wanted_layers
                .get(peer)
                .copied()
                .unwrap_or(VideoLayer::Large);
            sfu.wanted_layers
                .insert(peer.clone(), layer_for_height(*pixels, current));
        }
        self.tell_layers();
    }

    /// Tells the server the layer we want of each member whose downstream is
    /// connected, where that changed (`sfu_layer`).
    fn tell_layers(&mut self) {
        let Some(sfu) = &mut self.sfu else { return };
        if sfu.ending {
            return;
        }
        let mut changes = Vec::new();
        for (owner, stream) in &mut sfu.downstreams {
            let wanted = sfu
                .wanted_layers
                .get(owner)
                .copied()
                .unwrap_or(VideoLayer::Large);
            if stream.state == PeerConnectionState::Connected && stream.layer != wanted {
                stream.layer = wanted;
                changes.push((owner.clone(), wanted));
            }
        }
        changes.sort();
        for (feed, layer) in changes {
            self.send_signal(ClientMessage::SfuLayer { feed, layer });
        }
    }

    /// `peer` said the SFU brings it our media.
    pub(super) fn sfu_carries_us(&mut self, peer: PeerId) {
        let Some(sfu) = &mut self.sfu else { return };
        sfu.carried_at.insert(peer.clone());
        self.retire_mesh_when_carried(&peer);
    }

    /// Retires the mesh connection to `peer` once the SFU carries media both ways
    /// between us.
    fn retire_mesh_when_carried(&mut self, peer: &PeerId) {
        let carried_at_peer = self
            .sfu
            .as_ref()
            .is_some_and(|sfu| sfu.carried_at.contains(peer));
        if !(carried_at_peer && self.sfu_carries(peer)) {
            return;
        }
        if let Some(mesh) = self.peers.remove(peer) {
            tracing::info!(%peer, "the SFU carries the peer now, both ways; the mesh connection goes");
            self.act(RoomAction::Retire {
                peer: peer.clone(),
                epoch: mesh.epoch,
            });
        }
    }

    /// `peer` left: our downstream of it closes. Whether there was one.
    pub(super) fn close_downstream(&mut self, peer: &PeerId) -> bool {
        let closed = self
            .sfu
            .as_mut()
            .and_then(|sfu| sfu.downstreams.remove(peer))
            .is_some();
        if closed {
            self.act(RoomAction::CloseSfu {
                feed: Some(peer.clone()),
            });
        }
        closed
    }

    /// A member of a room on the SFU: shown, without a mesh connection (the SFU will
    /// offer its media).
    pub(super) fn show_sfu_member(&mut self, info: PeerInfo) {
        self.members.insert(info.peer_id.clone(), info.name.clone());
        self.note_pose(&info);
        self.act(RoomAction::PeerJoined(info));
    }
}
