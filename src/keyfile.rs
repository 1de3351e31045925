//! Key files: an Ed25519 secret key on disk, readable by its owner only.
//!
//! JSON, so a person can see whose key it is:
//! `{"type": "ceasefire-ledger-ed25519-key", "party_id": "...", "public_key": "<base64>", "secret_key": "<base64 seed>"}`.
//! The public key is stored beside the seed so a mismatch (a hand-edited or
//! corrupted file) is caught on load rather than signing as someone else.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

const KEY_FILE_TYPE: &str = "ceasefire-ledger-ed25519-key";

#[derive(Serialize, Deserialize)]
struct KeyFileJson {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    party_id: Option<String>,
    public_key: String,
    secret_key: String,
}

/// A signing key and, when known, the party it belongs to.
pub struct KeyFile {
    pub party_id: Option<String>,
    pub key: SigningKey,
}

impl KeyFile {
    pub fn generate(party_id: Option<String>) -> KeyFile {
        KeyFile {
            party_id,
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    pub fn public_key_text(&self) -> String {
        BASE64.encode(self.key.verifying_key().as_bytes())
    }

    /// Writes the key with mode 0600, refusing to overwrite an existing file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let json = KeyFileJson {
            kind: KEY_FILE_TYPE.into(),
            party_id: self.party_id.clone(),
            public_key: self.public_key_text(),
            secret_key: BASE64.encode(self.key.to_bytes()),
        };
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .with_context(|| format!("cannot create key file {}", path.display()))?;
        file.write_all(serde_json::to_string_pretty(&json)?.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        Ok(())
    }

    pub fn load(path: &Path) -> anyhow::Result<KeyFile> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        let json: KeyFileJson = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a key file", path.display()))?;
        if json.kind != KEY_FILE_TYPE {
            bail!("{} is not a {KEY_FILE_TYPE} file", path.display());
        }
        let seed: [u8; 32] = BASE64
            .decode(json.secret_key.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .with_context(|| format!("{}: secret_key is not 32 bytes of base64", path.display()))?;
        let key = SigningKey::from_bytes(&seed);
        let file = KeyFile {
            party_id: json.party_id,
            key,
        };
        if file.public_key_text() != json.public_key.trim() {
            bail!(
                "{}: public_key does not match secret_key (file damaged or edited?)",
                path.display()
            );
        }
        Ok(file)
    }
}
