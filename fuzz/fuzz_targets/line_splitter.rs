//! Fuzz target: the stdin line splitter (`input::stdin::LineSplitter`) against a reference model.
//!
//! Input: byte 0 is the line cap (0-255), byte 1 seeds the sizes of the reads the splitter sees
//! (1-16 bytes each, with an `Interrupted` error now and then), the rest is the stream.
//! Every line (split on `\n`; a last line without `\n` counts unless empty) must come out exactly
//! once, in order: as `Line(bytes)` when it fits the cap, as `TooLong` when it does not, however
//! the reads cut it. Each decoded line also goes through `decode_line` (the path stdin takes).

#![no_main]

use std::io::{self, BufRead, Read};

use goflow2_exporter::decode::goflow_json::decode_line;
use goflow2_exporter::input::stdin::{LineEvent, LineSplitter};
use libfuzzer_sys::fuzz_target;

/// A reader that hands out its data in small reads of varying size, with interruptions.
struct Chunky<'a> {
    data: &'a [u8],
    pos: usize,
    /// Size of the buffer currently offered by `fill_buf`.
    avail: usize,
    rng: u32,
    interrupted: bool,
}

impl Chunky<'_> {
    fn next(&mut self) -> u32 {
        // xorshift32; the seed is never 0.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.rng
    }
}

impl Read for Chunky<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let b = self.fill_buf()?;
            let n = b.len().min(buf.len());
            buf[..n].copy_from_slice(&b[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Chunky<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.avail == 0 {
            let r = self.next();
            if r % 7 == 0 && !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.interrupted = false;
            self.avail = (1 + (r >> 8) as usize % 16).min(self.data.len() - self.pos);
        }
        Ok(&self.data[self.pos..self.pos + self.avail])
    }

    fn consume(&mut self, n: usize) {
        assert!(n <= self.avail, "consumed more than offered");
        self.avail -= n;
        self.pos += n;
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Line(Vec<u8>),
    TooLong,
}

fn model(data: &[u8], max_line: usize) -> Vec<Ev> {
    let mut parts: Vec<&[u8]> = data.split(|&c| c == b'\n').collect();
    // The part after the last `\n` (or the whole input without one) is a line only if not empty.
    if parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
        .into_iter()
        .map(|p| {
            if p.len() > max_line {
                Ev::TooLong
            } else {
                Ev::Line(p.to_vec())
            }
        })
        .collect()
}

fuzz_target!(|input: &[u8]| {
    let [cap, seed, data @ ..] = input else {
        return;
    };
    let max_line = usize::from(*cap);
    let reader = Chunky {
        data,
        pos: 0,
        avail: 0,
        rng: u32::from(*seed) * 0x0101_0101 | 1,
        interrupted: false,
    };
    let mut splitter = LineSplitter::new(reader, max_line);
    let mut events = Vec::new();
    let mut total = 0;
    let mut flows = Vec::new();
    loop {
        let n = splitter
            .next_chunk(|e| match e {
                LineEvent::Line(l) => {
                    assert!(l.len() <= max_line, "a line over the cap was handed out");
                    assert!(!l.contains(&b'\n'));
                    let _ = decode_line(l, &mut flows);
                    flows.clear();
                    events.push(Ev::Line(l.to_vec()));
                }
                LineEvent::TooLong => events.push(Ev::TooLong),
            })
            .expect("Interrupted is retried, no other error is produced");
        if n == 0 {
            break;
        }
        total += n;
        assert!(total <= data.len());
    }
    assert_eq!(total, data.len(), "bytes read");
    assert_eq!(events, model(data, max_line));
    // After the end: further calls report the end again and hand out nothing.
    let again = splitter.next_chunk(|e| panic!("event after the end: {e:?}"));
    assert_eq!(again.unwrap(), 0);
});
