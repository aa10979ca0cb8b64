//! Fuzz target: one goflow2 JSON line through `decode_line` (fast path + serde fallback).
//!
//! Checks, beyond "never panics":
//! - flows already in `out` are never touched; `Ok` appends at least one flow; `Err` is one of the three stdin error types, `InvalidUtf8` exactly when
//!   the line is not UTF-8 (and then nothing is appended);
//! - only objects are flows: on `Ok` the line's top-level JSON values (per a `serde_json::Value`
//!   stream) are all objects, one flow each; on `Err` at most the leading objects gave flows;
//! - sampler addresses come out with IPv4-mapped IPv6 unwrapped;
//! - differential, fast path vs serde: the same line with one space after its first `{` is not
//!   in the fast path's subset (no whitespace between tokens), so serde decodes it; the results
//!   (Ok/Err, error type, flows) must be identical. The line doubled (`LL`, two objects) also
//!   goes to serde and must give the flows twice;
//! - round trip: every decoded flow, rendered back as a compact goflow2 line in goflow2's key
//!   order (fast path) and with a space (serde), decodes to the same flow.

#![no_main]

use std::fmt::Write as _;
use std::net::IpAddr;

use goflow2_exporter::decode::ErrorType;
use goflow2_exporter::decode::goflow_json::decode_line;
use goflow2_exporter::flow::{Flow, FlowType, unmap_v4};
use libfuzzer_sys::fuzz_target;

/// A flow put in `out` before decoding: it must come out unchanged.
fn sentinel() -> Flow {
    Flow {
        flow_type: FlowType::Sflow5,
        sampler: Some("2001:db8::dead".parse().unwrap()),
        bytes: 0xdead_beef,
        ..Flow::default()
    }
}

fn decode(line: &[u8]) -> (Result<(), ErrorType>, Vec<Flow>) {
    let mut out = vec![sentinel()];
    let r = decode_line(line, &mut out);
    assert_eq!(
        out[0],
        sentinel(),
        "decode_line modified flows already in `out`"
    );
    out.remove(0);
    (r, out)
}

/// The line with a space inserted after its first non-whitespace byte, if that byte is `{`.
fn with_space(line: &[u8]) -> Option<Vec<u8>> {
    let i = line
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))?;
    (line[i] == b'{').then(|| [&line[..=i], b" ", &line[i + 1..]].concat())
}

/// How many top-level JSON values of the line are objects before the first value that is not
/// one (or the first syntax error), and whether every value parsed and was an object. Values
/// inside the objects are skipped like serde skips unknown keys (no depth limit, any number).
fn top_level_objects(line: &[u8]) -> (usize, bool) {
    let mut n = 0;
    for v in serde_json::Deserializer::from_slice(line).into_iter::<Object>() {
        match v {
            Ok(Object) => n += 1,
            Err(_) => return (n, false),
        }
    }
    (n, true)
}

/// Deserializes from a JSON object only; any other value is an error.
struct Object;

impl<'de> serde::Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Object;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Object, A::Error> {
                use serde::de::IgnoredAny;
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Object)
            }
        }
        d.deserialize_any(V)
    }
}

fn addr(a: Option<IpAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_default()
}

/// `flow` as goflow2 v2 prints it (key order, compact), limited to the keys the decoder keeps
/// plus a few skipped ones in between.
fn render(f: &Flow) -> String {
    let mut s = String::with_capacity(512);
    let _ = write!(
        s,
        r#"{{"type":"{}","time_received_ns":{},"sequence_num":7,"sampling_rate":{},"sampler_address":"{}","time_flow_start_ns":{},"time_flow_end_ns":{},"bytes":{},"packets":{},"src_addr":"{}","dst_addr":"{}","etype":"IPv4","#,
        f.flow_type.as_str(),
        f.time_received_ns,
        f.sampling_rate,
        addr(f.sampler),
        f.time_flow_start_ns,
        f.time_flow_end_ns,
        f.bytes,
        f.packets,
        addr(f.src_addr),
        addr(f.dst_addr),
    );
    if let Some(p) = f.proto {
        let _ = write!(s, r#""proto":{p},"#);
    }
    let _ = write!(
        s,
        r#""src_port":{},"dst_port":{},"in_if":{},"out_if":{},"src_mac":"00:00:00:00:00:00","tcp_flags":{},"src_as":{},"dst_as":{},"as_path":[],"observation_domain_id":{},"layer_stack":["Ethernet","IPv4"]}}"#,
        f.src_port,
        f.dst_port,
        f.in_if,
        f.out_if,
        f.tcp_flags,
        f.src_as,
        f.dst_as,
        f.observation_domain,
    );
    s
}

fuzz_target!(|line: &[u8]| {
    let (r, flows) = decode(line);
    let utf8 = std::str::from_utf8(line).is_ok();
    match r {
        Ok(()) => {
            assert!(utf8);
            assert!(!flows.is_empty(), "Ok without a flow");
        }
        Err(ErrorType::InvalidUtf8) => {
            assert!(!utf8, "InvalidUtf8 for a UTF-8 line");
            assert!(flows.is_empty());
        }
        Err(ErrorType::InvalidJson | ErrorType::InvalidField) => assert!(utf8),
        Err(e) => panic!("decode_line returned a non-stdin error type {e:?}"),
    }
    // Only objects are flows: on Ok, the line's top-level values are all objects, one flow each;
    // on Err, the flows kept come from the objects before the bad value.
    let (leading_objects, all_objects) = top_level_objects(line);
    if r.is_ok() {
        assert!(all_objects, "Ok, but a top-level value is not an object");
        assert_eq!(
            flows.len(),
            leading_objects,
            "one flow per top-level object"
        );
    } else {
        assert!(
            flows.len() <= leading_objects,
            "{} flows kept, {leading_objects} leading objects",
            flows.len()
        );
    }
    for f in &flows {
        assert_eq!(f.sampler.map(unmap_v4), f.sampler, "sampler not unmapped");
    }

    // Differential: serde on the same tokens.
    if let Some(spaced) = with_space(line) {
        let (r2, flows2) = decode(&spaced);
        assert_eq!(r, r2, "fast path and serde disagree on the result");
        assert_eq!(flows, flows2, "fast path and serde disagree on the flows");
    }
    if r.is_ok() {
        let doubled = [line, line].concat();
        let (r3, flows3) = decode(&doubled);
        assert_eq!(r3, Ok(()), "line decodes, but not twice in a row");
        assert_eq!(flows3.len(), 2 * flows.len());
        assert_eq!(&flows3[..flows.len()], &flows[..]);
        assert_eq!(&flows3[flows.len()..], &flows[..]);
    }

    // Round trip through goflow2's rendering.
    for f in &flows {
        let text = render(f);
        for l in [
            text.clone().into_bytes(),
            with_space(text.as_bytes()).unwrap(),
        ] {
            let (r4, back) = decode(&l);
            assert_eq!(r4, Ok(()), "{text}");
            assert_eq!(back.len(), 1, "{text}");
            // An unknown `type` renders as "UNKNOWN", which reads back as Unknown: same value.
            assert_eq!(back[0], *f, "{text}");
        }
    }
});
