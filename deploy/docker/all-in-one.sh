#!/bin/sh
# Entrypoint of the all-in-one image (Dockerfile): goflow2 | goflow2-exporter, run as PID 1.
#
#   goflow2 -listen "$GOFLOW2_LISTEN" -format json -transport file $GOFLOW2_ARGS \
#     | goflow2-exporter --stdin on --exit-on-eof "$@"
#
# The arguments of `docker run IMAGE ...` go to goflow2-exporter; its GOFLOW2_EXPORTER_<FLAG>
# variables work too. goflow2 is configured with GOFLOW2_LISTEN (default: sFlow on 6343, NetFlow
# v5/v9/IPFIX on 2055) and GOFLOW2_ARGS (more flags, split at spaces, e.g. "-addr :8080").
#
# A plain `sh -c 'a | b'` as PID 1 ignores `docker stop`'s SIGTERM (PID 1 gets no default signal
# handlers) and is killed 10 s later. Here SIGTERM/SIGINT go to goflow2, which stops and closes
# the pipe; the exporter counts what it read, exits 0 on end of input (--exit-on-eof) and the
# container stops at once. If goflow2 ends on its own, the container exits with goflow2's status;
# if the exporter fails, with the exporter's.
#
# GOFLOW2_BIN and GOFLOW2_EXPORTER_BIN (default /goflow2 and goflow2-exporter) let
# scripts/docker-build-steps.sh run this script outside Docker.
set -u

goflow2_bin=${GOFLOW2_BIN:-/goflow2}
exporter_bin=${GOFLOW2_EXPORTER_BIN:-goflow2-exporter}

dir=$(mktemp -d) || exit 1
fifo=$dir/flows
mkfifo "$fifo" || exit 1

"$exporter_bin" --stdin on --exit-on-eof "$@" <"$fifo" &
exporter=$!
# shellcheck disable=SC2086 # GOFLOW2_ARGS is split into words on purpose.
"$goflow2_bin" -listen "${GOFLOW2_LISTEN:-sflow://:6343,netflow://:2055}" \
    -format json -transport file ${GOFLOW2_ARGS:-} >"$fifo" &
goflow2=$!

stopping=0
trap 'stopping=1; kill -TERM "$goflow2" 2>/dev/null' TERM INT

# `wait` returns early (status > 128) when a trapped signal arrives: wait again while the exporter
# is alive.
while :; do
    wait "$exporter"
    exporter_status=$?
    kill -0 "$exporter" 2>/dev/null || break
done
# The exporter is gone: stop goflow2 if it still runs (it would block on the closed pipe).
kill -TERM "$goflow2" 2>/dev/null
wait "$goflow2"
goflow2_status=$?
rm -rf "$dir"

if [ "$exporter_status" -ne 0 ] || [ "$stopping" -eq 1 ]; then
    exit "$exporter_status"
fi
exit "$goflow2_status"
