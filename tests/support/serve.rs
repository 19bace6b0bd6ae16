//! The built binary as a child process, for the tests that go through it (cli, otlp, reload,
//! shutdown): one way to start `pimgate serve` on an ephemeral loopback port, read what it logs, signal
//! it and wait for it, instead of a copy per test file.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pimgate");

/// A `pimgate serve` child; killed and reaped on drop, so a failing test never leaks one.
pub struct Served {
    pub child: Child,
    pub port: u16,
    /// The admin listener's port (`/healthz`, `/readyz`, `/metrics`); equal to `port` when the test
    /// set `admin.listen` to `""` (one listener serves everything).
    pub admin_port: u16,
    /// stdout and stderr lines, read on their own threads so the child never blocks on a full pipe.
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// `pimgate serve --config CONFIG` on `127.0.0.1:0` with one worker, its admin listener on another
/// ephemeral loopback port; `env` is applied last, so it can override those. Returns once the service
/// has logged the ports it listens on.
pub fn serve(config: &Path, env: &[(&str, &str)]) -> Served {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("PIMGATE_CONFIG")
        .env_remove("RUST_LOG")
        .env("PIMGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("PIMGATE__SERVER__WORKERS", "1")
        .env("PIMGATE__ADMIN__LISTEN", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let single_listener = env
        .iter()
        .any(|(key, value)| *key == "PIMGATE__ADMIN__LISTEN" && value.is_empty());
    let mut child = command.spawn().expect("spawn pimgate serve");
    let stdout = lines(child.stdout.take().expect("stdout"));
    let stderr = lines(child.stderr.take().expect("stderr"));
    // Owned by `Served` from here on, so it is killed and reaped on every path, panics included.
    let mut served = Served {
        child,
        port: 0,
        admin_port: 0,
        stdout,
        stderr,
    };
    // JSON (`"port":8080`) and pretty (`port=8080`) log lines alike.
    let port_pattern = regex::Regex::new(r#"(?:^|[^_])port["=:]+\s*(\d+)"#).expect("regex");
    let admin_pattern = regex::Regex::new(r#"admin_port["=:]+\s*(\d+)"#).expect("regex");
    let mut seen = Vec::new();
    while served.port == 0 || (served.admin_port == 0 && !single_listener) {
        let line = served
            .stderr
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no ports logged: {seen:#?}"));
        if let Some(port) = admin_pattern
            .captures(&line)
            .and_then(|c| c[1].parse().ok())
        {
            served.admin_port = port;
        } else if line.contains("listening")
            && let Some(port) = port_pattern.captures(&line).and_then(|c| c[1].parse().ok())
        {
            served.port = port;
        }
        seen.push(line);
    }
    if single_listener {
        served.admin_port = served.port;
    }
    served
}

impl Served {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The admin listener's base URL, for `/healthz`, `/readyz` and `/metrics`.
    pub fn admin(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// `kill -NAME PID`, e.g. `signal("TERM")`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit status, or `None` if the process is still running after `limit`.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Every line the process wrote to stdout (call after it exited: reads until end of file).
    pub fn stdout_lines(&self) -> Vec<String> {
        drain(&self.stdout)
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        drain(&self.stderr)
    }
}

fn drain(lines: &mpsc::Receiver<String>) -> Vec<String> {
    let mut all = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        all.push(line);
    }
    all
}
