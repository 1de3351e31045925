//! For witness tests: a C2SP log held in memory ([`TestLog`]), which any
//! origin and key can sign and which can fork, and the binary's `witness
//! serve` as a child process ([`WitnessProcess`]).
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
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::bail;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ceasefire_core::checkpoint::{key_id, CheckpointBody, NoteVerifier};
use ceasefire_core::merkle::{self, consistency_proof, hash_leaf, Hash, MemorySource};
use ceasefire_core::witness::TreeHead;
use ed25519_dalek::{Signer as _, SigningKey};

use crate::harness::{spawn_service, Killed};

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
