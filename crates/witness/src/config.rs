//! The witness's configuration: its cosigner (name and key), where it
//! listens, where it keeps its state, its URL prefix, and the logs it
//! witnesses.
//!
//! Two layers: [`ConfigFile`] is what an operator writes (TOML, paths and
//! strings), [`WitnessConfig`] is what [`crate::start`] runs (keys parsed,
//! logs resolved). Key files are read by the binary (`src/keyfile.rs`), which
//! hands the key over; so tests and other programs can build a
//! [`WitnessConfig`] directly from a key in memory.
//!
//! A log is given either by its vkey (`<origin>+<hex key id>+<base64(0x01 ||
//! key)>`, the form every C2SP tool publishes; the origin is the key's name)
//! or, for a ceasefire-ledger log, by its signed genesis file, which names
//! the origin and the operator's checkpoint key. Several entries with one
//! origin are one log with several keys (a key rotation).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ceasefire_core::checkpoint::NoteVerifier;
use ceasefire_core::cosignature::Cosigner;
use ceasefire_core::proto::event::Body;
use ceasefire_core::rules::{decode_event, LedgerState};
use ceasefire_core::signing::{canonical_signatures, verify_all};
use ceasefire_core::witness::TrustedLog;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

/// Where a witness listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7380";

/// Where a witness keeps its state unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "ceasefire-witness-data";

/// The `type` of a ceasefire-ledger signed-event file (`src/signed_file.rs`).
const SIGNED_EVENT_FILE_TYPE: &str = "ceasefire-ledger-signed-event";

/// Everything [`crate::start`] needs.
#[derive(Clone, Debug)]
pub struct WitnessConfig {
    /// The witness's key and name: what signs the cosignatures.
    pub cosigner: Cosigner,
    /// Where to serve HTTP (port 0: any free port, see
    /// [`crate::RunningWitness::addr`]).
    pub listen: SocketAddr,
    /// Where the state lives (created if missing; locked while running).
    pub data_dir: PathBuf,
    /// The submission prefix: the endpoint is `{url_prefix}/add-checkpoint`.
    /// Empty, or starting with '/' and not ending with one.
    pub url_prefix: String,
    /// The logs witnessed, one entry per origin.
    pub logs: Vec<TrustedLog>,
}

impl WitnessConfig {
    /// A witness on `listen` with no prefix.
    pub fn new(
        cosigner: Cosigner,
        listen: SocketAddr,
        data_dir: PathBuf,
        logs: Vec<TrustedLog>,
    ) -> Self {
        Self {
            cosigner,
            listen,
            data_dir,
            url_prefix: String::new(),
            logs,
        }
    }

    /// Refuses what cannot be served: a bad prefix, or one origin twice.
    pub fn validate(&self) -> anyhow::Result<()> {
        check_url_prefix(&self.url_prefix)?;
        let mut origins: Vec<&str> = self.logs.iter().map(TrustedLog::origin).collect();
        origins.sort_unstable();
        if let Some(pair) = origins.windows(2).find(|pair| pair[0] == pair[1]) {
            bail!(
                "log {:?} is configured twice; give one log with all its keys",
                pair[0]
            );
        }
        Ok(())
    }
}

/// A prefix is a path without a trailing slash, so `{prefix}/add-checkpoint`
/// is one well-formed path.
pub fn check_url_prefix(prefix: &str) -> anyhow::Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    if !prefix.starts_with('/') || prefix.ends_with('/') {
        bail!("the URL prefix {prefix:?} must be empty or start with '/' and not end with one");
    }
    if prefix
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '{' | '}' | '*'))
    {
        bail!("the URL prefix {prefix:?} must be a plain path");
    }
    Ok(())
}

/// One log in the configuration file: exactly one of the two keys.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogEntry {
    /// The log's vkey; its name is the origin.
    #[serde(default)]
    pub vkey: Option<String>,
    /// A ceasefire-ledger signed genesis file.
    #[serde(default)]
    pub genesis: Option<PathBuf>,
}

/// How a log is named on the command line or in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSpec {
    Vkey(String),
    Genesis(PathBuf),
}

impl TryFrom<LogEntry> for LogSpec {
    type Error = anyhow::Error;

    fn try_from(entry: LogEntry) -> anyhow::Result<LogSpec> {
        match (entry.vkey, entry.genesis) {
            (Some(vkey), None) => Ok(LogSpec::Vkey(vkey)),
            (None, Some(path)) => Ok(LogSpec::Genesis(path)),
            _ => bail!("each [[log]] needs exactly one of vkey = \"...\" or genesis = \"FILE\""),
        }
    }
}

/// The configuration file, e.g.:
///
/// ```toml
/// name = "witness.example/w1"
/// key-file = "/etc/ceasefire-witness/witness.key"
/// listen = "0.0.0.0:7380"
/// data-dir = "/var/lib/ceasefire-witness"
/// url-prefix = ""
///
/// [[log]]
/// vkey = "example.org/log+0a1b2c3d+AR..."
///
/// [[log]]
/// genesis = "/etc/ceasefire-witness/agreement-genesis.json"
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    pub name: Option<String>,
    pub key_file: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub url_prefix: Option<String>,
    #[serde(default)]
    pub log: Vec<LogEntry>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(&text)
            .map_err(|error| anyhow!("the config file {} is invalid: {error}", path.display()))
    }

    /// Parses the TOML text; errors are one line (with the line number).
    pub fn parse(text: &str) -> anyhow::Result<ConfigFile> {
        toml::from_str(text).map_err(|error| {
            let line = error
                .span()
                .map(|span| text[..span.start].matches('\n').count() + 1);
            anyhow!(
                "{}{}",
                line.map(|line| format!("line {line}: "))
                    .unwrap_or_default(),
                error.message().trim().replace('\n', " ")
            )
        })
    }

    /// The logs the file names, in its order.
    pub fn log_specs(&self) -> anyhow::Result<Vec<LogSpec>> {
        self.log
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                LogSpec::try_from(entry.clone()).with_context(|| format!("[[log]] {}", index + 1))
            })
            .collect()
    }
}

/// The logs `specs` name, the keys of one origin gathered into one log.
pub fn trusted_logs(specs: &[LogSpec]) -> anyhow::Result<Vec<TrustedLog>> {
    let mut keys: Vec<(String, Vec<NoteVerifier>)> = Vec::new();
    for spec in specs {
        let key = match spec {
            LogSpec::Vkey(vkey) => log_key_from_vkey(vkey)?,
            LogSpec::Genesis(path) => log_key_from_genesis_file(path)?,
        };
        match keys.iter_mut().find(|(origin, _)| origin == key.name()) {
            Some((_, list)) if list.contains(&key) => {}
            Some((_, list)) => list.push(key),
            None => keys.push((key.name().to_owned(), vec![key])),
        }
    }
    keys.into_iter()
        .map(|(origin, keys)| TrustedLog::new(&origin, keys).map_err(anyhow::Error::from))
        .collect()
}

/// A log key from its vkey.
pub fn log_key_from_vkey(vkey: &str) -> anyhow::Result<NoteVerifier> {
    NoteVerifier::from_vkey(vkey.trim())
        .map_err(|error| anyhow!("log vkey {:?}: {error}", vkey.trim()))
}

/// A ceasefire-ledger log's key from its signed genesis file: the origin and
/// the operator's checkpoint key it names. The file's signed payload is the
/// truth (its readable `event` is for people); the payload must be a valid
/// genesis, and every signature the file carries must verify, so a damaged
/// or edited file is refused rather than trusted.
pub fn log_key_from_genesis_file(path: &Path) -> anyhow::Result<NoteVerifier> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the genesis file {}", path.display()))?;
    log_key_from_genesis_json(&text).with_context(|| format!("genesis file {}", path.display()))
}

#[derive(Deserialize)]
struct SignedEventFileJson {
    #[serde(rename = "type")]
    kind: String,
    payload: String,
    #[serde(default)]
    signatures: Vec<SignatureJson>,
}

#[derive(Deserialize)]
struct SignatureJson {
    #[serde(rename = "publicKey")]
    public_key: String,
    signature: String,
}

/// [`log_key_from_genesis_file`] on the file's text.
pub fn log_key_from_genesis_json(text: &str) -> anyhow::Result<NoteVerifier> {
    let file: SignedEventFileJson =
        serde_json::from_str(text).context("not a signed-event file")?;
    if file.kind != SIGNED_EVENT_FILE_TYPE {
        bail!("not a {SIGNED_EVENT_FILE_TYPE} file");
    }
    let payload = BASE64
        .decode(file.payload.trim())
        .context("payload is not base64")?;
    let event = decode_event(&payload).map_err(|rejection| anyhow!("{rejection}"))?;
    let Some(Body::Genesis(genesis)) = &event.body else {
        bail!("the event is not a genesis");
    };
    LedgerState::check_genesis_content(&event).map_err(|rejection| anyhow!("{rejection}"))?;
    let wire = file
        .signatures
        .iter()
        .map(|signature| {
            Ok((
                BASE64
                    .decode(&signature.public_key)
                    .context("publicKey is not base64")?,
                BASE64
                    .decode(&signature.signature)
                    .context("signature is not base64")?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let signatures = canonical_signatures(wire).map_err(|rejection| anyhow!("{rejection}"))?;
    verify_all(&payload, &signatures).map_err(|rejection| anyhow!("{rejection}"))?;
    let key: [u8; 32] = genesis
        .operator_public_key
        .as_slice()
        .try_into()
        .map_err(|_| anyhow!("the operator key is not 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&key)
        .map_err(|error| anyhow!("the operator key is invalid: {error}"))?;
    NoteVerifier::new(&genesis.origin, &key)
        .map_err(|error| anyhow!("the origin {:?} cannot name a key: {error}", genesis.origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ceasefire_core::checkpoint::NoteSigner;
    use ed25519_dalek::SigningKey;

    fn vkey(origin: &str, seed: u8) -> String {
        NoteSigner::new(origin, SigningKey::from_bytes(&[seed; 32]))
            .unwrap()
            .verifier()
            .encoded_key()
    }

    #[test]
    fn the_file_parses_and_names_its_logs() {
        let text = format!(
            "name = \"witness.example/w1\"\nkey-file = \"w.key\"\nlisten = \"127.0.0.1:9\"\n\
             url-prefix = \"/w\"\n[[log]]\nvkey = \"{}\"\n[[log]]\ngenesis = \"g.json\"\n",
            vkey("a.example", 1)
        );
        let file = ConfigFile::parse(&text).unwrap();
        assert_eq!(file.name.as_deref(), Some("witness.example/w1"));
        assert_eq!(
            file.log_specs().unwrap(),
            vec![
                LogSpec::Vkey(vkey("a.example", 1)),
                LogSpec::Genesis("g.json".into())
            ]
        );
    }

    #[test]
    fn file_errors_are_one_line_with_the_line_number() {
        let error = ConfigFile::parse("name = \"w\"\nport = 3\n").unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("line 2: "), "{message}");
        assert!(!message.contains('\n'), "{message}");
        let file = ConfigFile::parse("[[log]]\n").unwrap();
        let error = format!("{:#}", file.log_specs().unwrap_err());
        assert!(error.contains("exactly one of"), "{error}");
    }

    #[test]
    fn keys_of_one_origin_make_one_log() {
        let logs = trusted_logs(&[
            LogSpec::Vkey(vkey("a.example", 1)),
            LogSpec::Vkey(vkey("b.example", 2)),
            LogSpec::Vkey(vkey("a.example", 3)),
            LogSpec::Vkey(vkey("a.example", 1)),
        ])
        .unwrap();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].origin(), "a.example");
        assert_eq!(logs[0].keys().len(), 2);
        let error = trusted_logs(&[LogSpec::Vkey("a.example+00000000+AQ==".into())]).unwrap_err();
        assert!(error.to_string().contains("log vkey"), "{error}");
    }

    #[test]
    fn prefixes_are_paths() {
        for good in ["", "/w", "/a/b"] {
            check_url_prefix(good).unwrap();
        }
        for bad in ["w", "/w/", "/", "/a b", "/a?b", "/{x}"] {
            assert!(check_url_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_genesis_that_is_not_one_is_refused() {
        assert!(log_key_from_genesis_json("{}").is_err());
        let error = log_key_from_genesis_json(
            r#"{"type": "something-else", "payload": "", "signatures": []}"#,
        )
        .unwrap_err();
        assert!(error
            .to_string()
            .contains("not a ceasefire-ledger-signed-event"));
    }
}
