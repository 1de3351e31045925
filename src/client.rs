//! The client side: signing events and talking to a ledger over gRPC.
//!
//! Used by the CLI, the dev bootstrap and the tests, so there is one way to
//! turn an `Event` into a `SignedEvent`.

use ed25519_dalek::SigningKey;
use prost::Message;
use rand_core::RngCore;

use crate::core::signing::sign_event;
use crate::proto::{
    compliance_client::ComplianceClient, ledger_client::LedgerClient, ComplianceStatus, Event,
    Signature, SignedEvent,
};

/// Encodes `event` and signs the bytes with each key.
pub fn sign(event: &Event, keys: &[&SigningKey]) -> SignedEvent {
    let payload = event.encode_to_vec();
    let signatures = keys
        .iter()
        .map(|key| {
            let signature = sign_event(&payload, key);
            Signature {
                public_key: signature.public_key.to_vec(),
                signature: signature.signature.to_vec(),
            }
        })
        .collect();
    SignedEvent {
        payload,
        signatures,
    }
}

/// A fresh random nonce (16 bytes: collisions are not a practical concern).
pub fn random_nonce() -> Vec<u8> {
    let mut nonce = vec![0u8; 16];
    rand_core::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// The current time as a protobuf timestamp.
pub fn now_timestamp() -> prost_types::Timestamp {
    let micros = crate::sequencer::now_micros();
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// Opens a channel to a ledger at `url` (e.g. `http://127.0.0.1:50051`).
pub async fn channel(url: &str) -> anyhow::Result<tonic::transport::Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|error| anyhow::anyhow!("{url:?} is not a server URL: {error}"))?;
    endpoint
        .connect()
        .await
        .map_err(|error| anyhow::anyhow!("cannot connect to {url}: {error}"))
}

/// Connects to the Ledger service at `url`.
pub async fn connect(url: &str) -> anyhow::Result<LedgerClient<tonic::transport::Channel>> {
    Ok(LedgerClient::new(channel(url).await?)
        .max_decoding_message_size(crate::server::MAX_GRPC_MESSAGE_BYTES))
}

/// Connects to the Compliance service at `url`.
pub async fn connect_compliance(
    url: &str,
) -> anyhow::Result<ComplianceClient<tonic::transport::Channel>> {
    Ok(ComplianceClient::new(channel(url).await?))
}

/// The proto enum name of a compliance status, without its prefix
/// ("VIOLATION_CONFIRMED"), for people.
pub fn status_name(status: i32) -> &'static str {
    ComplianceStatus::try_from(status)
        .map(|status| {
            status
                .as_str_name()
                .trim_start_matches("COMPLIANCE_STATUS_")
        })
        .unwrap_or("UNKNOWN")
}
