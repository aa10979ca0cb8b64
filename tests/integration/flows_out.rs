//! `--flows-out` (issue 11): the native collector's flows as goflow2 v2.2.6 JSON lines, through
//! the real binary.
//!
//! - Equal to goflow2's own lines for the same datagrams (`../shared/goflow2-samples/`: goflow2's
//!   output for its sample exports, for `testdata/fixtures/*.pcap` and for the real captures in
//!   `../shared/captures/`), as multisets, on every key but `sampler_address`,
//!   `time_received_ns` (the run, not the flow) and the documented deliberate differences.
//! - goflow2's key order and value types, line by line.
//! - Round trip: the lines into a second exporter's stdin give the same flow families.
//! - A closed pipe and a consumer that does not read: drops counted, metrics exact.
//! - SIGHUP reopens the file (log rotation).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{
    Exporter, MetricMap, available, family, repo_path, run_to_exit, scrape_replayed, shared_dir,
};

/// Replays `pcap` through the binary with `--flows-out` to a file; its lines.
fn replay_lines(pcap: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flows.jsonl");
    let run = run_to_exit(&[
        "--stdin",
        "off",
        "--metrics-addr",
        "127.0.0.1:0",
        "--exit-on-eof",
        "--replay",
        pcap.to_str().unwrap(),
        "--flows-out",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}: {}",
        pcap.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read_to_string(&out).unwrap()
}

fn goflow2_lines(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

/// A line reduced to what is compared, as canonical text (keys sorted by serde_json's map):
/// without `sampler_address`, `time_received_ns` and the keys in `skip`.
fn comparable(line: &str, skip: &[&str]) -> String {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v.len(), 50, "{line}");
    for key in ["sampler_address", "time_received_ns"].iter().chain(skip) {
        v.remove(*key);
    }
    serde_json::Value::Object(v).to_string()
}

/// Counts of each comparable line.
fn multiset(text: &str, skip: &[&str]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        *m.entry(comparable(l, skip)).or_insert(0) += 1;
    }
    m
}

/// Compares our lines with goflow2's (without the keys in `skip`): the number of lines, or
/// what differs.
fn compare(ours: &str, theirs: &str, skip: &[&str]) -> Result<usize, String> {
    let (a, b) = (multiset(ours, skip), multiset(theirs, skip));
    let only = |x: &BTreeMap<String, usize>, y: &BTreeMap<String, usize>| -> Vec<String> {
        x.iter()
            .filter(|(k, n)| y.get(*k) != Some(n))
            .take(3)
            .map(|(k, n)| format!("{n} × {k}"))
            .collect()
    };
    let (only_ours, only_theirs) = (only(&a, &b), only(&b, &a));
    if only_ours.is_empty() && only_theirs.is_empty() {
        Ok(a.values().sum())
    } else {
        Err(format!(
            "lines differ\nours (first 3 without a match): {only_ours:#?}\ngoflow2's: {only_theirs:#?}"
        ))
    }
}

/// Keys that deliberately differ, and why.
type Deliberate = (&'static [&'static str], &'static str);

const TIMES: &[&str] = &["time_flow_start_ns", "time_flow_end_ns"];
const SAMPLING_RATE: &[&str] = &["sampling_rate"];

/// The deliberate differences (README, "Replacing goflow2"): per capture, the keys on which our
/// lines are right and goflow2's are not, and why. Each is checked to be real.
fn deliberate(stem: &str) -> &'static [Deliberate] {
    const V5_WRAP: &str = "v5 First/Last after SysUptime: goflow2 wraps the u32 difference \
                           and puts the flow 49.7 days before the export";
    const V9_ABSOLUTE: &str = "v9 flowStart/EndMilliseconds (IE 152/153): goflow2 reads times \
                               only from IE 21/22 in v9 and writes the export time";
    const IPFIX_UPTIME: &str = "IPFIX flowStart/EndSysUpTime (IE 22/21) with \
                                systemInitTimeMilliseconds: goflow2 ignores them and writes the \
                                export time";
    const PACKET_SPACE: &str = "samplingPacketInterval 1 + samplingPacketSpace 3 is 1 in 4: \
                                goflow2 takes the interval alone as the rate";
    const SHARED_ADDRESS: &str = "goflow2 keys learned rates by exporter address, not address \
                                  and port: in its run the three exporters shared one address \
                                  and one another's rates";
    match stem {
        "pmacct-v5" | "pmacct-v5-sampled10" => &[(TIMES, V5_WRAP)],
        "pmacct-v9" | "pmacct-v9-sampled4" => &[(TIMES, V9_ABSOLUTE)],
        "mixed-v9-3exporters" => &[(TIMES, V9_ABSOLUTE), (SAMPLING_RATE, SHARED_ADDRESS)],
        "softflowd-ipfix" | "softflowd-ipfix-options-sysinittime" => &[(TIMES, IPFIX_UPTIME)],
        "softflowd-ipfix-sampled4" => &[(TIMES, IPFIX_UPTIME), (SAMPLING_RATE, PACKET_SPACE)],
        _ => &[],
    }
}

/// Every capture with goflow2 output for it: (name, capture, goflow2's lines). Found by listing
/// the directories, so a capture added to them is compared too.
fn cases(shared: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let samples = shared.join("goflow2-samples");
    let dirs = [
        (samples.clone(), samples.clone(), ".export", ".jsonl"),
        (
            repo_path("testdata/fixtures"),
            samples.join("testdata-fixtures"),
            "",
            ".jsonl.gz",
        ),
        (
            shared.join("captures"),
            samples.join("captures"),
            "",
            ".jsonl.gz",
        ),
    ];
    let mut cases = Vec::new();
    for (captures, outputs, suffix, ext) in dirs {
        for entry in std::fs::read_dir(&captures).unwrap() {
            let pcap = entry.unwrap().path();
            let name = pcap.file_name().unwrap().to_string_lossy().to_string();
            let Some(stem) = name.strip_suffix(".pcap") else {
                continue;
            };
            let stem = stem.strip_suffix(suffix).unwrap_or(stem).to_string();
            let goflow2 = outputs.join(format!("{stem}{ext}"));
            if goflow2.exists() {
                cases.push((stem, pcap, goflow2));
            }
        }
    }
    cases.sort();
    cases
}

#[test]
fn replayed_lines_equal_goflow2s() {
    let Some(shared) = shared_dir() else {
        available(false, "../shared (goflow2's output)");
        return;
    };
    let cases = cases(&shared);
    // 4 goflow2 samples, 12 fixtures, 7 real captures.
    assert_eq!(cases.len(), 23, "{cases:#?}");
    let mut total = 0;
    for (stem, pcap, goflow2) in cases {
        let (ours, theirs) = (replay_lines(&pcap), goflow2_lines(&goflow2));
        let differences = deliberate(&stem);
        let skip: Vec<&str> = differences
            .iter()
            .flat_map(|(keys, _)| *keys)
            .copied()
            .collect();
        let n = compare(&ours, &theirs, &skip).unwrap_or_else(|e| panic!("{stem}: {e}"));
        for (keys, why) in differences {
            // Real: comparing on these keys too finds lines that differ.
            let others: Vec<&str> = skip.iter().filter(|k| !keys.contains(k)).copied().collect();
            assert!(
                compare(&ours, &theirs, &others).is_err(),
                "{stem}: no longer differs on {keys:?} ({why})"
            );
        }
        eprintln!("{stem}: {n} lines equal goflow2's (deliberately not: {skip:?})");
        assert!(n > 0, "{stem}");
        total += n;
    }
    assert!(total > 4000, "{total}");
}

/// The keys of a JSON object in their order, each with its value's JSON type (serde_json's own
/// map is sorted, so the order is read with a visitor).
struct KeysInOrder(Vec<(String, &'static str)>);

impl<'de> serde::Deserialize<'de> for KeysInOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = KeysInOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KeysInOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let t = match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::String(_) => "string",
                        serde_json::Value::Number(_) => "number",
                        serde_json::Value::Array(_) => "array",
                        _ => "other",
                    };
                    keys.push((key, t));
                }
                Ok(KeysInOrder(keys))
            }
        }
        d.deserialize_map(Visitor)
    }
}

fn keys_and_types(line: &str) -> Vec<(String, &'static str)> {
    serde_json::from_str::<KeysInOrder>(line)
        .unwrap_or_else(|e| panic!("{e}: {line}"))
        .0
}

/// Every line of every capture: goflow2's 50 keys in goflow2's order, each value of the JSON type
/// goflow2 writes (taken from goflow2's own first line of the same kind of export).
#[test]
fn every_line_has_goflow2s_keys_in_order_and_types() {
    let Some(shared) = shared_dir() else {
        available(false, "../shared (goflow2's output)");
        return;
    };
    let reference = goflow2_lines(&shared.join("goflow2-samples/netflow-v9.jsonl"));
    let expected = keys_and_types(reference.lines().next().unwrap());
    assert_eq!(expected.len(), 50);
    let mut lines = 0;
    for (stem, pcap, _) in cases(&shared) {
        for line in replay_lines(&pcap).lines() {
            assert_eq!(keys_and_types(line), expected, "{stem}: {line}");
            lines += 1;
        }
    }
    assert!(lines > 4000, "{lines}");
}

/// The flow families (what a flow adds to), without the line writer's own counters.
fn flow_families(m: &MetricMap) -> MetricMap {
    m.iter()
        .filter(|(k, _)| {
            [
                "goflow_flows_",
                "goflow_bytes_",
                "goflow_packets_",
                "goflow_sampling_rate",
                "goflow_active_flows",
            ]
            .iter()
            .any(|p| k.starts_with(p))
                && !k.starts_with("goflow_flows_out_")
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The lines of a replay, read by a second exporter on stdin, give the first one's flow families
/// exactly: every fixture (v5, v9, IPFIX; sampled, per-exporter rates; IPv4 and IPv6).
#[test]
fn lines_into_a_second_exporter_give_the_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(repo_path("testdata/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .filter(|p| !p.ends_with("traffic.pcap")) // raw traffic, not an export
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 12, "{fixtures:?}");
    for pcap in fixtures {
        let name = pcap.file_stem().unwrap().to_string_lossy().to_string();
        let out = dir.path().join(format!("{name}.jsonl"));
        let first = Exporter::start(&[
            "--stdin",
            "off",
            "--replay",
            pcap.to_str().unwrap(),
            "--flows-out",
            out.to_str().unwrap(),
        ]);
        let native = scrape_replayed(&first, &pcap);
        let flows: f64 = family(&native, "goflow_flows_total").values().sum();
        // Every flow's line is written (a replay waits for the writer, it never drops).
        first.scrape_until(Duration::from_secs(10), |m| {
            m.get("goflow_flows_out_lines_total") == Some(&flows)
        });
        let lines = std::fs::read(&out).unwrap();
        assert_eq!(
            lines.iter().filter(|&&b| b == b'\n').count() as f64,
            flows,
            "{name}"
        );

        let mut second = Exporter::start(&["--stdin", "on"]);
        second.feed_and_close(&lines);
        let from_lines = second.scrape_settled(Duration::from_secs(10), |m| {
            m.get("goflow_stdin_lines_total") == Some(&flows)
        });
        let errors: f64 = family(&from_lines, "goflow_parse_errors_total")
            .values()
            .sum();
        assert_eq!(errors, 0.0, "{name}: our lines did not parse");
        assert_eq!(flow_families(&from_lines), flow_families(&native), "{name}");
        eprintln!(
            "{name}: {flows} flows, {} series equal",
            flow_families(&native).len()
        );
    }
}

/// A v5 datagram of `n` flows (n ≤ 30) from 10.0.0.1 to 10.0.0.2, 100 bytes each.
fn v5(n: u16) -> Vec<u8> {
    let mut d = vec![0x00, 0x05];
    d.extend_from_slice(&n.to_be_bytes());
    d.extend_from_slice(&10_000u32.to_be_bytes()); // sysUptime
    d.extend_from_slice(&1_700_000_000u32.to_be_bytes()); // unix secs
    d.extend_from_slice(&[0; 12]); // nsecs, sequence, engine, sampling
    for i in 0..n {
        d.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0]); // src, dst, next hop
        d.extend_from_slice(&[0, 1, 0, 2]); // input, output
        d.extend_from_slice(&1u32.to_be_bytes()); // packets
        d.extend_from_slice(&100u32.to_be_bytes()); // bytes
        d.extend_from_slice(&9_000u32.to_be_bytes()); // first switched
        d.extend_from_slice(&10_000u32.to_be_bytes()); // last switched
        d.extend_from_slice(&(1024 + i).to_be_bytes()); // source port
        d.extend_from_slice(&[0x01, 0xbb, 0, 0, 6, 0]); // port 443, pad, flags, TCP, tos
        d.extend_from_slice(&[0; 8]); // AS, masks, pad
    }
    d
}

/// Sends `datagrams` v5 datagrams of 30 flows to the exporter, paced so that the kernel drops
/// none; returns the flows sent.
fn send_v5(exporter: &Exporter, datagrams: usize) -> f64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let d = v5(30);
    for i in 0..datagrams {
        socket.send_to(&d, exporter.udp_addr()).unwrap();
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    (datagrams * 30) as f64
}

fn value(m: &MetricMap, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

const LINES: &str = "goflow_flows_out_lines_total";
const QUEUE_FULL: &str = "goflow_flows_out_dropped_total{reason=\"queue_full\"}";
const WRITE_ERROR: &str = "goflow_flows_out_dropped_total{reason=\"write_error\"}";

/// A UDP collector on loopback writing its flow lines to its standard output (a pipe the test
/// holds as `child.stdout`), with `extra` flags.
fn udp_exporter_writing_stdout(extra: &[&str]) -> Exporter {
    let mut args = vec![
        "--stdin",
        "off",
        "--listen",
        "netflow://127.0.0.1:0",
        "--flows-out",
        "-",
    ];
    args.extend_from_slice(extra);
    Exporter::start_full(&args, &[], Stdio::null(), Stdio::piped())
}

/// Standard output closed by its reader: logged once, the lines after it counted as dropped, and
/// every flow still in the metrics.
#[test]
fn a_closed_pipe_is_logged_and_counted_and_metrics_go_on() {
    let mut exporter = udp_exporter_writing_stdout(&[]);
    let mut stdout = BufReader::new(exporter.child.stdout.take().unwrap());
    let first = send_v5(&exporter, 10);
    let mut line = String::new();
    for _ in 0..first as usize {
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("{\"type\":\"NETFLOW_V5\""), "{line}");
    }
    drop(stdout);
    let sent = first + send_v5(&exporter, 100);
    let m = exporter.scrape_settled(Duration::from_secs(10), |m| {
        value(m, LINES) + value(m, WRITE_ERROR) == sent
    });
    assert_eq!(family(&m, "goflow_flows_total").values().sum::<f64>(), sent);
    assert_eq!(value(&m, LINES), first);
    assert_eq!(value(&m, WRITE_ERROR), sent - first);
    assert_eq!(value(&m, QUEUE_FULL), 0.0);
    assert!(
        exporter.logs().contains("broken pipe"),
        "{}",
        exporter.logs()
    );
    // Still serving, still counting.
    let more = send_v5(&exporter, 10);
    exporter.scrape_until(Duration::from_secs(10), |m| {
        family(m, "goflow_flows_total").values().sum::<f64>() == sent + more
    });
}

/// A consumer that does not read: the writer blocks on the full pipe, the queue fills, and the
/// lines beyond it are dropped and counted while reception and metrics stay exact. Once the
/// consumer reads, everything queued is written: lines + dropped = flows.
#[test]
fn a_slow_consumer_costs_lines_not_metrics() {
    let mut exporter = udp_exporter_writing_stdout(&["--flows-out-buffer", "2048"]);
    let stdout = exporter.child.stdout.take().unwrap();
    // 60,000 flows, ~50 MB of lines: far beyond the pipe (64 KiB) and the queue (2 batches).
    let sent = send_v5(&exporter, 2000);
    let m = exporter.scrape_settled(Duration::from_secs(20), |m| {
        family(m, "goflow_flows_total").values().sum::<f64>() == sent
    });
    assert_eq!(
        family(&m, "goflow_bytes_total").values().sum::<f64>(),
        sent * 100.0
    );
    let kernel_drops: f64 = family(&m, "goflow_udp_kernel_drops_total").values().sum();
    assert_eq!(kernel_drops, 0.0);
    assert!(value(&m, QUEUE_FULL) > 0.0, "{m:#?}");
    // Now the consumer reads: what was queued comes out, and nothing else is missing.
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.is_empty())
            .count()
    });
    let m = exporter.scrape_until(Duration::from_secs(20), |m| {
        value(m, LINES) + value(m, QUEUE_FULL) == sent
    });
    assert_eq!(value(&m, WRITE_ERROR), 0.0);
    let written = value(&m, LINES);
    exporter.signal("TERM");
    assert!(exporter.wait_timeout(Duration::from_secs(5)).is_some());
    assert_eq!(reader.join().unwrap() as f64, written);
}

/// Log rotation: move the file away, SIGHUP, and the next lines go to a new file by the name.
#[test]
fn sighup_reopens_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let exporter = Exporter::start(&[
        "--stdin",
        "off",
        "--listen",
        "netflow://127.0.0.1:0",
        "--flows-out",
        path.to_str().unwrap(),
    ]);
    let lines_in = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|s| s.lines().count())
            .unwrap_or(0) as f64
    };
    let before = send_v5(&exporter, 5);
    exporter.scrape_until(Duration::from_secs(10), |m| value(m, LINES) == before);
    let rotated = dir.path().join("flows.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    exporter.signal("HUP");
    // The writer reopens within its wake-up period; lines sent before that go to the old file.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !exporter.logs().contains("reopened the --flows-out file") {
        assert!(std::time::Instant::now() < deadline, "{}", exporter.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = send_v5(&exporter, 3);
    exporter.scrape_until(Duration::from_secs(10), |m| {
        value(m, LINES) == before + after
    });
    assert_eq!(lines_in(&rotated), before);
    assert_eq!(lines_in(&path), after);
    // SIGHUP did not stop the process (its default action would have).
    assert!(exporter.scrape().contains_key(LINES));
}

/// Without a native input there is nothing to write: a clear error, not a silent empty file.
#[test]
fn flows_out_without_a_native_input_is_a_configuration_error() {
    let run = run_to_exit(&["--stdin", "on", "--flows-out", "/tmp/never-written.jsonl"]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("--flows-out writes the flows of the native collector"),
        "{stderr}"
    );
}
