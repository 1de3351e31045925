//! ceasefire-testkit: one kit for the tests and the bench, so that there is
//! one way to make a party, a zone, a commitment or a signed event, one way
//! to run a node in-process, and one way to run the real binary.
//!
//! - [`scenario`]: agreements, parties with their keys, zones, commitments,
//!   and every kind of signed event; leaves of logs built without a server.
//!   The development ledger of `serve --dev` is one.
//! - [`fixture`] (feature `fixture`, for tests): a real node over a
//!   temporary sled directory, and the checks of what it answers.
//! - [`harness`]: the real binary as a child process (the tests' and the
//!   bench's).
//! - [`store_edit`] (feature `fixture`): editing a stored ledger below the
//!   store's API, as an attacker with the disk would.
//! - [`witness`]: a C2SP log in memory that can fork (for witness tests)
//!   and `witness serve` as a child process.

// One call needs `unsafe`, allowed where it stands with its reason: the
// harness's `kill(2)` (SIGTERM, as an operator stops a node).
#![deny(unsafe_code)]

#[cfg(feature = "fixture")]
pub mod fixture;
pub mod harness;
pub mod scenario;
#[cfg(feature = "fixture")]
pub mod store_edit;
pub mod witness;
