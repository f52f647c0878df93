//! Microphones and speakers through cpal (ALSA on Linux, which reaches PulseAudio or
//! PipeWire through the ALSA plugin). Native only.
//!
//! Each open device runs on a thread of its own that owns the cpal stream (streams are
//! not `Send` on every platform) and closes it when its owner is dropped: dropping a
//! [`Microphone`] or [`Speaker`] releases the device at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample, StreamConfig};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::device::DeviceChoice;
use super::error::DeviceError;
use super::frame::{AUDIO_SAMPLE_RATE, AudioFrame};
use super::mixer::Mixer;
use super::resample::ToOpusFrames;

/// Captured chunks waiting for the encoder thread (a few hundred ms at most).
const CAPTURE_QUEUE: usize = 64;

/// A microphone that delivers nothing for this long is taken as gone (unplugged: some
/// backends report it, others just stop).
const MICROPHONE_SILENT_LIMIT: Duration = Duration::from_secs(3);

/// Which way a device works, for listings and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A microphone.
    Input,
    /// Speakers or headphones.
    Output,
}

impl Direction {
    fn noun(self) -> &'static str {
        match self {
            Self::Input => "microphone",
            Self::Output => "speaker",
        }
    }
}

/// Names of the devices of one direction, in the order indices refer to.
pub fn audio_devices(direction: Direction) -> Vec<String> {
    let host = cpal::default_host();
    let devices = match direction {
        Direction::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        Direction::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    };
    devices
        .unwrap_or_default()
        .iter()
        .filter_map(device_name)
        .collect()
}

fn device_name(device: &cpal::Device) -> Option<String> {
    device
        .description()
        .ok()
        .map(|description| description.name().to_owned())
}

/// Finds the device `choice` names among those of `direction`.
fn find_device(direction: Direction, choice: &DeviceChoice) -> Result<cpal::Device, DeviceError> {
    let host = cpal::default_host();
    let not_found = |available: Vec<String>| DeviceError::NotFound {
        kind: direction.noun(),
        wanted: choice.to_string(),
        available,
    };
    let default = match (choice, direction) {
        (DeviceChoice::Default, Direction::Input) => Some(host.default_input_device()),
        (DeviceChoice::Default, Direction::Output) => Some(host.default_output_device()),
        (DeviceChoice::Named(_), _) => None,
    };
    if let Some(device) = default {
        return device.ok_or_else(|| not_found(audio_devices(direction)));
    }
    let devices: Vec<cpal::Device> = match direction {
        Direction::Input => host.input_devices().map(Iterator::collect),
        Direction::Output => host.output_devices().map(Iterator::collect),
    }
    .unwrap_or_default();
    let names: Vec<String> = devices
        .iter()
        .map(|device| device_name(device).unwrap_or_default())
        .collect();
    let DeviceChoice::Named(wanted) = choice else {
        return Err(not_found(names));
    };
    let index = pick_by_name(&names, wanted).ok_or_else(|| not_found(names.clone()))?;
    devices
        .into_iter()
        .nth(index)
        .ok_or_else(|| not_found(names))
}

/// The index `wanted` names in `names`: an index, an exact name, or a part of exactly
/// one name (case-insensitive).
pub fn pick_by_name(names: &[String], wanted: &str) -> Option<usize> {
    if let Ok(index) = wanted.parse::<usize>() {
        return (index < names.len()).then_some(index);
    }
    if let Some(index) = names.iter().position(|name| name == wanted) {
        return Some(index);
    }
    let wanted = wanted.to_lowercase();
    let mut matches = names
        .iter()
        .enumerate()
        .filter(|(_, name)| name.to_lowercase().contains(&wanted));
    match (matches.next(), matches.next()) {
        (Some((index, _)), None) => Some(index),
        _ => None,
    }
}

/// The thread that owns one open cpal stream; dropping it closes the stream.
struct StreamThread {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StreamThread {
    /// Opens a stream with `open` on a new thread and starts it; errors come back here.
    fn start(
        name: &str,
        open: impl FnOnce() -> Result<cpal::Stream, DeviceError> + Send + 'static,
    ) -> Result<Self, DeviceError> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let (opened_tx, opened) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let stream = open().and_then(|stream| {
                    stream.play().map_err(|error| DeviceError::Backend {
                        op: "start the stream",
                        message: error.to_string(),
                    })?;
                    Ok(stream)
                });
                match stream {
                    Ok(stream) => {
                        let _ = opened_tx.send(Ok(()));
                        // Until the owner drops its end.
                        let _ = stopped.recv();
                        drop(stream);
                    }
                    Err(error) => {
                        let _ = opened_tx.send(Err(error));
                    }
                }
            })
            .map_err(|error| DeviceError::Backend {
                op: "start the device thread",
                message: error.to_string(),
            })?;
        let mut started = Self {
            stop: Some(stop),
            thread: Some(thread),
        };
        match opened.recv() {
            Ok(Ok(())) => Ok(started),
            Ok(Err(error)) => Err(error),
            Err(_) => {
                started.stop.take();
                Err(DeviceError::Backend {
                    op: "open the device",
                    message: "the device thread ended".to_owned(),
                })
            }
        }
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn backend(op: &'static str) -> impl Fn(cpal::Error) -> DeviceError {
    move |error| DeviceError::Backend {
        op,
        message: error.to_string(),
    }
}

/// An open microphone: captured audio, resampled to 48 kHz mono, in 20 ms frames.
pub struct Microphone {
    chunks: Receiver<Vec<f32>>,
    /// What the stream reported when its device went away.
    lost: Receiver<String>,
    /// When the device last delivered samples.
    last_heard: Instant,
    frames: ToOpusFrames,
    /// The device's latest input latency (capture to callback), microseconds.
    latency_us: Arc<AtomicU32>,
    _stream: StreamThread,
}

impl Microphone {
    /// Opens the microphone `choice` names at its own rate and channel count.
    pub fn open(choice: &DeviceChoice) -> Result<Self, DeviceError> {
        let device = find_device(Direction::Input, choice)?;
        let supported = device
            .default_input_config()
            .map_err(backend("read the microphone's format"))?;
        let rate = supported.sample_rate();
        let frames = ToOpusFrames::new(rate).map_err(|error| DeviceError::Backend {
            op: "set up resampling",
            message: error.to_string(),
        })?;
        let (chunk_tx, chunks) = crossbeam_channel::bounded(CAPTURE_QUEUE);
        let (lost_tx, lost) = crossbeam_channel::bounded(1);
        let format = supported.sample_format();
        let config = supported.config();
        let latency_us = Arc::new(AtomicU32::new(0));
        let capture = Capture {
            chunks: chunk_tx,
            lost: lost_tx,
            latency_us: latency_us.clone(),
        };
        let stream = StreamThread::start("meetspace-microphone", move || {
            build_input(&device, format, config, capture)
        })?;
        Ok(Self {
            chunks,
            lost,
            last_heard: Instant::now(),
            frames,
            latency_us,
            _stream: stream,
        })
    }

    /// How long captured sound takes to reach us, as the device last reported it
    /// (plus what waits in our queue and resampler: about one 20 ms frame).
    pub fn latency(&self) -> Duration {
        Duration::from_micros(u64::from(self.latency_us.load(Ordering::Relaxed)))
            + Duration::from_millis(20)
    }

    /// The next 20 ms frame, waiting at most `wait` for the device (`None`: nothing
    /// yet). Fails when the microphone is gone: its backend said so, or it delivered
    /// nothing for [`MICROPHONE_SILENT_LIMIT`].
    pub fn next_frame(&mut self, wait: Duration) -> Result<Option<AudioFrame>, DeviceError> {
        let gone = |message: String| DeviceError::Backend {
            op: "read the microphone",
            message,
        };
        loop {
            if let Some(frame) = self.frames.next_frame() {
                return Ok(Some(frame));
            }
            if let Ok(reason) = self.lost.try_recv() {
                return Err(gone(reason));
            }
            match self.chunks.recv_timeout(wait) {
                Ok(chunk) => {
                    self.last_heard = Instant::now();
                    self.frames.push(&chunk);
                }
                Err(RecvTimeoutError::Timeout)
                    if self.last_heard.elapsed() < MICROPHONE_SILENT_LIMIT =>
                {
                    return Ok(None);
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(gone(format!(
                        "it delivered nothing for {} s",
                        MICROPHONE_SILENT_LIMIT.as_secs()
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(gone("its stream ended".to_owned()));
                }
            }
        }
    }
}

/// Where a microphone's callback sends what it captured and what happened to it.
struct Capture {
    chunks: Sender<Vec<f32>>,
    lost: Sender<String>,
    latency_us: Arc<AtomicU32>,
}

fn build_input(
    device: &cpal::Device,
    format: SampleFormat,
    config: StreamConfig,
    capture: Capture,
) -> Result<cpal::Stream, DeviceError> {
    match format {
        SampleFormat::I16 => input_stream::<i16>(device, config, capture),
        SampleFormat::I32 => input_stream::<i32>(device, config, capture),
        SampleFormat::U8 => input_stream::<u8>(device, config, capture),
        SampleFormat::U16 => input_stream::<u16>(device, config, capture),
        SampleFormat::F32 => input_stream::<f32>(device, config, capture),
        SampleFormat::F64 => input_stream::<f64>(device, config, capture),
        other => Err(DeviceError::Format(format!(
            "the microphone delivers {other} samples, which meetspace cannot read"
        ))),
    }
}

fn input_stream<T>(
    device: &cpal::Device,
    config: StreamConfig,
    capture: Capture,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let Capture {
        chunks,
        lost,
        latency_us,
    } = capture;
    device
        .build_input_stream::<T, _, _>(
            config,
            move |data: &[T], info: &cpal::InputCallbackInfo| {
                let stamp = info.timestamp();
                let latency = stamp.callback.duration_since(stamp.capture);
                let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
                latency_us.store(micros, Ordering::Relaxed);
                // Down-mix to mono: the average of the channels.
                let mono = data
                    .chunks_exact(channels)
                    .map(|frame| {
                        frame.iter().map(|&s| f32::from_sample(s)).sum::<f32>() / channels as f32
                    })
                    .collect();
                // A full queue means the encoder stalled: drop rather than block.
                let _ = chunks.try_send(mono);
            },
            move |error| {
                tracing::warn!(%error, "microphone error");
                if matches!(
                    error.kind(),
                    cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::StreamInvalidated
                ) {
                    let _ = lost.try_send(error.to_string());
                }
            },
            None,
        )
        .map_err(backend("open the microphone"))
}

/// An open speaker playing what a [`Mixer`] mixes, at 48 kHz, and handing what it plays
/// to the mixer's echo reference (for the echo canceller).
pub struct Speaker {
    mixer: Arc<Mixer>,
    _stream: StreamThread,
}

impl Speaker {
    /// Opens the speaker `choice` names and starts playing `mixer`'s voices on it.
    pub fn open(choice: &DeviceChoice, mixer: Arc<Mixer>) -> Result<Self, DeviceError> {
        let device = find_device(Direction::Output, choice)?;
        let name = device_name(&device).unwrap_or_else(|| "speaker".to_owned());
        let supported = device
            .supported_output_configs()
            .map_err(backend("read the speaker's formats"))?
            .filter_map(|range| range.try_with_sample_rate(AUDIO_SAMPLE_RATE))
            // Stereo first (spatial audio needs two channels), then float samples.
            .min_by_key(|config| {
                (
                    config.channels() != 2,
                    config.sample_format() != SampleFormat::F32,
                )
            })
            .ok_or_else(|| {
                DeviceError::Format(format!("the speaker {name:?} cannot play at 48 kHz"))
            })?;
        mixer.set_playing(true);
        let format = supported.sample_format();
        let config = supported.config();
        let source = mixer.clone();
        let stream = StreamThread::start("meetspace-speaker", move || {
            build_output(&device, format, config, source)
        });
        match stream {
            Ok(stream) => Ok(Self {
                mixer,
                _stream: stream,
            }),
            Err(error) => {
                mixer.set_playing(false);
                Err(error)
            }
        }
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        self.mixer.set_playing(false);
    }
}

fn build_output(
    device: &cpal::Device,
    format: SampleFormat,
    config: StreamConfig,
    mixer: Arc<Mixer>,
) -> Result<cpal::Stream, DeviceError> {
    match format {
        SampleFormat::I16 => output_stream::<i16>(device, config, mixer),
        SampleFormat::I32 => output_stream::<i32>(device, config, mixer),
        SampleFormat::U8 => output_stream::<u8>(device, config, mixer),
        SampleFormat::U16 => output_stream::<u16>(device, config, mixer),
        SampleFormat::F32 => output_stream::<f32>(device, config, mixer),
        SampleFormat::F64 => output_stream::<f64>(device, config, mixer),
        other => Err(DeviceError::Format(format!(
            "the speaker takes {other} samples, which meetspace cannot write"
        ))),
    }
}

fn output_stream<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mixer: Arc<Mixer>,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels.max(1));
    let mut mixed = Vec::new();
    device
        .build_output_stream::<T, _, _>(
            config,
            move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
                mixed.resize(data.len(), 0.0);
                mixer.mix_into(&mut mixed, channels);
                let stamp = info.timestamp();
                let latency = stamp.playback.duration_since(stamp.callback);
                mixer.echo_reference().record(&mixed, channels, latency);
                for (out, &sample) in data.iter_mut().zip(&mixed) {
                    *out = T::from_sample(sample);
                }
            },
            |error| tracing::warn!(%error, "speaker error"),
            None,
        )
        .map_err(backend("open the speaker"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_picked_by_index_name_or_unique_part() {
        let names: Vec<String> = ["default", "pulse", "USB Headset Mic", "USB Webcam Mic"]
            .map(String::from)
            .to_vec();
        assert_eq!(pick_by_name(&names, "1"), Some(1));
        assert_eq!(pick_by_name(&names, "9"), None);
        assert_eq!(pick_by_name(&names, "pulse"), Some(1));
        assert_eq!(pick_by_name(&names, "headset"), Some(2));
        assert_eq!(pick_by_name(&names, "usb"), None, "ambiguous");
        assert_eq!(pick_by_name(&names, "nothing"), None);
    }

    #[test]
    fn a_missing_device_names_what_is_available() {
        let error = DeviceError::NotFound {
            kind: "microphone",
            wanted: DeviceChoice::parse("Blue Yeti").to_string(),
            available: vec!["default".into(), "pulse".into()],
        };
        assert_eq!(
            error.to_string(),
            "no microphone \"Blue Yeti\"; available: 0 \"default\", 1 \"pulse\""
        );
    }
}
