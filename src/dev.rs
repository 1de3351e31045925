//! `serve --dev`: a ready-to-use local ledger, like a development server.
//!
//! On an empty data directory it writes development keys (a signatory, a
//! monitoring mission, the operator) into `DATA_DIR/dev-keys/`, and the first
//! entries: a genesis with one signatory (threshold 1), the monitor's
//! registration, one zone and one commitment over it, so an observation can
//! be submitted at once (see examples/dev/). Never use these keys for real.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::keyfile::KeyFile;
use ceasefire_grpc::client::{new_event, now_timestamp, sign};
use ceasefire_grpc::proto::{
    event::Body, CommitmentKind, DefineCommitment, DefineZone, Event, Genesis, LatLon, Party,
    Polygon, RegisterParty, Role, SignedEvent, ZoneKind,
};

pub const DEV_AGREEMENT_ID: &str = "dev-agreement";
pub const DEV_ORIGIN: &str = "localhost/ceasefire-ledger-dev";
pub const DEV_SIGNATORY: &str = "dev-signatory";
pub const DEV_MONITOR: &str = "dev-monitor";
pub const DEV_ZONE: &str = "dev-sector";
pub const DEV_COMMITMENT: &str = "dev-ceasefire";

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

fn event(author: &str, body: Body) -> Event {
    new_event(DEV_AGREEMENT_ID, author, body)
}

/// The first entries of a development ledger, signed.
pub fn bootstrap_events(keys: &DevKeys) -> Vec<SignedEvent> {
    let signatory = &keys.signatory.key;
    let genesis = event(
        DEV_SIGNATORY,
        Body::Genesis(Genesis {
            origin: DEV_ORIGIN.into(),
            title: "Development agreement (not for real use)".into(),
            signatories: vec![Party {
                party_id: DEV_SIGNATORY.into(),
                name: "Development signatory".into(),
                role: Role::Signatory as i32,
                public_keys: vec![signatory.verifying_key().to_bytes().to_vec()],
            }],
            threshold: 1,
            operator_public_key: keys.operator.key.verifying_key().to_bytes().to_vec(),
            max_clock_skew_seconds: 0,
        }),
    );
    let monitor = event(
        DEV_SIGNATORY,
        Body::RegisterParty(RegisterParty {
            party: Some(Party {
                party_id: DEV_MONITOR.into(),
                name: "Development monitoring mission".into(),
                role: Role::Monitor as i32,
                public_keys: vec![keys.monitor.key.verifying_key().to_bytes().to_vec()],
            }),
        }),
    );
    let vertex = |lat, lon| LatLon { lat, lon };
    let zone = event(
        DEV_SIGNATORY,
        Body::DefineZone(DefineZone {
            zone_id: DEV_ZONE.into(),
            version: 1,
            name: "Development sector".into(),
            kind: ZoneKind::ContactLineSector as i32,
            boundary: Some(Polygon {
                vertices: vec![
                    vertex(48.0, 37.0),
                    vertex(48.0, 38.0),
                    vertex(49.0, 38.0),
                    vertex(49.0, 37.0),
                ],
            }),
        }),
    );
    let commitment = event(
        DEV_SIGNATORY,
        Body::DefineCommitment(DefineCommitment {
            commitment_id: DEV_COMMITMENT.into(),
            version: 1,
            name: "Development ceasefire".into(),
            kind: CommitmentKind::Ceasefire as i32,
            zone_ids: vec![DEV_ZONE.into()],
            window_seconds: 24 * 3600,
            corroboration_quorum: 2,
            // In force for a week already, so recent observations count.
            effective_from: Some(prost_types::Timestamp {
                seconds: now_timestamp().seconds - 7 * 24 * 3600,
                nanos: 0,
            }),
        }),
    );
    [genesis, monitor, zone, commitment]
        .iter()
        .map(|event| sign(event, &[signatory]))
        .collect()
}
