//! I/O building blocks shared by both sides of the gateway: deadlines for waits on a peer, an
//! idle timeout for connections someone else drives, pooled buffers, the drain signal and
//! listening sockets.

pub mod buffers;
pub mod closing;
pub mod deadline;
pub mod listen;

pub use closing::Closing;
pub use deadline::{Deadline, IdleIo};
