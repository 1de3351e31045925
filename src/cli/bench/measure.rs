//! What the benchmark measures besides ingest, each in the same run: this
//! machine's strict-verify rate (one thread, all cores), an audit of the
//! log, inclusion proofs read from the final store for growing tree sizes,
//! and the bytes the store takes on disk.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rayon::prelude::*;

use ceasefire_core::signing::{signed_message, verify_event_signature, EventSignature};
use ceasefire_grpc::proto::SignedEvent;
use ceasefire_node::storage::Store;

/// How long each strict-verify measurement runs.
const VERIFY_SECONDS: f64 = 1.5;

/// Inclusion proofs read per tree size.
const PROOFS_PER_SIZE: u64 = 2_000;

/// Strict verifications of `sample`'s signature on this thread for about
/// [`VERIFY_SECONDS`]: how many, and how long they took.
///
/// This is the reference rate: the primitive alone, `verify_strict` over
/// the domain-tagged payload with the public key decoded once, as the node
/// and the auditor do for a key they have seen (`core::signing`). Nothing
/// that checks an event can be faster, so the ratios measure everything
/// else the ledger does.
pub fn measure_verify(sample: &SignedEvent) -> anyhow::Result<(u64, Duration)> {
    let wire = sample
        .signatures
        .first()
        .context("the sample event carries no signature")?;
    let signature = EventSignature {
        public_key: wire
            .public_key
            .as_slice()
            .try_into()
            .context("the sample public key is not 32 bytes")?,
        signature: wire
            .signature
            .as_slice()
            .try_into()
            .context("the sample signature is not 64 bytes")?,
    };
    verify_event_signature(&sample.payload, &signature).map_err(|rejection| {
        anyhow::anyhow!("the sample does not verify: {}", rejection.message)
    })?;
    let message = signed_message(&sample.payload);
    let signature_bytes = ed25519_dalek::Signature::from_bytes(&signature.signature);
    let key = ed25519_dalek::VerifyingKey::from_bytes(&signature.public_key)
        .context("the sample public key does not decode")?;
    let budget = Duration::from_secs_f64(VERIFY_SECONDS);
    let started = Instant::now();
    let mut count = 0u64;
    loop {
        let verdict = std::hint::black_box(&key)
            .verify_strict(std::hint::black_box(&message), &signature_bytes);
        std::hint::black_box(verdict.is_ok());
        count += 1;
        let elapsed = started.elapsed();
        if elapsed >= budget {
            return Ok((count, elapsed));
        }
    }
}

/// Audits the log in `data_dir` and measures, right after, the strict
/// verify rate on all cores: (audit entries/s, entries, verifies/s).
pub fn audit_throughput(
    data_dir: &std::path::Path,
    sample: &SignedEvent,
) -> anyhow::Result<(f64, u64, f64)> {
    let mut source = ceasefire_node::DataDirSource::open(data_dir)?;
    let started = Instant::now();
    let report = ceasefire_audit::audit(&mut source, Default::default())
        .map_err(|error| anyhow::anyhow!("the audit failed: {error}"))?;
    let audit_rate = report.entries as f64 / started.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let counts: Vec<anyhow::Result<(u64, Duration)>> = (0..threads)
        .into_par_iter()
        .map(|_| measure_verify(sample))
        .collect();
    let mut all_cores_rate = 0.0;
    for count in counts {
        let (verified, elapsed) = count?;
        all_cores_rate += verified as f64 / elapsed.as_secs_f64();
    }
    Ok((audit_rate, report.entries, all_cores_rate))
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Mean time to read an inclusion proof from the final store (the log as
/// the run left it), for a spread of entries, against each of `sizes` as
/// the tree size (past sizes of the same store, not separate smaller
/// stores): (tree size, longest proof in the sample in hashes,
/// microseconds per proof). The node must have stopped (the store is
/// opened in place).
pub fn proof_timings(data_dir: &Path, sizes: &[u64]) -> anyhow::Result<Vec<(u64, usize, f64)>> {
    let store = Store::open(data_dir).context("cannot open the ledger the node wrote")?;
    let mut timings = Vec::new();
    for &size in sizes {
        // A fixed stride through the tree: every proof a different path.
        let step = (size / PROOFS_PER_SIZE).max(1) | 1;
        let seqs: Vec<u64> = (0..PROOFS_PER_SIZE).map(|k| (k * step) % size).collect();
        let mut longest = 0;
        let started = Instant::now();
        for &seq in &seqs {
            longest = longest.max(store.inclusion_proof(seq, size)?.len());
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / seqs.len() as f64;
        timings.push((size, longest, micros));
    }
    Ok(timings)
}

/// Bytes of every file under `dir`.
pub fn disk_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            disk_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}
