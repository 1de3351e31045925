//! The real binary as a child process: a `serve` that is killed if its
//! owner lets go of it, commands with no inherited `CEASEFIRE_LEDGER_*`
//! settings and a bounded run time, free loopback ports, and a small seeded
//! generator so that a failing run can be replayed from the seed it prints.
//!
//! The binary's path is always a parameter: the tests pass
//! `env!("CARGO_BIN_EXE_ceasefire-ledger")` (which only their crate has),
//! the bench its own executable. [`Serve`] is shared with the bench, so its
//! operations return errors for the caller to report; the helpers only tests
//! use ([`run_bounded`], [`copy_dir`]) panic, as a failing test should.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ceasefire_grpc::client::{self, ClientTls};

/// A free local port (bound, read and released; a small race is accepted).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A command for `binary` with `args`, logging at info, with no
/// `CEASEFIRE_LEDGER_*` settings inherited from this process.
pub fn command(binary: impl AsRef<OsStr>, args: &[&dyn AsRef<OsStr>]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(args.iter().map(|arg| arg.as_ref().to_os_string()))
        .env("RUST_LOG", "info");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CEASEFIRE_LEDGER_") {
            command.env_remove(name);
        }
    }
    command
}

/// What a command printed and how it ended.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The last non-empty line of stderr: where the binary puts its error.
    pub fn last_stderr_line(&self) -> &str {
        last_line(&self.stderr)
    }
}

/// The last non-empty line of `text`.
pub fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
}

/// Runs `command` to its end, its output in files under `scratch`; kills it
/// and panics if it runs longer than `bound`.
pub fn run_bounded(mut command: Command, scratch: &Path, bound: Duration) -> Output {
    let stdout_path = scratch.join("command.stdout");
    let stderr_path = scratch.join("command.stderr");
    let mut child = Killed(
        command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("cannot create a scratch file"))
            .stderr(std::fs::File::create(&stderr_path).expect("cannot create a scratch file"))
            .spawn()
            .expect("cannot run the binary"),
    );
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("cannot wait for a child") {
            break status;
        }
        if Instant::now() >= deadline {
            // Killed on drop.
            panic!(
                "{command:?} did not finish within {bound:?}:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// A child process killed (SIGKILL, by its own handle) and reaped on drop.
pub(crate) struct Killed(pub(crate) Child);

/// Runs a long-lived `command` (a server), no stdin, stdout discarded, its
/// stderr in the file `stderr` for the test to read; killed when dropped.
pub(crate) fn spawn_service(mut command: Command, stderr: &Path) -> anyhow::Result<Killed> {
    let file = std::fs::File::create(stderr)
        .with_context(|| format!("cannot create {}", stderr.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))?;
    Ok(Killed(child))
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// How `serve` came out of its start-up.
pub enum Started {
    /// It answers GetCheckpoint with this tree size.
    Serving(u64),
    /// It exited before serving.
    Exited(ExitStatus),
}

/// A `serve` process, killed (SIGKILL) if dropped while it runs.
pub struct Serve {
    /// Killed on drop.
    child: Killed,
    /// Where its stderr goes, for the errors and the caller.
    stderr: PathBuf,
    /// Where it serves (`http://127.0.0.1:PORT`).
    pub url: String,
}

impl Serve {
    /// `binary serve --data-dir DATA --listen 127.0.0.1:<free port>` with
    /// `extra` flags, its stderr in `stderr`.
    pub fn spawn(
        binary: impl AsRef<OsStr>,
        data: &Path,
        extra: &[&str],
        stderr: PathBuf,
    ) -> anyhow::Result<Serve> {
        let listen = format!(
            "127.0.0.1:{}",
            free_port().context("cannot find a free loopback port")?
        );
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--data-dir".into(),
            data.as_os_str().to_os_string(),
            "--listen".into(),
            listen.clone().into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        let arg_refs: Vec<&dyn AsRef<OsStr>> =
            args.iter().map(|arg| arg as &dyn AsRef<OsStr>).collect();
        Serve::start(
            command(binary, &arg_refs),
            format!("http://{listen}"),
            stderr,
        )
    }

    /// Runs `command` (a `serve` made with [`command`], its flags, config
    /// file or environment as the caller wants them) that will serve on
    /// `url`, its stderr in `stderr`.
    pub fn start(command: Command, url: String, stderr: PathBuf) -> anyhow::Result<Serve> {
        Ok(Serve {
            child: spawn_service(command, &stderr)?,
            stderr,
            url,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Polls until the server answers GetCheckpoint or the process exits;
    /// an error (with its stderr) if neither happens within `bound`.
    pub async fn started(&mut self, bound: Duration) -> anyhow::Result<Started> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.0.try_wait().context("cannot wait for serve")? {
                return Ok(Started::Exited(status));
            }
            if let Ok(Ok(size)) =
                tokio::time::timeout(Duration::from_secs(2), tree_size(&self.url)).await
            {
                return Ok(Started::Serving(size));
            }
            if Instant::now() >= deadline {
                bail!(
                    "serve neither served on {} nor exited within {bound:?}:\n{}",
                    self.url,
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Like [`Serve::started`], but exiting is an error too; the tree size.
    pub async fn wait_ready(&mut self, bound: Duration) -> anyhow::Result<u64> {
        match self.started(bound).await? {
            Started::Serving(size) => Ok(size),
            Started::Exited(status) => bail!(
                "serve exited with {status} before serving:\n{}",
                self.stderr()
            ),
        }
    }

    /// SIGKILL: no shutdown code runs, exactly like a crash or an OOM kill.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        self.child.0.kill()?;
        self.child.0.wait()
    }

    /// SIGTERM, as an operator stops it, then the exit status, which must
    /// come within `bound`.
    pub async fn terminate(&mut self, bound: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.0.try_wait()? {
            bail!("serve had already exited with {status}:\n{}", self.stderr());
        }
        // SAFETY: kill(2) with the pid of our child, which has not been
        // reaped (try_wait just saw it running), so the pid is still its.
        #[allow(unsafe_code)]
        let sent = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        if sent != 0 {
            bail!(
                "cannot send SIGTERM to serve: {}",
                std::io::Error::last_os_error()
            );
        }
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.0.try_wait().context("cannot wait for serve")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "serve did not exit within {bound:?} of SIGTERM:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The tree size a server's GetCheckpoint answers (unverified: for polling).
pub async fn tree_size(url: &str) -> Result<u64, String> {
    let channel = client::channel(url, &ClientTls::default())
        .await
        .map_err(|error| error.to_string())?;
    client::ledger_client(channel)
        .get_checkpoint(ceasefire_grpc::proto::GetCheckpointRequest::default())
        .await
        .map(|response| response.into_inner().tree_size)
        .map_err(|status| status.to_string())
}

/// Copies a directory tree (files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("cannot create a directory");
    for entry in std::fs::read_dir(from).expect("cannot read a directory") {
        let entry = entry.expect("cannot read a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("no file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("cannot copy a file");
        }
    }
}

/// The seed for a run: `var` if set (to replay a failure), else the clock.
pub fn seed_from(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={text:?} is not an unsigned integer")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same choices, which is all a replayable test needs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Uniform in `range`.
    pub fn between(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        range.start() + self.below(range.end() - range.start() + 1)
    }
}
