//! A small OpenTelemetry collector for the tracing tests: OTLP over HTTP (protobuf, `POST
//! /v1/traces`) and over gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`),
//! both on the official definitions (the `opentelemetry-proto` crate). It keeps every span it
//! receives, and can be made slow (each export answered after a delay).

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One span as received, flattened for assertions.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// 2 = SERVER, 3 = CLIENT.
    pub kind: i32,
    /// Attributes as text (numbers in decimal).
    pub attributes: Vec<(String, String)>,
    /// 0 unset, 1 ok, 2 error.
    pub status: i32,
    /// The resource's `service.name`.
    pub service: String,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Span {
    /// The attribute `key`, as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Flattens an export request into spans.
fn spans_of(req: &ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(|a| text(&a.value))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                out.push(Span {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name.clone(),
                    kind: s.kind,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(&a.value)))
                        .collect(),
                    status: s.status.as_ref().map_or(0, |st| st.code),
                    service: service.clone(),
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                });
            }
        }
    }
    out
}

/// The collector (HTTP or gRPC), its spans, and how long it takes to answer.
pub struct Collector {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    /// Raw export bodies (to search for what must never be there).
    pub raw: Arc<Mutex<Vec<u8>>>,
    pub exports: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Grpc {
    spans: Arc<Mutex<Vec<Span>>>,
    raw: Arc<Mutex<Vec<u8>>>,
    exports: Arc<std::sync::atomic::AtomicUsize>,
    delay: Duration,
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        tokio::time::sleep(self.delay).await;
        let req = request.into_inner();
        self.raw.lock().unwrap().extend(req.encode_to_vec());
        self.spans.lock().unwrap().extend(spans_of(&req));
        self.exports
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// OTLP over HTTP on a loopback port; each export answered after `delay`.
    pub async fn http(delay: Duration) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let exports = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, r, e) = (spans.clone(), raw.clone(), exports.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, r, e) = (s.clone(), r.clone(), e.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (s, r, e) = (s.clone(), r.clone(), e.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            tokio::time::sleep(delay).await;
                            let status = match (path.as_str(), body) {
                                ("/v1/traces", Ok(body)) => {
                                    match ExportTraceServiceRequest::decode(body.clone()) {
                                        Ok(req) => {
                                            r.lock().unwrap().extend_from_slice(&body);
                                            s.lock().unwrap().extend(spans_of(&req));
                                            e.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                            200
                                        }
                                        Err(_) => 400,
                                    }
                                }
                                _ => 404,
                            };
                            let body = ExportTraceServiceResponse::default().encode_to_vec();
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Collector {
            addr,
            spans,
            raw,
            exports,
            task,
        }
    }

    /// OTLP over gRPC on a loopback port; each export answered after `delay`.
    pub async fn grpc(delay: Duration) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = Grpc {
            spans: Arc::new(Mutex::new(Vec::new())),
            raw: Arc::new(Mutex::new(Vec::new())),
            exports: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            delay,
        };
        let (spans, raw, exports) = (
            service.spans.clone(),
            service.raw.clone(),
            service.exports.clone(),
        );
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Collector {
            addr,
            spans,
            raw,
            exports,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of trace `trace_id`, once `n` of them have arrived (within 15 s).
    pub async fn trace(&self, trace_id: &str, n: usize) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got: Vec<Span> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if got.len() >= n {
                return got;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{} spans of trace {trace_id} arrived, not {n}; all: {:#?}",
                    got.len(),
                    self.spans()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
