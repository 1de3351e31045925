//! Request latency per RPC, measured in one place: a tower layer around
//! every service the gRPC port serves (ours, health, reflection).
//!
//! A call is timed from its request reaching the layer to the end of its
//! response: the trailers that carry its `grpc-status` (for a stream, the
//! end of the stream), or the response dropped unfinished (the client went
//! away: `Cancelled`). It is then observed once in
//! [`Metrics::rpc_duration`] under its method and status code name.
//!
//! The method label is bounded: a path that names no method of the served
//! protos (read from their descriptor sets) is counted as `unknown`, so a
//! client sending made-up paths cannot grow the metrics without bound.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use prost::Message;

use crate::metrics::{Metrics, RpcLabels};

/// The label of a path that names no served method.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Every method the gRPC port serves, as `package.Service/Method`.
fn served_methods() -> HashSet<String> {
    let sets: [&[u8]; 4] = [
        ceasefire_grpc::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = HashSet::new();
    for bytes in sets {
        // Descriptor sets compiled into the binary: one that does not
        // decode would be a build fault, and costs only its labels.
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    let service = service.name();
                    methods.insert(if package.is_empty() {
                        format!("{service}/{}", method.name())
                    } else {
                        format!("{package}.{service}/{}", method.name())
                    });
                }
            }
        }
    }
    methods
}

/// Times every call of the services it wraps.
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<Metrics>,
    /// The method labels allowed (see the module doc).
    methods: Arc<HashSet<String>>,
}

impl RpcMetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> RpcMetricsLayer {
        RpcMetricsLayer {
            metrics,
            methods: Arc::new(served_methods()),
        }
    }
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service whose calls are timed by [`RpcMetricsLayer`].
#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    layer: RpcMetricsLayer,
}

impl<S, RequestBody, ResponseBody> tower_service::Service<http::Request<RequestBody>>
    for RpcMetrics<S>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TimedBody<ResponseBody>>;
    type Error = S::Error;
    type Future = Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().trim_start_matches('/');
        let method = if self.layer.methods.contains(path) {
            path.to_string()
        } else {
            UNKNOWN_METHOD.to_string()
        };
        let metrics = self.layer.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // A refusal is "trailers-only": its status is in the headers.
            let code = grpc_status(response.headers());
            Ok(response.map(|body| TimedBody {
                body,
                timer: Some(Timer {
                    metrics,
                    method,
                    started,
                    code,
                }),
            }))
        })
    }
}

/// One call's measurement, observed when its response ends.
struct Timer {
    metrics: Arc<Metrics>,
    method: String,
    started: Instant,
    /// The status code, once the headers or trailers have given it.
    code: Option<tonic::Code>,
}

impl Timer {
    fn observe(self) {
        self.metrics
            .rpc_duration
            .get_or_create(&RpcLabels {
                method: self.method,
                // As the submissions metric names codes: "Ok", "InvalidArgument".
                code: format!("{:?}", self.code.unwrap_or(tonic::Code::Cancelled)),
            })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The code of a `grpc-status` header or trailer.
fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?;
    Some(tonic::Code::from_bytes(value.as_bytes()))
}

pin_project_lite::pin_project! {
    /// A response body that observes its call's duration when it ends or
    /// is dropped, whichever comes first.
    pub struct TimedBody<B> {
        #[pin]
        body: B,
        timer: Option<Timer>,
    }

    impl<B> PinnedDrop for TimedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(timer) = this.project().timer.take() {
                timer.observe();
            }
        }
    }
}

impl<B: Body> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.body.poll_frame(context));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(timer) = this.timer.as_mut() {
                        timer.code = grpc_status(trailers).or(timer.code);
                    }
                    // The trailers end a gRPC response.
                    if let Some(timer) = this.timer.take() {
                        timer.observe();
                    }
                }
            }
            // The end, or a failed body (observed on drop, as cancelled
            // unless the headers had a status).
            None => {
                if let Some(timer) = this.timer.take() {
                    timer.observe();
                }
            }
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_the_served_services_has_a_label_and_nothing_else() {
        let methods = served_methods();
        for method in [
            "ceasefire.v1.Ledger/Submit",
            "ceasefire.v1.Ledger/GetCheckpoint",
            "ceasefire.v1.Compliance/Subscribe",
            "grpc.health.v1.Health/Check",
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(methods.contains(method), "{method} has no label");
        }
        assert!(!methods.contains("ceasefire.v1.Ledger/Made-up"));
        assert!(!methods.contains(UNKNOWN_METHOD));
    }
}
