//! Where log lines go: standard output, written by one writer thread (`jwtgate-logs`) in
//! batches. A request thread formats its line and appends it to a shared queue (a lock held for
//! a copy); the writer takes whatever is queued at once and writes it out in one `write`. It
//! waits up to [`GATHER`] after the first line of a batch for more, so that a busy gateway
//! writes a few large batches a second instead of one `write` (and a thread wake-up) per line;
//! a line reaches standard output at most that long after it was logged.
//!
//! Loss policy: when nobody reads standard output (a full pipe, a stalled log shipper), the
//! writer thread blocks, never a request. Up to [`QUEUE_LINES`] lines (and [`QUEUE_BYTES`]),
//! the batch being written included, wait in memory; after that new lines are dropped, and
//! counted: `jwtgate_log_lines_dropped_total`. Lines still queued when the process exits are
//! written out first (for at most [`EXIT_WAIT`]).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Most log lines waiting for standard output before new ones are dropped.
pub const QUEUE_LINES: usize = 16 * 1024;

/// Most bytes of log lines in memory (long request paths make long lines).
pub const QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// How long the writer waits, after the first line of a batch, for more lines.
pub const GATHER: Duration = Duration::from_millis(10);

/// Queued bytes at which the writer stops gathering and writes at once.
const WRITE_AT: usize = 64 * 1024;

/// How long an exit waits for queued log lines to be written.
pub const EXIT_WAIT: Duration = Duration::from_secs(2);

/// The lines between the request threads and the writer thread.
#[derive(Debug, Default)]
pub struct Queue {
    state: Mutex<State>,
    /// Signals the writer: lines arrived, or the queue closed.
    arrived: Condvar,
    /// Signals a flush: the writer has written everything taken so far.
    written: Condvar,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<u8>,
    /// Lines in memory: pending, and the batch being written.
    lines: usize,
    /// The batch being written: its lines and bytes (none while the writer is not writing:
    /// a batch is never empty).
    taken: (usize, usize),
    /// The writer waits on `arrived` (so a line must wake it).
    waiting: bool,
    closed: bool,
}

impl State {
    /// Bytes in memory: pending, and the batch being written.
    fn bytes(&self) -> usize {
        self.pending.len() + self.taken.1
    }

    /// The writer is writing a batch it took.
    fn writing(&self) -> bool {
        self.taken.1 > 0
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `bytes`, which hold `lines` whole lines, or drops them when the queue is full
    /// (or closed: the process is exiting).
    pub fn push(&self, bytes: &[u8], lines: usize) {
        let mut state = self.lock();
        if state.lines + lines > QUEUE_LINES
            || state.bytes() + bytes.len() > QUEUE_BYTES
            || state.closed
        {
            drop(state);
            self.dropped.fetch_add(lines as u64, Ordering::Relaxed);
            return;
        }
        let first = state.pending.is_empty();
        state.pending.extend_from_slice(bytes);
        state.lines += lines;
        // The writer needs waking for the first line of a batch and when it should stop
        // gathering; otherwise it is awake already, or will look when it is done writing.
        if state.waiting && (first || state.pending.len() >= WRITE_AT) {
            state.waiting = false;
            self.arrived.notify_one();
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The writer thread's loop: takes every queued line and writes it to `out`, until the
    /// queue is closed and empty.
    pub fn run(&self, out: &mut dyn Write) {
        let mut batch = Vec::new();
        loop {
            {
                let mut state = self.lock();
                while state.pending.is_empty() && !state.closed {
                    state.waiting = true;
                    state = self.arrived.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                // Gather: more lines usually follow the first on a busy gateway.
                let until = Instant::now() + GATHER;
                while !state.closed && state.pending.len() < WRITE_AT {
                    let Some(left) = until.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    state.waiting = true;
                    state = self
                        .arrived
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                state.waiting = false;
                if state.pending.is_empty() && state.closed {
                    return;
                }
                std::mem::swap(&mut batch, &mut state.pending);
                state.taken = (state.lines, batch.len());
            }
            // A failed write (stdout closed) loses the batch, as it would lose any later one.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            // Keep a batch's worth of capacity, not a burst's.
            batch.clear();
            batch.shrink_to(WRITE_AT * 2);
            {
                let mut state = self.lock();
                let (lines, _) = std::mem::take(&mut state.taken);
                state.lines -= lines;
            }
            self.written.notify_all();
        }
    }

    /// Closes the queue (the writer writes what is queued, then stops) and waits at most
    /// `wait` for that. Returns whether everything was written.
    pub fn close(&self, wait: Duration) -> bool {
        let mut state = self.lock();
        state.closed = true;
        self.arrived.notify_one();
        let until = Instant::now() + wait;
        while !state.pending.is_empty() || state.writing() {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return false;
            };
            state = self
                .written
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

static QUEUE: OnceLock<Arc<Queue>> = OnceLock::new();

/// The process's queue, its writer thread started on first use.
fn queue() -> &'static Arc<Queue> {
    QUEUE.get_or_init(|| {
        let queue = Arc::new(Queue::default());
        let writer = Arc::clone(&queue);
        let started = std::thread::Builder::new()
            .name("jwtgate-logs".into())
            .spawn(move || writer.run(&mut io::stdout()));
        if started.is_err() {
            // No thread, no logs: keep the queue closed so that lines are dropped, not kept.
            queue.lock().closed = true;
        }
        queue
    })
}

/// Queues `bytes` (`lines` whole lines) for standard output.
pub fn write_lines(bytes: &[u8], lines: usize) {
    queue().push(bytes, lines);
}

/// The `tracing-subscriber` writer for standard output: each event is one line, queued as it
/// is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_lines(buf, 1);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MakeWriter<'_> for Stdout {
    type Writer = Stdout;

    fn make_writer(&self) -> Stdout {
        Stdout
    }
}

/// Lines dropped because standard output was not taking them fast enough.
pub fn dropped_lines() -> u64 {
    QUEUE.get().map_or(0, |q| q.dropped())
}

/// Writes out what is queued and stops the writer thread (call before the process exits),
/// waiting at most [`EXIT_WAIT`]: when standard output is blocked, the rest is lost rather than
/// the exit.
pub fn flush() {
    if let Some(queue) = QUEUE.get() {
        queue.close(EXIT_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that records what it was given, and can be held blocked.
    #[derive(Clone, Default)]
    struct Sink {
        got: Arc<Mutex<Vec<Vec<u8>>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.got.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn start(queue: &Arc<Queue>, sink: &Sink) -> std::thread::JoinHandle<()> {
        let (queue, mut sink) = (Arc::clone(queue), sink.clone());
        std::thread::spawn(move || queue.run(&mut sink))
    }

    #[test]
    fn lines_arrive_whole_in_order_and_in_few_writes() {
        let queue = Arc::new(Queue::default());
        let sink = Sink::default();
        let writer = start(&queue, &sink);
        for i in 0..1000 {
            let line = format!("line {i}\n");
            queue.push(line.as_bytes(), 1);
        }
        assert!(queue.close(Duration::from_secs(5)));
        writer.join().unwrap();
        let writes = sink.got.lock().unwrap();
        let all: Vec<u8> = writes.concat();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(all).unwrap(), expected);
        // Gathered into batches, not one write per line.
        assert!(writes.len() < 100, "{} writes", writes.len());
        assert_eq!(queue.dropped(), 0);
    }

    #[test]
    fn a_line_alone_is_written_without_waiting_for_more() {
        let queue = Arc::new(Queue::default());
        let sink = Sink::default();
        let writer = start(&queue, &sink);
        queue.push(b"one\n", 1);
        let until = Instant::now() + Duration::from_secs(5);
        while sink.got.lock().unwrap().is_empty() {
            assert!(Instant::now() < until, "the line was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.got.lock().unwrap().concat(), b"one\n");
        assert!(queue.close(Duration::from_secs(5)));
        writer.join().unwrap();
    }

    #[test]
    fn a_blocked_output_drops_and_counts_lines_beyond_the_queue_and_bounds_the_exit() {
        let queue = Arc::new(Queue::default());
        let sink = Sink::default();
        let blocked = sink.gate.lock().unwrap();
        let writer = start(&queue, &sink);
        // The writer takes the first line and blocks writing it; then the queue fills.
        queue.push(b"first\n", 1);
        while !queue.lock().writing() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The line being written counts: QUEUE_LINES - 1 more fit.
        for _ in 0..QUEUE_LINES + 10 {
            queue.push(b"x\n", 1);
        }
        assert_eq!(queue.dropped(), 11);
        assert_eq!(queue.lock().lines, QUEUE_LINES);
        // The exit gives up on a blocked output.
        let began = Instant::now();
        assert!(!queue.close(Duration::from_millis(100)));
        assert!(began.elapsed() < Duration::from_secs(2));
        // Unblocked, the writer writes what was queued and stops.
        drop(blocked);
        writer.join().unwrap();
        let all = sink.got.lock().unwrap().concat();
        assert_eq!(all.len(), "first\n".len() + 2 * (QUEUE_LINES - 1));
        assert_eq!(queue.lock().bytes(), 0);
    }

    #[test]
    fn long_lines_are_bounded_by_bytes() {
        let queue = Arc::new(Queue::default());
        let sink = Sink::default();
        let blocked = sink.gate.lock().unwrap();
        let writer = start(&queue, &sink);
        let long = vec![b'p'; 1024 * 1024];
        for _ in 0..40 {
            queue.push(&long, 1);
        }
        assert!(queue.lock().bytes() <= QUEUE_BYTES);
        assert_eq!(queue.dropped(), 40 - (QUEUE_BYTES / long.len()) as u64);
        drop(blocked);
        assert!(queue.close(Duration::from_secs(5)));
        writer.join().unwrap();
    }
}
