//! VP8 depacketization (RFC 7741): reassembling VP8 frames from the payloads of RTP
//! packets. Platform-neutral; the native backend feeds it each remote video packet.

use std::collections::BTreeMap;

use bytes::Bytes;

/// The RTP clock rate of VP8 video (RFC 7741): 90 kHz.
pub const VP8_CLOCK_RATE: u32 = 90_000;

/// Parses the VP8 payload descriptor. Returns whether the packet starts a frame (S=1 and
/// partition index 0) and where the VP8 data begins, or `None` for a packet without data.
fn parse_vp8_descriptor(payload: &[u8]) -> Option<(bool, usize)> {
    let first = *payload.first()?;
    let start_of_frame = first & 0x10 != 0 && first & 0x07 == 0;
    let mut len = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(1)?;
        len = 2;
        if ext & 0x80 != 0 {
            // PictureID, 7 or 15 bits.
            len += if payload.get(len)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            len += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            len += 1; // TID/Y/KEYIDX
        }
    }
    (len < payload.len()).then_some((start_of_frame, len))
}

/// One buffered RTP packet of a VP8 stream.
struct Fragment {
    timestamp: u32,
    marker: bool,
    start: bool,
    data: Bytes,
}

/// What the assembler reads of an RTP packet's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// The packet's sequence number.
    pub sequence_number: u16,
    /// The RTP timestamp: the same for every packet of one frame.
    pub timestamp: u32,
    /// The marker bit: set on the last packet of a frame.
    pub marker: bool,
}

/// A reassembled frame.
#[derive(Debug, PartialEq, Eq)]
pub struct AssembledFrame {
    /// The VP8 frame, payload descriptors stripped.
    pub data: Vec<u8>,
    /// The RTP timestamp its packets carried.
    pub timestamp: u32,
    /// Whether it is a key frame (decodable on its own).
    pub keyframe: bool,
}

/// Reassembles VP8 frames from RTP packets.
///
/// A frame is complete when its packets are contiguous in sequence number, share a timestamp,
/// the first starts the frame and the last carries the marker bit. Packets may arrive out of
/// order (NACK retransmissions do); a frame with a gap is kept until the stream has moved
/// `Vp8Assembler::MAX_WAIT_TICKS` past it or the buffer is full, then dropped and counted.
#[derive(Default)]
pub struct Vp8Assembler {
    /// Buffered packets by extended (unwrapped) sequence number.
    fragments: BTreeMap<u64, Fragment>,
    /// Highest extended sequence number seen, for unwrapping.
    highest: Option<u64>,
    /// The first sequence number not yet consumed; `None` until the first frame start.
    next: Option<u64>,
}

/// What one pushed packet released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AssemblerOutput {
    /// The frames completed, in order.
    pub frames: Vec<AssembledFrame>,
    /// Frames given up on (a packet never came): undecodable until a key frame.
    pub dropped_frames: u32,
}

enum FrameStatus {
    Complete(u64),
    Waiting,
    Broken,
}

impl Vp8Assembler {
    /// How far (in 90 kHz ticks) the stream may move past an incomplete frame before it is
    /// given up: 400 ms, room for two NACK attempts (the generator runs every 100 ms) over
    /// a 100 ms round trip. Giving up costs a keyframe round trip and a longer freeze.
    const MAX_WAIT_TICKS: u32 = VP8_CLOCK_RATE * 2 / 5;
    /// Most packets held while waiting for a missing one.
    const MAX_BUFFERED: usize = 1024;
    /// Extended sequence numbers start here so that unwrapping never goes below zero.
    const BASE: u64 = 1 << 32;
    /// A packet this far behind the consumed point is not a late retransmission: the sender
    /// restarted its sequence numbers, so the assembler starts over.
    const RESTART_DISTANCE: u64 = 3000;

    fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            None => Self::BASE + u64::from(seq),
            Some(highest) => {
                let delta = seq.wrapping_sub(highest as u16) as i16;
                highest.saturating_add_signed(i64::from(delta))
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// Takes one packet of the stream (`payload` with its VP8 payload descriptor) and
    /// returns the frames it completed and the ones it made the assembler give up on.
    pub fn push(&mut self, header: &PacketHeader, payload: &Bytes) -> AssemblerOutput {
        let mut out = AssemblerOutput::default();
        let Some((start, offset)) = parse_vp8_descriptor(payload) else {
            // Malformed or empty: behaves like a lost packet.
            return out;
        };
        let mut ext = self.extend(header.sequence_number);
        if let Some(next) = self.next
            && ext < next
        {
            if ext + Self::RESTART_DISTANCE >= next {
                return out; // late duplicate or retransmission of something already consumed
            }
            *self = Self::default();
            ext = self.extend(header.sequence_number);
        }
        self.fragments.entry(ext).or_insert(Fragment {
            timestamp: header.timestamp,
            marker: header.marker,
            start,
            data: payload.slice(offset..),
        });
        self.drain(&mut out);
        out
    }

    fn status_at(&self, next: u64) -> FrameStatus {
        let Some(first) = self.fragments.get(&next) else {
            return FrameStatus::Waiting;
        };
        if !first.start {
            return FrameStatus::Broken;
        }
        let mut seq = next;
        loop {
            let Some(fragment) = self.fragments.get(&seq) else {
                return FrameStatus::Waiting;
            };
            if fragment.timestamp != first.timestamp {
                // The previous packet ended the frame without a marker: accept it if this one
                // begins the next frame, otherwise something is wrong with the stream.
                return if fragment.start {
                    FrameStatus::Complete(seq - 1)
                } else {
                    FrameStatus::Broken
                };
            }
            if fragment.marker {
                return FrameStatus::Complete(seq);
            }
            seq += 1;
        }
    }

    /// Whether an incomplete frame at `next` has been waited for long enough.
    fn waited_too_long(&self) -> bool {
        if self.fragments.len() >= Self::MAX_BUFFERED {
            return true;
        }
        match (
            self.fragments.first_key_value(),
            self.fragments.last_key_value(),
        ) {
            (Some((_, oldest)), Some((_, newest))) => {
                newest.timestamp.wrapping_sub(oldest.timestamp) as i32 > Self::MAX_WAIT_TICKS as i32
            }
            _ => false,
        }
    }

    /// Drops everything before the first frame start after `after`, returning how many
    /// frames (distinct timestamps) that discarded.
    fn skip_to_next_start(&mut self, after: u64) -> u32 {
        let resume = self
            .fragments
            .range(after + 1..)
            .find(|(_, f)| f.start)
            .map(|(seq, _)| *seq);
        let kept = match resume {
            Some(seq) => self.fragments.split_off(&seq),
            None => BTreeMap::new(),
        };
        let discarded = std::mem::replace(&mut self.fragments, kept);
        let mut timestamps: Vec<u32> = discarded.values().map(|f| f.timestamp).collect();
        timestamps.dedup();
        self.next = Some(resume.unwrap_or_else(|| self.highest.map_or(after, |h| h + 1)));
        timestamps.len().max(1) as u32
    }

    fn drain(&mut self, out: &mut AssemblerOutput) {
        loop {
            let Some(next) = self.next else {
                // Not anchored yet: start at the first frame start seen.
                match self
                    .fragments
                    .iter()
                    .find(|(_, f)| f.start)
                    .map(|(s, _)| *s)
                {
                    Some(seq) => {
                        self.fragments = self.fragments.split_off(&seq);
                        self.next = Some(seq);
                        continue;
                    }
                    None => {
                        if self.fragments.len() >= Self::MAX_BUFFERED {
                            self.fragments.clear();
                        }
                        return;
                    }
                }
            };
            match self.status_at(next) {
                FrameStatus::Complete(end) => {
                    let rest = self.fragments.split_off(&(end + 1));
                    let parts = std::mem::replace(&mut self.fragments, rest);
                    let timestamp = parts.values().next().map_or(0, |f| f.timestamp);
                    let data: Vec<u8> = parts
                        .values()
                        .flat_map(|f| f.data.iter().copied())
                        .collect();
                    // VP8 frame tag: the P bit (bit 0 of the first byte) is 0 on key frames.
                    let keyframe = data.first().is_some_and(|b| b & 0x01 == 0);
                    out.frames.push(AssembledFrame {
                        data,
                        timestamp,
                        keyframe,
                    });
                    self.next = Some(end + 1);
                }
                FrameStatus::Broken => out.dropped_frames += self.skip_to_next_start(next),
                FrameStatus::Waiting if self.waited_too_long() => {
                    out.dropped_frames += self.skip_to_next_start(next);
                }
                FrameStatus::Waiting => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, ts: u32, marker: bool) -> PacketHeader {
        PacketHeader {
            sequence_number: seq,
            timestamp: ts,
            marker,
        }
    }

    /// Splits `frame` into packets the way our payloader does (with a picture id).
    fn packetize(frame: &[u8], chunk: usize) -> Vec<Bytes> {
        frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| {
                let first = if i == 0 { 0x90 } else { 0x80 };
                let mut p = vec![first, 0x80, 0x85, 0x01];
                p.extend_from_slice(c);
                Bytes::from(p)
            })
            .collect()
    }

    fn frame(n: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(n) | 1).collect()
    }

    #[test]
    fn descriptor_parsing() {
        assert_eq!(parse_vp8_descriptor(&[0x10, 0xAA]), Some((true, 1)));
        assert_eq!(parse_vp8_descriptor(&[0x00, 0xAA]), Some((false, 1)));
        assert_eq!(parse_vp8_descriptor(&[0x11, 0xAA]), Some((false, 1))); // PID 1
        assert_eq!(
            parse_vp8_descriptor(&[0x90, 0x80, 0x85, 0x01, 0xAA]),
            Some((true, 4))
        );
        assert_eq!(
            parse_vp8_descriptor(&[0x90, 0xF0, 0x05, 0x01, 0x02, 0xAA]),
            Some((true, 5))
        );
        assert_eq!(parse_vp8_descriptor(&[0x90, 0x80, 0x85, 0x01]), None);
        assert_eq!(parse_vp8_descriptor(&[0x90, 0x80]), None);
        assert_eq!(parse_vp8_descriptor(&[]), None);
    }

    #[test]
    fn reassembles_in_order_and_reordered() {
        let mut asm = Vp8Assembler::default();
        let a = frame(3, 2500);
        let b = frame(5, 700);
        let mut got = Vec::new();
        let pa = packetize(&a, 1000);
        let pb = packetize(&b, 1000);
        // Frame A in reverse order, then B.
        for (i, p) in pa.iter().enumerate().rev() {
            let seq = 65534u16.wrapping_add(i as u16); // crosses the wrap
            got.extend(asm.push(&header(seq, 1000, i == pa.len() - 1), p).frames);
        }
        let seq_b = 65534u16.wrapping_add(pa.len() as u16);
        got.extend(asm.push(&header(seq_b, 4000, true), &pb[0]).frames);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].data, a);
        assert_eq!(got[0].timestamp, 1000);
        assert!(!got[0].keyframe);
        assert_eq!(got[1].data, b);
    }

    #[test]
    fn drops_incomplete_frames_and_resumes() {
        let mut asm = Vp8Assembler::default();
        let mut dropped = 0;
        let mut frames = Vec::new();
        let mut seq = 100u16;
        // 20 frames of 3 packets, 30 fps; the middle packet of frame 2 is lost.
        for n in 0..20u32 {
            let data = frame(n as u8 + 1, 2400);
            let packets = packetize(&data, 800);
            for (i, p) in packets.iter().enumerate() {
                let lost = n == 2 && i == 1;
                if !lost {
                    let out = asm.push(&header(seq, n * 3000, i == packets.len() - 1), p);
                    dropped += out.dropped_frames;
                    frames.extend(out.frames);
                }
                seq = seq.wrapping_add(1);
            }
        }
        assert_eq!(dropped, 1);
        // Frames after the loss are held at most 400 ms, then released in order.
        let timestamps: Vec<u32> = frames.iter().map(|f| f.timestamp).collect();
        let expected: Vec<u32> = (0..20).filter(|n| *n != 2).map(|n| n * 3000).collect();
        assert_eq!(&timestamps[..], &expected[..timestamps.len()]);
        assert!(timestamps.len() >= 19 - 13, "{timestamps:?}");
    }

    #[test]
    fn restarts_when_the_sender_restarts_its_sequence() {
        let mut asm = Vp8Assembler::default();
        let p = Bytes::from_static(&[0x10, 0x01, 0x02]);
        assert_eq!(asm.push(&header(40_000, 0, true), &p).frames.len(), 1);
        assert_eq!(asm.push(&header(40_001, 3000, true), &p).frames.len(), 1);
        // A retransmission of something consumed is ignored...
        assert_eq!(asm.push(&header(40_000, 0, true), &p).frames.len(), 0);
        // ...but a stream that jumped far back starts over instead of being ignored forever.
        assert_eq!(asm.push(&header(10_000, 9000, true), &p).frames.len(), 1);
        assert_eq!(asm.push(&header(10_001, 12000, true), &p).frames.len(), 1);
    }

    #[test]
    fn ignores_stream_until_first_frame_start_and_keyframe_flag() {
        let mut asm = Vp8Assembler::default();
        let key = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        let mut tail = vec![0x00, 0x00, 0x00];
        tail.extend_from_slice(&[0xAA, 0xBB]);
        // A continuation packet of a frame we joined in the middle of.
        assert_eq!(
            asm.push(&header(7, 10, true), &Bytes::from(tail)),
            AssemblerOutput::default()
        );
        let mut p = vec![0x10];
        p.extend_from_slice(&key);
        let out = asm.push(&header(8, 20, true), &Bytes::from(p));
        assert_eq!(out.frames.len(), 1);
        assert!(out.frames[0].keyframe);
        assert_eq!(out.frames[0].data, key);
        // Garbage never panics.
        for junk in [&[][..], &[0xFF][..], &[0x80, 0xFF, 0xFF][..]] {
            let _ = asm.push(&header(9, 30, true), &Bytes::copy_from_slice(junk));
        }
    }
}
