#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets under fuzz/corpus/<target>/ (git-ignored) from
# testdata/ and, when present, ../shared/ (captures and goflow2 samples).
#
#   json_line      one file per JSON line (testdata/*.jsonl, ../shared/goflow2-samples/*.jsonl)
#                  plus a few hand-written lines (goflow v1 keys, `}{`-joined objects, `{}`)
#   line_splitter  [cap byte][read-size seed byte] + a few lines, for several caps
#   datagram       the UDP payloads of every capture, in the datagram target's multi-datagram
#                  format (see fuzz/fuzz_targets/datagram.rs): "#DG#"-separated pieces, the
#                  first one configuration, then [control byte][payload] per datagram. Each seed
#                  starts with the exporter's latest template datagram so data sets decode.
#   decoder_diff   the same seeds as datagram (same input format)
#   capture        the capture files (cut to their first records when large) and variants of
#                  them: big-endian, nanosecond, raw-IP / SLL / loopback link types, pcapng.
#
# Seeds are named by content hash, so re-running adds nothing twice; whatever the fuzzer added
# to the corpus directories stays. Usage: scripts/fuzz-corpus.sh [OUT_DIR (default fuzz/corpus)]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/fuzz/corpus}"
shared="$root/../shared"
mkdir -p "$out"/{json_line,line_splitter,datagram,decoder_diff,capture}

python3 - "$root" "$shared" "$out" <<'PY'
import glob, hashlib, os, struct, sys

root, shared, out = sys.argv[1:4]
have_shared = os.path.isdir(shared)
MARKER = b"#DG#"
counts = {}


def put(target, data):
    name = hashlib.sha1(data).hexdigest()
    path = os.path.join(out, target, name)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
    counts[target] = counts.get(target, 0) + 1


def files(*patterns):
    found = []
    for p in patterns:
        found += sorted(glob.glob(p))
    return found


pcaps = files(os.path.join(root, "testdata/fixtures/*.pcap"))
jsonls = files(os.path.join(root, "testdata/*.jsonl"))
if have_shared:
    pcaps += files(os.path.join(shared, "captures/*.pcap"), os.path.join(shared, "goflow2-samples/*.pcap"))
    jsonls += files(os.path.join(shared, "goflow2-samples/*.jsonl"))
else:
    print("fuzz-corpus: ../shared absent; seeds from testdata/ only", file=sys.stderr)

# ---- classic pcap reading (what the testdata and shared captures are: Ethernet, classic) -----


def read_pcap(data):
    """(endian, nanos, linktype, [(sec, frac, frame)]) of a classic pcap."""
    magic = data[:4]
    for endian in "<>":
        m = struct.unpack(endian + "I", magic)[0]
        if m in (0xA1B2C3D4, 0xA1B23C4D):
            break
    else:
        raise ValueError("not a classic pcap")
    nanos = m == 0xA1B23C4D
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0xFFFF
    recs, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[pos : pos + 16])
        frame = data[pos + 16 : pos + 16 + incl]
        if len(frame) < incl:
            break
        recs.append((sec, frac, frame))
        pos += 16 + incl
    return endian, nanos, linktype, recs


def l3_of(linktype, frame):
    """(ethertype, IP packet) for Ethernet (with VLAN tags) frames; None otherwise."""
    if linktype != 1 or len(frame) < 14:
        return None
    off, t = 12, struct.unpack(">H", frame[12:14])[0]
    while t in (0x8100, 0x88A8, 0x9100) and len(frame) >= off + 6:
        off += 4
        t = struct.unpack(">H", frame[off : off + 2])[0]
    return t, frame[off + 2 :]


def udp_of(linktype, frame):
    """((src ip bytes, src port), payload) of a UDP-over-IPv4/IPv6 frame, else None."""
    l3 = l3_of(linktype, frame)
    if not l3:
        return None
    t, ip = l3
    if t == 0x0800 and len(ip) >= 20 and ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        if ip[9] != 17 or struct.unpack(">H", ip[6:8])[0] & 0x3FFF:
            return None
        src, seg = ip[12:16], ip[ihl:]
    elif t == 0x86DD and len(ip) >= 40 and ip[6] == 17:
        src, seg = ip[8:24], ip[40:]
    else:
        return None
    if len(seg) < 8:
        return None
    sport, _dport, ulen = struct.unpack(">HHH", seg[:6])
    payload = seg[8:ulen]
    if ulen < 8 or len(payload) != ulen - 8:
        return None
    return (src, sport), payload


# ---- json_line and line_splitter ---------------------------------------------------------

lines = []
for path in jsonls:
    with open(path, "rb") as f:
        for line in f.read().split(b"\n"):
            if line.strip():
                lines.append(line)
for line in lines:
    put("json_line", line)
v5 = lines[0] if lines else b'{"type":"NETFLOW_V5","bytes":1}'
for line in [
    b"{}",
    b'{"Type":"NETFLOW_V5","TimeReceived":1704067205,"SamplingRate":64,"SamplerAddress":"192.0.2.1","TimeFlowStart":1704067200,"TimeFlowEnd":1704067204,"Bytes":5000,"Packets":10,"SrcAddr":"192.168.88.10","DstAddr":"1.1.1.1","Proto":6,"SrcPort":51000,"DstPort":443,"InIf":2,"OutIf":1,"TCPFlags":27}',
    b'{"type":3,"proto":"ipv6-icmp","src_addr":"2001:db8::1","dst_addr":"::ffff:10.0.0.1","sampler_address":"::ffff:192.0.2.9","time_flow_start_ns":"2024-01-01T00:00:00Z"}',
    b'{"type":"IPFIX","bytes":18446744073709551615,"in_if":4294967295,"src_port":65535,"nested":{"a":[1,2.5e3,-0.5,true,false,null,{"b":"\\u00e9\\n"}]}}',
    b'  {"bytes" : 1 , "packets":2}\t',
    v5 + v5,
    v5 + b"\n" + v5,
]:
    put("json_line", line)

splitter_text = b"\n".join(lines[:4]) + b"\n" if lines else b"{}\n{}\n"
for cap, seed in [(0, 1), (8, 2), (64, 3), (200, 4), (255, 5)]:
    put("line_splitter", bytes([cap, seed]) + splitter_text)
    put("line_splitter", bytes([cap, seed]) + b"a\n\nbb\r\n" + b"x" * 300 + b"\nyy")

# ---- datagram ----------------------------------------------------------------------------


def has_template(payload):
    """Whether a v9/IPFIX payload holds a (options) template set."""
    if len(payload) < 4:
        return False
    version = struct.unpack(">H", payload[:2])[0]
    if version == 9:
        off, ids = 20, (0, 1)
    elif version == 10:
        off, ids = 16, (2, 3)
    else:
        return False
    while off + 4 <= len(payload):
        set_id, set_len = struct.unpack(">HH", payload[off : off + 4])
        if set_id in ids:
            return True
        if set_len < 4:
            break
        off += set_len
    return False


def frame_seed(config, datagrams):
    return MARKER.join([bytes([config])] + [bytes([ctl]) + p for ctl, p in datagrams])


MAX_SEED = 6000
for path in pcaps:
    with open(path, "rb") as f:
        try:
            _, _, linktype, recs = read_pcap(f.read())
        except ValueError:
            continue
    exporters, templates, datagrams = {}, {}, []
    for _sec, _frac, frame in recs:
        u = udp_of(linktype, frame)
        if not u or MARKER in u[1]:
            continue
        src, payload = u
        idx = exporters.setdefault(src, len(exporters) % 8)
        datagrams.append((idx, payload))
    seeds, cur, size = [], [], 0
    for idx, payload in datagrams:
        if cur and (size + len(payload) > MAX_SEED or len(cur) >= 6):
            seeds.append(cur)
            # The next seed starts with every exporter's latest template datagram.
            cur = [(i, t) for i, t in templates.items()]
            size = sum(len(t) for _, t in cur)
        if has_template(payload):
            templates[idx] = payload
        cur.append((idx, payload))
        size += len(payload)
    if cur:
        seeds.append(cur)
    for n, seed in enumerate(seeds[:25]):
        # Bit 4 on every datagram: check templates_per_exporter() after it.
        pieces = [(0x10 | idx, p) for idx, p in seed]
        put("datagram", frame_seed(0, pieces))
        put("decoder_diff", frame_seed(0, pieces))
        # Bit 5 too: decode with the detail fields of flow lines and check the lines.
        put("datagram", frame_seed(0, [(c | 0x20, p) for c, p in pieces]))
        if n == 0:
            put("datagram", frame_seed(1, pieces))  # tiny limits
            put("datagram", frame_seed(2, pieces))  # determinism check
            if len(pieces) > 1:
                # prune_idle(0) before the last datagram: its data sets lose their template.
                last = pieces[-1]
                put("datagram", frame_seed(0, pieces[:-1] + [(last[0] | 0x08, last[1])]))
            # The same datagrams from the other exporters (interleaved template caches).
            put("datagram", frame_seed(0, [((c + k) & 0x17, p) for k, (c, p) in enumerate(pieces)]))

# ---- capture -----------------------------------------------------------------------------


def pcap_file(endian, nanos, linktype, recs):
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    b = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for sec, frac, frame in recs:
        b += struct.pack(endian + "IIII", sec, frac, len(frame), len(frame)) + frame
    return b


def pcapng_block(endian, btype, body):
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(endian + "II", btype, total) + body + struct.pack(endian + "I", total)


def pcapng_file(endian, linktype, recs, tsresol=None, spb=False):
    shb = pcapng_block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if tsresol is not None:
        opts = struct.pack(endian + "HH", 9, 1) + bytes([tsresol]) + b"\0" * 3
        opts += struct.pack(endian + "HH", 14, 8) + struct.pack(endian + "q", 3600)
        opts += struct.pack(endian + "HH", 0, 0)
    b = shb + pcapng_block(endian, 1, struct.pack(endian + "HHI", linktype, 0, 0) + opts)
    for sec, frac, frame in recs:
        if spb:
            b += pcapng_block(endian, 3, struct.pack(endian + "I", len(frame)) + frame)
        else:
            ts = sec * 1_000_000 + frac
            body = struct.pack(endian + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
            b += pcapng_block(endian, 6, body + frame)
    return b


def relink(recs, linktype):
    """The records re-framed for another link type (from Ethernet)."""
    new = []
    for sec, frac, frame in recs:
        l3 = l3_of(1, frame)
        if not l3:
            continue
        t, ip = l3
        if linktype == 101:
            f = ip
        elif linktype == 113:
            f = struct.pack(">HHH8sH", 0, 1, 6, b"\0" * 8, t) + ip
        elif linktype == 276:
            f = struct.pack(">HHIHBB8s", t, 0, 1, 1, 0, 6, b"\0" * 8) + ip
        elif linktype == 0:
            f = struct.pack("<I", 2 if t == 0x0800 else 24) + ip
        elif linktype == 1:  # add an 802.1Q tag
            f = frame[:12] + struct.pack(">HH", 0x8100, 42) + frame[12:]
        else:
            continue
        new.append((sec, frac, f))
    return new


MAX_CAPTURE = 16384
for n, path in enumerate(pcaps):
    with open(path, "rb") as f:
        data = f.read()
    try:
        endian, nanos, linktype, recs = read_pcap(data)
    except ValueError:
        put("capture", data[:MAX_CAPTURE])
        continue
    # The first records, within MAX_CAPTURE bytes.
    keep, size = [], 24
    for r in recs:
        if size + 16 + len(r[2]) > MAX_CAPTURE:
            break
        keep.append(r)
        size += 16 + len(r[2])
    put("capture", data if len(data) <= MAX_CAPTURE else pcap_file(endian, nanos, linktype, keep))
    if linktype != 1 or n % 3:
        continue  # variants of every third capture are plenty
    few = keep[:4]
    put("capture", pcap_file(">", False, 1, few))
    put("capture", pcap_file("<", True, 1, few))
    put("capture", pcap_file("<", False, 1, relink(few, 1)))
    for lt in (101, 113, 276, 0):
        put("capture", pcap_file("<", False, 12 if lt == 101 and n % 2 else lt, relink(few, lt)))
    put("capture", pcapng_file("<", 1, few))
    put("capture", pcapng_file(">", 1, few, tsresol=9))
    put("capture", pcapng_file("<", 113, relink(few, 113), tsresol=0x86, spb=True))
    put("capture", pcapng_file("<", 1, few) + pcapng_file(">", 101, relink(few, 101)))

# decoder_diff: variable-length fields (which no capture here has): an IPFIX template 256 with
# src (4), interfaceName (IE 82, variable) and bytes (4), and a v9 (H3C-style) one, then data
# with short, long-form and zero-length values.
def varlen_seeds():
    tmpl = struct.pack(">HH", 256, 3) + struct.pack(">HHHHHH", 8, 4, 82, 0xFFFF, 1, 4)
    recs = (bytes([10, 0, 0, 1, 2]) + b"e1" + struct.pack(">I", 7)
            + bytes([10, 0, 0, 2, 255, 0, 3]) + b"ge1" + struct.pack(">I", 8)
            + bytes([10, 0, 0, 3, 0]) + struct.pack(">I", 9))
    sets = struct.pack(">HH", 2, 4 + len(tmpl)) + tmpl + struct.pack(">HH", 256, 4 + len(recs)) + recs
    ipfix = struct.pack(">HHIII", 10, 16 + len(sets), 1700000000, 1, 0) + sets
    v9sets = struct.pack(">HH", 0, 4 + len(tmpl)) + tmpl + struct.pack(">HH", 256, 4 + len(recs)) + recs
    v9 = struct.pack(">HHIIII", 9, 2, 10000, 1700000000, 1, 0) + v9sets
    return [ipfix, v9]


for d in varlen_seeds():
    put("decoder_diff", frame_seed(0, [(0, d)]))

print(
    "fuzz-corpus: seeds written to %s: %s"
    % (out, ", ".join("%s %d" % (t, counts.get(t, 0)) for t in ("json_line", "line_splitter", "datagram", "decoder_diff", "capture")))
)
PY
