#!/bin/sh
# HEALTHCHECK of both images: GET /healthz on the port of --metrics-addr
# (GOFLOW2_EXPORTER_METRICS_ADDR, default 0.0.0.0:9090), from inside the container.
# The HTTP client is BusyBox's wget: part of Alpine (the goflow2 image the all-in-one image is built
# on) and a ~1 MB package on debian:bookworm-slim, where curl would add ~10 MB of libraries; the
# exporter itself has no HTTP client. No `-T` timeout: Debian 12's busybox 1.35 wget crashes
# (SIGSEGV) with it; the HEALTHCHECK's --timeout bounds the check instead.
addr=${GOFLOW2_EXPORTER_METRICS_ADDR:-0.0.0.0:9090}
exec busybox wget -q -O /dev/null "http://127.0.0.1:${addr##*:}/healthz"
