#!/usr/bin/env python3
"""Deterministic traffic generator for the NetFlow/IPFIX fixtures.

Writes a classic pcap (Ethernet link type) of made-up traffic between documentation
addresses (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32):

  * IPv4 TCP sessions (handshake, data both ways, FIN/ACK close)
  * IPv4 UDP request/response (DNS-like) and one-way UDP streams (syslog-like)
  * IPv4 ICMP echo request/reply
  * IPv6 TCP sessions, UDP request/response, ICMPv6 echo request/reply
  * a final IPv4 UDP "sentinel" flow 192.0.2.254 -> 203.0.113.254:9 (pmacct miscounts
    the last packets of a pcap; the sentinel absorbs that, see testdata/fixtures/README.md)

Everything is derived from a fixed seed and fixed timestamps, so the pcap is byte-identical
on every run. With --truth, a JSON file lists every unidirectional flow (5-tuple) with its
packet count and IP byte count (IPv4 total length; IPv6 payload length + 40, which is what
softflowd and pmacct count) so exporter output can be cross-checked against the input.

Usage: gen-traffic.py OUT.pcap [--truth OUT.json] [--seed N]
"""

import argparse
import json
import random
import sys

from scapy.all import (  # type: ignore
    DNS, DNSQR, ICMP, IP, TCP, UDP, Ether, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, Raw,
    PcapWriter,
)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z; all packets fall within ~90 s after it
CLIENT_MAC = "02:00:00:00:00:01"
SERVER_MAC = "02:00:00:00:00:02"


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.pkts = []  # (time, scapy packet)
        self.flows = {}  # key -> {"packets": n, "ip_bytes": n, "frame_bytes": n}

    def emit(self, t, pkt):
        self.pkts.append((t, pkt))

    def payload(self, lo, hi):
        n = self.rng.randint(lo, hi)
        return bytes(self.rng.getrandbits(8) for _ in range(n))

    # -- TCP session: handshake, `segs` data segments in each direction, FIN close ----------
    def tcp_session(self, t, v6, cli, srv, sport, dport, segs, up_max, down_max):
        L3 = IPv6 if v6 else IP
        seq_c = self.rng.getrandbits(32)
        seq_s = self.rng.getrandbits(32)
        dt = lambda: self.rng.uniform(0.001, 0.05)

        def c2s(flags, data=b""):
            nonlocal t, seq_c
            t += dt()
            p = Ether(src=CLIENT_MAC, dst=SERVER_MAC) / L3(src=cli, dst=srv) / TCP(
                sport=sport, dport=dport, flags=flags, seq=seq_c & 0xFFFFFFFF,
                ack=(seq_s & 0xFFFFFFFF) if "A" in flags else 0, window=64240)
            if data:
                p = p / Raw(data)
            self.emit(t, p)
            seq_c += len(data) + (1 if ("S" in flags or "F" in flags) else 0)

        def s2c(flags, data=b""):
            nonlocal t, seq_s
            t += dt()
            p = Ether(src=SERVER_MAC, dst=CLIENT_MAC) / L3(src=srv, dst=cli) / TCP(
                sport=dport, dport=sport, flags=flags, seq=seq_s & 0xFFFFFFFF,
                ack=seq_c & 0xFFFFFFFF, window=65160)
            if data:
                p = p / Raw(data)
            self.emit(t, p)
            seq_s += len(data) + (1 if ("S" in flags or "F" in flags) else 0)

        c2s("S")
        s2c("SA")
        c2s("A")
        for _ in range(segs):
            c2s("PA", self.payload(20, up_max))
            s2c("PA", self.payload(100, down_max))
            if self.rng.random() < 0.5:
                s2c("PA", self.payload(100, down_max))
            c2s("A")
        c2s("FA")
        s2c("FA")
        c2s("A")
        return t

    # -- UDP request/response (DNS-like) -----------------------------------------------------
    def udp_exchange(self, t, v6, cli, srv, sport, dport, n, q_max, r_max):
        L3 = IPv6 if v6 else IP
        for i in range(n):
            t += self.rng.uniform(0.01, 0.3)
            if dport == 53:
                qname = "host%d.example.net" % self.rng.randint(1, 999)
                q = DNS(id=self.rng.getrandbits(16), rd=1, qd=DNSQR(qname=qname,
                        qtype="AAAA" if v6 else "A"))
                req = bytes(q)
                resp = bytes(q) + self.payload(16, r_max)
            else:
                req = self.payload(8, q_max)
                resp = self.payload(8, r_max)
            self.emit(t, Ether(src=CLIENT_MAC, dst=SERVER_MAC) / L3(src=cli, dst=srv)
                      / UDP(sport=sport, dport=dport) / Raw(req))
            t += self.rng.uniform(0.001, 0.02)
            self.emit(t, Ether(src=SERVER_MAC, dst=CLIENT_MAC) / L3(src=srv, dst=cli)
                      / UDP(sport=dport, dport=sport) / Raw(resp))
        return t

    # -- one-way UDP stream --------------------------------------------------------------------
    def udp_oneway(self, t, v6, cli, srv, sport, dport, n, lo, hi, gap=(0.01, 0.2)):
        L3 = IPv6 if v6 else IP
        for _ in range(n):
            t += self.rng.uniform(*gap)
            self.emit(t, Ether(src=CLIENT_MAC, dst=SERVER_MAC) / L3(src=cli, dst=srv)
                      / UDP(sport=sport, dport=dport) / Raw(self.payload(lo, hi)))
        return t

    # -- ICMP / ICMPv6 echo --------------------------------------------------------------------
    def ping(self, t, v6, cli, srv, n, size_max):
        ident = self.rng.getrandbits(16)
        for seq in range(1, n + 1):
            t += self.rng.uniform(0.2, 1.0)
            data = self.payload(8, size_max)
            if v6:
                req = IPv6(src=cli, dst=srv) / ICMPv6EchoRequest(id=ident, seq=seq, data=data)
                rep = IPv6(src=srv, dst=cli) / ICMPv6EchoReply(id=ident, seq=seq, data=data)
            else:
                req = IP(src=cli, dst=srv) / ICMP(type=8, id=ident, seq=seq) / Raw(data)
                rep = IP(src=srv, dst=cli) / ICMP(type=0, id=ident, seq=seq) / Raw(data)
            self.emit(t, Ether(src=CLIENT_MAC, dst=SERVER_MAC) / req)
            t += self.rng.uniform(0.001, 0.02)
            self.emit(t, Ether(src=SERVER_MAC, dst=CLIENT_MAC) / rep)
        return t


def flow_key(pkt):
    """Unidirectional flow key as the exporters see it: (src, dst, proto, sport, dport)."""
    if IP in pkt:
        ip = pkt[IP]
        src, dst, proto, ipbytes = ip.src, ip.dst, ip.proto, ip.len
    else:
        ip = pkt[IPv6]
        src, dst, proto, ipbytes = ip.src, ip.dst, ip.nh, ip.plen + 40
    if TCP in pkt:
        sport, dport = pkt[TCP].sport, pkt[TCP].dport
    elif UDP in pkt:
        sport, dport = pkt[UDP].sport, pkt[UDP].dport
    elif ICMP in pkt:
        sport, dport = 0, pkt[ICMP].type * 256 + pkt[ICMP].code
    else:  # ICMPv6: type/code
        l4 = ip.payload
        sport, dport = 0, l4.type * 256 + l4.code
    return (src, dst, proto, sport, dport), ipbytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--truth")
    ap.add_argument("--seed", type=int, default=20240601)
    a = ap.parse_args()

    g = Gen(a.seed)
    r = g.rng
    streams = []  # (start time, callable) built deterministically, then interleaved by time

    # IPv4 TCP: 24 sessions, clients 192.0.2.10-21, servers 198.51.100.10 (:443) / .20 (:80)
    for i in range(24):
        cli = "192.0.2.%d" % (10 + i % 12)
        srv, dport = ("198.51.100.10", 443) if i % 2 == 0 else ("198.51.100.20", 80)
        streams.append(("tcp4", dict(v6=False, cli=cli, srv=srv, sport=40000 + i * 7,
                                     dport=dport, segs=r.randint(2, 8), up_max=400,
                                     down_max=1400 if i % 4 == 0 else 500)))
    # IPv4 DNS: 160 client ports from 192.0.2.50-53 to 203.0.113.53
    for i in range(160):
        streams.append(("udp4", dict(v6=False, cli="192.0.2.%d" % (50 + i % 4),
                                     srv="203.0.113.53", sport=50000 + i, dport=53,
                                     n=r.randint(1, 2), q_max=0, r_max=200)))
    # IPv4 one-way UDP (syslog-like and a bigger stream)
    for i in range(6):
        streams.append(("oneway4", dict(v6=False, cli="192.0.2.%d" % (60 + i),
                                        srv="203.0.113.10", sport=514, dport=514,
                                        n=r.randint(10, 40), lo=40, hi=300)))
    streams.append(("oneway4", dict(v6=False, cli="198.51.100.77", srv="203.0.113.77",
                                    sport=5004, dport=5004, n=40, lo=900, hi=1400)))
    # IPv4 ICMP echo
    for i in range(6):
        streams.append(("ping4", dict(v6=False, cli="192.0.2.%d" % (70 + i),
                                      srv="198.51.100.%d" % (1 + i % 2), n=r.randint(3, 8),
                                      size_max=1000 if i == 0 else 56)))
    # IPv6 TCP
    for i in range(8):
        streams.append(("tcp6", dict(v6=True, cli="2001:db8:1::%x" % (0x10 + i % 4),
                                     srv="2001:db8:2::443", sport=41000 + i * 11, dport=443,
                                     segs=r.randint(2, 5), up_max=300, down_max=1000)))
    # IPv6 DNS
    for i in range(48):
        streams.append(("udp6", dict(v6=True, cli="2001:db8:1::%x" % (0x50 + i % 3),
                                     srv="2001:db8:2::53", sport=51000 + i, dport=53,
                                     n=r.randint(1, 2), q_max=0, r_max=300)))
    # IPv6 one-way UDP
    streams.append(("oneway6", dict(v6=True, cli="2001:db8:1::60", srv="2001:db8:2::60",
                                    sport=6000, dport=6000, n=25, lo=100, hi=1200)))
    # ICMPv6 echo
    for i in range(4):
        streams.append(("ping6", dict(v6=True, cli="2001:db8:1::%x" % (0x70 + i),
                                      srv="2001:db8:2::1", n=r.randint(3, 6),
                                      size_max=500 if i == 0 else 56)))

    fn = {"tcp4": g.tcp_session, "tcp6": g.tcp_session, "udp4": g.udp_exchange,
          "udp6": g.udp_exchange, "oneway4": g.udp_oneway, "oneway6": g.udp_oneway,
          "ping4": g.ping, "ping6": g.ping}
    last = T0
    for kind, kw in streams:
        start = T0 + r.uniform(0.0, 60.0)
        last = max(last, fn[kind](start, **kw))

    # sentinel: 64 small packets after everything else
    g.udp_oneway(last + 1.0, False, "192.0.2.254", "203.0.113.254", 9, 9, 64, 18, 18,
                 gap=(0.01, 0.01))

    g.pkts.sort(key=lambda tp: tp[0])
    w = PcapWriter(a.out, linktype=1, sync=False)
    truth = {}
    for t, p in g.pkts:
        p = p.__class__(bytes(p))  # freeze checksums/lengths
        p.time = round(t, 6)
        w.write(p)
        k, ipb = flow_key(p)
        f = truth.setdefault(k, {"packets": 0, "ip_bytes": 0})
        f["packets"] += 1
        f["ip_bytes"] += ipb
    w.close()

    if a.truth:
        flows = [dict(src=k[0], dst=k[1], proto=k[2], sport=k[3], dport=k[4], **v,
                      sentinel=(k[0] == "192.0.2.254"))
                 for k, v in sorted(truth.items(), key=lambda kv: (":" in kv[0][0], kv[0]))]
        tot = lambda fl: {"flows": len(fl), "packets": sum(f["packets"] for f in fl),
                          "ip_bytes": sum(f["ip_bytes"] for f in fl)}
        out = {
            "generator": "scripts/gen-traffic.py",
            "seed": a.seed,
            "pcap_packets": len(g.pkts),
            "note": "ip_bytes = IPv4 total length, IPv6 payload length + 40 (what softflowd "
                    "and pmacct count as flow octets); flows are unidirectional 5-tuples; "
                    "ICMP/ICMPv6 dport = type*256+code",
            "totals": {
                "all": tot(flows),
                "ipv4": tot([f for f in flows if ":" not in f["src"]]),
                "ipv6": tot([f for f in flows if ":" in f["src"]]),
                "sentinel": tot([f for f in flows if f["sentinel"]]),
                "ipv4_without_sentinel": tot([f for f in flows
                                              if ":" not in f["src"] and not f["sentinel"]]),
            },
            "flows": flows,
        }
        flows_json = ",\n".join("  " + json.dumps(f, sort_keys=False) for f in out.pop("flows"))
        head = json.dumps(out, indent=1)
        with open(a.truth, "w") as fh:  # one flow per line: small diffs, easy to grep
            fh.write(head[:-2] + ',\n "flows": [\n' + flows_json + "\n ]\n}\n")
    print("wrote %s: %d packets, %d flows" % (a.out, len(g.pkts), len(truth)), file=sys.stderr)


if __name__ == "__main__":
    main()
