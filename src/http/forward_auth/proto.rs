//! Envoy's ext_authz API (`envoy.service.auth.v3`) and what it imports, as prost messages
//! compiled from the vendored protos in `proto/` by `build.rs`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/protos.rs"));
