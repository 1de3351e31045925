//! The client side of `add-checkpoint`: what a log runs to collect a
//! witness's cosignature on a new checkpoint.
//!
//! One [`WitnessClient`] per witness, kept for the life of the log: it holds
//! a pool of keep-alive connections (the spec asks clients to keep them),
//! and bounds every request by a timeout. The connector is a type parameter
//! so that an https connector (e.g. hyper-rustls over [`HttpConnector`]) can
//! be passed to [`WitnessClient::with_connector`] later; [`WitnessClient::new`]
//! speaks plain http, enough on loopback and inside a private network.
//!
//! The errors separate what a log does next: [`AddCheckpointError::Conflict`]
//! (409: retry with a proof from the witness's size; if that size is the
//! checkpoint's own, the witness holds another root there), another status
//! (a refusal, with the witness's message), or the witness not answering
//! ([`AddCheckpointError::Transport`], [`AddCheckpointError::Timeout`]).
//!
//! The cosignature lines are returned as received, checked only for their
//! form: whether they verify is for the caller, with the witness's key
//! (`ceasefire_core::cosignature::open_cosigned` on [`Cosignatures::add_to`]).

use std::time::Duration;

use bytes::Bytes;
use ceasefire_core::cosignature::add_signature_lines;
use ceasefire_core::error_chain::one_line;
use ceasefire_core::merkle::Hash;
use ceasefire_core::witness::{format_request, TLOG_SIZE_CONTENT_TYPE};
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long one request may take, connecting included, unless told
/// otherwise: a witness cosigns in milliseconds (one fsync), so ten seconds
/// means it is not coming.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read: cosignature lines are ~120 bytes each, and an
/// answer longer than this is not one.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How much of an error body is kept in an error.
const MAX_ERROR_BODY_CHARS: usize = 512;

/// The cosignature lines a witness returned (each `— <name> <base64>\n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosignatures(pub String);

impl Cosignatures {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lines, each with its newline.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.0.split_inclusive('\n')
    }

    /// `note` with these lines added (lines it already has are not added
    /// twice): what the caller opens with the witness's key.
    pub fn add_to(&self, note: &str) -> String {
        add_signature_lines(note, &self.0)
    }
}

/// Why a witness gave no cosignature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddCheckpointError {
    /// 409 with a `text/x.tlog.size` body: the witness's latest cosigned
    /// size for this log is `witness_size`. Either the old size sent was not
    /// it (retry with a proof from `witness_size`), or it was, with the
    /// checkpoint's size, and the witness holds another root at that size.
    #[error("the witness has cosigned this log up to size {witness_size} (409 Conflict)")]
    Conflict { witness_size: u64 },
    /// Any other non-200 answer, with the witness's message.
    #[error("the witness answered {status}: {body}")]
    Status { status: u16, body: String },
    /// A 200 (or 409) whose body the protocol does not allow.
    #[error("the witness's answer is malformed: {0}")]
    BadResponse(String),
    /// No answer: connection refused, reset, DNS, ...
    #[error("cannot reach the witness at {url}: {message}")]
    Transport { url: String, message: String },
    /// No answer within the timeout.
    #[error("the witness at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The base URL cannot name an endpoint.
    #[error("invalid witness URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
}

/// A client of one witness.
#[derive(Clone, Debug)]
pub struct WitnessClient<C = HttpConnector> {
    /// `{submission prefix}/add-checkpoint`.
    endpoint: Uri,
    /// Pooled keep-alive connections to the witness.
    client: Client<C, Full<Bytes>>,
    /// Bound on each request, from connecting to the last byte of the answer.
    timeout: Duration,
}

impl WitnessClient<HttpConnector> {
    /// A client of the witness whose submission prefix is `base_url`
    /// (`http://host:port`, or `http://host:port/prefix`), over plain http.
    pub fn new(base_url: &str) -> Result<Self, AddCheckpointError> {
        let mut connector = HttpConnector::new();
        // A request is two small writes (head, body); without NODELAY the
        // second can wait for a delayed ACK (40 ms on Linux).
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(DEFAULT_TIMEOUT));
        Self::with_connector(base_url, connector)
    }
}

impl<C> WitnessClient<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// A client over `connector` (which decides the schemes it can reach).
    pub fn with_connector(base_url: &str, connector: C) -> Result<Self, AddCheckpointError> {
        let invalid = |reason: &str| AddCheckpointError::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = base_url.trim_end_matches('/');
        let endpoint: Uri = format!("{base}/add-checkpoint")
            .parse()
            .map_err(|error: http::uri::InvalidUri| invalid(&error.to_string()))?;
        if endpoint.scheme().is_none() || endpoint.authority().is_none() {
            return Err(invalid("expected http://host:port[/prefix]"));
        }
        if endpoint.query().is_some() {
            return Err(invalid("a witness URL has no query"));
        }
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            endpoint,
            client,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same client with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &Uri {
        &self.endpoint
    }

    /// Submits `note` (a signed checkpoint) with the consistency proof from
    /// `old_size`, the size the caller believes the witness last cosigned
    /// (0 for none, with an empty proof), and returns the cosignature lines.
    pub async fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Hash],
        note: &str,
    ) -> Result<Cosignatures, AddCheckpointError> {
        let body = format_request(old_size, proof, note);
        tokio::time::timeout(self.timeout, self.send(body))
            .await
            .unwrap_or_else(|_| {
                Err(AddCheckpointError::Timeout {
                    url: self.endpoint.to_string(),
                    timeout: self.timeout,
                })
            })
    }

    async fn send(&self, body: String) -> Result<Cosignatures, AddCheckpointError> {
        let transport = |message: String| AddCheckpointError::Transport {
            url: self.endpoint.to_string(),
            message,
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| transport(error.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| transport(one_line(&error)))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    AddCheckpointError::BadResponse(format!(
                        "the answer is longer than {MAX_RESPONSE_BYTES} bytes"
                    ))
                } else {
                    transport(one_line(&*error))
                }
            })?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        match status {
            StatusCode::OK => cosignatures(&text),
            StatusCode::CONFLICT if is_tlog_size(content_type.as_deref()) => {
                let size = text
                    .strip_suffix('\n')
                    .filter(|size| {
                        !size.is_empty()
                            && size.bytes().all(|b| b.is_ascii_digit())
                            && (*size == "0" || !size.starts_with('0'))
                    })
                    .and_then(|size| size.parse().ok())
                    .ok_or_else(|| {
                        AddCheckpointError::BadResponse(format!(
                            "a 409 size body must be a decimal and a newline, got {:?}",
                            excerpt(&text)
                        ))
                    })?;
                Err(AddCheckpointError::Conflict { witness_size: size })
            }
            _ => Err(AddCheckpointError::Status {
                status: status.as_u16(),
                body: excerpt(text.trim_end()),
            }),
        }
    }
}

/// The media type without parameters, compared as the spec names it.
fn is_tlog_size(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(TLOG_SIZE_CONTENT_TYPE))
}

/// A 200 body: one or more lines, each starting with the em dash and a
/// space and ending in a newline.
fn cosignatures(text: &str) -> Result<Cosignatures, AddCheckpointError> {
    let well_formed = !text.is_empty()
        && text.ends_with('\n')
        && text
            .split_inclusive('\n')
            .all(|line| line.starts_with("\u{2014} ") && line.len() > "\u{2014} \n".len());
    if !well_formed {
        return Err(AddCheckpointError::BadResponse(format!(
            "a 200 body must be note signature lines, got {:?}",
            excerpt(text)
        )));
    }
    Ok(Cosignatures(text.to_owned()))
}

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_built_from_the_prefix() {
        let client = WitnessClient::new("http://127.0.0.1:7380").unwrap();
        assert_eq!(client.endpoint(), "http://127.0.0.1:7380/add-checkpoint");
        let client = WitnessClient::new("http://w.example:80/witness/").unwrap();
        assert_eq!(
            client.endpoint(),
            "http://w.example:80/witness/add-checkpoint"
        );
        for bad in ["", "127.0.0.1:7380", "http://", "http://h/a?b", "not a url"] {
            assert!(
                matches!(
                    WitnessClient::new(bad),
                    Err(AddCheckpointError::InvalidUrl { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_signature_lines_are_cosignatures() {
        let line = "\u{2014} w.example AAAA\n";
        assert!(cosignatures(line).is_ok());
        assert!(cosignatures(&format!("{line}{line}")).is_ok());
        for bad in [
            "",
            "\u{2014} w.example AAAA",
            "- w AAAA\n",
            "\u{2014} \n",
            "x\n",
        ] {
            assert!(cosignatures(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_size_media_type_is_matched_without_parameters() {
        assert!(is_tlog_size(Some("text/x.tlog.size")));
        assert!(is_tlog_size(Some("text/x.tlog.size; charset=utf-8")));
        assert!(!is_tlog_size(Some("text/plain")));
        assert!(!is_tlog_size(None));
    }
}
