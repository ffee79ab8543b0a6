# syntax=docker/dockerfile:1
#
# Parley: one image with the three binaries — parley-server (the default entrypoint), ingest and
# parley-loadtest.
#
#   docker build -t parley:local .
#   docker run --rm -p 127.0.0.1:8080:8080 -v parley-data:/var/lib/parley \
#     -e PARLEY__AUTH__JWT_SECRET="$(openssl rand -base64 48)" \
#     -e PARLEY__AUTH__API_KEY="$(openssl rand -hex 24)" parley:local          # standalone node
#   (the image binds 0.0.0.0, where the node refuses to start with the public development
#   secrets: pass real ones)
#   docker run --rm --entrypoint ingest parley:local --help
#
# Stages:
#   chef     the Rust toolchain, the C/C++ toolchain librdkafka needs, and cargo-chef
#   planner  reduces the workspace to a recipe of its dependencies (Cargo.toml files + Cargo.lock)
#   builder  builds the dependencies from the recipe — a layer that stays cached until a manifest
#            or Cargo.lock changes — then the workspace itself
#   runtime  debian slim with the binaries and config/parley.toml only, as a non-root user
#
# Checked offline by scripts/checks/dockerfile.sh (hadolint, COPY sources, binary names).

# ---------------------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS chef

# rdkafka-sys builds the bundled librdkafka with its own `configure` (mklove, bash) and `make libs`:
# it needs a C compiler (gcc and libc6-dev are in the slim image already), a C++ compiler
# (configure stops without one and `make libs` also builds the C++ wrapper) and GNU make.
# Nothing else: the `cmake-build` feature is off (no cmake), zlib/ssl/sasl/zstd/curl are off
# (no -dev packages), and python3 is optional (only for the shared library's linker script,
# which the static build does not use). `ring` (the MongoDB driver's rustls) needs only gcc.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ make \
    && rm -rf /var/lib/apt/lists/*

# cargo-chef, pinned: the dependency layer below is keyed on its recipe format.
ARG CARGO_CHEF_VERSION=0.1.78
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"

WORKDIR /src

# ---------------------------------------------------------------------------------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------------------------
FROM chef AS builder

# `cook` and `build` select the same packages and binaries, so cargo resolves the same features
# and the second step reuses every dependency the first one compiled.
COPY --from=planner /src/recipe.json recipe.json
# Cargo's settings first: `[env]` sets jemalloc's built-in options (one arena, ADR 0004), which
# the dependency layer builds.
COPY .cargo .cargo
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo chef cook --release --locked --recipe-path recipe.json \
        -p server -p ingest -p loadtest \
        --bin parley-server --bin ingest --bin parley-loadtest

COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked \
        -p server -p ingest -p loadtest \
        --bin parley-server --bin ingest --bin parley-loadtest \
    && mkdir -p /out \
    && cp target/release/parley-server target/release/ingest target/release/parley-loadtest /out/

# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="parley" \
      org.opencontainers.image.description="Parley realtime chat cluster: parley-server, ingest and parley-loadtest" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/parley" \
      org.opencontainers.image.documentation="https://example.invalid/parley/docs/operations.md" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

# No apt packages: librdkafka is linked statically without TLS, and the MongoDB driver's rustls
# carries its own root certificates (webpki-roots), so not even ca-certificates is needed; the
# healthcheck uses the binaries' own `probe` subcommand instead of curl or wget.
# A fixed UID/GID so volumes and Kubernetes securityContext can refer to it.
RUN groupadd --system --gid 10001 parley \
    && useradd --system --no-log-init --uid 10001 --gid parley \
        --home-dir /var/lib/parley --shell /usr/sbin/nologin parley \
    && mkdir -p /var/lib/parley/search /etc/parley \
    && chown -R parley:parley /var/lib/parley

COPY --from=builder /out/parley-server /out/ingest /out/parley-loadtest /usr/local/bin/
# The file with every default (the binaries have the same defaults built in); mount your own
# over it, or override single keys with PARLEY__SECTION__KEY.
COPY config/parley.toml /etc/parley/parley.toml

# Standalone mode keeps its data in ./data, i.e. /var/lib/parley/data (a durable node its search
# index): mount a volume on /var/lib/parley to keep it. The search role (`ingest search`) keeps
# its index where search.data_dir says (compose and k8s: /var/lib/parley/search).
WORKDIR /var/lib/parley
USER 10001:10001

# All interfaces, so the published port reaches the node: it then refuses the public development
# secrets (auth.allow_dev_secrets_on_public_bind), so PARLEY__AUTH__JWT_SECRET and
# PARLEY__AUTH__API_KEY must be given.
ENV PARLEY__SERVER__BIND=0.0.0.0:8080
# 8080: parley-server (HTTP, WebSocket, /metrics). 9091: ingest (/healthz, /readyz, /metrics)
# once ingest.bind is set to 0.0.0.0:9091.
EXPOSE 8080 9091

# Liveness of parley-server. Services that run ingest from this image (docker-compose.yml,
# Kubernetes) replace it with `ingest probe http://127.0.0.1:9091/readyz`.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["parley-server", "probe", "http://127.0.0.1:8080/healthz"]

# SIGTERM starts the graceful drain (docs/operations.md "Graceful stop"): give the container
# a stop timeout longer than server.drain_window_ms + server.shutdown_timeout_ms.
STOPSIGNAL SIGTERM
ENTRYPOINT ["parley-server"]
CMD ["--config", "/etc/parley/parley.toml"]
