//! Fuzz target: `--replay`'s capture reader (`capture::read_datagrams`, classic pcap and pcapng).
//!
//! Checks, beyond "never panics":
//! - every packet record is counted once: `packets == udp_datagrams + skipped_*`, and
//!   `udp_datagrams` is the number of datagrams returned;
//! - payloads are borrowed from the file (sub-slices of the input) and fit a UDP datagram;
//! - `NotACapture` exactly when the file does not start with a pcap/pcapng magic number;
//! - reading is incremental: any prefix of the file yields a prefix of the file's datagrams
//!   (records are read in order and a record cut by the end of the file gives no datagram), and
//!   reading twice gives the same result.

#![no_main]

use goflow2_exporter::capture::{CaptureError, CaptureStats, Datagram, read_datagrams};
use libfuzzer_sys::fuzz_target;

fn is_subslice(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr_range(), inner.as_ptr_range());
    inner.is_empty() || (o.start <= i.start && i.end <= o.end)
}

fn has_magic(file: &[u8]) -> bool {
    let Some(m) = file.first_chunk::<4>() else {
        return false;
    };
    let (le, be) = (u32::from_le_bytes(*m), u32::from_be_bytes(*m));
    *m == [0x0a, 0x0d, 0x0d, 0x0a]
        || [0xa1b2_c3d4, 0xa1b2_3c4d].contains(&le)
        || [0xa1b2_c3d4, 0xa1b2_3c4d].contains(&be)
}

fn read_checked(file: &[u8]) -> Result<(Vec<Datagram<'_>>, CaptureStats), CaptureError> {
    let r = read_datagrams(file);
    match &r {
        Ok((d, s)) => {
            assert!(has_magic(file));
            assert_eq!(
                s.packets,
                s.udp_datagrams
                    + s.skipped_non_udp
                    + s.skipped_fragments
                    + s.skipped_malformed
                    + s.skipped_link_type,
                "{s:?}"
            );
            assert_eq!(d.len() as u64, s.udp_datagrams);
            for d in d {
                assert!(
                    is_subslice(file, d.payload),
                    "payload not borrowed from the file"
                );
                assert!(d.payload.len() <= 65_535 - 8);
                assert_eq!(d.src.is_ipv4(), d.dst.is_ipv4(), "mixed address families");
            }
            // No more records than the smallest record could fill (16-byte classic record
            // header, 12-byte pcapng block, 8-byte UDP header).
            assert!(s.packets as usize <= file.len() / 12 + 1, "{s:?}");
        }
        Err(CaptureError::NotACapture) => assert!(!has_magic(file)),
        Err(_) => assert!(has_magic(file)),
    }
    r
}

fuzz_target!(|file: &[u8]| {
    let full = read_checked(file);
    assert_eq!(full, read_datagrams(file), "not deterministic");
    // Two prefixes: the file without its last byte (cuts the last record) and a cut somewhere
    // inside, picked from the file's own bytes.
    let inner = file
        .last()
        .map_or(0, |&b| file.len() * usize::from(b) / 256);
    for cut in [file.len().saturating_sub(1), inner] {
        let prefix = &file[..cut];
        let part = read_checked(prefix);
        match (&full, &part) {
            (Ok((all, _)), Ok((some, _))) => {
                assert!(
                    some.len() <= all.len(),
                    "prefix of {cut} bytes has more datagrams"
                );
                assert_eq!(
                    &all[..some.len()],
                    &some[..],
                    "prefix of {cut} bytes differs"
                );
            }
            // A file refused as a whole: every interface is unsupported, so its prefixes
            // (which see a subset of them) cannot yield datagrams either.
            (Err(_), Ok((some, _))) => assert!(some.is_empty()),
            _ => {}
        }
    }
});
