//! Fuzz target: `--replay`'s streaming capture reader (`capture::CaptureReader` over
//! pcap-parser and etherparse, through `read_datagrams`), classic pcap and pcapng.
//!
//! Checks, beyond "never panics":
//! - every packet record is counted once: `packets == udp_datagrams + skipped_*`, and
//!   `udp_datagrams` is the number of datagrams returned;
//! - payloads are the file's own bytes at the offsets the stream reports (sub-slices of the
//!   input) and fit a UDP datagram;
//! - a file without a pcap/pcapng magic number is `NotACapture` (the reverse no longer holds: a
//!   cut or unusable header, or another major version, is `NotACapture` too);
//! - reading is incremental: any prefix of the file yields a prefix of the file's datagrams, and
//!   reading twice gives the same result;
//! - short reads do not matter: read through a `Read` that hands out a few bytes at a time, the
//!   stream finds the same datagrams and counts once it gets past the file header.

#![no_main]

use std::io::Read;

use goflow2_exporter::capture::{
    CaptureError, CaptureReader, CaptureStats, Datagram, read_datagrams,
};
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
        || [0xa1b2_c3d4, 0xa1b2_3c4d, 0xa1b2_cd34].contains(&le)
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
                assert!(is_subslice(file, d.payload), "payload not the file's bytes");
                assert_eq!(
                    d.payload.as_ptr() as usize - file.as_ptr() as usize,
                    d.offset as usize
                );
                assert!(d.payload.len() <= 65_535 - 8);
                assert_eq!(d.src.is_ipv4(), d.dst.is_ipv4(), "mixed address families");
            }
            // No more records than the smallest record could fill (16-byte classic record
            // header, 12-byte pcapng block).
            assert!(s.packets as usize <= file.len() / 12 + 1, "{s:?}");
        }
        Err(CaptureError::UnsupportedLinkType(_)) => assert!(has_magic(file)),
        Err(CaptureError::NotACapture) => {}
    }
    if !has_magic(file) {
        assert_eq!(r, Err(CaptureError::NotACapture));
    }
    r
}

/// Hands out at most `chunk` bytes per read: a pipe, or a file read by a slow device.
struct Trickle<'a> {
    rest: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

fuzz_target!(|file: &[u8]| {
    let full = read_checked(file);
    assert_eq!(full, read_datagrams(file), "not deterministic");

    // pcap-parser needs the file header in its first read; after that any read size works.
    let chunk = 64 + usize::from(file.first().copied().unwrap_or(0));
    if let Ok(mut reader) = CaptureReader::new(Trickle { rest: file, chunk }) {
        let mut seen = Vec::new();
        let stats = reader.for_each(|d| seen.push((d.src, d.dst, d.payload.to_vec(), d.offset)));
        let (all, s) = full.as_ref().expect("the whole file read as a capture");
        let want = all
            .iter()
            .map(|d| (d.src, d.dst, d.payload.to_vec(), d.offset));
        assert_eq!(
            seen,
            want.collect::<Vec<_>>(),
            "short reads changed the datagrams"
        );
        assert_eq!(&stats, s, "short reads changed the counts");
    }

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
            // A file refused as a whole (classic pcap of an unsupported link type): so are its
            // prefixes that have a header.
            (Err(_), Ok((some, _))) => assert!(some.is_empty()),
            _ => {}
        }
    }
});
