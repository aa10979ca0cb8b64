//! Real exports through the native collector, compared with an independent decoder.
//!
//! For every capture in `testdata/fixtures/` (made by softflowd and pmacct, see its README) and
//! in `../shared/captures/`: the datagrams are sent over real UDP on loopback to
//! `--listen netflow://127.0.0.1:<port>`, and separately fed with `--replay`; `/metrics` must
//! equal tshark's totals (`scripts/tshark-expected.py`), with bytes and packets multiplied by the
//! sampling rate tshark found for each record. The fixtures' expected totals are committed; the
//! shared captures' are computed by running tshark here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use goflow2_exporter::capture::read_datagrams;
use goflow2_exporter::names::protocol_name;
use serde_json::Value;

use crate::common::{
    Exporter, MetricMap, available, family, has_tool, repo_path, scrape_replayed, shared_dir,
    tshark_expected,
};

/// Sum of a family's series.
fn total(m: &MetricMap, name: &str) -> f64 {
    family(m, &format!("{name}{{")).values().sum()
}

/// Asserts that the scrape `m` shows tshark's totals `want`, with exporter addresses renamed by
/// `sampler_of`.
fn assert_matches(what: &str, m: &MetricMap, want: &Value, sampler_of: &dyn Fn(&str) -> String) {
    assert_matches_named(what, m, want, sampler_of, &HashMap::new());
}

/// The families the exporter counts flows in (the others are its own health).
const FLOW_FAMILIES: [&str; 16] = [
    "goflow_flows_by_direction_total{",
    "goflow_bytes_by_direction_total{",
    "goflow_packets_by_direction_total{",
    "goflow_flows_by_interface_total{",
    "goflow_bytes_by_interface_total{",
    "goflow_packets_by_interface_total{",
    "goflow_flows_total{",
    "goflow_bytes_total{",
    "goflow_packets_total{",
    "goflow_flows_by_protocol_total{",
    "goflow_bytes_by_protocol_total{",
    "goflow_packets_by_protocol_total{",
    "goflow_flows_by_src_addr_total{",
    "goflow_bytes_by_src_addr_total{",
    "goflow_flows_by_dst_addr_total{",
    "goflow_bytes_by_dst_addr_total{",
];

/// tshark's scaled totals (`want["sampling"]["scaled_by"]`) as the exporter's series, added up
/// where two keys map to one series.
struct Expected<'a> {
    map: MetricMap,
    sampler_of: &'a dyn Fn(&str) -> String,
}

impl Expected<'_> {
    fn put(&mut self, k: String, v: &Value) {
        *self.map.entry(k).or_default() += v.as_f64().unwrap();
    }

    fn per_sampler_and_flow_type(&mut self, s: &Value) {
        for (key, t) in s["by_exporter"].as_object().unwrap() {
            let (addr, ty) = key.split_once('|').unwrap();
            let l = format!(
                r#"flow_type="{ty}",sampler_address="{}""#,
                (self.sampler_of)(addr)
            );
            self.put(format!("goflow_flows_total{{{l}}}"), &t["flows"]);
            self.put(format!("goflow_bytes_total{{{l}}}"), &t["bytes"]);
            self.put(format!("goflow_packets_total{{{l}}}"), &t["packets"]);
        }
    }

    fn per_protocol(&mut self, s: &Value) {
        for (proto, t) in s["by_protocol"].as_object().unwrap() {
            // tshark's "None": the template has no protocol field (softflowd's ICMP templates).
            let l = format!(r#"protocol="{}""#, protocol_name(proto.parse::<u8>().ok()));
            for f in ["flows", "bytes", "packets"] {
                self.put(format!("goflow_{f}_by_protocol_total{{{l}}}"), &t[f]);
            }
        }
    }

    fn per_address(&mut self, s: &Value) {
        for (dir, family_key) in [("src", "by_src_addr"), ("dst", "by_dst_addr")] {
            for (addr, t) in s[family_key].as_object().unwrap() {
                let l = format!(r#"{dir}_addr="{addr}""#);
                for f in ["flows", "bytes"] {
                    self.put(format!("goflow_{f}_by_{dir}_addr_total{{{l}}}"), &t[f]);
                }
            }
        }
    }

    /// With --local-net / --interfaces (tshark-expected.py's options of the same names).
    fn per_direction_and_interface(&mut self, s: &Value, interface_names: &HashMap<&str, &str>) {
        for (key, t) in s["by_direction"].as_object().into_iter().flatten() {
            let (addr, d) = key.split_once('|').unwrap();
            let l = format!(
                r#"direction="{d}",sampler_address="{}""#,
                (self.sampler_of)(addr)
            );
            for f in ["flows", "bytes", "packets"] {
                self.put(format!("goflow_{f}_by_direction_total{{{l}}}"), &t[f]);
            }
        }
        for (key, t) in s["by_interface"].as_object().into_iter().flatten() {
            let mut parts = key.split('|');
            let (addr, index, side) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let name = interface_names.get(index).copied().unwrap_or(index);
            let l = format!(
                r#"direction="{side}",interface="{name}",sampler_address="{}""#,
                (self.sampler_of)(addr)
            );
            for f in ["flows", "bytes", "packets"] {
                self.put(format!("goflow_{f}_by_interface_total{{{l}}}"), &t[f]);
            }
        }
    }
}

/// [`assert_matches`], with `interface_names` (index → the `--interface-name` given for it).
fn assert_matches_named(
    what: &str,
    m: &MetricMap,
    want: &Value,
    sampler_of: &dyn Fn(&str) -> String,
    interface_names: &HashMap<&str, &str>,
) {
    let s = &want["sampling"]["scaled_by"];
    let mut expected = Expected {
        map: MetricMap::new(),
        sampler_of,
    };
    expected.per_sampler_and_flow_type(s);
    expected.per_protocol(s);
    expected.per_address(s);
    expected.per_direction_and_interface(s, interface_names);
    let expected = expected.map;
    let got: MetricMap = m
        .iter()
        .filter(|(k, _)| FLOW_FAMILIES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if got != expected {
        let diff: Vec<_> = expected
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: want {v}, got {:?}", got.get(k)))
            .chain(
                got.iter()
                    .filter(|(k, _)| !expected.contains_key(*k))
                    .map(|(k, v)| format!("{k}: unexpected {v}")),
            )
            .collect();
        panic!(
            "{what}: scrape differs from tshark's totals:\n{}",
            diff.join("\n")
        );
    }
    assert_eq!(
        total(m, "goflow_parse_errors_total"),
        0.0,
        "{what}: decode errors"
    );
    assert_eq!(
        total(m, "goflow_flows_total"),
        want["flow_records"].as_f64().unwrap(),
        "{what}: flow records"
    );
}

/// Sends every UDP datagram of `pcap` to `target`, from one local socket per original exporter
/// (address and port), keeping their order. Original loopback sources keep their address; others
/// are mapped to 127.0.0.100 and up. Returns (datagrams sent, original address -> sent-from).
fn send_capture(pcap: &Path, exporter: &Exporter) -> (u64, HashMap<String, String>) {
    let bytes = std::fs::read(pcap).unwrap();
    let (datagrams, _) = read_datagrams(&bytes).expect("a capture");
    let target = exporter.udp_addr();
    let mut ip_map: HashMap<IpAddr, IpAddr> = HashMap::new();
    let mut sockets: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut sent = 0u64;
    for d in &datagrams {
        let n = ip_map.len();
        let local_ip = *ip_map.entry(d.src.ip()).or_insert_with(|| {
            if d.src.ip().is_loopback() {
                d.src.ip()
            } else {
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 100 + n as u8))
            }
        });
        let socket = sockets
            .entry(d.src)
            .or_insert_with(|| UdpSocket::bind((local_ip, 0)).expect("bind a loopback source"));
        socket.send_to(d.payload, target).unwrap();
        sent += 1;
        if sent.is_multiple_of(50) {
            // Paced by the exporter's progress: this test is about decoding, not overload.
            exporter.scrape_until(Duration::from_secs(30), |m| {
                total(m, "goflow_exporter_datagrams_total") >= sent as f64
            });
        }
    }
    let names = ip_map
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    (sent, names)
}

/// Checks one capture through UDP and through `--replay`.
fn check_capture(pcap: &Path, want: &Value) {
    let what = pcap.file_name().unwrap().to_string_lossy().to_string();
    let udp = Exporter::start(&[
        "--stdin",
        "off",
        "--listen",
        "netflow://127.0.0.1:0",
        "--rcvbuf",
        "4194304",
    ]);
    let (sent, names) = send_capture(pcap, &udp);
    assert_eq!(
        sent,
        want["datagrams"].as_u64().unwrap(),
        "{what}: datagrams"
    );
    let m = udp.scrape_settled(Duration::from_secs(30), |m| {
        total(m, "goflow_exporter_datagrams_total") >= sent as f64
    });
    assert_eq!(
        total(&m, "goflow_udp_kernel_drops_total"),
        0.0,
        "{what}: kernel drops"
    );
    assert_matches(&format!("{what} over UDP"), &m, want, &|a| names[a].clone());

    let replay = Exporter::start(&["--stdin", "off", "--replay", pcap.to_str().unwrap()]);
    let m = replay.scrape_settled(Duration::from_secs(30), |m| {
        m.get("goflow_replay_datagrams_total") == Some(&(sent as f64))
    });
    assert_matches(&format!("{what} via --replay"), &m, want, &|a| {
        a.to_string()
    });
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_path("testdata/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .filter(|p| p.with_extension("expected.json").exists())
        .collect();
    v.sort();
    v
}

#[test]
fn fixtures_match_tshark_totals() {
    let list = fixtures();
    assert!(list.len() >= 12, "fixtures missing: {list:?}");
    for pcap in list {
        let want: Value =
            serde_json::from_slice(&std::fs::read(pcap.with_extension("expected.json")).unwrap())
                .unwrap();
        check_capture(&pcap, &want);
    }
}

/// Runs tshark (through the fixture script, with `extra` options) on a shared capture.
fn tshark_totals(pcap: &Path, extra: &[&str]) -> Value {
    let bytes = std::fs::read(pcap).unwrap();
    let (datagrams, _) = read_datagrams(&bytes).unwrap();
    let port = datagrams[0].dst.port();
    tshark_expected(pcap, port, extra)
}

#[test]
fn shared_captures_match_tshark_totals() {
    let Some(shared) = shared_dir() else {
        available(false, "../shared (captures)");
        return;
    };
    if !available(has_tool("tshark"), "tshark (Debian package tshark)") {
        return;
    }
    let mut list: Vec<PathBuf> = std::fs::read_dir(shared.join("captures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    list.sort();
    assert!(list.len() >= 7, "{list:?}");
    for pcap in &list {
        let want = tshark_totals(pcap, &[]);
        check_capture(pcap, &want);
    }
}

#[test]
fn mikrotik_juniper_and_nprobe_specifics() {
    let Some(shared) = shared_dir() else {
        available(false, "../shared (captures)");
        return;
    };
    let cap = |n: &str| shared.join("captures").join(n);
    let replay = |p: &Path| {
        let e = Exporter::start(&["--stdin", "off", "--replay", p.to_str().unwrap()]);
        let m = scrape_replayed(&e, p);
        (e, m)
    };

    // MikroTik RouterOS 6.39.2 IPFIX: 46 flows (28 IPv4 in template 258, 18 IPv6 in 259).
    let (_e, m) = replay(&cap("mikrotik-ros6.39.2-ipfix-t258-t259.pcap"));
    assert_eq!(total(&m, "goflow_flows_total"), 46.0);
    let src = family(&m, "goflow_flows_by_src_addr_total{");
    let v4 = src
        .iter()
        .filter(|(k, _)| !k.contains(':'))
        .map(|(_, v)| v)
        .sum::<f64>();
    let v6 = src
        .iter()
        .filter(|(k, _)| k.contains(':'))
        .map(|(_, v)| v)
        .sum::<f64>();
    assert_eq!((v4, v6), (28.0, 18.0), "{src:#?}");
    assert!(src.contains_key(r#"goflow_flows_by_src_addr_total{src_addr="fe80::ff:fe00:401"}"#));

    // Juniper MX80 v5, header sampling 1000: bytes and packets x1000.
    let (_e, m) = replay(&cap("juniper-mx80-netflow5-sampled.pcap"));
    assert_eq!(
        m[r#"goflow_sampling_rate{sampler_address="192.0.2.1"}"#],
        1000.0
    );
    assert_eq!(total(&m, "goflow_flows_total"), 29.0);
    let bytes = total(&m, "goflow_bytes_total");
    assert_eq!(bytes % 1000.0, 0.0);
    assert!(bytes >= 29_000.0);

    // nProbe with two source ids on one exporter: each id's data decodes with its own
    // templates, nothing goes missing.
    let (_e, m) = replay(&cap("nprobe-nfv9-two-source-ids.pcap"));
    assert_eq!(total(&m, "goflow_flows_total"), 2.0);
    assert_eq!(
        m[r#"goflow_parse_errors_total{error_type="missing_template"}"#],
        0.0
    );
}

/// The RouterOS IPFIX capture of `../shared/captures`, when it and tshark are there (else a
/// notice, or a failure in strict mode).
fn routeros_ipfix_capture() -> Option<PathBuf> {
    let Some(shared) = shared_dir() else {
        available(false, "../shared (captures)");
        return None;
    };
    if !available(has_tool("tshark"), "tshark (Debian package tshark)") {
        return None;
    }
    Some(shared.join("captures/mikrotik-ros6.39.2-ipfix-t258-t259.pcap"))
}

/// `--nat-attribution` on the RouterOS IPFIX capture (template 258 carries IE 225/226): every
/// flow family equals tshark's totals with each record's destination after NAT, so the replies
/// to the router's outside address 192.168.230.216 are counted for the inside hosts.
#[test]
fn routeros_nat_attribution_matches_tshark() {
    let Some(pcap) = routeros_ipfix_capture() else {
        return;
    };
    let want = tshark_totals(&pcap, &["--nat-attribution"]);
    let exporter = Exporter::start(&[
        "--stdin",
        "off",
        "--nat-attribution",
        "--replay",
        pcap.to_str().unwrap(),
    ]);
    let m = scrape_replayed(&exporter, &pcap);
    assert_matches("RouterOS IPFIX --nat-attribution", &m, &want, &|a| {
        a.to_string()
    });
    assert!(
        !m.keys()
            .any(|k| k.contains("_by_direction_total{") || k.contains("_by_interface_total{"))
    );
    // The example of the issue: the reply from 192.168.35.143 to the router's outside address
    // is 10.10.6.11's (502 bytes); nothing is left on the outside address.
    assert_eq!(
        m.get(r#"goflow_bytes_by_dst_addr_total{dst_addr="10.10.6.11"}"#),
        Some(&502.0)
    );
    assert!(!m.contains_key(r#"goflow_flows_by_dst_addr_total{dst_addr="192.168.230.216"}"#));
    // Without the flag the same capture is counted as exported (tshark's plain totals; also
    // `shared_captures_match_tshark_totals`).
    assert_eq!(
        tshark_totals(&pcap, &[])["by_dst_addr"]["192.168.230.216"]["flows"],
        3
    );
}

/// The same capture with `--local-net` (directions, on the addresses after NAT attribution) and
/// interface names from flags (one for every router, one for this router, which wins): every
/// family equals tshark's totals, the new ones included.
#[test]
fn routeros_directions_and_interfaces_match_tshark() {
    let Some(pcap) = routeros_ipfix_capture() else {
        return;
    };
    let nets = "10.0.0.0/8,172.16.0.0/12";
    let want = tshark_totals(
        &pcap,
        &["--nat-attribution", "--local-net", nets, "--interfaces"],
    );
    let exporter = Exporter::start(&[
        "--stdin",
        "off",
        "--nat-attribution",
        "--local-net",
        nets,
        "--interface-name",
        "7=wan,9@192.0.2.1=bridge-lan,9=not-this-one",
        "--replay",
        pcap.to_str().unwrap(),
    ]);
    let m = scrape_replayed(&exporter, &pcap);
    let names = HashMap::from([("7", "wan"), ("9", "bridge-lan")]);
    assert_matches_named(
        "RouterOS IPFIX, directions and interfaces",
        &m,
        &want,
        &|a| a.to_string(),
        &names,
    );
    let d = &want["sampling"]["scaled_by"]["by_direction"];
    assert!(
        d.as_object().unwrap().len() == 4,
        "all four directions occur: {d}"
    );
}

/// Names from options data win over `--interface-name`: softflowd's v9 export names interface 0
/// (its capture file, "traffic.pcap") before its first flows; every flow's input and output
/// interface is counted once.
#[test]
fn interface_names_from_options_data_label_the_series() {
    let pcap = repo_path("testdata/fixtures/softflowd-v9.pcap");
    let exporter = Exporter::start(&[
        "--stdin",
        "off",
        "--interface-name",
        "0=from-the-flag",
        "--replay",
        pcap.to_str().unwrap(),
    ]);
    let m = scrape_replayed(&exporter, &pcap);
    let flows = total(&m, "goflow_flows_total");
    assert!(flows > 500.0, "{flows}");
    for side in ["in", "out"] {
        let key = format!(
            r#"goflow_flows_by_interface_total{{direction="{side}",interface="traffic.pcap",sampler_address="127.0.0.1"}}"#
        );
        assert_eq!(m.get(&key), Some(&flows), "{key}: {m:#?}");
    }
    assert!(!m.keys().any(|k| k.contains("from-the-flag")));
}

/// Directions and interfaces on this project's own fixture with three exporters (softflowd and
/// pmacct, one sampling 1:4): every family, the new ones included, equals tshark's totals with
/// the same options, scaled by each exporter's rate; softflowd's interface 0 carries the name its
/// options data give (tshark's `if_name`).
#[test]
fn fixture_directions_and_interfaces_match_tshark() {
    if !available(has_tool("tshark"), "tshark (Debian package tshark)") {
        return;
    }
    let pcap = repo_path("testdata/fixtures/mixed-v9-3exporters.pcap");
    let want = tshark_expected(
        &pcap,
        39012,
        &["--local-net", "192.0.2.0/24", "--interfaces"],
    );
    let exporter = Exporter::start(&[
        "--stdin",
        "off",
        "--local-net",
        "192.0.2.0/24",
        "--interfaces",
        "--replay",
        pcap.to_str().unwrap(),
    ]);
    let m = scrape_replayed(&exporter, &pcap);
    // softflowd (127.0.0.1) names interface 0 "traffic.pcap" (in each of its options records);
    // pmacct names none.
    let named: std::collections::BTreeSet<_> = want["options_data_records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| Some((r["exporter"].as_str()?, r["if_name_ie82"].as_str()?)))
        .map(|(e, n)| (e.split(':').next().unwrap().to_string(), n.to_string()))
        .collect();
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        [("127.0.0.1".to_string(), "traffic.pcap".to_string())]
    );
    let mut renamed = want.clone();
    let interfaces = renamed["sampling"]["scaled_by"]["by_interface"]
        .as_object_mut()
        .unwrap();
    for side in ["in", "out"] {
        let v = interfaces.remove(&format!("127.0.0.1|0|{side}")).unwrap();
        interfaces.insert(format!("127.0.0.1|traffic.pcap|{side}"), v);
    }
    assert_matches(
        "mixed-v9-3exporters, directions and interfaces",
        &m,
        &renamed,
        &|a| a.to_string(),
    );
}
