//! The tokio runtime that the app owns: network work runs here, never in a system.

use bevy::prelude::Resource;
use tokio::runtime::{Handle, Runtime};

/// Worker threads for network tasks; signaling and WebRTC are I/O bound.
const WORKER_THREADS: usize = 2;

/// The app's tokio runtime, as a Bevy resource.
///
/// Dropping it (when the app is dropped) ends every task at once without waiting,
/// which also closes their sockets.
#[derive(Resource)]
pub struct AsyncRuntime(Option<Runtime>);

impl AsyncRuntime {
    /// Starts a multi-threaded runtime.
    pub fn new() -> std::io::Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("meetspace-net")
            .enable_all()
            .build()
            .map(|runtime| Self(Some(runtime)))
    }

    /// A handle for spawning tasks and blocking on futures.
    pub fn handle(&self) -> &Handle {
        self.0
            .as_ref()
            .expect("the runtime lives until the resource is dropped")
            .handle()
    }
}

impl Drop for AsyncRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
