//! The runtime built from a config and keys, and its reload.

pub mod reload;
pub mod tls;
