//! The `space` part of a lobby bot's `--stats-json`: whom its media opened and closed
//! with and how far away they were, how soon their first frame came, and how many
//! poses it received from each.

use std::collections::{BTreeMap, HashMap};

use bevy::platform::time::Instant;
use bevy::prelude::*;
use serde::Serialize;

use crate::call::{CallNotice, CallReport, Participant, PoseTrack, VideoFeed};
use crate::signaling::protocol::{DisplayName, PeerId};

/// A peer that came within earshot.
#[derive(Debug, Clone, Serialize)]
pub struct MediaOpened {
    /// Who.
    pub peer_id: PeerId,
    /// Their name.
    pub name: Option<DisplayName>,
    /// How far they were when they crossed, in metres.
    pub distance_m: f32,
    /// From the crossing to their first decoded video frame; `None` until it came.
    pub ms_to_first_frame: Option<f64>,
}

/// A peer that went out of earshot (plus the margin).
#[derive(Debug, Clone, Serialize)]
pub struct MediaClosed {
    /// Who.
    pub peer_id: PeerId,
    /// How far they were when they crossed, in metres.
    pub distance_m: f32,
}

/// What a lobby bot saw of the space.
#[derive(Resource, Debug, Default, Serialize)]
pub struct SpaceReport {
    /// The most peer connections held at once.
    pub max_media_connections: usize,
    /// Everyone who came near, in order.
    pub media_opened: Vec<MediaOpened>,
    /// Everyone who went away, in order.
    pub media_closed: Vec<MediaClosed>,
    /// Poses received, per peer.
    pub poses_received: BTreeMap<PeerId, u64>,
    /// Openings waiting for their first frame: the entry, when, and the frames shown
    /// before.
    #[serde(skip)]
    awaiting_frames: HashMap<PeerId, (usize, Instant, u64)>,
}

/// Follows the lobby: crossings from the notices, first frames and poses from the
/// participants.
pub(super) fn follow_space(
    mut report: ResMut<SpaceReport>,
    call: Res<CallReport>,
    mut notices: MessageReader<CallNotice>,
    people: Query<(&Participant, &VideoFeed, &PoseTrack)>,
) {
    let now = Instant::now();
    report.max_media_connections = call.most_media_connections;
    let frames_of = |peer: &PeerId| {
        people
            .iter()
            .find(|(participant, ..)| &participant.peer_id == peer)
            .map_or(0, |(_, feed, _)| feed.frames_shown)
    };
    for notice in notices.read() {
        let CallNotice::Nearby {
            peer_id,
            distance_m,
            near,
        } = notice
        else {
            continue;
        };
        if *near {
            let index = report.media_opened.len();
            report.media_opened.push(MediaOpened {
                peer_id: peer_id.clone(),
                name: call.peers.get(peer_id).map(|(name, _)| name.clone()),
                distance_m: *distance_m,
                ms_to_first_frame: None,
            });
            let shown = frames_of(peer_id);
            report
                .awaiting_frames
                .insert(peer_id.clone(), (index, now, shown));
        } else {
            report.awaiting_frames.remove(peer_id);
            report.media_closed.push(MediaClosed {
                peer_id: peer_id.clone(),
                distance_m: *distance_m,
            });
        }
    }
    for (participant, feed, track) in &people {
        report
            .poses_received
            .insert(participant.peer_id.clone(), track.received);
        let arrived = report
            .awaiting_frames
            .get(&participant.peer_id)
            .filter(|(_, _, before)| feed.frames_shown > *before)
            .copied();
        if let Some((index, crossed, _)) = arrived {
            report.awaiting_frames.remove(&participant.peer_id);
            report.media_opened[index].ms_to_first_frame =
                Some(now.saturating_duration_since(crossed).as_secs_f64() * 1000.0);
        }
    }
}
