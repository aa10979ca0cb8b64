//! Shared helpers of the integration tests: start the real binary, scrape its real `/metrics`
//! over TCP, and parse the exposition into a map `"name{labels}" → value`.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type MetricMap = BTreeMap<String, f64>;

/// Set by `.ci/run`: tests that would skip for a missing tool or missing `../shared` fail instead.
pub fn strict() -> bool {
    std::env::var_os("GOFLOW2_EXPORTER_STRICT_TESTS").is_some_and(|v| v == "1")
}

/// Whether the tool `name` runs (`name --version` succeeds).
pub fn has_tool(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Skips (returns `false` after a notice) or, in strict mode, fails when `what` is unavailable.
pub fn available(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            !strict(),
            "{what} is required (GOFLOW2_EXPORTER_STRICT_TESTS=1)"
        );
        eprintln!("NOTICE: skipping: {what} is not available");
    }
    ok
}

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Scrapes `/metrics` every 100 ms on a thread of its own until stopped, folding each scrape's
/// body into a state (which the test may look at meanwhile): for checks that must hold at every
/// moment of a run, not only at its end.
pub struct BackgroundScrapes<T> {
    done: Arc<AtomicBool>,
    state: Arc<Mutex<T>>,
    thread: std::thread::JoinHandle<()>,
}

impl<T: Send + 'static> BackgroundScrapes<T> {
    pub fn start(
        addr: SocketAddr,
        state: T,
        mut fold: impl FnMut(&mut T, &str) + Send + 'static,
    ) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(state));
        let thread = {
            let (done, state) = (done.clone(), state.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let body = http_get(addr, "/metrics").1;
                    fold(&mut state.lock().unwrap(), &body);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        BackgroundScrapes {
            done,
            state,
            thread,
        }
    }

    /// A look at the state so far.
    pub fn peek<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.state.lock().unwrap())
    }

    /// Stops the scrapes (after the one in progress) and returns the state.
    pub fn stop(self) -> T {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        // The thread's handle on the state ended with it.
        let state = Arc::try_unwrap(self.state)
            .ok()
            .expect("the scrape thread has ended");
        state.into_inner().unwrap()
    }
}

/// Every identifier of `text` (ASCII letters, digits, `_`) that starts with `prefix`, with the
/// text right after it.
pub fn identifiers<'a>(text: &'a str, prefix: &str) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let word = &rest[i..];
        let len = word
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(word.len());
        rest = &word[len..];
        out.push((&word[..len], rest));
    }
    out
}

/// `../shared` next to the project, when present.
pub fn shared_dir() -> Option<PathBuf> {
    let p = repo_path("../shared");
    p.is_dir().then_some(p)
}

/// The binary under test: this build's, or `GOFLOW2_EXPORTER_BIN` (e.g. a release build, to
/// take the overload test's figures).
pub fn binary() -> PathBuf {
    std::env::var_os("GOFLOW2_EXPORTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_goflow2-exporter")))
}

/// Runs the binary with `args` (from the repository root, stdin empty) to its exit: for
/// start-up errors.
pub fn run_to_exit(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("binary runs")
}

/// A running exporter process, killed on drop.
pub struct Exporter {
    pub child: Child,
    pub addr: SocketAddr,
    /// The first UDP listener's address, when one was logged at start-up.
    udp: Option<SocketAddr>,
    logs: Arc<Mutex<String>>,
    log_reader: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    /// Starts the binary with `args` plus `--metrics-addr 127.0.0.1:0`, stdin piped, and waits for
    /// it to log the address it serves on.
    pub fn start(args: &[&str]) -> Exporter {
        Self::start_with(args, Stdio::piped())
    }

    pub fn start_with(args: &[&str], stdin: Stdio) -> Exporter {
        Self::start_env(args, &[], stdin)
    }

    /// Like [`Exporter::start_with`], with extra environment variables for the child.
    pub fn start_env(args: &[&str], envs: &[(&str, &str)], stdin: Stdio) -> Exporter {
        Self::start_full(args, envs, stdin, Stdio::null())
    }

    /// Like [`Exporter::start_env`], with the child's standard output as given (`child.stdout`
    /// holds its read end when piped).
    pub fn start_full(
        args: &[&str],
        envs: &[(&str, &str)],
        stdin: Stdio,
        stdout: Stdio,
    ) -> Exporter {
        let mut child = Command::new(binary())
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let (udp_tx, udp_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("serving metrics on http://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
                if let Some(rest) = line.split("listening for NetFlow/IPFIX on udp://").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = udp_tx.send(addr);
                }
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(a) => a.parse().expect("logged address parses"),
            Err(_) => {
                let _ = child.kill();
                panic!("exporter did not start; logs:\n{}", logs.lock().unwrap());
            }
        };
        // The UDP listener is logged before the metrics address.
        let udp = udp_rx.try_recv().ok().and_then(|a| a.parse().ok());
        Exporter {
            child,
            addr,
            udp,
            logs,
            log_reader: Some(log_reader),
        }
    }

    /// The first `--listen` socket's address (the test must have passed `--listen`).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp.expect("the exporter logged a UDP listener")
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("stdin is piped")
    }

    /// Writes `data` to the exporter's stdin and closes it.
    pub fn feed_and_close(&mut self, data: &[u8]) {
        let mut stdin = self.child.stdin.take().expect("stdin is piped");
        stdin.write_all(data).expect("write stdin");
        drop(stdin);
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn scrape(&self) -> MetricMap {
        parse_exposition(&self.scrape_text())
    }

    pub fn scrape_text(&self) -> String {
        http_get(self.addr, "/metrics").1
    }

    /// Scrapes until `done` holds (or panics after `timeout`), returning the last map.
    pub fn scrape_until(&self, timeout: Duration, done: impl Fn(&MetricMap) -> bool) -> MetricMap {
        let start = Instant::now();
        loop {
            let m = self.scrape();
            if done(&m) {
                return m;
            }
            assert!(
                start.elapsed() < timeout,
                "condition not reached within {timeout:?}; last scrape:\n{m:#?}\nlogs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Scrapes until `done` holds, then once more: a scrape publishes what was recorded before it
    /// began, and an input's own counters (lines read) are bumped right after its flows are
    /// recorded, so the scrape after the one that saw the input complete shows every flow.
    pub fn scrape_settled(
        &self,
        timeout: Duration,
        done: impl Fn(&MetricMap) -> bool,
    ) -> MetricMap {
        self.scrape_until(timeout, done);
        self.scrape()
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The process is gone: let the log reader drain stderr to its end, so `logs()`
                // holds everything the process printed.
                if let Some(reader) = self.log_reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Peak resident set size of the process (VmHWM), from /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM present")
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET: returns (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

/// Parses Prometheus text exposition into `"name{k="v",...}" → value`, labels sorted by name so
/// that the map does not depend on the renderer's label order.
pub fn parse_exposition(text: &str) -> MetricMap {
    let mut map = MetricMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
        let value: f64 = value.parse().expect("numeric value");
        let key = match series.split_once('{') {
            None => series.to_string(),
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("closing brace");
                let mut pairs = split_labels(labels);
                pairs.sort();
                format!("{name}{{{}}}", pairs.join(","))
            }
        };
        assert!(
            map.insert(key.clone(), value).is_none(),
            "duplicate series {key}"
        );
    }
    map
}

/// Splits `a="x",b="y"` at commas outside quotes.
fn split_labels(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Only the series of families whose name starts with `prefix`.
pub fn family(map: &MetricMap, prefix: &str) -> MetricMap {
    map.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The UDP datagrams `--replay` will read from the capture at `path`: what a test waits for
/// (`goflow_replay_datagrams_total` equal to it) before it reads the replay's results. Waiting
/// for "at least one" raced: a scrape in the middle of the replay passed it (issue 10, item 7).
pub fn replay_datagrams(path: &std::path::Path) -> f64 {
    let bytes = std::fs::read(path).expect("read capture");
    let (datagrams, _) =
        goflow2_exporter::capture::read_datagrams(&bytes).expect("a readable capture");
    datagrams.len() as f64
}

/// Scrapes until a `--replay` of `path` has read all of its datagrams, then once more.
pub fn scrape_replayed(exporter: &Exporter, path: &std::path::Path) -> MetricMap {
    let n = replay_datagrams(path);
    exporter.scrape_settled(Duration::from_secs(30), |m| {
        m.get("goflow_replay_datagrams_total") == Some(&n)
    })
}

/// `scripts/tshark-expected.py` on `pcap` (exports sent to `port`) with `extra` options: tshark's
/// totals, as JSON.
pub fn tshark_expected(pcap: &std::path::Path, port: u16, extra: &[&str]) -> serde_json::Value {
    let name = pcap.file_stem().unwrap().to_string_lossy().to_string();
    let out = Command::new("python3")
        .arg(repo_path("scripts/tshark-expected.py"))
        .arg(pcap)
        .arg(port.to_string())
        .arg(&name)
        .args(extra)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
