//! I/O building blocks shared by both sides of the gateway: deadlines for waits on a peer, an
//! idle timeout for connections someone else drives, pooled buffers, the process-wide budget of
//! bytes held for peers that do not read, the drain signal and listening sockets.

pub mod budget;
pub mod buffers;
pub mod closing;
pub mod deadline;
pub mod listen;

pub use budget::{Budget, Reserved};
pub use closing::Closing;
pub use deadline::{Deadline, IdleIo};
