//! The browser's WebSocket signaling client (web-sys `WebSocket`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use js_sys::{Array, Object, Reflect};
use tokio::sync::{mpsc, oneshot};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use super::link::{LinkEvent, SignalUrl, SignalingError, SignalingLink};
use super::protocol::ServerMessage;

/// Where web/index.html leaves the signaling connection it opens as the page loads:
/// `{ socket, messages, closed }`.
const PAGE_SOCKET: &str = "__meetspaceEarlySignal";

/// Whether a connection took the page's.
static TOOK_PAGE_SOCKET: AtomicBool = AtomicBool::new(false);

/// Whether the app signals (or signalled) on the connection the page opened (for the
/// test hooks: without it, the app still signals, only later).
pub fn took_page_socket() -> bool {
    TOOK_PAGE_SOCKET.load(Ordering::Relaxed)
}

/// Takes the connection the page opened while the wasm downloaded, if it goes to `url`
/// and has not closed, with the messages that came on it so far. Only the app's first
/// connection can: it takes the page's away, or closes it if it goes elsewhere (the
/// address's `signal=` named another server). Opened by the app, a connection waits
/// for the app's first frames, which a software renderer takes most of a second over
/// each: the browser starts a new WebSocket's handshake only once the page's script is
/// idle.
fn take_page_socket(url: &SignalUrl) -> Option<(WebSocket, Vec<String>)> {
    let window: Object = web_sys::window()?.unchecked_into();
    let key = JsValue::from_str(PAGE_SOCKET);
    let left = Reflect::get(&window, &key).ok()?;
    if left.is_undefined() {
        return None;
    }
    let _ = Reflect::delete_property(&window, &key);
    let field = |name: &str| Reflect::get(&left, &JsValue::from_str(name)).ok();
    let socket: WebSocket = field("socket")?.dyn_into().ok()?;
    let closed = field("closed").and_then(|closed| closed.as_bool()) != Some(false);
    let messages = field("messages").and_then(|messages| messages.dyn_into::<Array>().ok());
    match messages {
        Some(messages)
            if !closed
                && socket.url() == url.0.as_str()
                && socket.ready_state() <= WebSocket::OPEN =>
        {
            Some((
                socket,
                messages.iter().filter_map(|m| m.as_string()).collect(),
            ))
        }
        // Not one the app can take: closed here, not left open beside the app's own.
        _ => {
            let _ = socket.close();
            None
        }
    }
}

/// Hands a message the server sent on to the link.
fn receive(received: &mpsc::UnboundedSender<LinkEvent>, text: &str) {
    match serde_json::from_str::<ServerMessage>(text) {
        Ok(message) => {
            let _ = received.send(LinkEvent::Message(message));
        }
        Err(error) => {
            tracing::warn!(%error, "ignoring a signaling message we do not understand");
        }
    }
}

pub(super) async fn connect(url: &SignalUrl) -> Result<SignalingLink, SignalingError> {
    let unreachable = |reason: String| SignalingError::Unreachable {
        url: url.clone(),
        reason,
    };
    let (socket, earlier) = match take_page_socket(url) {
        Some(taken) => {
            TOOK_PAGE_SOCKET.store(true, Ordering::Relaxed);
            taken
        }
        None => (
            WebSocket::new(url.0.as_str())
                .map_err(|error| unreachable(crate::browser::describe(&error)))?,
            Vec::new(),
        ),
    };
    let (received, incoming) = mpsc::unbounded_channel();
    for text in &earlier {
        receive(&received, text);
    }
    let (opened_tx, opened) = oneshot::channel::<Result<(), String>>();
    let opened_tx = Rc::new(RefCell::new(Some(opened_tx)));

    let on_open = {
        let opened_tx = opened_tx.clone();
        Closure::<dyn FnMut()>::new(move || {
            if let Some(tx) = opened_tx.borrow_mut().take() {
                let _ = tx.send(Ok(()));
            }
        })
    };
    let on_message = {
        let received = received.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(text) = event.data().as_string() {
                receive(&received, &text);
            }
        })
    };
    let on_close = {
        let opened_tx = opened_tx.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let reason = if event.reason().is_empty() {
                format!("the connection ended (code {})", event.code())
            } else {
                format!("the server closed the connection ({})", event.reason())
            };
            match opened_tx.borrow_mut().take() {
                Some(tx) => {
                    let _ = tx.send(Err(reason));
                }
                None => {
                    let _ = received.send(LinkEvent::Closed { reason });
                }
            }
        })
    };
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));

    // The page's connection may be open already (and then fires no `open`). These
    // handlers replaced the page's, and no event can come in between: events wait for
    // the page's script to be idle.
    if socket.ready_state() == WebSocket::OPEN
        && let Some(tx) = opened_tx.borrow_mut().take()
    {
        let _ = tx.send(Ok(()));
    }
    // The browser gives up on a connection by itself (and then fires `close`).
    match opened.await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return Err(unreachable(reason)),
        Err(_) => return Err(unreachable("the connection attempt was dropped".to_owned())),
    }

    let (outgoing, mut to_send) = mpsc::unbounded_channel();
    wasm_bindgen_futures::spawn_local(async move {
        // The closures live as long as the socket is used.
        let _handlers = (on_open, on_message, on_close);
        while let Some(message) = to_send.recv().await {
            let json = match serde_json::to_string(&message) {
                Ok(json) => json,
                Err(error) => {
                    tracing::error!(%error, "could not encode a signaling message");
                    continue;
                }
            };
            if socket.send_with_str(&json).is_err() {
                break;
            }
        }
        // The link was dropped: say goodbye properly.
        socket.set_onclose(None);
        socket.set_onmessage(None);
        let _ = socket.close();
    });
    Ok(SignalingLink { outgoing, incoming })
}
