//! What a request may do: the route table and its matching, a route's claim requirements, its
//! CORS and its RFC 9728 metadata (policy the pipeline consults when it decides).

pub mod cors;
pub mod metadata;
pub mod routes;

pub use routes::{Route, RouteTable};
