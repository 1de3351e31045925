//! Receipt files: what `submit --receipts DIR` writes, `verify --receipt
//! FILE` checks offline, and `receipt refresh FILE...` moves to a newer
//! checkpoint. The format and every check are the core's
//! (`ceasefire_core::tlog_proof`, docs/spec.md section 11); this module adds
//! the files, the keys and the server.
//!
//! A receipt file is rewritten only whole: a sibling temporary file, synced,
//! renamed over it, and the directory synced, so a crash leaves the old
//! receipt or the new one, never half of either. Exit codes are the
//! auditor's: 1 when a receipt (or what the server sent to refresh it) does
//! not verify, naming the check; 2 when the check could not start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;

use super::Exit;
use crate::durable_file;
use ceasefire_core::checkpoint::{parse_unverified, NoteVerifier};
use ceasefire_core::merkle::Hash;
use ceasefire_core::tlog_proof::{
    refresh_receipt, verify_receipt, ReceiptError, TlogProof, VerifiedReceipt, TLOG_PROOF_EXTENSION,
};
use ceasefire_core::witness_policy::WitnessPolicy;
use ceasefire_grpc::proto::{
    ledger_client::LedgerClient, GetCheckpointRequest, GetConsistencyProofRequest,
    GetInclusionProofRequest, Receipt,
};

// ---------------------------------------------------------------------------
// Writing (submit --receipts DIR)

/// Makes sure `submit --receipts DIR` can write there before anything is
/// submitted, so a bad directory is refused with nothing sent.
pub fn prepare_receipts_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--receipts {}: cannot create the directory", dir.display()))?;
    let probe = dir.join(".receipts-write-check");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("--receipts {}: cannot write there", dir.display()))
}

/// Where the receipt of entry `seq` lives in a receipts directory.
pub fn receipt_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq}.{TLOG_PROOF_EXTENSION}"))
}

/// A checked `Receipt` from `Submit` as a tlog-proof file.
pub fn tlog_proof_of(receipt: &Receipt) -> anyhow::Result<TlogProof> {
    let checkpoint = receipt
        .checkpoint
        .as_ref()
        .ok_or_else(|| anyhow!("the receipt has no checkpoint"))?;
    Ok(TlogProof {
        extra: Some(receipt.leaf.clone()),
        index: receipt.seq,
        inclusion_proof: proof_hashes(
            &receipt
                .inclusion_proof
                .as_ref()
                .ok_or_else(|| anyhow!("the receipt has no inclusion proof"))?
                .hashes,
        )?,
        checkpoint: checkpoint.note.clone(),
    })
}

/// Writes the receipt of one accepted event as `DIR/<seq>.tlog-proof`
/// (replacing the file of an identical resubmission) and returns its path.
pub fn write_receipt(dir: &Path, receipt: &Receipt) -> anyhow::Result<PathBuf> {
    let path = receipt_path(dir, receipt.seq);
    refuse_to_replace_other_evidence(&path, &receipt.leaf)?;
    durable_file::replace(&path, tlog_proof_of(receipt)?.to_text().as_bytes())?;
    Ok(path)
}

/// A receipt file is replaced only by a receipt of the same entry: a
/// directory used for two ledgers (both have a seq 4), or a file put there
/// by hand, must never lose what it holds.
fn refuse_to_replace_other_evidence(path: &Path, leaf: &[u8]) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(anyhow!("cannot read {}: {error}", path.display())),
    };
    match TlogProof::parse(&text) {
        Ok(existing) if existing.extra.as_deref() == Some(leaf) => Ok(()),
        Ok(_) => Err(anyhow!(
            "{} holds the receipt of another entry (another ledger's?); it was not overwritten",
            path.display()
        )),
        Err(error) => Err(anyhow!(
            "{} is not a receipt file ({error}); it was not overwritten",
            path.display()
        )),
    }
}

/// With `submit --receipts DIR --wait-witnessed`: rewrites each receipt
/// file against the witnessed checkpoint (already checked: quorum, entry
/// covered, consistent with every receipt's checkpoint), with the entry's
/// inclusion proof in that tree, so the files a mission keeps carry the
/// witnesses' cosignatures. Each file is verified under the policy before
/// it replaces the operator-signed one.
pub async fn write_witnessed_receipts(
    client: &mut LedgerClient<tonic::transport::Channel>,
    dir: &Path,
    receipts: &[Receipt],
    witnessed: &super::witnessed::Witnessed,
    log: &NoteVerifier,
) -> anyhow::Result<()> {
    for receipt in receipts {
        let inclusion = fetch_proof(
            client.get_inclusion_proof(GetInclusionProofRequest {
                seq: receipt.seq,
                tree_size: witnessed.body.tree_size,
            }),
            "inclusion proof",
        )
        .await?;
        let proof = TlogProof {
            extra: Some(receipt.leaf.clone()),
            index: receipt.seq,
            inclusion_proof: inclusion,
            checkpoint: witnessed.checkpoint.note.clone(),
        };
        verify_receipt(&proof, log, Some(&witnessed.policy)).map_err(|error| {
            anyhow!(
                "the witnessed receipt of seq {} does not verify: {error}",
                receipt.seq
            )
        })?;
        let path = receipt_path(dir, receipt.seq);
        refuse_to_replace_other_evidence(&path, &receipt.leaf)?;
        durable_file::replace(&path, proof.to_text().as_bytes())?;
    }
    Ok(())
}

fn proof_hashes(hashes: &[Vec<u8>]) -> anyhow::Result<Vec<Hash>> {
    hashes
        .iter()
        .map(|hash| {
            Hash::try_from(hash.as_slice()).map_err(|_| anyhow!("a proof hash is not 32 bytes"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Whose key (verify --receipt, receipt refresh)

fn could_not_run(error: impl std::fmt::Display) -> anyhow::Error {
    Exit {
        code: 2,
        message: format!("could not verify the receipt: {error}"),
    }
    .into()
}

/// The key a receipt's checkpoint must be signed with.
pub enum LogKey {
    /// From a signed genesis file: the origin and the operator's key.
    Named(NoteVerifier),
    /// A bare operator key: the origin is the one the checkpoint states,
    /// which the signature covers (the key ID binds the name).
    Bare(VerifyingKey),
}

impl LogKey {
    /// From `--genesis FILE` or `--operator-key KEY` (base64 of 32 bytes, or
    /// a signed-note vkey `name+id+key`): exactly one. Exit 2 otherwise.
    pub fn from_flags(
        genesis: Option<&Path>,
        operator_key: Option<&str>,
    ) -> anyhow::Result<LogKey> {
        match (genesis, operator_key) {
            (Some(path), None) => ceasefire_witness::config::log_key_from_genesis_file(path)
                .map(LogKey::Named)
                .map_err(|error| could_not_run(format!("--genesis: {error:#}"))),
            (None, Some(text)) => {
                let text = text.trim();
                if let Ok(verifier) = NoteVerifier::from_vkey(text) {
                    return Ok(LogKey::Named(verifier));
                }
                let bytes: [u8; 32] = BASE64
                    .decode(text)
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(|| {
                        could_not_run(
                            "--operator-key is neither 32 bytes of base64 nor a vkey (name+id+key)",
                        )
                    })?;
                VerifyingKey::from_bytes(&bytes)
                    .map(LogKey::Bare)
                    .map_err(|_| could_not_run("--operator-key is not an Ed25519 key"))
            }
            (Some(_), Some(_)) => Err(could_not_run("give --genesis or --operator-key, not both")),
            (None, None) => Err(could_not_run(
                "a receipt is checked against the log's key: give --genesis FILE (the signed \
                 genesis) or --operator-key KEY",
            )),
        }
    }

    /// The verifier for `proof`'s checkpoint. A bare key takes the origin
    /// from the checkpoint text; if that text does not even parse, that is
    /// the receipt's failure, not the key's.
    fn verifier_for(&self, proof: &TlogProof) -> Result<NoteVerifier, ReceiptError> {
        match self {
            LogKey::Named(verifier) => Ok(verifier.clone()),
            LogKey::Bare(key) => {
                let origin = parse_unverified(&proof.checkpoint)
                    .map_err(ReceiptError::Checkpoint)?
                    .origin;
                NoteVerifier::new(&origin, key).map_err(ReceiptError::Checkpoint)
            }
        }
    }
}

/// Reads and parses a receipt file: exit 2 if it cannot be read, exit 1
/// (naming the line) if it is not a tlog-proof file.
fn read_receipt(path: &Path) -> anyhow::Result<TlogProof> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| could_not_run(format!("cannot read {}: {error}", path.display())))?;
    TlogProof::parse(&text).map_err(|error| failed(path, ReceiptError::Format(error)))
}

fn failed(path: &Path, error: ReceiptError) -> anyhow::Error {
    Exit {
        code: 1,
        message: format!("receipt FAILED: {}: {error}", path.display()),
    }
    .into()
}

fn check(
    path: &Path,
    proof: &TlogProof,
    key: &LogKey,
    policy: Option<&WitnessPolicy>,
) -> anyhow::Result<VerifiedReceipt> {
    let verifier = key
        .verifier_for(proof)
        .map_err(|error| failed(path, error))?;
    verify_receipt(proof, &verifier, policy).map_err(|error| failed(path, error))
}

// ---------------------------------------------------------------------------
// verify --receipt FILE

/// `verify --receipt FILE`: every check of docs/spec.md section 11, offline.
/// `key` is the result of [`LogKey::from_flags`], so that with `--json` a
/// bad key flag is answered in JSON too.
pub fn verify_file(
    path: &Path,
    key: anyhow::Result<LogKey>,
    policy: Option<&WitnessPolicy>,
    json: bool,
) -> anyhow::Result<()> {
    match verify_file_verdict(path, key, policy) {
        Ok(verified) => {
            if json {
                println!("{}", verified_json(path, &verified));
            } else {
                print_verified(path, &verified);
            }
            Ok(())
        }
        Err(FileVerdict::Failed(error)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": false,
                        "receipt": path.display().to_string(),
                        "failure": error.to_string(),
                        "check": error.check(),
                    })
                );
            }
            Err(failed(path, error))
        }
        Err(FileVerdict::CouldNotRun(error)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": error.to_string()})
                );
            }
            Err(error)
        }
    }
}

/// Why `verify --receipt` did not accept a file: the receipt's own failure
/// (exit 1, with the check's number for `--json`) or no verdict (exit 2).
enum FileVerdict {
    Failed(ReceiptError),
    CouldNotRun(anyhow::Error),
}

fn verify_file_verdict(
    path: &Path,
    key: anyhow::Result<LogKey>,
    policy: Option<&WitnessPolicy>,
) -> Result<VerifiedReceipt, FileVerdict> {
    let key = key.map_err(FileVerdict::CouldNotRun)?;
    let text = std::fs::read_to_string(path).map_err(|error| {
        FileVerdict::CouldNotRun(could_not_run(format!(
            "cannot read {}: {error}",
            path.display()
        )))
    })?;
    let proof = TlogProof::parse(&text)
        .map_err(|error| FileVerdict::Failed(ReceiptError::Format(error)))?;
    let verifier = key.verifier_for(&proof).map_err(FileVerdict::Failed)?;
    verify_receipt(&proof, &verifier, policy).map_err(FileVerdict::Failed)
}

fn cosigner_names(verified: &VerifiedReceipt) -> Option<Vec<String>> {
    verified.witnessed.as_ref().map(|verdict| {
        verdict
            .cosigned
            .iter()
            .map(|cosigned| cosigned.name.clone())
            .collect()
    })
}

fn verified_json(path: &Path, verified: &VerifiedReceipt) -> serde_json::Value {
    let mut value = serde_json::json!({
        "ok": true,
        "receipt": path.display().to_string(),
        "seq": verified.leaf.seq.to_string(),
        "leafHash": ceasefire_core::key_text(verified.leaf_hash),
        "agreementId": verified.event.agreement_id,
        "author": verified.event.author,
        "signers": verified.leaf.signatures.iter()
            .map(|signature| ceasefire_core::key_text(signature.public_key))
            .collect::<Vec<_>>(),
        "origin": verified.checkpoint.origin,
        "treeSize": verified.checkpoint.tree_size.to_string(),
        "rootHash": ceasefire_core::key_text(verified.checkpoint.root_hash),
    });
    if let Some(cosigners) = cosigner_names(verified) {
        value["cosigners"] = serde_json::json!(cosigners);
    }
    value
}

fn print_verified(path: &Path, verified: &VerifiedReceipt) {
    println!("receipt OK: {}", path.display());
    println!(
        "  entry          seq {} of {} by {}, leaf hash {}",
        verified.leaf.seq,
        verified.event.agreement_id,
        verified.event.author,
        ceasefire_core::key_text(verified.leaf_hash)
    );
    println!(
        "  signed by      {}",
        verified
            .leaf
            .signatures
            .iter()
            .map(|signature| ceasefire_core::key_text(signature.public_key))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  checkpoint     {} at size {}, root {}",
        verified.checkpoint.origin,
        verified.checkpoint.tree_size,
        ceasefire_core::key_text(verified.checkpoint.root_hash)
    );
    match cosigner_names(verified) {
        Some(names) => println!("  witnessed by   {}", names.join(", ")),
        None => println!("  witnessed      not checked (give --witness-policy FILE)"),
    }
}

// ---------------------------------------------------------------------------
// receipt refresh FILE...

#[derive(clap::Args)]
pub struct ReceiptArgs {
    #[command(subcommand)]
    command: ReceiptCommand,
}

#[derive(clap::Subcommand)]
enum ReceiptCommand {
    /// Move receipt files to the server's latest (witnessed, when the log has
    /// a witness policy) checkpoint, checking that it is consistent with
    /// each receipt's own; each file is rewritten atomically.
    Refresh(RefreshArgs),
}

#[derive(clap::Args)]
struct RefreshArgs {
    /// Receipt files (`.tlog-proof`, as `submit --receipts` writes them).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The log's signed genesis file: its origin and operator key.
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,
    /// The operator's checkpoint key (base64 of 32 bytes, or a vkey).
    #[arg(long, value_name = "KEY")]
    operator_key: Option<String>,
    /// Demand a checkpoint this policy's quorum cosigned, instead of the
    /// policy the server states (Sigsum/C2SP policy text).
    #[arg(long, value_name = "FILE")]
    witness_policy: Option<PathBuf>,
    /// How long to wait for a witnessed checkpoint covering the receipts.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    #[command(flatten)]
    connection: super::ConnectArgs,
}

pub async fn run(args: ReceiptArgs) -> anyhow::Result<()> {
    match args.command {
        ReceiptCommand::Refresh(args) => refresh(args).await,
    }
}

async fn refresh(args: RefreshArgs) -> anyhow::Result<()> {
    let own_policy = args
        .witness_policy
        .as_deref()
        .map(super::verify::read_witness_policy)
        .transpose()
        .map_err(could_not_run)?;
    let key = LogKey::from_flags(args.genesis.as_deref(), args.operator_key.as_deref())?;
    // Every receipt is checked before the server is asked anything: a bad
    // one is named, and the newest size among them is what the new
    // checkpoint must cover.
    let mut receipts = Vec::new();
    for path in &args.files {
        let proof = read_receipt(path)?;
        let verified = check(path, &proof, &key, None)?;
        receipts.push((path, proof, verified));
    }
    let min_tree_size = receipts
        .iter()
        .map(|(_, _, verified)| verified.checkpoint.tree_size)
        .max()
        .unwrap_or(0);
    let refresh_could_not_run = |error: String| -> anyhow::Error {
        Exit {
            code: 2,
            message: format!("could not refresh: {error}"),
        }
        .into()
    };
    let mut client = args
        .connection
        .ledger()
        .await
        .map_err(|error| refresh_could_not_run(format!("{error:#}")))?;
    let policy = match own_policy {
        Some(policy) => Some(policy),
        None => server_policy(&mut client)
            .await
            .map_err(|error| refresh_could_not_run(format!("{error:#}")))?,
    };
    let mut request = tonic::Request::new(GetCheckpointRequest {
        witnessed: policy.is_some(),
        min_tree_size,
    });
    request.set_timeout(Duration::from_secs(args.timeout));
    let checkpoint = client
        .get_checkpoint(request)
        .await
        .map_err(|status| {
            refresh_could_not_run(format!(
                "no {}checkpoint covering size {min_tree_size}: {}",
                if policy.is_some() { "witnessed " } else { "" },
                ceasefire_grpc::errors::describe(&status)
            ))
        })?
        .into_inner();
    for (path, proof, verified) in receipts {
        let old_size = verified.checkpoint.tree_size;
        let new_size = checkpoint.tree_size;
        let consistency = if old_size == new_size {
            Vec::new()
        } else {
            fetch_proof(
                client.get_consistency_proof(GetConsistencyProofRequest { old_size, new_size }),
                "consistency proof",
            )
            .await
            .map_err(|error| refresh_could_not_run(format!("{}: {error:#}", path.display())))?
        };
        let inclusion = fetch_proof(
            client.get_inclusion_proof(GetInclusionProofRequest {
                seq: proof.index,
                tree_size: new_size,
            }),
            "inclusion proof",
        )
        .await
        .map_err(|error| refresh_could_not_run(format!("{}: {error:#}", path.display())))?;
        let verifier = key
            .verifier_for(&proof)
            .map_err(|error| failed(path, error))?;
        let (refreshed, after) = refresh_receipt(
            &proof,
            &verifier,
            policy.as_ref(),
            &checkpoint.note,
            &consistency,
            inclusion,
        )
        .map_err(|error| Exit {
            code: 1,
            message: format!(
                "refresh FAILED: {}: the server's answer does not verify: {error}",
                path.display()
            ),
        })?;
        durable_file::replace(path, refreshed.to_text().as_bytes())
            .map_err(|error| refresh_could_not_run(format!("{error:#}")))?;
        let witnessed = match cosigner_names(&after) {
            Some(names) => format!(", witnessed by {}", names.join(", ")),
            None => String::new(),
        };
        println!(
            "refreshed {}: entry {}, checkpoint size {old_size} -> {} (consistent){witnessed}",
            path.display(),
            proof.index,
            after.checkpoint.tree_size
        );
    }
    Ok(())
}

/// The witness policy the server states for its log, if any. Informative
/// (the binding one is the log's SetWitnessPolicy event): a refresh holds the
/// new checkpoint to it, or to `--witness-policy` when given.
pub(super) async fn server_policy(
    client: &mut LedgerClient<tonic::transport::Channel>,
) -> anyhow::Result<Option<WitnessPolicy>> {
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
        return Ok(None);
    }
    WitnessPolicy::parse_text(&latest.witness_policy)
        .map(Some)
        .map_err(|error| anyhow!("the server states a witness policy that does not parse: {error}"))
}

async fn fetch_proof(
    call: impl std::future::Future<
        Output = Result<tonic::Response<ceasefire_grpc::proto::Proof>, tonic::Status>,
    >,
    what: &str,
) -> anyhow::Result<Vec<Hash>> {
    let proof = call
        .await
        .map_err(|status| {
            anyhow!(
                "cannot get the {what}: {}",
                ceasefire_grpc::errors::describe(&status)
            )
        })?
        .into_inner();
    proof_hashes(&proof.hashes).with_context(|| format!("the server's {what}"))
}
