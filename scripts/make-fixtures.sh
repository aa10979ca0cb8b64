#!/usr/bin/env bash
# Regenerates testdata/fixtures/: real NetFlow v5 / v9 / IPFIX exports made by softflowd and
# pmacct (Debian packages) from deterministic traffic (scripts/gen-traffic.py), captured on
# loopback with tcpdump, and each capture's expected totals as decoded by tshark
# (scripts/tshark-expected.py). Everything stays on 127.0.0.0/8.
#
# Usage: sudo scripts/make-fixtures.sh        (needs root: apt-get, tcpdump on lo, unshare)
#
# Idempotent: it installs missing packages, rebuilds every file in testdata/fixtures/ from
# scratch and leaves nothing else behind (temporary files live in a mktemp directory).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/testdata/fixtures"
SCRIPTS="$ROOT/scripts"
PY=/usr/bin/python3              # Debian's python3, where python3-scapy is installed
FAKE_NOW='2023-11-14 22:15:00'   # frozen clock for pmacctd (see README: determinism)
START=$(date +%s)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get, tcpdump -i lo, unshare --pid)"

# ---------------------------------------------------------------------------------------------
# 1. packages
PKGS=(softflowd pmacct tcpdump tshark python3-scapy faketime util-linux)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for b in softflowd pmacctd tcpdump tshark faketime unshare timeout; do
  command -v "$b" >/dev/null || die "$b not found"
done
"$PY" -c 'import scapy' || die "python3-scapy not importable by $PY"

WORK=$(mktemp -d /tmp/make-fixtures.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# 2. input traffic (deterministic)
mkdir -p "$OUT"
# remove only what this script makes (other files someone puts here survive)
rm -f "$OUT"/*.pcap "$OUT"/*.expected.json "$OUT"/traffic.truth.json "$OUT"/SHA256SUMS.payloads \
  "$OUT"/README.md
log "generating traffic"
"$PY" "$SCRIPTS/gen-traffic.py" "$OUT/traffic.pcap" --truth "$OUT/traffic.truth.json"
TRAFFIC="$OUT/traffic.pcap"

# ---------------------------------------------------------------------------------------------
# 3. capture helpers

# A UDP sink on 127.0.0.1:PORT so the exporters' datagrams are received (no ICMP port
# unreachable, which would make a connected UDP socket fail its next send). It writes the
# number of datagrams it received to $WORK/sink.PORT on SIGTERM.
start_sink() {
  local port=$1
  rm -f "$WORK/sink.$port" "$WORK/sink.$port.ready"
  "$PY" - "$port" "$WORK/sink.$port" <<'EOF' &
import signal, socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", port))
n = 0
def stop(*_):
    open(out, "w").write("%d\n" % n)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(out + ".ready", "w").close()
while True:
    s.recv(65535)
    n += 1
EOF
  SINK_PID=$!
  PIDS+=("$SINK_PID")
  for _ in $(seq 100); do [ -e "$WORK/sink.$port.ready" ] && return 0; sleep 0.05; done
  die "sink on $port did not start"
}

start_tcpdump() {  # start_tcpdump FILE PORT
  local file=$1 port=$2
  tcpdump -i lo -n -U -Z root -s 0 -w "$file" "udp and dst host 127.0.0.1 and dst port $port" \
    2>"$file.tcpdump.log" &
  TCPDUMP_PID=$!
  PIDS+=("$TCPDUMP_PID")
  for _ in $(seq 100); do grep -qs 'listening on' "$file.tcpdump.log" && return 0; sleep 0.05; done
  die "tcpdump did not start: $(cat "$file.tcpdump.log")"
}

stop_capture() {
  sleep 1
  kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" || true
  kill -TERM "$SINK_PID"; wait "$SINK_PID" || true
}

check_capture() {  # check_capture FILE PORT -> checks nothing was dropped, sets DATAGRAMS
  local file=$1 port=$2
  local captured dropped received
  captured=$(sed -n 's/^\([0-9]*\) packets\? captured.*/\1/p' "$file.tcpdump.log")
  dropped=$(sed -n 's/^\([0-9]*\) packets\? dropped by kernel.*/\1/p' "$file.tcpdump.log")
  received=$(cat "$WORK/sink.$port")
  [ "$dropped" = 0 ] || die "tcpdump dropped $dropped packets ($file)"
  [ "$captured" -gt 0 ] || die "nothing captured ($file)"
  [ "$captured" = "$received" ] || die "captured $captured but the sink received $received ($file)"
  DATAGRAMS=$captured
}

run_softflowd() {  # run_softflowd PORT ARGS...   (pid namespace: pins IPFIX IE 143 to 1)
  local port=$1; shift
  # run from $OUT with a relative file name: softflowd exports the -r argument as the
  # interface name (IE 82, 16 bytes) in its options record, which must not depend on the checkout
  (cd "$OUT" && timeout 120 unshare --pid --fork softflowd -d -r traffic.pcap -n "127.0.0.1:$port" "$@") \
    >"$WORK/softflowd.$port.log" 2>&1 || { warn "softflowd failed: $(tail -3 "$WORK/softflowd.$port.log")"; return 1; }
}

run_pmacctd() {  # run_pmacctd PORT VERSION RATE(0=none) SOURCE_IP(-=none)
  local port=$1 ver=$2 rate=$3 src=$4 conf="$WORK/pmacctd.$1.$2.conf"
  {
    echo "daemonize: false"
    echo "pcap_savefile: $TRAFFIC"
    echo "plugins: nfprobe"
    echo "nfprobe_receiver: 127.0.0.1:$port"
    echo "nfprobe_version: $ver"
    [ "$rate" != 0 ] && echo "sampling_rate: $rate"
    [ "$src" != - ] && echo "nfprobe_source_ip: $src"
  } >"$conf"
  timeout 120 faketime -f "$FAKE_NOW" pmacctd -f "$conf" >"$conf.log" 2>&1 \
    || { warn "pmacctd failed: $(tail -3 "$conf.log")"; return 1; }
  ! grep -q 'ERROR' "$conf.log" || { warn "pmacctd: $(grep ERROR "$conf.log")"; return 1; }
}

declare -A PORT DESC
ORDER=()
capture() {  # capture NAME PORT DESCRIPTION -- command...
  local name=$1 port=$2 desc=$3; shift 4
  local file="$WORK/$name.pcap" attempt
  log "$name: $desc"
  # pmacctd 1.7.7 sometimes exits 1 at end of file ("connection lost to 'default_nfprobe-
  # nfprobe'"), a shutdown race between its core and plugin processes: run the whole capture
  # again rather than keep a possibly incomplete export
  for attempt in 1 2 3 4; do
    start_sink "$port"
    start_tcpdump "$file" "$port"
    if "$@"; then
      stop_capture
      check_capture "$file" "$port"
      break
    fi
    stop_capture
    [ "$attempt" = 4 ] && die "$name: exporter failed 4 times"
    warn "$name: attempt $attempt failed, retrying"
  done
  cp "$file" "$OUT/$name.pcap"
  PORT[$name]=$port; DESC[$name]=$desc; ORDER+=("$name")
  log "$name: $DATAGRAMS datagrams"
}

# ---------------------------------------------------------------------------------------------
# 4. exports
capture softflowd-v5 39001 "softflowd -v 5 -a" -- run_softflowd 39001 -v 5 -a
capture softflowd-v9 39002 "softflowd -v 9 -6 -a" -- run_softflowd 39002 -v 9 -6 -a
capture softflowd-ipfix 39003 "softflowd -v 10 -6 -a" -- run_softflowd 39003 -v 10 -6 -a
capture softflowd-v9-sampled4 39004 "softflowd -v 9 -6 -a -s 4" \
  -- run_softflowd 39004 -v 9 -6 -a -s 4
capture softflowd-ipfix-sampled4 39005 "softflowd -v 10 -6 -a -s 4" \
  -- run_softflowd 39005 -v 10 -6 -a -s 4
capture pmacct-v5 39006 "pmacctd nfprobe_version: 5" -- run_pmacctd 39006 5 0 -
capture pmacct-v9 39007 "pmacctd nfprobe_version: 9" -- run_pmacctd 39007 9 0 -
capture pmacct-ipfix 39008 "pmacctd nfprobe_version: 10" -- run_pmacctd 39008 10 0 -
capture pmacct-v5-sampled10 39009 \
  "pmacctd nfprobe_version: 5, sampling_rate: 10, nfprobe_source_ip: 127.0.0.4" \
  -- run_pmacctd 39009 5 10 127.0.0.4
capture pmacct-v9-sampled4 39010 \
  "pmacctd nfprobe_version: 9, sampling_rate: 4, nfprobe_source_ip: 127.0.0.2" \
  -- run_pmacctd 39010 9 4 127.0.0.2
capture pmacct-ipfix-sampled10 39011 \
  "pmacctd nfprobe_version: 10, sampling_rate: 10, nfprobe_source_ip: 127.0.0.3" \
  -- run_pmacctd 39011 10 10 127.0.0.3

# Three exporters to one collector port: softflowd v9 and pmacct v9 both from 127.0.0.1 (only
# the source port differs; both use template ids 1024/1025/2048/2049 with different layouts)
# and a sampled pmacct v9 from 127.0.0.2. They run one after the other; the datagrams are then
# interleaved round-robin by exporter (frames unchanged, pcap timestamps rewritten to 1 ms
# steps) so that templates of one exporter arrive between data of another.
mixed_run() {
  run_softflowd 39012 -v 9 -6 -a && run_pmacctd 39012 9 0 - && run_pmacctd 39012 9 4 127.0.0.2
}
capture mixed-v9-raw 39012 "softflowd -v 9 -6 -a + pmacctd v9 + pmacctd v9 sampling_rate 4 (127.0.0.2)" -- mixed_run
"$PY" - "$OUT/mixed-v9-raw.pcap" "$OUT/mixed-v9-3exporters.pcap" <<'EOF'
import struct, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
ghdr, off = data[:24], 24
assert struct.unpack("<I", ghdr[:4])[0] == 0xA1B2C3D4, "expected a little-endian usec pcap"
assert struct.unpack("<I", ghdr[20:24])[0] == 1, "expected Ethernet link type (lo)"
groups, order, t0 = {}, [], None
while off < len(data):
    sec, usec, incl, orig = struct.unpack("<IIII", data[off:off + 16])
    frame = data[off + 16:off + 16 + incl]
    off += 16 + incl
    t0 = (sec, usec) if t0 is None else t0
    ihl = (frame[14] & 0x0F) * 4            # Ethernet(14) + IPv4 header, to find the exporter
    key = (frame[26:30], frame[14 + ihl:14 + ihl + 2])   # IPv4 source address, UDP source port
    if key not in groups:
        groups[key] = []
        order.append(key)
    groups[key].append((incl, orig, frame))
out = [ghdr]
i, t = 0, t0[0] * 1_000_000 + t0[1]
queues = [list(groups[k]) for k in order]
while any(queues):
    for q in queues:
        if q:
            incl, orig, frame = q.pop(0)
            out.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, incl, orig) + frame)
            t += 1000
open(dst, "wb").write(b"".join(out))
print("interleaved %d exporters" % len(order), file=sys.stderr)
EOF
rm "$OUT/mixed-v9-raw.pcap"
PORT[mixed-v9-3exporters]=39012
DESC[mixed-v9-3exporters]="${DESC[mixed-v9-raw]} (interleaved round-robin by exporter)"
ORDER=("${ORDER[@]/mixed-v9-raw/mixed-v9-3exporters}")

# ---------------------------------------------------------------------------------------------
# 5. expected totals by tshark, payload digests
log "expected totals (tshark)"
: >"$OUT/SHA256SUMS.payloads"
for name in "${ORDER[@]}"; do
  "$PY" "$SCRIPTS/tshark-expected.py" "$OUT/$name.pcap" "${PORT[$name]}" "$name" \
    >"$OUT/$name.expected.json"
  # digest of the UDP payloads only (frame timestamps, IP ids and source ports change per run)
  printf '%s  %s\n' "$(tshark -n -r "$OUT/$name.pcap" -T fields -e udp.payload 2>/dev/null | sha256sum | cut -d' ' -f1)" \
    "$name.pcap" >>"$OUT/SHA256SUMS.payloads"
done

# ---------------------------------------------------------------------------------------------
# 6. README
log "README"
{
  for name in "${ORDER[@]}"; do printf '%s\t%s\t%s\n' "$name" "${PORT[$name]}" "${DESC[$name]}"; done
} >"$WORK/captures.tsv"
"$PY" "$SCRIPTS/fixtures-readme.py" "$OUT" "$WORK/captures.tsv" "$FAKE_NOW" \
  "$(dpkg-query -W -f='${Package} ${Version}, ' softflowd pmacct tshark tcpdump python3-scapy faketime)"

log "done in $(( $(date +%s) - START )) s"
ls -l "$OUT" >&2
