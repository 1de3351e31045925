//! Signed-event files: an event passed from signatory to signatory, each
//! adding a signature on their own machine, until it carries enough.
//!
//! ```json
//! {"type": "ceasefire-ledger-signed-event",
//!  "event": { ...the payload decoded, as proto3 JSON, for people to read... },
//!  "payload": "<base64 of the encoded Event: what is signed>",
//!  "signatures": [{"publicKey": "<base64>", "signature": "<base64>"}]}
//! ```
//!
//! The payload is the truth: signatures cover it, not the JSON. The `event`
//! field is rewritten from the payload on every save and must match it on
//! load, so nobody can be shown one event while signing another.

use std::path::Path;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::event_json::message_to_json;
use ceasefire_core::rules::decode_event;
use ceasefire_core::signing::sign_event;
use ceasefire_grpc::proto::{Event, Signature, SignedEvent};

pub const SIGNED_EVENT_FILE_TYPE: &str = "ceasefire-ledger-signed-event";

#[derive(Serialize, Deserialize)]
struct SignatureJson {
    #[serde(rename = "publicKey")]
    public_key: String,
    signature: String,
}

#[derive(Serialize, Deserialize)]
struct SignedEventFileJson {
    #[serde(rename = "type")]
    kind: String,
    event: serde_json::Value,
    payload: String,
    signatures: Vec<SignatureJson>,
}

/// An encoded event and the signatures gathered so far.
pub struct SignedEventFile {
    pub event: Event,
    pub signed: SignedEvent,
}

impl SignedEventFile {
    /// A file with no signatures yet, for `event` encoded once and for all.
    pub fn new(event: Event) -> SignedEventFile {
        let payload = prost::Message::encode_to_vec(&event);
        SignedEventFile {
            event,
            signed: SignedEvent {
                payload,
                signatures: Vec::new(),
            },
        }
    }

    /// Whether a JSON value is a signed-event file (rather than a bare event).
    pub fn is_signed_event_json(value: &serde_json::Value) -> bool {
        value.get("type").and_then(|kind| kind.as_str()) == Some(SIGNED_EVENT_FILE_TYPE)
    }

    /// Adds `key`'s signature over the payload; a key signs once.
    pub fn add_signature(&mut self, key: &SigningKey) -> anyhow::Result<()> {
        let public_key = key.verifying_key().to_bytes().to_vec();
        if self
            .signed
            .signatures
            .iter()
            .any(|signature| signature.public_key == public_key)
        {
            bail!(
                "key {} has already signed this event",
                ceasefire_core::key_text(&public_key)
            );
        }
        let signature = sign_event(&self.signed.payload, key);
        self.signed.signatures.push(Signature {
            public_key,
            signature: signature.signature.to_vec(),
        });
        Ok(())
    }

    pub fn from_json(value: serde_json::Value) -> anyhow::Result<SignedEventFile> {
        let json: SignedEventFileJson =
            serde_json::from_value(value).context("not a signed-event file")?;
        if json.kind != SIGNED_EVENT_FILE_TYPE {
            bail!("not a {SIGNED_EVENT_FILE_TYPE} file");
        }
        let payload = BASE64
            .decode(json.payload.trim())
            .context("payload is not base64")?;
        let event = decode_event(&payload).map_err(|rejection| anyhow::anyhow!("{rejection}"))?;
        if message_to_json("ceasefire.v1.Event", &event)? != json.event {
            bail!("the readable \"event\" does not match the signed payload: the file was edited");
        }
        let signatures = json
            .signatures
            .iter()
            .map(|signature| {
                Ok(Signature {
                    public_key: BASE64
                        .decode(&signature.public_key)
                        .context("publicKey is not base64")?,
                    signature: BASE64
                        .decode(&signature.signature)
                        .context("signature is not base64")?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(SignedEventFile {
            event,
            signed: SignedEvent {
                payload,
                signatures,
            },
        })
    }

    pub fn load(path: &Path) -> anyhow::Result<SignedEventFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        Self::from_json(value).with_context(|| format!("{}", path.display()))
    }

    pub fn to_json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::to_value(SignedEventFileJson {
            kind: SIGNED_EVENT_FILE_TYPE.into(),
            event: message_to_json("ceasefire.v1.Event", &self.event)?,
            payload: BASE64.encode(&self.signed.payload),
            signatures: self
                .signed
                .signatures
                .iter()
                .map(|signature| SignatureJson {
                    public_key: BASE64.encode(&signature.public_key),
                    signature: BASE64.encode(&signature.signature),
                })
                .collect(),
        })?)
    }

    /// Writes the file (replacing it atomically: write a sibling, rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json()?)? + "\n";
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, text)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SignedEventFile {
        SignedEventFile::new(Event {
            agreement_id: "agreement".into(),
            author: "party-a".into(),
            nonce: vec![7; 16],
            ..Event::default()
        })
    }

    #[test]
    fn a_file_round_trips_with_its_signatures() {
        let mut file = sample();
        file.add_signature(&SigningKey::from_bytes(&[1; 32]))
            .unwrap();
        let again = SignedEventFile::from_json(file.to_json().unwrap()).unwrap();
        assert_eq!(again.signed, file.signed);
    }

    #[test]
    fn a_key_signs_once_and_an_edited_event_is_refused() {
        let mut file = sample();
        let key = SigningKey::from_bytes(&[1; 32]);
        file.add_signature(&key).unwrap();
        assert!(file.add_signature(&key).is_err());
        let mut json = file.to_json().unwrap();
        json["event"]["author"] = "party-b".into();
        assert!(SignedEventFile::from_json(json).is_err());
    }
}
