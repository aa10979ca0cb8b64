#!/usr/bin/env python3
"""Builds a benchmark load: real NetFlow v9 datagrams from softflowd, in sender.c's file format.

Steps (stdlib only, plus Debian's softflowd):
  1. write a pcap (Ethernet) of single-packet flows (TCP 70 %, UDP 25 %, ICMP/ICMPv6 5 %), in
     runs of 256 flows of one family, every --v6-every-th run IPv6 (default 8: ~29 records per
     datagram; strictly alternating families gives ~22);
       --addresses distinct: every flow has its own source (10.0.0.0/8 and 2001:db8:1::/64
                             counted up), destinations from 1,024 per family; this is the
                             side-by-side load (~100,000 distinct addresses with the default
                             --flows 120000)
       --addresses random:   source and destination drawn at random (10.0.0.0/8,
                             2001:db8::/32), the "random addresses" case
     Packets are stored truncated after the transport header (pcap caplen < wire length, as with
     a snaplen), which keeps the file small; the IP length fields carry the full size.
  2. run `softflowd -d -r IN.pcap -n 127.0.0.1:PORT -v 9 -6` (neither -c nor -p: Debian's
     1.1.0 hangs reading a pcap with a control socket) and receive its datagrams on a UDP socket
     in this process (SO_RCVBUFFORCE 64 MiB), so the datagram file holds exactly the payloads;
  3. decode each datagram's v9 sets (templates, options templates, data) to count its flow
     records (options data records are not flows), check that nothing was lost (v9 sequence
     numbers contiguous, flow records = flows in the pcap) and that the template is in the stream;
  4. write OUT (format below) and OUT.json (the figures), and print the figures.

Datagram file: b"DGF1", then per datagram u16 big-endian length, u16 big-endian flow records,
payload (what sender.c reads).

Usage (root: SO_RCVBUFFORCE):
  make-load.py OUT.dgf [--flows 120000] [--addresses distinct|random] [--v6-every 8] [--seed N]
               [--keep-pcap]
"""

import argparse
import ipaddress
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

T0 = 1_700_000_000
ETH_V4 = bytes.fromhex("020000000002" "020000000001" "0800")
ETH_V6 = bytes.fromhex("020000000002" "020000000001" "86dd")
SO_RCVBUFFORCE = 33
BLOCK = 256  # flows of one address family in a row


def ip_checksum(hdr):
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def addresses(kind, n, rng, v6_every):
    """Yields (v6, src bytes, dst bytes) for n flows: runs of BLOCK flows of one family, every
    v6_every-th run IPv6 (softflowd puts consecutive records of one template in one set; strictly
    alternating families would cost a set header per record, ~22 records per datagram)."""
    base4 = int(ipaddress.IPv4Address("10.0.0.0"))
    base6 = int(ipaddress.IPv6Address("2001:db8:1::"))
    dst4 = int(ipaddress.IPv4Address("192.0.2.0"))
    dst6 = int(ipaddress.IPv6Address("2001:db8:2::"))
    n4 = n6 = 0
    for i in range(n):
        v6 = v6_every > 0 and (i // BLOCK) % v6_every == v6_every - 1
        if kind == "distinct":
            if v6:
                n6 += 1
                src = (base6 + n6).to_bytes(16, "big")
                dst = (dst6 + 1 + rng.randrange(1024)).to_bytes(16, "big")
            else:
                n4 += 1
                src = (base4 + n4).to_bytes(4, "big")
                dst = (dst4 + rng.randrange(1024)).to_bytes(4, "big")  # 192.0.2.0-192.0.5.255
        else:
            if v6:
                src = (0x20010DB8 << 96 | rng.getrandbits(96)).to_bytes(16, "big")
                dst = (0x20010DB8 << 96 | rng.getrandbits(96)).to_bytes(16, "big")
            else:
                src = (0x0A << 24 | rng.getrandbits(24)).to_bytes(4, "big")
                dst = (0x0A << 24 | rng.getrandbits(24)).to_bytes(4, "big")
        yield v6, src, dst


def write_pcap(path, kind, n, seed, v6_every):
    """Writes n single-packet flows; returns the number of distinct addresses used."""
    rng = random.Random(seed)
    seen = set()
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, (v6, src, dst) in enumerate(addresses(kind, n, rng, v6_every)):
            seen.add(src)
            seen.add(dst)
            r = rng.random()
            payload = rng.randrange(0, 1400)
            sport, dport = rng.randrange(1024, 65536), rng.choice((443, 80, 53, 123, 8080, 22))
            if r < 0.70:
                proto = 6
                l4 = struct.pack("!HHIIBBHHH", sport, dport, rng.getrandbits(32), 0, 5 << 4,
                                 0x18, 64240, 0, 0)
            elif r < 0.95:
                proto = 17
                l4 = struct.pack("!HHHH", sport, dport, 8 + payload, 0)
            else:
                proto = 58 if v6 else 1
                l4 = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, rng.getrandbits(16), 1)
            if v6:
                l3 = struct.pack("!IHBB", 0x60000000, len(l4) + payload, proto, 64) + src + dst
                frame = ETH_V6 + l3 + l4
            else:
                hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4) + payload, i & 0xFFFF,
                                  0x4000, 64, proto, 0, src, dst)
                l3 = hdr[:10] + struct.pack("!H", ip_checksum(hdr)) + hdr[12:]
                frame = ETH_V4 + l3 + l4
            t = T0 * 1_000_000 + i * 10  # 10 us apart
            f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame),
                                len(frame) + payload))
            f.write(frame)
    return len(seen)


class V9Counter:
    """Counts flow records per v9 datagram (one exporter, so template ids are enough)."""

    def __init__(self):
        self.data_len = {}  # template id -> record length
        self.opt_len = {}   # options template id -> record length

    def count(self, d):
        """Returns (sequence, flow records, options records, carries a template)."""
        if len(d) < 20:
            raise ValueError("short datagram")
        ver, _count, _up, _secs, seq, _src = struct.unpack("!HHIIII", d[:20])
        if ver != 9:
            raise ValueError("not NetFlow v9 (version %d)" % ver)
        off, flows, opts, tmpl = 20, 0, 0, False
        while off + 4 <= len(d):
            sid, slen = struct.unpack("!HH", d[off:off + 4])
            if slen < 4 or off + slen > len(d):
                raise ValueError("bad set length %d" % slen)
            body = d[off + 4:off + slen]
            if sid == 0:
                tmpl = True
                p = 0
                while p + 4 <= len(body):
                    tid, fc = struct.unpack("!HH", body[p:p + 4])
                    if tid < 256:
                        break  # padding
                    fields = struct.unpack("!%dH" % (2 * fc), body[p + 4:p + 4 + 4 * fc])
                    self.data_len[tid] = sum(fields[1::2])
                    p += 4 + 4 * fc
            elif sid == 1:
                tmpl = True
                p = 0
                while p + 6 <= len(body):
                    tid, scope, opt = struct.unpack("!HHH", body[p:p + 6])
                    if tid < 256:
                        break
                    fc = (scope + opt) // 4
                    fields = struct.unpack("!%dH" % (2 * fc), body[p + 6:p + 6 + 4 * fc])
                    self.opt_len[tid] = sum(fields[1::2])
                    p += 6 + scope + opt
                    p += (-p) % 4
            elif sid >= 256:
                if sid in self.data_len:
                    flows += len(body) // self.data_len[sid]
                elif sid in self.opt_len:
                    opts += len(body) // self.opt_len[sid]
                else:
                    raise ValueError("data set %d before its template" % sid)
            off += slen
        return seq, flows, opts, tmpl


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--flows", type=int, default=120_000)
    ap.add_argument("--addresses", choices=("distinct", "random"), default="distinct")
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--v6-every", type=int, default=8,
                    help="every N-th run of %d flows is IPv6 (0: IPv4 only)" % BLOCK)
    ap.add_argument("--keep-pcap", action="store_true", help="keep IN.pcap next to OUT")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="make-load.")
    pcap = os.path.join(work, "in.pcap")
    t = time.time()
    n_addr = write_pcap(pcap, a.addresses, a.flows, a.seed, a.v6_every)
    print("pcap: %d flows, %d distinct addresses, %.1f MB (%.1f s)"
          % (a.flows, n_addr, os.path.getsize(pcap) / 1e6, time.time() - t), file=sys.stderr)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    got = []
    done = threading.Event()

    def receive():
        sock.settimeout(0.2)
        while True:
            try:
                got.append(sock.recv(65535))
            except socket.timeout:
                if done.is_set():
                    return

    th = threading.Thread(target=receive)
    th.start()
    t = time.time()
    cmd = ["softflowd", "-d", "-r", pcap, "-n", "127.0.0.1:%d" % port, "-v", "9", "-6"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    finally:
        time.sleep(0.5)
        done.set()
        th.join()
    if res.returncode != 0:
        sys.exit("softflowd failed (%d): %s" % (res.returncode, res.stderr[-500:]))
    print("softflowd: %d datagrams (%.1f s)" % (len(got), time.time() - t), file=sys.stderr)

    counter = V9Counter()
    rows, seqs, tmpl_at = [], [], []
    flows = opts = 0
    for i, d in enumerate(got):
        seq, f, o, tmpl = counter.count(d)
        rows.append((d, f))
        seqs.append(seq)
        flows += f
        opts += o
        if tmpl:
            tmpl_at.append(i)
    gaps = sum(1 for x, y in zip(seqs, seqs[1:]) if y != x + 1)
    per = [f for _, f in rows if f]
    stats = {
        "command": " ".join(cmd[:3] + ["IN.pcap"] + cmd[4:]),
        "pcap_flows": a.flows,
        "addresses": a.addresses,
        "distinct_addresses": n_addr,
        "seed": a.seed,
        "v6_every": a.v6_every,
        "datagrams": len(rows),
        "flow_records": flows,
        "options_records": opts,
        "records_per_datagram_mean": round(flows / max(1, len(per)), 2),
        "records_per_datagram_min": min(per) if per else 0,
        "records_per_datagram_max": max(per) if per else 0,
        "bytes": sum(len(d) for d, _ in rows),
        "datagrams_with_template": len(tmpl_at),
        "template_every": (tmpl_at[1] - tmpl_at[0]) if len(tmpl_at) > 1 else None,
        "sequence_gaps": gaps,
    }
    print(json.dumps(stats, indent=1), file=sys.stderr)
    if gaps:
        sys.exit("the receive lost datagrams (%d sequence gaps)" % gaps)
    if flows != a.flows:
        sys.exit("softflowd exported %d flow records for %d flows" % (flows, a.flows))
    if not tmpl_at or tmpl_at[0] != 0:
        sys.exit("the first datagram carries no template")
    if not 20 <= stats["records_per_datagram_mean"] <= 40:
        sys.exit("unexpected records per datagram (want about 30)")

    with open(a.out + ".tmp", "wb") as f:
        f.write(b"DGF1")
        for d, n in rows:
            f.write(struct.pack("!HH", len(d), n))
            f.write(d)
    os.replace(a.out + ".tmp", a.out)
    with open(a.out + ".json", "w") as f:
        json.dump(stats, f, indent=1)
        f.write("\n")
    if a.keep_pcap:
        os.replace(pcap, os.path.splitext(a.out)[0] + ".pcap")
    else:
        os.remove(pcap)
    os.rmdir(work)
    print("wrote %s" % a.out, file=sys.stderr)


if __name__ == "__main__":
    main()
