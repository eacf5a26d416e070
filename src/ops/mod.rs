//! What operators see: metrics and log output.

pub mod logs;
pub mod metrics;
