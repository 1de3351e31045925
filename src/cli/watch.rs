//! `watch`: follow compliance changes; after a dropped connection, resume
//! from the change after the last one printed, so none is missed or repeated;
//! when the server has no subscription to spare, retry later the same way.

use std::time::Duration;

use anyhow::bail;

use crate::event_json::message_to_json;
use ceasefire_grpc::client::status_name;
use ceasefire_grpc::proto::{ListStatusesRequest, StatusChange, StatusFilter, SubscribeRequest};

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct WatchArgs {
    /// Only these zones (repeatable).
    #[arg(long = "zone")]
    zones: Vec<String>,
    /// Only these commitments (repeatable).
    #[arg(long = "commitment")]
    commitments: Vec<String>,
    /// Start with the changes caused by this entry (default: only new changes).
    #[arg(long)]
    from_seq: Option<u64>,
    /// Stop after this many changes.
    #[arg(long)]
    count: Option<u64>,
    /// Print each change as proto3 JSON (one per line).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: super::ConnectArgs,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let filter = StatusFilter {
        zone_ids: args.zones.clone(),
        commitment_ids: args.commitments.clone(),
        statuses: Vec::new(),
    };
    let mut cursor = match args.from_seq {
        Some(seq) => (seq, 0),
        None => (live_position(&args.connection).await?, 0),
    };
    let mut printed = 0u64;
    let mut backoff = Duration::from_millis(200);
    loop {
        let stream = match args.connection.compliance().await {
            Ok(mut client) => client
                .subscribe(SubscribeRequest {
                    filter: Some(filter.clone()),
                    from_seq: cursor.0,
                    from_index: cursor.1,
                })
                .await
                .map(|response| response.into_inner()),
            Err(error) => {
                eprintln!("watch: {error:#}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            // The server's subscriptions are all taken: a passing condition.
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                eprintln!("watch: {}; retrying in {backoff:?}", status.message());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(status) => bail!("{}", ceasefire_grpc::errors::describe(&status)),
        };
        backoff = Duration::from_millis(200);
        loop {
            match stream.message().await {
                Ok(Some(change)) => {
                    print_change(&change, args.json)?;
                    cursor = (change.seq, change.index + 1);
                    printed += 1;
                    if args.count.is_some_and(|count| printed >= count) {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    eprintln!(
                        "watch: {}; resuming from entry {} change {}",
                        status.message(),
                        cursor.0,
                        cursor.1
                    );
                    break;
                }
                Err(status) => bail!("{}", ceasefire_grpc::errors::describe(&status)),
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// The seq the next entry will get: where "only new changes" starts.
async fn live_position(connection: &super::ConnectArgs) -> anyhow::Result<u64> {
    let mut client = connection.compliance().await?;
    let response = client
        // Only the version is needed: the smallest page.
        .list_statuses(ListStatusesRequest {
            filter: None,
            page_size: 1,
            ..Default::default()
        })
        .await
        .map_err(|status| anyhow::anyhow!("{}", ceasefire_grpc::errors::describe(&status)))?
        .into_inner();
    Ok(response.version.map_or(0, |version| version.as_of_seq + 1))
}

fn print_change(change: &StatusChange, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", message_to_json("ceasefire.v1.StatusChange", change)?);
        return Ok(());
    }
    let disputed = |flag: bool| if flag { " (disputed)" } else { "" };
    println!(
        "entry {:>6}  {} / {}: {}{} -> {}{}",
        change.seq,
        change.zone_id,
        change.commitment_id,
        status_name(change.old_status),
        disputed(change.old_disputed),
        status_name(change.new_status),
        disputed(change.new_disputed),
    );
    Ok(())
}
