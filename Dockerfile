# syntax=docker/dockerfile:1
# All-in-one: goflow2 (the official image, netsampler/goflow2) and goflow2-exporter in one container,
# `goflow2 -listen ... -format json -transport file | goflow2-exporter --exit-on-eof`
# (deploy/docker/all-in-one.sh). goflow2 decodes sFlow (6343/udp) and NetFlow v5/v9/IPFIX
# (2055/udp); the exporter serves /metrics on 9090.
#
#   docker build -t goflow2-exporter:all-in-one .
#   docker run -d --name goflow2 -p 2055:2055/udp -p 6343:6343/udp -p 9090:9090 goflow2-exporter:all-in-one
#
# Arguments after the image name go to goflow2-exporter (as do GOFLOW2_EXPORTER_<FLAG> variables);
# goflow2 takes GOFLOW2_LISTEN and GOFLOW2_ARGS. scripts/docker-build-steps.sh runs these steps
# without Docker.

ARG RUST_VERSION=1.95
ARG GOFLOW2_VERSION=v2.2.6

# The goflow2 image is Alpine (musl): the exporter is built on Alpine too, a static musl binary.
FROM rust:${RUST_VERSION}-alpine AS builder
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# The README's build command; the cache mounts only speed up rebuilds. Stripped of the release
# profile's line tables (debug = 1): ~35 MB -> ~5 MB.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && mkdir -p /out \
    && strip --strip-debug -o /out/goflow2-exporter target/release/goflow2-exporter

FROM netsampler/goflow2:${GOFLOW2_VERSION}
COPY --from=builder /out/goflow2-exporter /usr/local/bin/goflow2-exporter
COPY --chmod=0755 deploy/docker/all-in-one.sh /usr/local/bin/goflow2-all-in-one
COPY --chmod=0755 deploy/docker/healthcheck.sh /usr/local/bin/goflow2-exporter-healthcheck
# The goflow2 image's unprivileged user; the ports are above 1024.
USER flow
ENV GOFLOW2_LISTEN=sflow://:6343,netflow://:2055
EXPOSE 2055/udp 6343/udp 9090/tcp
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/goflow2-exporter-healthcheck"]
ENTRYPOINT ["/usr/local/bin/goflow2-all-in-one"]
