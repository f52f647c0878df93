//! The browser's WebSocket signaling client (web-sys `WebSocket`).

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::{mpsc, oneshot};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use super::link::{LinkEvent, SignalUrl, SignalingError, SignalingLink};
use super::protocol::ServerMessage;

pub(super) async fn connect(url: &SignalUrl) -> Result<SignalingLink, SignalingError> {
    let unreachable = |reason: String| SignalingError::Unreachable {
        url: url.clone(),
        reason,
    };
    let socket = WebSocket::new(url.0.as_str())
        .map_err(|error| unreachable(crate::browser::describe(&error)))?;
    let (received, incoming) = mpsc::unbounded_channel();
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
            let Some(text) = event.data().as_string() else {
                return;
            };
            match serde_json::from_str::<ServerMessage>(&text) {
                Ok(message) => {
                    let _ = received.send(LinkEvent::Message(message));
                }
                Err(error) => {
                    tracing::warn!(%error, "ignoring a signaling message we do not understand");
                }
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
