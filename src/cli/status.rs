//! `status`: the compliance table, zones by commitments.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;

use crate::event_json::message_to_json;
use ceasefire_grpc::client::status_name;
use ceasefire_grpc::proto::{ComplianceStatus, ListStatusesRequest, PairStatus, StatusFilter};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Only these zones (repeatable).
    #[arg(long = "zone")]
    zones: Vec<String>,
    /// Only these commitments (repeatable).
    #[arg(long = "commitment")]
    commitments: Vec<String>,
    /// Print the answer as proto3 JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: super::ConnectArgs,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let mut client = args.connection.compliance().await?;
    let response = client
        .list_statuses(ListStatusesRequest {
            filter: Some(StatusFilter {
                zone_ids: args.zones,
                commitment_ids: args.commitments,
                statuses: Vec::new(),
            }),
            ..Default::default()
        })
        .await
        .map_err(|status| anyhow::anyhow!("{}", ceasefire_grpc::errors::describe(&status)))?
        .into_inner();
    if args.json {
        println!(
            "{}",
            message_to_json("ceasefire.v1.ListStatusesResponse", &response)?
        );
        return Ok(());
    }
    let colour = std::io::stdout().is_terminal();
    print!("{}", render_table(&response.pairs, colour));
    if let Some(version) = response.version {
        println!(
            "as of entry {}, projection digest {}",
            version.as_of_seq,
            hex::encode(version.digest)
        );
    }
    Ok(())
}

/// Zones as rows, commitments as columns; a cell is the pair's status, with
/// `*` when disputed and `-` where the commitment does not bind the zone.
pub fn render_table(pairs: &[PairStatus], colour: bool) -> String {
    let zones: BTreeSet<&str> = pairs.iter().map(|pair| pair.zone_id.as_str()).collect();
    let commitments: BTreeSet<&str> = pairs
        .iter()
        .map(|pair| pair.commitment_id.as_str())
        .collect();
    let cells: BTreeMap<(&str, &str), &PairStatus> = pairs
        .iter()
        .map(|pair| ((pair.zone_id.as_str(), pair.commitment_id.as_str()), pair))
        .collect();
    let zone_width = zones
        .iter()
        .map(|zone| zone.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let width = |commitment: &str| commitment.len().max("VIOLATION_CONFIRMED*".len());
    let mut out = format!("{:zone_width$}", "zone");
    for commitment in &commitments {
        out += &format!("  {:width$}", commitment, width = width(commitment));
    }
    out.push('\n');
    for zone in &zones {
        out += &format!("{zone:zone_width$}");
        for commitment in &commitments {
            let (text, status) = match cells.get(&(*zone, *commitment)) {
                Some(pair) => (
                    format!(
                        "{}{}",
                        status_name(pair.status),
                        if pair.disputed { "*" } else { "" }
                    ),
                    pair.status,
                ),
                None => ("-".to_string(), ComplianceStatus::Unspecified as i32),
            };
            let padded = format!("{text:width$}", width = width(commitment));
            out += "  ";
            out += &if colour {
                paint(&padded, status)
            } else {
                padded
            };
        }
        out.push('\n');
    }
    out
}

fn paint(text: &str, status: i32) -> String {
    let code = match ComplianceStatus::try_from(status) {
        Ok(ComplianceStatus::ViolationConfirmed) => "1;31",
        Ok(ComplianceStatus::ViolationReported) => "33",
        Ok(ComplianceStatus::Obstructed) => "35",
        Ok(ComplianceStatus::Compliant) => "32",
        Ok(ComplianceStatus::Unobserved) => "2",
        _ => return text.to_string(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}
