//! `status`: the compliance table, zones by commitments.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;

use crate::event_json::message_to_json;
use ceasefire_grpc::client::status_name;
use ceasefire_grpc::proto::compliance_client::ComplianceClient;
use ceasefire_grpc::proto::{
    ComplianceStatus, ListStatusesRequest, ListStatusesResponse, PairStatus, ProjectionVersion,
    StatusFilter,
};
use tonic::transport::Channel;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Only these zones (repeatable).
    #[arg(long = "zone")]
    zones: Vec<String>,
    /// Only these commitments (repeatable).
    #[arg(long = "commitment")]
    commitments: Vec<String>,
    /// Print the answer as proto3 JSON instead of a table (one
    /// ListStatusesResponse holding every page's pairs).
    #[arg(long)]
    json: bool,
    /// Pairs per ListStatuses call; every page is read whatever the size
    /// (0: the server's default, 100; the server takes at most 1000).
    #[arg(long, default_value_t = 1000)]
    page_size: u32,
    #[command(flatten)]
    connection: super::ConnectArgs,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let mut client = args.connection.compliance().await?;
    let filter = StatusFilter {
        zone_ids: args.zones,
        commitment_ids: args.commitments,
        statuses: Vec::new(),
    };
    let listing = list_all(&mut client, filter, args.page_size).await?;
    let grew = listing.grew();
    if args.json {
        if let Some((first, last)) = grew {
            eprintln!(
                "status: the log grew from entry {first} to {last} while {} pages were read; \
                 each pair is as of its page's entry",
                listing.pages
            );
        }
        let response = ListStatusesResponse {
            pairs: listing.pairs,
            version: listing.last,
            next_page_token: String::new(),
        };
        println!(
            "{}",
            message_to_json("ceasefire.v1.ListStatusesResponse", &response)?
        );
        return Ok(());
    }
    let colour = std::io::stdout().is_terminal();
    print!("{}", render_table(&listing.pairs, colour));
    if let Some(version) = listing.last {
        match grew {
            None => println!(
                "as of entry {}, projection digest {}",
                version.as_of_seq,
                hex::encode(version.digest)
            ),
            Some((first, last)) => println!(
                "as of entries {first} to {last} (the log grew while {} pages were read), \
                 projection digest at entry {last} {}",
                listing.pages,
                hex::encode(version.digest)
            ),
        }
    }
    Ok(())
}

/// Every pair a ListStatuses filter matches, read page by page.
pub struct Listing {
    pub pairs: Vec<PairStatus>,
    /// The version the first page was read at.
    pub first: Option<ProjectionVersion>,
    /// The version the last page was read at.
    pub last: Option<ProjectionVersion>,
    pub pages: usize,
}

impl Listing {
    /// (first, last) as_of_seq when the pages were read at different
    /// versions.
    pub fn grew(&self) -> Option<(u64, u64)> {
        let seq = |version: &Option<ProjectionVersion>| version.as_ref().map(|v| v.as_of_seq);
        match (seq(&self.first), seq(&self.last)) {
            (Some(first), Some(last)) if first != last => Some((first, last)),
            _ => None,
        }
    }
}

/// Walks ListStatuses to its last page (`page_size` 0: the server's
/// default). Pages may be read at different versions (see the proto).
pub async fn list_all(
    client: &mut ComplianceClient<Channel>,
    filter: StatusFilter,
    page_size: u32,
) -> anyhow::Result<Listing> {
    let mut listing = Listing {
        pairs: Vec::new(),
        first: None,
        last: None,
        pages: 0,
    };
    let mut page_token = String::new();
    loop {
        let page = client
            .list_statuses(ListStatusesRequest {
                filter: Some(filter.clone()),
                page_size,
                page_token: page_token.clone(),
            })
            .await
            .map_err(|status| anyhow::anyhow!("{}", ceasefire_grpc::errors::describe(&status)))?
            .into_inner();
        listing.pages += 1;
        listing.pairs.extend(page.pairs);
        if listing.first.is_none() {
            listing.first = page.version.clone();
        }
        listing.last = page.version;
        if page.next_page_token.is_empty() {
            return Ok(listing);
        }
        anyhow::ensure!(
            page.next_page_token != page_token,
            "the server answered the same page token again"
        );
        page_token = page.next_page_token;
    }
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
        // No pair, or a status newer than this client.
        Ok(ComplianceStatus::Unspecified) | Err(_) => return text.to_string(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}
