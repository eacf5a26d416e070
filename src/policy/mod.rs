//! What a request may do: the route table and its matching, a route's claim requirements.
//! CORS, rate limits and revocation go here too.

pub mod routes;

pub use routes::{Route, RouteTable};
