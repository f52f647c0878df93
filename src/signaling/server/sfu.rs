//! Rooms on an SFU: the bridge between meetspace's rooms and Janus's VideoRoom.
//!
//! Clients never speak to Janus's API: the server does, for them. A room that moves
//! to the SFU gets a VideoRoom of its own on one of the server's Janus instances (the
//! one holding the fewest rooms), locked with a random pin and secret that never leave
//! the server. Each member's descriptions and candidates come as `sfu_signal`: with
//! no `feed`, they are its upstream (it publishes its camera and microphone once);
//! with `feed` a peer id, they are its downstream of that peer's media, which the
//! server subscribes it to and Janus offers. Janus's feeds go by meetspace peer ids
//! (their `display`), so people's ids and names stay meetspace's. When the connection
//! to an instance closes, its rooms move to another: their members are told
//! `sfu_started` again and publish afresh. A room that shrinks back to a mesh keeps
//! its VideoRoom until its members leave it (`sfu_leave`).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::janus::{Janus, JanusError, JanusReply, JanusSession};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{ErrorCode, PeerId, RoomId, ServerMessage, VideoLayer};

/// The people a room holds before it moves to the SFU, by default (WorkAdventure moves
/// at the fifth).
pub const DEFAULT_MESH_LIMIT: u64 = 5;

/// The WebSocket address of a Janus instance given as `janus+ws://HOST:PORT` (or
/// `janus+wss://`), for `--sfu`.
pub fn parse_janus_url(raw: &str) -> Result<String, String> {
    let websocket = raw
        .strip_prefix("janus+")
        .filter(|rest| rest.starts_with("ws://") || rest.starts_with("wss://"))
        .ok_or_else(|| format!("{raw:?} is not janus+ws://HOST:PORT (or janus+wss://)"))?;
    let url = url::Url::parse(websocket).map_err(|error| format!("{raw:?}: {error}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} names no host"));
    }
    Ok(websocket.to_owned())
}

/// Where the server finds its SFU, and when rooms move to it.
#[derive(Debug, Clone)]
pub struct SfuSettings {
    /// The Janus instances (`ws://HOST:PORT` of their WebSocket transport).
    pub instances: Vec<String>,
    /// Janus's `api_secret`, when it has one.
    pub api_secret: Option<String>,
    /// The VideoRoom plugin's `admin_key`, when it has one (needed to create rooms).
    pub admin_key: Option<String>,
    /// A room with this many people moves to the SFU.
    pub mesh_limit: usize,
}

/// How the bridge reaches a member of a room (its current connection, if any).
pub trait Tell: Send + Sync {
    /// Sends `message` to `peer` of `room`, if it is connected.
    fn tell(&self, room: &RoomId, peer: &PeerId, message: ServerMessage);
    /// Whether `room` is on the SFU still (not gone back to a mesh, nor closed).
    fn on_sfu(&self, room: &RoomId) -> bool;
}

/// What went wrong bridging a member to Janus, told to that member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    /// No Janus instance could be reached.
    #[error("no SFU is reachable: {0}")]
    Unreachable(String),
    /// Janus failed or refused a step.
    #[error("the SFU failed: {0}")]
    Janus(#[from] JanusError),
    /// A description or candidate for a stream that is not there (yet).
    #[error("no SFU stream {0}: publish first, and answer only what the server offered")]
    NoSuchStream(String),
    /// The room is not on the SFU.
    #[error("this room is not on the SFU")]
    NotOnSfu,
}

/// One Janus instance the server may use.
struct Instance {
    url: String,
    /// The connection, once opened (and again after it dropped).
    janus: tokio::sync::Mutex<Option<Arc<Janus>>>,
}

/// One member's side of a room on Janus.
struct Member {
    session: JanusSession,
    /// Its session's notices, until its upstream's watcher takes them.
    notices: Option<mpsc::UnboundedReceiver<Value>>,
    /// The handle it publishes on, and its feed id there once published.
    publisher: Option<(u64, Option<u64>)>,
    /// Its upstream is connected: others can subscribe to its feed.
    up: bool,
    /// Each feed it is subscribed to, by whose feed.
    subscriptions: HashMap<PeerId, Subscription>,
}

/// One member's subscription to another's feed.
struct Subscription {
    /// Its handle on Janus.
    handle: u64,
    /// The mid of its video stream in Janus's offer (the simulcast layer is chosen per
    /// stream).
    video_mid: Option<String>,
}

/// A room's place on the SFU, locked while one step of its members is carried out.
type RoomSlot = Arc<tokio::sync::Mutex<Option<SfuRoom>>>;

/// The rooms on the SFU, by meetspace room.
type Rooms = Arc<tokio::sync::Mutex<HashMap<RoomId, RoomSlot>>>;

/// A room on Janus.
struct SfuRoom {
    janus: Arc<Janus>,
    /// The VideoRoom's number there.
    number: u64,
    pin: String,
    secret: String,
    /// The session that made the room (and destroys it).
    admin: JanusSession,
    members: HashMap<PeerId, Member>,
}

/// The bridge between the server's rooms and Janus (see the module documentation).
pub struct Sfu {
    settings: SfuSettings,
    instances: Vec<Instance>,
    /// Rooms on the SFU; each one's lock orders the steps of its members.
    rooms: Rooms,
}

impl Sfu {
    /// A bridge to the instances `settings` names (connected when first needed).
    pub fn new(settings: SfuSettings) -> Self {
        let instances = settings
            .instances
            .iter()
            .map(|url| Instance {
                url: url.clone(),
                janus: tokio::sync::Mutex::new(None),
            })
            .collect();
        Self {
            settings,
            instances,
            rooms: Rooms::default(),
        }
    }

    /// Handles one `sfu_signal` of `peer` in `room`: its offer to publish (answered;
    /// once its upstream is up, it and the others are subscribed to each other), its
    /// answer to a feed Janus offered, or a candidate of either. The room opens on
    /// Janus with its first step, if the hub has it `on_sfu`.
    pub async fn signal(
        &self,
        room: &RoomId,
        peer: &PeerId,
        feed: Option<PeerId>,
        payload: SignalPayload,
        on_sfu: bool,
        tell: &Arc<dyn Tell>,
    ) -> Result<(), SfuError> {
        let slot = if on_sfu {
            self.room_slot(room).await
        } else {
            let held = self.rooms.lock().await.get(room).cloned();
            held.ok_or(SfuError::NotOnSfu)?
        };
        let mut held = slot.lock().await;
        if held.is_none() && on_sfu {
            *held = Some(self.open_room(room, tell).await?);
        }
        let Some(sfu_room) = held.as_mut() else {
            return Err(SfuError::NotOnSfu);
        };
        match (feed, payload) {
            (None, SignalPayload::Offer { sdp }) => {
                self.publish(&slot, sfu_room, room, peer, sdp, tell).await
            }
            (None, SignalPayload::Reoffer { sdp }) => {
                sfu_room.renegotiate(room, peer, sdp, tell.as_ref()).await
            }
            (Some(feed), SignalPayload::Answer { sdp }) => {
                let member = sfu_room
                    .members
                    .get(peer)
                    .ok_or_else(|| SfuError::NoSuchStream(feed.to_string()))?;
                let handle = member
                    .subscriptions
                    .get(&feed)
                    .ok_or_else(|| SfuError::NoSuchStream(feed.to_string()))?
                    .handle;
                member
                    .session
                    .message(
                        handle,
                        json!({"request": "start"}),
                        Some(json!({"type": "answer", "sdp": sdp})),
                    )
                    .await?;
                Ok(())
            }
            (
                feed,
                SignalPayload::Candidate {
                    candidate,
                    sdp_mid,
                    sdp_mline_index,
                },
            ) => {
                let member = sfu_room
                    .members
                    .get(peer)
                    .ok_or_else(|| SfuError::NoSuchStream("upstream".to_owned()))?;
                let handle = match &feed {
                    None => member.publisher.map(|(handle, _)| handle),
                    Some(feed) => member.subscriptions.get(feed).map(|s| s.handle),
                }
                .ok_or_else(|| {
                    SfuError::NoSuchStream(feed.map_or("upstream".to_owned(), |f| f.to_string()))
                })?;
                let candidate = (!candidate.is_empty()).then(|| {
                    json!({
                        "candidate": candidate,
                        "sdpMid": sdp_mid,
                        "sdpMLineIndex": sdp_mline_index,
                    })
                });
                member.session.trickle(handle, candidate).await?;
                Ok(())
            }
            (feed, _) => Err(SfuError::NoSuchStream(
                feed.map_or("upstream".to_owned(), |f| f.to_string()),
            )),
        }
    }

    /// Publishes `peer`'s upstream (afresh: an offer replaces the upstream it had),
    /// watching its session's notices from the first one on.
    async fn publish(
        &self,
        slot: &RoomSlot,
        sfu_room: &mut SfuRoom,
        room: &RoomId,
        peer: &PeerId,
        sdp: String,
        tell: &Arc<dyn Tell>,
    ) -> Result<(), SfuError> {
        let notices = sfu_room.publish(room, peer, sdp, tell.as_ref()).await?;
        if let Some(notices) = notices {
            let upstream = Upstream {
                slot: Arc::clone(slot),
                room: room.clone(),
                peer: peer.clone(),
            };
            tokio::spawn(upstream.watch(notices, Arc::clone(tell)));
        }
        Ok(())
    }

    /// `viewer`'s downstream of `owner`'s feed in `room` failed: its subscription is
    /// made afresh and Janus's new offer goes to it (`sfu_signal`).
    pub async fn resubscribe(
        &self,
        room: &RoomId,
        viewer: &PeerId,
        owner: &PeerId,
        tell: &Arc<dyn Tell>,
    ) -> Result<(), SfuError> {
        let slot = self.rooms.lock().await.get(room).cloned();
        let slot = slot.ok_or(SfuError::NotOnSfu)?;
        let mut held = slot.lock().await;
        let sfu_room = held.as_mut().ok_or(SfuError::NotOnSfu)?;
        sfu_room
            .resubscribe(room, viewer, owner, tell.as_ref())
            .await
    }

    /// `viewer` wants `owner`'s video in `room` at `layer`: Janus forwards that
    /// simulcast layer of it from the next keyframe on.
    pub async fn choose_layer(
        &self,
        room: &RoomId,
        viewer: &PeerId,
        owner: &PeerId,
        layer: VideoLayer,
    ) -> Result<(), SfuError> {
        let slot = self.rooms.lock().await.get(room).cloned();
        let slot = slot.ok_or(SfuError::NotOnSfu)?;
        let held = slot.lock().await;
        let sfu_room = held.as_ref().ok_or(SfuError::NotOnSfu)?;
        // A stream that is gone (its owner just left) has no layer to switch.
        let stream = sfu_room.members.get(viewer).and_then(|member| {
            let subscription = member.subscriptions.get(owner)?;
            Some((
                member,
                subscription.handle,
                subscription.video_mid.as_ref()?,
            ))
        });
        let Some((member, handle, mid)) = stream else {
            tracing::debug!(%viewer, %owner, "no video stream to switch the layer of");
            return Ok(());
        };
        let configure = json!({
            "request": "configure",
            "streams": [{"mid": mid, "substream": layer.substream()}],
        });
        member.session.message(handle, configure, None).await?;
        Ok(())
    }

    /// `peer` left `room`: its session on Janus goes (and with it its feed and its
    /// subscriptions); the last one out closes the room there.
    pub async fn leave(&self, room: &RoomId, peer: &PeerId) {
        let Some(slot) = self.rooms.lock().await.get(room).cloned() else {
            return;
        };
        let mut slot = slot.lock().await;
        // A room that could not be opened on Janus is forgotten too.
        let emptied = match slot.as_mut() {
            None => true,
            Some(sfu_room) => {
                sfu_room.members.remove(peer);
                for member in sfu_room.members.values_mut() {
                    if let Some(subscription) = member.subscriptions.remove(peer) {
                        let _ = member.session.detach(subscription.handle).await;
                    }
                }
                sfu_room.members.is_empty()
            }
        };
        if emptied {
            if let Some(sfu_room) = slot.take() {
                sfu_room.close().await;
            }
            self.rooms.lock().await.remove(room);
        }
    }

    /// The lock of `room`'s place on the SFU (made empty when new).
    async fn room_slot(&self, room: &RoomId) -> RoomSlot {
        Arc::clone(self.rooms.lock().await.entry(room.clone()).or_default())
    }

    /// Makes a VideoRoom for `room` on the instance holding the fewest rooms.
    async fn open_room(&self, room: &RoomId, tell: &Arc<dyn Tell>) -> Result<SfuRoom, SfuError> {
        let janus = self.least_loaded(tell).await?;
        let (admin, _) = janus.session().await?;
        let handle = admin.attach_videoroom().await?;
        let number = random_u53();
        let (pin, secret) = (random_secret(), random_secret());
        let mut create = json!({
            "request": "create",
            "room": number,
            "description": format!("meetspace {room}"),
            "secret": secret,
            "pin": pin,
            "is_private": true,
            "publishers": 100,
            "videocodec": "vp8",
            "audiocodec": "opus",
            "notify_joining": false,
        });
        if let Some(key) = &self.settings.admin_key {
            create["admin_key"] = json!(key);
        }
        admin.message(handle, create, None).await?;
        tracing::info!(%room, janus = janus.url(), number, "room moved to the SFU");
        Ok(SfuRoom {
            janus,
            number,
            pin,
            secret,
            admin,
            members: HashMap::new(),
        })
    }

    /// The live instance with the fewest rooms, connecting to those not connected
    /// (each new connection watched: see [`move_rooms_when_closed`]).
    async fn least_loaded(&self, tell: &Arc<dyn Tell>) -> Result<Arc<Janus>, SfuError> {
        let load = self.load().await;
        let mut failures = Vec::new();
        let mut order: Vec<&Instance> = self.instances.iter().collect();
        order.sort_by_key(|instance| load.get(&instance.url).copied().unwrap_or(0));
        for instance in order {
            let mut held = instance.janus.lock().await;
            if let Some(janus) = held.as_ref().filter(|janus| janus.is_alive()) {
                return Ok(Arc::clone(janus));
            }
            match Janus::connect(&instance.url, self.settings.api_secret.clone()).await {
                Ok(janus) => {
                    let janus = Arc::new(janus);
                    *held = Some(Arc::clone(&janus));
                    tokio::spawn(move_rooms_when_closed(
                        Arc::clone(&janus),
                        Arc::clone(&self.rooms),
                        Arc::clone(tell),
                    ));
                    return Ok(janus);
                }
                Err(error) => failures.push(error.to_string()),
            }
        }
        Err(SfuError::Unreachable(failures.join("; ")))
    }

    /// How many rooms each instance holds, by URL.
    async fn load(&self) -> HashMap<String, usize> {
        let slots: Vec<_> = self.rooms.lock().await.values().cloned().collect();
        let mut load = HashMap::new();
        for slot in slots {
            if let Ok(slot) = slot.try_lock()
                && let Some(room) = slot.as_ref()
            {
                *load.entry(room.janus.url().to_owned()).or_insert(0) += 1;
            }
        }
        load
    }
}

/// Waits for the connection to `janus` to close (Janus stopped, crashed or went out
/// of reach), then moves the rooms it held: each one's place there is forgotten and
/// its members are told `sfu_started` again, so that they publish afresh; the first
/// offer opens the room on another instance (this one is tried again only if it
/// answers). A room going back to a mesh is only forgotten.
async fn move_rooms_when_closed(janus: Arc<Janus>, rooms: Rooms, tell: Arc<dyn Tell>) {
    janus.closed().await;
    let slots: Vec<(RoomId, RoomSlot)> = rooms
        .lock()
        .await
        .iter()
        .map(|(room, slot)| (room.clone(), Arc::clone(slot)))
        .collect();
    for (room, slot) in slots {
        let mut held = slot.lock().await;
        let Some(lost) = held.take_if(|sfu_room| Arc::ptr_eq(&sfu_room.janus, &janus)) else {
            continue;
        };
        if !tell.on_sfu(&room) {
            // Going back to a mesh: its members' streams there just end.
            tracing::info!(%room, janus = janus.url(), "the SFU instance went as the room left it");
            continue;
        }
        tracing::warn!(%room, janus = janus.url(), "the SFU instance went; the room moves");
        for peer in lost.members.keys() {
            tell.tell(&room, peer, ServerMessage::SfuStarted);
        }
    }
}

/// One member's upstreams (the one it has now, and any that replaces it), watched.
struct Upstream {
    slot: RoomSlot,
    room: RoomId,
    peer: PeerId,
}

impl Upstream {
    /// Waits for Janus to say that the member's upstream is up (`webrtcup`: only then
    /// can others subscribe to its feed), then subscribes the member and the others to
    /// each other; until the member's session ends.
    async fn watch(self, mut notices: mpsc::UnboundedReceiver<Value>, tell: Arc<dyn Tell>) {
        while let Some(notice) = notices.recv().await {
            if notice["janus"] != "webrtcup" {
                continue;
            }
            let mut held = self.slot.lock().await;
            let Some(sfu_room) = held.as_mut() else {
                return;
            };
            let upstream = sfu_room
                .members
                .get(&self.peer)
                .and_then(|member| member.publisher)
                .map(|(handle, _)| handle);
            if upstream != notice["sender"].as_u64() {
                continue;
            }
            if let Err(error) = sfu_room
                .upstream_up(&self.room, &self.peer, tell.as_ref())
                .await
            {
                tracing::warn!(%error, room = %self.room, peer = %self.peer, "SFU subscriptions failed");
                tell.tell(
                    &self.room,
                    &self.peer,
                    ServerMessage::Error {
                        code: ErrorCode::SfuFailed,
                        message: error.to_string(),
                    },
                );
            }
        }
    }
}

impl SfuRoom {
    /// Publishes `peer`'s offer on a fresh handle (one it published before goes, and
    /// the others' subscriptions to it) and sends it Janus's answer. A new member's
    /// session notices come back, for [`Upstream::watch`].
    async fn publish(
        &mut self,
        room: &RoomId,
        peer: &PeerId,
        sdp: String,
        tell: &dyn Tell,
    ) -> Result<Option<mpsc::UnboundedReceiver<Value>>, SfuError> {
        if !self.members.contains_key(peer) {
            let (session, notices) = self.janus.session().await?;
            self.members.insert(
                peer.clone(),
                Member {
                    session,
                    notices: Some(notices),
                    publisher: None,
                    up: false,
                    subscriptions: HashMap::new(),
                },
            );
        }
        let (number, pin) = (self.number, self.pin.clone());
        let previous = self.members.get_mut(peer).and_then(|member| {
            member.up = false;
            member.publisher.take()
        });
        if let Some((previous, _)) = previous {
            // Its upstream starts over (it failed): the old feed goes with its handle.
            for (id, member) in &mut self.members {
                let handle = if id == peer {
                    Some(previous)
                } else {
                    member.subscriptions.remove(peer).map(|s| s.handle)
                };
                if let Some(handle) = handle {
                    let _ = member.session.detach(handle).await;
                }
            }
        }
        let member = self
            .members
            .get_mut(peer)
            .ok_or_else(|| SfuError::NoSuchStream("upstream".to_owned()))?;
        let handle = member.session.attach_videoroom().await?;
        member.publisher = Some((handle, None));
        let join = json!({
            "request": "joinandconfigure",
            "ptype": "publisher",
            "room": number,
            "pin": pin,
            "display": peer.to_string(),
        });
        let offer = Some(json!({"type": "offer", "sdp": sdp}));
        let reply = member.session.message(handle, join, offer).await?;
        member.publisher = Some((handle, reply.data["id"].as_u64()));
        let notices = member.notices.take();
        tell_answer(room, peer, "publish", &reply, tell)?;
        Ok(notices)
    }

    /// Renegotiates `peer`'s upstream (a `reoffer`: its tracks changed), and offers the
    /// others its streams afresh.
    async fn renegotiate(
        &mut self,
        room: &RoomId,
        peer: &PeerId,
        sdp: String,
        tell: &dyn Tell,
    ) -> Result<(), SfuError> {
        let upstream = self
            .members
            .get(peer)
            .and_then(|member| Some((member, member.publisher?.0)));
        let Some((member, handle)) = upstream else {
            return Err(SfuError::NoSuchStream("upstream".to_owned()));
        };
        let offer = Some(json!({"type": "offer", "sdp": sdp}));
        let reply = member
            .session
            .message(handle, json!({"request": "configure"}), offer)
            .await?;
        tell_answer(room, peer, "configure", &reply, tell)?;
        // Janus does not add a stream the publisher added (its shared screen) to the
        // subscriptions it has: each is made afresh, offering every stream there is now.
        let mut viewers: Vec<PeerId> = self
            .members
            .iter()
            .filter(|(_, member)| member.subscriptions.contains_key(peer))
            .map(|(viewer, _)| viewer.clone())
            .collect();
        viewers.sort();
        for viewer in viewers {
            self.resubscribe(room, &viewer, peer, tell).await?;
        }
        Ok(())
    }

    /// `peer`'s upstream is up: subscribes it to every feed that is up, and everyone
    /// up to its feed.
    async fn upstream_up(
        &mut self,
        room: &RoomId,
        peer: &PeerId,
        tell: &dyn Tell,
    ) -> Result<(), SfuError> {
        let Some(member) = self.members.get_mut(peer) else {
            return Ok(());
        };
        member.up = true;
        let up: Vec<(PeerId, u64)> = self
            .members
            .iter()
            .filter(|(_, member)| member.up)
            .filter_map(|(id, member)| Some((id.clone(), member.publisher?.1?)))
            .collect();
        let Some(own_feed) = up.iter().find(|(id, _)| id == peer).map(|(_, feed)| *feed) else {
            return Ok(());
        };
        for (other, feed) in up.iter().filter(|(id, _)| id != peer) {
            self.subscribe(room, peer, other, *feed, tell).await?;
            self.subscribe(room, other, peer, own_feed, tell).await?;
        }
        Ok(())
    }

    /// Drops `viewer`'s subscription to `owner`'s feed and subscribes it again, while
    /// that feed is up (if it is not, its owner's next publish subscribes everyone).
    async fn resubscribe(
        &mut self,
        room: &RoomId,
        viewer: &PeerId,
        owner: &PeerId,
        tell: &dyn Tell,
    ) -> Result<(), SfuError> {
        let feed = self
            .members
            .get(owner)
            .filter(|member| member.up)
            .and_then(|member| member.publisher?.1);
        let Some(member) = self.members.get_mut(viewer) else {
            return Ok(());
        };
        if let Some(subscription) = member.subscriptions.remove(owner) {
            let _ = member.session.detach(subscription.handle).await;
        }
        match feed {
            Some(feed) => self.subscribe(room, viewer, owner, feed, tell).await,
            None => Ok(()),
        }
    }

    /// Subscribes `viewer` to `feed` (`owner`'s) and offers it what Janus offers, unless
    /// it is subscribed already.
    async fn subscribe(
        &mut self,
        room: &RoomId,
        viewer: &PeerId,
        owner: &PeerId,
        feed: u64,
        tell: &dyn Tell,
    ) -> Result<(), SfuError> {
        let (number, pin) = (self.number, self.pin.clone());
        let Some(member) = self.members.get_mut(viewer) else {
            return Ok(());
        };
        if member.subscriptions.contains_key(owner) {
            return Ok(());
        }
        let handle = member.session.attach_videoroom().await?;
        let subscription = Subscription {
            handle,
            video_mid: None,
        };
        member.subscriptions.insert(owner.clone(), subscription);
        let join = json!({
            "request": "join",
            "ptype": "subscriber",
            "room": number,
            "pin": pin,
            "streams": [{"feed": feed}],
        });
        let reply = member.session.message(handle, join, None).await?;
        let offer = reply.sdp("subscribe")?;
        if let Some(subscription) = member.subscriptions.get_mut(owner) {
            subscription.video_mid = video_mid(offer);
        }
        tell.tell(
            room,
            viewer,
            sfu_signal(
                Some(owner.clone()),
                SignalPayload::Offer {
                    sdp: offer.to_owned(),
                },
            ),
        );
        Ok(())
    }

    /// Destroys the VideoRoom on Janus (the members' sessions went before).
    async fn close(self) {
        let destroyed = async {
            let handle = self.admin.attach_videoroom().await?;
            self.admin
                .message(
                    handle,
                    json!({"request": "destroy", "room": self.number, "secret": self.secret}),
                    None,
                )
                .await
        };
        match destroyed.await {
            Ok(_) => tracing::info!(number = self.number, "SFU room closed"),
            Err(error) => tracing::debug!(%error, "the SFU room could not be destroyed"),
        }
    }
}

/// Sends `peer` the answer to its upstream's offer that Janus's `reply` to `request`
/// carries.
fn tell_answer(
    room: &RoomId,
    peer: &PeerId,
    request: &str,
    reply: &JanusReply,
    tell: &dyn Tell,
) -> Result<(), SfuError> {
    let answer = reply.sdp(request)?;
    let payload = SignalPayload::Answer {
        sdp: answer.to_owned(),
    };
    tell.tell(room, peer, sfu_signal(None, payload));
    Ok(())
}

/// The mid of the first video section of `sdp`.
fn video_mid(sdp: &str) -> Option<String> {
    let mut in_video = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
        } else if in_video && let Some(mid) = line.strip_prefix("a=mid:") {
            return Some(mid.trim().to_owned());
        }
    }
    None
}

/// The message carrying `payload` about `feed` (none: the upstream) to a member.
fn sfu_signal(feed: Option<PeerId>, payload: SignalPayload) -> ServerMessage {
    ServerMessage::SfuSignal {
        feed,
        data: serde_json::to_value(&payload).unwrap_or_default(),
    }
}

/// A random number below 2^53 (Janus's room numbers stay exact in JavaScript).
fn random_u53() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap_or_default();
    u64::from_le_bytes(bytes) >> 11
}

/// 128 random bits, as hex.
fn random_secret() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap_or_default();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sfu_addresses_are_janus_websockets_with_a_host() {
        assert_eq!(
            parse_janus_url("janus+ws://10.0.0.5:8188"),
            Ok("ws://10.0.0.5:8188".to_owned())
        );
        assert_eq!(
            parse_janus_url("janus+wss://sfu.example.org/janus"),
            Ok("wss://sfu.example.org/janus".to_owned())
        );
        for wrong in [
            "ws://10.0.0.5:8188",
            "janus+http://h:1",
            "janus+ws://",
            "janus",
        ] {
            assert!(parse_janus_url(wrong).is_err(), "{wrong}");
        }
    }
}
