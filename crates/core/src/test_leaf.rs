//! For the core's own tests: one way to make the next leaf of a test log,
//! an event signed by one key and chained after the previous leaf.

use prost::Message;

use crate::leaf::Leaf;
use crate::merkle::Hash;
use crate::proto::{event::Body, Event};
use crate::rules::micros_timestamp;
use crate::signing::sign_event;

/// The event `body` by `author` of `agreement_id`, created and received at
/// `at` with a nonce made from `nonce`, signed by `key` as entry `seq` after
/// `prev_leaf_hash`.
#[allow(clippy::too_many_arguments)]
pub fn signed_leaf(
    agreement_id: &str,
    author: &str,
    nonce: u64,
    at: i64,
    body: Body,
    key: &ed25519_dalek::SigningKey,
    seq: u64,
    prev_leaf_hash: Hash,
) -> (Event, Leaf) {
    let event = Event {
        agreement_id: agreement_id.into(),
        author: author.into(),
        created_at: Some(micros_timestamp(at)),
        nonce: nonce.to_be_bytes().repeat(2),
        body: Some(body),
    };
    let payload = event.encode_to_vec();
    let leaf = Leaf {
        seq,
        prev_leaf_hash,
        received_at_micros: at,
        signatures: vec![sign_event(&payload, key)],
        payload,
    };
    (event, leaf)
}
