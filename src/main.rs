//! The `meetspace` binary: the windowed client, `serve` and `bot`.

use std::process::ExitCode;

use anyhow::Context;
use bevy::app::AppExit;
use clap::Parser;
use meetspace::config::{Cli, Command, ServeArgs};
use meetspace::signaling::server::SignalingServer;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Serve(args)) => serve(args).map(|()| AppExit::Success),
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

/// Logs to stderr, filtered by `RUST_LOG` (default: [`meetspace::app::LOG_FILTER`]).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(meetspace::app::LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async {
        let server = SignalingServer::bind(args.listen, args.limits)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!("signaling server listening at {}", server.url());
        tokio::select! {
            served = server.run() => served.context("the server stopped"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
