//! `submit`: sign events written as JSON (one) or NDJSON (many), submit
//! them in order, check each receipt, print it.
//!
//! Signed-event files (from `init` and `sign`) are submitted as they are,
//! with the signatures they carry; bare events are signed with `--key`.
//!
//! Header fields the author may leave out are filled in: `agreementId` (read
//! from the ledger's genesis), `author` (the first key file's party id),
//! `createdAt` (now) and `nonce` (random). Every receipt is checked before it
//! is printed: the checkpoint's signature with the operator key named in the
//! genesis, the leaf hash, and the inclusion proof against the checkpoint. On
//! the first refusal, it stops and says how many were accepted before it.
//!
//! With `--wait-witnessed`, once every event has its receipt it waits for a
//! checkpoint the log's witnesses cosigned that covers the last one (one
//! wait for a whole NDJSON batch), checks it (see [`super::witnessed`]) and
//! prints it as one more JSON line, naming the cosigners.
//!
//! With `--receipts DIR`, each checked receipt is also kept as a C2SP
//! tlog-proof file, `DIR/<seq>.tlog-proof` (see [`super::receipt`]), and
//! after `--wait-witnessed` rewritten against the witnessed checkpoint.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::event_json::{event_from_json, json_values, message_to_json};
use crate::keyfile::KeyFile;
use crate::signed_file::SignedEventFile;
use ceasefire_core::checkpoint::{open_checkpoint, NoteVerifier};
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::{hash_leaf, verify_inclusion, Hash};
use ceasefire_core::rules::decode_event;
use ceasefire_grpc::client::{self, now_timestamp, random_nonce};
use ceasefire_grpc::proto::{
    event::Body, ledger_client::LedgerClient, GetCheckpointRequest, GetEntriesRequest, Receipt,
};

#[derive(clap::Args)]
pub struct SubmitArgs {
    /// JSON file with one event, or NDJSON with one per line ("-" for stdin).
    file: PathBuf,
    /// Key file to sign bare events with; repeat for several signatures.
    #[arg(long = "key", short = 'k')]
    keys: Vec<PathBuf>,
    /// After the receipts, wait for a checkpoint a quorum of the log's
    /// witnesses cosigned that covers them; check it and print it.
    #[arg(long)]
    wait_witnessed: bool,
    /// How long --wait-witnessed waits, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        requires = "wait_witnessed",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    wait_timeout: u64,
    /// Write each event's receipt to DIR/<seq>.tlog-proof (C2SP tlog-proof:
    /// the leaf, its inclusion proof and the checkpoint), evidence that
    /// `verify --receipt` checks offline; with --wait-witnessed, against
    /// the witnessed checkpoint.
    #[arg(long, value_name = "DIR")]
    receipts: Option<PathBuf>,
    #[command(flatten)]
    connection: super::ConnectArgs,
}

/// What the genesis tells a client: which agreement, and who signs checkpoints.
struct LedgerIdentity {
    agreement_id: String,
    checkpoint_verifier: NoteVerifier,
}

pub async fn run(args: SubmitArgs) -> anyhow::Result<()> {
    let keys: Vec<KeyFile> = args
        .keys
        .iter()
        .map(|path| KeyFile::load(path))
        .collect::<anyhow::Result<_>>()?;
    let events = read_events(&args.file)?;
    if let Some(dir) = &args.receipts {
        super::receipt::prepare_receipts_dir(dir)?;
    }
    let mut client = args.connection.ledger().await?;
    let identity = fetch_identity(&mut client).await?;
    if args.wait_witnessed {
        require_witness_policy(&mut client).await?;
    }
    let mut receipts = Vec::new();
    let signing_keys: Vec<&SigningKey> = keys.iter().map(|file| &file.key).collect();
    for (index, value) in events.into_iter().enumerate() {
        let position = index + 1;
        let signed = if SignedEventFile::is_signed_event_json(&value) {
            SignedEventFile::from_json(value)
                .with_context(|| format!("event {position}"))?
                .signed
        } else {
            if keys.is_empty() {
                bail!("event {position} is a bare event: give --key to sign it");
            }
            let mut event = event_from_json(&value.to_string())
                .with_context(|| format!("event {position} is not a valid event"))?;
            if event.agreement_id.is_empty() {
                event.agreement_id = identity.agreement_id.clone();
            }
            if event.author.is_empty() {
                event.author = keys[0].party_id.clone().ok_or_else(|| {
                    anyhow!("event {position} has no author and the key file names no party")
                })?;
            }
            event.created_at.get_or_insert_with(now_timestamp);
            if event.nonce.is_empty() {
                event.nonce = random_nonce();
            }
            client::sign(&event, &signing_keys)
        };
        let receipt = match client.submit(signed).await {
            Ok(response) => response.into_inner(),
            Err(status) => bail!(
                "event {position} refused: {} ({index} accepted before it)",
                ceasefire_grpc::errors::describe(&status)
            ),
        };
        check_receipt(&receipt, &identity)
            .with_context(|| format!("the receipt for event {position} does not check out"))?;
        let mut json = message_to_json("ceasefire.v1.Receipt", &receipt)?;
        if let Some(object) = json.as_object_mut() {
            object.remove("leaf");
        }
        println!("{json}");
        if let Some(dir) = &args.receipts {
            super::receipt::write_receipt(dir, &receipt)
                .with_context(|| format!("event {position} was accepted as seq {}", receipt.seq))?;
        }
        if args.wait_witnessed {
            receipts.push(receipt);
        }
    }
    if args.wait_witnessed {
        let witnessed = super::witnessed::wait_for_witnessed(
            &mut client,
            &identity.checkpoint_verifier,
            &receipts,
            Duration::from_secs(args.wait_timeout),
        )
        .await?;
        println!("{}", witnessed.to_json());
        if let Some(dir) = &args.receipts {
            super::receipt::write_witnessed_receipts(
                &mut client,
                dir,
                &receipts,
                &witnessed,
                &identity.checkpoint_verifier,
            )
            .await
            .context("the receipt files could not be moved to the witnessed checkpoint")?;
        }
    }
    Ok(())
}

/// Refuses `--wait-witnessed` before anything is submitted when the log has
/// no witness policy: no checkpoint of it will ever be witnessed.
async fn require_witness_policy(
    client: &mut LedgerClient<tonic::transport::Channel>,
) -> anyhow::Result<()> {
    let latest = client
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .map_err(|status| {
            anyhow!(
                "cannot read the checkpoint: {}",
                ceasefire_grpc::errors::describe(&status)
            )
        })?
        .into_inner();
    if latest.witness_policy.is_empty() {
        bail!(
            "--wait-witnessed: the ledger has no witness policy, so no checkpoint of it is ever \
             witnessed (the signatories name the witnesses with a SetWitnessPolicy event); nothing was submitted"
        );
    }
    Ok(())
}

/// Splits the input into JSON values: one object, or one per line.
fn read_events(path: &PathBuf) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let values = json_values(&text)?;
    if values.is_empty() {
        bail!("{} holds no events", path.display());
    }
    Ok(values)
}

/// Reads entry 0 and learns the agreement and the checkpoint key from it.
async fn fetch_identity(
    client: &mut LedgerClient<tonic::transport::Channel>,
) -> anyhow::Result<LedgerIdentity> {
    let mut stream = client
        .get_entries(GetEntriesRequest { start: 0, end: 1 })
        .await
        .map_err(|status| anyhow!("cannot read the genesis: {}", status.message()))?
        .into_inner();
    let entry = stream
        .message()
        .await
        .map_err(|status| anyhow!("cannot read the genesis: {}", status.message()))?
        .ok_or_else(|| anyhow!("the ledger returned no genesis entry"))?;
    let leaf = Leaf::decode(&entry.leaf).map_err(|error| anyhow!("genesis leaf: {error}"))?;
    let event = decode_event(&leaf.payload).map_err(|error| anyhow!("genesis: {error}"))?;
    let Some(Body::Genesis(genesis)) = &event.body else {
        bail!("entry 0 of this ledger is not a genesis");
    };
    let key_bytes: [u8; 32] = genesis
        .operator_public_key
        .as_slice()
        .try_into()
        .map_err(|_| anyhow!("the genesis operator key is not 32 bytes"))?;
    let operator = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|error| anyhow!("the genesis operator key is invalid: {error}"))?;
    Ok(LedgerIdentity {
        agreement_id: event.agreement_id.clone(),
        checkpoint_verifier: NoteVerifier::new(&genesis.origin, &operator)
            .map_err(|error| anyhow!("the genesis origin cannot name a key: {error}"))?,
    })
}

fn check_receipt(receipt: &Receipt, identity: &LedgerIdentity) -> anyhow::Result<()> {
    let checkpoint = receipt
        .checkpoint
        .as_ref()
        .ok_or_else(|| anyhow!("no checkpoint"))?;
    let body = open_checkpoint(&checkpoint.note, &identity.checkpoint_verifier)?;
    let leaf_hash = hash_leaf(&receipt.leaf);
    if receipt.leaf_hash != leaf_hash {
        bail!("leaf_hash is not the hash of the leaf");
    }
    let proof: Vec<Hash> = receipt
        .inclusion_proof
        .as_ref()
        .ok_or_else(|| anyhow!("no inclusion proof"))?
        .hashes
        .iter()
        .map(|hash| hash.as_slice().try_into())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("a proof hash is not 32 bytes"))?;
    verify_inclusion(
        &leaf_hash,
        receipt.seq,
        body.tree_size,
        &proof,
        &body.root_hash,
    )?;
    Ok(())
}
