//! One `add-checkpoint` request, from its body to the answer, around the
//! pure verdict of `ceasefire_core::witness`.
//!
//! For each log there is one async mutex over its latest tree head. A
//! request verifies the log's signature first (no state needed, so in
//! parallel with anything), then takes the log's mutex and holds it across
//! check → durable record → cosign: two requests for one log are serialized,
//! so neither can advance on a state the other has changed (the rollback
//! race of the spec), and a cosignature is made only once its tree head is
//! on disk.
//!
//! Fail-stop: if a record cannot be written, the log's in-memory head is no
//! longer known to match the disk (a rename may or may not have reached it),
//! so the log answers 503 until the witness is restarted and reads the disk
//! again. Other logs go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ceasefire_core::cosignature::Cosigner;
use ceasefire_core::witness::{
    check_consistency, parse_request, verify_checkpoint, AddCheckpointRequest, Refusal, TreeHead,
    TrustedLog,
};
use tokio::sync::Mutex;

use crate::store::{Recorded, Store};

/// What the witness answers to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: the cosignature lines.
    Cosigned(String),
    /// 400, 403, 404, 409 or 422, as the refusal says.
    Refused(Refusal),
    /// 503: the log's state could not be recorded; the witness must be
    /// restarted before it cosigns for that log again.
    Unavailable(String),
}

/// The latest tree head of one log, or the reason it is no longer known.
#[derive(Debug)]
enum LogState {
    /// `None`: nothing cosigned for this log yet.
    Recorded(Option<TreeHead>),
    /// A record failed; the message says which and why.
    Failed(String),
}

/// One witnessed log: its keys, and its state behind the lock every request
/// for it takes from its check to its record. Shared (`Arc`) so that the
/// guard can move into the thread that writes the record (see `answer`).
#[derive(Debug)]
struct Log {
    trusted: TrustedLog,
    state: Arc<Mutex<LogState>>,
}

/// The witness: its key, its logs, its store.
#[derive(Debug)]
pub struct Witness {
    /// Signs the cosignatures, only after the record.
    cosigner: Cosigner,
    /// By origin; fixed at start.
    logs: HashMap<String, Log>,
    /// Where records go; shared with the blocking threads that write.
    store: Arc<Store>,
}

impl Witness {
    /// The store, weakly: what a shutdown waits on to know the data
    /// directory is free (a record being written holds it too).
    pub(crate) fn store_handle(&self) -> std::sync::Weak<Store> {
        Arc::downgrade(&self.store)
    }

    /// A witness over an opened store and what it recorded.
    pub fn new(
        cosigner: Cosigner,
        logs: Vec<TrustedLog>,
        store: Store,
        recorded: &HashMap<String, Recorded>,
    ) -> Self {
        let logs = logs
            .into_iter()
            .map(|trusted| {
                let latest = recorded.get(trusted.origin()).map(|record| record.head);
                let origin = trusted.origin().to_owned();
                let log = Log {
                    trusted,
                    state: Arc::new(Mutex::new(LogState::Recorded(latest))),
                };
                (origin, log)
            })
            .collect();
        Self {
            cosigner,
            logs,
            store: Arc::new(store),
        }
    }

    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// The latest tree head cosigned for `origin` (None if never, or if the
    /// log is unknown or failed).
    pub async fn latest(&self, origin: &str) -> Option<TreeHead> {
        match &*self.logs.get(origin)?.state.lock().await {
            LogState::Recorded(latest) => *latest,
            LogState::Failed(_) => None,
        }
    }

    /// Answers one `add-checkpoint` request body, and logs a refusal: at
    /// warn with the checkpoint when a log key signed what was refused
    /// (possible evidence of a fork or a bad proof), else at info.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Answer {
        let request = match parse_request(body) {
            Ok(request) => request,
            Err(error) => {
                let refusal = Refusal::Malformed(error);
                tracing::info!(status = refusal.status(), %refusal, "refused a request");
                return Answer::Refused(refusal);
            }
        };
        let answer = self.answer(&request).await;
        if let Answer::Refused(refusal) = &answer {
            let status = refusal.status();
            if refusal.is_signed_evidence() {
                // The note is logged whole: signed by the log, it is, with
                // the witness's record, the evidence.
                tracing::warn!(
                    status,
                    %refusal,
                    note = request.note,
                    "refused a checkpoint the log signed"
                );
            } else {
                tracing::info!(status, %refusal, "refused a request");
            }
        }
        answer
    }

    async fn answer(&self, request: &AddCheckpointRequest<'_>) -> Answer {
        let log = self.logs.get(&request.claimed.origin);
        let (checkpoint, text) = match verify_checkpoint(request, log.map(|log| &log.trusted)) {
            Ok(verified) => verified,
            Err(refusal) => return Answer::Refused(refusal),
        };
        // verify_checkpoint refused an unknown origin; this is the same test.
        let Some(log) = log else {
            return Answer::Refused(Refusal::UnknownOrigin {
                origin: request.claimed.origin.clone(),
            });
        };
        let mut state = Arc::clone(&log.state).lock_owned().await;
        let latest = match &*state {
            LogState::Recorded(latest) => *latest,
            LogState::Failed(reason) => return Answer::Unavailable(reason.clone()),
        };
        let advance = match check_consistency(request, checkpoint, text, latest) {
            Ok(advance) => advance,
            Err(refusal) => return Answer::Refused(refusal),
        };
        // Signed while the lock is held (the time it states is then never
        // later than another request's for a larger tree), returned only
        // once the record is durable.
        let line = advance.cosign(&self.cosigner, unix_seconds());
        if advance.record {
            let store = Arc::clone(&self.store);
            let origin = log.trusted.origin().to_owned();
            let note = request.note.to_owned();
            let head = advance.head;
            // The guard goes with the write: if this request is dropped
            // mid-write (its client gave up), the write still finishes and
            // sets the state before any other request for this log can
            // check against it, so no request ever sees a state the disk
            // is about to leave behind.
            let written = tokio::task::spawn_blocking(move || {
                let failure = match store.record(&origin, &note) {
                    Ok(()) => {
                        *state = LogState::Recorded(Some(head));
                        return Ok(());
                    }
                    Err(error) => error.to_string(),
                };
                let reason = format!(
                    "cannot record the checkpoint of {origin:?}: {failure}; this log is \
                     refused until the witness is restarted"
                );
                tracing::error!(origin = %origin, error = %failure, "record failed");
                *state = LogState::Failed(reason.clone());
                Err(reason)
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Answer::Unavailable(reason),
                Err(join) => {
                    // The thread panicked holding the guard, which unwinding
                    // released with the state unchanged: fail-stop the log.
                    let reason = format!(
                        "cannot record the checkpoint of {:?}: the writing thread failed: \
                         {join}; this log is refused until the witness is restarted",
                        log.trusted.origin()
                    );
                    *log.state.lock().await = LogState::Failed(reason.clone());
                    return Answer::Unavailable(reason);
                }
            }
        } else {
            drop(state);
        }
        Answer::Cosigned(line)
    }
}

/// Now, in Unix seconds; a clock before 1970 counts as 0 (a cosignature's
/// time is the witness's statement, and it never panics over it).
fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
