//! Builders of NetFlow v9 and IPFIX datagrams for tests and benches: headers, sets, templates
//! and records assembled from readable parts. Not used by the exporter itself, and compiled only
//! into test builds (`cfg(test)` or the `testkit` feature, see Cargo.toml).

/// v9 header: version 9, count, sysUptime 10 s, unix_secs 1_700_000_000, sequence 1, source id.
pub fn v9(source_id: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let mut d = vec![0x00, 0x09]; // version 9
    d.extend_from_slice(&(sets.len() as u16).to_be_bytes()); // count
    d.extend_from_slice(&10_000u32.to_be_bytes()); // sysUptime (ms)
    d.extend_from_slice(&1_700_000_000u32.to_be_bytes()); // unix_secs
    d.extend_from_slice(&1u32.to_be_bytes()); // sequence
    d.extend_from_slice(&source_id.to_be_bytes()); // source id
    sets.iter().for_each(|s| d.extend_from_slice(s));
    d
}

/// IPFIX header: version 10, length, export time 1_700_000_000, sequence 1, domain.
pub fn ipfix(domain: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = 16 + sets.iter().map(Vec::len).sum::<usize>();
    let mut d = vec![0x00, 0x0a]; // version 10
    d.extend_from_slice(&(len as u16).to_be_bytes()); // message length
    d.extend_from_slice(&1_700_000_000u32.to_be_bytes()); // export time
    d.extend_from_slice(&1u32.to_be_bytes()); // sequence
    d.extend_from_slice(&domain.to_be_bytes()); // observation domain
    sets.iter().for_each(|s| d.extend_from_slice(s));
    d
}

/// A set: id, length (header included), body.
pub fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut s = id.to_be_bytes().to_vec();
    s.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    s.extend_from_slice(body);
    s
}

/// A template record: id, field count, (IE, length) pairs.
pub fn template(id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut t = id.to_be_bytes().to_vec();
    t.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (ie, len) in fields {
        t.extend_from_slice(&ie.to_be_bytes());
        t.extend_from_slice(&len.to_be_bytes());
    }
    t
}

/// IE 8 src v4, IE 12 dst v4, IE 4 proto, IE 1 bytes (4), IE 2 packets (4).
pub const BASIC: &[(u16, u16)] = &[(8, 4), (12, 4), (4, 1), (1, 4), (2, 4)];

pub fn basic_record(src: [u8; 4], dst: [u8; 4], proto: u8, bytes: u32, packets: u32) -> Vec<u8> {
    let mut r = src.to_vec();
    r.extend_from_slice(&dst);
    r.push(proto);
    r.extend_from_slice(&bytes.to_be_bytes());
    r.extend_from_slice(&packets.to_be_bytes());
    r
}

/// IE 8 src v4 (4), IE 82 interfaceName (variable length), IE 1 bytes (4).
pub const VARLEN: &[(u16, u16)] = &[(8, 4), (82, 0xFFFF), (1, 4)];

/// A [`VARLEN`] record from 10.0.0.1: the name with its 1-byte length (3-byte form from 255
/// bytes on), then `bytes`.
pub fn varlen_record(name: &[u8], bytes: u32) -> Vec<u8> {
    let mut r = vec![10, 0, 0, 1];
    if name.len() < 255 {
        r.push(name.len() as u8); // 1-byte length
    } else {
        r.push(255); // 3-byte length
        r.extend_from_slice(&(name.len() as u16).to_be_bytes());
    }
    r.extend_from_slice(name);
    r.extend_from_slice(&bytes.to_be_bytes());
    r
}

/// `"name{labels}" → value` from a registry's rendered exposition (labels as rendered).
pub fn render_map(
    registry: &crate::telemetry::Registry,
) -> std::collections::BTreeMap<String, f64> {
    registry
        .render()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}
