//! Malformed stdin input: every kind is counted under its documented `error_type`, memory stays
//! bounded, and the process keeps serving and counting good lines afterwards.

use std::io::Write;
use std::time::Duration;

use crate::common::{Exporter, family};

/// Deterministic bytes in 0x80..=0xFF: a line starting with a UTF-8 continuation byte can never
/// be valid UTF-8, and no byte is a newline.
fn garbage_line(seed: &mut u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 1);
    for i in 0..len {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let b = 0x80 | (*seed >> 56) as u8;
        out.push(if i == 0 { b & 0xBF } else { b });
    }
    out.push(b'\n');
    out
}

/// 100 lines of bytes that are not UTF-8: 100 x invalid_utf8.
fn write_garbage_lines(stdin: &mut impl Write) {
    let mut seed = 42;
    for _ in 0..100 {
        stdin.write_all(&garbage_line(&mut seed, 200)).unwrap();
    }
}

/// One 100 MiB line, written in pieces: line_too_long (default cap 1 MiB).
fn write_a_100_mib_line(stdin: &mut impl Write) {
    stdin.write_all(br#"{"type":"NETFLOW_V5","pad":""#).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        stdin.write_all(&chunk).unwrap();
    }
    stdin.write_all(b"\"}\n").unwrap();
}

/// Invalid UTF-8 inside otherwise valid JSON: 3 x invalid_utf8.
fn write_invalid_utf8_in_json(stdin: &mut impl Write) {
    stdin.write_all(b"{\"src_addr\":\"\xc3\x28\"}\n").unwrap();
    stdin.write_all(b"{\"type\":\"IPFIX\xff\"}\n").unwrap();
    stdin.write_all(b"\xed\xa0\x80{}\n").unwrap();
}

/// Truncated JSON and non-JSON: 6 x invalid_json.
fn write_invalid_json(stdin: &mut impl Write) {
    for line in [
        r#"{"type":"IPFIX","bytes":12"#,
        r#"{"type":"IPFIX","bytes""#,
        r#"{"type":"#,
        r#"{"#,
        "goflow2: error: something went wrong",
        &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
    ] {
        writeln!(stdin, "{line}").unwrap();
    }
}

/// Wrong value types and numbers out of range: 8 x invalid_field.
fn write_invalid_fields(stdin: &mut impl Write) {
    for line in [
        r#"{"bytes":"x"}"#,
        r#"{"packets":-1}"#,
        r#"{"src_port":99999}"#,
        r#"{"proto":300}"#,
        r#"{"src_addr":"999.1.1.1"}"#,
        r#"{"sampling_rate":1.5}"#,
        r#"{"bytes":1e30}"#,
        r#"{"bytes":18446744073709551616}"#,
    ] {
        writeln!(stdin, "{line}").unwrap();
    }
}

/// Every malformed kind, then one good line (100 bytes from 10.1.1.1).
fn write_malformed_then_good_lines(stdin: &mut impl Write) {
    write_garbage_lines(stdin);
    write_a_100_mib_line(stdin);
    write_invalid_utf8_in_json(stdin);
    write_invalid_json(stdin);
    write_invalid_fields(stdin);
    writeln!(
        stdin,
        r#"{{"type":"NETFLOW_V5","sampler_address":"192.0.2.1","bytes":100,"packets":1,"src_addr":"10.1.1.1","dst_addr":"10.1.1.2","proto":"TCP"}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
}

#[test]
fn malformed_input_is_counted_and_bounded() {
    let mut exporter = Exporter::start(&["--stdin", "on"]);
    write_malformed_then_good_lines(exporter.stdin());
    let lines = 100.0 + 1.0 + 3.0 + 6.0 + 8.0 + 1.0;
    let m = exporter.scrape_settled(Duration::from_secs(20), |m| {
        m.get("goflow_stdin_lines_total") == Some(&lines)
    });
    let errors = family(&m, "goflow_parse_errors_total");
    let want: Vec<(String, f64)> = [
        ("decoder_panic", 0.0),
        ("implausible_value", 0.0),
        ("invalid_field", 8.0),
        ("invalid_json", 6.0),
        ("invalid_utf8", 103.0),
        ("line_too_long", 1.0),
        ("malformed_datagram", 0.0),
        ("missing_template", 0.0),
        ("unsupported_version", 0.0),
    ]
    .iter()
    .map(|(t, n)| {
        (
            format!(r#"goflow_parse_errors_total{{error_type="{t}"}}"#),
            *n,
        )
    })
    .collect();
    assert_eq!(errors.into_iter().collect::<Vec<_>>(), want);
    assert_eq!(
        m[r#"goflow_flows_total{flow_type="NETFLOW_V5",sampler_address="192.0.2.1"}"#],
        1.0
    );
    assert_eq!(
        m[r#"goflow_bytes_by_src_addr_total{src_addr="10.1.1.1"}"#],
        100.0
    );

    // The 100 MiB line was never buffered whole.
    let peak = exporter.peak_rss_kib();
    assert!(peak < 48 * 1024, "peak RSS {peak} KiB after a 100 MiB line");
    // Still alive and healthy.
    assert!(exporter.child.try_wait().unwrap().is_none());
    assert_eq!(crate::common::http_get(exporter.addr, "/healthz").0, 200);
}
