//! Receive statistics per remote peer: accumulated by the receive path, snapshotted
//! about once a second into a [`CallStats`] component (and the bot's `--stats-json`).

use std::collections::VecDeque;
use std::time::Instant;

use bevy::prelude::Component;
use serde::Serialize;

use super::analysis::{dominant_frequency, rms_level};
use super::frame::{AUDIO_SAMPLE_RATE, AudioFrame};
use super::synthetic::Stamp;
use crate::rtc::{CandidatePair, FeedbackCounts};

/// Decoded audio kept for the tone and level figures (about 85 ms at 48 kHz).
const AUDIO_WINDOW: usize = 4096;
/// Samples in the level window (50 ms at 48 kHz).
const LEVEL_WINDOW: usize = 2400;
/// Latency samples kept; past this the percentiles describe the first part of the call.
const MAX_LATENCY_SAMPLES: usize = 200_000;
/// A gap between two decoded frames longer than this is a freeze (a viewer notices it;
/// at 30 fps it is six missing frames).
pub const FREEZE_THRESHOLD_MS: f64 = 200.0;

/// What we receive from one remote peer, as last measured.
#[derive(Component, Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallStats {
    /// Video codec in use.
    pub video_codec: &'static str,
    /// Size of the last decoded frame.
    pub width: u32,
    /// Size of the last decoded frame.
    pub height: u32,
    /// Frames decoded since the peer arrived.
    pub frames_decoded: u64,
    /// Frames that never arrived: gaps in the stamped sequence numbers, or (for peers
    /// that do not stamp) frames dropped as incomplete.
    pub frames_lost: u64,
    /// Frames that failed to decode.
    pub decode_errors: u64,
    /// Decoded frames per second over the last interval.
    pub fps: f64,
    /// Received video payload rate over the last interval.
    pub video_kbps: f64,
    /// Video payload received since the peer arrived, in bytes.
    pub video_bytes_received: u64,
    /// From the later of our joining and the peer's arrival to its first decoded frame.
    pub first_frame_ms: Option<f64>,
    /// Where that time went: the steps of the connection, from the same start.
    pub join: JoinTimeline,
    /// Capture-to-decoded latency, median (peers that stamp their frames only).
    pub latency_ms_p50: Option<f64>,
    /// Capture-to-decoded latency, 95th percentile.
    pub latency_ms_p95: Option<f64>,
    /// Opus packets received.
    pub audio_packets: u64,
    /// Strongest frequency in the last ~85 ms of decoded audio.
    pub audio_tone_hz: Option<f32>,
    /// RMS level of the last 50 ms of decoded audio, 0 to 1.
    pub audio_level: f32,
    /// Round-trip time of the connection.
    pub rtt_ms: Option<f64>,
    /// The ICE candidate pair the media travels over (host, srflx, relay; UDP, TCP).
    pub candidate_pair: Option<CandidatePair>,
    /// RTP packets lost, all streams.
    pub packets_lost: u64,
    /// RTP packets received, all streams.
    pub packets_received: u64,
    /// Longest time between two decoded frames since the first one.
    pub longest_frame_gap_ms: f64,
    /// Time spent in freezes: the sum of the gaps between decoded frames longer than
    /// [`FREEZE_THRESHOLD_MS`], each counted whole.
    pub frozen_ms: f64,
    /// How many such freezes.
    pub freezes: u64,
    /// When the size of the decoded frames changed (the first frame included), the
    /// newest [`MAX_SIZE_CHANGES`]: through the SFU, a switch of simulcast layer.
    pub size_changes: Vec<SizeChange>,
    /// The screen the peer shares, while it does.
    pub screen: Option<ScreenStats>,
    /// Loss-recovery requests on the connection, both ways.
    #[serde(flatten)]
    pub feedback: FeedbackCounts,
}

/// Size changes kept in [`CallStats::size_changes`].
pub const MAX_SIZE_CHANGES: usize = 8;

/// A change of the size of a peer's decoded frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SizeChange {
    /// When the first frame of the new size was decoded, in milliseconds since the UNIX
    /// epoch.
    pub at_unix_ms: u64,
    /// Its width.
    pub width: u32,
    /// Its height.
    pub height: u32,
}

impl CallStats {
    /// Whether the measured connection brought anything from the peer (an RTP packet).
    pub fn received_any(&self) -> bool {
        self.packets_received > 0 || self.audio_packets > 0
    }
}

/// What we receive of a peer's shared screen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ScreenStats {
    /// Size of the last decoded frame.
    pub width: u32,
    /// Size of the last decoded frame.
    pub height: u32,
    /// Frames decoded since the share started.
    pub frames_decoded: u64,
    /// Frames that failed to decode.
    pub decode_errors: u64,
    /// Decoded frames per second over the last interval.
    pub fps: f64,
    /// Received payload rate over the last interval.
    pub kbps: f64,
}

impl ScreenStats {
    /// The screen's figures from the statistics its decoder keeps.
    pub fn of(stats: &CallStats) -> Self {
        Self {
            width: stats.width,
            height: stats.height,
            frames_decoded: stats.frames_decoded,
            decode_errors: stats.decode_errors,
            fps: stats.fps,
            kbps: stats.video_kbps,
        }
    }
}

/// When each step of a connection was first reached, in milliseconds from the start of
/// [`CallStats::first_frame_ms`]; `None` until it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct JoinTimeline {
    /// The peer connection was built (sockets bound, tracks added).
    pub session_ms: Option<f64>,
    /// Our offer or answer went out.
    pub description_sent_ms: Option<f64>,
    /// The peer's offer or answer was applied.
    pub description_received_ms: Option<f64>,
    /// ICE and DTLS were done: media could flow.
    pub connected_ms: Option<f64>,
    /// The first complete video frame arrived.
    pub first_video_ms: Option<f64>,
    /// The first key frame arrived (what decoding starts from).
    pub first_keyframe_ms: Option<f64>,
}

/// A step of [`JoinTimeline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinStep {
    /// [`JoinTimeline::session_ms`].
    Session,
    /// [`JoinTimeline::description_sent_ms`].
    DescriptionSent,
    /// [`JoinTimeline::description_received_ms`].
    DescriptionReceived,
    /// [`JoinTimeline::connected_ms`].
    Connected,
    /// [`JoinTimeline::first_video_ms`].
    FirstVideo,
    /// [`JoinTimeline::first_keyframe_ms`].
    FirstKeyframe,
}

impl JoinTimeline {
    /// Each step by name, in the order a connection reaches them.
    pub fn steps(&self) -> [(&'static str, Option<f64>); 6] {
        [
            ("session built", self.session_ms),
            ("description sent", self.description_sent_ms),
            ("description received", self.description_received_ms),
            ("connected", self.connected_ms),
            ("first video frame", self.first_video_ms),
            ("first key frame", self.first_keyframe_ms),
        ]
    }

    /// The field that records `step`.
    fn slot(&mut self, step: JoinStep) -> &mut Option<f64> {
        match step {
            JoinStep::Session => &mut self.session_ms,
            JoinStep::DescriptionSent => &mut self.description_sent_ms,
            JoinStep::DescriptionReceived => &mut self.description_received_ms,
            JoinStep::Connected => &mut self.connected_ms,
            JoinStep::FirstVideo => &mut self.first_video_ms,
            JoinStep::FirstKeyframe => &mut self.first_keyframe_ms,
        }
    }
}

/// The running tallies behind [`CallStats`].
#[derive(Debug)]
pub struct ReceiveStats {
    started: Instant,
    report: CallStats,
    last_seq: Option<u32>,
    /// Wall-clock time of the last decoded frame, in microseconds.
    last_decoded_micros: Option<u64>,
    stamped: bool,
    frames_dropped: u64,
    latencies_ms: Vec<f64>,
    audio: VecDeque<i16>,
    bytes_received: u64,
    last_snapshot: Instant,
    frames_at_last_snapshot: u64,
    bytes_at_last_snapshot: u64,
}

impl ReceiveStats {
    /// Tallies for a peer whose media we started waiting for at `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            report: CallStats {
                video_codec: "VP8",
                ..CallStats::default()
            },
            last_seq: None,
            last_decoded_micros: None,
            stamped: false,
            frames_dropped: 0,
            latencies_ms: Vec::new(),
            audio: VecDeque::with_capacity(AUDIO_WINDOW),
            bytes_received: 0,
            last_snapshot: started,
            frames_at_last_snapshot: 0,
            bytes_at_last_snapshot: 0,
        }
    }

    /// An encoded frame of `bytes` arrived.
    pub fn on_video_received(&mut self, bytes: usize, keyframe: bool) {
        self.bytes_received += bytes as u64;
        self.reached(JoinStep::FirstVideo);
        if keyframe {
            self.reached(JoinStep::FirstKeyframe);
        }
    }

    /// The connection reached `step` now (only the first time counts).
    pub fn reached(&mut self, step: JoinStep) {
        let since_start = self.started.elapsed().as_secs_f64() * 1000.0;
        self.report.join.slot(step).get_or_insert(since_start);
    }

    /// A frame of `width` x `height` was decoded at `now_micros` (wall clock), carrying
    /// `stamp` if the sender stamps its frames.
    pub fn on_video_decoded(
        &mut self,
        width: u32,
        height: u32,
        stamp: Option<Stamp>,
        now_micros: u64,
    ) {
        let report = &mut self.report;
        report.frames_decoded += 1;
        if (report.width, report.height) != (width, height) {
            if report.size_changes.len() == MAX_SIZE_CHANGES {
                report.size_changes.remove(0);
            }
            report.size_changes.push(SizeChange {
                at_unix_ms: now_micros / 1000,
                width,
                height,
            });
        }
        report.width = width;
        report.height = height;
        report
            .first_frame_ms
            .get_or_insert_with(|| self.started.elapsed().as_secs_f64() * 1000.0);
        if let Some(last) = self.last_decoded_micros.replace(now_micros) {
            let gap_ms = now_micros.saturating_sub(last) as f64 / 1000.0;
            report.longest_frame_gap_ms = report.longest_frame_gap_ms.max(gap_ms);
            if gap_ms > FREEZE_THRESHOLD_MS {
                report.frozen_ms += gap_ms;
                report.freezes += 1;
            }
        }
        let Some(stamp) = stamp else { return };
        self.stamped = true;
        if let Some(last) = self.last_seq
            && stamp.seq > last
        {
            report.frames_lost += u64::from(stamp.seq - last - 1);
        }
        self.last_seq = Some(self.last_seq.map_or(stamp.seq, |last| last.max(stamp.seq)));
        if self.latencies_ms.len() < MAX_LATENCY_SAMPLES {
            let latency = now_micros.saturating_sub(stamp.capture_micros) as f64 / 1000.0;
            self.latencies_ms.push(latency);
        }
    }

    /// The transport gave up on `frames` incomplete frames.
    pub fn on_video_dropped(&mut self, frames: u32) {
        self.frames_dropped += u64::from(frames);
    }

    /// A frame failed to decode.
    pub fn on_decode_error(&mut self) {
        self.report.decode_errors += 1;
    }

    /// An Opus packet arrived and decoded to `frame`.
    pub fn on_audio(&mut self, frame: &AudioFrame) {
        self.report.audio_packets += 1;
        for &sample in &frame.samples {
            if self.audio.len() == AUDIO_WINDOW {
                self.audio.pop_front();
            }
            self.audio.push_back(sample);
        }
    }

    /// Transport figures from the connection.
    pub fn on_transport(
        &mut self,
        rtt_ms: Option<f64>,
        candidate_pair: Option<CandidatePair>,
        packets_lost: u64,
        packets_received: u64,
        feedback: FeedbackCounts,
    ) {
        self.report.rtt_ms = rtt_ms.or(self.report.rtt_ms);
        self.report.candidate_pair = candidate_pair.or(self.report.candidate_pair);
        self.report.packets_lost = packets_lost;
        self.report.packets_received = packets_received;
        self.report.feedback = feedback;
    }

    /// The figures now; rates cover the time since the previous snapshot.
    pub fn snapshot(&mut self) -> CallStats {
        let now = Instant::now();
        let seconds = now.duration_since(self.last_snapshot).as_secs_f64();
        if seconds > 0.0 {
            let frames = self.report.frames_decoded - self.frames_at_last_snapshot;
            let bytes = self.bytes_received - self.bytes_at_last_snapshot;
            self.report.fps = frames as f64 / seconds;
            self.report.video_kbps = bytes as f64 * 8.0 / 1000.0 / seconds;
        }
        self.report.video_bytes_received = self.bytes_received;
        self.last_snapshot = now;
        self.frames_at_last_snapshot = self.report.frames_decoded;
        self.bytes_at_last_snapshot = self.bytes_received;
        if !self.stamped {
            self.report.frames_lost = self.frames_dropped;
        }
        let (p50, p95) = percentiles(&mut self.latencies_ms);
        self.report.latency_ms_p50 = p50;
        self.report.latency_ms_p95 = p95;
        let audio: Vec<i16> = self.audio.iter().copied().collect();
        self.report.audio_tone_hz = dominant_frequency(&audio, AUDIO_SAMPLE_RATE);
        self.report.audio_level = rms_level(&audio[audio.len().saturating_sub(LEVEL_WINDOW)..]);
        self.report.clone()
    }
}

/// The `p` quantile (0 to 1) of `values` by nearest rank, `None` when empty; sorts
/// `values`.
pub fn nearest_rank(values: &mut [f64], p: f64) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let rank = (p * values.len() as f64).ceil() as usize;
    (!values.is_empty()).then(|| values[rank.clamp(1, values.len()) - 1])
}

/// The 50th and 95th percentiles (nearest rank); sorts `values`.
fn percentiles(values: &mut [f64]) -> (Option<f64>, Option<f64>) {
    (nearest_rank(values, 0.50), nearest_rank(values, 0.95))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        values.reverse();
        assert_eq!(percentiles(&mut values), (Some(50.0), Some(95.0)));
        assert_eq!(percentiles(&mut []), (None, None));
    }

    #[test]
    fn sequence_gaps_count_as_lost_frames() {
        let mut stats = ReceiveStats::new(Instant::now());
        for seq in [0, 1, 2, 5, 6, 4, 9] {
            let stamp = Stamp {
                seq,
                capture_micros: 1_000,
            };
            stats.on_video_decoded(640, 480, Some(stamp), 26_000);
        }
        let report = stats.snapshot();
        assert_eq!(report.frames_decoded, 7);
        assert_eq!(
            report.frames_lost,
            2 + 2,
            "3,4 then 7,8 missing (4 came late)"
        );
        assert_eq!(report.latency_ms_p50, Some(25.0));
        assert!(report.first_frame_ms.is_some());
    }

    #[test]
    fn gaps_between_decoded_frames_longer_than_the_threshold_are_freezes() {
        let mut stats = ReceiveStats::new(Instant::now());
        // 30 fps, then a 150 ms hiccup (not a freeze), then a 700 ms and a 300 ms freeze.
        let mut at = 1_000_000u64;
        for step_ms in [0, 33, 33, 150, 33, 700, 33, 300, 33] {
            at += step_ms * 1000;
            stats.on_video_decoded(640, 480, None, at);
        }
        let report = stats.snapshot();
        assert_eq!(report.longest_frame_gap_ms, 700.0);
        assert_eq!(report.freezes, 2);
        assert_eq!(report.frozen_ms, 1000.0);
    }

    #[test]
    fn unstamped_peers_count_dropped_frames() {
        let mut stats = ReceiveStats::new(Instant::now());
        stats.on_video_decoded(320, 240, None, 0);
        stats.on_video_dropped(3);
        let report = stats.snapshot();
        assert_eq!(report.frames_lost, 3);
        assert_eq!(report.latency_ms_p50, None);
    }

    #[test]
    fn the_join_timeline_keeps_when_each_step_was_first_reached() {
        let started = Instant::now() - std::time::Duration::from_millis(100);
        let mut stats = ReceiveStats::new(started);
        stats.reached(JoinStep::Connected);
        stats.on_video_received(1200, false);
        let early = stats.snapshot().join;
        assert!(early.connected_ms.is_some_and(|ms| ms >= 100.0));
        assert!(early.first_video_ms.is_some());
        assert_eq!(
            early.first_keyframe_ms, None,
            "a delta frame is no key frame"
        );
        assert_eq!(early.session_ms, None);

        std::thread::sleep(std::time::Duration::from_millis(5));
        stats.reached(JoinStep::Connected);
        stats.on_video_received(9000, true);
        let later = stats.snapshot().join;
        assert_eq!(
            later.connected_ms, early.connected_ms,
            "only the first time counts"
        );
        assert_eq!(later.first_video_ms, early.first_video_ms);
        assert!(later.first_keyframe_ms > early.first_video_ms);
        assert_eq!(later.steps()[3], ("connected", early.connected_ms));
    }
}
