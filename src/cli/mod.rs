//! The `ceasefire-ledger` command line: one subcommand per file.
//!
//! Every command returns `anyhow::Result`; `main` prints an error as one
//! line and exits non-zero, never with a panic trace.

mod bench;
mod init;
mod keygen;
mod rebuild;
mod serve;
mod sign;
mod status;
mod submit;
mod verify;
mod watch;

use clap::{Parser, Subcommand};

/// An error that asks for a specific exit code (the auditor's 1 and 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

/// Where CLI commands find the server unless told otherwise.
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:50051";

#[derive(Parser)]
#[command(
    name = "ceasefire-ledger",
    version,
    about = "An append-only, signed, verifiable ledger of ceasefire monitoring reports"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ledger service (gRPC).
    Serve(serve::ServeArgs),
    /// Sign events from JSON or NDJSON and submit them; print one receipt per event.
    Submit(submit::SubmitArgs),
    /// Create an Ed25519 key file (owner-only permissions) and print its public key.
    Keygen(keygen::KeygenArgs),
    /// Write an unsigned genesis for the signatories to sign.
    Init(init::InitArgs),
    /// Add a signature to a genesis or governance event file.
    Sign(sign::SignArgs),
    /// Show compliance status: zones by commitments.
    Status(status::StatusArgs),
    /// Follow compliance changes (resumes after a dropped connection).
    Watch(watch::WatchArgs),
    /// Refold the compliance projection from the log (server stopped).
    RebuildProjections(rebuild::RebuildArgs),
    /// Audit a ledger: every entry, signature, rule, root and digest.
    Verify(verify::VerifyArgs),
    /// Measure ingest: N concurrent clients submitting pre-signed observations.
    Bench(bench::BenchArgs),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Submit(args) => submit::run(args).await,
            Command::Keygen(args) => keygen::run(args),
            Command::Init(args) => init::run(args),
            Command::Sign(args) => sign::run(args),
            Command::Status(args) => status::run(args).await,
            Command::Watch(args) => watch::run(args).await,
            Command::RebuildProjections(args) => rebuild::run(args),
            Command::Verify(args) => verify::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    }
}
