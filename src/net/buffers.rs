//! Per-thread pools of buffers, so that a request allocates none in the steady state and an
//! idle connection holds none: a connection takes a read buffer when bytes arrive and gives it
//! back when it has nothing buffered.

use std::cell::RefCell;

/// Size of a connection's read buffer.
pub const INPUT: usize = 8 * 1024;
/// Most buffers of each kind a thread keeps.
const KEEP: usize = 256;

thread_local! {
    static INPUTS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    static OUTS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A read buffer of [`INPUT`] bytes.
pub fn take_in() -> Box<[u8]> {
    INPUTS
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; INPUT].into_boxed_slice())
}

/// Gives a read buffer back (only ones of [`INPUT`] bytes are kept).
pub fn give_in(buf: Box<[u8]>) {
    if buf.len() == INPUT {
        INPUTS.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(buf);
            }
        });
    }
}

/// An empty output buffer.
pub fn take_out() -> Vec<u8> {
    OUTS.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(1024))
}

/// Gives an output buffer back (large ones are dropped).
pub fn give_out(mut buf: Vec<u8>) {
    if buf.capacity() > 0 && buf.capacity() <= 64 * 1024 {
        buf.clear();
        OUTS.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(buf);
            }
        });
    }
}
