# syntax=docker/dockerfile:1.7
# jwtgate: multi-stage build. The build stage caches the cargo registry and target directory
# across builds (BuildKit cache mounts); the runtime stage is distroless, non-root, no shell.
#
#   docker build -t jwtgate .
#   docker run --rm -e JWT_SECRET_KEY=... -v $PWD/my.toml:/etc/jwtgate/jwtgate.toml:ro -p 8080:8080 jwtgate
# The built-in /etc/jwtgate/jwtgate.toml is the sidecar default (upstream 127.0.0.1:8000, no
# admin listener): mount your own for anything else.

ARG RUST_VERSION=1.88

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# jemalloc (the allocator, built from source by tikv-jemalloc-sys) needs make; the image has gcc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin jwtgate \
    && cp target/release/jwtgate /jwtgate

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.7.0
LABEL org.opencontainers.image.title="jwtgate" \
      org.opencontainers.image.description="Reverse-proxy authentication gateway: verifies Bearer JWTs (HS256/384/512) and passes the caller to upstreams in one header" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/jwtgate"
COPY --from=build /jwtgate /usr/local/bin/jwtgate
COPY config/jwtgate.toml /etc/jwtgate/jwtgate.toml
ENV JWTGATE_CONFIG=/etc/jwtgate/jwtgate.toml \
    JWTGATE_LOG_FORMAT=json
# 8080: public listener; 9901: admin (/healthz, /readyz, /metrics) when admin_listen is set.
EXPOSE 8080 8081 9901
# distroless "nonroot" is uid/gid 65532.
USER 65532:65532
ENTRYPOINT ["jwtgate"]
