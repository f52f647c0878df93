//! meetspace: a video-call client that is also a place.
//!
//! An ECS app (Bevy) with async edges: the network runs on a tokio runtime owned by
//! the app, and everything crosses into the ECS through channels. `docs/architecture.md`
//! follows a call through the code stage by stage and gives the modules' order;
//! `docs/signaling.md` is the wire protocol.

pub mod app;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod bot;
#[cfg(target_arch = "wasm32")]
pub mod browser;
pub mod call;
pub mod capture;
pub mod config;
#[cfg(not(target_arch = "wasm32"))]
pub mod frame_stats;
pub mod headless;
pub mod media;
pub mod rtc;
#[cfg(not(target_arch = "wasm32"))]
pub mod runtime;
pub mod signaling;
pub mod space;
pub mod ui;
#[cfg(target_arch = "wasm32")]
pub mod web;
