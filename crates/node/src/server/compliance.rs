//! The `ceasefire.v1.Compliance` service: the read model, and streams of
//! its changes.
//!
//! Reads answer from the [`ProjectionView`] published after the latest
//! durable batch, so every answer is one consistent prefix of the log and
//! says which (`ProjectionVersion`). Streams read the change log from the
//! store at their own pace: a slow subscriber holds only its cursor and a
//! small buffer, never slows the sequencer, and catches up from disk.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use super::paging;
use super::{beyond_tree, read_store, refused, rejection_status, StreamLimit, MAX_SUBSCRIPTIONS};
use crate::metrics::Metrics;
use crate::sequencer::{ProjectionView, SequencerHandle};
use crate::storage::Store;
use ceasefire_core::projection::{severity, PairSummary, StatusChange as CoreChange};
use ceasefire_core::rejection::{ReasonCode, Rejection};
use ceasefire_core::rules::micros_timestamp as timestamp;
use ceasefire_grpc::proto::{
    compliance_server::Compliance, CategoryCount, CommitmentDefinition, CommitmentStatusResponse,
    ComplianceStatus, DefineCommitment, GetCommitmentRequest, GetCommitmentStatusRequest,
    GetHistoryRequest, GetHistoryResponse, GetPairStatusRequest, GetZoneStatusRequest,
    ListStatusesRequest, ListStatusesResponse, PairStatus, PairStatusResponse, ProjectionVersion,
    StatusChange, StatusCount, StatusFilter, SubscribeRequest, ZoneStatusResponse,
};

/// Changes a subscription buffers ahead of its client. When the client is
/// slower, the reading task waits; it holds no more than this.
const SUBSCRIPTION_BUFFER: usize = 256;
/// Changes read from the store per blocking read while catching up.
const CATCH_UP_CHUNK: usize = 512;

pub struct ComplianceService {
    /// The change log, for history and streams.
    store: Arc<Store>,
    /// The published read model, and its change notifications.
    sequencer: SequencerHandle,
    /// Turns true when the server is stopping: streams end with UNAVAILABLE
    /// (instead of holding graceful shutdown open forever).
    shutting_down: watch::Receiver<bool>,
    /// Counts open subscriptions.
    metrics: Arc<Metrics>,
    /// At most [`MAX_SUBSCRIPTIONS`] open at once.
    subscriptions: StreamLimit,
}

impl ComplianceService {
    pub fn new(
        store: Arc<Store>,
        sequencer: SequencerHandle,
        shutting_down: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> ComplianceService {
        ComplianceService {
            store,
            sequencer,
            shutting_down,
            metrics,
            subscriptions: StreamLimit::new(
                MAX_SUBSCRIPTIONS,
                "Subscribe",
                "subscriptions",
                "retry later, resuming from the last change received",
            ),
        }
    }

    fn view(&self) -> Result<Arc<ProjectionView>, Status> {
        let view = self.sequencer.projection();
        if view.head.as_of_seq.is_none() {
            return Err(refused(
                ReasonCode::LedgerNotStarted,
                "the ledger has no genesis yet",
            ));
        }
        Ok(view)
    }
}

fn version(view: &ProjectionView) -> Option<ProjectionVersion> {
    Some(ProjectionVersion {
        as_of_seq: view.head.as_of_seq.unwrap_or_default(),
        digest: view.head.digest.to_vec(),
        log_time: Some(timestamp(view.head.log_time_micros)),
    })
}

pub fn pair_status(zone_id: &str, commitment_id: &str, summary: &PairSummary) -> PairStatus {
    PairStatus {
        zone_id: zone_id.to_string(),
        commitment_id: commitment_id.to_string(),
        status: summary.status as i32,
        disputed: summary.disputed,
        observations: summary.observations,
        violations: summary.violations,
        counts_by_category: summary
            .counts_by_category
            .iter()
            .map(|&(category, count)| CategoryCount {
                category: category as i32,
                count,
            })
            .collect(),
        distinct_reporters: summary.distinct_reporters,
        distinct_violation_reporters: summary.distinct_violation_reporters,
        last_violation_at: summary.last_violation_at_micros.map(timestamp),
        last_observation_at: summary.last_observation_at_micros.map(timestamp),
        updated_seq: summary.updated_seq,
    }
}

pub fn change_message(change: &CoreChange) -> StatusChange {
    StatusChange {
        seq: change.seq,
        zone_id: change.zone_id.clone(),
        commitment_id: change.commitment_id.clone(),
        old_status: change.old_status as i32,
        new_status: change.new_status as i32,
        old_disputed: change.old_disputed,
        new_disputed: change.new_disputed,
        pair: Some(pair_status(
            &change.zone_id,
            &change.commitment_id,
            &change.pair,
        )),
        index: change.index,
    }
}

fn check_filter(filter: &StatusFilter) -> Result<(), Status> {
    if let Some((index, status)) = filter
        .statuses
        .iter()
        .enumerate()
        .find(|(_, status)| ComplianceStatus::try_from(**status).is_err())
    {
        return Err(rejection_status(Rejection::field(
            ReasonCode::FieldMalformed,
            format!("filter.statuses[{index}]"),
            format!("filter.statuses: unknown status {status}"),
        )));
    }
    Ok(())
}

/// A page_token this server did not issue, or issued for other request
/// fields (spec section 6, PAGE_TOKEN_INVALID).
fn invalid_page_token(message: String) -> Status {
    refused(ReasonCode::PageTokenInvalid, message)
}

type ChangeStream = Pin<Box<dyn Stream<Item = Result<StatusChange, Status>> + Send>>;

#[tonic::async_trait]
impl Compliance for ComplianceService {
    async fn get_pair_status(
        &self,
        request: Request<GetPairStatusRequest>,
    ) -> Result<Response<PairStatusResponse>, Status> {
        let request = request.into_inner();
        let view = self.view()?;
        let key = (request.zone_id.clone(), request.commitment_id.clone());
        let summary = view.pairs.get(&key).ok_or_else(|| {
            refused(
                ReasonCode::PairNotFound,
                format!(
                    "commitment {:?} does not bind a zone {:?} (or neither exists)",
                    request.commitment_id, request.zone_id
                ),
            )
        })?;
        Ok(Response::new(PairStatusResponse {
            pair: Some(pair_status(&key.0, &key.1, summary)),
            version: version(&view),
        }))
    }

    async fn get_zone_status(
        &self,
        request: Request<GetZoneStatusRequest>,
    ) -> Result<Response<ZoneStatusResponse>, Status> {
        let zone_id = request.into_inner().zone_id;
        let view = self.view()?;
        let pairs: Vec<PairStatus> = view
            .pairs
            .iter()
            .filter(|((zone, _), _)| *zone == zone_id)
            .map(|((zone, commitment), summary)| pair_status(zone, commitment, summary))
            .collect();
        if pairs.is_empty() {
            return Err(refused(
                ReasonCode::PairNotFound,
                format!("no commitment binds a zone {zone_id:?}"),
            ));
        }
        let status = view
            .pairs
            .iter()
            .filter(|((zone, _), _)| *zone == zone_id)
            .map(|(_, summary)| summary.status)
            .max_by_key(|status| severity(*status))
            .unwrap_or_default() as i32;
        Ok(Response::new(ZoneStatusResponse {
            zone_id,
            status,
            pairs,
            version: version(&view),
        }))
    }

    async fn get_commitment_status(
        &self,
        request: Request<GetCommitmentStatusRequest>,
    ) -> Result<Response<CommitmentStatusResponse>, Status> {
        let commitment_id = request.into_inner().commitment_id;
        let view = self.view()?;
        let pairs: Vec<PairStatus> = view
            .pairs
            .iter()
            .filter(|((_, commitment), _)| *commitment == commitment_id)
            .map(|((zone, commitment), summary)| pair_status(zone, commitment, summary))
            .collect();
        if pairs.is_empty() {
            return Err(refused(
                ReasonCode::PairNotFound,
                format!("no commitment {commitment_id:?}"),
            ));
        }
        let mut counts = std::collections::BTreeMap::<i32, u32>::new();
        for pair in &pairs {
            *counts.entry(pair.status).or_default() += 1;
        }
        Ok(Response::new(CommitmentStatusResponse {
            commitment_id,
            zones_by_status: counts
                .into_iter()
                .map(|(status, zones)| StatusCount { status, zones })
                .collect(),
            pairs,
            version: version(&view),
        }))
    }

    async fn get_commitment(
        &self,
        request: Request<GetCommitmentRequest>,
    ) -> Result<Response<CommitmentDefinition>, Status> {
        let commitment_id = request.into_inner().commitment_id;
        let view = self.view()?;
        let Some(commitment) = view.commitments.get(&commitment_id) else {
            return Err(refused(
                ReasonCode::PairNotFound,
                format!("no commitment {commitment_id:?}"),
            ));
        };
        Ok(Response::new(CommitmentDefinition {
            definition: Some(DefineCommitment {
                commitment_id,
                version: commitment.version,
                name: commitment.name.clone(),
                kind: commitment.kind as i32,
                zone_ids: commitment.zone_ids.clone(),
                window_seconds: commitment.window_seconds,
                corroboration_quorum: commitment.corroboration_quorum,
                effective_from: Some(timestamp(commitment.effective_from_micros)),
            }),
            version: version(&view),
        }))
    }

    async fn list_statuses(
        &self,
        request: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        let ListStatusesRequest {
            filter,
            page_size,
            page_token,
        } = request.into_inner();
        let filter = filter.unwrap_or_default();
        check_filter(&filter)?;
        let view = self.view()?;
        let after = paging::statuses_position(&page_token, &filter)
            .map_err(|error| invalid_page_token(error.to_string()))?;
        // From the token's position in the view's ordered pairs: a page
        // costs what it examines (at most SCAN_BUDGET pairs), not the
        // pairs before it.
        let page = paging::statuses_page(
            &view.pairs,
            &filter,
            after.as_ref(),
            paging::page_size(page_size),
            paging::SCAN_BUDGET,
        );
        Ok(Response::new(ListStatusesResponse {
            pairs: page
                .pairs
                .iter()
                .map(|((zone, commitment), summary)| pair_status(zone, commitment, summary))
                .collect(),
            version: version(&view),
            next_page_token: page
                .next
                .map(|last| paging::statuses_token(&filter, &last))
                .unwrap_or_default(),
        }))
    }

    async fn get_history(
        &self,
        request: Request<GetHistoryRequest>,
    ) -> Result<Response<GetHistoryResponse>, Status> {
        let GetHistoryRequest {
            zone_id,
            commitment_id,
            page_size,
            page_token,
        } = request.into_inner();
        let view = self.view()?;
        let key = (zone_id, commitment_id);
        let after = paging::history_position(&page_token, &key)
            .map_err(|error| invalid_page_token(error.to_string()))?;
        // A walk once started goes on even if a redefinition dropped the
        // pair since: its changes stay in the change log.
        if after.is_none() && !view.pairs.contains_key(&key) {
            return Err(refused(
                ReasonCode::PairNotFound,
                format!(
                    "commitment {:?} does not bind a zone {:?} (or neither exists)",
                    key.1, key.0
                ),
            ));
        }
        // A batch may have committed since the view: answer as of the view.
        let as_of = view.head.as_of_seq.unwrap_or_default();
        let limit = paging::page_size(page_size);
        let pair = key.clone();
        let (changes, more) = read_store(&self.store, move |store| {
            store.pair_history_page(&pair, after, as_of, limit)
        })
        .await?;
        let next_page_token = match changes.last() {
            Some(last) if more => paging::history_token(&key, (last.seq, last.index)),
            _ => String::new(),
        };
        Ok(Response::new(GetHistoryResponse {
            changes: changes.iter().map(change_message).collect(),
            version: version(&view),
            next_page_token,
        }))
    }

    type SubscribeStream = ChangeStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<ChangeStream>, Status> {
        let SubscribeRequest {
            filter,
            from_seq,
            from_index,
        } = request.into_inner();
        let filter = filter.unwrap_or_default();
        check_filter(&filter)?;
        let view = self.view()?;
        if from_seq > view.tree_size {
            return Err(beyond_tree(
                view.tree_size,
                format!(
                    "from_seq {from_seq} is beyond the log's {} entries",
                    view.tree_size
                ),
            ));
        }
        // Held by the response stream: released when the client leaves.
        let permit = self.subscriptions.open()?;
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let metrics = self.metrics.clone();
        metrics.subscribers.inc();
        let subscription = follow_changes(
            self.store.clone(),
            self.sequencer.watch_projection(),
            self.shutting_down.clone(),
            filter,
            (from_seq, from_index),
            sender,
        );
        tokio::spawn(async move {
            subscription.await;
            metrics.subscribers.dec();
        });
        Ok(Response::new(Box::pin(futures::StreamExt::map(
            until_shutdown(receiver, self.shutting_down.clone(), (from_seq, from_index)),
            move |change| {
                let _held = &permit;
                change
            },
        ))))
    }
}

/// `UNAVAILABLE` (`SERVER_UNAVAILABLE`) ending a subscription whose client
/// resumes at `cursor` (`from_seq`, `from_index`).
fn subscription_ended(message: impl Into<String>, cursor: (u64, u32)) -> Status {
    rejection_status(
        Rejection::new(ReasonCode::ServerUnavailable, message)
            .with("resume_seq", cursor.0)
            .with("resume_index", cursor.1),
    )
}

/// The response stream of a subscription: the changes its task sends, until
/// the server starts stopping; then one UNAVAILABLE and the end, at once,
/// even when changes are still buffered for a client that reads slowly. It
/// names where to resume: after the last change handed to the client, or
/// at `cursor`, where the client asked to start, before any.
fn until_shutdown(
    receiver: mpsc::Receiver<Result<StatusChange, Status>>,
    shutting_down: watch::Receiver<bool>,
    cursor: (u64, u32),
) -> impl Stream<Item = Result<StatusChange, Status>> + Send {
    futures::stream::unfold(
        Some((receiver, shutting_down, cursor)),
        |state| async move {
            let (mut receiver, mut shutting_down, mut cursor) = state?;
            tokio::select! {
                biased;
                () = stopping(&mut shutting_down) => Some((
                    Err(subscription_ended(
                        "the server is shutting down; resume after the last change received",
                        cursor,
                    )),
                    None,
                )),
                item = receiver.recv() => item.map(|item| {
                    if let Ok(change) = &item {
                        cursor = (change.seq, change.index + 1);
                    }
                    (item, Some((receiver, shutting_down, cursor)))
                }),
            }
        },
    )
}

/// Resolves once the server starts stopping.
pub(crate) async fn stopping(shutting_down: &mut watch::Receiver<bool>) {
    let _ = shutting_down.wait_for(|stopping| *stopping).await;
}

/// Feeds one subscriber: catch up from the store, then wait for the next
/// durable batch, forever, until the client leaves or the server stops.
async fn follow_changes(
    store: Arc<Store>,
    mut views: watch::Receiver<Arc<ProjectionView>>,
    mut shutting_down: watch::Receiver<bool>,
    filter: StatusFilter,
    mut cursor: (u64, u32),
    sender: mpsc::Sender<Result<StatusChange, Status>>,
) {
    let matcher = paging::Matcher::new(&filter);
    loop {
        // Mark the current batch seen first: any batch committed after this
        // point wakes `changed()` below, so nothing slips between the read
        // and the wait. A batch that changed no status (most do not) is no
        // reason to read the store.
        let last_change = views.borrow_and_update().last_change;
        let Some(through) = last_change.filter(|last| *last >= cursor) else {
            if wait_for_batch(&mut views, &mut shutting_down, &sender, cursor).await {
                continue;
            }
            return;
        };
        // Read up to the view's last change only: the next batch may already
        // be in sled, readable but not yet durable (its sync still running),
        // and must not reach anyone before its receipts do.
        let from = cursor;
        let read = read_store(&store, move |store| {
            store
                .changes_between(from, through)
                .take(CATCH_UP_CHUNK)
                .collect::<Result<Vec<_>, _>>()
        });
        let chunk = match read.await {
            Ok(chunk) => chunk,
            Err(status) => {
                let _ = sender.send(Err(status)).await;
                return;
            }
        };
        let caught_up = chunk.len() < CATCH_UP_CHUNK;
        for change in &chunk {
            cursor = (change.seq, change.index + 1);
            if matcher.matches(&change.zone_id, &change.commitment_id, change.new_status)
                && sender.send(Ok(change_message(change))).await.is_err()
            {
                return; // The client went away.
            }
        }
        if !caught_up || wait_for_batch(&mut views, &mut shutting_down, &sender, cursor).await {
            continue;
        }
        return;
    }
}

/// Waits for the next durable batch (`true`), or for the server stopping or
/// the client leaving (`false`, the stream told why).
async fn wait_for_batch(
    views: &mut watch::Receiver<Arc<ProjectionView>>,
    shutting_down: &mut watch::Receiver<bool>,
    sender: &mpsc::Sender<Result<StatusChange, Status>>,
    cursor: (u64, u32),
) -> bool {
    tokio::select! {
        changed = views.changed() => {
            if changed.is_ok() {
                return true;
            }
            let _ = sender
                .send(Err(subscription_ended(
                    "the ledger stopped; resume from the last change seen",
                    cursor,
                )))
                .await;
            false
        }
        () = stopping(shutting_down) => {
            let _ = sender
                .send(Err(subscription_ended(
                    format!(
                        "the server is shutting down; resume from seq {} index {}",
                        cursor.0, cursor.1
                    ),
                    cursor,
                )))
                .await;
            false
        }
        () = sender.closed() => false,
    }
}
