//! What a request may do: routes and their matching, path normalization.

pub mod path;
pub mod routes;
