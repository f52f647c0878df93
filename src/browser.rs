//! Small helpers for the browser build, below every other module: the page's
//! document, JavaScript errors in words, and a sleep on the browser's timer.

use std::time::Duration;

use js_sys::Reflect;
use wasm_bindgen::JsValue;

/// The page's document.
pub fn document() -> Result<web_sys::Document, JsValue> {
    web_sys::window()
        .and_then(|window| window.document())
        .ok_or_else(|| JsValue::from_str("no document"))
}

/// The `name` of a JavaScript error (`NotAllowedError`, ...), if it has one.
pub fn error_name(error: &JsValue) -> Option<String> {
    Reflect::get(error, &"name".into())
        .ok()
        .and_then(|name| name.as_string())
}

/// A JavaScript error (or any thrown value) in words.
pub fn describe(error: &JsValue) -> String {
    let message = Reflect::get(error, &"message".into())
        .ok()
        .and_then(|message| message.as_string());
    match (error_name(error), message) {
        (Some(name), Some(message)) => format!("{name}: {message}"),
        (None, Some(message)) => message,
        _ => error.as_string().unwrap_or_else(|| format!("{error:?}")),
    }
}

/// Waits `duration` on the browser's timer.
pub async fn sleep(duration: Duration) {
    let millis = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, millis);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
