//! Differential test: every capture of `testdata/fixtures/` and `../shared` through the product
//! decoder ([`NetflowDecoder`]) and the reference ([`NetflowParserDecoder`]), compared datagram by
//! datagram: every flow with all its fields, and the report. Datagrams where
//! [`KnownDifferences`] says the reference is known wrong (see `reference.rs`'s module doc) are
//! excluded explicitly and listed in the output.

use std::path::{Path, PathBuf};

use super::netflow::{DatagramDecoder, DecoderLimits, NetflowDecoder};
use super::reference::{KnownDifferences, NetflowParserDecoder};
use crate::capture::read_datagrams;
use crate::test_shared::shared_dir;
use crate::testkit::*;

/// The `*.pcap` files of `dir`, sorted.
fn pcaps(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    files.sort();
    files
}

/// What comparing one capture went through.
#[derive(Debug, Default)]
struct Tally {
    datagrams: usize,
    flows: usize,
    /// (datagram index, reason) of each datagram not compared.
    excluded: Vec<(usize, &'static str)>,
}

/// Runs one capture through both decoders (fresh ones) and asserts identical results wherever
/// the reference is not known wrong.
fn compare(path: &Path) -> Tally {
    let bytes = std::fs::read(path).unwrap();
    let (datagrams, _) = read_datagrams(&bytes).expect("a capture");
    let limits = DecoderLimits::default();
    let mut product = NetflowDecoder::new(limits);
    let mut reference = NetflowParserDecoder::new(limits);
    let mut known = KnownDifferences::new(limits);
    let mut tally = Tally::default();
    let name = path.file_name().unwrap().to_string_lossy();
    for (i, d) in datagrams.iter().enumerate() {
        let verdict = known.check(d.src, d.payload);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ra = product.decode(d.src, d.payload, d.timestamp_ns, &mut a);
        let rb = reference.decode(d.src, d.payload, d.timestamp_ns, &mut b);
        tally.datagrams += 1;
        match verdict {
            Ok(()) => {
                assert_eq!(ra, rb, "{name} datagram {i}: reports differ");
                assert_eq!(a, b, "{name} datagram {i}: flows differ");
                tally.flows += a.len();
            }
            Err(reason) => tally.excluded.push((i, reason)),
        }
    }
    eprintln!(
        "{name}: {} datagrams, {} flows identical, excluded: {:?}",
        tally.datagrams, tally.flows, tally.excluded
    );
    tally
}

#[test]
fn fixtures_decode_identically_with_the_reference() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fixtures");
    let files = pcaps(&dir);
    assert!(files.len() >= 13, "{files:?}");
    let mut flows = 0;
    for file in files {
        let tally = compare(&file);
        // softflowd and pmacct send fixed-length templates only: nothing to exclude.
        assert!(tally.excluded.is_empty(), "{}: {tally:?}", file.display());
        flows += tally.flows;
    }
    // traffic.pcap is the raw traffic the exports were made from (no flow exports in it).
    assert!(flows > 4000, "{flows}");
}

#[test]
fn shared_captures_decode_identically_with_the_reference() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let mut files = pcaps(&shared.join("captures"));
    files.extend(pcaps(&shared.join("goflow2-samples")));
    assert!(files.len() >= 10, "{files:?}");
    let mut flows = 0;
    for file in files {
        flows += compare(&file).flows;
    }
    // synthetic.pcap is raw traffic, not an export.
    assert!(flows > 200, "{flows}");
}

/// One datagram sequence per documented place where the reference is wrong, named by the
/// reason [`KnownDifferences`] gives for its last datagram.
fn known_difference_cases() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    [field_length_cases(), template_cases()].concat()
}

/// Fields the reference cannot size: variable-length ones, integers wider than 8 bytes.
fn field_length_cases() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let wide: &[(u16, u16)] = &[(8, 4), (1, 16)];
    let mut wide_rec = vec![10, 0, 0, 1];
    wide_rec.extend_from_slice(&[0; 15]);
    wide_rec.push(9);
    let many: Vec<u8> = (0..1100).flat_map(|i| varlen_record(b"e", i)).collect();
    vec![
        (
            "zero-length variable-length value",
            vec![ipfix(
                0,
                &[
                    set(2, &template(300, VARLEN)),
                    set(
                        300,
                        &[varlen_record(b"", 1), varlen_record(b"e1", 2)].concat(),
                    ),
                ],
            )],
        ),
        (
            "v9 variable-length template",
            vec![v9(
                0,
                &[
                    set(0, &template(300, VARLEN)),
                    set(300, &varlen_record(b"e1", 2)),
                ],
            )],
        ),
        (
            "variable-length set of more than 1024 records",
            vec![ipfix(0, &[set(2, &template(300, VARLEN)), set(300, &many)])],
        ),
        (
            "integer wider than 8 bytes",
            vec![ipfix(
                0,
                &[set(2, &template(300, wide)), set(300, &wide_rec)],
            )],
        ),
    ]
}

/// Template sets the reference reads otherwise than RFC 7011 / RFC 3954 say.
fn template_cases() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let rec = basic_record([10, 0, 0, 1], [10, 0, 0, 2], 6, 100, 1);
    // Options template 257: scope IE 302 selectorId (4), IE 34 samplingInterval (4).
    #[rustfmt::skip]
    let opts = [
        0x01, 0x01, 0x00, 0x02, 0x00, 0x01, // id 257, 2 fields, 1 scope field
        0x01, 0x2e, 0x00, 0x04,             // IE 302, 4 bytes
        0x00, 0x22, 0x00, 0x04,             // IE 34, 4 bytes
    ];
    vec![
        (
            "IPFIX options template withdrawal",
            vec![
                ipfix(0, &[set(3, &opts)]),
                ipfix(0, &[set(3, &[0x01, 0x01, 0x00, 0x00])]), // withdraw 257
                ipfix(0, &[set(257, &[0, 0, 0, 1, 0, 0, 0, 9])]),
            ],
        ),
        (
            "IPFIX template set without a usable template",
            // Template 256 announcing 5 fields, only 1 there.
            vec![ipfix(
                0,
                &[set(2, &[0x01, 0x00, 0x00, 0x05, 0x00, 0x08, 0x00, 0x04])],
            )],
        ),
        (
            "v9-style template set inside IPFIX",
            vec![ipfix(0, &[set(0, &template(256, BASIC)), set(256, &rec)])],
        ),
        (
            // A redefinition with an unusable template: the reference keeps the old one.
            "data for a template the reference did not redefine",
            vec![
                v9(0, &[set(0, &template(256, BASIC))]),
                v9(0, &[set(0, &template(256, &[])), set(256, &rec)]),
            ],
        ),
    ]
}

/// Each documented place where the reference is wrong: the two decoders do differ there, and
/// [`KnownDifferences`] flags the datagram.
#[test]
fn every_known_difference_is_real_and_flagged() {
    let exporter = "192.0.2.1:2055".parse().unwrap();
    for (reason, datagrams) in known_difference_cases() {
        let limits = DecoderLimits::default();
        let mut product = NetflowDecoder::new(limits);
        let mut reference = NetflowParserDecoder::new(limits);
        let mut known = KnownDifferences::new(limits);
        let mut last = None;
        for d in &datagrams {
            let verdict = known.check(exporter, d);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let ra = product.decode(exporter, d, 1, &mut a);
            let rb = reference.decode(exporter, d, 1, &mut b);
            last = Some((verdict, (ra, a), (rb, b)));
        }
        let (verdict, product, reference) = last.unwrap();
        assert_eq!(verdict, Err(reason));
        assert_ne!(product, reference, "{reason}: the decoders agree");
    }
}
