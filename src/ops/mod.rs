//! What operators see: metrics, the access log and where log lines go.

pub mod access;
pub mod logs;
pub mod metrics;
