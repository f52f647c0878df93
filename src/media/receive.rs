//! The receive path of one remote peer: encoded VP8 frames are decoded on a worker
//! thread, converted to RGBA, and handed to the ECS through a one-slot channel where the
//! newest frame wins. Neither side ever waits for the other.

#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
#[cfg(not(target_arch = "wasm32"))]
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

#[cfg(not(target_arch = "wasm32"))]
use super::convert::i420_to_rgba;
#[cfg(not(target_arch = "wasm32"))]
use super::error::CodecError;
use super::stats::ReceiveStats;
use super::synthetic::Stamp;
#[cfg(not(target_arch = "wasm32"))]
use super::synthetic::read_stamp;
#[cfg(not(target_arch = "wasm32"))]
use super::synthetic::wall_clock_micros;
#[cfg(not(target_arch = "wasm32"))]
use super::vp8::Vp8Decoder;

#[cfg(not(target_arch = "wasm32"))]
/// Encoded frames waiting for the decoder; beyond this the network side drops and asks
/// for a keyframe instead of queueing latency.
const DECODE_QUEUE: usize = 8;

/// A decoded frame ready for display.
#[derive(Debug, Clone)]
pub struct DecodedFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// RGBA pixels, row after row, 4 bytes each.
    pub rgba: Vec<u8>,
    /// The sender's stamp, when it stamps its frames (synthetic sources do).
    pub stamp: Option<Stamp>,
}

/// The receiving end of a participant's frames; the ECS reads it every Bevy frame.
pub type FrameReceiver = Receiver<DecodedFrame>;

/// The sending end of the one-slot, newest-wins frame channel.
#[derive(Clone)]
pub struct FrameSender {
    slot: Sender<DecodedFrame>,
    evict: Receiver<DecodedFrame>,
}

/// A newest-wins channel for decoded frames: one slot, and a new frame replaces an
/// unread one instead of waiting.
pub fn frame_channel() -> (FrameSender, FrameReceiver) {
    let (slot, receiver) = crossbeam_channel::bounded(1);
    (
        FrameSender {
            slot,
            evict: receiver.clone(),
        },
        receiver,
    )
}

impl FrameSender {
    /// Offers `frame`, replacing an unread older one. Never blocks.
    pub fn offer(&self, mut frame: DecodedFrame) {
        loop {
            match self.slot.try_send(frame) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(rejected)) => {
                    frame = rejected;
                    let _ = self.evict.try_recv();
                }
            }
        }
    }
}

/// Locks the stats of a peer; a panicked holder leaves them usable.
pub fn lock_stats(stats: &Mutex<ReceiveStats>) -> MutexGuard<'_, ReceiveStats> {
    stats
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(not(target_arch = "wasm32"))]
/// The decoder thread of one remote peer. Dropping it stops the thread.
pub struct RemoteVideoDecoder {
    queue: Option<Sender<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

#[cfg(not(target_arch = "wasm32"))]
impl RemoteVideoDecoder {
    /// Starts a decoder feeding `frames`, counting into `stats`. `keyframe_wanted` is
    /// called when the decoder needs a keyframe to recover.
    pub fn start(
        frames: FrameSender,
        stats: Arc<Mutex<ReceiveStats>>,
        keyframe_wanted: impl Fn() + Send + 'static,
    ) -> Result<Self, CodecError> {
        let mut decoder = Vp8Decoder::new()?;
        let (queue, encoded) = crossbeam_channel::bounded::<Vec<u8>>(DECODE_QUEUE);
        let thread = std::thread::Builder::new()
            .name("meetspace-video-decode".to_owned())
            .spawn(move || {
                for data in encoded {
                    match decoder.decode(&data) {
                        Ok(Some(frame)) => {
                            let stamp = read_stamp(&frame);
                            lock_stats(&stats).on_video_decoded(
                                frame.width,
                                frame.height,
                                stamp,
                                wall_clock_micros(),
                            );
                            let mut rgba = Vec::new();
                            match i420_to_rgba(&frame, &mut rgba) {
                                Ok(()) => frames.offer(DecodedFrame {
                                    width: frame.width,
                                    height: frame.height,
                                    rgba,
                                    stamp,
                                }),
                                Err(error) => tracing::warn!(%error, "dropping a decoded frame"),
                            }
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::debug!(%error, "VP8 decode failed; asking for a keyframe");
                            lock_stats(&stats).on_decode_error();
                            keyframe_wanted();
                        }
                    }
                }
            })
            .map_err(|error| CodecError::Thread(error.to_string()))?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues an encoded frame; returns false (and drops it) when the decoder is behind.
    pub fn push(&self, encoded: Vec<u8>) -> bool {
        self.queue
            .as_ref()
            .is_some_and(|queue| queue.try_send(encoded).is_ok())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for RemoteVideoDecoder {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: u32) -> DecodedFrame {
        DecodedFrame {
            width,
            height: 2,
            rgba: Vec::new(),
            stamp: None,
        }
    }

    #[test]
    fn the_newest_frame_wins_and_offer_never_blocks() {
        let (sender, receiver) = frame_channel();
        for width in 1..=5 {
            sender.offer(frame(width));
        }
        assert_eq!(receiver.try_recv().unwrap().width, 5);
        assert!(receiver.try_recv().is_err());
        drop(receiver);
        sender.offer(frame(6)); // the ECS side is gone: still returns
    }
}
