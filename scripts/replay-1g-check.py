#!/usr/bin/env python3
"""`--replay` of a capture of at least 1 GiB: bounded memory, exact totals (issue 13, item 1).

    scripts/replay-1g-check.py BINARY [FIXTURE] [MIN_BYTES]

Writes (streaming, in the temp directory) a classic pcap of FIXTURE's records repeated until the
file holds MIN_BYTES (default 1 GiB), replays FIXTURE once and the big file once with BINARY, and
checks that
  - the big replay's peak RSS (VmHWM) stays under 64 MiB: the capture is streamed, not loaded;
  - every goflow_*_total series of the big replay equals the single replay's times the number
    of repetitions (flows, bytes, packets, and their splits by sampler, address, protocol,
    exporter; errors stay at 0 x repetitions).
Prints the file size, datagrams, peak RSS and seconds; deletes the file. Exit status 0 only if
both hold. The default fixture, pmacct-v5-sampled10.pcap, has the most flows per byte of the
fixtures (v5: no templates, so a repetition decodes exactly like the first) and a sampling rate,
so the per-sampler series are compared too.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

RSS_LIMIT_KIB = 64 * 1024
SERIES = re.compile(r"^(goflow_[a-z_]*_total(?:\{[^}]*\})?) (\S+)$")


def start(binary, pcap):
    log = tempfile.TemporaryFile()
    args = [binary, "--metrics-addr", "127.0.0.1:0", "--stdin", "off", "--replay", pcap]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.seek(0)
        m = re.search(rb"serving metrics on http://([0-9.:]+)", log.read())
        if m:
            return proc, m.group(1).decode()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    log.seek(0)
    sys.exit(f"exporter did not start: {log.read().decode(errors='replace')}")


def scrape(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=30) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in map(SERIES.match, text.splitlines()) if m}


def replay(binary, pcap, datagrams):
    """Replays `pcap` until all `datagrams` are counted; the final counters, seconds, peak RSS."""
    t0 = time.monotonic()
    proc, addr = start(binary, pcap)
    try:
        while True:
            m = scrape(addr)
            if m.get("goflow_replay_datagrams_total") == datagrams:
                seconds = time.monotonic() - t0
                break
            if proc.poll() is not None or time.monotonic() - t0 > 600:
                sys.exit(f"replay of {pcap} did not finish: {m.get('goflow_replay_datagrams_total')}")
            time.sleep(0.2)
        # Everything is shipped before the last datagram is counted as replayed; one more
        # scrape after a publish interval keeps this independent of that order.
        time.sleep(1.5)
        m = scrape(addr)
        with open(f"/proc/{proc.pid}/status") as f:
            rss = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
        return m, seconds, rss
    finally:
        proc.kill()
        proc.wait()


def flows(m):
    return sum(v for k, v in m.items() if k.split("{")[0] == "goflow_flows_total")


def main():
    binary = sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fixture = sys.argv[2] if len(sys.argv) > 2 else f"{root}/testdata/fixtures/pmacct-v5-sampled10.pcap"
    min_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else 1 << 30
    data = open(fixture, "rb").read()
    header, records = data[:24], data[24:]
    reps = -(-(min_bytes - len(header)) // len(records))

    # The single replay first: it tells how many datagrams one repetition has (when two scrapes
    # a publish interval apart agree).
    proc, addr = start(binary, fixture)
    try:
        deadline = time.monotonic() + 30
        while True:
            m = scrape(addr)
            time.sleep(1.5)
            small = scrape(addr)
            if small.get("goflow_replay_datagrams_total", 0) > 0 and small == m:
                break
            if time.monotonic() > deadline:
                sys.exit(f"replay of {fixture} did not settle")
    finally:
        proc.kill()
        proc.wait()
    per_rep = small["goflow_replay_datagrams_total"]

    fd, big = tempfile.mkstemp(suffix=".pcap", prefix="goflow2-replay-1g-")
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            f.write(header)
            chunk = records * max(1, (8 << 20) // len(records))
            per_chunk = len(chunk) // len(records)
            left = reps
            while left > 0:
                n = min(left, per_chunk)
                f.write(chunk if n == per_chunk else records * n)
                left -= n
        size = os.path.getsize(big)
        datagrams = per_rep * reps
        m, seconds, rss = replay(binary, big, datagrams)
    finally:
        os.unlink(big)

    print(
        f"replay-1g: {os.path.basename(fixture)} x {reps}: {size} bytes, {int(datagrams)} datagrams, "
        f"{flows(m):.0f} flows in {seconds:.1f} s, peak RSS {rss} KiB "
        f"(limit {RSS_LIMIT_KIB} KiB)"
    )
    bad = [
        f"{k}: {m.get(k)} != {v} x {reps}"
        for k, v in small.items()
        if k != "goflow_replay_datagrams_total" and m.get(k) != v * reps
    ]
    bad += [f"{k}: {v}, not in the single replay" for k, v in m.items() if k not in small and v]
    compared = len(small) - 1
    if bad:
        print(f"replay-1g: FAILED: {len(bad)} of {compared} series differ:", *bad[:20], sep="\n  ")
    else:
        print(f"replay-1g: all {compared} goflow_*_total series equal the single replay's x {reps}")
    if rss >= RSS_LIMIT_KIB:
        print(f"replay-1g: FAILED: peak RSS {rss} KiB >= {RSS_LIMIT_KIB} KiB")
    sys.exit(1 if bad or rss >= RSS_LIMIT_KIB else 0)


if __name__ == "__main__":
    main()
