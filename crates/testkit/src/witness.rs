//! For witness tests: a C2SP log held in memory ([`TestLog`]), which any
//! origin and key can sign and which can fork, the binary's `witness
//! serve` as a child process ([`WitnessProcess`]), and a ledger's own
//! witnesses ([`LogWitness`], [`start_log_witnesses`], [`witness_policy`]):
//! N `witness serve` processes with keys from `witness keygen`, each with
//! its data directory and port kept so it can be killed and restarted, and
//! the SetWitnessPolicy that names them.
//!
//! A [`TestLog`]'s leaves are derived from a tag and their index, so two
//! logs with the same key that share a prefix and then use other tags are
//! the two branches of a fork: both signed by the log, consistent with each
//! other up to the fork point and with no consistency proof between them
//! after it. Checkpoints may carry extension lines; such notes are signed
//! here directly with Ed25519, as another C2SP log's software would, not
//! through the core's signer (which only signs ceasefire checkpoints).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ceasefire_core::checkpoint::{key_id, CheckpointBody, NoteVerifier};
use ceasefire_core::cosignature::CosignerVerifier;
use ceasefire_core::merkle::{self, consistency_proof, hash_leaf, Hash, MemorySource};
use ceasefire_core::witness::TreeHead;
use ceasefire_grpc::proto::{SetWitnessPolicy, Witness, WitnessGroup};
use ed25519_dalek::{Signer as _, SigningKey};

use crate::harness::{command, free_port, run_bounded, spawn_service, Killed};

/// A log in memory: its origin, its key, its leaves.
#[derive(Clone, Debug)]
pub struct TestLog {
    origin: String,
    key: SigningKey,
    /// Every leaf's tag: leaf `i` is `"{tag} {i}"`.
    tags: Vec<String>,
    tree: MemorySource,
}

impl TestLog {
    /// An empty log named `origin`, signed by `key`.
    pub fn new(origin: &str, key: SigningKey) -> TestLog {
        TestLog {
            origin: origin.to_owned(),
            key,
            tags: Vec::new(),
            tree: MemorySource::new(),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The log's checkpoint key, named after its origin.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier::new(&self.origin, &self.key.verifying_key())
            .expect("a test log's origin is a valid key name")
    }

    /// The log's vkey, as a witness is configured with it.
    pub fn vkey(&self) -> String {
        self.verifier().encoded_key()
    }

    /// Appends leaves tagged `tag` until the log has `size`.
    pub fn grow(&mut self, size: u64, tag: &str) {
        while self.size() < size {
            let index = self.size();
            self.tags.push(tag.to_owned());
            self.tree
                .push(hash_leaf(format!("{tag} {index}").as_bytes()));
        }
    }

    /// The same log, cut back to its first `size` leaves: the start of a
    /// fork, which then [`grow`](Self::grow)s with another tag.
    pub fn prefix(&self, size: u64) -> TestLog {
        let mut cut = TestLog::new(&self.origin, self.key.clone());
        for (index, tag) in self.tags.iter().take(size as usize).enumerate() {
            cut.tags.push(tag.clone());
            cut.tree
                .push(hash_leaf(format!("{tag} {index}").as_bytes()));
        }
        cut
    }

    /// The tree head at `size` (at most the log's size).
    pub fn head(&self, size: u64) -> TreeHead {
        TreeHead {
            size,
            root: merkle::root(&self.tree, size).expect("size is within the log"),
        }
    }

    /// The checkpoint at `size` as a signed note.
    pub fn checkpoint(&self, size: u64) -> String {
        self.checkpoint_with_extensions(size, &[])
    }

    /// The checkpoint at `size` with `extensions` as extension lines (each
    /// non-empty, without newline).
    pub fn checkpoint_with_extensions(&self, size: u64, extensions: &[&str]) -> String {
        let body = CheckpointBody {
            origin: self.origin.clone(),
            tree_size: size,
            root_hash: self.head(size).root,
        };
        let mut text = body.to_text();
        for line in extensions {
            text.push_str(line);
            text.push('\n');
        }
        sign_note(&text, &self.origin, &self.key)
    }

    /// The RFC 6962 consistency proof from `old` to `new`.
    pub fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        consistency_proof(&self.tree, old, new).expect("sizes within the log")
    }
}

/// A signed note of `text` by `key` under `name`: signed-note's Ed25519
/// signature line, `— name base64(key ID || signature)`.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> String {
    let mut blob = key_id(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&key.sign(text.as_bytes()).to_bytes());
    format!("{text}\n\u{2014} {name} {}\n", BASE64.encode(blob))
}

/// `binary witness serve ...` as a child process, killed (SIGKILL) if
/// dropped while it runs.
pub struct WitnessProcess {
    /// Killed on drop.
    child: Killed,
    /// Where its stderr goes.
    stderr: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl WitnessProcess {
    /// Runs `command` (made with [`crate::harness::command`], e.g. `witness
    /// serve --config FILE`), which will listen on `addr`; its stderr goes
    /// to `stderr`.
    pub fn start(
        command: Command,
        addr: SocketAddr,
        stderr: PathBuf,
    ) -> anyhow::Result<WitnessProcess> {
        Ok(WitnessProcess {
            child: spawn_service(command, &stderr)?,
            stderr,
            addr,
        })
    }

    /// `binary witness serve --config CONFIG --listen ADDR`.
    pub fn spawn(
        binary: impl AsRef<OsStr>,
        config: &std::path::Path,
        addr: SocketAddr,
        stderr: PathBuf,
    ) -> anyhow::Result<WitnessProcess> {
        let listen = addr.to_string();
        let command = crate::harness::command(
            binary,
            &[
                &"witness",
                &"serve",
                &"--config",
                &config,
                &"--listen",
                &listen,
            ],
        );
        WitnessProcess::start(command, addr, stderr)
    }

    /// The submission prefix's URL when the prefix is empty.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Polls until the witness accepts connections (it binds only once its
    /// store is open and verified), or errors with its stderr if it exits
    /// or `bound` passes.
    pub async fn wait_ready(&mut self, bound: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.0.try_wait()? {
                bail!("the witness exited with {status}:\n{}", self.stderr());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the witness did not listen on {} within {bound:?}:\n{}",
                    self.addr,
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to exit by itself (e.g. refusing to start).
    pub async fn exit_status(&mut self, bound: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.0.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("the witness still runs after {bound:?}:\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL: no shutdown code runs, as in a crash.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        self.child.0.kill()?;
        self.child.0.wait()
    }
}

/// How long a witness may take to start listening, or `keygen` to finish.
const WITNESS_START_WAIT: Duration = Duration::from_secs(30);

/// One witness of a log: `binary witness serve` with a key made by `witness
/// keygen`, witnessing the log of `--log-vkey`, on a fixed loopback port
/// and data directory so that a restart is the same witness with its state.
pub struct LogWitness {
    /// Its name and public key, as the policy states them.
    pub verifier: CosignerVerifier,
    /// Where it listens (kept across restarts: the policy names the URL).
    pub addr: SocketAddr,
    binary: PathBuf,
    dir: PathBuf,
    log_vkey: String,
    /// `None` while it is down.
    process: Option<WitnessProcess>,
}

impl LogWitness {
    /// Makes the key of witness `name` under `dir` (created) with `binary
    /// witness keygen` and starts it, witnessing the log whose vkey is
    /// `log_vkey` (origin + operator key, see `NoteVerifier::encoded_key`).
    pub async fn start(
        binary: &Path,
        dir: &Path,
        name: &str,
        log_vkey: &str,
    ) -> anyhow::Result<LogWitness> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let key = dir.join("witness.key");
        let keygen = run_bounded(
            command(
                binary,
                &[&"witness", &"keygen", &"--name", &name, &"--out", &key],
            ),
            dir,
            WITNESS_START_WAIT,
        );
        if !keygen.status.success() {
            bail!("witness keygen --name {name} failed:\n{}", keygen.stderr);
        }
        let verifier = CosignerVerifier::from_vkey(keygen.stdout.trim()).map_err(|error| {
            anyhow::anyhow!(
                "witness keygen printed no vkey ({error}): {:?}",
                keygen.stdout
            )
        })?;
        let mut witness = LogWitness {
            verifier,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            log_vkey: log_vkey.to_owned(),
            process: None,
        };
        witness.restart().await?;
        Ok(witness)
    }

    pub fn name(&self) -> &str {
        self.verifier.name()
    }

    /// Its `add-checkpoint` URL prefix (no path prefix).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its stderr so far (of the current or last run), for failure messages.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("witness.stderr")).unwrap_or_default()
    }

    /// SIGKILL, as in a crash; its data directory and port stay its own.
    pub fn kill(&mut self) -> std::io::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    /// Starts it (again) on its port and data directory, and waits until it
    /// listens. A witness still running is killed first.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        let key = self.dir.join("witness.key");
        let data = self.dir.join("data");
        let listen = self.addr.to_string();
        let name = self.name().to_owned();
        let serve = command(
            &self.binary,
            &[
                &"witness",
                &"serve",
                &"--name",
                &name,
                &"--key",
                &key,
                &"--data-dir",
                &data,
                &"--listen",
                &listen,
                &"--log-vkey",
                &self.log_vkey,
            ],
        );
        let mut process = WitnessProcess::start(serve, self.addr, self.dir.join("witness.stderr"))?;
        process.wait_ready(WITNESS_START_WAIT).await?;
        self.process = Some(process);
        Ok(())
    }
}

/// Starts one [`LogWitness`] per name in `names`, each under its own
/// subdirectory of `dir`, all witnessing the log of `log_vkey`.
pub async fn start_log_witnesses(
    binary: &Path,
    dir: &Path,
    names: &[&str],
    log_vkey: &str,
) -> anyhow::Result<Vec<LogWitness>> {
    let mut witnesses = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let subdir = dir.join(format!("witness-{index}"));
        witnesses.push(LogWitness::start(binary, &subdir, name, log_vkey).await?);
    }
    Ok(witnesses)
}

/// The SetWitnessPolicy naming `witnesses` (their keys and real URLs) with
/// a quorum of `threshold` of them, as the group `group`.
pub fn witness_policy(witnesses: &[LogWitness], threshold: u32, group: &str) -> SetWitnessPolicy {
    SetWitnessPolicy {
        witnesses: witnesses
            .iter()
            .map(|witness| Witness {
                name: witness.name().into(),
                public_key: witness.verifier.public_key().as_bytes().to_vec(),
                url: witness.url(),
            })
            .collect(),
        groups: vec![WitnessGroup {
            name: group.into(),
            threshold,
            members: witnesses.iter().map(|w| w.name().to_owned()).collect(),
        }],
        quorum: group.into(),
    }
}
