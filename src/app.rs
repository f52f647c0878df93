//! Building the windowed app, natively or in the browser (the headless one is
//! [`crate::headless`]).

#[cfg(not(target_arch = "wasm32"))]
use std::net::{Ipv4Addr, SocketAddr};

#[cfg(not(target_arch = "wasm32"))]
use anyhow::Context;
use bevy::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
use crate::bot;
use crate::call::{CallCommand, CallPlugin};
#[cfg(not(target_arch = "wasm32"))]
use crate::capture::{CapturePlugin, ScreenshotPlan, WaitFor};
use crate::config::ClientConfig;
#[cfg(not(target_arch = "wasm32"))]
use crate::config::{ClientArgs, DemoPlace};
#[cfg(not(target_arch = "wasm32"))]
use crate::frame_stats::FrameStatsPlugin;
#[cfg(not(target_arch = "wasm32"))]
use crate::runtime::AsyncRuntime;
#[cfg(not(target_arch = "wasm32"))]
use crate::signaling::protocol::DisplayName;
use crate::signaling::protocol::RoomId;
#[cfg(not(target_arch = "wasm32"))]
use crate::signaling::server::{ServerLimits, SignalingServer};
use crate::space::{Graphics, GraphicsChoice, SpacePlugin, ToneMappingTablePlugin};
use crate::ui::UiPlugin;

/// Default log filter: our own news, everyone's warnings, minus the WebRTC stack's
/// chatter about candidate pairs and server names that a user cannot act on, and
/// minus Bevy's tone mapping's error that its tables' feature is off (the space gives
/// it the table it uses, see `space::tone_mapping`).
pub const LOG_FILTER: &str = "warn,meetspace=info,rtc_ice=error,rtc_dtls=error,rtc::peer_connection::handler=error,wgpu=error,bevy_core_pipeline::tonemapping=off";

#[cfg(not(target_arch = "wasm32"))]
/// The log filter `RUST_LOG` gives, else [`LOG_FILTER`].
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(LOG_FILTER))
}

#[cfg(not(target_arch = "wasm32"))]
/// Exit code when no GPU adapter can be found.
pub const EXIT_NO_GPU: i32 = 2;

#[cfg(not(target_arch = "wasm32"))]
/// Runs the windowed client until its window closes (or, with `--screenshot` or
/// `--frame-stats`, until those are done).
///
/// Without `--signal`, first starts a signaling server on a free port of 127.0.0.1 on
/// the app's runtime and calls through it. With `--demo`, starts `--demo-bots` bots in
/// the lobby (and one who walks up to the player), or with `--demo room` in a public
/// room first and joins it; with `--room`, joins that room. Without a GPU
/// adapter, exits with [`EXIT_NO_GPU`] and one line on stderr.
pub fn run_windowed(args: ClientArgs) -> anyhow::Result<AppExit> {
    exit_without_gpu();
    let runtime = AsyncRuntime::new().context("cannot start the network runtime")?;
    let demo_bots = usize::from(args.demo_bots);
    let signal = match args.signal {
        Some(url) => url,
        None => {
            let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let limits = ServerLimits {
                // The bots and us.
                room_capacity: ServerLimits::default().room_capacity.max(demo_bots + 1),
                ..ServerLimits::default()
            };
            let server = runtime
                .handle()
                .block_on(SignalingServer::bind(loopback, limits))
                .context("cannot start the embedded signaling server")?;
            let url = server.url();
            info!("hosting signaling at {url}");
            runtime.handle().spawn(server.run());
            url.parse().context("the embedded server's URL")?
        }
    };
    let room = match args.demo {
        Some(DemoPlace::Room) => {
            let title = DisplayName::parse("Demo room").context("the demo room's title")?;
            let room = bot::spawn_in_process(&signal, &title, demo_bots);
            Some(room.context("cannot start the demo")?)
        }
        Some(DemoPlace::Lobby) => {
            bot::spawn_lobby_demo(&signal, demo_bots).context("cannot start the demo")?;
            None
        }
        None => args.room.clone(),
    };
    let wait_for = if args.demo == Some(DemoPlace::Room) {
        WaitFor::Panels(demo_bots)
    } else if room.is_some() {
        WaitFor::Panels(1)
    } else if let Some(people) = args.wait_for_people {
        WaitFor::Avatars(usize::from(people))
    } else {
        WaitFor::Nothing
    };
    let config = ClientConfig::new(signal, args.call, true);
    let mut app = App::new();
    app.insert_resource(runtime);
    add_client(
        &mut app,
        config,
        room,
        args.graphics,
        Window {
            title: "meetspace".into(),
            ..default()
        },
    );
    if !args.screenshot.is_empty() {
        app.add_plugins(CapturePlugin {
            wait_for,
            plan: Some(ScreenshotPlan::new(args.screenshot, args.frames)),
        });
    } else if let Some(seconds) = args.frame_stats {
        app.add_plugins((
            CapturePlugin {
                wait_for,
                plan: None,
            },
            FrameStatsPlugin { seconds },
        ));
    }
    Ok(app.run())
}

/// Adds the client to `app`: the window, the call, the overlay and the space (drawn as
/// `graphics` says); with a `room`, joins it as soon as the app starts. Native and
/// browser builds share it.
pub fn add_client(
    app: &mut App,
    config: ClientConfig,
    room: Option<RoomId>,
    graphics: GraphicsChoice,
    window: Window,
) {
    app.insert_resource(Graphics {
        choice: graphics,
        ..default()
    });
    if let Some(room) = room {
        let name = config.name.clone();
        app.add_systems(Startup, move |mut commands: MessageWriter<CallCommand>| {
            commands.write(CallCommand::JoinRoom {
                room: room.clone(),
                name: name.clone(),
            });
        });
    }
    // Before Bevy's plugins, whose tone mapping then takes the table it gives.
    app.add_plugins(ToneMappingTablePlugin)
        .add_plugins(
            DefaultPlugins
                .set(WindowPlugin {
                    primary_window: Some(window),
                    ..default()
                })
                .set(bevy::log::LogPlugin {
                    filter: LOG_FILTER.to_owned(),
                    ..default()
                }),
        )
        .add_plugins((CallPlugin::new(config), UiPlugin, SpacePlugin));
}

#[cfg(not(target_arch = "wasm32"))]
/// Turns Bevy's panic when no GPU adapter exists into one line on stderr and exit code
/// [`EXIT_NO_GPU`]; every other panic goes to the hook that was there before.
fn exit_without_gpu() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .payload_as_str()
            .is_some_and(|message| message.starts_with("Unable to find a GPU"))
        {
            eprintln!(
                "meetspace: no GPU adapter found (Vulkan or GL); install a driver, e.g. \
                 mesa-vulkan-drivers for software rendering"
            );
            std::process::exit(EXIT_NO_GPU);
        }
        previous(info);
    }));
}
