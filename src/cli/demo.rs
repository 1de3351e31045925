//! `demo`: the example scenario of examples/scenario/, end to end, in one
//! command: a real node on a temporary (or given) data directory, three
//! signatories founding the ledger, five zones and four commitments, two
//! monitoring missions reporting a day, a corroborated violation, a dispute,
//! a retraction and an obstruction; then the compliance table and the
//! auditor's verdict.
//!
//! Each signatory runs a witness (the real C2SP tlog-witness service of
//! `ceasefire_witness`, in this process, on a loopback port and a temporary
//! directory), and the signatories set a witness policy of two of the three:
//! the demo waits for a checkpoint they cosigned that covers the last entry,
//! and the audit reports its cosigners.
//!
//! The scenario's events are the files under examples/scenario/ (compiled
//! in), so the demo and the CLI walkthrough in the README are one scenario.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::event_json::event_from_json;
use ceasefire_audit::sources::ServerSource;
use ceasefire_audit::{audit, AuditOptions};
use ceasefire_core::checkpoint::NoteVerifier;
use ceasefire_core::cosignature::Cosigner;
use ceasefire_core::witness::TrustedLog;
use ceasefire_grpc::client::{self, now_timestamp};
use ceasefire_grpc::proto::{
    event::Body, ledger_client::LedgerClient, Event, Receipt, Role, SignedEvent,
};
use ceasefire_node::node::{self, NodeConfig};
use ceasefire_testkit::scenario::{bodies, public_key, random_key, Member, Scenario};
use ceasefire_witness::config::WitnessConfig;
use ceasefire_witness::RunningWitness;

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
    include_str!("../../examples/scenario/governance/12-witness-policy.json"),
];
/// Each signatory's witness: its party, its name in the policy, and the
/// placeholder prefix the policy file uses for its key and URL.
const WITNESSES: [(&str, &str, &str); 3] = [
    (
        "party-north",
        "party-north.example/witness",
        "@PARTY_NORTH_WITNESS",
    ),
    (
        "party-south",
        "party-south.example/witness",
        "@PARTY_SOUTH_WITNESS",
    ),
    ("mediator", "mediator.example/witness", "@MEDIATOR_WITNESS"),
];
/// How long the demo waits for the witnesses' quorum; they answer in
/// milliseconds on loopback.
const WITNESSED_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const ALPHA_DAY: &str = include_str!("../../examples/scenario/observations/mission-alpha.ndjson");
const BRAVO_DAY: &str = include_str!("../../examples/scenario/observations/mission-bravo.ndjson");

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the ledger in this directory (must be empty or new) instead of a temporary one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The people of the scenario, each with a fresh key: three signatories,
/// two of whom govern (the mediator and Party North sign the governance),
/// two monitoring missions, and the operator.
fn cast() -> Scenario {
    let signatory = |party_id: &str, name: &str| {
        Member::new(party_id, Role::Signatory, random_key()).named(name)
    };
    Scenario::new(AGREEMENT, ORIGIN)
        .with_title("Agreement on the cessation of hostilities, eastern sector")
        .with_threshold(2)
        .with_member(signatory("mediator", "Mediator"))
        .with_member(signatory("party-north", "Party North"))
        .with_member(signatory("party-south", "Party South"))
        .with_monitor("mission-alpha", random_key())
        .with_monitor("mission-bravo", random_key())
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
    let cast = cast();

    step("three signatories found the ledger (two of three govern)");
    let mut config = NodeConfig::new(
        data_dir.clone(),
        ([127, 0, 0, 1], 0).into(),
        cast.operator().clone(),
    );
    config.bootstrap = vec![cast.genesis()];
    let node = node::start(config).await?;
    println!("ledger {} serving on {}", ORIGIN, node.url());

    step("each signatory runs a witness of the ledger (C2SP tlog-witness)");
    let witness_dirs = tempfile::tempdir()?;
    let log = NoteVerifier::new(ORIGIN, &cast.operator_key())
        .map_err(|error| anyhow::anyhow!("the origin cannot name a key: {error}"))?;
    let mut witnesses = Vec::new();
    for (party, name, _) in WITNESSES {
        let cosigner = Cosigner::new(name, random_key())
            .map_err(|error| anyhow::anyhow!("witness name {name:?}: {error}"))?;
        let config = WitnessConfig::new(
            cosigner,
            ([127, 0, 0, 1], 0).into(),
            witness_dirs.path().join(party),
            vec![TrustedLog::from_key(log.clone())],
        );
        let witness = ceasefire_witness::start(config).await?;
        println!("{party:<12} runs {name} on {}", witness.url());
        witnesses.push(witness);
    }

    let result = play(&cast, &node.url(), &log, &witnesses).await;
    node.shutdown().await?;
    for witness in witnesses {
        witness.shutdown().await?;
    }
    result?;
    println!("\nThe ledger was in {}.", data_dir.display());
    println!("Next: `serve --dev`, then `submit`, `status`, `watch` and `verify` (see README.md).");
    Ok(())
}

async fn play(
    cast: &Scenario,
    url: &str,
    log: &NoteVerifier,
    witnesses: &[RunningWitness],
) -> anyhow::Result<()> {
    let mut ledger = client::connect(url).await?;

    step("zones, commitments, two monitoring missions and the witness policy (each co-signed by two signatories)");
    for json in GOVERNANCE {
        let mut json = json
            .replace(
                "@MISSION_ALPHA_KEY@",
                &ceasefire_core::key_text(public_key(cast.key("mission-alpha"))),
            )
            .replace(
                "@MISSION_BRAVO_KEY@",
                &ceasefire_core::key_text(public_key(cast.key("mission-bravo"))),
            );
        for ((_, _, placeholder), witness) in WITNESSES.iter().zip(witnesses) {
            json = json
                .replace(
                    &format!("{placeholder}_KEY@"),
                    &ceasefire_core::key_text(witness.verifier().public_key().as_bytes()),
                )
                .replace(&format!("{placeholder}_URL@"), witness.url());
        }
        let body = body_of(event_from_json(&json)?)?;
        let receipt = submit(&mut ledger, cast.govern(body.clone())).await?;
        println!("entry {:>3}  {}", receipt.seq, describe(&body));
    }

    step("a day of observations from missions Alpha and Bravo");
    let day = yesterday();
    let mut alpha_receipts = Vec::new();
    for (mission, text) in [("mission-alpha", ALPHA_DAY), ("mission-bravo", BRAVO_DAY)] {
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let body = body_of(event_from_json(&line.replace("@DAY@", &day))?)?;
            let receipt = submit(&mut ledger, cast.signed(mission, body.clone())).await?;
            println!("entry {:>3}  {mission}: {}", receipt.seq, describe(&body));
            if mission == "mission-alpha" {
                alpha_receipts.push((receipt, body));
            }
        }
    }
    println!("(Alpha and Bravo both saw explosions in sector 2: a corroborated violation.)");

    step("Party North disputes Alpha's report of howitzers in sector 3");
    let (howitzers, _) = alpha_receipts
        .iter()
        .find(|(_, body)| describe(body).contains("WITHDRAWAL_LINE"))
        .context("the scenario has no howitzer report")?;
    let dispute = bodies::dispute(
        howitzers.seq,
        &howitzers.leaf_hash,
        "The guns seen are decommissioned hulls awaiting removal",
    );
    let receipt = submit(&mut ledger, cast.signed("party-north", dispute)).await?;
    println!(
        "entry {:>3}  dispute of entry {}",
        receipt.seq, howitzers.seq
    );

    step("Alpha retracts its report of one explosion in sector 4 (misidentified)");
    let (explosion, _) = alpha_receipts
        .iter()
        .find(|(_, body)| describe(body).contains("outgoing artillery"))
        .context("the scenario has no sector-4 explosion report")?;
    let retraction = bodies::retraction(
        explosion.seq,
        &explosion.leaf_hash,
        "Identified on review as a demolition at a quarry",
    );
    let receipt = submit(&mut ledger, cast.signed("mission-alpha", retraction)).await?;
    println!(
        "entry {:>3}  retraction of entry {}",
        receipt.seq, explosion.seq
    );

    step("the witnesses cosign: a checkpoint covering every entry, two of three needed");
    let witnessed = super::witnessed::wait_for_witnessed(
        &mut ledger,
        log,
        std::slice::from_ref(&receipt),
        WITNESSED_WAIT,
    )
    .await?;
    println!(
        "checkpoint of {} entries witnessed by {} ({})",
        witnessed.body.tree_size,
        witnessed.cosigners().join(", "),
        witnessed.quorum()
    );

    step("compliance: zones by commitments (* = disputed)");
    let mut compliance = ceasefire_grpc::proto::compliance_client::ComplianceClient::new(
        client::channel(url, &Default::default()).await?,
    );
    let statuses = super::status::list_all(&mut compliance, Default::default(), 0).await?;
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
    println!("audit: {}", super::verify::witnessed_line(&report));
    Ok(())
}

/// A scenario file's event: a body only (its header is made when it is
/// signed).
fn body_of(event: Event) -> anyhow::Result<Body> {
    event.body.context("a scenario event has no body")
}

async fn submit(
    ledger: &mut LedgerClient<tonic::transport::Channel>,
    signed: SignedEvent,
) -> anyhow::Result<Receipt> {
    ledger
        .submit(signed)
        .await
        .map(|response| response.into_inner())
        .map_err(|status| anyhow::anyhow!("refused: {}", ceasefire_grpc::errors::describe(&status)))
}

/// One line about an event, for the demo's narration.
fn describe(body: &Body) -> String {
    match body {
        Body::DefineZone(zone) => format!("zone {} ({})", zone.zone_id, zone.name),
        Body::DefineCommitment(commitment) => format!(
            "commitment {} over {}",
            commitment.commitment_id,
            commitment.zone_ids.join(", ")
        ),
        Body::RegisterParty(register) => format!(
            "registers {}",
            register
                .party
                .as_ref()
                .map_or("?", |party| party.party_id.as_str())
        ),
        Body::Observation(observation) => format!(
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
        Body::SetWitnessPolicy(policy) => format!(
            "witness policy: quorum {} over {}",
            policy.quorum,
            policy
                .witnesses
                .iter()
                .map(|witness| witness.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
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
