#!/usr/bin/env python3
"""Writes testdata/sample.jsonl: the quick start's bundled data.

Deterministic goflow2 v2.2.6-shaped JSON lines (all 50 keys, goflow2's key order) for a small
office behind two MikroTik routers: 192.168.88.1 exporting NetFlow v9 with no sampling known
(sampling_rate 0) and 10.10.0.1 exporting IPFIX sampled 1 in 4 (sampling_rate 4).
Run: python3 scripts/make-sample-jsonl.py > testdata/sample.jsonl
"""
import json
import random

KEYS = ["type", "time_received_ns", "sequence_num", "sampling_rate", "sampler_address",
        "time_flow_start_ns", "time_flow_end_ns", "bytes", "packets", "src_addr", "dst_addr",
        "etype", "proto", "src_port", "dst_port", "in_if", "out_if", "src_mac", "dst_mac",
        "src_vlan", "dst_vlan", "vlan_id", "ip_tos", "forwarding_status", "ip_ttl", "ip_flags",
        "tcp_flags", "icmp_type", "icmp_code", "ipv6_flow_label", "fragment_id",
        "fragment_offset", "src_as", "dst_as", "next_hop", "next_hop_as", "src_net", "dst_net",
        "bgp_next_hop", "bgp_communities", "as_path", "mpls_ttl", "mpls_label", "mpls_ip",
        "observation_domain_id", "observation_point_id", "layer_stack", "layer_size",
        "ipv6_routing_header_addresses", "ipv6_routing_header_seg_left"]
ARRAYS = {"bgp_communities", "as_path", "mpls_ttl", "mpls_label", "mpls_ip", "layer_stack",
          "layer_size", "ipv6_routing_header_addresses"}
STRINGS = {"src_addr": "", "dst_addr": "", "etype": "", "proto": "", "next_hop": "",
           "bgp_next_hop": "", "src_mac": "00:00:00:00:00:00", "dst_mac": "00:00:00:00:00:00",
           "src_net": "0.0.0.0/0", "dst_net": "0.0.0.0/0"}

rng = random.Random(2055)
lan4 = [f"192.168.88.{i}" for i in range(10, 30)]
lan6 = [f"2001:db8:88::{i:x}" for i in range(10, 16)]
remote4 = ["1.1.1.1", "8.8.8.8", "203.0.113.80", "198.51.100.25", "192.0.2.53"]
remote6 = ["2001:db8:ffff::1", "2001:db8:ffff::443"]
services = [("TCP", 443), ("TCP", 80), ("UDP", 53), ("UDP", 443), ("TCP", 22), ("ICMP", 0)]
t0 = 1795683900 * 10**9

for i in range(400):
    router, ftype, rate = rng.choice([("192.168.88.1", "NETFLOW_V9", 0),
                                      ("10.10.0.1", "IPFIX", 4)])
    v6 = rng.random() < 0.2
    proto, port = rng.choice(services)
    if v6 and proto == "ICMP":
        proto = "IPv6-ICMP"
    lan = rng.choice(lan6 if v6 else lan4)
    remote = rng.choice(remote6 if v6 else remote4)
    packets = rng.randint(1, 400)
    size = rng.randint(60, 1500) if proto != "ICMP" else 84
    outbound = rng.random() < 0.5
    f = {k: ([] if k in ARRAYS else STRINGS.get(k, 0)) for k in KEYS}
    f.update({
        "type": ftype, "sampling_rate": rate, "sampler_address": router,
        "time_received_ns": t0 + i * 150_000_000, "sequence_num": i // 20,
        "time_flow_start_ns": t0 + i * 150_000_000 - 30 * 10**9,
        "time_flow_end_ns": t0 + i * 150_000_000 - 10**9,
        "bytes": packets * size, "packets": packets,
        "src_addr": lan if outbound else remote, "dst_addr": remote if outbound else lan,
        "etype": "IPv6" if v6 else "IPv4", "proto": proto,
        "src_port": rng.randint(32768, 60999) if outbound else port,
        "dst_port": port if outbound else rng.randint(32768, 60999),
        "in_if": 2 if outbound else 1, "out_if": 1 if outbound else 2,
        "tcp_flags": 27 if proto == "TCP" else 0,
    })
    if proto in ("ICMP", "IPv6-ICMP"):
        f["src_port"] = 0
        f["dst_port"] = 2048 if proto == "ICMP" else 32768
    print(json.dumps(f, separators=(",", ":")))
