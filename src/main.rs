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
        // Listen for the signals before anything is reported started, so a
        // SIGTERM sent right after the start line still drains gracefully.
        let signals = Signals::install()?;
        let gateway = Gateway::start(&config)
            .await
            .context("cannot start the gateway")?;
        signals.wait().await;
        tracing::info!("Shutdown signal received; draining.");
        gateway.shutdown().await;
        Ok(())
    })
}

/// SIGTERM and SIGINT, listened for from `install` on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
