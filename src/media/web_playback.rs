//! How the browser plays the voices so that its echo canceller hears them.
//!
//! Chromium's echo canceller takes as its far end only what remote WebRTC tracks play;
//! audio played through WebAudio is invisible to it (Chromium issue 687574), and every
//! remote voice here plays through a `PannerNode`. So the spatialised mix (the voices'
//! panners and volumes, the master volume: `media::web`) comes out of the audio graph
//! as a stream, which goes through a loopback pair of `RTCPeerConnection`s inside the
//! page (one sends it, the other receives it; their ICE candidates are handed across
//! directly, no server involved) and the received stream plays in an `<audio>`
//! element: a remote track, which the canceller subtracts from the microphone. Mozilla
//! Hubs does the same. The loopback costs an Opus encode and decode (stereo, so the
//! panning survives) and a few tens of milliseconds.
//!
//! When the loopback cannot be made (or fails later), the element plays the mix
//! directly: the voices are heard, but the echo canceller does not know them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use thiserror::Error;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AnalyserNode, AudioContext, HtmlAudioElement, MediaStream, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcSdpType,
};

use super::web::{analyse, mix_output, rms};
use crate::browser::{describe, document, sleep};
use crate::rtc::web::{sdp_text, session_description, stream_of};

/// How long the loopback may take to connect before the mix plays directly.
const LOOPBACK_CONNECT_LIMIT: Duration = Duration::from_secs(3);
/// How often the loopback's state is looked at while it connects.
const LOOPBACK_POLL: Duration = Duration::from_millis(20);
/// `HTMLMediaElement.HAVE_CURRENT_DATA`: the element has something to play.
const HAVE_CURRENT_DATA: u16 = 2;
/// The Opus parameters the receiving end asks for: stereo (the panners' left and
/// right) at a bitrate that keeps a mix of voices clean.
const STEREO_OPUS: &str = "useinbandfec=1;stereo=1;sprop-stereo=1;maxaveragebitrate=128000";

/// Why the voices cannot play, or play without echo cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlaybackError {
    /// The page's audio graph could not be made.
    #[error("the page's audio could not start: {0}")]
    Graph(String),
    /// The `<audio>` element that plays the voices could not be made.
    #[error("the page cannot play sound: {0}")]
    Element(String),
    /// The loopback connection could not be made or failed: the voices play, but the
    /// echo canceller does not hear them.
    #[error(
        "echo cancellation cannot hear the others' voices ({step}: {message}); with \
         speakers they may hear themselves"
    )]
    Loopback {
        /// What was being done.
        step: &'static str,
        /// The browser's words.
        message: String,
    },
}

fn loopback_error(step: &'static str) -> impl FnOnce(JsValue) -> PlaybackError {
    move |error| PlaybackError::Loopback {
        step,
        message: describe(&error),
    }
}

/// What the page's sound output does now (for the test hooks).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutputState {
    /// The `<audio>` element exists.
    pub element: bool,
    /// It plays (not paused, with something to play).
    pub playing: bool,
    /// It plays the loopback's received stream (false: the mix directly).
    pub loopback: bool,
    /// How loud what it plays is (RMS, 0 to 1).
    pub level: f32,
}

/// What [`output_state`] reads.
struct OutputTap {
    element: HtmlAudioElement,
    /// Measures what the element plays, once it has a stream.
    analyser: Option<AnalyserNode>,
    loopback: Rc<Cell<bool>>,
}

thread_local! {
    /// The sound output of the call in progress.
    static OUTPUT: RefCell<Option<OutputTap>> = const { RefCell::new(None) };
}

/// What the page's sound output does now; all false and 0 outside a call.
pub fn output_state() -> OutputState {
    OUTPUT.with(|output| {
        let output = output.borrow();
        let Some(tap) = output.as_ref() else {
            return OutputState::default();
        };
        let element = &tap.element;
        OutputState {
            element: true,
            playing: !element.paused()
                && element.src_object().is_some()
                && element.ready_state() >= HAVE_CURRENT_DATA,
            loopback: tap.loopback.get(),
            level: tap.analyser.as_ref().map_or(0.0, rms),
        }
    })
}

/// Plays `stream` in `element` and measures it for [`output_state`].
fn play_in(
    element: &HtmlAudioElement,
    context: &AudioContext,
    stream: &MediaStream,
    loopback: bool,
) {
    element.set_src_object(Some(stream));
    start_playing(element);
    let analyser = analyse(context, stream)
        .inspect_err(|error| {
            tracing::debug!("the sound output is not measured: {}", describe(error))
        })
        .ok()
        .map(|(analyser, _source)| analyser);
    OUTPUT.with(|output| {
        if let Some(tap) = output.borrow_mut().as_mut() {
            tap.analyser = analyser;
            tap.loopback.set(loopback);
        }
    });
}

/// Starts `element`; if the browser wants a user gesture first, on the next click or
/// key press.
fn start_playing(element: &HtmlAudioElement) {
    let Ok(started) = element.play() else { return };
    let element = element.clone();
    wasm_bindgen_futures::spawn_local(async move {
        match JsFuture::from(started).await {
            Ok(_) => {}
            Err(error)
                if crate::browser::error_name(&error).as_deref() == Some("NotAllowedError") =>
            {
                tracing::warn!(
                    "the others' voices wait for a click or key press ({})",
                    describe(&error)
                );
                play_on_next_gesture(element);
            }
            // AbortError: another stream replaced this one, and plays instead.
            Err(error) => tracing::debug!("the sound output did not start: {}", describe(&error)),
        }
    });
}

/// Plays `element` on the page's next click or key press (once).
fn play_on_next_gesture(element: HtmlAudioElement) {
    let Ok(document) = document() else { return };
    let retry = Closure::once_into_js(move || {
        let _ = element.play();
    });
    let options = web_sys::AddEventListenerOptions::new();
    options.set_once(true);
    for kind in ["pointerdown", "keydown"] {
        let _ = document.add_event_listener_with_callback_and_add_event_listener_options(
            kind,
            retry.unchecked_ref(),
            &options,
        );
    }
}

/// The page's sound output during a call: the `<audio>` element that plays every
/// voice, through the loopback when it could be made. Dropping it closes the loopback
/// and removes the element.
pub struct Playback {
    element: HtmlAudioElement,
    loopback: Option<Loopback>,
    problem: Option<PlaybackError>,
}

impl Playback {
    /// Makes the element and the loopback and starts playing. Fails only when nothing
    /// can play; a loopback that cannot be made leaves the mix playing directly (see
    /// [`Playback::problem`]).
    pub async fn start() -> Result<Self, PlaybackError> {
        let (context, mix) =
            mix_output().map_err(|error| PlaybackError::Graph(describe(&error)))?;
        let element = make_element().map_err(|error| PlaybackError::Element(describe(&error)))?;
        let loopback_on = Rc::new(Cell::new(false));
        OUTPUT.with(|output| {
            *output.borrow_mut() = Some(OutputTap {
                element: element.clone(),
                analyser: None,
                loopback: loopback_on.clone(),
            });
        });
        let mut playback = Self {
            element: element.clone(),
            loopback: None,
            problem: None,
        };
        match Loopback::connect(&mix, &element, &context).await {
            Ok(loopback) => playback.loopback = Some(loopback),
            Err(problem) => {
                tracing::warn!(%problem, "the voices play without the loopback");
                play_in(&element, &context, &mix, false);
                playback.problem = Some(problem);
            }
        }
        Ok(playback)
    }

    /// Why the voices play without the loopback (the echo canceller does not hear
    /// them), if they do.
    pub fn problem(&self) -> Option<&PlaybackError> {
        self.problem.as_ref()
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        self.loopback.take();
        OUTPUT.with(|output| output.borrow_mut().take());
        self.element.set_src_object(None);
        self.element.remove();
    }
}

/// The hidden `<audio>` element the voices play in, in the page.
fn make_element() -> Result<HtmlAudioElement, JsValue> {
    let document = document()?;
    let element: HtmlAudioElement = document.create_element("audio")?.unchecked_into();
    element.set_autoplay(true);
    element.set_muted(false);
    element.set_attribute("style", "display:none")?;
    document
        .body()
        .ok_or_else(|| JsValue::from_str("the page has no body"))?
        .append_child(&element)?;
    Ok(element)
}

/// Two peer connections in the page: `sender` sends the mix, `receiver` receives it.
/// Dropping it closes both.
struct Loopback {
    sender: RtcPeerConnection,
    receiver: RtcPeerConnection,
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Loopback {
    /// Sends `mix` from one connection to the other and plays what arrives in
    /// `element`; returns once they are connected (or fails after
    /// [`LOOPBACK_CONNECT_LIMIT`]).
    async fn connect(
        mix: &MediaStream,
        element: &HtmlAudioElement,
        context: &AudioContext,
    ) -> Result<Self, PlaybackError> {
        let sender = RtcPeerConnection::new().map_err(loopback_error("creating the sender"))?;
        let receiver = match RtcPeerConnection::new() {
            Ok(receiver) => receiver,
            Err(error) => {
                sender.close();
                return Err(loopback_error("creating the receiver")(error));
            }
        };
        let mut loopback = Self {
            sender,
            receiver,
            _handlers: Vec::new(),
        };
        loopback.wire(mix, element, context);
        loopback.negotiate(mix).await?;
        loopback.wait_until_connected().await?;
        Ok(loopback)
    }

    /// Hands each side's ICE candidates to the other, plays what the receiver gets,
    /// and falls back to the mix if the connection fails later.
    fn wire(&mut self, mix: &MediaStream, element: &HtmlAudioElement, context: &AudioContext) {
        for (from, to) in [
            (&self.sender, &self.receiver),
            (&self.receiver, &self.sender),
        ] {
            let to = to.clone();
            let on_candidate = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                let event: RtcPeerConnectionIceEvent = event.unchecked_into();
                let Some(candidate) = event.candidate() else {
                    return;
                };
                let added = to.add_ice_candidate_with_opt_rtc_ice_candidate(Some(&candidate));
                wasm_bindgen_futures::spawn_local(async move {
                    if let Err(error) = JsFuture::from(added).await {
                        tracing::debug!("a loopback candidate was refused: {}", describe(&error));
                    }
                });
            });
            from.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));
            self._handlers.push(on_candidate);
        }
        let on_track = {
            let (element, context) = (element.clone(), context.clone());
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                if let Some(stream) = stream_of(&event.unchecked_into()) {
                    play_in(&element, &context, &stream, true);
                }
            })
        };
        self.receiver
            .set_ontrack(Some(on_track.as_ref().unchecked_ref()));
        self._handlers.push(on_track);
        let on_state = {
            let (receiver, element, context) =
                (self.receiver.clone(), element.clone(), context.clone());
            // `Clone::clone` copies the handle (the method would clone the tracks).
            let mix = Clone::clone(mix);
            Closure::<dyn FnMut(JsValue)>::new(move |_| {
                if receiver.connection_state() == RtcPeerConnectionState::Failed {
                    tracing::warn!("the sound loopback failed; the voices play directly");
                    play_in(&element, &context, &mix, false);
                }
            })
        };
        self.receiver
            .set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        self._handlers.push(on_state);
    }

    /// Offer and answer across, the answer asking for stereo Opus. Each remote
    /// description is set right after the matching local one (before any candidate
    /// can arrive), so candidates never come before it.
    async fn negotiate(&self, mix: &MediaStream) -> Result<(), PlaybackError> {
        for track in mix.get_audio_tracks().iter() {
            self.sender.add_track_0(&track.unchecked_into(), mix);
        }
        let offer = sdp_of(
            &JsFuture::from(self.sender.create_offer())
                .await
                .map_err(loopback_error("creating the offer"))?,
        )?;
        hand_across(
            (&self.sender, &self.receiver),
            RtcSdpType::Offer,
            &offer,
            ("setting the offer", "taking the offer"),
        )
        .await?;
        let answer = sdp_of(
            &JsFuture::from(self.receiver.create_answer())
                .await
                .map_err(loopback_error("creating the answer"))?,
        )?;
        let answer = answer.replace("useinbandfec=1", STEREO_OPUS);
        hand_across(
            (&self.receiver, &self.sender),
            RtcSdpType::Answer,
            &answer,
            ("setting the answer", "taking the answer"),
        )
        .await
    }

    /// Waits until the receiver is connected.
    async fn wait_until_connected(&self) -> Result<(), PlaybackError> {
        let mut waited = Duration::ZERO;
        loop {
            match self.receiver.connection_state() {
                RtcPeerConnectionState::Connected => return Ok(()),
                RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed => {
                    return Err(PlaybackError::Loopback {
                        step: "connecting",
                        message: "the connection failed".to_owned(),
                    });
                }
                _ if waited >= LOOPBACK_CONNECT_LIMIT => {
                    return Err(PlaybackError::Loopback {
                        step: "connecting",
                        message: format!(
                            "not connected after {} s",
                            LOOPBACK_CONNECT_LIMIT.as_secs()
                        ),
                    });
                }
                _ => {}
            }
            sleep(LOOPBACK_POLL).await;
            waited += LOOPBACK_POLL;
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        for connection in [&self.sender, &self.receiver] {
            connection.set_onicecandidate(None);
            connection.set_onconnectionstatechange(None);
            connection.set_ontrack(None);
            connection.close();
        }
    }
}

/// Sets `sdp` (of `kind`) as the local description of `from` and the remote one of
/// `to`, both started before either is awaited; `steps` name the two for errors.
async fn hand_across(
    (from, to): (&RtcPeerConnection, &RtcPeerConnection),
    kind: RtcSdpType,
    sdp: &str,
    (local_step, remote_step): (&'static str, &'static str),
) -> Result<(), PlaybackError> {
    let set_local = from.set_local_description(&session_description(kind, sdp));
    let set_remote = to.set_remote_description(&session_description(kind, sdp));
    JsFuture::from(set_local)
        .await
        .map_err(loopback_error(local_step))?;
    JsFuture::from(set_remote)
        .await
        .map_err(loopback_error(remote_step))?;
    Ok(())
}

/// The SDP text of an offer or answer the browser made.
fn sdp_of(description: &JsValue) -> Result<String, PlaybackError> {
    sdp_text(description).ok_or(PlaybackError::Loopback {
        step: "reading a description",
        message: "it has no SDP".to_owned(),
    })
}
