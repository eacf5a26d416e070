//! Per-thread pools of buffers, so that a request allocates none in the steady state and an
//! idle connection holds none: a client connection takes a read buffer when bytes arrive and
//! gives it back when it has nothing buffered; an upstream connection takes one for a response
//! and gives it back when it goes back to the pool.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Size of a client connection's read buffer.
pub const INPUT: usize = 8 * 1024;
/// Size of an upstream connection's read buffer (grown for larger response heads).
pub const UPSTREAM: usize = 16 * 1024;
/// Most buffers of each kind a thread keeps: enough for as many exchanges at once per thread
/// in the steady state; a burst beyond it allocates, and gives back to the allocator after.
const KEEP: usize = 64;

type Pool = RefCell<Vec<Box<[u8]>>>;

thread_local! {
    static INPUTS: Pool = const { RefCell::new(Vec::new()) };
    static UPSTREAMS: Pool = const { RefCell::new(Vec::new()) };
    static OUTS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take(pool: &'static LocalKey<Pool>, size: usize) -> Box<[u8]> {
    pool.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; size].into_boxed_slice())
}

fn give(pool: &'static LocalKey<Pool>, size: usize, buf: Box<[u8]>) {
    if buf.len() == size {
        pool.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(buf);
            }
        });
    }
}

/// A client read buffer of [`INPUT`] bytes.
pub fn take_in() -> Box<[u8]> {
    take(&INPUTS, INPUT)
}

/// Gives a client read buffer back (only ones of [`INPUT`] bytes are kept).
pub fn give_in(buf: Box<[u8]>) {
    give(&INPUTS, INPUT, buf);
}

/// An upstream read buffer of [`UPSTREAM`] bytes.
pub fn take_upstream() -> Box<[u8]> {
    take(&UPSTREAMS, UPSTREAM)
}

/// Gives an upstream read buffer back (only ones of [`UPSTREAM`] bytes are kept).
pub fn give_upstream(buf: Box<[u8]>) {
    give(&UPSTREAMS, UPSTREAM, buf);
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
