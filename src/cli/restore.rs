//! `restore --tiles DIR --data-dir NEW`: a working data directory rebuilt
//! from a tlog-tiles export (`export --tiles`, or a `serve --tiles-dir`
//! mirror), so an export is a backup.
//!
//! The export is audited first, exactly as `verify --tiles` does (every
//! signature, rule, root, hash tile, the witnesses' quorum where a policy
//! applies, the projection digest); only a copy that verifies is written.
//! The store is built in a fresh directory beside NEW and renamed to NEW
//! when complete, so NEW is either absent (or left empty) or a whole store.
//! NEW must not exist or be an empty directory: restore never writes over
//! a ledger.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

use ceasefire_audit::sources::TilesSource;
use ceasefire_audit::tiles::TilesReader;
use ceasefire_audit::{audit, AuditError, AuditOptions};
use ceasefire_core::checkpoint::parse_unverified;
use ceasefire_node::sequencer::restore::restore;
use ceasefire_node::storage::Store;

use super::Exit;

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The tlog-tiles directory to restore from.
    #[arg(long, value_name = "DIR")]
    tiles: PathBuf,
    /// The data directory to create (absent, or an empty directory).
    #[arg(long, value_name = "NEW")]
    data_dir: PathBuf,
}

/// Refuses a destination that holds anything.
fn check_destination(new: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(new) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: restore writes only into a new or empty directory",
                    new.display()
                );
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} is not a directory", new.display())
        }
        Err(error) => Err(anyhow!("cannot read {}: {error}", new.display())),
    }
}

pub async fn run(args: RestoreArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(args)).await?
}

fn run_blocking(args: RestoreArgs) -> anyhow::Result<()> {
    check_destination(&args.data_dir)?;
    let mut source = TilesSource::open(&args.tiles)
        .with_context(|| format!("cannot restore from {}", args.tiles.display()))?;
    let report = match audit(&mut source, AuditOptions::default()) {
        Ok(report) => report,
        Err(AuditError::Failed(failure)) => {
            return Err(Exit {
                code: 1,
                message: format!(
                    "{} does not verify, nothing restored: {failure}",
                    args.tiles.display()
                ),
            }
            .into())
        }
        Err(AuditError::CouldNotRun(error)) => {
            return Err(error).context(format!("cannot verify {}", args.tiles.display()))
        }
    };
    let reader = TilesReader::open(&args.tiles)?;
    let note = reader.checkpoint_note()?;
    let size = parse_unverified(&note)?.tree_size;
    if size != report.entries {
        bail!(
            "{} changed while it was verified (its checkpoint is now at {size} entries, {} were verified)",
            args.tiles.display(),
            report.entries
        );
    }

    let parent = match args.data_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let building = tempfile::Builder::new()
        .prefix(".ceasefire-restore-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
    let head = {
        let store = Store::open(building.path())
            .with_context(|| format!("cannot create a store in {}", building.path().display()))?;
        let leaves = reader
            .leaves(size)
            .map(|leaf| leaf.map_err(anyhow::Error::from));
        restore(&store, leaves, &note)
            .with_context(|| format!("cannot restore from {}", args.tiles.display()))?
    };
    // Nothing was written to NEW yet: check again, then move the store in
    // (a rename replaces an empty directory).
    check_destination(&args.data_dir)?;
    let built = building.keep();
    std::fs::rename(&built, &args.data_dir).map_err(|error| {
        anyhow!(
            "cannot move the restored store from {} to {}: {error}",
            built.display(),
            args.data_dir.display()
        )
    })?;
    println!(
        "restored {} entries (root {}) from {} into {}{}",
        head.size,
        ceasefire_core::key_text(head.root),
        args.tiles.display(),
        args.data_dir.display(),
        if report.witnessed_by.is_empty() {
            String::new()
        } else {
            format!(
                ", with its checkpoint witnessed by {}",
                report
                    .witnessed_by
                    .iter()
                    .map(|witness| witness.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(())
}
