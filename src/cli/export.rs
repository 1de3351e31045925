//! `export --tiles DIR`: write the log as a C2SP tlog-tiles directory, or
//! bring an earlier export up to date (only new or changed files are
//! written; see `ceasefire_node::export`). Two ways to read the log:
//!
//! - `--server URL`: a running ledger, over gRPC, as an auditor reads it.
//!   The export is an audit (`ceasefire_audit::audit` over the server
//!   source) whose leaves are written into tiles as they are verified; the
//!   `checkpoint` file is written only once the whole audit has passed
//!   (signatures, rules, root, the witnesses' quorum where a policy applies,
//!   the projection digest), so a directory never claims a tree that did
//!   not verify.
//! - `--data-dir DIR`: the store. sled lets one process open a store, so
//!   when a server holds it the export reads a private snapshot copy (made
//!   in `$TMPDIR`, as `verify --data-dir` does).
//!
//! Where the log has a witnessed checkpoint, that is the one exported.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

use ceasefire_audit::sources::ServerSource;
use ceasefire_audit::{audit, AuditError, AuditOptions, Leaves, LogSource, SourceError};
use ceasefire_core::checkpoint::{parse_unverified, CheckpointBody};
use ceasefire_core::merkle::{Hash, MemorySource};
use ceasefire_grpc::proto::WitnessStatus;
use ceasefire_node::export::{
    self, check_not_behind, existing_checkpoint, other_root, DirSink, ExportError, ExportSummary,
    TilesWriter,
};
use ceasefire_node::storage::{Store, StoreError, DB_DIR_NAME};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Directory to write the tiles into (created if needed; an earlier
    /// export of the same log there is updated in place).
    #[arg(long, value_name = "DIR")]
    tiles: PathBuf,
    /// Read a running ledger over gRPC (verifying it as it is written).
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    server: Option<String>,
    /// The data directory of a stopped ledger [default: ceasefire-data].
    #[arg(long, env = "CEASEFIRE_LEDGER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    tls: ceasefire_grpc::client::ClientTls,
}

/// Whether opening failed because another process (a server) holds sled's
/// lock (sled reports it as an I/O error, which the store wraps).
fn is_locked(error: &StoreError) -> bool {
    match error {
        StoreError::Unopenable { reason, .. } => reason.contains("could not acquire lock"),
        StoreError::Sled(sled::Error::Io(error)) | StoreError::Io(error) => {
            error.kind() == std::io::ErrorKind::WouldBlock
                || error.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let summary = match &args.server {
        Some(url) => {
            let source = ServerSource::connect(url, &args.tls)
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let dir = args.tiles.clone();
            tokio::task::spawn_blocking(move || export_from_server(source, &dir)).await??
        }
        None => {
            let data_dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("ceasefire-data"));
            let dir = args.tiles.clone();
            tokio::task::spawn_blocking(move || export_from_store(&data_dir, &dir)).await??
        }
    };
    let projection = match summary.projection {
        Some((as_of_seq, _)) => format!("projection as of entry {as_of_seq}"),
        None => "no projection".to_string(),
    };
    // A witnessed checkpoint may lag the log: say which one was exported.
    let witnessed = if summary.witnessed {
        " (the latest witnessed checkpoint)"
    } else {
        ""
    };
    println!(
        "exported tree size {}{witnessed} to {}: {} files written ({} bytes), {} unchanged, {projection}",
        summary.tree_size,
        args.tiles.display(),
        summary.files_written,
        summary.bytes_written,
        summary.files_unchanged,
    );
    Ok(())
}

fn export_from_store(data_dir: &Path, tiles: &Path) -> anyhow::Result<ExportSummary> {
    if !data_dir.join(DB_DIR_NAME).exists() {
        bail!("{} holds no ledger", data_dir.display());
    }
    let (store, snapshot) = match Store::open(data_dir) {
        Ok(store) => (store, None),
        Err(error) if is_locked(&error) => {
            eprintln!(
                "{} is in use (a server is running on it): exporting a snapshot copy of it \
                 (--server URL reads the running server instead)",
                data_dir.display()
            );
            let (store, snapshot) = Store::open_snapshot(data_dir)
                .with_context(|| format!("cannot snapshot the ledger in {}", data_dir.display()))?;
            (store, Some(snapshot))
        }
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot open the ledger in {}", data_dir.display()))
        }
    };
    let result = export::export(&store, tiles);
    // The store lives in the snapshot: close it before the copy is removed.
    drop(store);
    drop(snapshot);
    result.with_context(|| format!("cannot export to {}", tiles.display()))
}

/// A server source whose verified leaves also go into a tiles writer.
struct Exporting {
    server: ServerSource,
    writer: TilesWriter<DirSink>,
    /// The directory's checkpoint before the export: its tree must be a
    /// prefix of the server's (checked when the writer reaches its size).
    old: Option<CheckpointBody>,
    /// The note and projection handed to the audit: what is published.
    note: Option<String>,
    projection: Option<(u64, Hash)>,
    /// Why writing failed, if it did (the audit only hears "could not run").
    failed: Option<ExportError>,
}

impl Exporting {
    /// Before leaf `seq` (or at the end): the prefix root against the
    /// directory's old checkpoint.
    fn check_old_prefix(&self) -> Result<(), ExportError> {
        match &self.old {
            Some(old)
                if old.tree_size == self.writer.size() && self.writer.root() != old.root_hash =>
            {
                Err(other_root(self.writer.sink(), old.tree_size))
            }
            _ => Ok(()),
        }
    }
}

impl LogSource for Exporting {
    fn describe(&self) -> String {
        self.server.describe()
    }

    fn checkpoint_note(&mut self) -> anyhow::Result<String> {
        let note = self.server.checkpoint_note()?;
        // Refuse a directory of another log, or ahead of this one, before
        // anything is written into it.
        if let (Some(old), Ok(body)) = (&self.old, parse_unverified(&note)) {
            // More than the operator's signature line: cosignatures. (Only
            // which refusal to give depends on it; the audit judges them.)
            let witnessed = note
                .lines()
                .filter(|line| line.starts_with("\u{2014} "))
                .count()
                > 1;
            if let Err(error) = check_not_behind(self.writer.sink(), old, &body, witnessed) {
                let message = error.to_string();
                self.failed = Some(error);
                return Err(anyhow!(message));
            }
        }
        self.note = Some(note.clone());
        Ok(note)
    }

    fn served_projection(&mut self) -> anyhow::Result<Option<(u64, Hash)>> {
        self.projection = self.server.served_projection()?;
        Ok(self.projection)
    }

    fn witness_statuses(&self) -> Vec<WitnessStatus> {
        self.server.witness_statuses()
    }

    fn leaves(&mut self, size: u64) -> anyhow::Result<Leaves<'_>> {
        let Exporting {
            server,
            writer,
            old,
            failed,
            ..
        } = self;
        let leaves = server.leaves(size)?;
        Ok(Box::new(leaves.map(move |leaf| {
            let leaf = leaf?;
            if failed.is_some() {
                return Err(SourceError::Unreadable(anyhow!("the export stopped")));
            }
            let written = writer.push(&leaf, |_| Ok(())).and_then(|()| match old {
                Some(old) if old.tree_size == writer.size() && writer.root() != old.root_hash => {
                    Err(other_root(writer.sink(), old.tree_size))
                }
                _ => Ok(()),
            });
            if let Err(error) = written {
                let message = error.to_string();
                *failed = Some(error);
                return Err(SourceError::Unreadable(anyhow!(message)));
            }
            Ok(leaf)
        })))
    }

    fn consistency_proof(
        &mut self,
        old_size: u64,
        new_size: u64,
    ) -> anyhow::Result<Option<Vec<Hash>>> {
        self.server.consistency_proof(old_size, new_size)
    }

    fn inclusion_proof(&mut self, seq: u64, size: u64) -> anyhow::Result<Option<Vec<Hash>>> {
        self.server.inclusion_proof(seq, size)
    }

    fn stored_tree_mismatch(
        &mut self,
        tree: &MemorySource,
        size: u64,
    ) -> anyhow::Result<Option<String>> {
        self.server.stored_tree_mismatch(tree, size)
    }
}

/// Audits the server and writes what it verified; the `checkpoint` last.
fn export_from_server(server: ServerSource, tiles: &Path) -> anyhow::Result<ExportSummary> {
    let cannot = || format!("cannot export to {}", tiles.display());
    let sink = DirSink::create(tiles).with_context(cannot)?;
    let old = existing_checkpoint(&sink).with_context(cannot)?;
    let mut exporting = Exporting {
        server,
        writer: TilesWriter::new(sink),
        old,
        note: None,
        projection: None,
        failed: None,
    };
    let audited = audit(&mut exporting, AuditOptions::default());
    if let Some(error) = exporting.failed.take() {
        return Err(error).with_context(cannot);
    }
    let report = match audited {
        Ok(report) => report,
        Err(AuditError::Failed(failure)) => bail!(
            "the server's log does not verify, nothing published to {}: {failure}",
            tiles.display()
        ),
        Err(AuditError::CouldNotRun(error)) => {
            return Err(error).context(format!("cannot read the server's log; {}", cannot()))
        }
    };
    exporting.check_old_prefix().with_context(cannot)?;
    let note = exporting
        .note
        .take()
        .context("the audit read no checkpoint")?;
    let body = parse_unverified(&note).context("the audited checkpoint does not parse")?;
    let projection = exporting
        .projection
        .filter(|(as_of_seq, _)| *as_of_seq < body.tree_size);
    exporting
        .writer
        .publish(&note, &body, projection)
        .with_context(cannot)?;
    let mut summary = exporting.writer.take_summary();
    summary.witnessed = !report.witnessed_by.is_empty();
    Ok(summary)
}
