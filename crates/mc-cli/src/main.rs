//! `mc`, the one MissionControl binary: `mc server` runs the control plane; every other command
//! talks to it over HTTP through `mc-client`. Errors end as one `error:` line on stderr (plus,
//! for a refusal that names existing work, a table of it, and a `hint:` line when there is a
//! next step) and a non-zero exit code: 1 for a refusal by the server or a failed check, 2 for a
//! command used wrongly, 3 when the server cannot be reached.

mod cli;
mod commands;
mod leases;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::{Ctx, EXIT_FAILURE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server needs worker threads; a client command is one request or a few.
    let runtime = match &cli.command {
        Command::Server(_) => {
            // SAFETY: no other thread exists yet; the runtime is built on the next line.
            #[allow(unsafe_code)]
            unsafe {
                mc_embed::pin_model_threads()
            };
            tokio::runtime::Builder::new_multi_thread().enable_all().build()
        }
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    };
    let result = match runtime {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing left to say to anyone.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let code = commands::exit_code(&e);
            let message = one_line(&format!("{e:#}"));
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            if let Some(d) = commands::detail(&e) {
                eprintln!("{d}");
            }
            if let Some(h) = commands::hint(&e) {
                eprintln!("hint: {}", one_line(&h));
            }
            ExitCode::from(if code == 0 { EXIT_FAILURE } else { code })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx::new(cli.global);
    match cli.command {
        Command::Server(args) => commands::server::run(&ctx, args).await,
        Command::Mission { cmd } => commands::mission::run(&ctx, cmd).await,
        Command::Kluster { cmd } => commands::kluster::run(&ctx, cmd).await,
        Command::Doc { cmd } => commands::doc::run(&ctx, cmd).await,
        Command::Task { cmd } => commands::task::run(&ctx, cmd).await,
        Command::Search(args) => commands::search::run(&ctx, args).await,
        Command::Ledger { cmd } => commands::ledger::run(&ctx, cmd).await,
        Command::System { cmd } => commands::system::run(&ctx, cmd).await,
        Command::Mcp(args) => commands::mcp::run(&ctx, args).await,
        Command::Run(args) => commands::run::run(&ctx, args).await,
        Command::Version => {
            if ctx.json() {
                output::json(&serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
            } else {
                output::line(format_args!("mc {}", env!("CARGO_PKG_VERSION")))?;
                Ok(())
            }
        }
    }
}

/// Collapses line breaks so an error prints on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
