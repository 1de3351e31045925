//! The `ceasefire-ledger` binary: parse the command line, run, and turn any
//! error into one line on stderr and a non-zero exit.

#![forbid(unsafe_code)]

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use ceasefire_ledger::cli::LogFormat;
use clap::Parser;

/// Whether the command line asks for `verify --json` (read raw: clap did
/// not accept it).
fn is_verify_json() -> bool {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    args.iter().any(|arg| arg == "verify") && args.iter().any(|arg| arg == "--json")
}
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match ceasefire_ledger::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // A usage error of `verify --json` is still a JSON object on
            // stdout, so scripts read every exit the same way; help and
            // version are not errors.
            if error.use_stderr() && is_verify_json() {
                let first_line = error.to_string();
                let first_line = first_line.lines().next().unwrap_or_default();
                let value = serde_json::json!({
                    "ok": false,
                    "exit_code": error.exit_code(),
                    "error": first_line.trim_start_matches("error: "),
                });
                let _ = writeln!(std::io::stdout(), "{value}");
            }
            error.exit()
        }
    };
    let cli = match cli.with_config_file() {
        Ok(cli) => cli,
        Err(error) => {
            let chain = error
                .chain()
                .map(|cause| cause as &(dyn std::error::Error + 'static));
            eprintln!("error: {}", ceasefire_core::error_chain::join(chain));
            return ExitCode::FAILURE;
        }
    };
    cli.prepare_process();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        // Colour only for a person at a terminal: a file, a pipe or a
        // journal gets the bare text (no escape codes to grep around).
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format() {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<ceasefire_ledger::cli::Exit>() {
            Some(exit) => {
                eprintln!("{}", exit.message);
                ExitCode::from(exit.code)
            }
            None => {
                // anyhow's `{:#}`, each cause said once.
                let chain = error
                    .chain()
                    .map(|cause| cause as &(dyn std::error::Error + 'static));
                eprintln!("error: {}", ceasefire_core::error_chain::join(chain));
                ExitCode::FAILURE
            }
        },
    }
}
