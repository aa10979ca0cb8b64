//! Hand-made datagrams for the decoder's edge cases. Byte arrays carry a comment per field;
//! builders are used where the layout is the point of the test, not the bytes.

use super::*;
use crate::testkit::*;

const EXPORTER_A: &str = "192.0.2.1:40000";
const EXPORTER_B: &str = "192.0.2.2:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn decode(d: &mut NetflowDecoder, from: &str, bytes: &[u8]) -> (Vec<Flow>, DatagramReport) {
    let mut out = Vec::new();
    let report = d.decode(addr(from), bytes, 42, &mut out);
    assert_eq!(report.flows, out.len());
    (out, report)
}

fn decoder() -> NetflowDecoder {
    NetflowDecoder::new(DecoderLimits::default())
}

#[test]
fn v5_header_rate_is_masked_and_trailing_bytes_ignored() {
    #[rustfmt::skip]
    let mut d = vec![
        0x00, 0x05,             // version 5
        0x00, 0x01,             // count 1
        0x00, 0x00, 0x27, 0x10, // sysUptime 10000 ms
        0x65, 0x53, 0xf1, 0x00, // unix_secs 1700000000
        0x00, 0x00, 0x00, 0x00, // unix_nsecs
        0x00, 0x00, 0x00, 0x07, // flow sequence
        0x00, 0x00,             // engine type, id
        0x43, 0xe8,             // sampling: mode 01, interval 0x3e8 = 1000
        // record
        10, 0, 0, 1,            // src
        10, 0, 0, 2,            // dst
        0, 0, 0, 0,             // next hop
        0x00, 0x03, 0x00, 0x04, // input 3, output 4
        0x00, 0x00, 0x00, 0x02, // packets 2
        0x00, 0x00, 0x05, 0xdc, // bytes 1500
        0x00, 0x00, 0x1f, 0x40, // first 8000 ms
        0x00, 0x00, 0x27, 0x10, // last 10000 ms
        0x01, 0xbb, 0xc3, 0x50, // ports 443 -> 50000
        0x00, 0x1b, 0x06, 0x00, // pad, tcp flags 0x1b, proto 6, tos
        0x00, 0x00, 0x00, 0x00, // src as, dst as
        0x18, 0x18, 0x00, 0x00, // masks, pad
    ];
    d.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // trailing junk after `count` records
    let (flows, report) = decode(&mut decoder(), EXPORTER_A, &d);
    assert_eq!(
        report.malformed + report.unsupported_version,
        0,
        "{report:?}"
    );
    let f = flows[0];
    assert_eq!(f.sampling_rate, 1000);
    assert_eq!((f.bytes, f.packets), (1500, 2));
    assert_eq!(f.flow_type, FlowType::NetflowV5);
    assert_eq!(f.sampler, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(
        (f.src_port, f.dst_port, f.proto, f.tcp_flags),
        (443, 50000, Some(6), 0x1b)
    );
    assert_eq!((f.in_if, f.out_if), (3, 4));
    // first 8000 ms of uptime, exported at uptime 10000 = unix 1700000000 s.
    assert_eq!(f.time_flow_start_ns, 1_699_999_998_000_000_000);
    assert_eq!(f.time_flow_end_ns, 1_700_000_000_000_000_000);
}

#[test]
fn data_before_template_is_counted_then_decodes_once_the_template_arrives() {
    #[rustfmt::skip]
    let data_only = [
        0x00, 0x09,             // version 9
        0x00, 0x01,             // count
        0x00, 0x00, 0x27, 0x10, // sysUptime
        0x65, 0x53, 0xf1, 0x00, // unix_secs
        0x00, 0x00, 0x00, 0x01, // sequence
        0x00, 0x00, 0x00, 0x00, // source id 0
        0x01, 0x00,             // set id 256 (data, template 256)
        0x00, 0x15,             // set length 21: 4 + one 17-byte record
        10, 0, 0, 1,            // IE 8 src
        10, 0, 0, 2,            // IE 12 dst
        17,                     // IE 4 proto UDP
        0x00, 0x00, 0x00, 0x64, // IE 1 bytes 100
        0x00, 0x00, 0x00, 0x01, // IE 2 packets 1
    ];
    let mut d = decoder();
    let (flows, report) = decode(&mut d, EXPORTER_A, &data_only);
    assert!(flows.is_empty());
    assert_eq!(report.missing_template, 1);
    assert_eq!(report.malformed, 0);

    let with_template = v9(0, &[set(0, &template(256, BASIC))]);
    let (flows, report) = decode(&mut d, EXPORTER_A, &with_template);
    assert!(flows.is_empty());
    assert_eq!(
        report,
        DatagramReport {
            version: 9,
            ..Default::default()
        }
    );

    let (flows, report) = decode(&mut d, EXPORTER_A, &data_only);
    assert_eq!(report.missing_template, 0);
    assert_eq!(flows.len(), 1);
    assert_eq!((flows[0].bytes, flows[0].proto), (100, Some(17)));
}

#[test]
fn unknown_template_does_not_drop_the_other_sets() {
    let mut d = decoder();
    let dgram = v9(
        0,
        &[
            set(300, &[1, 2, 3, 4]), // data for a template nobody sent
            set(0, &template(256, BASIC)),
            set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 500, 5)),
        ],
    );
    let (flows, report) = decode(&mut d, EXPORTER_A, &dgram);
    assert_eq!(report.missing_template, 1);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].bytes, 500);
}

#[test]
fn two_exporters_same_template_id_different_layouts() {
    let mut d = decoder();
    // A: src, dst, proto, bytes, packets. B: bytes, packets, proto, dst, src.
    let b_layout: &[(u16, u16)] = &[(1, 4), (2, 4), (4, 1), (12, 4), (8, 4)];
    decode(&mut d, EXPORTER_A, &v9(0, &[set(0, &template(256, BASIC))]));
    decode(
        &mut d,
        EXPORTER_B,
        &v9(0, &[set(0, &template(256, b_layout))]),
    );
    let mut b_rec = 700u32.to_be_bytes().to_vec(); // bytes
    b_rec.extend_from_slice(&7u32.to_be_bytes()); // packets
    b_rec.push(17); // proto
    b_rec.extend_from_slice(&[10, 9, 9, 2]); // dst
    b_rec.extend_from_slice(&[10, 9, 9, 1]); // src
    let (fa, _) = decode(
        &mut d,
        EXPORTER_A,
        &v9(
            0,
            &[set(
                256,
                &basic_record([10, 1, 1, 1], [10, 1, 1, 2], 6, 100, 1),
            )],
        ),
    );
    let (fb, _) = decode(&mut d, EXPORTER_B, &v9(0, &[set(256, &b_rec)]));
    assert_eq!(fa[0].src_addr, Some("10.1.1.1".parse().unwrap()));
    assert_eq!((fa[0].bytes, fa[0].packets, fa[0].proto), (100, 1, Some(6)));
    assert_eq!(fb[0].src_addr, Some("10.9.9.1".parse().unwrap()));
    assert_eq!(fb[0].dst_addr, Some("10.9.9.2".parse().unwrap()));
    assert_eq!(
        (fb[0].bytes, fb[0].packets, fb[0].proto),
        (700, 7, Some(17))
    );
}

#[test]
fn two_source_ids_of_one_exporter_do_not_share_templates() {
    let mut d = decoder();
    decode(&mut d, EXPORTER_A, &v9(1, &[set(0, &template(256, BASIC))]));
    let data = set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 1, 1));
    let (flows, report) = decode(&mut d, EXPORTER_A, &v9(2, std::slice::from_ref(&data)));
    assert!(flows.is_empty());
    assert_eq!(report.missing_template, 1);
    let (flows, _) = decode(&mut d, EXPORTER_A, &v9(1, &[data]));
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].observation_domain, 1);
}

/// v9 options template: id, scope length, option length, scope (type, len), options (IE, len).
fn v9_options_template(id: u16, scope: &[(u16, u16)], options: &[(u16, u16)]) -> Vec<u8> {
    let mut t = id.to_be_bytes().to_vec();
    t.extend_from_slice(&((scope.len() * 4) as u16).to_be_bytes());
    t.extend_from_slice(&((options.len() * 4) as u16).to_be_bytes());
    for (ty, len) in scope.iter().chain(options) {
        t.extend_from_slice(&ty.to_be_bytes());
        t.extend_from_slice(&len.to_be_bytes());
    }
    t
}

#[test]
fn v9_rate_from_options_data_ie34() {
    let mut d = decoder();
    let dgram = v9(
        0,
        &[
            set(0, &template(256, BASIC)),
            // options template 257: scope System (1) 4 bytes; IE 34 (4 bytes), IE 35 (1 byte)
            set(1, &v9_options_template(257, &[(1, 4)], &[(34, 4), (35, 1)])),
            // options data: scope 0.0.0.0, interval 512, algorithm 2 (random), 3 padding bytes
            set(257, &[0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 0, 0]),
            set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1)),
        ],
    );
    let (flows, report) = decode(&mut d, EXPORTER_A, &dgram);
    assert_eq!(report.malformed, 0, "{report:?}");
    assert_eq!(flows[0].sampling_rate, 512);
}

/// IPFIX options template: id, field count, scope count, fields.
fn ipfix_options_template(id: u16, scope_count: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut t = id.to_be_bytes().to_vec();
    t.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    t.extend_from_slice(&scope_count.to_be_bytes());
    for (ie, len) in fields {
        t.extend_from_slice(&ie.to_be_bytes());
        t.extend_from_slice(&len.to_be_bytes());
    }
    t
}

#[test]
fn ipfix_rate_from_ie305_and_ie306() {
    let mut d = decoder();
    let dgram = ipfix(
        5,
        &[
            set(2, &template(256, BASIC)),
            // scope: IE 149 observationDomainId (4); options: IE 305 (4), IE 306 (4)
            set(
                3,
                &ipfix_options_template(257, 1, &[(149, 4), (305, 4), (306, 4)]),
            ),
            // domain 5, interval 1, space 99: 1 in 100
            set(257, &[0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 99]),
            set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1)),
        ],
    );
    let (flows, report) = decode(&mut d, EXPORTER_A, &dgram);
    assert_eq!(report.malformed, 0, "{report:?}");
    assert_eq!(flows[0].sampling_rate, 100);
    assert_eq!(flows[0].flow_type, FlowType::Ipfix);

    // RouterOS-style interval 2222, space 1111: (2222 + 1111) / 2222 = 1.5, rounded to 2.
    let dgram = ipfix(
        5,
        &[
            set(257, &[0, 0, 0, 5, 0, 0, 0x08, 0xae, 0, 0, 0x04, 0x57]),
            set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1)),
        ],
    );
    let (flows, _) = decode(&mut d, EXPORTER_A, &dgram);
    assert_eq!(flows[0].sampling_rate, 2);
}

#[test]
fn rate_from_ie34_inside_data_records() {
    // MikroTik with packet sampling puts IE 34 in each data record.
    let mut layout = BASIC.to_vec();
    layout.push((34, 4));
    let mut rec = basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1);
    rec.extend_from_slice(&64u32.to_be_bytes());
    let dgram = ipfix(0, &[set(2, &template(258, &layout)), set(258, &rec)]);
    let (flows, _) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!(flows[0].sampling_rate, 64);
}

#[test]
fn per_sampler_rates_joined_through_ie48() {
    let mut d = decoder();
    let mut layout = BASIC.to_vec();
    layout.push((48, 1)); // samplerId in each data record
    let rec = |sampler: u8, bytes: u32| {
        let mut r = basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, bytes, 1);
        r.push(sampler);
        r
    };
    let dgram = v9(
        0,
        &[
            set(0, &template(256, &layout)),
            // options: scope System; IE 48 sampler id (1), IE 50 random interval (4)
            set(1, &v9_options_template(257, &[(1, 4)], &[(48, 1), (50, 4)])),
            // two rows: sampler 1 at 1:2000, sampler 2 at 1:4000 (+3 padding bytes)
            set(
                257,
                &[
                    0, 0, 0, 0, 1, 0, 0, 0x07, 0xd0, 0, 0, 0, 0, 2, 0, 0, 0x0f, 0xa0, 0, 0,
                ],
            ),
            set(256, &[rec(1, 10), rec(2, 20), rec(9, 30)].concat()),
        ],
    );
    let (flows, report) = decode(&mut d, EXPORTER_A, &dgram);
    assert_eq!(report.malformed, 0, "{report:?}");
    let rates: Vec<_> = flows.iter().map(|f| (f.bytes, f.sampling_rate)).collect();
    // Sampler 9 has no options row: the exporter's most recent rate applies.
    assert_eq!(rates, [(10, 2000), (20, 4000), (30, 4000)]);
}

#[test]
fn ipfix_uptime_times_anchored_on_ie160() {
    // In the record, as RouterOS 7 sends it: IE 22 start, IE 21 end (uptime ms), IE 160 (8 bytes).
    let mut layout = BASIC.to_vec();
    layout.extend_from_slice(&[(22, 4), (21, 4), (160, 8)]);
    let mut rec = basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1);
    rec.extend_from_slice(&1_000u32.to_be_bytes());
    rec.extend_from_slice(&5_000u32.to_be_bytes());
    rec.extend_from_slice(&1_699_990_000_000u64.to_be_bytes());
    let dgram = ipfix(0, &[set(2, &template(258, &layout)), set(258, &rec)]);
    let (flows, _) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!(flows[0].time_flow_start_ns, 1_699_990_001_000_000_000);
    assert_eq!(flows[0].time_flow_end_ns, 1_699_990_005_000_000_000);

    // From an options record, as softflowd sends it.
    let mut d = decoder();
    let mut layout = BASIC.to_vec();
    layout.extend_from_slice(&[(22, 4), (21, 4)]);
    let mut rec = basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1);
    rec.extend_from_slice(&2_000u32.to_be_bytes());
    rec.extend_from_slice(&3_000u32.to_be_bytes());
    let mut options = 7u32.to_be_bytes().to_vec(); // scope IE 143 meteringProcessId
    options.extend_from_slice(&1_699_000_000_000u64.to_be_bytes()); // IE 160
    let dgram = ipfix(
        0,
        &[
            set(2, &template(1024, &layout)),
            set(3, &ipfix_options_template(256, 1, &[(143, 4), (160, 8)])),
            set(256, &options),
            set(1024, &rec),
        ],
    );
    let (flows, _) = decode(&mut d, EXPORTER_A, &dgram);
    assert_eq!(flows[0].time_flow_start_ns, 1_699_000_002_000_000_000);
    assert_eq!(flows[0].time_flow_end_ns, 1_699_000_003_000_000_000);

    // Without IE 160 anywhere (RouterOS 6.39): the export time.
    let dgram = ipfix(0, &[set(2, &template(300, &layout)), set(300, &rec)]);
    let (flows, _) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!(flows[0].time_flow_start_ns, 1_700_000_000_000_000_000);
}

#[test]
fn zero_field_template_does_not_hang_or_drop_other_sets() {
    let mut d = decoder();
    let dgram = v9(
        0,
        &[
            set(0, &template(300, &[])), // a template with 0 fields
            set(300, &[0; 16]),          // "data" for it
            set(0, &template(256, BASIC)),
            set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1)),
        ],
    );
    let (flows, report) = decode(&mut d, EXPORTER_A, &dgram);
    assert_eq!(flows.len(), 1);
    // The 0-field template set is rejected by the parser (malformed) and its data has no
    // template (missing): each counted once; the good sets decode.
    assert_eq!(
        (report.malformed, report.missing_template),
        (1, 1),
        "{report:?}"
    );
}

#[test]
fn zero_filled_tail_stops_cleanly() {
    let mut dgram = v9(
        0,
        &[
            set(0, &template(256, BASIC)),
            set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1)),
        ],
    );
    dgram.resize(1400, 0); // padded to a fixed size with zeros
    let (flows, report) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!(flows.len(), 1);
    assert_eq!(
        report,
        DatagramReport {
            version: 9,
            flows: 1,
            ..Default::default()
        }
    );
}

#[test]
fn truncated_datagrams_are_counted_never_panic() {
    let full = v9(
        0,
        &[
            set(0, &template(256, BASIC)),
            set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1)),
        ],
    );
    let full_ipfix = ipfix(
        0,
        &[
            set(2, &template(256, BASIC)),
            set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1)),
        ],
    );
    // Every cut loses something and must say so, except a v9 cut at a set boundary (v9 has no
    // length field: a shorter message is complete) or followed only by zeros (indistinguishable
    // from zero padding). IPFIX announces its length, so every cut is detected.
    let template_set_end = 20 + set(0, &template(256, BASIC)).len();
    for whole in [&full, &full_ipfix] {
        for cut in 0..whole.len() {
            let mut d = decoder();
            let (flows, report) = decode(&mut d, EXPORTER_A, &whole[..cut]);
            assert!(flows.is_empty(), "cut at {cut}");
            let v9_clean = whole[1] == 9
                && (cut == template_set_end
                    || (cut >= 20 && whole[20..cut].iter().all(|&b| b == 0)));
            assert!(
                report.malformed >= 1 || v9_clean,
                "cut at {cut}: {report:?}"
            );
        }
    }
    // A datagram too short for a version at all.
    let (_, r) = decode(&mut decoder(), EXPORTER_A, &[0x00]);
    assert_eq!(r.malformed, 1);
    // An unknown version.
    let (_, r) = decode(&mut decoder(), EXPORTER_A, &[0x00, 0x07, 0, 0]);
    assert_eq!(r.unsupported_version, 1);
}

#[test]
fn set_length_beyond_the_datagram_is_malformed_but_earlier_sets_count() {
    let mut dgram = v9(
        0,
        &[
            set(0, &template(256, BASIC)),
            set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1)),
        ],
    );
    dgram.extend_from_slice(&[0x01, 0x00, 0x01, 0x00, 1, 2, 3]); // set 256 claiming 256 bytes
    let (flows, report) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!(flows.len(), 1);
    assert_eq!(report.malformed, 1);
}

#[test]
fn ipv6_and_the_nonzero_address_rule() {
    // Both families in one template, the IPv4 ones zero (Nokia style).
    let layout: &[(u16, u16)] = &[(8, 4), (12, 4), (27, 16), (28, 16), (4, 1), (1, 4), (2, 4)];
    let mut rec = vec![0; 8]; // IPv4 src, dst = 0.0.0.0
    let src6: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst6: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
    rec.extend_from_slice(&src6.octets());
    rec.extend_from_slice(&dst6.octets());
    rec.push(58);
    rec.extend_from_slice(&64u32.to_be_bytes());
    rec.extend_from_slice(&1u32.to_be_bytes());
    let dgram = ipfix(0, &[set(2, &template(259, layout)), set(259, &rec)]);
    let (flows, _) = decode(&mut decoder(), "[::ffff:192.0.2.7]:4739", &dgram);
    assert_eq!(flows[0].src_addr, Some(IpAddr::V6(src6)));
    assert_eq!(flows[0].dst_addr, Some(IpAddr::V6(dst6)));
    assert_eq!(flows[0].proto, Some(58));
    // The IPv4-mapped source of the datagram is shown as IPv4.
    assert_eq!(flows[0].sampler, Some("192.0.2.7".parse().unwrap()));
}

#[test]
fn sets_with_more_than_1024_records_decode_whole() {
    // netflow_parser's default stops at 1024 records per set without a word.
    let rec = basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 1, 1);
    let data: Vec<u8> = std::iter::repeat_n(rec, 3000).flatten().collect();
    for dgram in [
        ipfix(0, &[set(2, &template(256, BASIC)), set(256, &data)]),
        v9(0, &[set(0, &template(256, BASIC)), set(256, &data)]),
    ] {
        let (flows, report) = decode(&mut decoder(), EXPORTER_A, &dgram);
        assert_eq!(flows.len(), 3000, "{report:?}");
    }
}

/// IPFIX template with an enterprise field: (IE | 0x8000, length, PEN).
fn template_with_enterprise(id: u16) -> Vec<u8> {
    let mut t = id.to_be_bytes().to_vec();
    t.extend_from_slice(&3u16.to_be_bytes()); // 3 fields
    t.extend_from_slice(&[0x00, 0x08, 0x00, 0x04]); // IE 8 sourceIPv4Address, 4
    t.extend_from_slice(&[0x80, 0x01, 0x00, 0x04]); // enterprise bit + element 1, 4 bytes
    t.extend_from_slice(&12345u32.to_be_bytes()); // private enterprise number
    t.extend_from_slice(&[0x00, 0x01, 0x00, 0x04]); // IE 1 octetDeltaCount, 4
    t
}

#[test]
fn enterprise_fields_are_skipped_cleanly() {
    let mut rec = vec![10, 0, 0, 1]; // src
    rec.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // enterprise value
    rec.extend_from_slice(&777u32.to_be_bytes()); // bytes
    let dgram = ipfix(0, &[set(2, &template_with_enterprise(300)), set(300, &rec)]);
    let (flows, report) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!(report.malformed, 0, "{report:?}");
    assert_eq!(flows[0].bytes, 777);
    assert_eq!(flows[0].src_addr, Some("10.0.0.1".parse().unwrap()));
}

#[test]
fn a_repeated_field_takes_the_last_value() {
    // IE 1 twice (Cisco inner/outer style): the last in the template wins, as in goflow2.
    let layout: &[(u16, u16)] = &[(8, 4), (1, 4), (1, 4)];
    let mut rec = vec![10, 0, 0, 1];
    rec.extend_from_slice(&100u32.to_be_bytes());
    rec.extend_from_slice(&200u32.to_be_bytes());
    let dgram = ipfix(0, &[set(2, &template(301, layout)), set(301, &rec)]);
    let (flows, _) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!(flows[0].bytes, 200);
}

#[test]
fn variable_length_fields_decode_including_a_zero_length_value() {
    let mut d = decoder();
    let records = [varlen_record(b"ether1", 1), varlen_record(&[b'x'; 300], 2)].concat();
    let dgram = ipfix(0, &[set(2, &template(302, VARLEN)), set(302, &records)]);
    let (flows, report) = decode(&mut d, EXPORTER_A, &dgram);
    assert_eq!(report.malformed, 0, "{report:?}");
    assert_eq!(flows.iter().map(|f| f.bytes).collect::<Vec<_>>(), [1, 2]);

    // A zero-length value (RFC 7011 §7 allows it). netflow_parser 1.0.6 silently dropped that
    // record and the rest of the set (the reference decoder counts it as malformed); the new
    // decoder reads all three records.
    let records = [
        varlen_record(b"ether1", 1),
        varlen_record(b"", 2),
        varlen_record(b"ether3", 3),
    ]
    .concat();
    let (flows, report) = decode(&mut d, EXPORTER_A, &ipfix(0, &[set(302, &records)]));
    assert_eq!(report.malformed, 0, "{report:?}");
    assert_eq!(flows.iter().map(|f| f.bytes).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn a_variable_length_of_65535_beyond_the_datagram_is_malformed() {
    let mut d = decoder();
    let mut rec = vec![10, 0, 0, 1, 255, 0xff, 0xff]; // src, 3-byte length 65535
    rec.extend_from_slice(b"short"); // far fewer bytes than announced
    let dgram = ipfix(0, &[set(2, &template(302, VARLEN)), set(302, &rec)]);
    let (flows, report) = decode(&mut d, EXPORTER_A, &dgram);
    assert!(flows.is_empty());
    assert_eq!(report.malformed, 1, "{report:?}");
    // The exporter's next good datagram still decodes.
    let (flows, report) = decode(
        &mut d,
        EXPORTER_A,
        &ipfix(0, &[set(302, &varlen_record(b"ok", 5))]),
    );
    assert_eq!((flows.len(), report.malformed), (1, 0));
}

#[test]
fn zero_length_set_header_in_the_middle_is_malformed() {
    let mut dgram = ipfix(
        0,
        &[
            set(2, &template(256, BASIC)),
            set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1)),
        ],
    );
    // A set header announcing length 0, followed by non-zero bytes; fix the message length.
    dgram.extend_from_slice(&[0x01, 0x00, 0x00, 0x00, 0xde, 0xad]);
    let len = dgram.len() as u16;
    dgram[2..4].copy_from_slice(&len.to_be_bytes());
    let (flows, report) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!(flows.len(), 1);
    assert_eq!(report.malformed, 1);
}

/// The flow a record of the hand-made IPFIX datagrams below decodes to, apart from its own
/// fields: exporter A, export time 1_700_000_000 s, received at 42.
fn ipfix_flow() -> Flow {
    Flow {
        flow_type: FlowType::Ipfix,
        sampler: Some("192.0.2.1".parse().unwrap()),
        time_flow_start_ns: 1_700_000_000_000_000_000,
        time_flow_end_ns: 1_700_000_000_000_000_000,
        time_received_ns: 42,
        ..Flow::default()
    }
}

#[test]
fn ipfix_variable_length_short_long_zero_and_enterprise_fields() {
    #[rustfmt::skip]
    let dgram = [
        0x00, 0x0a,             // version 10
        0x00, 0x57,             // message length 87
        0x65, 0x53, 0xf1, 0x00, // export time 1700000000
        0x00, 0x00, 0x00, 0x01, // sequence
        0x00, 0x00, 0x00, 0x00, // observation domain 0
        // template set
        0x00, 0x02,             // set id 2 (templates)
        0x00, 0x20,             // set length 32
        0x01, 0x00,             // template id 256
        0x00, 0x05,             // 5 fields
        0x00, 0x08, 0x00, 0x04, // IE 8 sourceIPv4Address, 4 bytes
        0x00, 0x52, 0xff, 0xff, // IE 82 interfaceName, variable length
        0x80, 0x0c, 0xff, 0xff, // enterprise bit + element 12, variable length ...
        0x00, 0x00, 0x07, 0xdb, // ... PEN 2011
        0x00, 0x01, 0x00, 0x04, // IE 1 octetDeltaCount, 4 bytes
        0x00, 0x04, 0x00, 0x01, // IE 4 protocolIdentifier, 1 byte
        // data set
        0x01, 0x00,             // set id 256
        0x00, 0x27,             // set length 39: 4 + 18 + 15 + 2 padding
        // record 1: short lengths
        10, 0, 0, 1,            // src 10.0.0.1
        0x04, b'e', b't', b'h', b'0', // interfaceName: 1-byte length 4, "eth0"
        0x03, 0xaa, 0xbb, 0xcc, // enterprise value: 1-byte length 3, 3 bytes
        0x00, 0x00, 0x01, 0x00, // bytes 256
        0x06,                   // proto TCP
        // record 2: a zero-length value and a long-form length
        10, 0, 0, 2,            // src 10.0.0.2
        0x00,                   // interfaceName: length 0 (no value)
        0xff, 0x00, 0x02, 0xde, 0xad, // enterprise value: 255, 2-byte length 2, 2 bytes
        0x00, 0x00, 0x00, 0x40, // bytes 64
        0x11,                   // proto UDP
        0x00, 0x00,             // padding: shorter than the 11-byte minimum record
    ];
    let (flows, report) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!(
        report,
        DatagramReport {
            version: 10,
            flows: 2,
            ..Default::default()
        }
    );
    assert_eq!(
        flows,
        [
            Flow {
                src_addr: Some("10.0.0.1".parse().unwrap()),
                proto: Some(6),
                bytes: 256,
                ..ipfix_flow()
            },
            Flow {
                src_addr: Some("10.0.0.2".parse().unwrap()),
                proto: Some(17),
                bytes: 64,
                ..ipfix_flow()
            },
        ]
    );
}

/// A v9 datagram as H3C sends it: template 300 with a variable-length IF_NAME (field length
/// 65535), then two records, the first with the 3-byte length form, the second with a
/// zero-length value.
#[rustfmt::skip]
fn h3c_v9_variable_length() -> Vec<u8> {
    vec![
        0x00, 0x09,             // version 9
        0x00, 0x02,             // count 2
        0x00, 0x00, 0x27, 0x10, // sysUptime 10000 ms
        0x65, 0x53, 0xf1, 0x00, // unix_secs 1700000000
        0x00, 0x00, 0x00, 0x01, // sequence
        0x00, 0x00, 0x00, 0x07, // source id 7
        // template flowset
        0x00, 0x00,             // flowset id 0 (templates)
        0x00, 0x1c,             // length 28
        0x01, 0x2c,             // template id 300
        0x00, 0x05,             // 5 fields
        0x00, 0x08, 0x00, 0x04, // IE 8 IPV4_SRC_ADDR, 4 bytes
        0x00, 0x0c, 0x00, 0x04, // IE 12 IPV4_DST_ADDR, 4 bytes
        0x00, 0x52, 0xff, 0xff, // IE 82 IF_NAME, variable length
        0x00, 0x02, 0x00, 0x04, // IE 2 IN_PKTS, 4 bytes
        0x00, 0x01, 0x00, 0x04, // IE 1 IN_BYTES, 4 bytes
        // data flowset
        0x01, 0x2c,             // flowset id 300
        0x00, 0x2b,             // length 43: 4 + 22 + 17
        // record 1: long-form length
        10, 1, 1, 1,            // src
        10, 1, 1, 2,            // dst
        0xff, 0x00, 0x03, b'G', b'E', b'1', // IF_NAME: 255, 2-byte length 3, "GE1"
        0x00, 0x00, 0x00, 0x03, // packets 3
        0x00, 0x00, 0x00, 0x96, // bytes 150
        // record 2: zero-length value
        10, 1, 1, 3,            // src
        10, 1, 1, 4,            // dst
        0x00,                   // IF_NAME: length 0
        0x00, 0x00, 0x00, 0x01, // packets 1
        0x00, 0x00, 0x00, 0x28, // bytes 40
    ]
}

#[test]
fn v9_variable_length_field_as_h3c_sends_it() {
    // v9 has no variable-length fields in RFC 3954, but H3C sends IPFIX-style ones (field length
    // 65535). netflow_parser 1.0.6 refused such a template whole (reference decoder: 1
    // malformed, then its data counts as missing template).
    let dgram = h3c_v9_variable_length();
    let (flows, report) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!(
        report,
        DatagramReport {
            version: 9,
            flows: 2,
            ..Default::default()
        }
    );
    let base = Flow {
        flow_type: FlowType::NetflowV9,
        observation_domain: 7,
        ..ipfix_flow()
    };
    assert_eq!(
        flows,
        [
            Flow {
                src_addr: Some("10.1.1.1".parse().unwrap()),
                dst_addr: Some("10.1.1.2".parse().unwrap()),
                packets: 3,
                bytes: 150,
                ..base
            },
            Flow {
                src_addr: Some("10.1.1.3".parse().unwrap()),
                dst_addr: Some("10.1.1.4".parse().unwrap()),
                packets: 1,
                bytes: 40,
                ..base
            },
        ]
    );
}

#[test]
fn a_variable_length_record_cut_by_its_set_end_costs_only_itself() {
    #[rustfmt::skip]
    let data = [
        10, 0, 0, 1,            // record 1: src
        0x02, b'e', b'1',       // interfaceName "e1"
        0x00, 0x00, 0x00, 0x07, // bytes 7
        10, 0, 0, 2,            // record 2: src
        0x14, b'e', b't', b'h', b'0', // interfaceName announcing 20 bytes, 4 left in the set
    ];
    let dgram = ipfix(0, &[set(2, &template(302, VARLEN)), set(302, &data)]);
    let (flows, report) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!((flows.len(), report.malformed), (1, 1), "{report:?}");
    assert_eq!(
        flows[0],
        Flow {
            src_addr: Some("10.0.0.1".parse().unwrap()),
            bytes: 7,
            ..ipfix_flow()
        }
    );
}

#[test]
fn variable_length_sets_with_more_than_1024_records_decode_whole() {
    // netflow_parser 1.0.6 stops at 1024 records per set; the reference decoder can only split
    // fixed-length sets to work around it.
    let data: Vec<u8> = (0..2000u32).flat_map(|i| varlen_record(b"e1", i)).collect();
    let dgram = ipfix(0, &[set(2, &template(302, VARLEN)), set(302, &data)]);
    let (flows, report) = decode(&mut decoder(), EXPORTER_A, &dgram);
    assert_eq!((flows.len(), report.malformed), (2000, 0), "{report:?}");
    assert_eq!(flows[1999].bytes, 1999);
}

#[test]
fn ipfix_withdrawal_forgets_the_template() {
    let mut d = decoder();
    let data = set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1));
    let (flows, _) = decode(
        &mut d,
        EXPORTER_A,
        &ipfix(0, &[set(2, &template(256, BASIC)), data.clone()]),
    );
    assert_eq!(flows.len(), 1);
    // Template 256, field count 0: withdrawn (RFC 7011 §8.1); a withdrawal is not malformed.
    let (flows, report) = decode(
        &mut d,
        EXPORTER_A,
        &ipfix(0, &[set(2, &[0x01, 0x00, 0x00, 0x00]), data]),
    );
    assert!(flows.is_empty());
    assert_eq!((report.malformed, report.missing_template), (0, 1));
    assert_eq!(
        d.templates_per_exporter(),
        [("192.0.2.1".parse().unwrap(), 0)]
    );
}

#[test]
fn template_limits_evict_the_least_recently_used_and_prune_forgets_scopes() {
    let mut d = NetflowDecoder::new(DecoderLimits {
        max_templates: 2,
        max_exporters: 1,
        ..DecoderLimits::default()
    });
    let data = |id| set(id, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 1, 1));
    decode(&mut d, EXPORTER_A, &v9(0, &[set(0, &template(256, BASIC))]));
    decode(&mut d, EXPORTER_A, &v9(0, &[set(0, &template(257, BASIC))]));
    decode(&mut d, EXPORTER_A, &v9(0, &[data(256)])); // 257 is now the least recently used
    decode(&mut d, EXPORTER_A, &v9(0, &[set(0, &template(258, BASIC))]));
    let (_, r) = decode(
        &mut d,
        EXPORTER_A,
        &v9(0, &[data(256), data(257), data(258)]),
    );
    assert_eq!((r.flows, r.missing_template), (2, 1));
    // The table is full (max_exporters 1) and A has been sending: a newcomer cannot evict it.
    decode(&mut d, EXPORTER_B, &v9(0, &[set(0, &template(256, BASIC))]));
    let (_, r) = decode(&mut d, EXPORTER_A, &v9(0, &[data(256)]));
    assert_eq!((r.flows, r.missing_template), (1, 0));
    let (_, r) = decode(&mut d, EXPORTER_B, &v9(0, &[data(256)]));
    assert_eq!(r.missing_template, 1, "B's template was not learned");
    assert_eq!(
        d.templates_per_exporter(),
        [("192.0.2.1".parse().unwrap(), 2)]
    );
    assert_eq!(d.prune_idle(Duration::ZERO), 1);
    assert!(d.templates_per_exporter().is_empty());
}

/// A spoof flood, one datagram per source, churns among sources on probation: an exporter that
/// has sent more than one datagram keeps its templates (issue 10, finding 4).
#[test]
fn a_flood_of_one_datagram_sources_never_evicts_an_established_exporter() {
    let mut d = NetflowDecoder::new(DecoderLimits {
        max_exporters: 10,
        ..DecoderLimits::default()
    });
    let data = set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 1, 1));
    let router = "192.0.2.1:2055";
    decode(&mut d, router, &v9(0, &[set(0, &template(256, BASIC))]));
    decode(&mut d, router, &v9(0, std::slice::from_ref(&data)));
    for i in 0..10_000u32 {
        let [_, _, a, b] = i.to_be_bytes();
        let spoofed = format!("127.1.{a}.{b}:2055");
        decode(&mut d, &spoofed, &v9(0, &[set(0, &template(256, BASIC))]));
    }
    let (_, r) = decode(&mut d, router, &v9(0, &[data]));
    assert_eq!(
        (r.flows, r.missing_template),
        (1, 0),
        "its template survived"
    );
    // The table stayed at its bound: the router and 9 spoofed scopes.
    assert_eq!(d.templates_per_exporter().len(), 10);
    // A newcomer still gets in while sources on probation can make room.
    let (_, r) = decode(
        &mut d,
        "192.0.2.9:2055",
        &v9(
            0,
            &[
                set(0, &template(256, BASIC)),
                set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 1, 1)),
            ],
        ),
    );
    assert_eq!(r.flows, 1);
}

#[test]
fn a_template_older_than_its_ttl_is_forgotten() {
    let mut d = NetflowDecoder::new(DecoderLimits {
        template_ttl: Duration::from_millis(1),
        ..DecoderLimits::default()
    });
    let data = set(256, &basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 1, 1));
    // Template and data in one datagram: the template is fresh.
    let (flows, _) = decode(
        &mut d,
        EXPORTER_A,
        &v9(0, &[set(0, &template(256, BASIC)), data.clone()]),
    );
    assert_eq!(flows.len(), 1);
    std::thread::sleep(Duration::from_millis(5));
    let (flows, report) = decode(&mut d, EXPORTER_A, &v9(0, &[data]));
    assert!(flows.is_empty());
    assert_eq!(report.missing_template, 1);
    assert_eq!(
        d.templates_per_exporter(),
        [("192.0.2.1".parse().unwrap(), 0)]
    );
}

/// Interface names from options data: IPFIX scope IE 10 with a variable-length IE 82, v9 scope
/// type 2 with a NUL-padded fixed-length IE 82; announced once, again only when changed.
#[test]
fn interface_names_from_options_data() {
    let mut d = decoder();
    let names = |d: &mut NetflowDecoder| {
        let mut out = Vec::new();
        d.drain_interface_names(&mut out);
        out.into_iter()
            .map(|n| (n.exporter.to_string(), n.index, n.name.to_string()))
            .collect::<Vec<_>>()
    };
    let ipfix_names = |wan: &[u8]| {
        let mut rows = vec![0, 0, 0, 1, wan.len() as u8];
        rows.extend_from_slice(wan);
        rows.extend_from_slice(&[0, 0, 0, 2, 10]);
        rows.extend_from_slice(b"bridge-lan");
        ipfix(
            0,
            &[
                set(3, &ipfix_options_template(300, 1, &[(10, 4), (82, 0xFFFF)])),
                set(300, &rows),
            ],
        )
    };
    decode(&mut d, EXPORTER_A, &ipfix_names(b"ether1"));
    let a = addr(EXPORTER_A).ip().to_string();
    assert_eq!(
        names(&mut d),
        [
            (a.clone(), 1, "ether1".into()),
            (a.clone(), 2, "bridge-lan".into())
        ]
    );
    // The same rows again: nothing new. A renamed interface: announced.
    decode(&mut d, EXPORTER_A, &ipfix_names(b"ether1"));
    assert_eq!(names(&mut d), []);
    decode(&mut d, EXPORTER_A, &ipfix_names(b"ether1-wan"));
    assert_eq!(names(&mut d), [(a.clone(), 1, "ether1-wan".into())]);

    let mut row = vec![0, 0, 0, 7];
    row.extend_from_slice(b"sfp1\0\0\0\0\0\0\0\0\0\0\0\0");
    let v9_names = v9(
        0,
        &[
            set(1, &v9_options_template(257, &[(2, 4)], &[(82, 16)])),
            set(257, &row),
        ],
    );
    decode(&mut d, EXPORTER_B, &v9_names);
    let b = addr(EXPORTER_B).ip().to_string();
    assert_eq!(names(&mut d), [(b, 7, "sfp1".into())]);
}

/// softflowd's v9 options (scope "interface", IF_NAME 16 bytes) name interface 0 after the
/// capture it read: tshark shows `cflow.if_name` "traffic.pcap" with `cflow.scope_interface` 0.
#[test]
fn softflowd_v9_announces_its_interface_name() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/fixtures/softflowd-v9.pcap");
    let bytes = std::fs::read(path).unwrap();
    let (datagrams, _) = crate::capture::read_datagrams(&bytes).unwrap();
    let mut d = decoder();
    let mut names = Vec::new();
    for g in &datagrams {
        d.decode(g.src, g.payload, 0, &mut Vec::new());
        d.drain_interface_names(&mut names);
    }
    let names: Vec<_> = names
        .iter()
        .map(|n| (n.exporter.to_string(), n.index, &*n.name))
        .collect();
    assert_eq!(names, [("127.0.0.1".to_string(), 0, "traffic.pcap")]);
}

/// Names are bounded per scope and in all scopes together, and a pruned scope gives its share
/// back.
#[test]
fn interface_names_are_bounded_and_freed_with_their_scope() {
    let mut d = decoder();
    let rows: Vec<u8> = (0..MAX_NAMES_PER_SCOPE as u32 + 10)
        .flat_map(|i| {
            let mut r = i.to_be_bytes().to_vec();
            r.extend_from_slice(format!("if{i:06}").as_bytes());
            r
        })
        .collect();
    let options = |domain: u32| {
        ipfix(
            domain,
            &[
                set(3, &ipfix_options_template(300, 1, &[(10, 4), (82, 8)])),
                set(300, &rows),
            ],
        )
    };
    let learned = |d: &mut NetflowDecoder| {
        let mut out = Vec::new();
        d.drain_interface_names(&mut out);
        out.len()
    };
    decode(&mut d, EXPORTER_A, &options(1));
    assert_eq!(learned(&mut d), MAX_NAMES_PER_SCOPE.min(MAX_PENDING_NAMES));
    for domain in 2..=6 {
        decode(&mut d, EXPORTER_A, &options(domain));
        learned(&mut d);
    }
    assert_eq!(d.names_total, MAX_NAMES);
    d.prune_idle(Duration::ZERO);
    assert_eq!(d.names_total, 0);
    decode(&mut d, EXPORTER_A, &options(7));
    assert_eq!(learned(&mut d), MAX_NAMES_PER_SCOPE.min(MAX_PENDING_NAMES));
}
