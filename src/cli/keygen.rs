//! `keygen`: a new key file, and its public key on stdout. With
//! `--encrypt`, the file is encrypted to a passphrase (an age file, see
//! `crate::keyfile`) and the secret never reaches the disk in the clear.
//! `witness keygen` writes its key the same way ([`EncryptArgs`]).

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::age::{DEFAULT_WORK_FACTOR, MAX_WORK_FACTOR};
use crate::keyfile::KeyFile;
use crate::passphrase;

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the key file (never overwritten).
    #[arg(long, short)]
    out: PathBuf,
    /// The party this key is for (recorded in the file; used as the default author).
    #[arg(long)]
    party_id: Option<String>,
    #[command(flatten)]
    encryption: EncryptArgs,
}

/// Whether and how a new key file is encrypted at rest.
#[derive(clap::Args)]
pub struct EncryptArgs {
    /// Encrypt the key file to a passphrase (age, scrypt): from
    /// CEASEFIRE_KEY_PASSPHRASE, or asked twice on the terminal.
    #[arg(long)]
    encrypt: bool,
    /// With --encrypt: scrypt's work factor, log2 of N (each step doubles
    /// the time and memory a guess costs; 18 is age's own).
    #[arg(
        long,
        requires = "encrypt",
        default_value_t = DEFAULT_WORK_FACTOR,
        value_parser = clap::value_parser!(u8).range(10..=MAX_WORK_FACTOR as i64)
    )]
    work_factor: u8,
}

impl EncryptArgs {
    /// Refuses an existing `out` before a passphrase is asked for.
    pub fn check_out(&self, out: &Path) -> anyhow::Result<()> {
        if out.exists() {
            bail!(
                "cannot create key file {}: it already exists (never overwritten)",
                out.display()
            );
        }
        Ok(())
    }

    /// Writes `key` to `out`, encrypted if asked.
    pub fn save(&self, key: &KeyFile, out: &Path) -> anyhow::Result<()> {
        if self.encrypt {
            let passphrase = passphrase::to_encrypt(out)?;
            key.save_encrypted(out, &passphrase, self.work_factor)
        } else {
            key.save(out)
        }
    }
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    args.encryption.check_out(&args.out)?;
    let key = KeyFile::generate(args.party_id);
    args.encryption.save(&key, &args.out)?;
    println!("{}", key.public_key_text());
    Ok(())
}
