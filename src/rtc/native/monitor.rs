//! Watching a live connection: the remote hanging up, and the statistics reported every
//! few seconds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ::rtc::peer_connection::transport::{RTCDtlsTransportState, RTCIceServerTransportProtocol};
use webrtc::peer_connection::{
    PeerConnection, RTCIceCandidateType, RTCStatsReport, RTCStatsReportEntry, StatsSelector,
};
use webrtc::rtp_transceiver::RtpSender;

use super::shared::Shared;
use crate::rtc::ice::{CandidateKind, CandidatePair, PairProtocol};
use crate::rtc::{FeedbackCounts, PeerConnectionState, PeerEvent};

/// How often a connected session reports [`PeerEvent::Stats`].
const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// How often a connected session checks whether the remote hung up.
const MONITOR_INTERVAL: Duration = Duration::from_millis(100);

/// Whether the remote closed the DTLS transport (it called `close()`: a `close_notify`).
async fn remote_closed(sender: &Arc<dyn RtpSender>) -> bool {
    let Ok(Some(transport)) = sender.transport().await else {
        return false;
    };
    matches!(transport.state().await, Ok(RTCDtlsTransportState::Closed))
}

/// Watches a live connection: reports a remote hang-up as [`PeerConnectionState::Closed`]
/// within [`MONITOR_INTERVAL`] (ICE alone would only notice after its timeouts), and reports
/// [`PeerEvent::Stats`] every [`STATS_INTERVAL`].
pub(super) async fn monitor(
    shared: Arc<Shared>,
    pc: Arc<dyn PeerConnection>,
    sender: Arc<dyn RtpSender>,
) {
    let mut ticker = tokio::time::interval(MONITOR_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_stats = Instant::now();
    loop {
        ticker.tick().await;
        if !shared.connected.load(Ordering::Relaxed) {
            continue;
        }
        if remote_closed(&sender).await {
            shared.set_connected(false);
            shared.emit_state(PeerConnectionState::Closed);
            return;
        }
        if last_stats.elapsed() < STATS_INTERVAL {
            continue;
        }
        last_stats = Instant::now();
        let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
        let mut rtt_ms = None;
        let (mut packets_lost, mut packets_received, mut bytes_received, mut bytes_sent) =
            (0u64, 0u64, 0u64, 0u64);
        let mut feedback = FeedbackCounts {
            nacks_received: shared.received_feedback.nacks.load(Ordering::Relaxed),
            plis_received: shared
                .received_feedback
                .keyframe_requests
                .load(Ordering::Relaxed),
            ..FeedbackCounts::default()
        };
        let candidate_pair = selected_pair(&report);
        for entry in report.iter() {
            match entry {
                RTCStatsReportEntry::IceCandidatePair(pair)
                    if pair.nominated && pair.current_round_trip_time > 0.0 =>
                {
                    rtt_ms = Some(pair.current_round_trip_time * 1000.0);
                }
                RTCStatsReportEntry::InboundRtp(inbound) => {
                    let received = &inbound.received_rtp_stream_stats;
                    packets_lost += received.packets_lost.max(0).unsigned_abs();
                    packets_received += received.packets_received;
                    bytes_received += inbound.bytes_received;
                    feedback.nacks_sent += u64::from(inbound.nack_count);
                    feedback.plis_sent += u64::from(inbound.pli_count);
                }
                RTCStatsReportEntry::OutboundRtp(outbound) => {
                    bytes_sent += outbound.sent_rtp_stream_stats.bytes_sent;
                }
                _ => {}
            }
        }
        shared.emit(PeerEvent::Stats {
            rtt_ms,
            candidate_pair,
            packets_lost,
            packets_received,
            bytes_received,
            bytes_sent,
            feedback,
        });
    }
}

/// The candidate pair the transport selected (else the nominated one that succeeded),
/// from a stats report.
fn selected_pair(report: &RTCStatsReport) -> Option<CandidatePair> {
    let selected_id = report
        .transport()
        .map(|transport| transport.selected_candidate_pair_id.as_str())
        .filter(|id| !id.is_empty());
    let pair = report.candidate_pairs().find(|pair| match selected_id {
        Some(id) => pair.stats.id == id,
        None => pair.nominated,
    })?;
    // webrtc-rs names a pair's candidates by their bare ids but files their stats
    // under a prefixed one.
    let candidate = |id: &str, prefix: &str| match report
        .get(id)
        .or_else(|| report.get(&format!("{prefix}{id}")))
    {
        Some(RTCStatsReportEntry::LocalCandidate(c) | RTCStatsReportEntry::RemoteCandidate(c)) => {
            Some(c)
        }
        _ => None,
    };
    let kind = |typ: RTCIceCandidateType| match typ {
        RTCIceCandidateType::Host => Some(CandidateKind::Host),
        RTCIceCandidateType::Srflx => Some(CandidateKind::Srflx),
        RTCIceCandidateType::Prflx => Some(CandidateKind::Prflx),
        RTCIceCandidateType::Relay => Some(CandidateKind::Relay),
        _ => None,
    };
    let local = candidate(&pair.local_candidate_id, "RTCLocalIceCandidate_")?;
    let local_kind = kind(local.candidate_type)?;
    // A remote candidate learnt from the checks (peer-reflexive) was never signaled.
    let remote_kind = candidate(&pair.remote_candidate_id, "RTCRemoteIceCandidate_")
        .map_or(Some(CandidateKind::Prflx), |remote| {
            kind(remote.candidate_type)
        })?;
    // For a relayed candidate, how we reach the TURN server (webrtc-rs: always UDP).
    let protocol = match local_kind {
        CandidateKind::Relay => match local.relay_protocol {
            RTCIceServerTransportProtocol::Tcp => PairProtocol::Tcp,
            RTCIceServerTransportProtocol::Tls => PairProtocol::Tls,
            _ => PairProtocol::Udp,
        },
        _ => PairProtocol::parse(&local.protocol)?,
    };
    Some(CandidatePair {
        local: local_kind,
        remote: remote_kind,
        protocol,
    })
}
