#!/usr/bin/env python3
"""Expected totals of a NetFlow/IPFIX export capture, as decoded by tshark.

Independent of the project's code: tshark's cflow dissector does all the decoding
(`tshark -n -r CAPTURE -d udp.port==PORT,cflow -T pdml udp.port==PORT`); this script only walks
tshark's PDML tree and adds up the values tshark printed. It never parses NetFlow bytes itself.

tshark fields read
  datagram: cflow.version, cflow.count, cflow.sequence, cflow.source_id (v9), cflow.od_id
            (IPFIX), cflow.samplerate (v5 header sampling field; raw 16 bits taken from its
            `unmaskedvalue`, mode = top 2 bits = cflow.samplingmode), ip.src / ipv6.src,
            udp.srcport
  set:      cflow.flowset_id; in template sets cflow.template_id
  flow record ("pdu N/M" in v5, "Flow N" in v9/IPFIX): cflow.octets, cflow.packets,
            cflow.protocol, cflow.srcaddr | cflow.srcaddrv6, cflow.dstaddr | cflow.dstaddrv6,
            cflow.sampler_id (IE 48)
  options data record: cflow.sampling_interval (IE 34), cflow.sampling_algorithm (IE 35),
            cflow.sampler_id (IE 48), cflow.sampler_mode (IE 49),
            cflow.sampler_random_interval (IE 50), cflow.sampling_packet_interval (IE 305),
            cflow.sampling_packet_space (IE 306), cflow.selector_id (IE 302),
            cflow.selector_algorithm (IE 304), cflow.exporter_addr (IE 130), ...
  template: cflow.template_id, cflow.template_field_type | cflow.template_ipfix_field_type |
            cflow.scope_field_type, cflow.template_field_length, cflow.template_ipfix_field_pen

Classification: a v9/IPFIX data record is an *options* record when its set id names a template
that tshark showed in an options template set (v9 set id 1, IPFIX set id 3) from the same
exporter (source address, source port, source id / observation domain). Options records are
listed under "options_data_records" and never counted as flows.

Sampling rate: v5 = header value & 0x3FFF (0 = unknown, treated as 1); options record =
(IE305 + IE306) / IE305 if IE305 is present, else IE34, else IE50. A flow record's rate is looked
up in arrival order, as a collector would: options record of the same exporter + domain with the
record's sampler id (IE 48), else an options record of that exporter + domain without a sampler
id, else 1 (counted in records_without_known_rate). Raw sums are never scaled; "scaled_totals"
is the per-record raw value times that rate, for convenience.

NAT attribution (`--nat-attribution`, the exporter's flag of the same name): a v9/IPFIX record's
destination is tshark's cflow.post_natdestination_ipv4_address (IE 226) or
cflow.post_nat_destination_ipv6_address (IE 282) when the record has one that is not all zeros.

Direction (`--local-net CIDR[,CIDR...]`, as the exporter's flag): per exporter, outbound (source
local, destination not), inbound, internal (both) or external (neither), decided on the source
and the destination after NAT attribution. Interfaces (`--interfaces`): per exporter, the
record's cflow.inputint (IE 10, v5 input; 0 when absent) as "in" and cflow.outputint as "out".
Both are added under "scaled_by" as "by_direction" ("exporter|direction") and "by_interface"
("exporter|index|in" or "exporter|index|out").

Usage: tshark-expected.py CAPTURE PORT NAME [--nat-attribution] [--local-net CIDRS]
                          [--interfaces] > NAME.expected.json
"""

import ipaddress
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

FLOW_TYPE = {5: "NETFLOW_V5", 9: "NETFLOW_V9", 10: "IPFIX"}
OPTION_FIELDS = {
    "cflow.sampling_interval": "sampling_interval_ie34",
    "cflow.sampling_algorithm": "sampling_algorithm_ie35",
    "cflow.sampler_id": "sampler_id_ie48",
    "cflow.sampler_mode": "sampler_mode_ie49",
    "cflow.sampler_random_interval": "sampler_random_interval_ie50",
    "cflow.sampling_packet_interval": "sampling_packet_interval_ie305",
    "cflow.sampling_packet_space": "sampling_packet_space_ie306",
    "cflow.selector_id": "selector_id_ie302",
    "cflow.selector_algorithm": "selector_algorithm_ie304",
    "cflow.exporter_addr": "exporter_ipv4_address_ie130",
    "cflow.exporter_addr_v6": "exporter_ipv6_address_ie131",
    "cflow.scope_system": "scope_system",
    "cflow.scope_interface": "scope_interface",
    "cflow.flow_exporter": "exporting_process_id_ie144",
    "cflow.if_name": "if_name_ie82",
    "cflow.mp_id": "metering_process_id_ie143",
    "cflow.sys_init_time": "system_init_time_ie160",
}
TYPE_FIELDS = ("cflow.template_field_type", "cflow.template_ipfix_field_type",
               "cflow.scope_field_type", "cflow.template_ipfix_field_type_enterprise")


def direct(elem, name):
    for f in elem:
        if f.tag == "field" and f.get("name") == name:
            return f
    return None


def direct_any(elem, *names):
    for n in names:
        f = direct(elem, n)
        if f is not None:
            return f
    return None


def first(elem, name):
    for f in elem.iter("field"):
        if f.get("name") == name:
            return f
    return None


def num(f):
    return int(f.get("show"), 0) if f is not None else None


def tshark_version():
    out = subprocess.run(["tshark", "-v"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip().rstrip(".")


def new_tot():
    return {"flows": 0, "bytes": 0, "packets": 0}


def add(t, b, p):
    t["flows"] += 1
    t["bytes"] += b
    t["packets"] += p


def option_rate(o):
    if o.get("sampling_packet_interval_ie305"):
        i, s = o["sampling_packet_interval_ie305"], o.get("sampling_packet_space_ie306", 0)
        r = (i + s) / i
        return (int(r) if r == int(r) else r), "(IE305 + IE306) / IE305"
    if o.get("sampling_interval_ie34"):
        return o["sampling_interval_ie34"], "IE34"
    if o.get("sampler_random_interval_ie50"):
        return o["sampler_random_interval_ie50"], "IE50"
    return None, None


def main():
    cap, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    opts = sys.argv[4:]
    nat_attribution = "--nat-attribution" in opts
    with_interfaces = "--interfaces" in opts
    local_nets = []
    if "--local-net" in opts:
        local_nets = [ipaddress.ip_network(n) for n in opts[opts.index("--local-net") + 1].split(",")]

    def is_local(addr):
        return addr is not None and any(ipaddress.ip_address(addr) in n for n in local_nets)
    cmd = ["tshark", "-n", "-r", cap, "-d", "udp.port==%d,cflow" % port, "-T", "pdml",
           "udp.port==%d" % port]
    xml = subprocess.run(cmd, capture_output=True, check=True).stdout

    templates = {}  # (addr, port, domain, tid) -> "data" | "options"
    template_ids = defaultdict(lambda: {"data": set(), "options": set()})
    template_layouts = defaultdict(dict)  # "exp/dom" -> {"data 1024": "8:4 12:4 ..."}
    tmpl_dgrams = set()  # 1-based indices of datagrams that carry template sets
    rate_of = {}  # (exporter "addr:port", domain, sampler id or None) -> rate
    datagrams = 0
    versions = defaultdict(int)
    exporters = {}
    total = new_tot()
    scaled = {"bytes": 0, "packets": 0}
    by_exporter = defaultdict(lambda: defaultdict(new_tot))
    by_exporter_port = defaultdict(new_tot)
    by_proto = defaultdict(new_tot)
    by_src = defaultdict(new_tot)
    by_dst = defaultdict(new_tot)
    by_ipver = defaultdict(new_tot)
    by_template = defaultdict(new_tot)
    by_sampler_id = defaultdict(new_tot)
    by_rate = defaultdict(new_tot)
    rate_by_exporter = defaultdict(set)
    v5_sampling = defaultdict(int)
    options_records = []
    sources = []
    no_template_sets = 0
    with_sampler_id = 0
    without_rate = 0
    sequence = {}

    # The same families with each record's bytes and packets times the rate that applies to it
    # (what a collector's sampling-corrected counters should show).
    scaled_by = defaultdict(lambda: defaultdict(new_tot))

    def account(exp, ftype, src_addr, rec_src, rec_dst, proto, b, p, rate, tid=None, sid=None,
                ifs=(0, 0)):
        nonlocal without_rate
        add(total, b, p)
        add(by_exporter[src_addr][ftype], b, p)
        add(by_exporter_port[exp], b, p)
        add(by_proto[str(proto)], b, p)
        add(by_src[rec_src], b, p)
        add(by_dst[rec_dst], b, p)
        add(by_ipver["6" if ":" in rec_src else "4"], b, p)
        if tid is not None:
            add(by_template[str(tid)], b, p)
        if sid is not None:
            add(by_sampler_id[str(sid)], b, p)
        if rate is None:
            without_rate += 1
            rate = 1
        add(by_rate[str(rate)], b, p)
        for family, key in (("by_exporter", src_addr + "|" + ftype), ("by_protocol", str(proto)),
                            ("by_src_addr", rec_src), ("by_dst_addr", rec_dst)):
            add(scaled_by[family][key], b * rate, p * rate)
        if local_nets:
            sl, dl = is_local(rec_src), is_local(rec_dst)
            d = {(True, False): "outbound", (False, True): "inbound",
                 (True, True): "internal", (False, False): "external"}[(sl, dl)]
            add(scaled_by["by_direction"][src_addr + "|" + d], b * rate, p * rate)
        if with_interfaces:
            add(scaled_by["by_interface"]["%s|%d|in" % (src_addr, ifs[0] or 0)], b * rate, p * rate)
            add(scaled_by["by_interface"]["%s|%d|out" % (src_addr, ifs[1] or 0)], b * rate, p * rate)
        rate_by_exporter[exp].add(rate)
        scaled["bytes"] += b * rate
        scaled["packets"] += p * rate

    for pkt in ET.fromstring(xml).iter("packet"):
        protos = {p.get("name"): p for p in pkt.iter("proto")}
        cf = protos.get("cflow")
        if cf is None:
            continue
        datagrams += 1
        l3 = protos.get("ip")
        src = (first(l3, "ip.src") if l3 is not None
               else first(protos["ipv6"], "ipv6.src")).get("show")
        sport = num(first(protos["udp"], "udp.srcport"))
        exp = "%s:%d" % (src, sport)
        ver = num(direct(cf, "cflow.version"))
        versions[ver] += 1
        ftype = FLOW_TYPE[ver]
        dom = num(direct_any(cf, "cflow.source_id", "cflow.od_id"))
        ex = exporters.setdefault(exp, {"address": src, "port": sport, "flow_type": ftype,
                                        "datagrams": 0, "domains": set()})
        ex["datagrams"] += 1
        if dom is not None:
            ex["domains"].add(dom)
        seq = num(direct(cf, "cflow.sequence"))
        if seq is not None:
            sequence.setdefault(exp, []).append(seq)

        if ver == 5:
            raw = int(direct(cf, "cflow.samplerate").get("unmaskedvalue"), 16)
            v5_sampling[raw] += 1
            rate = (raw & 0x3FFF) or None
            for rec in cf:
                if rec.tag != "field" or not (rec.get("show") or "").startswith("pdu "):
                    continue
                account(exp, ftype, src,
                        direct(rec, "cflow.srcaddr").get("show"),
                        direct(rec, "cflow.dstaddr").get("show"),
                        num(direct(rec, "cflow.protocol")),
                        num(direct(rec, "cflow.octets")), num(direct(rec, "cflow.packets")),
                        rate, ifs=(num(direct(rec, "cflow.inputint")),
                                   num(direct(rec, "cflow.outputint"))))
            continue

        for fs in cf:
            if fs.tag != "field":
                continue
            fsid = num(direct(fs, "cflow.flowset_id"))
            if fsid is None:
                continue
            if fsid in (0, 1, 2, 3):  # (options) template sets
                kind = "options" if fsid in (1, 3) else "data"
                tmpl_dgrams.add(datagrams)
                for tm in fs:
                    tid = num(direct(tm, "cflow.template_id")) if tm.tag == "field" else None
                    if tid is None:
                        continue
                    templates[(src, sport, dom, tid)] = kind
                    template_ids["%s/%s" % (exp, dom)][kind].add(tid)
                    layout = []
                    for fd in tm:
                        show = fd.get("show") or ""
                        if fd.tag != "field" or not show.startswith("Field ("):
                            continue
                        ie = num(direct_any(fd, *TYPE_FIELDS))
                        ln = num(direct(fd, "cflow.template_field_length"))
                        pen = num(direct(fd, "cflow.template_ipfix_field_pen"))
                        layout.append("%s%s%d:%d" % ("scope " if "[Scope]" in show else "",
                                                     "%d/" % pen if pen else "", ie, ln))
                    template_layouts["%s/%s" % (exp, dom)]["%s %d" % (kind, tid)] = \
                        " ".join(layout)
                continue
            kind = templates.get((src, sport, dom, fsid))
            recs = [r for r in fs
                    if r.tag == "field" and (r.get("show") or "").startswith("Flow ")]
            if kind is None or not recs:
                no_template_sets += 1
                continue
            for rec in recs:
                if kind == "options":
                    o = {"exporter": exp, "domain": dom, "template_id": fsid}
                    for f in rec.iter("field"):
                        key = OPTION_FIELDS.get(f.get("name"))
                        if key:
                            v = f.get("show")
                            try:
                                v = int(v, 0)
                            except ValueError:
                                pass
                            o[key] = v
                    options_records.append(o)
                    r, how = option_rate(o)
                    if r is not None:
                        rate_of[(exp, dom, o.get("sampler_id_ie48"))] = r
                        s = {"kind": "options data record", "exporter": exp, "domain": dom,
                             "template_id": fsid, "rate": r, "derived_as": how}
                        s.update({k: v for k, v in o.items() if k.endswith(
                            ("ie34", "ie35", "ie48", "ie49", "ie50", "ie302", "ie304",
                             "ie305", "ie306"))})
                        if s not in sources:
                            sources.append(s)
                    continue
                sid = num(direct(rec, "cflow.sampler_id"))
                if sid is not None:
                    with_sampler_id += 1
                rate = rate_of.get((exp, dom, sid))
                if rate is None:
                    rate = rate_of.get((exp, dom, None))
                rec_dst = direct_any(rec, "cflow.dstaddr", "cflow.dstaddrv6").get("show")
                nat_dst = direct_any(rec, "cflow.post_natdestination_ipv4_address",
                                     "cflow.post_nat_destination_ipv6_address")
                if (nat_attribution and nat_dst is not None
                        and nat_dst.get("show") not in ("0.0.0.0", "::")):
                    rec_dst = nat_dst.get("show")
                account(exp, ftype, src,
                        direct_any(rec, "cflow.srcaddr", "cflow.srcaddrv6").get("show"),
                        rec_dst,
                        num(direct(rec, "cflow.protocol")),
                        num(direct(rec, "cflow.octets")), num(direct(rec, "cflow.packets")),
                        rate, tid=fsid, sid=sid,
                        ifs=(num(direct(rec, "cflow.inputint")),
                             num(direct(rec, "cflow.outputint"))))

    for raw, n in sorted(v5_sampling.items()):
        sources.insert(0, {"kind": "v5 header sampling_interval", "raw": raw,
                           "raw_hex": "0x%04x" % raw, "datagrams": n,
                           "mode_top2bits": raw >> 14, "interval_low14bits": raw & 0x3FFF,
                           "rate": (raw & 0x3FFF) or 1})
    all_rates = set().union(*rate_by_exporter.values()) if rate_by_exporter else {1}
    sampling = {
        "rate": all_rates.pop() if len(all_rates) == 1 else None,
        "rate_by_exporter": {k: sorted(v) for k, v in rate_by_exporter.items()},
        "sources": sources,
        "records_with_sampler_id": with_sampler_id,
        "records_without_known_rate": without_rate,
        "by_rate": dict(by_rate),
        "scaled_totals": scaled,
        "scaled_by": {f: dict(sorted(v.items())) for f, v in sorted(scaled_by.items())},
    }
    if by_sampler_id:
        sampling["by_sampler_id"] = dict(by_sampler_id)
    if not sources:
        sampling["note"] = "no sampling information on the wire: rate 1 (unsampled)"

    srt = lambda d: {k: d[k] for k in sorted(d, key=lambda x: (len(x), x))}
    out = {
        "capture": name + ".pcap",
        "decoder": "%s: tshark -n -r %s.pcap -d udp.port==%d,cflow -T pdml udp.port==%d, "
                   "summed by scripts/tshark-expected.py" % (tshark_version(), name, port, port),
        "collector_port": port,
        "datagrams": datagrams,
        "versions": {str(k): v for k, v in sorted(versions.items())},
        "exporters": [dict(e, domains=sorted(e["domains"])) for e in exporters.values()],
        "templates": {k: {"data": sorted(v["data"]), "options": sorted(v["options"])}
                      for k, v in sorted(template_ids.items())},
        "template_layouts_ie_len": {k: dict(sorted(v.items()))
                                    for k, v in sorted(template_layouts.items())},
        "datagrams_with_templates": sorted(tmpl_dgrams),
        "sequence_numbers": {k: {"first": v[0], "last": v[-1]} for k, v in sequence.items()},
        "flow_records": total["flows"],
        "options_records": len(options_records),
        "sets_without_template": no_template_sets,
        "totals": total,
        "sampling": sampling,
        "by_exporter": {k: dict(v) for k, v in by_exporter.items()},
        "by_exporter_port": dict(by_exporter_port),
        "by_ip_version": srt(by_ipver),
        "by_template_id": srt(by_template),
        "by_protocol": srt(by_proto),
        "by_src_addr": dict(sorted(by_src.items())),
        "by_dst_addr": dict(sorted(by_dst.items())),
        "options_data_records": options_records,
    }
    text = json.dumps(out, indent=1)
    # one line per {flows, bytes, packets} object: shorter and easier to read
    text = re.sub(r'\{\s*"flows": (\d+),\s*"bytes": (\d+),\s*"packets": (\d+)\s*\}',
                  r'{"flows": \1, "bytes": \2, "packets": \3}', text)
    text = re.sub(r'\[\s*([0-9, \n]*?)\s*\]',
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")
                                            if x.strip()) + "]", text)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
