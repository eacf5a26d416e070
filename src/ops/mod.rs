//! What operators see: metrics, the access log and where log lines go, request IDs and traces.

pub mod access;
pub mod logs;
pub mod metrics;
pub mod otlp;
pub mod request_id;
pub mod trace;
