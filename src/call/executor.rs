//! What both call drivers share: the room state machine, the app's view of it, the
//! signaling connection, and carrying out the room's actions. A driver supplies its
//! target's media ([`CallMedia`]: the native encoders and webrtc-rs connections, or the
//! browser's camera and `RTCPeerConnection`s) and its own event loop.

use std::future::Future;
use std::time::Duration;

use bevy::platform::time::Instant;
use crossbeam_channel::Sender;

use super::room::{Room, RoomAction, RoomSettings, Route};
use super::roster::Roster;
use super::{CallError, CallEvent};
use crate::config::ClientConfig;
use crate::media::{FrameSender, ShareTarget};
use crate::rtc::{IceTransportPolicy, Role, RtcConfig, Sending};
use crate::signaling::payload::SignalPayload;
use crate::signaling::protocol::{DisplayName, PeerId, Pose, RoomSummary};
use crate::signaling::{LinkEvent, SignalingError, SignalingLink};

/// A target's media side of a call, as [`CallCore::carry_out`] drives it.
pub(super) trait CallMedia {
    /// A reconnection attempt in flight (wait, then connect).
    type Attempt: Future<Output = Result<SignalingLink, SignalingError>> + Unpin;

    /// Opens a signaling connection.
    fn connect_signaling(&mut self) -> impl Future<Output = Result<SignalingLink, SignalingError>>;

    /// A reconnection attempt: after `after`, open a signaling connection.
    fn reconnect(&self, after: Duration) -> Self::Attempt;

    /// Asks for the public rooms over a connection of its own, in the background,
    /// reporting to `events`.
    fn list_rooms_apart(&self, events: Sender<CallEvent>);

    /// Starts our media; true when it runs without a microphone.
    fn start_media(
        &mut self,
        start: MediaStart<'_>,
    ) -> impl Future<Output = Result<bool, CallError>>;

    /// Applies our switches to what we send.
    fn apply_media(&self, state: super::MediaState);

    /// Sends our pose to every connected peer on the pose data channel.
    fn share_pose(&self, pose: Pose);

    /// Shows `target` to everyone in the call (in this call and the next), or stops
    /// sharing (`None`); false when the share could not start (told to `roster`).
    fn share_screen(
        &mut self,
        target: Option<ShareTarget>,
        roster: &Roster,
    ) -> impl Future<Output = bool>;

    /// Closes every connection (their last figures to `roster`) and stops our media.
    fn stop_media(&mut self, roster: &Roster) -> impl Future<Output = ()>;

    /// Opens a peer connection.
    fn connect(&mut self, opening: Opening<'_>) -> impl Future<Output = Result<(), CallError>>;

    /// Hands a payload to connection `epoch` to `peer`.
    fn deliver(
        &mut self,
        peer: &PeerId,
        epoch: u64,
        payload: SignalPayload,
    ) -> impl Future<Output = ()>;

    /// Closes connection `epoch` to `peer`, replaced by a fresh one.
    fn retire(&mut self, peer: &PeerId, epoch: u64) -> impl Future<Output = ()>;

    /// Closes the connection to a peer that is gone (its last figures to `roster`).
    fn close_peer(&mut self, peer: &PeerId, roster: &Roster) -> impl Future<Output = ()>;

    /// Opens a stream through the SFU: our upstream (`feed` none) or our downstream of
    /// `feed`'s media, replacing the one before.
    fn open_sfu(&mut self, opening: SfuOpening<'_>) -> impl Future<Output = Result<(), CallError>>;

    /// Hands a payload from the SFU to stream `epoch`.
    fn deliver_sfu(
        &mut self,
        feed: Option<&PeerId>,
        epoch: u64,
        payload: SignalPayload,
    ) -> impl Future<Output = ()>;

    /// Closes our downstream of `feed`'s media (its last figures to `roster`).
    fn close_sfu(&mut self, feed: Option<&PeerId>, roster: &Roster) -> impl Future<Output = ()>;
}

/// A stream through the SFU to open.
pub(super) struct SfuOpening<'a> {
    /// Whose media the downstream brings; none for our upstream.
    pub feed: Option<&'a PeerId>,
    /// Our own id (the upstream's name).
    pub self_id: &'a PeerId,
    /// Which of the successive streams it is.
    pub epoch: u64,
    /// Its settings.
    pub rtc: &'a RtcConfig,
    /// Where the member's decoded video goes (the upstream brings none).
    pub frames: Option<FrameSender>,
}

impl<'a> SfuOpening<'a> {
    /// Whom the stream reports as (the member, or us for our upstream), our side of
    /// its offer/answer (we offer our upstream; the SFU offers downstreams), and its
    /// route.
    pub fn side(&self) -> (&'a PeerId, Role, Route) {
        match self.feed {
            None => (self.self_id, Role::Offerer, Route::SfuUp),
            Some(owner) => (owner, Role::Answerer, Route::SfuDown),
        }
    }
}

/// What starting our media needs to know.
pub(super) struct MediaStart<'a> {
    /// Our name, shown where a placeholder stands for the camera (the browser has
    /// none: it sends what the camera gives).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub name: &'a DisplayName,
    /// Where to report problems.
    pub roster: &'a Roster,
    /// The connections' settings, whose TURN servers the native driver checks (the
    /// browser reports refusals of its own).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub rtc: &'a RtcConfig,
}

/// A peer connection to open.
pub(super) struct Opening<'a> {
    /// The peer.
    pub peer: &'a PeerId,
    /// Which of the successive connections to the peer it is.
    pub epoch: u64,
    /// Our side of its offer/answer.
    pub role: Role,
    /// Its settings.
    pub rtc: &'a RtcConfig,
    /// Where the peer's decoded video goes.
    pub frames: FrameSender,
}

/// What happened to a call's signaling.
pub(super) enum SignalingNews {
    /// The connection said this.
    Said(LinkEvent),
    /// A reconnection attempt ended.
    Attempted(Result<SignalingLink, SignalingError>),
}

/// The part of a call driver that is the same on every target.
pub(super) struct CallCore<A> {
    /// The room protocol.
    pub room: Room,
    /// The app's view of the room.
    pub roster: Roster,
    /// The peer connections' settings (the server's TURN credentials once welcomed).
    pub rtc: RtcConfig,
    link: Option<SignalingLink>,
    attempt: Option<A>,
    /// The connection count the app was told last.
    told_connections: usize,
    /// How our camera goes out, as the app was told last.
    told_upstreams: (bool, usize),
}

impl<A: Future<Output = Result<SignalingLink, SignalingError>> + Unpin> CallCore<A> {
    /// A call as `config` says, reporting to `events`.
    pub fn new(config: &ClientConfig, events: Sender<CallEvent>) -> Self {
        let settings = RoomSettings {
            name: config.name.clone(),
            passcode: config.passcode.clone(),
            ice_servers: config.ice_servers.clone(),
            nearby: config.nearby,
            share: config.share.clone(),
        };
        Self {
            room: Room::new(settings, Instant::now()),
            roster: Roster::new(events),
            rtc: RtcConfig {
                ice_servers: config.ice_servers.clone(),
                ice_transport_policy: config.ice_transport_policy,
                ..RtcConfig::default()
            },
            link: None,
            attempt: None,
            told_connections: 0,
            told_upstreams: (false, 0),
        }
    }

    /// The next thing that happens to signaling: the connection says something, or a
    /// reconnection attempt ends. Never, without either.
    pub async fn next_signaling(&mut self) -> SignalingNews {
        let Self { link, attempt, .. } = self;
        let said = async {
            match link {
                Some(link) => match link.incoming.recv().await {
                    Some(event) => event,
                    // It said `Closed` before ending.
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let attempted = async {
            match attempt {
                Some(attempt) => attempt.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            event = said => SignalingNews::Said(event),
            outcome = attempted => SignalingNews::Attempted(outcome),
        }
    }

    /// What the signaling connection has said and the room has not heard yet, without
    /// waiting: a page too busy to keep up hears all of it in one turn of its loop.
    #[cfg(target_arch = "wasm32")]
    pub fn said_already(&mut self) -> Option<SignalingNews> {
        let event = self.link.as_mut()?.incoming.try_recv().ok()?;
        Some(SignalingNews::Said(event))
    }

    /// Hands what happened to signaling to the room.
    pub fn on_signaling(&mut self, news: SignalingNews) {
        match news {
            SignalingNews::Said(LinkEvent::Message(message)) => {
                self.room.server_message(message, Instant::now());
            }
            #[cfg(not(target_arch = "wasm32"))]
            SignalingNews::Said(LinkEvent::OfferAhead { peer }) => {
                self.room.offer_ahead(peer, Instant::now());
            }
            SignalingNews::Said(LinkEvent::Closed { reason }) => {
                self.link = None;
                self.room.link_closed(reason, Instant::now());
            }
            SignalingNews::Attempted(Ok(link)) => {
                self.attempt = None;
                self.link = Some(link);
                self.room.link_opened();
            }
            SignalingNews::Attempted(Err(error)) => {
                self.attempt = None;
                tracing::debug!(%error, "signaling still unreachable");
                self.room.reconnect_failed();
            }
        }
    }

    /// Does what the room asked for with `media`, until it asks for nothing more.
    pub async fn carry_out<M: CallMedia<Attempt = A>>(&mut self, media: &mut M) {
        while let Some(action) = self.room.poll_action() {
            match action {
                RoomAction::OpenLink(request) => match media.connect_signaling().await {
                    Ok(link) => {
                        let _ = link.outgoing.send(request);
                        self.link = Some(link);
                        self.room.link_opened();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "signaling connection failed");
                        self.room.link_failed(error.to_string());
                    }
                },
                RoomAction::Reconnect { after } => self.attempt = Some(media.reconnect(after)),
                RoomAction::Send(message) => {
                    if let Some(link) = &self.link {
                        let _ = link.outgoing.send(message);
                    }
                }
                RoomAction::CloseLink => {
                    self.link = None;
                    self.attempt = None;
                }
                RoomAction::ListRoomsApart => media.list_rooms_apart(self.roster.events()),
                RoomAction::UseIceServers(servers) => self.rtc.ice_servers = servers,
                RoomAction::StartMedia => {
                    let start = MediaStart {
                        name: self.room.name(),
                        roster: &self.roster,
                        rtc: &self.rtc,
                    };
                    match media.start_media(start).await {
                        Ok(microphone_missing) => {
                            self.room.media_started(microphone_missing, Instant::now());
                        }
                        Err(error) => self.room.media_failed(error),
                    }
                }
                RoomAction::ApplyMedia(state) => media.apply_media(state),
                RoomAction::SharePose(pose) => media.share_pose(pose),
                RoomAction::ShareScreen(target) => {
                    if !media.share_screen(target, &self.roster).await {
                        // The share could not start: the wall goes back.
                        self.room
                            .command(super::CallCommand::ShareScreen(None), Instant::now());
                    }
                }
                RoomAction::StopMedia => media.stop_media(&self.roster).await,
                RoomAction::Connect {
                    peer,
                    epoch,
                    role,
                    relay_only,
                } => {
                    let frames = self.roster.frames(&peer);
                    let relayed;
                    let rtc = if relay_only {
                        relayed = RtcConfig {
                            ice_transport_policy: IceTransportPolicy::Relay,
                            ..self.rtc.clone()
                        };
                        &relayed
                    } else {
                        &self.rtc
                    };
                    let opening = Opening {
                        peer: &peer,
                        epoch,
                        role,
                        rtc,
                        frames,
                    };
                    let connected = media.connect(opening).await;
                    if let Err(error) = connected {
                        self.room.connect_failed(&peer, epoch, error);
                    }
                }
                RoomAction::Deliver {
                    peer,
                    epoch,
                    payload,
                } => media.deliver(&peer, epoch, payload).await,
                RoomAction::Retire { peer, epoch } => media.retire(&peer, epoch).await,
                RoomAction::Close(peer) => media.close_peer(&peer, &self.roster).await,
                RoomAction::OpenSfu { feed, epoch } => {
                    let Some(self_id) = self.roster.self_id() else {
                        continue;
                    };
                    // Our upstream carries the camera as simulcast (receivers pick a
                    // layer); a downstream only brings its member's media.
                    let rtc = RtcConfig {
                        sending: if feed.is_none() {
                            Sending::Simulcast
                        } else {
                            Sending::Nothing
                        },
                        ..self.rtc.clone()
                    };
                    let opening = SfuOpening {
                        feed: feed.as_ref(),
                        self_id: &self_id,
                        epoch,
                        rtc: &rtc,
                        frames: feed.as_ref().map(|owner| self.roster.frames(owner)),
                    };
                    if let Err(error) = media.open_sfu(opening).await {
                        tracing::warn!(%error, ?feed, "cannot open a stream through the SFU");
                        self.roster.emit(CallEvent::Failed(error));
                    }
                }
                RoomAction::DeliverSfu {
                    feed,
                    epoch,
                    payload,
                } => media.deliver_sfu(feed.as_ref(), epoch, payload).await,
                RoomAction::CloseSfu { feed } => {
                    media.close_sfu(feed.as_ref(), &self.roster).await;
                }
                RoomAction::Joined {
                    room,
                    self_id,
                    peers,
                } => self.roster.joined(room, self_id, peers),
                RoomAction::PeerJoined(info) => self.roster.peer_joined(info),
                RoomAction::Emit(event) => self.roster.room_event(event),
            }
        }
        let connections = self.room.connection_count();
        if connections != self.told_connections {
            self.told_connections = connections;
            self.roster.emit(CallEvent::MediaConnections(connections));
        }
        // The app keeps how the call sent last: none at all is no news (the call
        // ended, or nobody is connected yet).
        let upstreams = self.room.upstreams();
        if upstreams != self.told_upstreams && upstreams.1 > 0 {
            self.told_upstreams = upstreams;
            let (via_sfu, count) = upstreams;
            self.roster.emit(CallEvent::Upstreams { via_sfu, count });
        }
    }
}

/// Tells the app the public rooms a listing found (`None`: it could not be listed).
pub(super) fn report_rooms(events: &Sender<CallEvent>, listed: Option<Vec<RoomSummary>>) {
    match listed {
        Some(rooms) => {
            let _ = events.send(CallEvent::RoomList(rooms));
        }
        None => tracing::debug!("the public rooms could not be listed"),
    }
}
