#!/usr/bin/env bash
# The socket thread's longest stall while /metrics is scraped at ~100,000 series (issue 9).
#
#   bench/peer/receive-gap.sh BIN [CPU|none]
#
# Starts BIN at defaults (--listen only, plus --metrics-addr) pinned to CPU (default 0; "none":
# not pinned), sends WORK/loads/random1m.dgf looped to 2 M flows at 20,000 datagrams/s from
# WORK/bin/sender on CPU 1, scrapes /metrics (gzip) every 0.5 s reading
# goflow_udp_receive_gap_max_seconds, and prints the largest value seen, the kernel drops, the
# flows counted and the series. Needs the load and the sender of run.py (see README.md).
set -euo pipefail
bin=$1
cpu=${2:-0}
work=${WORK:-$(cd "$(dirname "$0")/../../.." && pwd)/bench}
port=47001
mport=47002
pin=()
[ "$cpu" != none ] && pin=(taskset -c "$cpu")
"${pin[@]}" "$bin" --stdin off --listen "netflow://127.0.0.1:$port" \
    --metrics-addr "127.0.0.1:$mport" 2>"$work/receive-gap.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 0.5
scrapes=$(mktemp)
(
    for _ in $(seq 1 16); do
        curl -s --compressed "127.0.0.1:$mport/metrics" |
            grep -o '^goflow_udp_receive_gap_max_seconds [0-9.e-]*' || true
        sleep 0.5
    done
) >"$scrapes" &
scraper=$!
taskset -c 1 "$work/bin/sender" -f "$work/loads/random1m.dgf" -p "$port" -n 2000000 -d 20000
wait $scraper
echo "longest receive gap (s): $(awk '{print $2}' "$scrapes" | sort -g | tail -1) over $(wc -l <"$scrapes") scrapes"
body=$(curl -s "127.0.0.1:$mport/metrics")
echo "$body" | grep '^goflow_udp_kernel_drops_total'
echo "$body" | awk '/^goflow_flows_total/ {s += $2} END {print "flows counted: " s}'
echo "series: $(echo "$body" | grep -vc '^#')"
rm -f "$scrapes"
