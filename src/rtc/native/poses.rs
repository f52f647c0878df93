//! The pose data channel natively: an unreliable, unordered SCTP channel negotiated with
//! a fixed id ([`POSE_CHANNEL_ID`]) on both sides, so no in-band announcement is needed
//! and a browser's `RTCDataChannel` with the same id is the other end. Each message is
//! one pose in the 14-byte encoding of [`Pose::to_wire`].

use std::sync::Arc;

use bytes::BytesMut;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::PeerConnection;

use super::shared::Shared;
use super::stack_error;
use crate::rtc::{POSE_CHANNEL_ID, POSE_CHANNEL_LABEL, PeerEvent, RtcError};
use crate::signaling::protocol::Pose;

/// Adds the pose channel to `pc` (before the offer or answer, so the description
/// carries it).
pub(super) async fn open_pose_channel(
    pc: &Arc<dyn PeerConnection>,
) -> Result<Arc<dyn DataChannel>, RtcError> {
    let init = RTCDataChannelInit {
        ordered: false,
        max_retransmits: Some(0),
        negotiated: Some(POSE_CHANNEL_ID),
        ..RTCDataChannelInit::default()
    };
    pc.create_data_channel(POSE_CHANNEL_LABEL, Some(init))
        .await
        .map_err(stack_error("opening the pose channel"))
}

/// Sends `pose` if the channel is open; a pose that cannot go is simply not sent (the
/// next one replaces it).
pub(super) async fn send_pose(channel: &dyn DataChannel, pose: &Pose) {
    if let Err(error) = channel.try_send(BytesMut::from(&pose.to_wire()[..])).await {
        tracing::trace!(%error, "a pose was not sent");
    }
}

/// Reports every pose the peer sends until the channel closes; anything else on it is
/// ignored.
pub(super) async fn receive_poses(shared: Arc<Shared>, channel: Arc<dyn DataChannel>) {
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnMessage(message) => match Pose::from_wire(&message.data) {
                Ok(pose) => shared.emit(PeerEvent::Pose(pose)),
                Err(error) => tracing::debug!(%error, "ignoring a message on the pose channel"),
            },
            DataChannelEvent::OnClose => return,
            _ => {}
        }
    }
}
