//! The whole state an idle keep-alive client connection keeps in the gateway, counted in heap
//! bytes by a counting allocator: its task and future, its socket's registration, its timers,
//! whatever buffers and records a request left behind. One request on each of 500 connections,
//! then nothing: the heap may have grown by at most 2 KiB a connection (issue 11's bound; the
//! process's RSS per connection, allocator overhead included, is measured by
//! `../shared/bench/peers/idle.py` and `benches/idle-memory.sh`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

/// Heap bytes allocated and not yet freed, by anyone in this process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
workers = 1

[[route]]
path = "/"
upstream = "{upstream}"
auth = "public"
"#;

/// An upstream on plain threads (nothing on the heap per request): `200 ok` to every request,
/// keep-alive.
fn upstream() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = listener.accept() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut have = 0;
                loop {
                    match s.read(&mut buf[have..]) {
                        Ok(n) if n > 0 => have += n,
                        _ => return,
                    }
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// `n` client connections, each having made one request and been answered, still open
/// (plain sockets: nothing on this process's heap for them).
fn idle_clients(gateway: std::net::SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(gateway).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap();
            let mut got = [0u8; 512];
            let mut have = 0;
            while !got[..have].ends_with(b"\r\n\r\nok") {
                let read = s.read(&mut got[have..]).unwrap();
                assert!(read > 0, "the gateway closed the connection");
                have += read;
            }
            assert!(got.starts_with(b"HTTP/1.1 200"));
            s
        })
        .collect()
}

/// Runs the gateway's runtime until it has `open` client connections and they have settled:
/// three 20 ms stretches in a row in which the runtime ran out of work (it parked) and nothing
/// was allocated or freed. What is measured then is the connections' settled state.
fn settle(rt: &tokio::runtime::Runtime, gw: &common::Gateway, open: i64) {
    rt.block_on(async {
        common::until("the client connections to be open or closed", || {
            gw.gateway.metrics.open_connections.get() == open
        })
        .await;
        let metrics = tokio::runtime::Handle::current().metrics();
        let give_up = std::time::Instant::now() + common::PATIENCE;
        let mut quiet = 0;
        while quiet < 3 {
            let (parks, live) = (metrics.worker_park_count(0), LIVE.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(20)).await;
            let idle = metrics.worker_park_count(0) > parks;
            quiet = if idle && LIVE.load(Ordering::Relaxed) == live {
                quiet + 1
            } else {
                0
            };
            assert!(
                std::time::Instant::now() < give_up,
                "never: the connections settled"
            );
        }
    });
}

#[test]
fn an_idle_keep_alive_connection_keeps_at_most_2_kib() {
    const N: usize = 500;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let up = upstream();
    let gw = rt.block_on(common::Gateway::start(CONFIG, &format!("http://{up}")));
    let addr = gw.addr;
    // The clients run on a thread of their own while the gateway's runtime runs here.
    let run = |n: usize, keep: std::sync::mpsc::Receiver<()>| {
        let (done, clients_done) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let clients = idle_clients(addr, n);
            let _ = done.send(());
            // Held open until told.
            let _ = keep.recv();
            drop(clients);
        });
        rt.block_on(async { clients_done.await.unwrap() });
        // Let the connections settle into their idle wait.
        settle(&rt, &gw, n as i64);
    };
    // Warm up what is made once (the upstream connection and its pool, buffer pools, metric
    // handles, the runtime's structures), then close those connections.
    let (close_warm, warm_keep) = std::sync::mpsc::channel();
    run(20, warm_keep);
    drop(close_warm);
    settle(&rt, &gw, 0);

    let before = LIVE.load(Ordering::Relaxed);
    let (close, keep) = std::sync::mpsc::channel::<()>();
    run(N, keep);
    let after = LIVE.load(Ordering::Relaxed);
    let per_connection = (after - before) / N as isize;
    eprintln!("an idle keep-alive connection keeps {per_connection} heap bytes");
    assert!(
        per_connection <= 2048,
        "an idle keep-alive connection keeps {per_connection} heap bytes"
    );
    // And they are the connections' own: closed, the bytes go back.
    drop(close);
    settle(&rt, &gw, 0);
    let closed = LIVE.load(Ordering::Relaxed);
    assert!(
        (closed - before) / (N as isize) < 64,
        "{} bytes per connection stay after the connections closed",
        (closed - before) / N as isize
    );
}

/// A request waiting for an upstream connection (a burst, an upstream slow to accept) holds
/// neither the client's read buffer (8 KiB) nor its parsed fields: its head is already written
/// for the upstream, and that and the request's own state are all it keeps. The upstream here
/// never completes a connect: its accept queue is full, so the kernel drops the gateway's SYNs
/// and every request waits within `connect_timeout`.
#[test]
fn a_request_waiting_for_an_upstream_connection_holds_no_read_buffer() {
    const N: usize = 200;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (full, _fillers) = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let full = sock.listen(1).unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let connect = tokio::net::TcpStream::connect(full.local_addr().unwrap());
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
                fillers.push(s);
            }
        }
        (full, fillers)
    });
    let config = CONFIG.replace("workers = 1", "workers = 1\nconnect_timeout = \"60s\"");
    let upstream = format!("http://{}", full.local_addr().unwrap());
    let gw = rt.block_on(common::Gateway::start(&config, &upstream));
    let addr = gw.addr;
    // Warm up what is made once (buffer pools, metric handles, the runtime's structures) with
    // a few requests that wait the same way.
    let send = |n: usize, open: usize| {
        let (done, sent) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let clients: Vec<_> = (0..n)
                .map(|_| {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    s.write_all(
                        b"GET /wait HTTP/1.1\r\nHost: a\r\nX-Padding: 0123456789abcdef\r\n\r\n",
                    )
                    .unwrap();
                    s
                })
                .collect();
            let _ = done.send(clients);
        });
        let clients = rt.block_on(async { sent.await.unwrap() });
        settle(&rt, &gw, open as i64);
        clients
    };
    let warm = send(8, 8);
    let before = LIVE.load(Ordering::Relaxed);
    let waiting = send(N, N + 8);
    let after = LIVE.load(Ordering::Relaxed);
    let per_request = (after - before) / N as isize;
    eprintln!("a request waiting for an upstream connection holds {per_request} heap bytes");
    // Its connection's idle state (about 1.3 KiB) plus the request's (its request ID and trace
    // context included): below the 8 KiB read buffer alone.
    assert!(
        per_request <= 7 * 1024,
        "a request waiting for an upstream connection holds {per_request} heap bytes"
    );
    drop((warm, waiting));
}
