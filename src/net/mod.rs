//! I/O building blocks shared by both sides of the gateway: deadlines for waits on a peer, an
//! idle timeout for connections someone else drives, pooled buffers, and the drain signal.

pub mod buffers;
pub mod closing;
pub mod deadline;

pub use closing::Closing;
pub use deadline::{Deadline, IdleIo};
