//! Hostile input, faults and overload (issue 6): each case asserts the exact counters it should
//! move, and that the process still serves correct metrics afterwards.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use goflow2_exporter::testkit::{BASIC, basic_record, ipfix, set, template, v9};

use crate::common::{Exporter, MetricMap, family};

fn errors(m: &MetricMap, kind: &str) -> f64 {
    m[&format!(r#"goflow_parse_errors_total{{error_type="{kind}"}}"#)]
}

/// A good flow from 10.9.9.9 with `bytes` bytes, template and data in one IPFIX message.
fn good(bytes: u32) -> Vec<u8> {
    ipfix(
        0,
        &[
            set(2, &template(256, BASIC)),
            set(
                256,
                &basic_record([10, 9, 9, 9], [10, 9, 9, 10], 6, bytes, 1),
            ),
        ],
    )
}

/// Variable-length template 302: src (4), interfaceName (IE 82, variable), bytes (4).
fn varlen_template() -> Vec<u8> {
    set(2, &template(302, &[(8, 4), (82, 0xFFFF), (1, 4)]))
}

/// A template-302 record from 10.0.0.1 of 1 byte, interface `name`.
fn varlen(name: &[u8]) -> Vec<u8> {
    let mut r = vec![10, 0, 0, 1, name.len() as u8];
    r.extend_from_slice(name);
    r.extend_from_slice(&1u32.to_be_bytes());
    r
}

/// A good IPFIX datagram followed by a set header of length 0 (message length adjusted).
fn zero_length_set() -> Vec<u8> {
    let mut d = good(1);
    d.extend_from_slice(&[0x01, 0x00, 0x00, 0x00, 0xde, 0xad]);
    let len = d.len() as u16;
    d[2..4].copy_from_slice(&len.to_be_bytes());
    d
}

/// A v9 template followed by a set whose length runs past the datagram.
fn over_long_set() -> Vec<u8> {
    let mut d = v9(0, &[set(0, &template(256, BASIC))]);
    d.extend_from_slice(&[0x01, 0x00, 0xff, 0xf0, 1, 2, 3, 4]);
    d
}

/// (what, datagram, the `error_type` it must count; "" for none).
fn malformed_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "zero-length set header",
            zero_length_set(),
            "malformed_datagram",
        ),
        (
            "set length past the datagram",
            over_long_set(),
            "malformed_datagram",
        ),
        (
            // Not an error (RFC 7011 §7 allows it): its 3 records decode. netflow_parser 1.0.6
            // lost the rest of the set here, which was counted as malformed.
            "zero-length variable-length value",
            ipfix(
                0,
                &[
                    varlen_template(),
                    set(302, &[varlen(b"a"), varlen(b""), varlen(b"c")].concat()),
                ],
            ),
            "",
        ),
        (
            "variable length 65535 past the datagram",
            ipfix(
                0,
                &[
                    varlen_template(),
                    set(302, &[10, 0, 0, 1, 255, 0xff, 0xff, 1, 2, 3]),
                ],
            ),
            "malformed_datagram",
        ),
        (
            "truncated v5",
            vec![0x00, 0x05, 0x00, 0x02, 0, 0, 0, 0],
            "malformed_datagram",
        ),
        (
            "NetFlow v7",
            vec![0x00, 0x07, 0x00, 0x01, 0, 0, 0, 0],
            "unsupported_version",
        ),
        ("one byte", vec![0x00], "malformed_datagram"),
        (
            "data for an unknown template",
            ipfix(7, &[set(999, &[1, 2, 3, 4])]),
            "missing_template",
        ),
    ]
}

#[test]
fn malformed_datagram_classes_are_counted_exactly_and_good_data_still_decodes() {
    let exporter = Exporter::start(&["--stdin", "off", "--listen", "netflow://127.0.0.1:0"]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = exporter.udp_addr();
    let cases = malformed_cases();
    let mut expected: std::collections::BTreeMap<&str, f64> = Default::default();
    let mut sent = 0.0;
    for (what, datagram, kind) in &cases {
        sock.send_to(datagram, target).unwrap();
        sent += 1.0;
        if !kind.is_empty() {
            *expected.entry(kind).or_default() += 1.0;
        }
        let m = exporter.scrape_settled(Duration::from_secs(10), |m| {
            family(m, "goflow_exporter_datagrams_total")
                .values()
                .sum::<f64>()
                >= sent
        });
        for (k, n) in &expected {
            assert_eq!(errors(&m, k), *n, "after {what}: {k}");
        }
    }
    // Still decoding, exactly: one good flow of 4242 bytes; and the 3 variable-length records
    // of 1 byte each from 10.0.0.1 (the record cut at 65535 is not a flow).
    sock.send_to(&good(4242), target).unwrap();
    exporter.scrape_until(Duration::from_secs(10), |m| {
        m.get(r#"goflow_bytes_by_src_addr_total{src_addr="10.9.9.9"}"#) == Some(&(4242.0 + 1.0))
            && m.get(r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.1"}"#) == Some(&3.0)
    });
}

#[test]
fn stdin_broken_mid_line_counts_the_partial_line_and_keeps_serving() {
    let mut exporter = Exporter::start(&["--stdin", "on"]);
    let stdin = exporter.stdin();
    writeln!(
        stdin,
        r#"{{"type":"IPFIX","sampler_address":"192.0.2.1","bytes":10,"packets":1,"src_addr":"10.0.0.1"}}"#
    )
    .unwrap();
    // The writer dies in the middle of a line.
    stdin.write_all(br#"{"type":"IPFIX","bytes":2"#).unwrap();
    drop(exporter.child.stdin.take());
    let m = exporter.scrape_settled(Duration::from_secs(10), |m| {
        m.get("goflow_stdin_lines_total") == Some(&2.0)
    });
    assert_eq!(errors(&m, "invalid_json"), 1.0);
    assert_eq!(
        m[r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.1"}"#],
        10.0
    );
    assert!(
        exporter.child.try_wait().unwrap().is_none(),
        "still serving"
    );
    assert_eq!(crate::common::http_get(exporter.addr, "/healthz").0, 200);
}

#[test]
fn sigterm_under_full_load_exits_0_within_2s() {
    let mut exporter = Exporter::start(&["--stdin", "on", "--listen", "netflow://127.0.0.1:0"]);
    let target = exporter.udp_addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let udp = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let d = good(100);
            let start = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(20)
            {
                let _ = sock.send_to(&d, target);
            }
        })
    };
    let mut stdin = exporter.child.stdin.take().unwrap();
    let json = std::thread::spawn(move || {
        let line = br#"{"type":"IPFIX","sampler_address":"192.0.2.1","bytes":10,"packets":1,"src_addr":"10.0.0.1"}
"#;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) && stdin.write_all(line).is_ok() {}
    });
    exporter.scrape_until(Duration::from_secs(10), |m| {
        m.get("goflow_stdin_lines_total")
            .is_some_and(|n| *n > 1000.0)
            && family(m, "goflow_exporter_datagrams_total")
                .values()
                .sum::<f64>()
                > 1000.0
    });
    let start = Instant::now();
    exporter.signal("TERM");
    let status = exporter
        .wait_timeout(Duration::from_secs(2))
        .expect("exits within 2 s");
    let took = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    udp.join().unwrap();
    json.join().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let logs = exporter.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

#[test]
fn unreadable_and_corrupt_replay_files() {
    let run = |file: &str| {
        crate::common::run_to_exit(&[
            "--metrics-addr",
            "127.0.0.1:0",
            "--stdin",
            "off",
            "--replay",
            file,
        ])
    };
    // A directory cannot be read as a file.
    let out = run("testdata");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read --replay file testdata"));

    // A capture cut in the middle of a record: the complete datagrams are replayed, the rest
    // skipped, and the process serves.
    let whole = std::fs::read(crate::common::repo_path(
        "testdata/fixtures/pmacct-v9-sampled4.pcap",
    ))
    .unwrap();
    let cut = std::env::temp_dir().join(format!("goflow2-cut-{}.pcap", std::process::id()));
    std::fs::write(&cut, &whole[..whole.len() - 100]).unwrap();
    let exporter = Exporter::start(&["--stdin", "off", "--replay", cut.to_str().unwrap()]);
    // Waits for the exact count: 34 datagrams, the last one cut.
    let m = exporter.scrape_settled(Duration::from_secs(30), |m| {
        m.get("goflow_replay_datagrams_total") == Some(&33.0)
    });
    assert_eq!(crate::common::replay_datagrams(&cut), 33.0);
    assert_eq!(errors(&m, "malformed_datagram"), 0.0);
    let _ = std::fs::remove_file(cut);
}

#[test]
fn flow_times_far_in_the_future_or_past_do_not_break_active_flows() {
    let mut exporter = Exporter::start(&["--stdin", "on"]);
    for (i, (start, end)) in [
        (0u64, 0u64),
        (u64::MAX, u64::MAX),
        (1, u64::MAX),
        (4_102_444_800_000_000_000, 4_102_444_800_000_000_001), // 2100
        (1_000_000_000, 2_000_000_000),                         // 1970
    ]
    .iter()
    .enumerate()
    {
        writeln!(
            exporter.stdin(),
            r#"{{"type":"IPFIX","sampler_address":"192.0.2.1","time_received_ns":{start},"time_flow_start_ns":{start},"time_flow_end_ns":{end},"bytes":1,"packets":1,"src_addr":"10.0.0.{i}","dst_addr":"10.0.1.1","proto":"UDP"}}"#
        )
        .unwrap();
    }
    exporter.stdin().flush().unwrap();
    let m = exporter.scrape_settled(Duration::from_secs(10), |m| {
        m.get("goflow_stdin_lines_total") == Some(&5.0)
    });
    // Active flows are timed by when the exporter received them, so all 5 keys are active.
    assert_eq!(
        m[r#"goflow_active_flows{sampler_address="192.0.2.1"}"#],
        5.0
    );
    assert_eq!(errors(&m, "invalid_field"), 0.0);
}

fn sum(m: &MetricMap, family_prefix: &str) -> f64 {
    family(m, family_prefix).values().sum::<f64>()
}

/// A flow from 10.2.2.2 of 1 byte (template 256 known).
fn probe() -> Vec<u8> {
    ipfix(
        0,
        &[set(
            256,
            &basic_record([10, 2, 2, 2], [10, 1, 1, 2], 17, 1, 1),
        )],
    )
}

/// Sends IPFIX datagrams of 30 records (like a busy router; from 10.1.1.1) as fast as the
/// socket takes them for 3 s, after the template; returns the datagrams sent, template included.
fn flood(sock: &UdpSocket, target: SocketAddr) -> u64 {
    let records: Vec<u8> =
        std::iter::repeat_n(basic_record([10, 1, 1, 1], [10, 1, 1, 2], 6, 100, 1), 30)
            .flatten()
            .collect();
    sock.send_to(&ipfix(0, &[set(2, &template(256, BASIC))]), target)
        .unwrap();
    let burst = ipfix(0, &[set(256, &records)]);
    let start = Instant::now();
    let mut sent = 1u64;
    while start.elapsed() < Duration::from_secs(3) {
        if sock.send_to(&burst, target).is_ok() {
            sent += 1;
        }
    }
    sent
}

/// The kernel reports drops with the next datagram it delivers: probes slowly until the books
/// balance (received + dropped = `sent` + probes); returns the scrape then.
fn probe_until_the_books_balance(
    exporter: &Exporter,
    sock: &UdpSocket,
    target: SocketAddr,
    sent: u64,
) -> MetricMap {
    let mut probes = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        sock.send_to(&probe(), target).unwrap();
        probes += 1;
        std::thread::sleep(Duration::from_millis(50));
        let m = exporter.scrape();
        let received = sum(&m, "goflow_exporter_datagrams_total");
        let dropped = sum(&m, "goflow_udp_kernel_drops_total");
        if received + dropped == (sent + probes) as f64 && received >= probes as f64 {
            return exporter.scrape();
        }
        assert!(Instant::now() < deadline, "books never balanced: {m:#?}");
    }
}

/// Pushes datagrams faster than the process decodes them: kernel drops are counted, every
/// datagram sent is accounted for (decoded or dropped), memory stays bounded and the process
/// recovers. Prints the figures recorded in BENCHMARKS.md.
#[test]
fn overload_is_visible_and_recovers() {
    // A small receive buffer: with the default 32 MiB the collector keeps up with one sender
    // thread on loopback, and this test is about what happens when it cannot.
    let exporter = Exporter::start(&[
        "--stdin",
        "off",
        "--listen",
        "netflow://127.0.0.1:0",
        "--rcvbuf",
        "65536",
    ]);
    let target = exporter.udp_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let sent = flood(&sock, target);
    let offered = (sent - 1) as f64 / start.elapsed().as_secs_f64();
    let m = probe_until_the_books_balance(&exporter, &sock, target, sent);
    let received = sum(&m, "goflow_exporter_datagrams_total");
    let dropped = sum(&m, "goflow_udp_kernel_drops_total");
    let decoded_flows = m[r#"goflow_flows_by_src_addr_total{src_addr="10.1.1.1"}"#];
    // The first probes may still meet a full queue (and be dropped, and counted): what was
    // received is the template, the burst datagrams and the probes that got through.
    let probes_received = m[r#"goflow_flows_by_src_addr_total{src_addr="10.2.2.2"}"#];
    assert_eq!(
        decoded_flows,
        (received - probes_received - 1.0) * 30.0,
        "every received datagram decoded"
    );
    assert!(
        dropped > 0.0,
        "the burst must overflow the socket (offered {offered:.0}/s)"
    );
    // Recovered: once the queue has drained, every datagram is received and decoded.
    for _ in 0..20 {
        sock.send_to(&probe(), target).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = exporter.scrape_until(Duration::from_secs(10), |m| {
        m.get(r#"goflow_flows_by_src_addr_total{src_addr="10.2.2.2"}"#)
            == Some(&(probes_received + 20.0))
    });
    assert_eq!(
        sum(&after, "goflow_udp_kernel_drops_total"),
        dropped,
        "no drop after recovery"
    );
    let peak = exporter.peak_rss_kib();
    eprintln!(
        "overload: offered {offered:.0} datagrams/s ({:.0} flows/s) for 3 s; received {received}, kernel drops {dropped}, decoded {:.0} flows/s; peak RSS {peak} KiB",
        offered * 30.0,
        received * 30.0 / start.elapsed().as_secs_f64(),
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
