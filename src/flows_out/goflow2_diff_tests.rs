//! The flow lines of the native decoder against goflow2 v2.2.6's own lines for the same export
//! datagrams (`../shared/goflow2-samples/`: goflow2's output for its sample exports, for this
//! project's `testdata/fixtures/*.pcap` and for the real captures in `../shared/captures/`).
//!
//! Lines are compared as multisets of JSON objects, on every key but `sampler_address` and
//! `time_received_ns` (the capture's addresses and times, not goflow2's run). So far NetFlow v5
//! (v9 and IPFIX details are not decoded yet).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::capture::read_datagrams;
use crate::decode::detail;
use crate::decode::netflow::{DatagramDecoder, DecoderLimits, NetflowDecoder};
use crate::flow::{Flow, FlowDetail};
use crate::flows_out::format::write_line;
use crate::test_shared::shared_dir;

/// A line reduced to what is compared, as canonical text (keys sorted by serde_json's map);
/// without the flow times when `times` is false.
fn comparable(line: &str, times: bool) -> String {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v.len(), 50, "{line}");
    v.remove("sampler_address");
    v.remove("time_received_ns");
    if !times {
        v.remove("time_flow_start_ns");
        v.remove("time_flow_end_ns");
    }
    serde_json::Value::Object(v).to_string()
}

/// Counts of each comparable line.
fn multiset<'a>(lines: impl Iterator<Item = &'a str>, times: bool) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines.filter(|l| !l.trim().is_empty()) {
        *m.entry(comparable(l, times)).or_insert(0) += 1;
    }
    m
}

/// Our lines for every v5 datagram of `pcap`.
fn our_lines(pcap: &Path) -> String {
    let bytes = std::fs::read(pcap).unwrap();
    let (datagrams, _) = read_datagrams(&bytes).unwrap();
    let mut decoder = NetflowDecoder::new(DecoderLimits::default());
    let (mut flows, mut details) = (Vec::<Flow>::new(), Vec::<FlowDetail>::new());
    let mut out = Vec::new();
    for d in &datagrams {
        assert_eq!(d.payload.get(..2), Some(&[0, 5][..]), "v5 only so far");
        flows.clear();
        details.clear();
        decoder.decode(d.src, d.payload, d.timestamp_ns, &mut flows);
        detail::v5(d.payload, &mut details);
        assert_eq!(flows.len(), details.len());
        for (f, x) in flows.iter().zip(&details) {
            write_line(&mut out, f, x);
        }
    }
    String::from_utf8(out).unwrap()
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

/// Compares one capture (with or without the flow times): the number of lines, or what differs.
fn compare(pcap: &Path, goflow2: &Path, times: bool) -> Result<usize, String> {
    let ours = our_lines(pcap);
    let theirs = goflow2_lines(goflow2);
    let (a, b) = (
        multiset(ours.lines(), times),
        multiset(theirs.lines(), times),
    );
    let only_ours: Vec<_> = a
        .iter()
        .filter(|(k, n)| b.get(*k) != Some(n))
        .take(3)
        .collect();
    let only_theirs: Vec<_> = b
        .iter()
        .filter(|(k, n)| a.get(*k) != Some(n))
        .take(3)
        .collect();
    if only_ours.is_empty() && only_theirs.is_empty() {
        Ok(a.values().sum())
    } else {
        Err(format!(
            "{}: lines differ\nours (first 3 without a match): {only_ours:#?}\ngoflow2's: {only_theirs:#?}",
            pcap.display()
        ))
    }
}

/// Whether a v5 record of `pcap` has a First or Last switched time after its header's SysUptime
/// (pmacct's exports of replayed traffic do). goflow2 takes the difference modulo 2^32 ms and
/// puts such a flow 49.7 days before the export; the decoder takes it as the clock skew it is and
/// puts the flow just after. A deliberate difference (to be listed in the README with
/// `--flows-out`); the other keys must still be equal.
fn switched_after_uptime(pcap: &Path) -> bool {
    let bytes = std::fs::read(pcap).unwrap();
    let (datagrams, _) = read_datagrams(&bytes).unwrap();
    datagrams.iter().any(|d| {
        let p = d.payload;
        let be32 = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let (uptime, count) = (be32(4), usize::from(u16::from_be_bytes([p[2], p[3]])));
        (0..count).any(|r| {
            let at = 24 + 48 * r;
            p.len() >= at + 48 && (be32(at + 24) > uptime || be32(at + 28) > uptime)
        })
    })
}

#[test]
fn v5_lines_equal_goflow2s() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let samples = shared.join("goflow2-samples");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fixtures");
    let cases = [
        (
            samples.join("netflow-v5.export.pcap"),
            samples.join("netflow-v5.jsonl"),
        ),
        (
            fixtures.join("pmacct-v5.pcap"),
            samples.join("testdata-fixtures/pmacct-v5.jsonl.gz"),
        ),
        (
            fixtures.join("pmacct-v5-sampled10.pcap"),
            samples.join("testdata-fixtures/pmacct-v5-sampled10.jsonl.gz"),
        ),
        (
            fixtures.join("softflowd-v5.pcap"),
            samples.join("testdata-fixtures/softflowd-v5.jsonl.gz"),
        ),
        (
            shared.join("captures/mikrotik-ros-netflow5.pcap"),
            samples.join("captures/mikrotik-ros-netflow5.jsonl.gz"),
        ),
        (
            shared.join("captures/juniper-mx80-netflow5-sampled.pcap"),
            samples.join("captures/juniper-mx80-netflow5-sampled.jsonl.gz"),
        ),
    ];
    let mut total = 0;
    for (pcap, goflow2) in cases {
        let n = if switched_after_uptime(&pcap) {
            // The times must differ (else this branch is no longer needed), the rest must not.
            assert!(
                compare(&pcap, &goflow2, true).is_err(),
                "{}",
                pcap.display()
            );
            compare(&pcap, &goflow2, false)
        } else {
            compare(&pcap, &goflow2, true)
        }
        .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{}: {n} lines equal goflow2's", pcap.display());
        assert!(n > 0, "{}", pcap.display());
        total += n;
    }
    assert!(total > 900, "{total}");
}
