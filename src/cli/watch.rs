//! `watch`: follow compliance changes; after a dropped connection, resume
//! from the change after the last one printed, so none is missed or repeated;
//! when the server has no subscription to spare, retry later the same way.
//!
//! With `--cursor-file FILE` the position also survives a restart (a durable
//! consumer): the next run resumes at the change after the last one FILE
//! records. The guarantee is at-least-once, with the repeats bounded: a
//! change is printed (and stdout flushed) before FILE is moved past it, so a
//! kill between the two prints those changes again on the next run, and
//! none is ever skipped. FILE is written whenever the stream has nothing
//! more ready, and at least every [`CURSOR_SYNC_EVERY`] changes of a burst,
//! so at most that many are repeated; and on SIGINT or SIGTERM before the
//! watch exits, so a clean stop repeats nothing. Each change carries its place
//! `(seq, index)` (in `--json`) for a consumer that must drop repeats.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};
use futures::FutureExt as _;

use crate::event_json::message_to_json;
use crate::outbox::LedgerRecord;
use crate::watch_cursor::WatchCursor;
use ceasefire_grpc::client::status_name;
use ceasefire_grpc::proto::{ListStatusesRequest, StatusChange, StatusFilter, SubscribeRequest};

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Most changes printed before the cursor file is written, while a burst
/// (a catch-up, or a commitment over many zones) keeps the stream ready:
/// one write and fsync per 64 changes bounds the repeats after a kill
/// without an fsync per line.
const CURSOR_SYNC_EVERY: u32 = 64;

#[derive(clap::Args)]
pub struct WatchArgs {
    /// Only these zones (repeatable).
    #[arg(long = "zone")]
    zones: Vec<String>,
    /// Only these commitments (repeatable).
    #[arg(long = "commitment")]
    commitments: Vec<String>,
    /// Start with the changes caused by this entry (default: only new
    /// changes). With --cursor-file, only where FILE does not exist yet.
    #[arg(long)]
    from_seq: Option<u64>,
    /// Keep the position in FILE and resume from it after a restart: the
    /// first run creates FILE, later runs continue after the last change
    /// it records (at-least-once: a kill can repeat the last few).
    #[arg(long, value_name = "FILE")]
    cursor_file: Option<PathBuf>,
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
    let mut position = Position::open(&args).await?;
    // SIGINT or SIGTERM stops the watch at an await, where every change
    // printed is already in `position`: the cursor is written and nothing
    // is repeated by the next run.
    let stop = stop_signals()?;
    let stopped = {
        let follow = std::pin::pin!(follow(&args, &mut position));
        let stop = std::pin::pin!(stop);
        match futures::future::select(follow, stop).await {
            futures::future::Either::Left((result, _)) => Some(result),
            futures::future::Either::Right(((), _)) => None,
        }
    };
    match stopped {
        Some(result) => result,
        None => position.sync(),
    }
}

/// SIGINT and SIGTERM, caught from now on (before the first change can be
/// printed; a handler installed at a later poll would let an early signal
/// kill the process with the cursor behind), as a future that ends at the
/// first of them.
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let cannot = |error| anyhow!("cannot catch SIGINT and SIGTERM: {error}");
        let mut interrupt = signal(SignalKind::interrupt()).map_err(cannot)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(cannot)?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Prints the changes from `position` on, reconnecting as needed, until
/// `--count` changes or an error.
async fn follow(args: &WatchArgs, position: &mut Position) -> anyhow::Result<()> {
    let filter = StatusFilter {
        zone_ids: args.zones.clone(),
        commitment_ids: args.commitments.clone(),
        statuses: Vec::new(),
    };
    let mut printed = 0u64;
    let mut backoff = Duration::from_millis(200);
    loop {
        let stream = match args.connection.compliance().await {
            Ok(mut client) => client
                .subscribe(SubscribeRequest {
                    filter: Some(filter.clone()),
                    from_seq: position.next.0,
                    from_index: position.next.1,
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
        // The server took the position: a new cursor file is created now.
        position.sync()?;
        backoff = Duration::from_millis(200);
        loop {
            // What is ready is printed at once; before waiting for more,
            // the position printed so far is made durable.
            let next = match stream.message().now_or_never() {
                Some(next) => next,
                None => {
                    position.sync()?;
                    stream.message().await
                }
            };
            match next {
                Ok(Some(change)) => {
                    print_change(&change, args.json)?;
                    position.printed(&change)?;
                    printed += 1;
                    if args.count.is_some_and(|count| printed >= count) {
                        return position.sync();
                    }
                }
                Ok(None) => break,
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    eprintln!(
                        "watch: {}; resuming from entry {} change {}",
                        status.message(),
                        position.next.0,
                        position.next.1
                    );
                    break;
                }
                Err(status) => {
                    position.sync()?;
                    bail!("{}", ceasefire_grpc::errors::describe(&status));
                }
            }
        }
        position.sync()?;
        tokio::time::sleep(backoff).await;
    }
}

/// Where the watch is: the Subscribe cursor of the next change to print,
/// and, with `--cursor-file`, the file that keeps it.
struct Position {
    /// (seq, index) of the first change not yet printed.
    next: (u64, u32),
    /// The cursor file and the ledger it names, when there is one.
    file: Option<(PathBuf, LedgerRecord)>,
    /// The position the file holds (`None`: not written yet).
    synced: Option<(u64, u32)>,
    /// Changes printed since the file was last written.
    unsynced: u32,
}

impl Position {
    /// The start: the cursor file's position when it exists (refused if it
    /// is damaged or names another ledger), else --from-seq, else live.
    async fn open(args: &WatchArgs) -> anyhow::Result<Position> {
        let Some(path) = &args.cursor_file else {
            return Ok(Position {
                next: (start_seq(args).await?, 0),
                file: None,
                synced: None,
                unsynced: 0,
            });
        };
        // A damaged file is refused before anything else happens.
        let saved = WatchCursor::load(path)?;
        let mut ledger_client = args.connection.ledger().await?;
        let served = super::submit::fetch_identity(&mut ledger_client)
            .await?
            .record();
        let (next, synced) = match saved {
            Some(saved) if saved.ledger != served => {
                bail!(
                    "the cursor file {} belongs to {}, but {} serves {}: give each ledger its \
                     own cursor file ({} was left as it is)",
                    path.display(),
                    describe_ledger(&saved.ledger),
                    args.connection.server,
                    describe_ledger(&served),
                    path.display()
                )
            }
            Some(saved) => {
                let next = (saved.next_seq, saved.next_index);
                (next, Some(next))
            }
            None => ((start_seq(args).await?, 0), None),
        };
        Ok(Position {
            next,
            file: Some((path.clone(), served)),
            synced,
            unsynced: 0,
        })
    }

    /// `change` was printed: the next one is after it. The file is written
    /// when a burst has gone on for [`CURSOR_SYNC_EVERY`] changes.
    fn printed(&mut self, change: &StatusChange) -> anyhow::Result<()> {
        self.next = (change.seq, change.index + 1);
        self.unsynced += 1;
        if self.unsynced >= CURSOR_SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes the position durable in the cursor file, if it moved.
    fn sync(&mut self) -> anyhow::Result<()> {
        let Some((path, ledger)) = &self.file else {
            return Ok(());
        };
        if self.synced != Some(self.next) {
            save_cursor(path, ledger, self.next)?;
            self.synced = Some(self.next);
        }
        self.unsynced = 0;
        Ok(())
    }
}

fn save_cursor(path: &Path, ledger: &LedgerRecord, next: (u64, u32)) -> anyhow::Result<()> {
    WatchCursor::new(ledger.clone(), next.0, next.1)
        .save(path)
        .map_err(|error| anyhow!("cannot keep the watch position: {error:#}"))
}

fn describe_ledger(ledger: &LedgerRecord) -> String {
    format!(
        "agreement {:?} (log {}, operator key {})",
        ledger.agreement_id, ledger.origin, ledger.operator_public_key
    )
}

/// Where a watch without a saved position starts: --from-seq, else live.
async fn start_seq(args: &WatchArgs) -> anyhow::Result<u64> {
    match args.from_seq {
        Some(seq) => Ok(seq),
        None => live_position(&args.connection).await,
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

/// Prints one change and flushes it: it is out of the process before the
/// cursor may move past it.
fn print_change(change: &StatusChange, json: bool) -> anyhow::Result<()> {
    let line = if json {
        message_to_json("ceasefire.v1.StatusChange", change)?.to_string()
    } else {
        text_line(change)
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|error| anyhow!("cannot print the change of entry {}: {error}", change.seq))
}

fn text_line(change: &StatusChange) -> String {
    let disputed = |flag: bool| if flag { " (disputed)" } else { "" };
    format!(
        "entry {:>6}  {} / {}: {}{} -> {}{}",
        change.seq,
        change.zone_id,
        change.commitment_id,
        status_name(change.old_status),
        disputed(change.old_disputed),
        status_name(change.new_status),
        disputed(change.new_disputed),
    )
}
