//! Rebuilding a store from another copy of its log (`restore --tiles`):
//! the leaves exactly as they were written, through the same batch and step
//! the live log uses, so the store is the one the sequencer would have
//! written (nonce and observation indexes, tree nodes, projection).
//!
//! The copy is audited by the caller first; what is checked again here is
//! what the store depends on: each leaf follows the head (seq, chain, time),
//! no nonce is used twice, the rules accept every event, and the tree ends
//! at the checkpoint's root. The store's own checkpoint is the copy's,
//! signed by the operator (its cosignatures, if any, are recorded as the
//! witnessed checkpoint, which the node serves after checking them again).
//!
//! Invariant: no checkpoint can be signed here (the operator's key is not
//! needed), so every batch records the copy's final checkpoint note. A store
//! whose restore stopped half way therefore claims more than it holds; the
//! caller restores into a fresh directory and moves it into place only once
//! this returns.

use anyhow::{anyhow, bail, Context};
use ceasefire_core::checkpoint::{open_checkpoint, parse_unverified, NoteVerifier};

use super::batch::Batch;
use super::recovery::{recover, StartupCheck};
use crate::storage::{DurableHead, Store};

/// Entries per committed batch: large enough that syncing is not the cost,
/// small enough that a batch's staged entries stay a few MiB.
const RESTORE_BATCH: usize = 4096;

/// The operator's signed note within `note`: its body and first signature
/// line (a witnessed note is the operator's note with the cosignatures
/// added after it).
fn operator_note(note: &str) -> Option<String> {
    let (body, signatures) = note.split_once("\n\n")?;
    let first = signatures.lines().next()?;
    Some(format!("{body}\n\n{first}\n"))
}

/// Writes `leaves` (entries `0..`, in order, exactly as the copy holds them)
/// into the empty `store`, ending at the checkpoint `note`.
pub fn restore(
    store: &Store,
    leaves: impl Iterator<Item = anyhow::Result<Vec<u8>>>,
    note: &str,
) -> anyhow::Result<DurableHead> {
    let body = parse_unverified(note).context("the checkpoint does not parse")?;
    let mut durable = recover(store, StartupCheck::Full)?;
    if durable.head.size != 0 {
        bail!("the store is not empty ({} entries)", durable.head.size);
    }
    let operator_note = operator_note(note).context("the checkpoint carries no signature")?;
    let mut leaves = leaves.take(body.tree_size as usize).peekable();
    while leaves.peek().is_some() {
        let mut batch = Batch::new(store, &mut durable, 0);
        for _ in 0..RESTORE_BATCH {
            let Some(leaf) = leaves.next() else { break };
            let seq = batch.head().size;
            let leaf = leaf.with_context(|| format!("cannot read entry {seq}"))?;
            if let Err(reason) = batch.stage_restored(store, leaf)? {
                bail!("entry {seq}: {reason}");
            }
        }
        let committed = batch
            .commit(store, &operator_note)
            .map_err(|failed| anyhow!("cannot write the store: {}", failed.1))?;
        durable.head = committed.durable_head;
        durable.frontier = committed.frontier.clone();
        if let Some(state) = committed.new_state.clone() {
            durable.state = Some(state);
        }
    }
    let head = durable.head;
    if head.size != body.tree_size {
        bail!(
            "the checkpoint claims {} entries, the copy holds {}",
            body.tree_size,
            head.size
        );
    }
    if head.root != body.root_hash {
        bail!(
            "the entries do not have the checkpoint's root at size {}",
            head.size
        );
    }
    // The operator's signature, with the key the genesis names.
    let state = durable
        .state
        .as_ref()
        .context("the copy holds no genesis")?;
    let operator_key =
        ed25519_dalek::VerifyingKey::from_bytes(&state.agreement.operator_public_key)
            .map_err(|_| anyhow!("the genesis operator key is not an Ed25519 key"))?;
    let verifier = NoteVerifier::new(&state.agreement.origin, &operator_key)?;
    open_checkpoint(&operator_note, &verifier).map_err(|error| {
        anyhow!("the checkpoint's first signature is not the operator's: {error}")
    })?;
    if operator_note != note {
        store.record_witnessed(note)?;
    }
    Ok(head)
}
