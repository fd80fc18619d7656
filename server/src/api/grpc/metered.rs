//! gRPC requests in the metrics, by method and code, with their duration:
//! from the request to the response's end, so for a stream its whole life.
//! The code is the `grpc-status` of the response's headers (an error
//! answered at once) or of its trailers; a response dropped before its end
//! (the client went away) counts as `Cancelled`. Paths that name no method
//! of the server's services count under `unknown`, so callers cannot grow
//! the labels.

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

use crate::metrics::Metrics;

/// A tower layer recording every request of the gRPC server.
#[derive(Clone)]
pub struct MeterLayer {
    metrics: Arc<Metrics>,
    known: Arc<HashSet<String>>,
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
        }
    }
}

impl<S> tower::Layer<S> for MeterLayer {
    type Service = Meter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Meter {
            inner,
            metrics: self.metrics.clone(),
            known: self.known.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Meter<S> {
    inner: S,
    metrics: Arc<Metrics>,
    known: Arc<HashSet<String>>,
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

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/');
        let method = if self.known.contains(path) {
            path.to_string()
        } else {
            "unknown".to_string()
        };
        let metrics = self.metrics.clone();
        let start = Instant::now();
        // The clone is not ready; the instance that was is used.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            let code = grpc_status(response.headers());
            let (parts, body) = response.into_parts();
            let body = MeteredBody {
                inner: body,
                record: Some(Record {
                    metrics,
                    method,
                    start,
                    code,
                }),
            };
            Ok(http::Response::from_parts(
                parts,
                tonic::body::Body::new(body),
            ))
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(tonic::Code::from_i32)
}

/// What is recorded when the response ends.
struct Record {
    metrics: Arc<Metrics>,
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
