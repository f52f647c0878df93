//! The client without a window: the app that bots, benchmarks and tests drive.

use std::time::Duration;

use bevy::app::ScheduleRunnerPlugin;
use bevy::ecs::schedule::SingleThreadedExecutor;
use bevy::prelude::*;

use crate::call::CallPlugin;
use crate::config::ClientConfig;

/// How often a headless app runs its schedule.
const HEADLESS_TICK: Duration = Duration::from_millis(10);

/// An app with the call plugins and no window: `MinimalPlugins` ticking every 10 ms,
/// plus the asset store that participants' video images live in. Its schedules run on
/// the thread that ticks it ([`OnTheTickingThread`]).
pub fn headless_app(config: ClientConfig) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(HEADLESS_TICK)))
        .add_plugins(AssetPlugin::default())
        .init_asset::<Image>()
        .add_plugins((CallPlugin::new(config), OnTheTickingThread));
    app
}

/// Runs every schedule of the app on the thread that ticks it, not on Bevy's task
/// pool. A headless client's systems are few and short: handing them to the pool's
/// threads and waking them 100 times a second cost more than the systems themselves
/// (about a tenth of a two-person call's CPU in `meetspace bench`), and several
/// headless apps in one process (the bench, the demo's bots beside the window) then
/// no longer contend for the pool the windowed app draws with.
struct OnTheTickingThread;

impl Plugin for OnTheTickingThread {
    fn build(&self, _app: &mut App) {}

    /// After every plugin has added its schedules.
    fn cleanup(&self, app: &mut App) {
        let mut schedules = app.world_mut().resource_mut::<Schedules>();
        for (_, schedule) in schedules.iter_mut() {
            schedule.set_executor(SingleThreadedExecutor::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::thread::ThreadId;

    use super::*;
    use crate::signaling::protocol::DisplayName;

    #[test]
    fn every_system_runs_on_the_ticking_thread() {
        let config = ClientConfig::synthetic(
            "ws://127.0.0.1:9/".parse().unwrap(),
            DisplayName::parse("Ada").unwrap(),
        );
        let mut app = headless_app(config);
        let threads = Arc::new(Mutex::new(Vec::<ThreadId>::new()));
        let note = |threads: Arc<Mutex<Vec<ThreadId>>>| {
            move || threads.lock().unwrap().push(std::thread::current().id())
        };
        app.add_systems(First, note(threads.clone()))
            .add_systems(PreUpdate, note(threads.clone()))
            .add_systems(Update, note(threads.clone()))
            .add_systems(PostUpdate, note(threads.clone()))
            .add_systems(Last, note(threads.clone()));
        app.finish();
        app.cleanup();
        for _ in 0..20 {
            app.update();
        }
        let threads = threads.lock().unwrap();
        assert_eq!(threads.len(), 100);
        let here = std::thread::current().id();
        assert!(threads.iter().all(|&thread| thread == here));
    }
}
