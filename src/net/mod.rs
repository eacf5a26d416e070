//! I/O building blocks shared by both sides of the gateway: deadlines for waits on a peer and
//! an idle timeout for connections someone else drives.

pub mod deadline;

pub use deadline::{Deadline, IdleIo};
