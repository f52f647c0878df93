//! The client without a window: the app that bots, benchmarks and tests drive.

use std::time::Duration;

use bevy::app::ScheduleRunnerPlugin;
use bevy::prelude::*;

use crate::call::CallPlugin;
use crate::config::ClientConfig;

/// How often a headless app runs its schedule.
const HEADLESS_TICK: Duration = Duration::from_millis(10);

/// An app with the call plugins and no window: `MinimalPlugins` ticking every 10 ms,
/// plus the asset store that participants' video images live in.
pub fn headless_app(config: ClientConfig) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(HEADLESS_TICK)))
        .add_plugins(AssetPlugin::default())
        .init_asset::<Image>()
        .add_plugins(CallPlugin::new(config));
    app
}
