//! `sign`: add one signatory's signature to a signed-event file, or turn a
//! bare event (JSON) into one, signed.
//!
//! Each signatory signs on their own machine; keys never travel. The event
//! is shown (decoded from the payload, the bytes actually signed) on stderr
//! before signing, so nobody signs blind.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::event_json::{event_from_json, message_to_json};
use crate::keyfile::KeyFile;
use crate::signed_file::SignedEventFile;
use ceasefire_grpc::client::{now_timestamp, random_nonce};

#[derive(clap::Args)]
pub struct SignArgs {
    /// A signed-event file (from `init` or an earlier `sign`), or a bare event as JSON.
    file: PathBuf,
    /// The signer's key file.
    #[arg(long, short)]
    key: PathBuf,
    /// Where to write the result (default: update FILE in place; required for a bare event).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// For a bare event without `agreementId`: the agreement to sign it for.
    #[arg(long)]
    agreement_id: Option<String>,
}

pub fn run(args: SignArgs) -> anyhow::Result<()> {
    let key = KeyFile::load(&args.key)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.file.display()))?;
    let (mut file, out) = if SignedEventFile::is_signed_event_json(&value) {
        let file = SignedEventFile::from_json(value)
            .with_context(|| format!("{}", args.file.display()))?;
        (file, args.out.clone().unwrap_or_else(|| args.file.clone()))
    } else {
        let Some(out) = args.out.clone() else {
            bail!(
                "{} is a bare event: give --out for the signed-event file",
                args.file.display()
            );
        };
        let mut event = event_from_json(&text)
            .with_context(|| format!("{} is not a valid event", args.file.display()))?;
        if event.agreement_id.is_empty() {
            event.agreement_id = args.agreement_id.clone().with_context(|| {
                format!(
                    "{} names no agreementId: give --agreement-id",
                    args.file.display()
                )
            })?;
        }
        if event.author.is_empty() {
            event.author = key
                .party_id
                .clone()
                .context("the event names no author and the key file names no party")?;
        }
        event.created_at.get_or_insert_with(now_timestamp);
        if event.nonce.is_empty() {
            event.nonce = random_nonce();
        }
        (SignedEventFile::new(event), out)
    };
    eprintln!(
        "signing as {}:\n{}",
        key.party_id
            .as_deref()
            .unwrap_or("(no party named in the key file)"),
        serde_json::to_string_pretty(&message_to_json("ceasefire.v1.Event", &file.event)?)?
    );
    file.add_signature(&key.key)?;
    file.save(&out)?;
    eprintln!(
        "{} now carries {} signature(s)",
        out.display(),
        file.signed.signatures.len()
    );
    Ok(())
}
