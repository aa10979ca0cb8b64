#!/usr/bin/env bash
# CPU seconds per thread of one exporter run: the exporter pinned to CPU 0, the sender (built by
# run.py into WORK/bin) pinned to CPU 1 sending the peer load at RATE flows/s until FLOWS flows;
# prints the sender's line, CPU seconds of every exporter thread that used any, context switches
# of the socket thread and the publisher, and flows counted / kernel drops. With `perf` as a
# fourth argument, also records a profile to /tmp/perf.data (perf report -i /tmp/perf.data).
#
#   bench/peer/cpu-split.sh target/release/goflow2-exporter 3000000 9000000 [perf]
#
# Used for the A/B steps of issue 9 in BENCHMARKS.md (alternate two builds, several runs each).
set -euo pipefail
bin=$1 rate=$2 flows=$3 mode=${4:-}
work=${WORK:-$(cd "$(dirname "$0")/../../.." && pwd)/bench}
port=2999 mport=9999
ticks() {
    for t in /proc/"$1"/task/*; do
        echo "$(cat "$t"/comm) $(awk '{print $14 + $15}' "$t"/stat)"
    done
}
taskset -c 0 "$bin" --listen netflow://127.0.0.1:$port --rcvbuf 33554432 \
    --metrics-addr 127.0.0.1:$mport 2>/tmp/cpu-split-exporter.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1
if [ "$mode" = perf ]; then
    perf record -F 1999 -g -o /tmp/perf.data -p $pid 2>/dev/null &
    perf_pid=$!
    sleep 0.5
fi
ticks $pid >/tmp/cpu-split.0
taskset -c 1 "$work"/bin/sender -f "$work"/loads/peer.dgf -p $port -r "$rate" -n "$flows"
sleep 1.5
ticks $pid >/tmp/cpu-split.1
for t in /proc/$pid/task/*; do
    case $(cat "$t"/comm) in
    udp-* | publisher) echo "$(cat "$t"/comm) $(grep ctxt "$t"/status | tr '\n' ' ')" ;;
    esac
done
paste /tmp/cpu-split.0 /tmp/cpu-split.1 | awk '{ d = $4 - $2; if (d > 0) print $1, d / 100, "s" }'
curl -s 127.0.0.1:$mport/metrics | awk '/^goflow_flows_total/ { s += $2 }
    /^goflow_udp_kernel_drops_total/ { d += $2 } END { printf "counted %d drops %d\n", s, d }'
if [ "$mode" = perf ]; then
    kill -INT $perf_pid
    wait $perf_pid || true
fi
