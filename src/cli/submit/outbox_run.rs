//! `submit --outbox DIR [FILES]`: every event is signed once and recorded
//! durably in the outbox ([`crate::outbox`]) before anything is sent; then
//! every pending event of the outbox, oldest first, is sent with retries
//! and exponential backoff for up to `--retry-for` seconds. Each event ends
//! the run accepted (its checked receipt recorded), refused (the ledger's
//! reason recorded) or still pending (the ledger could not be reached):
//! a later run, with or without new files, resends the pending ones, as the
//! same bytes, so none counts twice. A refusal does not stop the others:
//! a mission's reports stand alone.
//!
//! The outbox remembers its ledger (agreement, origin, operator key) from
//! the first genesis it reads: events that leave out `agreementId` can then
//! be signed with the link down, and a server of another ledger is refused.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::time::timeout;

use super::prepare::{needs_agreement_id, prepare, read_inputs, sign_bare, InputEvent, Prepared};
use super::window_warning;
use super::{
    check_receipt, fetch_identity, load_keys, receipt_json, send, LedgerIdentity, Sent, SubmitArgs,
};
use crate::keyfile::KeyFile;
use crate::outbox::{bare_report_key, signed_report_key, Entry, Outbox, State};
use crate::signed_file::SignedEventFile;
use ceasefire_grpc::proto::ledger_client::LedgerClient;

/// The first pause after a failed attempt; each next one doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest pause: a link that comes back is used within seconds.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long connecting (and reading the genesis) may take before the
/// attempt counts as failed: a blackholed link never answers at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one Submit may take before it counts as unanswered (the event
/// stays pending; a resend is harmless).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: &SubmitArgs, dir: &Path) -> anyhow::Result<()> {
    let keys = load_keys(&args.keys)?;
    let inputs = read_inputs(&args.files)?;
    let outbox = Outbox::open(dir)?;
    if let Some(receipts) = &args.receipts {
        super::super::receipt::prepare_receipts_dir(receipts)?;
    }
    let mut link = Link {
        connection: &args.connection,
        receipts: args.receipts.as_deref(),
        outbox: &outbox,
        client: None,
        commitments: None,
        identity: None,
        deadline: Instant::now() + Duration::from_secs(args.retry_for),
        backoff: FIRST_BACKOFF,
    };
    let agreement_id = match inputs.iter().find(|input| needs_agreement_id(input)) {
        Some(input) => Some(link.agreement_id(input).await?),
        None => None,
    };
    // Everything is signed and on disk before the first send.
    let mut named = Vec::new();
    for input in &inputs {
        named.push(enqueue(&outbox, input, &keys, agreement_id.as_deref())?);
    }

    let mut unreachable = None;
    for mut entry in outbox.entries()? {
        if entry.state != State::Pending {
            continue;
        }
        match link.deliver(&entry).await? {
            Delivery::Accepted { seq, receipt } => {
                let mut record = entry.record.clone();
                record.seq = Some(seq);
                record.receipt = Some(receipt);
                outbox.settle(&mut entry, State::Accepted, record)?;
            }
            Delivery::Refused(reason) => {
                let mut record = entry.record.clone();
                record.refusal = Some(reason);
                outbox.settle(&mut entry, State::Refused, record)?;
            }
            Delivery::Unreachable(error) => {
                unreachable = Some(error);
                break;
            }
        }
        named.push(entry.name);
    }

    let entries = outbox.entries()?;
    let mut refused = 0;
    let reported = |entry: &&Entry| entry.state == State::Pending || named.contains(&entry.name);
    for entry in entries.iter().filter(reported) {
        println!("{}", entry_line(entry));
        refused += usize::from(entry.state == State::Refused);
    }
    let pending = entries
        .iter()
        .filter(|entry| entry.state == State::Pending)
        .count();
    if pending > 0 {
        let server = &args.connection.server;
        let error = unreachable.unwrap_or_default();
        // The connection error names the server too: once is enough.
        let cause = error
            .strip_prefix(&format!("cannot connect to {server}: "))
            .unwrap_or(&error);
        bail!(
            "{} pending in {}: cannot reach {} ({}); run `submit --outbox {}` again to resend",
            count(pending),
            dir.display(),
            server,
            cause,
            dir.display()
        );
    }
    if refused > 0 {
        bail!("{} refused (reasons above)", count(refused));
    }
    if named.is_empty() {
        eprintln!("nothing pending in {}", dir.display());
    }
    Ok(())
}

/// `submit --outbox DIR status`: every entry, oldest first, and the counts.
pub fn status(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("there is no outbox at {}", dir.display());
    }
    let entries = Outbox::open(dir)?.entries()?;
    for entry in &entries {
        println!("{}", entry_line(entry));
    }
    let in_state = |state| entries.iter().filter(|entry| entry.state == state).count();
    println!(
        "{} pending, {} accepted, {} refused",
        in_state(State::Pending),
        in_state(State::Accepted),
        in_state(State::Refused)
    );
    Ok(())
}

/// "1 event", "3 events".
fn count(events: usize) -> String {
    if events == 1 {
        "1 event".into()
    } else {
        format!("{events} events")
    }
}

/// One line per entry: its state, name and answer, then where it came from.
fn entry_line(entry: &Entry) -> String {
    let record = &entry.record;
    match entry.state {
        State::Accepted => format!(
            "accepted {} seq {} ({})",
            entry.name,
            record.seq.map_or("?".into(), |seq| seq.to_string()),
            record.source
        ),
        State::Refused => format!(
            "refused {} {} ({})",
            entry.name,
            record.refusal.as_deref().unwrap_or("?"),
            record.source
        ),
        State::Pending => format!("pending {} ({})", entry.name, record.source),
    }
}

/// Signs `input` into the outbox unless it is already there (the same
/// signed file, or a bare event with the same author and nonce: the same
/// report). An entry the ledger refused, named again, is pending again.
/// Its name.
fn enqueue(
    outbox: &Outbox,
    input: &InputEvent,
    keys: &[KeyFile],
    agreement_id: Option<&str>,
) -> anyhow::Result<String> {
    let prepared = prepare(input, keys, agreement_id)?;
    let key = match &prepared {
        Prepared::Signed(file) => signed_report_key(&file.signed),
        Prepared::Bare { event, .. } => bare_report_key(&event.author, &event.nonce),
    };
    if let Some(mut existing) = outbox.find(&key)? {
        if existing.state == State::Refused {
            let mut record = existing.record.clone();
            record.refusal = None;
            outbox.settle(&mut existing, State::Pending, record)?;
        }
        return Ok(existing.name);
    }
    let (file, nonce_derived) = match prepared {
        Prepared::Signed(file) => (file, false),
        Prepared::Bare {
            event,
            nonce_derived,
        } => (sign_bare(event, keys), nonce_derived),
    };
    Ok(outbox
        .add(key, input.source.clone(), &file, nonce_derived)?
        .name)
}

/// How the ledger answered one outbox entry.
enum Delivery {
    Accepted {
        seq: u64,
        receipt: serde_json::Value,
    },
    Refused(String),
    /// No answer before the deadline: the last error.
    Unreachable(String),
}

/// The connection of an outbox run: reconnects after a failure, pausing
/// with exponential backoff, until the run's deadline.
struct Link<'a> {
    connection: &'a super::super::ConnectArgs,
    outbox: &'a Outbox,
    /// `--receipts DIR`: where each accepted event's tlog-proof goes.
    receipts: Option<&'a Path>,
    /// Dropped after a failed attempt, so the next one reconnects.
    client: Option<LedgerClient<tonic::transport::Channel>>,
    /// The commitments' terms, for the warning on an accepted observation
    /// that will not count; made on the first connection and kept (its
    /// answers are cached per commitment).
    commitments: Option<window_warning::Commitments>,
    /// The ledger, read from its genesis on the first connection and held
    /// to the outbox's record of it.
    identity: Option<LedgerIdentity>,
    deadline: Instant,
    backoff: Duration,
}

impl Link<'_> {
    /// The agreement to sign `input` for (it leaves `agreementId` out): the
    /// outbox's ledger, or else the genesis, read with retries.
    async fn agreement_id(&mut self, input: &InputEvent) -> anyhow::Result<String> {
        if let Some(ledger) = self.outbox.ledger()? {
            return Ok(ledger.agreement_id);
        }
        loop {
            match self.connect().await? {
                Ok(()) => {
                    let identity = self
                        .identity
                        .as_ref()
                        .expect("a connection reads the genesis");
                    return Ok(identity.agreement_id.clone());
                }
                Err(error) => {
                    if !self.pause().await {
                        bail!(
                            "{} leaves out agreementId, and the outbox {} has not met its ledger \
                             yet: cannot reach {} ({error}); run once while the ledger is \
                             reachable, or give agreementId in the event; nothing was added",
                            input.label,
                            self.outbox.dir().display(),
                            self.connection.server
                        );
                    }
                }
            }
        }
    }

    /// Sends `entry`'s signed event until the ledger answers or the
    /// deadline passes. A receipt that does not check out is an error: the
    /// entry stays pending.
    async fn deliver(&mut self, entry: &Entry) -> anyhow::Result<Delivery> {
        let file = SignedEventFile::from_json(entry.record.signed_event.clone())
            .with_context(|| format!("outbox entry {}", entry.name))?;
        let derived_nonce_event = entry.record.nonce_derived.then_some(&file.event);
        loop {
            let error = match self.connect().await? {
                Err(error) => error,
                Ok(()) => {
                    let client = self.client.as_mut().expect("connected");
                    let sent = timeout(
                        CALL_TIMEOUT,
                        send(client, file.signed.clone(), derived_nonce_event),
                    )
                    .await;
                    match sent {
                        Err(_) => format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
                        Ok(Sent::NoAnswer(error)) => error,
                        Ok(Sent::Refused(status)) => {
                            return Ok(Delivery::Refused(ceasefire_grpc::errors::describe(&status)))
                        }
                        Ok(Sent::Accepted(receipt)) => {
                            let identity = self.identity.as_ref().expect("connected");
                            check_receipt(&receipt, identity).with_context(|| {
                                format!(
                                    "the receipt for {} does not check out (it stays pending)",
                                    entry.name
                                )
                            })?;
                            // Written before the entry is settled: a file
                            // that cannot be written leaves it pending, and
                            // the next run's resend (same seq) writes it.
                            if let Some(dir) = self.receipts {
                                super::super::receipt::write_receipt(dir, &receipt).with_context(
                                    || {
                                        format!(
                                            "{} was accepted as seq {} (it stays pending)",
                                            entry.name, receipt.seq
                                        )
                                    },
                                )?;
                            }
                            self.backoff = FIRST_BACKOFF;
                            self.warn_if_not_counted(entry, &file.event, &receipt).await;
                            return Ok(Delivery::Accepted {
                                seq: receipt.seq,
                                receipt: receipt_json(&receipt)?,
                            });
                        }
                    }
                }
            };
            self.client = None;
            if !self.pause().await {
                return Ok(Delivery::Unreachable(error));
            }
        }
    }

    /// One attempt to be connected to a ledger whose genesis is known:
    /// `Ok(Err(why))` when it failed and may be retried; `Err` for what no
    /// retry mends (a server of another ledger than the outbox's).
    async fn connect(&mut self) -> anyhow::Result<Result<(), String>> {
        if self.client.is_some() {
            return Ok(Ok(()));
        }
        let connection = self.connection;
        let need_identity = self.identity.is_none();
        let attempt = async move {
            let channel = connection
                .channel()
                .await
                .map_err(|error| format!("{error:#}"))?;
            let mut client = ceasefire_grpc::client::ledger_client(channel.clone());
            let identity = if need_identity {
                Some(
                    fetch_identity(&mut client)
                        .await
                        .map_err(|error| format!("{error:#}"))?,
                )
            } else {
                None
            };
            Ok::<_, String>((client, identity, channel))
        };
        let (client, identity, channel) = match timeout(CONNECT_TIMEOUT, attempt).await {
            Err(_) => {
                return Ok(Err(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(error)) => return Ok(Err(error)),
            Ok(Ok(connected)) => connected,
        };
        if let Some(identity) = identity {
            self.hold_to_outbox(&identity)?;
            self.identity = Some(identity);
        }
        self.client = Some(client);
        self.commitments.get_or_insert_with(|| {
            window_warning::Commitments::new(
                ceasefire_grpc::proto::compliance_client::ComplianceClient::new(channel),
            )
        });
        Ok(Ok(()))
    }

    /// Warns on stderr when `event`, just accepted, is an observation that
    /// will not count in its commitment's status (see [`window_warning`]).
    async fn warn_if_not_counted(
        &mut self,
        entry: &Entry,
        event: &ceasefire_grpc::proto::Event,
        receipt: &ceasefire_grpc::proto::Receipt,
    ) {
        let (Some(commitments), Ok(leaf)) = (
            self.commitments.as_mut(),
            ceasefire_core::leaf::Leaf::decode(&receipt.leaf),
        ) else {
            return;
        };
        if let Some(warning) = commitments.warning(event, leaf.received_at_micros).await {
            eprintln!(
                "warning: {} (seq {}) was accepted, but {warning}",
                entry.name, receipt.seq
            );
        }
    }

    /// Records the ledger in an outbox that has none; refuses a server of
    /// another ledger than the one recorded.
    fn hold_to_outbox(&self, identity: &LedgerIdentity) -> anyhow::Result<()> {
        let served = identity.record();
        match self.outbox.ledger()? {
            None => self.outbox.save_ledger(&served),
            Some(known) if known == served => Ok(()),
            Some(known) => Err(anyhow!(
                "the outbox {} belongs to agreement {:?} (log {}), but {} serves agreement {:?} \
                 (log {}): give each ledger its own outbox",
                self.outbox.dir().display(),
                known.agreement_id,
                known.origin,
                self.connection.server,
                served.agreement_id,
                served.origin
            )),
        }
    }

    /// Waits before the next attempt (the backoff, doubling, cut to the
    /// deadline); false when the deadline has passed.
    async fn pause(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.backoff.min(self.deadline - now)).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        true
    }
}
