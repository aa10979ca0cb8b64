#!/usr/bin/env python3
"""Side-by-side UDP benchmark driver: goflow2-exporter binaries, nfacctd and a bare recvmmsg loop
receiving the same NetFlow v9 datagrams on 127.0.0.1 (method: ../shared/docs/peer-benchmark.md).

Modes
  ceiling   the sender alone, unpaced, against a bound socket nobody reads (its own limit)
  sweep     for each receiver and rate: a fresh receiver process (32 MiB SO_RCVBUF, pinned to
            CPU 0), the sender pinned to CPU 1 sends >= --flows flows at the rate, then pass/fail
  defaults  issue 9's "defaults" case: the exporter with only --listen (no --rcvbuf; plus
            --metrics-addr on a free port), a load of random addresses at a fixed datagram rate,
            /metrics scraped every second meanwhile (--scrape-every 0: not at all, a control)

A sweep run passes when the receiver counted every flow sent and the kernel dropped nothing:
  exporter  sum of goflow_flows_total == flows sent, goflow_udp_kernel_drops_total == 0
  nfacctd   SIGINT once idle; sum of the FLOWS column of its CSV == flows sent
  bare      datagrams received == datagrams sent (it does not decode)
and for all three the drops column of /proc/net/udp for the socket, read before the receiver
stops, is 0. A run during which other processes used more than --disturbed cores (CPU time of
the whole machine minus receiver and sender, from /proc/stat) is marked DISTURBED and repeated
(up to --retries times); the summary leaves disturbed runs out when the rate has clean ones.
A run where the sender fell short of 97 % of the target rate is marked SLOW.

Output: one line per run on stdout and in WORK/results/DATE-MODE/results.txt (with a header:
date, commit, binaries, loads, sysctls); receiver logs and configurations beside it.
Generated files never go into the repository: WORK defaults to <repo>/../bench.

Needs root (sysctl net.core.rmem_max, raised to 33554432 for the run and restored after), gcc,
taskset, Debian's nfacctd (pmacct) for the nfacctd receiver, the loads from make-load.py.

Examples
  run.py ceiling
  run.py sweep --bin /tmp/baseline-exporter
  run.py sweep --bin A=/tmp/old --bin B=target/release/goflow2-exporter --receivers exporter
  run.py defaults --bin /tmp/baseline-exporter
"""

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RCVBUF = 33554432
HZ = os.sysconf("SC_CLK_TCK")
NFACCTD_CONF = """daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: {port}
nfacctd_pipe_size: 33554432
nfacctd_time_new: true
plugins: print[p]
aggregate[p]: src_host, proto, flows
print_output[p]: csv
print_output_file[p]: {dir}/out.csv
print_refresh_time[p]: 3600
print_cache_entries[p]: 262147
plugin_pipe_size[p]: 268435456
plugin_buffer_size[p]: 65536
"""

RUNNING = []  # receivers started by this process, stopped on exit


def log(out, line):
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


# ---------------------------------------------------------------------------------------------
# /proc helpers

def udp_socket_state(port):
    """(rx_queue bytes, drops) of the socket bound to 127.0.0.1:port, or None."""
    want = "0100007F:%04X" % port
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            p = line.split()
            if p[1] == want:
                return int(p[4].split(":")[1], 16), int(p[-1])
    return None


def proc_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])  # utime + stime
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return out


def all_ticks():
    """{pid: (name, utime + stime)} of every process (to name what disturbed a run)."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    s = f.read()
                rest = s.rsplit(")", 1)[1].split()
                out[int(d)] = (s[s.index("(") + 1:s.rindex(")")], int(rest[11]) + int(rest[12]))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return out


def top_others(before, after, exclude, seconds):
    """The busiest other processes between two all_ticks() snapshots, e.g. 'rustc:0.85'."""
    use = {}
    for pid, (name, t) in after.items():
        if pid in exclude:
            continue
        d = t - before.get(pid, (name, 0))[1]
        if d > 0:
            use[name] = use.get(name, 0) + d
    top = sorted(use.items(), key=lambda x: -x[1])[:3]
    return ",".join("%s:%.2f" % (n, d / HZ / seconds) for n, d in top) or "-"


def hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def machine_busy_s():
    """CPU seconds spent by everything since boot, all CPUs: user + nice + system + steal (time
    the hypervisor gave to someone else is a disturbance too). Not irq/softirq: the loopback
    receive path runs in softirq, accounted to no process (~1 core at 8 M flows/s)."""
    with open("/proc/stat") as f:
        p = f.readline().split()
    return sum(int(p[i]) for i in (1, 2, 3, 8)) / HZ


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def prom_sum(body, name):
    """Sum of all series of one metric name in a Prometheus text body (None when absent)."""
    total, seen = 0.0, False
    for m in re.finditer(rb"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name.encode()), body, re.M):
        total += float(m.group(1))
        seen = True
    return int(total) if seen else None


# ---------------------------------------------------------------------------------------------
# receivers: start(port, dir), pids(), wait_idle(deadline), finish() -> dict, stop()

class Receiver:
    label = "?"

    def __init__(self):
        self.proc = None

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def wait_socket(self, port, deadline):
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited at start (status %s)" % (self.label,
                                                                      self.proc.returncode))
            if udp_socket_state(port) is not None:
                return
            time.sleep(0.05)
        raise RuntimeError("%s did not bind 127.0.0.1:%d" % (self.label, port))

    def stop(self, sig=signal.SIGTERM, wait=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in RUNNING:
            RUNNING.remove(self)


class Exporter(Receiver):
    def __init__(self, name, binary, rcvbuf=True):
        super().__init__()
        self.label = "exporter:" + name
        self.binary = binary
        self.rcvbuf = rcvbuf

    def start(self, port, d):
        self.port, self.mport = port, free_port(socket.SOCK_STREAM)
        cmd = ["taskset", "-c", "0", self.binary, "--listen", "netflow://127.0.0.1:%d" % port]
        if self.rcvbuf:
            cmd += ["--rcvbuf", str(RCVBUF)]
        cmd += ["--metrics-addr", "127.0.0.1:%d" % self.mport]
        self.cmd = cmd
        self.logf = open(os.path.join(d, "exporter.log"), "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        RUNNING.append(self)
        deadline = time.time() + 30
        self.wait_socket(port, deadline)
        while time.time() < deadline:
            try:
                http_get(self.url(), timeout=2)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("no /metrics on port %d" % self.mport)

    def url(self):
        return "http://127.0.0.1:%d/metrics" % self.mport

    def scrape(self):
        body = http_get(self.url(), timeout=30)
        return {
            "flows": prom_sum(body, "goflow_flows_total") or 0,
            "kdrops": prom_sum(body, "goflow_udp_kernel_drops_total"),
            "dgrams": prom_sum(body, "goflow_exporter_datagrams_total") or 0,
        }

    def wait_idle(self, sent_flows, deadline):
        """Until every flow is counted, or the socket is empty and the counters stood still for
        2.5 s (the exporter publishes its counters every second)."""
        last, since = None, time.time()
        while time.time() < deadline:
            m = self.scrape()
            q = udp_socket_state(self.port)
            if m["flows"] >= sent_flows and q and q[0] == 0:
                return m
            if m != last:
                last, since = m, time.time()
            elif q and q[0] == 0 and time.time() - since >= 2.5:
                return m
            time.sleep(0.5)
        return self.scrape()

    def finish(self, sent, deadline):
        m = self.wait_idle(sent["flows"], deadline)
        q = udp_socket_state(self.port)
        res = {"counted": m["flows"], "dgrams": m["dgrams"], "kdrops": m["kdrops"],
               "drops": q[1] if q else None, "hwm": [hwm_kib(self.proc.pid)]}
        self.stop()
        self.logf.close()
        return res


class Nfacctd(Receiver):
    label = "nfacctd"

    def start(self, port, d):
        self.port, self.dir = port, d
        conf = os.path.join(d, "nfacctd.conf")
        with open(conf, "w") as f:
            f.write(NFACCTD_CONF.format(port=port, dir=d))
        self.logf = open(os.path.join(d, "nfacctd.log"), "w")
        self.proc = subprocess.Popen(["taskset", "-c", "0", "nfacctd", "-f", conf],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        RUNNING.append(self)
        deadline = time.time() + 30
        self.wait_socket(port, deadline)
        # The print plugin is a child process that spends ~2 s setting up its 1 GB cache after
        # it logs "cache entries=": what arrives meanwhile is lost without a word (measured: 240
        # of 1,000,016 flows counted when sending 0.2 s after that line). Ready = the plugin
        # exists and no process of the tree used CPU for 0.5 s.
        while time.time() < deadline and not children(self.proc.pid):
            time.sleep(0.05)
        last, since = None, time.time()
        while time.time() < deadline:
            ticks = sum(proc_ticks(p) for p in self.pids())
            if ticks != last:
                last, since = ticks, time.time()
            elif time.time() - since >= 0.5:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("nfacctd did not settle after start")
        time.sleep(0.3)

    def finish(self, sent, deadline):
        # idle: socket queue empty and no CPU used by core or plugin for 1 s
        last, since = None, time.time()
        while time.time() < deadline:
            q = udp_socket_state(self.port)
            ticks = sum(proc_ticks(p) for p in self.pids())
            if ticks != last or not q or q[0] != 0:
                last, since = ticks, time.time()
            elif time.time() - since >= 1.0:
                break
            time.sleep(0.2)
        q = udp_socket_state(self.port)
        hwm = [hwm_kib(p) for p in self.pids()]
        self.stop(signal.SIGINT, wait=120)
        self.logf.close()
        csv = os.path.join(self.dir, "out.csv")
        counted = None
        if os.path.exists(csv):
            with open(csv) as f:
                head = f.readline().strip().split(",")
                col = head.index("FLOWS")
                counted = sum(int(line.split(",")[col]) for line in f if line.strip())
            os.remove(csv)  # 3 MB per run; the sum is what counts
        return {"counted": counted, "dgrams": None, "kdrops": None,
                "drops": q[1] if q else None, "hwm": hwm}


class Bare(Receiver):
    label = "bare"

    def __init__(self, binary):
        super().__init__()
        self.binary = binary

    def start(self, port, d):
        self.port = port
        self.proc = subprocess.Popen(["taskset", "-c", "0", self.binary, str(port), str(RCVBUF)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        RUNNING.append(self)
        self.proc.stdout.readline()  # "ready rcvbuf=N"
        self.wait_socket(port, time.time() + 10)

    def finish(self, sent, deadline):
        n = 0
        while time.time() < deadline:
            q = udp_socket_state(self.port)
            n = n + 1 if q and q[0] == 0 else 0
            if n >= 3:
                break
            time.sleep(0.1)
        q = udp_socket_state(self.port)
        hwm = [hwm_kib(self.proc.pid)]
        self.proc.send_signal(signal.SIGINT)
        out = self.proc.stdout.read()
        self.proc.wait(10)
        RUNNING.remove(self)
        m = re.search(r"datagrams=(\d+)", out)
        dg = int(m.group(1)) if m else None
        return {"counted": None, "dgrams": dg, "kdrops": None, "drops": q[1] if q else None,
                "hwm": hwm}


# ---------------------------------------------------------------------------------------------
# sender

def run_sender(sender, load, port, flows, flow_rate=0, dgram_rate=0):
    """Runs the sender on CPU 1; returns its figures and the CPU seconds it used."""
    cmd = ["taskset", "-c", "1", sender, "-f", load, "-p", str(port), "-n", str(flows)]
    if flow_rate:
        cmd += ["-r", "%d" % flow_rate]
    if dgram_rate:
        cmd += ["-d", "%d" % dgram_rate]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.stdout.read(), p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError("sender failed: %s" % err.strip())
    res = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", out)}
    res["cpu_s"] = ru.ru_utime + ru.ru_stime
    return res


def build(work):
    """Compiles sender.c and recv-count.c into WORK/bin when missing or older than the source."""
    bindir = os.path.join(work, "bin")
    os.makedirs(bindir, exist_ok=True)
    out = {}
    for name in ("sender", "recv-count"):
        src, exe = os.path.join(HERE, name + ".c"), os.path.join(bindir, name)
        if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
            subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, src], check=True)
        out[name] = exe
    return out


# ---------------------------------------------------------------------------------------------
# one sweep run

def one_run(recv, sender, load, flows, rate, rundir, args):
    os.makedirs(rundir, exist_ok=True)
    port = free_port(socket.SOCK_DGRAM)
    load_before = loadavg()
    recv.start(port, rundir)
    try:
        pids = recv.pids()
        snap0 = all_ticks()
        busy0, rt0 = machine_busy_s(), sum(proc_ticks(p) for p in pids + [os.getpid()])
        s = run_sender(sender, load, port, flows, flow_rate=rate)
        busy1, rt1 = machine_busy_s(), sum(proc_ticks(p) for p in recv.pids() + [os.getpid()])
        who = top_others(snap0, all_ticks(), set(recv.pids()) | {os.getpid()}, s["elapsed_s"])
        r = recv.finish(s, time.time() + args.idle_timeout)
    finally:
        recv.stop()
    other = max(0.0, (busy1 - busy0) - (rt1 - rt0) / HZ - s["cpu_s"]) / s["elapsed_s"]
    ok = r["drops"] == 0 and r["kdrops"] in (None, 0)
    if r["counted"] is not None:
        ok = ok and r["counted"] == int(s["flows"])
    else:
        ok = ok and r["dgrams"] == int(s["datagrams"])
    slow = s["flows_per_s"] < 0.97 * rate
    disturbed = other > args.disturbed
    return {"sent": s, "recv": r, "pass": ok, "slow": slow, "disturbed": disturbed,
            "other": other, "who": who, "load": load_before}


def fmt_run(label, rate, i, res):
    s, r = res["sent"], res["recv"]
    counted = ("counted=%d" % r["counted"]) if r["counted"] is not None else \
        ("counted=%s dgrams" % r["dgrams"])
    if r["counted"] is not None and r["dgrams"] is not None:
        counted += " (%d dgrams)" % r["dgrams"]
    hwm = r["hwm"]
    rss = "%dMiB" % (sum(hwm) // 1024)
    if len(hwm) > 1:
        rss += "(" + "+".join("%d" % (h // 1024) for h in hwm) + ")"
    tags = ["PASS" if res["pass"] else "FAIL"]
    if res["slow"]:
        tags.append("SLOW")
    if res["disturbed"]:
        tags.append("DISTURBED(%s)" % res["who"])
    return ("%s %-22s rate=%.2fM run=%s sent=%d dgrams=%d send_rate=%.3fM %s "
            "proc_drops=%s exp_drops=%s %s peak_rss=%s other_cpu=%.2f load=%s t=%.1fs"
            % (time.strftime("%H:%M:%S"), label, rate / 1e6, i, s["flows"], s["datagrams"],
               s["flows_per_s"] / 1e6, counted, r["drops"],
               "-" if r["kdrops"] is None else r["kdrops"], " ".join(tags), rss, res["other"],
               res["load"], s["elapsed_s"]))


# ---------------------------------------------------------------------------------------------
# modes

def header(out, args, extra):
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    lines = ["# %s  %s" % (time.strftime("%Y-%m-%d %H:%M:%S %Z"), " ".join(sys.argv)),
             "# harness commit %s (%s), %d CPUs, kernel %s, net.core.rmem_max %d during runs"
             % (commit or "?", REPO, os.cpu_count(), os.uname().release, RCVBUF),
             "# uptime: %s" % subprocess.run(["uptime"], capture_output=True,
                                             text=True).stdout.strip()]
    lines += ["# " + e for e in extra]
    for line in lines:
        log(out, line)


def describe_bin(path):
    h = hashlib.sha256(open(path, "rb").read()).hexdigest()[:12]
    v = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    return "%s sha256:%s %s" % (path, h, v)


def describe_load(path):
    j = path + ".json"
    if not os.path.exists(j):
        return "load %s" % path
    with open(j) as f:
        return "load %s %s" % (path, json.dumps(json.load(f), separators=(",", ":")))


def parse_bins(specs):
    out = []
    for s in specs or []:
        name, _, path = s.rpartition("=")
        path = os.path.abspath(path)
        if not os.access(path, os.X_OK):
            sys.exit("not an executable: %s" % path)
        out.append((name or os.path.basename(path), path))
    return out


def rates(s):
    return [float(x) * 1e6 for x in s.split(",") if x]


def mode_ceiling(args, exe, out):
    header(out, args, [describe_load(args.load)])
    for i in range(1, args.repeat + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        ld = loadavg()
        r = run_sender(exe["sender"], args.load, port, args.flows)
        st = udp_socket_state(port)
        s.close()
        log(out, "%s ceiling run=%d flows=%d datagrams=%d elapsed=%.3fs flows_per_s=%.3fM "
                 "datagrams_per_s=%.0f sender_cpu=%.2fs socket_drops=%s load=%s"
            % (time.strftime("%H:%M:%S"), i, r["flows"], r["datagrams"], r["elapsed_s"],
               r["flows_per_s"] / 1e6, r["datagrams_per_s"], r["cpu_s"], st[1] if st else "?",
               ld))


def mode_sweep(args, exe, out):
    recvs = []
    wanted = args.receivers.split(",")
    bins = parse_bins(args.bin)
    if "exporter" in wanted:
        if not bins:
            sys.exit("--bin is needed for the exporter receiver")
        for name, path in bins:
            recvs.append((lambda n=name, p=path: Exporter(n, p), rates(args.exporter_rates)))
    if "nfacctd" in wanted:
        recvs.append((Nfacctd, rates(args.nfacctd_rates)))
    if "bare" in wanted:
        recvs.append((lambda: Bare(exe["recv-count"]), rates(args.bare_rates)))
    extra = [describe_bin(p) for _, p in bins] + [describe_load(args.load)]
    if "nfacctd" in wanted:
        extra.append(subprocess.run(["nfacctd", "-V"], capture_output=True,
                                    text=True).stdout.splitlines()[0])
    header(out, args, extra)
    results = {}  # label -> rate -> [run results]
    base = os.path.dirname(out)
    n = 0
    for rnd in range(1, args.repeat + 1):
        for make, rs in recvs:
            for rate in rs:
                for attempt in range(args.retries + 1):
                    recv = make()
                    n += 1
                    rundir = os.path.join(base, "%03d-%s-%.2fM" % (n, recv.label.replace(":", "-"),
                                                                   rate / 1e6))
                    try:
                        res = one_run(recv, exe["sender"], args.load, args.flows, rate, rundir,
                                      args)
                    except RuntimeError as e:
                        log(out, "%s %-22s rate=%.2fM run=%d ERROR %s" % (
                            time.strftime("%H:%M:%S"), recv.label, rate / 1e6, rnd, e))
                        break
                    tag = "%d" % rnd if attempt == 0 else "%d.%d" % (rnd, attempt)
                    log(out, fmt_run(recv.label, rate, tag, res))
                    results.setdefault(recv.label, {}).setdefault(rate, []).append(res)
                    if not res["disturbed"]:
                        break
                    time.sleep(args.pause)
                time.sleep(args.pause)
    summary(out, results, args)


def summary(out, results, args):
    log(out, "# summary: passed/runs per rate over the runs not disturbed (disturbed ones only "
             "when a rate has no other); a SLOW run (sender below 97 % of the target) never "
             "counts as passed")
    for label, by_rate in results.items():
        parts, best_all, best_any = [], None, None
        for rate in sorted(by_rate):
            runs = by_rate[rate]
            clean = [r for r in runs if not r["disturbed"]] or runs
            p = sum(r["pass"] and not r["slow"] for r in clean)
            slow = sum(r["slow"] for r in clean)
            note = "" if clean is not runs or not any(r["disturbed"] for r in runs) else "!"
            parts.append("%.2fM %d/%d%s%s" % (rate / 1e6, p, len(clean), note,
                                              " (%d SLOW)" % slow if slow else ""))
            if p == len(clean):
                best_all = rate
            if p:
                best_any = rate
        log(out, "# %-22s %s | highest rate all runs lossless: %s | highest with one lossless "
                 "run: %s" % (label, ", ".join(parts),
                              "%.2fM" % (best_all / 1e6) if best_all else "none",
                              "%.2fM" % (best_any / 1e6) if best_any else "none"))
    log(out, "# (! = only disturbed runs at that rate)")


def defaults_run(name, path, exe, rundir, args):
    """One run of the defaults case; returns the figures."""
    os.makedirs(rundir, exist_ok=True)
    recv = Exporter(name, path, rcvbuf=False)
    port = free_port(socket.SOCK_DGRAM)
    ld = loadavg()
    recv.start(port, rundir)
    scrapes, stop = [], threading.Event()  # (seconds, bytes, series or error text)

    def scraper():
        nxt = time.time()
        while args.scrape_every > 0 and not stop.is_set():
            t0 = time.time()
            try:
                body = http_get(recv.url(), timeout=30)
                scrapes.append((time.time() - t0, len(body),
                                body.count(b"\n") - body.count(b"\n#") - body.startswith(b"#")))
            except OSError as e:
                scrapes.append((time.time() - t0, 0, str(e)))
            nxt += args.scrape_every
            stop.wait(max(0.0, nxt - time.time()))

    th = threading.Thread(target=scraper)
    try:
        mine = lambda: recv.pids() + [os.getpid()]  # noqa: E731 (the scraper is ours)
        snap0 = all_ticks()
        busy0, rt0 = machine_busy_s(), sum(proc_ticks(p) for p in mine())
        th.start()
        s = run_sender(exe["sender"], args.load, port, args.flows, dgram_rate=args.dgram_rate)
        busy1, rt1 = machine_busy_s(), sum(proc_ticks(p) for p in mine())
        who = top_others(snap0, all_ticks(), set(mine()), s["elapsed_s"])
        during = len(scrapes)
        m = recv.wait_idle(s["flows"], time.time() + args.idle_timeout)
        stop.set()
        th.join()
        q = udp_socket_state(port)
        hwm = hwm_kib(recv.proc.pid)
    finally:
        stop.set()
        recv.stop()
    other = max(0.0, (busy1 - busy0) - (rt1 - rt0) / HZ - s["cpu_s"]) / s["elapsed_s"]
    return {"sent": s, "m": m, "drops": q[1] if q else None, "hwm": hwm, "scrapes": scrapes,
            "during": during, "other": other, "who": who, "load": ld,
            "disturbed": other > args.disturbed}


def mode_defaults(args, exe, out):
    bins = parse_bins(args.bin)
    if not bins:
        sys.exit("--bin is needed")
    header(out, args, [describe_bin(p) for _, p in bins] + [describe_load(args.load),
           "net.core.rmem_default %s" % open("/proc/sys/net/core/rmem_default").read().strip()])
    base = os.path.dirname(out)
    n = 0
    for i in range(1, args.repeat + 1):
        for name, path in bins:
            for attempt in range(args.retries + 1):
                n += 1
                r = defaults_run(name, path, exe, os.path.join(base, "%03d-defaults-%s" % (n, name)),
                                 args)
                s, m, sc = r["sent"], r["m"], r["scrapes"]
                ok_sc = [x for x in sc if isinstance(x[2], int)]
                lost = int(s["flows"]) - m["flows"]
                log(out, "%s defaults %s run=%s sent=%d dgrams=%d send_rate=%.0f dgrams/s "
                         "(%.3fM flows/s) counted=%d (%d dgrams) lost=%d (%.2f%%) proc_drops=%s "
                         "exp_drops=%s peak_rss=%dMiB scrapes=%d (%d during send, %d failed) "
                         "longest_scrape=%.3fs (during send %.3fs) series=%s other_cpu=%.2f%s "
                         "load=%s"
                    % (time.strftime("%H:%M:%S"), name,
                       "%d" % i if attempt == 0 else "%d.%d" % (i, attempt), s["flows"],
                       s["datagrams"], s["datagrams_per_s"], s["flows_per_s"] / 1e6, m["flows"],
                       m["dgrams"], lost, 100.0 * lost / s["flows"], r["drops"], m["kdrops"],
                       r["hwm"] // 1024, len(sc), r["during"], len(sc) - len(ok_sc),
                       max((x[0] for x in sc), default=0),
                       max((x[0] for x in sc[:r["during"]]), default=0),
                       ok_sc[-1][2] if ok_sc else "?", r["other"],
                       " DISTURBED(%s)" % r["who"] if r["disturbed"] else "", r["load"]))
                time.sleep(args.pause)
                if not r["disturbed"]:
                    break


def main():
    work_default = os.path.join(os.path.dirname(REPO), "bench")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("mode", choices=("ceiling", "sweep", "defaults"))
    ap.add_argument("--work", default=work_default,
                    help="bin/, loads/ and results/ live here (default %(default)s)")
    ap.add_argument("--bin", action="append",
                    help="[NAME=]PATH of a goflow2-exporter binary (repeatable)")
    ap.add_argument("--load", help="datagram file (default WORK/loads/peer.dgf; defaults mode: "
                                   "WORK/loads/random1m.dgf)")
    ap.add_argument("--receivers", default="exporter,nfacctd,bare")
    ap.add_argument("--exporter-rates", default="0.25,0.5,1,1.5,2", help="M flows/s")
    ap.add_argument("--nfacctd-rates", default="1,1.5,2,3", help="M flows/s")
    ap.add_argument("--bare-rates", default="4,8", help="M flows/s")
    ap.add_argument("--flows", type=int, help="flows per run (default 3,000,000; ceiling "
                                              "10,000,000; defaults 1,000,000)")
    ap.add_argument("--dgram-rate", type=int, default=20000, help="defaults mode: datagrams/s")
    ap.add_argument("--scrape-every", type=float, default=1.0,
                    help="defaults mode: seconds between scrapes of /metrics (0: none, a control)")
    ap.add_argument("--repeat", type=int, help="rounds over all rates (default 2; ceiling and "
                                               "defaults 3)")
    ap.add_argument("--retries", type=int, default=1, help="extra runs for a disturbed run")
    ap.add_argument("--disturbed", type=float, default=0.3,
                    help="CPU cores used by other processes during the send that mark a run "
                         "disturbed (default %(default)s)")
    ap.add_argument("--idle-timeout", type=float, default=120)
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between runs")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("run as root (sysctl net.core.rmem_max)")
    work = os.path.abspath(args.work)
    if work == REPO or work.startswith(REPO + os.sep):
        sys.exit("--work must be outside the repository")
    defaults = {"ceiling": (10_000_000, 3, "peer.dgf"), "sweep": (3_000_000, 2, "peer.dgf"),
                "defaults": (1_000_000, 3, "random1m.dgf")}[args.mode]
    args.flows = args.flows or defaults[0]
    args.repeat = args.repeat or defaults[1]
    args.load = os.path.abspath(args.load or os.path.join(work, "loads", defaults[2]))
    if not os.path.exists(args.load):
        sys.exit("no load %s: make it with make-load.py (see README.md)" % args.load)
    exe = build(work)
    resdir = os.path.join(work, "results", time.strftime("%Y%m%d-%H%M%S-") + args.mode)
    os.makedirs(resdir, exist_ok=True)
    out = os.path.join(resdir, "results.txt")

    rmem = "/proc/sys/net/core/rmem_max"
    old = int(open(rmem).read())
    if old < RCVBUF:
        subprocess.run(["sysctl", "-q", "-w", "net.core.rmem_max=%d" % RCVBUF], check=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        {"ceiling": mode_ceiling, "sweep": mode_sweep, "defaults": mode_defaults}[args.mode](
            args, exe, out)
    finally:
        for r in list(RUNNING):
            r.stop(wait=5)
        if old < RCVBUF:
            subprocess.run(["sysctl", "-q", "-w", "net.core.rmem_max=%d" % old])
    print("results: %s" % out)


if __name__ == "__main__":
    main()
