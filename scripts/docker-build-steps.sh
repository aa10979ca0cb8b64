#!/usr/bin/env bash
# Runs the steps of Dockerfile and Dockerfile.standalone without Docker (no Docker engine runs on
# the development machines or in CI), to show that they work:
#
#  1. the builder stage: `cargo build --release --locked` (the README's command, found in both
#     Dockerfiles), then the strip;
#  2. Dockerfile.standalone's final stage: the binary with the image's ENV and nothing else, no
#     arguments (its ENTRYPOINT), stdin /dev/null (`docker run` without -i), as an unprivileged
#     user (USER 10001): /healthz through deploy/docker/healthcheck.sh (the HEALTHCHECK), the
#     default listener netflow://0.0.0.0:2055 decoding a NetFlow v5 datagram, SIGTERM (`docker
#     stop`) -> exit 0; then `docker run -i -e GOFLOW2_EXPORTER_STDIN=on` with
#     testdata/sample.jsonl on stdin;
#  3. Dockerfile's entrypoint, deploy/docker/all-in-one.sh, under BusyBox's sh (the goflow2 image is
#     Alpine) with a stand-in for goflow2 that prints testdata/sample.jsonl: the pipe, the arguments
#     goflow2 gets, the HEALTHCHECK, `docker stop` (SIGTERM -> exit 0, both processes gone), and
#     goflow2 failing on its own (its status becomes the container's).
#
# As root with unshare, steps 2 and 3 run in a network namespace of their own, so the image's
# default ports (2055/udp, 9090) are free whatever runs on the machine; otherwise they must be free.
# Not covered: the Alpine (musl) build of the all-in-one image and the base images themselves.
# Needs BusyBox (the HEALTHCHECK's client: `apt-get install busybox`; else curl stands in),
# python3 (to send a datagram), and setpriv (util-linux) when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

say() { printf '== %s\n' "$*"; }
fail() {
    printf 'FAILED: %s\n' "$*" >&2
    exit 1
}

http_get() {
    if command -v busybox >/dev/null; then
        busybox wget -q -O - "$1"
    else
        curl -fsS -m 4 "$1"
    fi
}

# `ENV K=V` lines of a Dockerfile, as K=V words.
image_env() {
    sed -n 's/^ENV \([A-Za-z_][A-Za-z0-9_]*=.*\)$/\1/p' "$1"
}

# Waits until `cmd...` succeeds (10 s at most).
wait_until() {
    local _
    for _ in $(seq 100); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Waits for child process $1 to exit (5 s at most); sets `status` to its exit status or "timeout".
# (Not in a $(...) subshell: only this shell can wait for its children.)
wait_exit() {
    local pid=$1 _
    for _ in $(seq 50); do
        if ! kill -0 "$pid" 2>/dev/null; then
            status=0
            wait "$pid" || status=$?
            return 0
        fi
        sleep 0.1
    done
    status=timeout
}

metric_is() { # name-with-labels value
    http_get http://127.0.0.1:9090/metrics | grep -qxF "$1 $2"
}

run_steps() {
    local work=$1 bin=$1/goflow2-exporter status
    local -a as_user=()
    if [ "$(id -u)" = 0 ]; then
        as_user=(setpriv --reuid 10001 --regid 10001 --clear-groups)
    fi
    local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    if ! command -v busybox >/dev/null; then
        # The HEALTHCHECK calls `busybox wget -q -O /dev/null URL`: stand in with curl.
        mkdir -p "$work/shim"
        # shellcheck disable=SC2016 # $url is the shim's own variable.
        printf '#!/bin/sh\nfor url; do :; done\nexec curl -fsS -o /dev/null "$url"\n' >"$work/shim/busybox"
        chmod 755 "$work/shim/busybox"
        path=$work/shim:$path
        echo "NOTICE: busybox absent (apt-get install busybox): the HEALTHCHECK runs with curl"
    fi
    # shellcheck disable=SC2207 # ENV values have no spaces.
    local -a standalone_env=($(image_env Dockerfile.standalone)) all_in_one_env=($(image_env Dockerfile))
    [ "${standalone_env[*]}" = GOFLOW2_EXPORTER_STDIN=off ] ||
        fail "Dockerfile.standalone's ENV: ${standalone_env[*]}"
    [ "${#all_in_one_env[@]}" -gt 0 ] || fail "Dockerfile has no ENV"

    say "Dockerfile.standalone: ENTRYPOINT with ${standalone_env[*]}, stdin /dev/null, uid 10001"
    env -i PATH="$path" "${standalone_env[@]}" "${as_user[@]}" "$bin" \
        </dev/null >"$work/standalone.log" 2>&1 &
    local pid=$!
    wait_until grep -q 'serving metrics on http://0.0.0.0:9090' "$work/standalone.log" ||
        fail "standalone did not start: $(cat "$work/standalone.log")"
    grep -q 'listening for NetFlow/IPFIX on udp://0.0.0.0:2055' "$work/standalone.log" ||
        fail "no default listener: $(cat "$work/standalone.log")"
    env -i PATH="$path" "${standalone_env[@]}" "${as_user[@]}" deploy/docker/healthcheck.sh ||
        fail "HEALTHCHECK failed"
    echo "HEALTHCHECK (deploy/docker/healthcheck.sh): ok"
    # One NetFlow v5 record, 10 packets / 1000 bytes of TCP, to the default listener.
    python3 - <<'EOF'
import socket, struct
header = struct.pack("!HHIIIIBBH", 5, 1, 0, 0, 0, 0, 0, 0, 0)
record = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", socket.inet_aton("192.0.2.1"),
                     socket.inet_aton("198.51.100.1"), bytes(4), 0, 0, 10, 1000, 0, 0,
                     40000, 443, 0, 0x18, 6, 0, 0, 0, 0, 0, 0)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(header + record, ("127.0.0.1", 2055))
EOF
    wait_until metric_is 'goflow_bytes_by_protocol_total{protocol="TCP"}' 1000 ||
        fail "the datagram sent to 2055/udp was not counted"
    echo "NetFlow v5 datagram on 2055/udp: counted"
    kill -TERM "$pid"
    wait_exit "$pid"
    [ "$status" = 0 ] || fail "standalone: SIGTERM gave $status, not exit 0"
    echo "docker stop (SIGTERM): exit 0"

    say "Dockerfile.standalone with docker run -i -e GOFLOW2_EXPORTER_STDIN=on < testdata/sample.jsonl"
    env -i PATH="$path" "${standalone_env[@]}" GOFLOW2_EXPORTER_STDIN=on "${as_user[@]}" "$bin" \
        <testdata/sample.jsonl >"$work/stdin.log" 2>&1 &
    pid=$!
    wait_until metric_is goflow_stdin_lines_total 400 ||
        fail "stdin lines not counted: $(cat "$work/stdin.log")"
    if grep -q 'listening for NetFlow/IPFIX' "$work/stdin.log"; then
        fail "a UDP listener was opened although stdin is read"
    fi
    echo "400 lines counted from stdin, no UDP listener"
    kill -TERM "$pid"
    wait_exit "$pid"
    [ "$status" = 0 ] || fail "stdin mode: SIGTERM gave $status, not exit 0"

    say "Dockerfile: ENTRYPOINT deploy/docker/all-in-one.sh with ${all_in_one_env[*]}"
    local sh=sh
    command -v busybox >/dev/null && sh="busybox sh"
    # The stand-in for goflow2: records its arguments, prints JSON lines, then runs until SIGTERM
    # (or exits with FAKE_EXIT).
    cat >"$work/goflow2" <<EOF
#!/bin/sh
echo "\$*" >"$work/goflow2.args"
trap 'echo stopped >"$work/goflow2.stopped"; exit 0' TERM
cat "$repo/testdata/sample.jsonl"
[ -n "\${FAKE_EXIT:-}" ] && exit "\$FAKE_EXIT"
while :; do sleep 0.1; done
EOF
    chmod 755 "$work/goflow2"
    # shellcheck disable=SC2086 # $sh is "busybox sh" or "sh".
    env -i PATH="$path" "${all_in_one_env[@]}" GOFLOW2_BIN="$work/goflow2" \
        GOFLOW2_EXPORTER_BIN="$bin" "${as_user[@]}" $sh deploy/docker/all-in-one.sh \
        >"$work/all-in-one.log" 2>&1 &
    pid=$!
    wait_until metric_is goflow_stdin_lines_total 400 ||
        fail "all-in-one: lines not counted: $(cat "$work/all-in-one.log")"
    local args
    args=$(cat "$work/goflow2.args")
    [ "$args" = "-listen sflow://:6343,netflow://:2055 -format json -transport file" ] ||
        fail "goflow2 got: $args"
    echo "goflow2 $args | goflow2-exporter: 400 lines counted"
    env -i PATH="$path" "${all_in_one_env[@]}" "${as_user[@]}" deploy/docker/healthcheck.sh ||
        fail "all-in-one: HEALTHCHECK failed"
    echo "HEALTHCHECK: ok"
    kill -TERM "$pid"
    wait_exit "$pid"
    [ "$status" = 0 ] || fail "all-in-one: SIGTERM gave $status, not exit 0: $(cat "$work/all-in-one.log")"
    [ -f "$work/goflow2.stopped" ] || fail "goflow2 did not get SIGTERM"
    if http_get http://127.0.0.1:9090/healthz >/dev/null 2>&1; then
        fail "the exporter still runs after the entrypoint exited"
    fi
    echo "docker stop (SIGTERM): goflow2 stopped, the exporter drained and exited, exit 0"

    # shellcheck disable=SC2086
    env -i PATH="$path" "${all_in_one_env[@]}" GOFLOW2_BIN="$work/goflow2" FAKE_EXIT=3 \
        GOFLOW2_EXPORTER_BIN="$bin" "${as_user[@]}" $sh deploy/docker/all-in-one.sh \
        >"$work/all-in-one-fail.log" 2>&1 &
    pid=$!
    wait_exit "$pid"
    [ "$status" = 3 ] || fail "goflow2 exiting with 3 gave $status: $(cat "$work/all-in-one-fail.log")"
    echo "goflow2 exiting with status 3: the entrypoint exits with 3"
}

if [ "${1:-}" = --run-steps ]; then
    [ "${2:-}" = netns ] && ip link set lo up
    # On failure, stop what the steps started (children of this shell, and theirs).
    trap 'pkill -TERM -P $$ 2>/dev/null || true' EXIT
    run_steps "$3"
    exit 0
fi

for f in Dockerfile Dockerfile.standalone; do
    grep -q 'cargo build --release --locked' "$f" || fail "$f does not build with cargo build --release --locked"
done
say "builder stage: cargo build --release --locked"
cargo build --release --locked
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 777 "$work" # the unprivileged steps write there too
strip --strip-debug -o "$work/goflow2-exporter" target/release/goflow2-exporter
echo "binary: $(stat -c %s target/release/goflow2-exporter) bytes, stripped: $(stat -c %s "$work/goflow2-exporter") bytes"

if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
    unshare --net "$0" --run-steps netns "$work"
else
    "$0" --run-steps here "$work"
fi
say "all steps passed"
