//! gRPC requests in the metrics, by method and code, with their duration:
//! from the request to the response's end, so for a stream its whole life.
//! The code is the `grpc-status` of the response's headers (an error
//! answered at once) or of its trailers; a response dropped before its end
//! (the client went away) counts as `Cancelled`. Paths that name no method
//! of the server's services count under `unknown`, so callers cannot grow
//! the labels.
//!
//! Each request runs in a `request` span with its `request_id` (the
//! caller's `x-request-id` when it is a sane one, else a new one; sent back
//! in the response's headers), its `method` and, once [`Authorize`] knows
//! it, its `user`: JSON logs carry them on every line logged for it,
//! including by the provisioning it starts.
//!
//! Refused calls (PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED)
//! go to the audit trail here too, with who [`Authorize`] found; but the
//! calls whose handlers record their own outcome with the session they
//! concern ([`SELF_AUDITED`]) only when [`Authorize`] refused them.
//!
//! [`Authorize`]: crate::api::grpc::auth::Authorize

use std::{
    collections::HashSet,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures_util::future::BoxFuture;
use http_body::{Body as _, Frame};
use prost::Message;
use tracing::Instrument;

use crate::{
    api::grpc::auth::Seen,
    audit::{Act, Actor, Audit, code_name, is_refusal},
    metrics::Metrics,
};

/// Methods whose handlers record their outcome in the audit trail.
pub const SELF_AUDITED: &[&str] = &[
    "daas.v1.DesktopService/CreateSession",
    "daas.v1.DesktopService/DestroySession",
];

/// A tower layer recording every request of the gRPC server.
#[derive(Clone)]
pub struct MeterLayer {
    metrics: Arc<Metrics>,
    known: Arc<HashSet<String>>,
    audit: Option<Audit>,
}

impl MeterLayer {
    /// `descriptors`: the encoded file descriptor sets of the services
    /// served, whose methods are the labels (`package.Service/Method`).
    pub fn new(metrics: Arc<Metrics>, descriptors: &[&[u8]]) -> Self {
        let mut known = HashSet::new();
        for bytes in descriptors {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*bytes) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let service_name = service.name.unwrap_or_default();
                    for method in service.method {
                        known.insert(format!(
                            "{package}.{service_name}/{}",
                            method.name.unwrap_or_default()
                        ));
                    }
                }
            }
        }
        MeterLayer {
            metrics,
            known: Arc::new(known),
            audit: None,
        }
    }

    /// Records refused calls in `audit` too.
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = Some(audit);
        self
    }
}

impl<S> tower::Layer<S> for MeterLayer {
    type Service = Meter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Meter {
            inner,
            metrics: self.metrics.clone(),
            known: self.known.clone(),
            audit: self.audit.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Meter<S> {
    inner: S,
    metrics: Arc<Metrics>,
    known: Arc<HashSet<String>>,
    audit: Option<Audit>,
}

impl<S, B> tower::Service<http::Request<B>> for Meter<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/');
        let method = if self.known.contains(path) {
            path.to_string()
        } else {
            "unknown".to_string()
        };
        let request_id = request_id(request.headers());
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %method,
            user = tracing::field::Empty,
        );
        let metrics = self.metrics.clone();
        let audit = self.audit.clone().map(|audit| {
            let seen = Seen::default();
            request.extensions_mut().insert(seen.clone());
            (audit, seen)
        });
        let start = Instant::now();
        // The clone is not ready; the instance that was is used.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                let response = inner.call(request).await?;
                let code = grpc_status(response.headers());
                let (mut parts, body) = response.into_parts();
                if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                    parts.headers.insert(REQUEST_ID, value);
                }
                let body = MeteredBody {
                    inner: body,
                    record: Some(Record {
                        metrics,
                        audit,
                        method,
                        start,
                        code,
                    }),
                };
                Ok(http::Response::from_parts(
                    parts,
                    tonic::body::Body::new(body),
                ))
            }
            .instrument(span),
        )
    }
}

/// The header of a request's id, both ways.
const REQUEST_ID: &str = "x-request-id";

/// The caller's request id when it is 1-64 of `[A-Za-z0-9._:-]`, else a
/// new one.
fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(tonic::Code::from_i32)
}

/// What is recorded when the response ends.
struct Record {
    metrics: Arc<Metrics>,
    audit: Option<(Audit, Seen)>,
    method: String,
    start: Instant,
    code: Option<tonic::Code>,
}

impl Record {
    fn finish(self, ended: bool) {
        let code = match (self.code, ended) {
            (Some(code), _) => code,
            (None, true) => tonic::Code::Unknown,
            (None, false) => tonic::Code::Cancelled,
        };
        self.metrics
            .grpc_request(&self.method, code, self.start.elapsed().as_secs_f64());
        let Some((audit, seen)) = self.audit else {
            return;
        };
        let Some(seen) = seen.get() else {
            return;
        };
        if is_refusal(code) && (!seen.admitted || !SELF_AUDITED.contains(&self.method.as_str())) {
            let act = Act {
                result: code_name(code).into(),
                ..Act::new(&self.method)
            };
            audit.spawn_record(Actor::caller(seen.caller.as_ref(), &seen.origin), act);
        }
    }
}

struct MeteredBody {
    inner: tonic::body::Body,
    record: Option<Record>,
}

impl http_body::Body for MeteredBody {
    type Data = <tonic::body::Body as http_body::Body>::Data;
    type Error = <tonic::body::Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(record) = self.record.as_mut()
                {
                    record.code = grpc_status(trailers).or(record.code);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(record) = self.record.take() {
                    record.finish(true);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            // Trailers seen: the end was reached, the last poll did not come.
            let ended = record.code.is_some() || self.inner.is_end_stream();
            record.finish(ended);
        }
    }
}
