//! `verify`: the auditor. Exit 0 when everything holds, 1 at the first
//! failure (naming the entry and the reason; a checkpoint without its
//! witnesses' quorum is one, and so is a damaged store, named by file,
//! entry or record slot), 2 when it could not start or finish, saying why
//! (no such directory, no ledger, no permission, a source out of reach; a
//! policy file, operator key or pin path that does not do is refused
//! before anything else). With `--json`, every exit prints one JSON
//! object; a closed stdout (`verify … | head`) ends the output quietly.
//! `--receipt FILE` checks one receipt file offline instead
//! (`super::receipt`), with the same exit codes.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::Exit;
use ceasefire_audit::sources::{ServerSource, TilesSource};
use ceasefire_audit::{audit, AuditError, AuditFailure, AuditOptions, AuditReport, LogSource};
use ceasefire_core::witness_policy::WitnessPolicy;
use ceasefire_node::data_dir_source::OpenError;
use ceasefire_node::DataDirSource;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["server", "data_dir", "tiles", "receipt"])))]
pub struct VerifyArgs {
    /// Verify the log a server serves (also samples its proofs).
    #[arg(long)]
    server: Option<String>,
    /// Verify a data directory (read from a private snapshot; the server may be running).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Verify a C2SP tlog-tiles export.
    #[arg(long)]
    tiles: Option<PathBuf>,
    /// Verify one receipt file (C2SP tlog-proof, from `submit --receipts`)
    /// offline, with --genesis or --operator-key (and --witness-policy to
    /// demand its witnesses' cosignatures).
    #[arg(long, value_name = "FILE", conflicts_with = "pin")]
    receipt: Option<PathBuf>,
    /// With --receipt: the log's signed genesis file (its origin and operator key).
    #[arg(long, value_name = "FILE", requires = "receipt")]
    genesis: Option<PathBuf>,
    /// Keep the verified checkpoint in FILE; on later runs, demand that the
    /// log is consistent with it (a fork or a shrink is reported with both).
    #[arg(long)]
    pin: Option<PathBuf>,
    /// Verify checkpoints with this operator key (base64) instead of the
    /// genesis's; with --receipt, also a vkey (name+id+key).
    #[arg(long)]
    operator_key: Option<String>,
    /// Demand the quorum of this witness policy (Sigsum/C2SP policy text:
    /// `witness`, `group` and `quorum` lines) instead of the log's own, even
    /// on a log that set none.
    #[arg(long, value_name = "FILE")]
    witness_policy: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tls: ceasefire_grpc::client::ClientTls,
}

/// How a run ended without a report: a verdict on the log (exit 1) or
/// none, because verification could not start or finish (exit 2). Either
/// is one line on stderr and, under `--json`, a JSON object on stdout.
enum Ending {
    Failed {
        message: String,
        json: serde_json::Value,
    },
    CouldNotRun(String),
    /// `--receipt`'s ending, its JSON already printed: the error carries
    /// the exit code.
    Reported(anyhow::Error),
}

fn could_not_run(error: impl std::fmt::Display) -> Ending {
    Ending::CouldNotRun(error.to_string())
}

/// Reads and checks a policy file: one line naming the file and what is
/// wrong, before any source is opened.
pub(super) fn read_witness_policy(path: &Path) -> Result<WitnessPolicy, String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "--witness-policy {}: cannot read it: {error}",
            path.display()
        )
    })?;
    WitnessPolicy::parse_text(&text)
        .map_err(|error| format!("--witness-policy {}: {error}", path.display()))
}

/// Checks, before the audit, that the pin can be read and later written:
/// an existing pin must be a readable file, a new one must go into an
/// existing directory. (The audit reads it again, and writes it only if
/// the log passed.)
fn check_pin_path(path: &Path) -> Result<(), Ending> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => Err(could_not_run(format!(
            "--pin {shown}: is a directory, not a file"
        ))),
        Ok(_) => std::fs::read_to_string(path)
            .map(drop)
            .map_err(|error| could_not_run(format!("--pin {shown}: cannot read it: {error}"))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let parent = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            if parent.is_dir() {
                Ok(())
            } else {
                Err(could_not_run(format!(
                    "--pin {shown}: its directory {} does not exist",
                    parent.display()
                )))
            }
        }
        Err(error) => Err(could_not_run(format!(
            "--pin {shown}: cannot read it: {error}"
        ))),
    }
}

/// Writes `text` and a newline to stdout. A reader that went away (`verify
/// … | head`) is no error: the verdict stands in the exit code.
fn print_stdout(text: &str) -> Result<(), Ending> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(could_not_run(
            format!("cannot write the report to stdout: {error}"),
        )),
        _ => Ok(()),
    }
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let json = args.json;
    let (code, message, value) = match verify(args).await {
        Ok(()) => return Ok(()),
        Err(Ending::Failed { message, json }) => {
            (1, format!("verification FAILED: {message}"), json)
        }
        Err(Ending::Reported(error)) => return Err(error),
        Err(Ending::CouldNotRun(reason)) => (
            2,
            format!("could not verify: {reason}"),
            serde_json::json!({"ok": false, "exit_code": 2, "error": reason}),
        ),
    };
    if json {
        // Already failing: a report that cannot be written changes nothing.
        let _ = print_stdout(&value.to_string());
    }
    Err(Exit { code, message }.into())
}

/// A verdict on the log: exit 1, naming where it fails.
fn failed(failure: &AuditFailure) -> Ending {
    let mut json = serde_json::json!({"ok": false, "exit_code": 1, "failure": failure.to_string()});
    // Who did and did not cosign, for scripts that chase witnesses.
    if let AuditFailure::NotWitnessed(not_witnessed) = failure {
        json["witnesses_cosigned"] = serde_json::json!(not_witnessed.cosigned);
        json["witnesses_missing"] = serde_json::json!(not_witnessed.missing);
    }
    Ending::Failed {
        message: failure.to_string(),
        json,
    }
}

async fn verify(args: VerifyArgs) -> Result<(), Ending> {
    let witness_policy = args
        .witness_policy
        .as_deref()
        .map(read_witness_policy)
        .transpose()
        .map_err(could_not_run)?;
    if let Some(receipt) = &args.receipt {
        let key = super::receipt::LogKey::from_flags(
            args.genesis.as_deref(),
            args.operator_key.as_deref(),
        );
        return super::receipt::verify_file(receipt, key, witness_policy.as_ref(), args.json)
            .map_err(Ending::Reported);
    }
    if let Some(pin) = &args.pin {
        check_pin_path(pin)?;
    }
    let operator_key = match &args.operator_key {
        Some(text) => {
            let bytes: [u8; 32] = BASE64
                .decode(text.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| could_not_run("--operator-key is not 32 bytes of base64"))?;
            Some(
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| could_not_run("--operator-key is not an Ed25519 key"))?,
            )
        }
        None => None,
    };
    let mut source: Box<dyn LogSource + Send> = if let Some(url) = &args.server {
        Box::new(
            ServerSource::connect(url, &args.tls)
                .await
                .map_err(|error| could_not_run(format!("{error:#}")))?,
        )
    } else if let Some(dir) = &args.data_dir {
        Box::new(DataDirSource::open(dir).map_err(|error| match error {
            OpenError::CannotStart(reason) => could_not_run(reason),
            // Damage found on opening is a verdict like damage found later.
            OpenError::Damaged(reason) => failed(&AuditFailure::Damaged(reason)),
        })?)
    } else if let Some(dir) = &args.tiles {
        Box::new(TilesSource::open(dir).map_err(|error| could_not_run(format!("{error:#}")))?)
    } else {
        return Err(could_not_run("give --server, --data-dir or --tiles"));
    };
    let show_progress = std::io::stderr().is_terminal() && !args.json;
    let pin = args.pin.clone();
    let result = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let progress: Option<Box<dyn FnMut(u64, u64)>> = show_progress.then(|| {
            Box::new(move |done: u64, total: u64| {
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-6);
                let eta = (total - done) as f64 / rate.max(1.0);
                eprint!(
                    "\rverifying: {done}/{total} entries, {rate:.0} entries/s, ETA {eta:.0} s   "
                );
            }) as Box<dyn FnMut(u64, u64)>
        });
        let report = audit(
            source.as_mut(),
            AuditOptions {
                operator_key,
                pin,
                progress,
                witness_policy,
            },
        );
        if show_progress {
            eprintln!();
        }
        report
    })
    .await
    .map_err(|error| could_not_run(format!("the audit task failed: {error}")))?;
    match result {
        Ok(report) => print_stdout(&render_report(&report, args.json)?),
        Err(AuditError::Failed(failure)) => Err(failed(&failure)),
        Err(AuditError::CouldNotRun(error)) => Err(could_not_run(format!("{error:#}"))),
    }
}

/// The report as text for people, or as one JSON object.
fn render_report(report: &AuditReport, json: bool) -> Result<String, Ending> {
    use std::fmt::Write as _;
    if json {
        let mut value = serde_json::to_value(report).map_err(could_not_run)?;
        value["ok"] = true.into();
        value["exit_code"] = 0.into();
        return Ok(value.to_string());
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = render_text(&mut out, report);
    return Ok(out.trim_end().to_string());

    fn render_text(out: &mut String, report: &AuditReport) -> std::fmt::Result {
        writeln!(out, "verification OK: {}", report.source)?;
        writeln!(
            out,
            "  agreement      {} ({})",
            report.agreement_id, report.origin
        )?;
        writeln!(
            out,
            "  entries        {} ({} observations), {} parties, {} zones, {} commitments",
            report.entries, report.observations, report.parties, report.zones, report.commitments
        )?;
        writeln!(out, "  root           {}", report.root_hash)?;
        writeln!(
            out,
            "  projection     {} as of entry {}{}",
            report.projection_digest,
            report.projection_as_of_seq.unwrap_or_default(),
            if report.projection_checked {
                " (matches the served digest)"
            } else {
                ""
            }
        )?;
        if report.proofs_checked > 0 {
            writeln!(
                out,
                "  proofs         {} sampled and verified",
                report.proofs_checked
            )?;
        }
        writeln!(out, "  {}", witnessed_line(report))?;
        if let Some(from) = &report.witness_policy_from {
            writeln!(out, "  witness policy from {from}")?;
        }
        writeln!(out, "  pin            {}", report.pin)?;
        writeln!(
            out,
            "  time           {:.2} s ({:.0} entries/s)",
            report.seconds, report.entries_per_second
        )?;
        writeln!(
            out,
            "  checkpoint\n    {}",
            report.checkpoint.trim_end().replace('\n', "\n    ")
        )?;
        Ok(())
    }
}

/// `witnessed by north.example/w, south.example/w (2 of 3 needed: quorum
/// signatories); missing: mediator.example/w`, or why no witness was needed.
pub(super) fn witnessed_line(report: &AuditReport) -> String {
    let Some(quorum) = &report.witness_quorum else {
        return "witnessed: none (the log has no witness policy)".into();
    };
    let by: Vec<&str> = report
        .witnessed_by
        .iter()
        .map(|witness| witness.name.as_str())
        .collect();
    let mut line = format!("witnessed by {} ({quorum})", by.join(", "));
    if !report.witnesses_missing.is_empty() {
        line.push_str(&format!(
            "; missing: {}",
            report.witnesses_missing.join(", ")
        ));
    }
    line
}
