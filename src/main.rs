//! The `meetspace` binary: the windowed client, `serve` and `bot`; in the browser
//! build, the client in the page.

#[cfg(not(target_arch = "wasm32"))]
use std::process::ExitCode;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
use anyhow::Context;
#[cfg(not(target_arch = "wasm32"))]
use bevy::app::AppExit;
#[cfg(not(target_arch = "wasm32"))]
use clap::Parser;
#[cfg(not(target_arch = "wasm32"))]
use meetspace::config::{Cli, Command, ServeArgs};
#[cfg(not(target_arch = "wasm32"))]
use meetspace::signaling::server::SignalingServer;
#[cfg(not(target_arch = "wasm32"))]
use meetspace::signaling::server::sfu::SfuSettings;
#[cfg(not(target_arch = "wasm32"))]
use meetspace::signaling::turn_credentials::TurnCredentials;

#[cfg(target_arch = "wasm32")]
fn main() {
    meetspace::web::run();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Serve(args)) => serve(*args).map(|()| AppExit::Success),
        Some(Command::Bot(args)) => {
            init_logging();
            meetspace::bot::run(*args)
        }
        Some(Command::Bench(args)) => meetspace::bench::run(args).map(|()| AppExit::Success),
        None => meetspace::app::run_windowed(cli.client),
    };
    match outcome {
        Ok(AppExit::Success) => ExitCode::SUCCESS,
        Ok(AppExit::Error(code)) => ExitCode::from(code.get()),
        Err(error) => {
            eprintln!("meetspace: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Logs to stderr, filtered by `RUST_LOG` (default: [`meetspace::app::LOG_FILTER`]).
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(meetspace::app::log_filter())
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(not(target_arch = "wasm32"))]
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    let web_root = args.web_root();
    runtime.block_on(async {
        let mut server = SignalingServer::bind(args.listen, args.limits)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            let config = meetspace::signaling::tls::server_config(cert, key)
                .context("cannot load the TLS certificate and key")?;
            server = server.with_tls(config);
        }
        if let Some(secret) = &args.turn_secret {
            tracing::info!(
                "handing out TURN credentials for {} valid {} s",
                args.turn_url
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                args.turn_ttl
            );
            server = server.with_turn(TurnCredentials::new(
                args.turn_url.clone(),
                secret,
                Duration::from_secs(args.turn_ttl),
            ));
        }
        if !args.sfu.is_empty() {
            tracing::info!(
                "rooms of {} or more move to the SFU at {}",
                args.mesh_limit,
                args.sfu.join(", ")
            );
            server = server.with_sfu(SfuSettings {
                instances: args.sfu.clone(),
                api_secret: args.janus_api_secret.clone(),
                admin_key: args.janus_admin_key.clone(),
                mesh_limit: args.mesh_limit as usize,
            });
        }
        tracing::info!("signaling server listening at {}", server.url());
        if let Some(root) = web_root {
            tracing::info!(
                "serving the web app from {} at http://{}/",
                root.display(),
                server.local_addr()
            );
            server = server.serve_web_app(root);
        }
        tokio::select! {
            served = server.run() => served.context("the server stopped"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
