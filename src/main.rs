//! `otlp-gateway`: run the gateway, check a config, print the version.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use otlp_gateway::config;
use otlp_gateway::topology::Gateway;

/// OTLP gateway: receive, batch and deliver traces, metrics and logs.
#[derive(Debug, Parser)]
#[command(name = "otlp-gateway", version, about)]
struct Cli {
    /// Path of config.toml.
    #[arg(long, short, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the config, print the resolved pipelines, exit non-zero on any problem.
    CheckConfig,
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Version => {
            println!("otlp-gateway {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::CheckConfig => match config::load_and_validate(&cli.config) {
            Ok((config, warnings)) => {
                for warning in warnings {
                    eprintln!("warning: {warning}");
                }
                print!("{}", config::describe(&config));
                println!("config OK: {}", cli.config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: invalid config", cli.config.display());
                eprintln!("{errors}");
                ExitCode::from(1)
            }
        },
        Command::Run => match run(&cli.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let (config, warnings) = match config::load_and_validate(path) {
        Ok(loaded) => loaded,
        Err(errors) => anyhow::bail!("{}: invalid config\n{errors}", path.display()),
    };
    otlp_gateway::telemetry::logs::init(&config.service.logs).context("service.logs.level")?;
    for warning in warnings {
        tracing::warn!(%warning, "Config warning.");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let gateway = Gateway::start(&config)
            .await
            .context("cannot start the gateway")?;
        wait_for_signal().await?;
        tracing::info!("Shutdown signal received; draining.");
        gateway.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
