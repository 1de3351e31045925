//! `init`: write an unsigned genesis for real signatories to sign in turn
//! (`sign`), then start the ledger from it (`serve --genesis`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::signed_file::SignedEventFile;
use ceasefire_core::rules::LedgerState;
use ceasefire_grpc::client::new_event;
use ceasefire_grpc::proto::{event::Body, Genesis, Party, Role};

#[derive(clap::Args)]
pub struct InitArgs {
    /// Identifier of the agreement (a-z 0-9 . _ -).
    #[arg(long)]
    agreement_id: String,
    /// Log origin: first line of every checkpoint, e.g. "ledger.example.org/agreement-1".
    #[arg(long)]
    origin: String,
    /// Title of the agreement.
    #[arg(long, default_value = "")]
    title: String,
    /// A signatory as "PARTY_ID,PUBLIC_KEY_BASE64,Display name"; repeat for each.
    #[arg(long = "signatory", required = true)]
    signatories: Vec<String>,
    /// Distinct signatories needed for every governance event (M of N).
    #[arg(long)]
    threshold: u32,
    /// The operator's checkpoint public key (base64), as printed by `keygen`.
    #[arg(long)]
    operator_public_key: String,
    /// Author of the genesis (default: the first signatory).
    #[arg(long)]
    author: Option<String>,
    /// Allowed clock skew in seconds (default 300).
    #[arg(long, default_value_t = 0)]
    max_clock_skew_seconds: u32,
    /// Where to write the unsigned genesis.
    #[arg(long, short)]
    out: PathBuf,
}

fn public_key(text: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = BASE64
        .decode(text.trim())
        .with_context(|| format!("{what}: {text:?} is not base64"))?;
    if bytes.len() != 32 {
        bail!("{what}: a public key is 32 bytes, got {}", bytes.len());
    }
    Ok(bytes)
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let mut signatories = Vec::new();
    for spec in &args.signatories {
        let mut parts = spec.splitn(3, ',');
        let (Some(party_id), Some(key), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("--signatory {spec:?}: expected PARTY_ID,PUBLIC_KEY_BASE64,Display name");
        };
        signatories.push(Party {
            party_id: party_id.trim().to_string(),
            name: name.trim().to_string(),
            role: Role::Signatory as i32,
            public_keys: vec![public_key(key, &format!("--signatory {party_id}"))?],
        });
    }
    let author = args
        .author
        .clone()
        .unwrap_or_else(|| signatories[0].party_id.clone());
    let event = new_event(
        &args.agreement_id,
        &author,
        Body::Genesis(Genesis {
            origin: args.origin,
            title: args.title,
            signatories,
            threshold: args.threshold,
            operator_public_key: public_key(&args.operator_public_key, "--operator-public-key")?,
            max_clock_skew_seconds: args.max_clock_skew_seconds,
        }),
    );
    // The same content rules the ledger applies to entry 0 (origin, ids,
    // threshold, keys...), so a genesis `serve` would refuse is never written.
    if let Err(rejection) = LedgerState::check_genesis_content(&event) {
        bail!(
            "the genesis would be refused: {:?} {}: {}",
            rejection.kind(),
            rejection.reason_name(),
            rejection.message
        );
    }
    if args.out.exists() {
        bail!("{} exists; refusing to overwrite it", args.out.display());
    }
    SignedEventFile::new(event).save(&args.out)?;
    eprintln!(
        "wrote an unsigned genesis to {}; each signatory now runs `ceasefire-ledger sign --key KEY {}`",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
