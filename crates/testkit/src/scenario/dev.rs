//! The development ledger (`serve --dev`): one signatory (threshold 1), one
//! monitoring mission, one sector and a ceasefire over it, in force for a
//! week already so that a fresh observation counts at once. The binary
//! keeps its keys in `DATA_DIR/dev-keys/`; the tests make their own.

use ceasefire_grpc::proto::Role;
use ed25519_dalek::SigningKey;

use super::{random_key, seconds_ago, square, Commitment, Member, Scenario, Zone};

pub const DEV_AGREEMENT_ID: &str = "dev-agreement";
pub const DEV_ORIGIN: &str = "localhost/ceasefire-ledger-dev";
pub const DEV_SIGNATORY: &str = "dev-signatory";
pub const DEV_MONITOR: &str = "dev-monitor";
/// Latitude 48 to 49, longitude 37 to 38.
pub const DEV_ZONE: &str = "dev-sector";
pub const DEV_COMMITMENT: &str = "dev-ceasefire";

/// Entries the development bootstrap writes: genesis, monitor, zone,
/// commitment.
pub const BOOTSTRAP_ENTRIES: u64 = 4;

impl Scenario {
    /// The development agreement with these keys.
    pub fn dev(signatory: SigningKey, monitor: SigningKey, operator: SigningKey) -> Scenario {
        Scenario::new(DEV_AGREEMENT_ID, DEV_ORIGIN)
            .with_title("Development agreement (not for real use)")
            .with_operator(operator)
            .with_member(
                Member::new(DEV_SIGNATORY, Role::Signatory, signatory)
                    .named("Development signatory"),
            )
            .with_member(
                Member::new(DEV_MONITOR, Role::Monitor, monitor)
                    .named("Development monitoring mission"),
            )
            .with_zone(
                Zone::new(DEV_ZONE, square(48.0, 37.0, 1.0))
                    .with(|zone| zone.name = "Development sector".into()),
            )
            .with_commitment(
                Commitment::new(DEV_COMMITMENT, &[DEV_ZONE])
                    .with(|commitment| commitment.name = "Development ceasefire".into())
                    .window(24 * 3600)
                    .quorum(2)
                    .effective_from(seconds_ago(7 * 24 * 3600)),
            )
    }

    /// The development agreement with fresh random keys (kept in memory).
    pub fn dev_with_random_keys() -> Scenario {
        Scenario::dev(random_key(), random_key(), random_key())
    }
}
