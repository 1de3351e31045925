//! Where an audit reads the log: a server over gRPC, or a tlog-tiles
//! export. (A data directory is read by `ceasefire_node::DataDirSource`: it
//! needs the store, which this crate does not link.)
//!
//! Sources only fetch bytes; every check is in [`super::audit`]. None of them
//! uses the server's code: the server source is a gRPC client like any other.
//!
//! Each hands over the checkpoint a verifier should hold the log to: the
//! latest witnessed one where there is one (a server asked for it, a
//! data directory's record of it, the `checkpoint` file an export wrote),
//! else the latest the operator signed. Whether a quorum of witnesses had
//! to cosign it is the audit's question, not the source's.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use tokio::runtime::Handle;

use super::{Leaves, LogDefect, LogSource, SourceError};
use crate::tiles::{TilesError, TilesReader};
use ceasefire_core::checkpoint::parse_unverified;
use ceasefire_core::merkle::Hash;
use ceasefire_core::merkle::{MemorySource, SubtreeSource};
use ceasefire_core::tiles::{tiles_for_size, TILE_HEIGHT, TILE_WIDTH};
use ceasefire_grpc::client::{proof_hashes, ClientTls};
use ceasefire_grpc::proto::{
    compliance_client::ComplianceClient, ledger_client::LedgerClient, Checkpoint,
    GetCheckpointRequest, GetConsistencyProofRequest, GetEntriesRequest, GetInclusionProofRequest,
    ListStatusesRequest, ReasonCode, WitnessStatus,
};

fn digest(bytes: &[u8]) -> anyhow::Result<Hash> {
    bytes
        .try_into()
        .map_err(|_| anyhow!("the projection digest is {} bytes, not 32", bytes.len()))
}

/// A ledger server, read over gRPC. Must be used from a blocking thread of a
/// tokio runtime (the audit runs in `spawn_blocking`).
pub struct ServerSource {
    url: String,
    runtime: Handle,
    ledger: LedgerClient<tonic::transport::Channel>,
    compliance: ComplianceClient<tonic::transport::Channel>,
    /// The witnessed checkpoint, asked for before the projection (see
    /// [`ServerSource::served_projection`]); `None` until asked, or when the
    /// server had none and the latest is to be read after the projection.
    witnessed: Option<Checkpoint>,
    /// Whether the witnessed checkpoint was asked for yet.
    asked_witnessed: bool,
    /// The server's account of each witness, from the last checkpoint it sent.
    witness_statuses: Vec<WitnessStatus>,
}

/// Leaves fetched per GetEntries call.
const ENTRIES_PER_CALL: u64 = 4096;

/// How long the auditor lets a server look for a witnessed checkpoint
/// covering its latest one. A server answers at once when it has one; else
/// it waits for its witnesses (who cosign within a second on a healthy log),
/// up to the call's deadline, and an auditor that found none should say so
/// rather than hang: it then audits the latest checkpoint, which the quorum
/// check refuses where a policy applies.
const WITNESSED_CHECKPOINT_WAIT: Duration = Duration::from_secs(5);

impl ServerSource {
    pub async fn connect(url: &str, tls: &ClientTls) -> anyhow::Result<ServerSource> {
        let channel = ceasefire_grpc::client::channel(url, tls).await?;
        Ok(ServerSource {
            url: url.to_string(),
            runtime: Handle::current(),
            ledger: ceasefire_grpc::client::ledger_client(channel.clone()),
            compliance: ComplianceClient::new(channel),
            witnessed: None,
            asked_witnessed: false,
            witness_statuses: Vec::new(),
        })
    }

    /// Asks (once) for a witnessed checkpoint covering the log as the
    /// server shows it now: the latest checkpoint's size is read first and
    /// is the `min_tree_size`. An older witnessed checkpoint is not enough:
    /// an operator showing this client a fork keeps the witnessed prefix
    /// both views share, and only the entries past it tell the views apart
    /// (the witnesses refuse them). A log without a witness policy
    /// (NO_WITNESS_POLICY) and one whose quorum has not cosigned that size
    /// (NOT_YET_WITNESSED, or no answer within [`WITNESSED_CHECKPOINT_WAIT`])
    /// leave it `None`: the latest checkpoint is audited instead, which the
    /// quorum check refuses where a policy applies. A server that predates
    /// witnessing ignores the fields and answers its latest checkpoint,
    /// which is then audited as is.
    fn ask_witnessed(&mut self) -> anyhow::Result<()> {
        if std::mem::replace(&mut self.asked_witnessed, true) {
            return Ok(());
        }
        let latest_size = self
            .runtime
            .block_on(self.ledger.get_checkpoint(GetCheckpointRequest::default()))
            .map_err(|status| status_error("GetCheckpoint", status))?
            .into_inner()
            .tree_size;
        let mut request = tonic::Request::new(GetCheckpointRequest {
            witnessed: true,
            min_tree_size: latest_size,
        });
        request.set_timeout(WITNESSED_CHECKPOINT_WAIT);
        match self.runtime.block_on(self.ledger.get_checkpoint(request)) {
            Ok(response) => {
                let checkpoint = response.into_inner();
                self.witness_statuses = checkpoint.witnesses.clone();
                self.witnessed = Some(checkpoint);
                Ok(())
            }
            Err(status) if not_witnessed(&status) => Ok(()),
            Err(status) => Err(status_error("GetCheckpoint (witnessed)", status)),
        }
    }
}

/// Whether a refusal of a witnessed checkpoint means "audit the latest one".
/// No answer within the wait counts too: the server's DEADLINE_EXCEEDED,
/// or the CANCELLED that the client's own timer (the request's timeout)
/// ends the call with.
fn not_witnessed(status: &tonic::Status) -> bool {
    matches!(
        ceasefire_grpc::errors::reason(status),
        ReasonCode::NoWitnessPolicy | ReasonCode::NotYetWitnessed
    ) || matches!(
        status.code(),
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}

fn status_error(what: &str, status: tonic::Status) -> anyhow::Error {
    anyhow!("{what}: {}", ceasefire_grpc::errors::describe(&status))
}

impl LogSource for ServerSource {
    fn describe(&self) -> String {
        format!("server {}", self.url)
    }

    fn checkpoint_note(&mut self) -> anyhow::Result<String> {
        self.ask_witnessed()?;
        if let Some(witnessed) = &self.witnessed {
            return Ok(witnessed.note.clone());
        }
        let latest = self
            .runtime
            .block_on(self.ledger.get_checkpoint(GetCheckpointRequest::default()))
            .map_err(|status| status_error("GetCheckpoint", status))?
            .into_inner();
        // What the server says of its witnesses comes with any checkpoint:
        // a failure to witness this one names it.
        self.witness_statuses = latest.witnesses;
        Ok(latest.note)
    }

    fn witness_statuses(&self) -> Vec<WitnessStatus> {
        self.witness_statuses.clone()
    }

    /// The witnessed checkpoint is asked for first, then the projection: a
    /// projection as of an entry it holds is compared (the server's, as of
    /// its latest entry, usually is not: the witnesses lag the log). Without
    /// a witnessed checkpoint the latest is read after the projection, so
    /// the projection is never ahead of it.
    fn served_projection(&mut self) -> anyhow::Result<Option<(u64, Hash)>> {
        self.ask_witnessed()?;
        let response = self
            .runtime
            // Only the version is needed: the smallest page.
            .block_on(self.compliance.list_statuses(ListStatusesRequest {
                filter: None,
                page_size: 1,
                ..Default::default()
            }))
            .map_err(|status| status_error("ListStatuses", status))?;
        let Some(version) = response.into_inner().version else {
            return Ok(None);
        };
        if let Some(witnessed) = &self.witnessed {
            // An unreadable note is the audit's finding; here it only means
            // there is no size to compare with.
            let beyond = parse_unverified(&witnessed.note)
                .map_or(true, |body| version.as_of_seq >= body.tree_size);
            if beyond {
                return Ok(None);
            }
        }
        Ok(Some((version.as_of_seq, digest(&version.digest)?)))
    }

    fn leaves(&mut self, size: u64) -> anyhow::Result<Leaves<'_>> {
        let mut next = 0u64;
        let mut buffered: std::collections::VecDeque<Vec<u8>> = Default::default();
        Ok(Box::new(std::iter::from_fn(move || {
            if next >= size {
                return None;
            }
            if buffered.is_empty() {
                let end = (next + ENTRIES_PER_CALL).min(size);
                let fetched = self.runtime.block_on(async {
                    let mut stream = self
                        .ledger
                        .get_entries(GetEntriesRequest { start: next, end })
                        .await?
                        .into_inner();
                    let mut leaves = Vec::new();
                    while let Some(entry) = stream.message().await? {
                        leaves.push((entry.seq, entry.leaf));
                    }
                    Ok::<_, tonic::Status>(leaves)
                });
                match fetched {
                    Ok(leaves) => {
                        for (offset, (seq, leaf)) in leaves.into_iter().enumerate() {
                            if seq != next + offset as u64 {
                                return Some(Err(anyhow!(
                                    "GetEntries answered entry {seq} in place of {}",
                                    next + offset as u64
                                )
                                .into()));
                            }
                            buffered.push_back(leaf);
                        }
                        if buffered.is_empty() {
                            return Some(Err(anyhow!(
                                "GetEntries returned nothing from entry {next}"
                            )
                            .into()));
                        }
                    }
                    Err(status) => return Some(Err(status_error("GetEntries", status).into())),
                }
            }
            next += 1;
            buffered.pop_front().map(Ok)
        })))
    }

    fn consistency_proof(
        &mut self,
        old_size: u64,
        new_size: u64,
    ) -> anyhow::Result<Option<Vec<Hash>>> {
        let response = self
            .runtime
            .block_on(
                self.ledger
                    .get_consistency_proof(GetConsistencyProofRequest { old_size, new_size }),
            )
            .map_err(|status| status_error("GetConsistencyProof", status))?;
        Ok(Some(proof_hashes(&response.into_inner().hashes)?))
    }

    fn inclusion_proof(&mut self, seq: u64, size: u64) -> anyhow::Result<Option<Vec<Hash>>> {
        let response = self
            .runtime
            .block_on(self.ledger.get_inclusion_proof(GetInclusionProofRequest {
                seq,
                tree_size: size,
            }))
            .map_err(|status| status_error("GetInclusionProof", status))?;
        Ok(Some(proof_hashes(&response.into_inner().hashes)?))
    }
}

/// A C2SP tlog-tiles export (`export --tiles`), read from its directory.
pub struct TilesSource {
    reader: TilesReader,
}

impl TilesSource {
    pub fn open(dir: &Path) -> anyhow::Result<TilesSource> {
        Ok(TilesSource {
            reader: TilesReader::open(dir)?,
        })
    }
}

impl LogSource for TilesSource {
    fn describe(&self) -> String {
        format!("tiles {}", self.reader.dir().display())
    }

    fn checkpoint_note(&mut self) -> anyhow::Result<String> {
        Ok(self.reader.checkpoint_note()?)
    }

    fn served_projection(&mut self) -> anyhow::Result<Option<(u64, Hash)>> {
        Ok(self.reader.projection()?)
    }

    fn leaves(&mut self, size: u64) -> anyhow::Result<Leaves<'_>> {
        // Bundles are read whole, so a bad one fails before any of its
        // entries is yielded: its first entry is the count yielded so far.
        let mut yielded = 0u64;
        Ok(Box::new(self.reader.leaves(size).map(move |leaf| {
            let error = match leaf {
                Ok(leaf) => {
                    yielded += 1;
                    return Ok(leaf);
                }
                Err(error) => error,
            };
            let seq = match &error {
                // A file that is there but wrong is a wrong log; one that
                // cannot be read is an incomplete copy.
                TilesError::Missing { .. } | TilesError::Io { .. } => {
                    return Err(SourceError::Unreadable(error.into()))
                }
                TilesError::BadEntry { entry, .. } => yielded + *entry as u64,
                TilesError::TooFewEntries { found, .. } => yielded + *found as u64,
                _ => yielded,
            };
            Err(LogDefect {
                seq: Some(seq),
                reason: error.to_string(),
            }
            .into())
        })))
    }

    /// The auditor rebuilds roots itself; tiles serve no proofs.
    fn consistency_proof(&mut self, _: u64, _: u64) -> anyhow::Result<Option<Vec<Hash>>> {
        Ok(None)
    }

    fn inclusion_proof(&mut self, _: u64, _: u64) -> anyhow::Result<Option<Vec<Hash>>> {
        Ok(None)
    }

    /// Every hash tile must hold the subtree hashes of the verified leaves:
    /// tlog clients read proofs from them, so a wrong tile is a wrong log.
    fn stored_tree_mismatch(
        &mut self,
        tree: &MemorySource,
        size: u64,
    ) -> anyhow::Result<Option<String>> {
        for tile in tiles_for_size(size) {
            let hashes = match self.reader.tile_hashes(tile.level, tile.index, tile.width) {
                Ok(hashes) => hashes,
                Err(error) => return Ok(Some(format!("{}: {error}", tile.path()))),
            };
            let level = tile.level * TILE_HEIGHT;
            for (offset, hash) in hashes.iter().enumerate() {
                let index = tile.index * u64::from(TILE_WIDTH) + offset as u64;
                if tree.subtree_hash(level, index)? != *hash {
                    return Ok(Some(format!(
                        "{}: hash {offset} is not the tree's node (level {level}, index {index})",
                        tile.path()
                    )));
                }
            }
        }
        Ok(None)
    }
}
