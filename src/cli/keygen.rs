//! `keygen`: a new key file, and its public key on stdout.

use std::path::PathBuf;

use crate::keyfile::KeyFile;

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the key file (never overwritten).
    #[arg(long, short)]
    out: PathBuf,
    /// The party this key is for (recorded in the file; used as the default author).
    #[arg(long)]
    party_id: Option<String>,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    let key = KeyFile::generate(args.party_id);
    key.save(&args.out)?;
    println!("{}", key.public_key_text());
    Ok(())
}
