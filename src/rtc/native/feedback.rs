//! RTCP feedback: an interceptor that lets inbound PLI/FIR reach the application and reports
//! the loss that receiver reports describe.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ::rtc::interceptor::{Attribute, Interceptor, Packet as ChainPacket, StreamInfo, TaggedPacket};
use ::rtc::rtcp;
use ::rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use ::rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use ::rtc::rtcp::receiver_report::ReceiverReport;
use ::rtc::rtcp::reception_report::ReceptionReport;
use ::rtc::rtcp::sender_report::SenderReport;
use ::rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use ::rtc::sansio::Protocol;
use tokio::sync::mpsc::UnboundedSender;

use crate::rtc::PeerEvent;

/// Where our RTCP feedback interceptor sits: application-most, after every stock one.
pub(super) const FEEDBACK_TAP_SLOT: usize = 14_000;

/// Marks inbound PLI and FIR for delivery to the application, and turns each reception
/// report about our video into a [`PeerEvent::ReceiverReport`] (for congestion control).
/// webrtc-rs ends inbound RTCP at the end of the interceptor chain unless an interceptor
/// vouches for it; other RTCP passes through unmarked and stops there as usual.
pub(super) struct FeedbackTap {
    /// Our video SSRC: the reports about it are the ones congestion control wants.
    video_ssrc: u32,
    events: UnboundedSender<PeerEvent>,
    /// NACKs and keyframe requests the peer sent us, counted here because webrtc-rs's
    /// statistics do not count inbound feedback.
    received: Arc<ReceivedFeedback>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl FeedbackTap {
    /// A tap reporting loss on `video_ssrc` to `events`, counting into `received`.
    pub(super) fn new(
        video_ssrc: u32,
        events: UnboundedSender<PeerEvent>,
        received: Arc<ReceivedFeedback>,
    ) -> Self {
        Self {
            video_ssrc,
            events,
            received,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    /// Reports the loss in each reception report about our video (a peer that also sends
    /// may put them in its sender reports).
    fn report_loss(&self, packet: &dyn rtcp::Packet) {
        let any = packet.as_any();
        let reports: &[ReceptionReport] = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            &rr.reports
        } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
            &sr.reports
        } else {
            return;
        };
        for report in reports.iter().filter(|r| r.ssrc == self.video_ssrc) {
            let _ = self.events.send(PeerEvent::ReceiverReport {
                fraction_lost: f64::from(report.fraction_lost) / 256.0,
            });
        }
    }
}

/// Whether an RTCP packet asks for a key frame (PLI or FIR).
pub(super) fn is_keyframe_request(packet: &dyn rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Loss-recovery requests a peer sent us.
#[derive(Default)]
pub(super) struct ReceivedFeedback {
    /// NACKs received.
    pub(super) nacks: AtomicU64,
    /// PLIs and FIRs received.
    pub(super) keyframe_requests: AtomicU64,
}

impl ReceivedFeedback {
    fn count(&self, packet: &dyn rtcp::Packet) {
        if packet.as_any().is::<TransportLayerNack>() {
            self.nacks.fetch_add(1, Ordering::Relaxed);
        } else if is_keyframe_request(packet) {
            self.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let ChainPacket::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                self.report_loss(packet.as_ref());
                self.received.count(packet.as_ref());
            }
            let requests: Vec<Box<dyn rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_keyframe_request(p.as_ref()))
                .cloned()
                .collect();
            if !requests.is_empty() {
                msg.message.packet = ChainPacket::Rtcp(requests);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for FeedbackTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
