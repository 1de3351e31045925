//! Where the passphrase of an encrypted key file comes from: the
//! environment variable [`PASSPHRASE_ENV`] when it is set (services, scripts,
//! tests), else a prompt on the terminal when stdin is one, with echo off.
//! Without either, the caller gets one line saying what to set.
//!
//! The prompt reads `/dev/tty` with echo turned off through termios
//! (rustix: no unsafe code here) and turns it back on before returning,
//! whatever happened in between.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{anyhow, bail};
use zeroize::Zeroizing;

/// The environment variable a passphrase is read from.
pub const PASSPHRASE_ENV: &str = "CEASEFIRE_KEY_PASSPHRASE";

/// Where a passphrase came from: named in a wrong-passphrase error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Environment,
    Prompt,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Environment => "from CEASEFIRE_KEY_PASSPHRASE",
            Source::Prompt => "typed at the prompt",
        }
    }
}

/// The passphrase that opens the encrypted key file `path`.
pub fn to_open(path: &Path) -> anyhow::Result<(Zeroizing<String>, Source)> {
    if let Some(passphrase) = from_environment()? {
        return Ok((passphrase, Source::Environment));
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "the key file {} is encrypted: set {PASSPHRASE_ENV} to its passphrase \
             (stdin is not a terminal to ask on)",
            path.display()
        );
    }
    let passphrase = prompt(&format!("Passphrase for {}: ", path.display()))?;
    Ok((passphrase, Source::Prompt))
}

/// A new passphrase to encrypt the key file `path` with: from the
/// environment, or typed twice. Never empty.
pub fn to_encrypt(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    if let Some(passphrase) = from_environment()? {
        return Ok(passphrase);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "--encrypt needs a passphrase: set {PASSPHRASE_ENV} \
             (stdin is not a terminal to ask on); nothing was written"
        );
    }
    let first = prompt(&format!("New passphrase for {}: ", path.display()))?;
    if first.is_empty() {
        bail!("the passphrase is empty; nothing was written");
    }
    let again = prompt("The same passphrase again: ")?;
    if *first != *again {
        bail!("the two passphrases differ; nothing was written");
    }
    Ok(first)
}

/// The variable's value; set but empty is an error (a passphrase that
/// protects nothing, or a script that lost its secret).
fn from_environment() -> anyhow::Result<Option<Zeroizing<String>>> {
    match std::env::var(PASSPHRASE_ENV) {
        Ok(value) if value.is_empty() => bail!("{PASSPHRASE_ENV} is set but empty"),
        Ok(value) => Ok(Some(Zeroizing::new(value))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{PASSPHRASE_ENV} is not UTF-8"),
    }
}

/// Asks on the terminal with echo off; the line without its end.
fn prompt(question: &str) -> anyhow::Result<Zeroizing<String>> {
    let cannot =
        |error: std::io::Error| anyhow!("cannot ask for the passphrase on /dev/tty: {error}");
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(cannot)?;
    // Echo off first, then the question: whatever answers the question is
    // never echoed (and anything typed before it is flushed).
    let saved = rustix::termios::tcgetattr(&tty).map_err(|errno| cannot(errno.into()))?;
    let mut silent = saved.clone();
    silent.local_modes.remove(rustix::termios::LocalModes::ECHO);
    rustix::termios::tcsetattr(&tty, rustix::termios::OptionalActions::Flush, &silent)
        .map_err(|errno| cannot(errno.into()))?;
    let mut writer = &tty;
    let asked = writer
        .write_all(question.as_bytes())
        .and_then(|()| writer.flush());
    let mut line = Zeroizing::new(String::new());
    let read = asked.and_then(|()| std::io::BufReader::new(&tty).read_line(&mut line));
    // Echo back on before anything else, even after a failed read.
    let restored = rustix::termios::tcsetattr(&tty, rustix::termios::OptionalActions::Now, &saved);
    let _ = writer.write_all(b"\n");
    read.map_err(cannot)?;
    restored.map_err(|errno| cannot(errno.into()))?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}
