//! What a request may do: the route table and its matching, a route's claim requirements
//! (policy the pipeline consults when it decides).

pub mod routes;

pub use routes::{Route, RouteTable};
