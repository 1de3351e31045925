//! `demo`: the example scenario of examples/scenario/, end to end, in one
//! command: a real node on a temporary (or given) data directory, three
//! signatories founding the ledger, five zones and four commitments, two
//! monitoring missions reporting a day, a corroborated violation, a dispute,
//! a retraction and an obstruction; then the compliance table and the
//! auditor's verdict.
//!
//! The scenario's events are the files under examples/scenario/ (compiled
//! in), so the demo and the CLI walkthrough in the README are one scenario.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;

use crate::event_json::event_from_json;
use ceasefire_audit::sources::ServerSource;
use ceasefire_audit::{audit, AuditOptions};
use ceasefire_grpc::client::{self, now_timestamp};
use ceasefire_grpc::proto::{
    event::Body, ledger_client::LedgerClient, AmendmentKind, Dispute, Event, Genesis,
    ListStatusesRequest, Party, Receipt, Role,
};
use ceasefire_node::node::{self, NodeConfig};

const AGREEMENT: &str = "eastern-sector-2026";
const ORIGIN: &str = "ledger.example.org/eastern-sector-2026";

/// The scenario's governance events, in order (examples/scenario/governance/).
const GOVERNANCE: &[&str] = &[
    include_str!("../../examples/scenario/governance/01-zone-sector-1.json"),
    include_str!("../../examples/scenario/governance/02-zone-sector-2.json"),
    include_str!("../../examples/scenario/governance/03-zone-sector-3.json"),
    include_str!("../../examples/scenario/governance/04-zone-sector-4.json"),
    include_str!("../../examples/scenario/governance/05-zone-disengagement-area-1.json"),
    include_str!("../../examples/scenario/governance/06-commitment-ceasefire.json"),
    include_str!("../../examples/scenario/governance/07-commitment-heavy-weapons-withdrawal.json"),
    include_str!("../../examples/scenario/governance/08-commitment-disengagement.json"),
    include_str!("../../examples/scenario/governance/09-commitment-freedom-of-movement.json"),
    include_str!("../../examples/scenario/governance/10-register-mission-alpha.json"),
    include_str!("../../examples/scenario/governance/11-register-mission-bravo.json"),
];
const ALPHA_DAY: &str = include_str!("../../examples/scenario/observations/mission-alpha.ndjson");
const BRAVO_DAY: &str = include_str!("../../examples/scenario/observations/mission-bravo.ndjson");

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the ledger in this directory (must be empty or new) instead of a temporary one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The people of the scenario, each with a fresh key.
struct Cast {
    north: SigningKey,
    south: SigningKey,
    mediator: SigningKey,
    alpha: SigningKey,
    bravo: SigningKey,
    operator: SigningKey,
}

fn key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

fn public(key: &SigningKey) -> Vec<u8> {
    key.verifying_key().to_bytes().to_vec()
}

fn step(text: &str) {
    println!("\n== {text}");
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temporary;
    let data_dir = match args.data_dir {
        Some(dir) => {
            if dir.exists() && dir.read_dir()?.next().is_some() {
                bail!(
                    "{} is not empty: the demo needs a new ledger",
                    dir.display()
                );
            }
            dir
        }
        None => {
            temporary = tempfile::tempdir()?;
            temporary.path().to_path_buf()
        }
    };
    let cast = Cast {
        north: key(),
        south: key(),
        mediator: key(),
        alpha: key(),
        bravo: key(),
        operator: key(),
    };

    step("three signatories found the ledger (two of three govern)");
    let signatory = |party_id: &str, name: &str, key: &SigningKey| Party {
        party_id: party_id.into(),
        name: name.into(),
        role: Role::Signatory as i32,
        public_keys: vec![public(key)],
    };
    let genesis = header(
        "mediator",
        Body::Genesis(Genesis {
            origin: ORIGIN.into(),
            title: "Agreement on the cessation of hostilities, eastern sector".into(),
            signatories: vec![
                signatory("party-north", "Party North", &cast.north),
                signatory("party-south", "Party South", &cast.south),
                signatory("mediator", "Mediator", &cast.mediator),
            ],
            threshold: 2,
            operator_public_key: public(&cast.operator),
            max_clock_skew_seconds: 0,
        }),
    );
    let mut config = NodeConfig::new(
        data_dir.clone(),
        ([127, 0, 0, 1], 0).into(),
        cast.operator.clone(),
    );
    config.bootstrap = vec![client::sign(&genesis, &[&cast.mediator, &cast.north])];
    let node = node::start(config).await?;
    println!("ledger {} serving on {}", ORIGIN, node.url());
    let result = play(&cast, &node.url()).await;
    node.shutdown().await?;
    result?;
    println!("\nThe ledger was in {}.", data_dir.display());
    println!("Next: `serve --dev`, then `submit`, `status`, `watch` and `verify` (see README.md).");
    Ok(())
}

async fn play(cast: &Cast, url: &str) -> anyhow::Result<()> {
    let mut ledger = client::connect(url).await?;

    step("zones, commitments and two monitoring missions (each co-signed by two signatories)");
    for json in GOVERNANCE {
        let json = json
            .replace(
                "@MISSION_ALPHA_KEY@",
                &ceasefire_core::key_text(public(&cast.alpha)),
            )
            .replace(
                "@MISSION_BRAVO_KEY@",
                &ceasefire_core::key_text(public(&cast.bravo)),
            );
        let event = fill(event_from_json(&json)?, "mediator")?;
        let receipt = submit(&mut ledger, &event, &[&cast.mediator, &cast.north]).await?;
        println!("entry {:>3}  {}", receipt.seq, describe(&event));
    }

    step("a day of observations from missions Alpha and Bravo");
    let day = yesterday();
    let mut alpha_receipts = Vec::new();
    for (mission, key, text) in [
        ("mission-alpha", &cast.alpha, ALPHA_DAY),
        ("mission-bravo", &cast.bravo, BRAVO_DAY),
    ] {
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let event = fill(event_from_json(&line.replace("@DAY@", &day))?, mission)?;
            let receipt = submit(&mut ledger, &event, &[key]).await?;
            println!("entry {:>3}  {mission}: {}", receipt.seq, describe(&event));
            if mission == "mission-alpha" {
                alpha_receipts.push((receipt, event));
            }
        }
    }
    println!("(Alpha and Bravo both saw explosions in sector 2: a corroborated violation.)");

    step("Party North disputes Alpha's report of howitzers in sector 3");
    let (howitzers, _) = alpha_receipts
        .iter()
        .find(|(_, event)| describe(event).contains("WITHDRAWAL_LINE"))
        .context("the scenario has no howitzer report")?;
    let dispute = header(
        "party-north",
        Body::Dispute(Dispute {
            target_seq: howitzers.seq,
            target_leaf_hash: howitzers.leaf_hash.clone(),
            reason: "The guns seen are decommissioned hulls awaiting removal".into(),
        }),
    );
    let receipt = submit(&mut ledger, &dispute, &[&cast.north]).await?;
    println!(
        "entry {:>3}  dispute of entry {}",
        receipt.seq, howitzers.seq
    );

    step("Alpha retracts its report of one explosion in sector 4 (misidentified)");
    let (explosion, _) = alpha_receipts
        .iter()
        .find(|(_, event)| describe(event).contains("outgoing artillery"))
        .context("the scenario has no sector-4 explosion report")?;
    let retraction = header(
        "mission-alpha",
        Body::Amendment(ceasefire_grpc::proto::Amendment {
            target_seq: explosion.seq,
            target_leaf_hash: explosion.leaf_hash.clone(),
            kind: AmendmentKind::Retract as i32,
            correction: None,
            reason: "Identified on review as a demolition at a quarry".into(),
        }),
    );
    let receipt = submit(&mut ledger, &retraction, &[&cast.alpha]).await?;
    println!(
        "entry {:>3}  retraction of entry {}",
        receipt.seq, explosion.seq
    );

    step("compliance: zones by commitments (* = disputed)");
    let statuses = ceasefire_grpc::proto::compliance_client::ComplianceClient::new(
        client::channel(url, &Default::default()).await?,
    )
    .list_statuses(ListStatusesRequest {
        filter: None,
        ..Default::default()
    })
    .await
    .map_err(|status| anyhow::anyhow!("{}", status.message()))?
    .into_inner();
    print!(
        "{}",
        super::status::render_table(&statuses.pairs, std::io::stdout().is_terminal())
    );

    step("an independent audit of the whole ledger");
    let mut source = ServerSource::connect(url, &Default::default()).await?;
    let report = tokio::task::spawn_blocking(move || audit(&mut source, AuditOptions::default()))
        .await?
        .map_err(|error| anyhow::anyhow!("audit FAILED: {error}"))?;
    println!(
        "audit OK: {} entries, {} observations, every signature and rule checked, \
         root and checkpoint verified, projection digest {} matches",
        report.entries,
        report.observations,
        &report.projection_digest[..16]
    );
    Ok(())
}

/// A header for `body` by `author`, for this agreement, now, with a fresh nonce.
fn header(author: &str, body: Body) -> Event {
    client::new_event(AGREEMENT, author, body)
}

/// Gives a scenario file's event (a body only) its header.
fn fill(event: Event, author: &str) -> anyhow::Result<Event> {
    let body = event.body.context("a scenario event has no body")?;
    Ok(header(author, body))
}

async fn submit(
    ledger: &mut LedgerClient<tonic::transport::Channel>,
    event: &Event,
    keys: &[&SigningKey],
) -> anyhow::Result<Receipt> {
    ledger
        .submit(client::sign(event, keys))
        .await
        .map(|response| response.into_inner())
        .map_err(|status| anyhow::anyhow!("refused: {}", ceasefire_grpc::errors::describe(&status)))
}

/// One line about an event, for the demo's narration.
fn describe(event: &Event) -> String {
    match &event.body {
        Some(Body::DefineZone(zone)) => format!("zone {} ({})", zone.zone_id, zone.name),
        Some(Body::DefineCommitment(commitment)) => format!(
            "commitment {} over {}",
            commitment.commitment_id,
            commitment.zone_ids.join(", ")
        ),
        Some(Body::RegisterParty(register)) => format!(
            "registers {}",
            register
                .party
                .as_ref()
                .map_or("?", |party| party.party_id.as_str())
        ),
        Some(Body::Observation(observation)) => format!(
            "{} {} ({}): {}",
            ceasefire_grpc::proto::Finding::try_from(observation.finding).map_or("?", |finding| {
                finding.as_str_name().trim_start_matches("FINDING_")
            }),
            ceasefire_grpc::proto::Category::try_from(observation.category)
                .map_or("?", |category| category
                    .as_str_name()
                    .trim_start_matches("CATEGORY_")),
            observation.commitment_id,
            observation.narrative
        ),
        _ => String::new(),
    }
}

/// Yesterday's date (UTC) as YYYY-MM-DD: the scenario's day, so that all of
/// it falls in the commitments' 48-hour windows.
fn yesterday() -> String {
    let mut now = now_timestamp();
    now.seconds -= 24 * 3600;
    // RFC 3339: the date is the first ten characters.
    now.to_string()[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yesterday_is_an_iso_date() {
        let date = yesterday();
        assert_eq!(date.len(), 10);
        assert_eq!(&date[4..5], "-");
        assert_eq!(&date[7..8], "-");
    }
}
