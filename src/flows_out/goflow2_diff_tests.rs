//! The flow lines of the native decoder against goflow2 v2.2.6's own lines for the same export
//! datagrams (`../shared/goflow2-samples/`: goflow2's output for its sample exports, for this
//! project's `testdata/fixtures/*.pcap` and for the real captures in `../shared/captures/`).
//!
//! Lines are compared as multisets of JSON objects, on every key but `sampler_address` and
//! `time_received_ns` (the capture's addresses and times, not goflow2's run) and the deliberate
//! differences listed in [`deliberate`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::capture::read_datagrams;
use crate::decode::netflow::{DatagramDecoder, DecoderLimits, NetflowDecoder};
use crate::flow::{Flow, FlowDetail};
use crate::flows_out::format::write_line;
use crate::test_shared::shared_dir;

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
fn multiset<'a>(lines: impl Iterator<Item = &'a str>, skip: &[&str]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines.filter(|l| !l.trim().is_empty()) {
        *m.entry(comparable(l, skip)).or_insert(0) += 1;
    }
    m
}

/// Our lines for every datagram of `pcap`.
fn our_lines(pcap: &Path) -> String {
    let bytes = std::fs::read(pcap).unwrap();
    let (datagrams, _) = read_datagrams(&bytes).unwrap();
    let mut decoder = NetflowDecoder::new(DecoderLimits::default());
    let (mut flows, mut details) = (Vec::<Flow>::new(), Vec::<FlowDetail>::new());
    let mut out = Vec::new();
    for d in &datagrams {
        flows.clear();
        details.clear();
        decoder.decode_detailed(
            d.src,
            d.payload,
            d.timestamp_ns,
            &mut flows,
            Some(&mut details),
        );
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

/// Compares our lines with goflow2's (without the keys in `skip`): the number of lines, or
/// what differs.
fn compare(ours: &str, theirs: &str, skip: &[&str]) -> Result<usize, String> {
    let (a, b) = (multiset(ours.lines(), skip), multiset(theirs.lines(), skip));
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
            "lines differ\nours (first 3 without a match): {only_ours:#?}\ngoflow2's: {only_theirs:#?}"
        ))
    }
}

/// Keys that deliberately differ, and why.
type Deliberate = (&'static [&'static str], &'static str);

const TIMES: &[&str] = &["time_flow_start_ns", "time_flow_end_ns"];
const SAMPLING_RATE: &[&str] = &["sampling_rate"];

/// The documented deliberate differences (README, "Replacing goflow2"): per capture, the keys on
/// which our lines are right and goflow2's are not, and why. Each is checked to be real.
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
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fixtures");
    let mut cases = Vec::new();
    let dirs = [
        (samples.clone(), samples.clone(), ".export", ".jsonl"),
        (fixtures, samples.join("testdata-fixtures"), "", ".jsonl.gz"),
        (
            shared.join("captures"),
            samples.join("captures"),
            "",
            ".jsonl.gz",
        ),
    ];
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
fn lines_equal_goflow2s() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let cases = cases(&shared);
    // 4 goflow2 samples, 12 fixtures, 7 real captures.
    assert_eq!(cases.len(), 23, "{cases:#?}");
    let mut total = 0;
    for (stem, pcap, goflow2) in cases {
        let (ours, theirs) = (our_lines(&pcap), goflow2_lines(&goflow2));
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
