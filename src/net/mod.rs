//! I/O building blocks shared by both sides of the gateway: deadlines for waits on a peer, an
//! idle timeout for connections someone else drives, and pooled buffers.

pub mod buffers;
pub mod deadline;

pub use deadline::{Deadline, IdleIo};
