//! The client-facing protocol front-ends.

pub mod body;
pub mod h1;
pub mod h2;
