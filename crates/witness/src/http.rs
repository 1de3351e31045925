//! The witness's HTTP face: `POST {prefix}/add-checkpoint` and nothing else.
//!
//! Answers, as C2SP tlog-witness gives them:
//! - 200 `text/plain`: the cosignature lines;
//! - 409 `text/x.tlog.size`: the witness's tree size for the log, in
//!   decimal, and a newline (the reason is logged, the body is the spec's);
//! - 400, 403, 404, 422 `text/plain`: one line saying what is wrong;
//! - 413 `text/plain`: a body longer than
//!   [`MAX_REQUEST_BYTES`](ceasefire_core::witness::MAX_REQUEST_BYTES) (the
//!   largest note the witness opens plus a full proof) is refused before it
//!   is read whole, so a client cannot make the witness buffer more;
//! - 503 `text/plain`: the log's state could not be recorded (see
//!   [`crate::service`]);
//! - 404 for any other path, 405 (with `Allow: POST`) for another method.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ceasefire_core::witness::{Refusal, MAX_REQUEST_BYTES, TLOG_SIZE_CONTENT_TYPE};
use http::{header, HeaderValue, StatusCode};

use crate::service::{Answer, Witness};

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The router of a witness whose endpoint is `{url_prefix}/add-checkpoint`.
pub fn router(witness: Arc<Witness>, url_prefix: &str) -> Router {
    Router::new()
        .route(
            &format!("{url_prefix}/add-checkpoint"),
            post(add_checkpoint).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .with_state(witness)
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN))],
        message,
    )
        .into_response()
}

async fn not_found(request: Request) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {}; a witness serves POST <prefix>/add-checkpoint",
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> Response {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed here: add-checkpoint takes POST",
            request.method()
        ),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

fn too_large() -> Response {
    tracing::info!(status = 413, "refused a request body over the limit");
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the {MAX_REQUEST_BYTES}-byte limit"),
    )
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, request: Request) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_REQUEST_BYTES as u64) {
        return too_large();
    }
    let body = match axum::body::to_bytes(request.into_body(), MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(error) if is_length_limit(&error) => return too_large(),
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {error}"),
            )
        }
    };
    respond(witness.add_checkpoint(&body).await)
}

/// Whether reading the body stopped at the size limit (rather than at a
/// broken connection).
fn is_length_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = current.source();
    }
    false
}

fn respond(answer: Answer) -> Response {
    match answer {
        Answer::Cosigned(lines) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN))],
            lines,
        )
            .into_response(),
        Answer::Refused(refusal) => refused(&refusal),
        Answer::Unavailable(reason) => text(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

fn refused(refusal: &Refusal) -> Response {
    let status =
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match refusal.witness_size() {
        Some(size) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, TLOG_SIZE_CONTENT_TYPE)
            .body(Body::from(format!("{size}\n")))
            .unwrap_or_else(|_| status.into_response()),
        None => text(status, refusal.to_string()),
    }
}
