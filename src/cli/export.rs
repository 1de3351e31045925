//! `export --tiles DIR`: write the log as a C2SP tlog-tiles directory, or
//! bring an earlier export up to date (only new or changed files are
//! written; see `ceasefire_node::export`). Where the store holds a
//! witnessed checkpoint, that is the one exported.
//!
//! Works with the server running: sled lets one process open a store, so
//! when the server holds it the export reads a private snapshot copy.

use std::path::PathBuf;

use anyhow::{bail, Context};

use ceasefire_node::export;
use ceasefire_node::storage::{Store, StoreError, DB_DIR_NAME};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Directory to write the tiles into (created if needed; an earlier
    /// export of the same log there is updated in place).
    #[arg(long, value_name = "DIR")]
    tiles: PathBuf,
    /// The ledger's data directory.
    #[arg(
        long,
        env = "CEASEFIRE_LEDGER_DATA_DIR",
        default_value = "ceasefire-data"
    )]
    data_dir: PathBuf,
}

/// Whether opening failed because another process (a server) holds sled's lock.
fn is_locked(error: &StoreError) -> bool {
    match error {
        StoreError::Sled(sled::Error::Io(error)) | StoreError::Io(error) => {
            error.kind() == std::io::ErrorKind::WouldBlock
                || error.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    if !args.data_dir.join(DB_DIR_NAME).exists() {
        bail!("{} holds no ledger", args.data_dir.display());
    }
    let (store, snapshot) = match Store::open(&args.data_dir) {
        Ok(store) => (store, None),
        Err(error) if is_locked(&error) => {
            eprintln!(
                "{} is in use (a server is running on it): exporting a snapshot copy of it",
                args.data_dir.display()
            );
            let (store, snapshot) = Store::open_snapshot(&args.data_dir).with_context(|| {
                format!("cannot snapshot the ledger in {}", args.data_dir.display())
            })?;
            (store, Some(snapshot))
        }
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot open the ledger in {}", args.data_dir.display()))
        }
    };
    let result = export::export(&store, &args.tiles);
    // The store lives in the snapshot: close it before the copy is removed.
    drop(store);
    drop(snapshot);
    let summary = result.with_context(|| format!("cannot export to {}", args.tiles.display()))?;
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
