//! Building the app: headless (no window, no GPU; bots and tests) or windowed.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use bevy::app::ScheduleRunnerPlugin;
use bevy::prelude::*;

use crate::bot;
use crate::call::{CallCommand, CallPlugin};
use crate::config::{ClientArgs, ClientConfig};
use crate::runtime::AsyncRuntime;
use crate::signaling::protocol::DisplayName;
use crate::signaling::server::{ServerLimits, SignalingServer};
use crate::space::SpacePlugin;
use crate::ui::UiPlugin;

/// Default log filter: our own news, everyone's warnings, minus the WebRTC stack's
/// chatter about candidate pairs and server names that a user cannot act on.
pub const LOG_FILTER: &str = "warn,meetspace=info,rtc_ice=error,rtc_dtls=error,rtc::peer_connection::handler=error,wgpu=error";

/// Bots that `--demo` starts.
const DEMO_BOTS: usize = 3;

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

/// Runs the windowed client until its window closes.
///
/// Without `--signal`, first starts a signaling server on a free port of 127.0.0.1 on
/// the app's runtime and calls through it. With `--demo`, starts three bots in a public
/// room first and joins it; with `--room`, joins that room.
pub fn run_windowed(args: ClientArgs) -> anyhow::Result<AppExit> {
    let runtime = AsyncRuntime::new().context("cannot start the network runtime")?;
    let signal = match args.signal {
        Some(url) => url,
        None => {
            let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let server = runtime
                .handle()
                .block_on(SignalingServer::bind(loopback, ServerLimits::default()))
                .context("cannot start the embedded signaling server")?;
            let url = server.url();
            info!("hosting signaling at {url}");
            runtime.handle().spawn(server.run());
            url.parse().context("the embedded server's URL")?
        }
    };
    let room = if args.demo {
        let title = DisplayName::parse("Demo room").context("the demo room's title")?;
        Some(bot::spawn_in_process(&signal, &title, DEMO_BOTS).context("cannot start the demo")?)
    } else {
        args.room
    };
    let config = ClientConfig::new(signal, args.call);
    let mut app = App::new();
    if let Some(room) = room {
        let name = config.name.clone();
        app.add_systems(Startup, move |mut commands: MessageWriter<CallCommand>| {
            commands.write(CallCommand::JoinRoom {
                room: room.clone(),
                name: name.clone(),
            });
        });
    }
    app.insert_resource(runtime)
        .add_plugins(
            DefaultPlugins
                .set(WindowPlugin {
                    primary_window: Some(Window {
                        title: "meetspace".into(),
                        ..default()
                    }),
                    ..default()
                })
                .set(bevy::log::LogPlugin {
                    filter: LOG_FILTER.to_owned(),
                    ..default()
                }),
        )
        .add_plugins((CallPlugin::new(config), UiPlugin, SpacePlugin));
    Ok(app.run())
}
