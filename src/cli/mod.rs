//! The `ceasefire-ledger` command line: one subcommand per file.
//!
//! Every command returns `anyhow::Result`; `main` prints an error as one
//! line and exits non-zero, never with a panic trace.

mod bench;
mod demo;
mod export;
mod init;
mod keygen;
mod rebuild;
mod receipt;
mod restore;
mod serve;
mod sign;
mod status;
mod submit;
mod verify;
mod watch;
mod witness;
mod witnessed;

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

/// An address to listen on, given as `IP:PORT` or `HOST:PORT`
/// (`localhost:50051`): a name is resolved when the option is read, and
/// the server listens on the first address it resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddress(pub std::net::SocketAddr);

impl std::str::FromStr for ListenAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<ListenAddress, String> {
        if let Ok(address) = text.parse() {
            return Ok(ListenAddress(address));
        }
        let mut addresses = std::net::ToSocketAddrs::to_socket_addrs(text).map_err(|error| {
            format!("cannot listen on {text:?}: {error} (give IP:PORT or HOST:PORT)")
        })?;
        addresses
            .next()
            .map(ListenAddress)
            .ok_or_else(|| format!("cannot listen on {text:?}: the name has no address"))
    }
}

impl<'de> serde::Deserialize<'de> for ListenAddress {
    /// As on the command line, so a config file takes what a flag takes.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How client commands reach the server.
#[derive(clap::Args, Clone)]
pub struct ConnectArgs {
    /// The ledger's gRPC address: a URL (https:// for TLS) or host:port
    /// (plaintext, or TLS when --ca or --cert is given).
    #[arg(long, env = "CEASEFIRE_LEDGER_SERVER", default_value = DEFAULT_SERVER_URL)]
    pub server: String,
    #[command(flatten)]
    pub tls: ceasefire_grpc::client::ClientTls,
}

impl ConnectArgs {
    pub async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        ceasefire_grpc::client::channel(&self.server, &self.tls).await
    }

    pub async fn ledger(
        &self,
    ) -> anyhow::Result<ceasefire_grpc::proto::ledger_client::LedgerClient<tonic::transport::Channel>>
    {
        Ok(ceasefire_grpc::client::ledger_client(self.channel().await?))
    }

    pub async fn compliance(
        &self,
    ) -> anyhow::Result<
        ceasefire_grpc::proto::compliance_client::ComplianceClient<tonic::transport::Channel>,
    > {
        Ok(ceasefire_grpc::proto::compliance_client::ComplianceClient::new(self.channel().await?))
    }
}

#[derive(Parser)]
#[command(
    name = "ceasefire-ledger",
    version = env!("CEASEFIRE_LEDGER_VERSION"),
    about = "An append-only, signed, verifiable ledger of ceasefire monitoring reports"
)]
pub struct Cli {
    /// Log format on stderr: human-readable text or JSON lines (`serve`:
    /// also the config file's `log-format`) [default: text]. The level
    /// comes from RUST_LOG (default info).
    #[arg(long, global = true, env = "CEASEFIRE_LEDGER_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ledger service (gRPC).
    Serve(serve::ServeArgs),
    /// Sign events from JSON or NDJSON and submit them; print one receipt per event
    /// (or keep them in an outbox until the ledger answers: --outbox DIR).
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
    /// Run the example scenario end to end on a temporary ledger, then audit it.
    Demo(demo::DemoArgs),
    /// Measure ingest: N concurrent clients submitting pre-signed observations.
    Bench(bench::BenchArgs),
    /// Write the log as a C2SP tlog-tiles directory (incremental).
    Export(export::ExportArgs),
    /// Rebuild a data directory from a verified tlog-tiles export.
    Restore(restore::RestoreArgs),
    /// A C2SP tlog-witness for any C2SP log: serve, keygen, vkey.
    Witness(witness::WitnessArgs),
    /// Receipt files (C2SP tlog-proof): refresh them to a newer checkpoint.
    Receipt(receipt::ReceiptArgs),
}

impl Cli {
    /// Reads `serve`'s config file (`--config`), so that everything it
    /// sets, the log format among them, is known before logging starts;
    /// flags and variables win over it.
    pub fn with_config_file(mut self) -> anyhow::Result<Cli> {
        if let Command::Serve(args) = self.command {
            self.command = Command::Serve(args.with_file()?);
        }
        Ok(self)
    }

    /// The log format: `--log-format` (or its variable), else the config
    /// file's `log-format`, else text.
    pub fn log_format(&self) -> LogFormat {
        let from_file = match &self.command {
            Command::Serve(args) => args.log_format(),
            _ => None,
        };
        self.log_format.or(from_file).unwrap_or(LogFormat::Text)
    }

    /// Process-wide work the chosen command needs beside its own.
    pub fn prepare_process(&self) {
        if matches!(self.command, Command::Serve(_)) {
            serve::trim_malloc_periodically();
        }
    }

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
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Export(args) => export::run(args).await,
            Command::Restore(args) => restore::run(args).await,
            Command::Witness(args) => witness::run(args).await,
            Command::Receipt(args) => receipt::run(args).await,
        }
    }
}
