//! `witness`: run a C2SP tlog-witness (`serve`), make its key (`keygen`),
//! print its public key (`vkey`). The service itself is the
//! `ceasefire-witness` crate; here are the flags, the config file and the
//! key file.
//!
//! Like `serve`, every option of `witness serve` is a flag, an environment
//! variable (`CEASEFIRE_LEDGER_WITNESS_*`) and a key of the TOML file given
//! with `--config`; a flag or variable wins over the file, the file over
//! the default. Logs from flags are added to the file's.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use ceasefire_core::cosignature::Cosigner;
use ceasefire_witness::config::{self, ConfigFile, LogSpec, WitnessConfig};

use crate::keyfile::KeyFile;

#[derive(clap::Args)]
pub struct WitnessArgs {
    #[command(subcommand)]
    command: WitnessCommand,
}

#[derive(clap::Subcommand)]
enum WitnessCommand {
    /// Run the witness: POST <prefix>/add-checkpoint, until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Create a witness key file (owner-only permissions) and print its vkey.
    Keygen(KeygenArgs),
    /// Print the witness vkey of a key file under a name.
    Vkey(VkeyArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A TOML file setting name, key-file, listen, data-dir, url-prefix and
    /// [[log]] entries (vkey = "..." or genesis = "FILE").
    #[arg(long, env = "CEASEFIRE_LEDGER_WITNESS_CONFIG")]
    config: Option<PathBuf>,
    /// The witness's name, which its cosignatures carry (e.g. witness.example.org/w1).
    #[arg(long, env = "CEASEFIRE_LEDGER_WITNESS_NAME")]
    name: Option<String>,
    /// The witness's key file (from `witness keygen`).
    #[arg(long = "key", env = "CEASEFIRE_LEDGER_WITNESS_KEY")]
    key_file: Option<PathBuf>,
    /// Address for HTTP, IP:PORT or HOST:PORT [default: 127.0.0.1:7380].
    #[arg(long, env = "CEASEFIRE_LEDGER_WITNESS_LISTEN")]
    listen: Option<super::ListenAddress>,
    /// Directory of the witness's state, created if missing [default: ceasefire-witness-data].
    #[arg(long, env = "CEASEFIRE_LEDGER_WITNESS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Path before /add-checkpoint, e.g. /witness [default: none].
    #[arg(long, env = "CEASEFIRE_LEDGER_WITNESS_URL_PREFIX")]
    url_prefix: Option<String>,
    /// A log to witness, by its vkey (<origin>+<hex key id>+<base64 key>); repeatable.
    #[arg(long = "log-vkey", value_name = "VKEY")]
    log_vkeys: Vec<String>,
    /// A ceasefire-ledger log to witness, by its signed genesis file; repeatable.
    #[arg(long = "log-genesis", value_name = "FILE")]
    log_geneses: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct KeygenArgs {
    /// The witness's name, which its cosignatures carry.
    #[arg(long)]
    name: String,
    /// Where to write the key file (never overwritten).
    #[arg(long, short)]
    out: PathBuf,
    #[command(flatten)]
    encryption: super::keygen::EncryptArgs,
}

#[derive(clap::Args)]
struct VkeyArgs {
    /// The witness's key file.
    #[arg(long)]
    key: PathBuf,
    /// The witness's name.
    #[arg(long)]
    name: String,
}

pub async fn run(args: WitnessArgs) -> anyhow::Result<()> {
    match args.command {
        WitnessCommand::Serve(args) => serve(args).await,
        WitnessCommand::Keygen(args) => keygen(args),
        WitnessCommand::Vkey(args) => vkey(args),
    }
}

/// The cosigner of the key in `path` under `name`.
fn cosigner(name: &str, path: &Path) -> anyhow::Result<Cosigner> {
    let key = KeyFile::load(path)?.key;
    Cosigner::new(name, key).map_err(|error| anyhow!("witness name {name:?}: {error}"))
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    args.encryption.check_out(&args.out)?;
    let key = KeyFile::generate(None);
    // Checked before the file is written, so a bad name leaves nothing behind.
    let cosigner = Cosigner::new(&args.name, key.key.clone())
        .map_err(|error| anyhow!("witness name {:?}: {error}", args.name))?;
    args.encryption.save(&key, &args.out)?;
    println!("{}", cosigner.verifier().vkey());
    Ok(())
}

fn vkey(args: VkeyArgs) -> anyhow::Result<()> {
    println!("{}", cosigner(&args.name, &args.key)?.verifier().vkey());
    Ok(())
}

/// The flags over the file over the defaults, keys and logs loaded.
fn witness_config(args: ServeArgs) -> anyhow::Result<WitnessConfig> {
    let (file, mut specs) = match &args.config {
        Some(path) => {
            let file = ConfigFile::load(path)?;
            let specs = file
                .log_specs()
                .with_context(|| format!("the config file {}", path.display()))?;
            (file, specs)
        }
        None => (ConfigFile::default(), Vec::new()),
    };
    specs.extend(args.log_vkeys.into_iter().map(LogSpec::Vkey));
    specs.extend(args.log_geneses.into_iter().map(LogSpec::Genesis));
    if specs.is_empty() {
        bail!(
            "no log to witness: give --log-vkey VKEY or --log-genesis FILE, or [[log]] \
             entries in the --config file"
        );
    }
    let Some(name) = args.name.or(file.name) else {
        bail!("--name NAME is required (the name the witness's cosignatures carry)");
    };
    let Some(key_file) = args.key_file.or(file.key_file) else {
        bail!("--key FILE is required (make one with `witness keygen --name NAME --out FILE`)");
    };
    let listen = match args.listen.map(|listen| listen.0).or(file.listen) {
        Some(listen) => listen,
        None => config::DEFAULT_LISTEN.parse()?,
    };
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
    let mut witness = WitnessConfig::new(
        cosigner(&name, &key_file)?,
        listen,
        data_dir,
        config::trusted_logs(&specs)?,
    );
    witness.url_prefix = args.url_prefix.or(file.url_prefix).unwrap_or_default();
    witness.validate()?;
    Ok(witness)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // start() logs the URL, the vkey and each log with its recorded size.
    let mut witness = ceasefire_witness::start(witness_config(args)?).await?;
    tokio::select! {
        result = witness.wait() => return result.context("the witness stopped"),
        () = super::serve::shutdown_signal() => {}
    }
    tracing::info!("shutting down: finishing open requests");
    witness.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}
