//! `serve --dev`: a ready-to-use local ledger, like a development server.
//!
//! On an empty data directory it writes development keys (a signatory, a
//! monitoring mission, the operator) into `DATA_DIR/dev-keys/`, and the first
//! entries of the development agreement (`ceasefire_testkit::scenario`'s
//! `Scenario::dev`, which the tests start too): a genesis with one signatory
//! (threshold 1), the monitor's registration, one zone and one commitment
//! over it, so an observation can be submitted at once (see examples/dev/).
//! Never use these keys for real.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::keyfile::KeyFile;
use ceasefire_grpc::proto::SignedEvent;
use ceasefire_testkit::scenario::{Scenario, DEV_MONITOR, DEV_SIGNATORY};

/// The development keys.
pub struct DevKeys {
    pub signatory: KeyFile,
    pub monitor: KeyFile,
    pub operator: KeyFile,
}

pub fn dev_keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-keys")
}

/// Loads the development keys, creating them if the directory has none.
pub fn ensure_dev_keys(data_dir: &Path) -> anyhow::Result<DevKeys> {
    let dir = dev_keys_dir(data_dir);
    let path = |name: &str| dir.join(format!("{name}.key"));
    if !path("operator").exists() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        KeyFile::generate(Some(DEV_SIGNATORY.into())).save(&path("signatory"))?;
        KeyFile::generate(Some(DEV_MONITOR.into())).save(&path("monitor"))?;
        KeyFile::generate(None).save(&path("operator"))?;
    }
    Ok(DevKeys {
        signatory: KeyFile::load(&path("signatory"))?,
        monitor: KeyFile::load(&path("monitor"))?,
        operator: KeyFile::load(&path("operator"))?,
    })
}

/// The development agreement with these keys.
pub fn scenario(keys: &DevKeys) -> Scenario {
    Scenario::dev(
        keys.signatory.key.clone(),
        keys.monitor.key.clone(),
        keys.operator.key.clone(),
    )
}

/// The first entries of a development ledger, signed.
pub fn bootstrap_events(keys: &DevKeys) -> Vec<SignedEvent> {
    scenario(keys).bootstrap()
}
