//! The gateway's binary as a process of its own, for tests that need one (its exit code, its
//! log lines, its memory): [`jwtgate`] builds the command, [`Running`] collects its output.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_jwtgate");

/// A command with a clean environment: no key variables from the developer's shell.
pub fn jwtgate(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_remove("JWT_SECRET_KEY")
        .env_remove("JWT_SECRET_KEY_FILE")
        .env_remove("JWT_SECRET_KEY_PREVIOUS")
        .env_remove("JWT_SECRET_KEY_PREVIOUS_FILE")
        .env_remove("JWT_SECRET_KEY_DIR")
        .env_remove("JWTGATE_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// A running binary whose stdout (the logs) is collected by a thread.
pub struct Running {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            for line in s.lines() {
                let _ = tx2.send(line.to_owned());
            }
        });
        Running {
            child,
            lines: rx,
            log: Vec::new(),
        }
    }

    /// Returns the first line (seen or still to come, waiting at most 10 s) containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.log.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
        panic!("no line with {needle:?}; got:\n{}", self.log.join("\n"));
    }

    /// SIGTERM, then the exit code (within 10 s) and the rest of the output.
    pub fn terminate(self) -> (Option<i32>, Vec<String>) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.terminate_waiting()
    }

    /// The exit code (within 10 s) and the rest of the output, without sending a signal.
    pub fn terminate_waiting(mut self) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let code = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.log.push(line);
        }
        (code, self.log)
    }
}

/// Sends `head` (a request head without its final empty line; `Connection: close` is added)
/// on a new connection to the binary at `addr`, and returns the whole answer (waiting at most
/// [`super::PATIENCE`] for it).
pub fn exchange(addr: &str, head: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(super::PATIENCE)).unwrap();
    s.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of an HTTP/1.1 answer (0 when there is none).
pub fn status(answer: &str) -> u16 {
    answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

pub fn listen_addr(line: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    v["listen"].as_str().unwrap().to_owned()
}

impl Running {
    /// The admin listener's address, from its `admin listening` line (JSON logs).
    pub fn admin_addr(&mut self) -> String {
        let line = self.wait_for("\"admin listening\"");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        v["admin_listen"].as_str().unwrap().to_owned()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The most resident memory it has had so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib * 1024
    }
}
