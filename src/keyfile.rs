//! Key files: an Ed25519 secret key on disk, readable by its owner only.
//!
//! JSON, so a person can see whose key it is:
//! `{"type": "ceasefire-ledger-ed25519-key", "party_id": "...", "public_key": "<base64>", "secret_key": "<base64 seed>"}`.
//! The public key is stored beside the seed so a mismatch (a hand-edited or
//! corrupted file) is caught on load rather than signing as someone else.
//!
//! At rest, that JSON may be encrypted to a passphrase (`keygen --encrypt`):
//! the file is then an armored age file ([`crate::age`], docs/spec.md
//! "Key files"), and [`KeyFile::load`] opens it with the passphrase from
//! [`crate::passphrase`], so every command that takes a key file takes an
//! encrypted one. The secret is written only once, encrypted or not, and
//! only through a 0600 temporary file linked into place
//! ([`durable_file::create_private`]): never a plaintext copy on disk, never
//! a half-written key.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use zeroize::Zeroizing;

use crate::age::{self, AgeError};
use crate::durable_file;
use crate::passphrase;
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
        durable_file::create_private(path, self.to_json()?.as_bytes(), "key file")
    }

    /// Writes the key encrypted to `passphrase` (age, scrypt with
    /// `work_factor`), mode 0600, refusing to overwrite an existing file.
    pub fn save_encrypted(
        &self,
        path: &Path,
        passphrase: &str,
        work_factor: u8,
    ) -> anyhow::Result<()> {
        let json = self.to_json()?;
        let armored = age::encrypt_armored(json.as_bytes(), passphrase, work_factor);
        durable_file::create_private(path, armored.as_bytes(), "key file")
    }

    fn to_json(&self) -> anyhow::Result<Zeroizing<String>> {
        let json = KeyFileJson {
            kind: KEY_FILE_TYPE.into(),
            party_id: self.party_id.clone(),
            public_key: self.public_key_text(),
            secret_key: BASE64.encode(self.key.to_bytes()),
        };
        let text = Zeroizing::new(serde_json::to_string_pretty(&json)? + "\n");
        // The seed in base64 is zeroed as it is dropped; the text, when the
        // caller drops it.
        drop(Zeroizing::new(json.secret_key));
        Ok(text)
    }

    /// Reads a key file, plain or encrypted (then asking for its passphrase).
    pub fn load(path: &Path) -> anyhow::Result<KeyFile> {
        let bytes = Zeroizing::new(
            fs::read(path).with_context(|| format!("cannot read key file {}", path.display()))?,
        );
        if age::is_age(&bytes) {
            let (passphrase, source) = passphrase::to_open(path)?;
            let plaintext = age::decrypt(&bytes, &passphrase).map_err(|error| match error {
                AgeError::WrongPassphrase => anyhow!(
                    "cannot open the key file {}: wrong passphrase ({})",
                    path.display(),
                    source.describe()
                ),
                other => anyhow!("cannot open the key file {}: {other}", path.display()),
            })?;
            return KeyFile::parse(&plaintext, path);
        }
        KeyFile::parse(&bytes, path)
    }

    fn parse(bytes: &[u8], path: &Path) -> anyhow::Result<KeyFile> {
        let json: KeyFileJson = serde_json::from_slice(bytes)
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
