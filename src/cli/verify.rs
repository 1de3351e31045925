//! `verify`: the auditor. Exit 0 when everything holds, 1 at the first
//! failure (naming the entry and the reason; a checkpoint without its
//! witnesses' quorum is one), 2 when it could not run (a policy file that
//! does not read is refused before anything else). `--receipt FILE` checks
//! one receipt file offline instead (`super::receipt`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::anyhow;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::Exit;
use ceasefire_audit::sources::{ServerSource, TilesSource};
use ceasefire_audit::{audit, AuditError, AuditFailure, AuditOptions, AuditReport, LogSource};
use ceasefire_core::witness_policy::WitnessPolicy;
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

fn could_not_run(error: impl std::fmt::Display) -> anyhow::Error {
    Exit {
        code: 2,
        message: format!("could not verify: {error}"),
    }
    .into()
}

/// Reads and checks a policy file: one line naming the file and what is
/// wrong, before any source is opened.
pub(super) fn read_witness_policy(path: &std::path::Path) -> anyhow::Result<WitnessPolicy> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        could_not_run(format!(
            "--witness-policy {}: cannot read it: {error}",
            path.display()
        ))
    })?;
    WitnessPolicy::parse_text(&text)
        .map_err(|error| could_not_run(format!("--witness-policy {}: {error}", path.display())))
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let witness_policy = args
        .witness_policy
        .as_deref()
        .map(read_witness_policy)
        .transpose()?;
    if let Some(receipt) = &args.receipt {
        let key = super::receipt::LogKey::from_flags(
            args.genesis.as_deref(),
            args.operator_key.as_deref(),
        );
        return super::receipt::verify_file(receipt, key, witness_policy.as_ref(), args.json);
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
                .map_err(could_not_run)?,
        )
    } else if let Some(dir) = &args.data_dir {
        Box::new(DataDirSource::open(dir).map_err(could_not_run)?)
    } else if let Some(dir) = &args.tiles {
        Box::new(TilesSource::open(dir).map_err(could_not_run)?)
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
    .map_err(|error| could_not_run(anyhow!("the audit task failed: {error}")))?;
    match result {
        Ok(report) => {
            print_report(&report, args.json)?;
            Ok(())
        }
        Err(AuditError::Failed(failure)) => {
            if args.json {
                let mut value = serde_json::json!({"ok": false, "failure": failure.to_string()});
                // Who did and did not cosign, for scripts that chase witnesses.
                if let AuditFailure::NotWitnessed(not_witnessed) = &failure {
                    value["witnesses_cosigned"] = serde_json::json!(not_witnessed.cosigned);
                    value["witnesses_missing"] = serde_json::json!(not_witnessed.missing);
                }
                println!("{value}");
            }
            Err(Exit {
                code: 1,
                message: format!("verification FAILED: {failure}"),
            }
            .into())
        }
        Err(AuditError::CouldNotRun(error)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": format!("{error:#}")})
                );
            }
            Err(could_not_run(format!("{error:#}")))
        }
    }
}

fn print_report(report: &AuditReport, json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::to_value(report)?;
        value["ok"] = true.into();
        println!("{value}");
        return Ok(());
    }
    println!("verification OK: {}", report.source);
    println!(
        "  agreement      {} ({})",
        report.agreement_id, report.origin
    );
    println!(
        "  entries        {} ({} observations), {} parties, {} zones, {} commitments",
        report.entries, report.observations, report.parties, report.zones, report.commitments
    );
    println!("  root           {}", report.root_hash);
    println!(
        "  projection     {} as of entry {}{}",
        report.projection_digest,
        report.projection_as_of_seq.unwrap_or_default(),
        if report.projection_checked {
            " (matches the served digest)"
        } else {
            ""
        }
    );
    if report.proofs_checked > 0 {
        println!(
            "  proofs         {} sampled and verified",
            report.proofs_checked
        );
    }
    println!("  {}", witnessed_line(report));
    if let Some(from) = &report.witness_policy_from {
        println!("  witness policy from {from}");
    }
    println!("  pin            {}", report.pin);
    println!(
        "  time           {:.2} s ({:.0} entries/s)",
        report.seconds, report.entries_per_second
    );
    println!(
        "  checkpoint\n    {}",
        report.checkpoint.trim_end().replace('\n', "\n    ")
    );
    Ok(())
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
