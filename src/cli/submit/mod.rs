//! `submit`: sign events written as JSON (one) or NDJSON (many), submit
//! them in order, check each receipt, print it.
//!
//! Signed-event files (from `init` and `sign`) are submitted as they are,
//! with the signatures they carry; bare events are signed with `--key`.
//!
//! Header fields the author may leave out are filled in: `agreementId` (read
//! from the ledger's genesis), `author` (the first key file's party id),
//! `createdAt` (now) and `nonce` (derived from the author and the event as
//! written, so a report submitted twice counts once: see [`prepare`]). Every
//! receipt is checked before it is printed: the checkpoint's signature with
//! the operator key named in the genesis, the leaf hash, and the inclusion
//! proof against the checkpoint. On the first refusal, it stops and says how
//! many were accepted before it; an event that got no answer (the link
//! dropped) is not called refused.
//!
//! Times written relative to now (`"observedUntil": "now-5m"`) are filled
//! in ([`crate::relative_time`]); an accepted observation that will not count in
//! its commitment's status (out of its window, or before the commitment is
//! in force) gets a one-line warning on stderr ([`window_warning`]).
//!
//! With `--dry-run`, every event is signed as it would be and checked by
//! the ledger (`CheckSubmission`: every check of Submit, nothing appended,
//! the nonce left unused); one line per event says whether it would be
//! accepted or why not.
//!
//! With `--outbox DIR` ([`outbox_run`]), events are signed once into a local
//! outbox before anything is sent, then sent with retries, and a later run
//! resends what is pending.
//!
//! With `--wait-witnessed`, once every event has its receipt it waits for a
//! checkpoint the log's witnesses cosigned that covers the last one (one
//! wait for a whole NDJSON batch), checks it (see [`super::witnessed`]) and
//! prints it as one more JSON line, naming the cosigners.
//!
//! With `--receipts DIR`, each checked receipt is also kept as a C2SP
//! tlog-proof file, `DIR/<seq>.tlog-proof` (see [`super::receipt`]), and
//! after `--wait-witnessed` rewritten against the witnessed checkpoint.

mod outbox_run;
mod prepare;
mod window_warning;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;

use crate::event_json::message_to_json;
use crate::keyfile::KeyFile;
use crate::outbox::LedgerRecord;
use ceasefire_core::checkpoint::{open_checkpoint, NoteVerifier};
use ceasefire_core::leaf::Leaf;
use ceasefire_core::merkle::{hash_leaf, verify_inclusion, Hash};
use ceasefire_core::rules::decode_event;
use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, event::Body, ledger_client::LedgerClient, Event,
    GetEntriesRequest, Receipt, SignedEvent, SubmissionCheck,
};
use prepare::{prepare, read_inputs, sign_bare, Prepared};

#[derive(clap::Args)]
#[command(subcommand_negates_reqs = true)]
pub struct SubmitArgs {
    /// JSON files with one event, or NDJSON with one per line ("-" for
    /// stdin). With --outbox, none: resend what is pending.
    #[arg(required_unless_present = "outbox")]
    files: Vec<PathBuf>,
    /// Key file to sign bare events with; repeat for several signatures.
    #[arg(long = "key", short = 'k')]
    keys: Vec<PathBuf>,
    /// After the receipts, wait for a checkpoint a quorum of the log's
    /// witnesses cosigned that covers them; check it and print it.
    #[arg(long, conflicts_with = "outbox")]
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
    /// Check every event as the ledger would now, appending nothing: print
    /// per event whether it would be accepted or why it would be refused;
    /// exit 1 if any would be. Each is checked against the ledger as it is,
    /// not after the file's earlier events.
    #[arg(long, conflicts_with_all = ["outbox", "wait_witnessed", "receipts"])]
    dry_run: bool,
    /// Sign each event once into this local outbox before sending it, send
    /// with retries, and resend what is still pending on the next run.
    #[arg(long, value_name = "DIR", global = true)]
    outbox: Option<PathBuf>,
    /// With --outbox: how long to keep retrying an unreachable ledger
    /// (exponential backoff) before leaving the rest pending, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        requires = "outbox",
        value_parser = clap::value_parser!(u64).range(0..=86_400)
    )]
    retry_for: u64,
    #[command(flatten)]
    connection: super::ConnectArgs,
    #[command(subcommand)]
    action: Option<SubmitAction>,
}

#[derive(clap::Subcommand)]
enum SubmitAction {
    /// List the events of --outbox DIR: pending, accepted (seq) or refused
    /// (reason); nothing is sent.
    Status,
}

/// What the genesis tells a client: which agreement, and who signs checkpoints.
/// `watch --cursor-file` holds a cursor to it too.
pub(super) struct LedgerIdentity {
    pub(super) agreement_id: String,
    pub(super) origin: String,
    pub(super) operator: VerifyingKey,
    checkpoint_verifier: NoteVerifier,
}

/// How one Submit ended.
enum Sent {
    /// The ledger sequenced it (now or before): its receipt, unchecked.
    Accepted(Receipt),
    /// The ledger refused it: a verdict on the event.
    Refused(tonic::Status),
    /// No verdict: the link failed, or the ledger could not decide now.
    /// The event may or may not be in the log; sending it again is safe.
    NoAnswer(String),
}

pub async fn run(args: SubmitArgs) -> anyhow::Result<()> {
    match (&args.action, &args.outbox) {
        (Some(SubmitAction::Status), Some(dir)) => return outbox_run::status(dir),
        (Some(SubmitAction::Status), None) => {
            bail!("submit status lists an outbox: give --outbox DIR (submit --outbox DIR status)")
        }
        (None, Some(dir)) => return outbox_run::run(&args, dir).await,
        (None, None) => {}
    }
    let keys = load_keys(&args.keys)?;
    let inputs = read_inputs(&args.files)?;
    if let Some(dir) = &args.receipts {
        super::receipt::prepare_receipts_dir(dir)?;
    }
    let channel = args.connection.channel().await?;
    let mut client = ceasefire_grpc::client::ledger_client(channel.clone());
    let mut commitments = window_warning::Commitments::new(ComplianceClient::new(channel));
    let identity = fetch_identity(&mut client).await?;
    if args.wait_witnessed {
        require_witness_policy(&mut client).await?;
    }
    if args.dry_run {
        return dry_run(
            &args,
            &keys,
            &inputs,
            &mut client,
            &identity,
            &mut commitments,
        )
        .await;
    }
    let mut receipts = Vec::new();
    for (accepted_before, input) in inputs.iter().enumerate() {
        let label = &input.label;
        let ready = sign_input(input, &keys, &identity)?;
        let signed = ready.signed.clone();
        let receipt = match send(&mut client, signed, ready.derived_nonce_event()).await {
            Sent::Accepted(receipt) => receipt,
            Sent::Refused(status) => bail!(
                "{label} refused: {} ({accepted_before} accepted before it)",
                ceasefire_grpc::errors::describe(&status)
            ),
            Sent::NoAnswer(error) => bail!(
                "{label} got no answer from {}: {error}; it may or may not be in the ledger: \
                 run submit again, a report counts once ({accepted_before} accepted before it)",
                args.connection.server
            ),
        };
        check_receipt(&receipt, &identity)
            .with_context(|| format!("the receipt for {label} does not check out"))?;
        println!("{}", receipt_json(&receipt)?);
        if let Ok(leaf) = Leaf::decode(&receipt.leaf) {
            let warning = commitments
                .warning(&ready.event, leaf.received_at_micros)
                .await;
            if let Some(warning) = warning {
                eprintln!(
                    "warning: {label} (seq {}) was accepted, but {warning}",
                    receipt.seq
                );
            }
        }
        if let Some(dir) = &args.receipts {
            super::receipt::write_receipt(dir, &receipt)
                .with_context(|| format!("{label} was accepted as seq {}", receipt.seq))?;
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

/// One input made ready to send: signed, and what submit knows of it.
struct ReadyEvent {
    signed: SignedEvent,
    /// The event the signed payload encodes.
    event: Event,
    /// Whether submit derived its nonce (see [`send`]).
    nonce_derived: bool,
}

impl ReadyEvent {
    fn derived_nonce_event(&self) -> Option<&Event> {
        self.nonce_derived.then_some(&self.event)
    }
}

/// Reads a signed-event file as it is, or completes and signs a bare event.
fn sign_input(
    input: &prepare::InputEvent,
    keys: &[KeyFile],
    identity: &LedgerIdentity,
) -> anyhow::Result<ReadyEvent> {
    Ok(match prepare(input, keys, Some(&identity.agreement_id))? {
        Prepared::Signed(file) => ReadyEvent {
            signed: file.signed,
            event: file.event,
            nonce_derived: false,
        },
        Prepared::Bare {
            event,
            nonce_derived,
        } => {
            let file = sign_bare(event, keys);
            ReadyEvent {
                signed: file.signed,
                event: file.event,
                nonce_derived,
            }
        }
    })
}

/// How one CheckSubmission ended.
enum Checked {
    /// Submit would accept it: appended, or answered with the receipt of
    /// the entry `existing_seq` already in the log.
    WouldAccept(SubmissionCheck),
    /// Submit would refuse it: its status.
    WouldRefuse(tonic::Status),
    /// No verdict (see [`Sent::NoAnswer`]).
    NoAnswer(String),
}

/// `submit --dry-run`: each event checked by the ledger as Submit would
/// now, nothing appended, one line each on stdout; exit 1 if any would be
/// refused. Signed exactly as a submission would be, so what is checked is
/// what would be sent (a derived nonce, a filled-in time).
async fn dry_run(
    args: &SubmitArgs,
    keys: &[KeyFile],
    inputs: &[prepare::InputEvent],
    client: &mut LedgerClient<tonic::transport::Channel>,
    identity: &LedgerIdentity,
    commitments: &mut window_warning::Commitments,
) -> anyhow::Result<()> {
    let mut refused = 0;
    for input in inputs {
        let label = &input.label;
        let ready = sign_input(input, keys, identity)?;
        match check(client, ready.signed.clone(), ready.derived_nonce_event()).await {
            Checked::WouldAccept(check) => {
                match check.existing_seq {
                    Some(seq) => println!(
                        "{label} would be accepted: it is already in the ledger as seq {seq} \
                         (submit answers with its receipt and appends nothing)"
                    ),
                    None => println!("{label} would be accepted"),
                }
                let warning = commitments
                    .warning(&ready.event, ceasefire_grpc::now_micros())
                    .await;
                if let Some(warning) = warning {
                    eprintln!("warning: {label} would be accepted, but {warning}");
                }
            }
            Checked::WouldRefuse(status) => {
                refused += 1;
                println!(
                    "{label} would be refused: {}",
                    ceasefire_grpc::errors::describe(&status)
                );
            }
            Checked::NoAnswer(error) => bail!(
                "{label} got no answer from {}: {error}; nothing was submitted",
                args.connection.server
            ),
        }
    }
    if refused > 0 {
        bail!(
            "{refused} of {} events would be refused (dry run: nothing was submitted)",
            inputs.len()
        );
    }
    Ok(())
}

/// Checks `signed` once; after a `NONCE_REUSED` of an event whose nonce
/// submit derived, checks the earlier entry's bytes, as [`send`] would
/// resubmit them.
async fn check(
    client: &mut LedgerClient<tonic::transport::Channel>,
    signed: SignedEvent,
    derived_nonce_event: Option<&Event>,
) -> Checked {
    let status = match client.check_submission(signed).await {
        Ok(response) => return Checked::WouldAccept(response.into_inner()),
        Err(status) => status,
    };
    let mut result = Err(status);
    if let (Some(event), Err(status)) = (derived_nonce_event, &result) {
        if let Some(earlier) = prepare::earlier_submission(client, status, event).await {
            result = client.check_submission(earlier).await;
        }
    }
    match result {
        Ok(response) => Checked::WouldAccept(response.into_inner()),
        Err(status) if is_verdict(&status) => Checked::WouldRefuse(status),
        Err(status) => Checked::NoAnswer(ceasefire_grpc::errors::describe(&status)),
    }
}

fn load_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<KeyFile>> {
    paths.iter().map(|path| KeyFile::load(path)).collect()
}

/// Submits `signed` once. When the ledger answers `NONCE_REUSED` and
/// `derived_nonce_event` is the event (its nonce derived by submit), the
/// earlier entry it names is this report sent before: its own bytes are
/// resubmitted, for the original receipt.
async fn send(
    client: &mut LedgerClient<tonic::transport::Channel>,
    signed: SignedEvent,
    derived_nonce_event: Option<&Event>,
) -> Sent {
    let status = match client.submit(signed).await {
        Ok(response) => return Sent::Accepted(response.into_inner()),
        Err(status) => status,
    };
    if let Some(event) = derived_nonce_event {
        if let Some(earlier) = prepare::earlier_submission(client, &status, event).await {
            return classify(client.submit(earlier).await);
        }
    }
    classify(Err(status))
}

fn classify(result: Result<tonic::Response<Receipt>, tonic::Status>) -> Sent {
    match result {
        Ok(response) => Sent::Accepted(response.into_inner()),
        Err(status) if is_verdict(&status) => Sent::Refused(status),
        Err(status) => Sent::NoAnswer(ceasefire_grpc::errors::describe(&status)),
    }
}

/// Whether a failed Submit is the ledger's verdict on the event (so sending
/// it again would be refused again) rather than a failure to get one: a
/// status that names one of the ledger's reasons, with a code that is not
/// about the moment (unavailable, overloaded, timed out, broken stream).
fn is_verdict(status: &tonic::Status) -> bool {
    use tonic::Code;
    let transient = matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
    );
    !transient && ceasefire_grpc::errors::error_info(status).is_some()
}

/// A receipt as one JSON line: without the leaf bytes, which the caller
/// submitted and the leaf hash names.
fn receipt_json(receipt: &Receipt) -> anyhow::Result<serde_json::Value> {
    let mut json = message_to_json("ceasefire.v1.Receipt", receipt)?;
    if let Some(object) = json.as_object_mut() {
        object.remove("leaf");
    }
    Ok(json)
}

/// Refuses `--wait-witnessed` before anything is submitted when the log has
/// no witness policy: no checkpoint of it will ever be witnessed.
async fn require_witness_policy(
    client: &mut LedgerClient<tonic::transport::Channel>,
) -> anyhow::Result<()> {
    if super::receipt::server_policy(client).await?.is_none() {
        bail!(
            "--wait-witnessed: the ledger has no witness policy, so no checkpoint of it is ever \
             witnessed (the signatories name the witnesses with a SetWitnessPolicy event); nothing was submitted"
        );
    }
    Ok(())
}

/// Reads entry 0 and learns the agreement and the checkpoint key from it.
pub(super) async fn fetch_identity(
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
    LedgerIdentity::new(event.agreement_id.clone(), genesis.origin.clone(), operator)
}

impl LedgerIdentity {
    fn new(
        agreement_id: String,
        origin: String,
        operator: VerifyingKey,
    ) -> anyhow::Result<LedgerIdentity> {
        Ok(LedgerIdentity {
            checkpoint_verifier: NoteVerifier::new(&origin, &operator)
                .map_err(|error| anyhow!("the genesis origin cannot name a key: {error}"))?,
            agreement_id,
            origin,
            operator,
        })
    }

    /// The ledger as a file records it (an outbox, a watch cursor).
    pub(super) fn record(&self) -> LedgerRecord {
        LedgerRecord {
            agreement_id: self.agreement_id.clone(),
            origin: self.origin.clone(),
            operator_public_key: BASE64.encode(self.operator.to_bytes()),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    fn with_reason(code: tonic::Code) -> tonic::Status {
        tonic::Status::with_error_details(
            code,
            "refused",
            ErrorDetails::with_error_info(
                "WRONG_ROLE",
                ceasefire_core::rejection::ERROR_DOMAIN,
                std::collections::HashMap::new(),
            ),
        )
    }

    #[test]
    fn only_the_ledgers_reason_on_a_lasting_code_is_a_verdict() {
        assert!(is_verdict(&with_reason(tonic::Code::PermissionDenied)));
        // Not a verdict: a moment's trouble, or no ledger reason at all (a
        // proxy, a transport error).
        assert!(!is_verdict(&with_reason(tonic::Code::Unavailable)));
        assert!(!is_verdict(&with_reason(tonic::Code::Internal)));
        assert!(!is_verdict(&tonic::Status::invalid_argument(
            "from a proxy"
        )));
        assert!(!is_verdict(&tonic::Status::unavailable("connection reset")));
    }
}
