//! The client side: signing events and talking to a ledger over gRPC.
//!
//! Used by the CLI, the dev bootstrap and the tests, so there is one way to
//! turn an `Event` into a `SignedEvent`.

use std::path::PathBuf;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use prost::Message;
use rand_core::RngCore;

use crate::mismatch::Stage;
use crate::proto::{
    compliance_client::ComplianceClient, ledger_client::LedgerClient, ComplianceStatus, Event,
    Signature, SignedEvent,
};
use ceasefire_core::error_chain::one_line;
use ceasefire_core::signing::sign_event;

/// Encodes `event` and signs the bytes with each key.
pub fn sign(event: &Event, keys: &[&SigningKey]) -> SignedEvent {
    sign_payload(event.encode_to_vec(), keys)
}

/// Signs `payload` as it is (whatever its bytes) with each key.
pub fn sign_payload(payload: Vec<u8>, keys: &[&SigningKey]) -> SignedEvent {
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

/// A new event by `author` for `agreement_id`, created now, with a fresh nonce.
pub fn new_event(agreement_id: &str, author: &str, body: crate::proto::event::Body) -> Event {
    Event {
        agreement_id: agreement_id.into(),
        author: author.into(),
        created_at: Some(now_timestamp()),
        nonce: random_nonce(),
        body: Some(body),
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
    ceasefire_core::rules::micros_timestamp(crate::now_micros())
}

/// How a client authenticates a TLS server (and itself, for mutual TLS).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClientTls {
    /// CA certificate (PEM) to trust for an https:// server.
    #[arg(long, env = "CEASEFIRE_LEDGER_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that require mutual TLS.
    #[arg(long, env = "CEASEFIRE_LEDGER_CERT", requires = "cert_key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, env = "CEASEFIRE_LEDGER_CERT_KEY", requires = "cert")]
    pub cert_key: Option<PathBuf>,
}

impl ClientTls {
    /// The TLS settings for `url`: none for http://; for https://, the given
    /// CA or else the public web PKI roots, and the client certificate if any.
    fn config(&self, url: &str) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        if !url.starts_with("https://") {
            if self.ca.is_some() || self.cert.is_some() {
                anyhow::bail!("--ca and --cert need an https:// server URL, not {url}");
            }
            return Ok(None);
        }
        let mut config = tonic::transport::ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?)),
            None => config.with_webpki_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.cert, &self.cert_key) {
            config = config.identity(tonic::transport::Identity::from_pem(
                read(cert)?,
                read(key)?,
            ));
        }
        Ok(Some(config))
    }
}

impl ClientTls {
    /// Whether any TLS setting was given (a CA or a client certificate).
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some()
    }
}

/// The URL of a server given as `host:port` or as a URL. Without a scheme,
/// grpcurl's convention: plaintext (`http://`), unless TLS settings were
/// given (`--ca`, `--cert`: `https://`). A URL is kept as it is.
pub fn server_url(server: &str, tls: &ClientTls) -> String {
    if server.contains("://") {
        server.to_string()
    } else if tls.is_set() {
        format!("https://{server}")
    } else {
        format!("http://{server}")
    }
}

/// Opens a channel to a ledger at `server`: `http://host:port`, `https://`
/// with `tls`, or `host:port` (see [`server_url`]).
pub async fn channel(server: &str, tls: &ClientTls) -> anyhow::Result<tonic::transport::Channel> {
    let url = &server_url(server, tls);
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|error| anyhow::anyhow!("{url:?} is not a server URL: {error}"))?;
    if let Some(config) = tls.config(url)? {
        endpoint = endpoint
            .tls_config(config)
            .map_err(|error| anyhow::anyhow!("invalid TLS settings: {error}"))?;
    }
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => return Err(connect_error(url, tls, Stage::Connect, one_line(&error)).await),
    };
    // A plaintext client at a TLS port, or a TLS client whose certificate
    // a mutual-TLS server refuses, connects without error and fails on its
    // first call: make that call here (the health check: nothing to read),
    // so the failure is named where it happens. A status the server sent
    // (a service without health, say) is no failure of the connection.
    let probe = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    if let Err(status) = probe {
        if let Some(transport) = std::error::Error::source(&status) {
            return Err(connect_error(url, tls, Stage::FirstCall, one_line(transport)).await);
        }
    }
    Ok(channel)
}

/// "cannot connect to URL: " what is wrong: the TLS mismatch named (see
/// [`crate::mismatch`]), or else the transport's own words.
async fn connect_error(url: &str, tls: &ClientTls, stage: Stage, cause: String) -> anyhow::Error {
    let what = crate::mismatch::explain(url, tls, stage, &cause)
        .await
        .unwrap_or(cause);
    anyhow::anyhow!("cannot connect to {url}: {what}")
}

/// The Ledger service over `channel`.
pub fn ledger_client(
    channel: tonic::transport::Channel,
) -> LedgerClient<tonic::transport::Channel> {
    LedgerClient::new(channel).max_decoding_message_size(crate::MAX_GRPC_MESSAGE_BYTES)
}

/// Connects to the Ledger service at a plaintext `url`.
pub async fn connect(url: &str) -> anyhow::Result<LedgerClient<tonic::transport::Channel>> {
    Ok(ledger_client(channel(url, &ClientTls::default()).await?))
}

/// Connects to the Compliance service at a plaintext `url`.
pub async fn connect_compliance(
    url: &str,
) -> anyhow::Result<ComplianceClient<tonic::transport::Channel>> {
    Ok(ComplianceClient::new(
        channel(url, &ClientTls::default()).await?,
    ))
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

/// Proof hashes as the wire carries them (`repeated bytes`), each of which
/// must be 32 bytes: what the core's proof checks take.
pub fn proof_hashes(raw: &[Vec<u8>]) -> anyhow::Result<Vec<ceasefire_core::merkle::Hash>> {
    raw.iter()
        .map(|hash| {
            hash.as_slice()
                .try_into()
                .map_err(|_| anyhow::anyhow!("a proof hash is {} bytes, not 32", hash.len()))
        })
        .collect()
}
