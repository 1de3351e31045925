//! `rebuild-projections`: refold the compliance projection from the whole
//! log (admin; the server must be stopped). The result must equal what the
//! server kept, digest for digest.

use std::path::PathBuf;

use anyhow::{bail, Context};

use ceasefire_node::sequencer::recovery::rebuild_projection;
use ceasefire_node::storage::{Store, DB_DIR_NAME};

#[derive(clap::Args)]
pub struct RebuildArgs {
    /// The ledger's data directory (the server must not be running on it).
    #[arg(
        long,
        env = "CEASEFIRE_LEDGER_DATA_DIR",
        default_value = "ceasefire-data"
    )]
    data_dir: PathBuf,
    /// Accept a store whose head record (`ledger.head`) is missing, taking
    /// its head as it is, and record it from now on. Only after auditing
    /// the log: without the record, a store rolled back by damage cannot be
    /// told from a whole one.
    #[arg(long)]
    adopt_head: bool,
}

pub fn run(args: RebuildArgs) -> anyhow::Result<()> {
    if !args.data_dir.join(DB_DIR_NAME).exists() {
        bail!("{} holds no ledger", args.data_dir.display());
    }
    let opened = if args.adopt_head {
        Store::open_adopting_head(&args.data_dir)
    } else {
        Store::open(&args.data_dir)
    };
    let store = opened.with_context(|| {
        format!(
            "cannot open {} (is a server running on it?)",
            args.data_dir.display()
        )
    })?;
    let before = store.load_projection()?.map(|stored| stored.head);
    store
        .verify()
        .with_context(|| format!("refusing to rebuild from {}", args.data_dir.display()))?;
    let projection = rebuild_projection(&store)?;
    let digest = hex::encode(projection.digest());
    println!(
        "rebuilt the projection as of entry {}: {} pairs, digest {digest}",
        projection.as_of_seq.unwrap_or_default(),
        projection.pairs.len()
    );
    if let Some(before) = before {
        let same = hex::encode(before.digest) == digest;
        println!(
            "the stored projection (as of entry {}) {}",
            before.as_of_seq.unwrap_or_default(),
            if same {
                "had the same digest"
            } else {
                "differed and was replaced"
            }
        );
    }
    Ok(())
}
